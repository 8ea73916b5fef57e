"""Batch tagging (tagger.batch): every input kind, field options, every reject reason, order, resume rules.

Runs in-process with the shipped model on real corpus articles. The expected output of a document is
always what the engine itself (Tagger.tag_many) says for it, serialised with TagResult.to_json.
"""
from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import threading
from pathlib import Path

import pytest

from tagger.artifacts import LoadedModel
from tagger.batch import BatchConfig, BatchError, run_batch
from tagger.document import Document, from_fields, parse_page
from tagger.readers import REJECT_REASONS, Fields
from tagger.tagger import Tagger

READ_ALSO_ONLY = "إقرأ أيضاً:\nخبر آخر لا علاقة له بالمقال"


@pytest.fixture(scope="module")
def articles(shared_dir: Path) -> list[dict]:
    with lzma.open(shared_dir / "corpus/ant-train.jsonl.xz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(150), f)]


def engine(loaded: LoadedModel, docs: list[Document]) -> list[dict]:
    """What the one predict path says: the reference every batch output is held to."""
    return [r.to_json() for r in Tagger(loaded).tag_many(docs)]


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def run(loaded: LoadedModel, inputs: list[Path], out: Path, **kw) -> tuple[list[dict], list[dict], object]:
    stats = run_batch(BatchConfig(inputs=tuple(map(str, inputs)), output=out, **kw), loaded)
    return read_lines(out), read_lines(Path(f"{out}.rejects.jsonl")), stats


# ------------------------------------------------------------------------------ input kinds
@pytest.mark.parametrize("suffix, opener", [
    (".jsonl", None), (".jsonl.gz", gzip.compress), (".jsonl.xz", lzma.compress), (".ndjson.bz2", bz2.compress),
])
def test_jsonl_plain_and_compressed(tmp_path: Path, loaded: LoadedModel, articles: list[dict], suffix, opener) -> None:
    rows = [{"id": a["id"], "title": a["title"], "text": a["text"], "url": a["url"]} for a in articles[:60]]
    data = jsonl(rows)
    src = tmp_path / f"in{suffix}"
    src.write_bytes(opener(data) if opener else data)
    out, rejects, stats = run(loaded, [src], tmp_path / "out.jsonl")
    assert out == engine(loaded, [from_fields(id=r["id"], title=r["title"], text=r["text"]) for r in rows])
    assert rejects == []
    assert (stats.read, stats.tagged, stats.rejected) == (60, 60, 0)
    assert all("truncated" not in o for o in out)


def test_csv_and_tsv_with_field_options(tmp_path: Path, loaded: LoadedModel, articles: list[dict]) -> None:
    picked = articles[:40]
    fields = Fields(id="doc_id", title="headline", text="body", tags="keywords")
    expected = engine(loaded, [
        from_fields(id=a["id"], title=a["title"], text=a["text"], tags=["سياسة", "عاجل"]) for a in picked
    ])
    for name, delim in (("in.csv", ","), ("in.tsv", "\t")):
        buf = io.StringIO()
        w = csv.writer(buf, delimiter=delim, lineterminator="\n")
        w.writerow(["doc_id", "headline", "body", "keywords", "url"])
        for a in picked:  # bodies hold newlines, commas and quotes: real CSV quoting
            w.writerow([a["id"], a["title"], a["text"], "سياسة، عاجل | سياسة", a["url"]])
        src = tmp_path / name
        src.write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8"))  # with a BOM, as Excel writes
        out, rejects, _ = run(loaded, [src], tmp_path / f"{name}.out.jsonl", fields=fields)
        assert rejects == []
        assert out == expected
        assert out[0]["dropped_tags"] == ["سياسة", "عاجل"]


def test_directory_of_pages(tmp_path: Path, loaded: LoadedModel, shared_dir: Path, articles: list[dict]) -> None:
    seed = (shared_dir / "examples/seed-article.txt").read_bytes()
    pages = tmp_path / "pages"
    (pages / "a" / "b").mkdir(parents=True)
    files = {
        "10.txt": (articles[0]["title"] + "\n" + articles[0]["text"]).encode(),
        "seed.txt": seed,
        "a/2.txt": (articles[1]["title"] + "\n" + articles[1]["text"]).encode(),
        "a/b/1.txt": (articles[2]["title"] + "\n" + articles[2]["text"]).encode(),
    }
    for rel, data in files.items():
        (pages / rel).write_bytes(data)
    (pages / ".hidden.txt").write_bytes(seed)  # hidden files and other suffixes are not pages
    (pages / "notes.md").write_text("not a page", "utf-8")
    (pages / "a" / "up").symlink_to(pages, target_is_directory=True)  # a linked folder is not followed (a loop)
    out, rejects, stats = run(loaded, [pages], tmp_path / "out.jsonl")
    order = ["10.txt", "seed.txt", "a/2.txt", "a/b/1.txt"]  # sorted, a folder's files before its subfolders
    assert [o["id"] for o in out] == order
    assert out == engine(loaded, [parse_page(files[rel].decode(), id=rel) for rel in order])
    seed_out = out[1]
    assert {t["topic"] for t in seed_out["topics"]} == {"diplomacy", "military", "sanctions"}
    assert "سياسة" in seed_out["dropped_tags"]
    assert rejects == [] and stats.read == 4


def test_an_empty_page_folder_is_an_error_not_silence(tmp_path: Path, loaded: LoadedModel) -> None:
    (tmp_path / "pages").mkdir()
    with pytest.raises(BatchError, match=r"pages: no pages \(\*\.txt files\)"):
        run(loaded, [tmp_path / "pages"], tmp_path / "out.jsonl")


def test_json_that_python_cannot_hold_is_a_reject_not_a_crash(
    tmp_path: Path, loaded: LoadedModel, articles: list[dict]
) -> None:
    """Valid JSON can still be refused by the parser (a 5,000-digit integer, nesting deeper than the
    recursion limit): each such line is rejected and the run goes on, in JSONL and in a .json file."""
    good = {"id": "good", "text": articles[0]["text"]}
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + jsonl([good])  # a byte-order mark before the first record is not data
                    + b'{"id": "big", "text": "x", "n": ' + b"1" * 5000 + b"}\n"
                    + b"[" * 100_000 + b"\n" + jsonl([good | {"id": "after"}]))
    deep = tmp_path / "deep.json"
    deep.write_bytes(b"[" * 100_000)
    out, rejects, stats = run(loaded, [src, deep], tmp_path / "out.jsonl")
    assert [o["id"] for o in out] == ["good", "after"]
    assert [(r["line"], r["reason"]) for r in rejects] == [(2, "invalid_json"), (3, "invalid_json"), (None, "invalid_json")]
    assert "digits" in rejects[0]["detail"] and "nested too deeply" in rejects[1]["detail"]
    assert stats.read == 5


def test_json_file_and_several_inputs_in_order(tmp_path: Path, loaded: LoadedModel, articles: list[dict]) -> None:
    rows = [{"id": a["id"], "title": a["title"], "text": a["text"]} for a in articles[:6]]
    (tmp_path / "a.json").write_text(json.dumps(rows[:3], ensure_ascii=False), "utf-8")
    (tmp_path / "b.jsonl").write_bytes(jsonl(rows[3:]))
    out, _, _ = run(loaded, [tmp_path / "a.json", tmp_path / "b.jsonl"], tmp_path / "out.jsonl")
    assert [o["id"] for o in out] == [r["id"] for r in rows]


def test_missing_ids_default_to_file_and_line(tmp_path: Path, loaded: LoadedModel, articles: list[dict]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n" + jsonl([{"text": articles[0]["text"]}, {"id": 7, "text": articles[1]["text"]}]))
    out, _, _ = run(loaded, [src], tmp_path / "out.jsonl")
    assert [o["id"] for o in out] == ["in.jsonl:2", "7"]  # blank lines are not records but are counted


# ---------------------------------------------------------------------------------- rejects
def test_every_reject_reason_and_nothing_lost(tmp_path: Path, loaded: LoadedModel, articles: list[dict]) -> None:
    good = [{"id": f"g{i}", "title": a["title"], "text": a["text"]} for i, a in enumerate(articles[:5])]
    j = tmp_path / "in.jsonl"
    j.write_bytes(b"".join([
        jsonl(good[:1]),
        b'{"id": "utf8", "text": "\xd8\xb9\xff\xfe"}\n',  # 2: invalid UTF-8
        b'{"id": "json", "text": \n',  # 3: invalid JSON
        b'["not", "an", "object"]\n',  # 4
        jsonl([
            {"id": "missing", "tags": ["سياسة"]},  # 5: no text, raw or title
            {"id": "empty", "text": "  \n "},  # 6
            {"id": "type", "text": 42},  # 7: invalid_field
            {"id": "both", "text": "نص", "raw": "صفحة"},  # 8: invalid_document
            {"id": "long", "text": articles[5]["text"] * 40},  # 9: too_long
            {"id": "cut", "text": READ_ALSO_ONLY},  # 10: nothing left once the read-also tail is cut
        ]),
        jsonl(good[1:2]),  # 11
        jsonl([{"id": "headline", "title": "عقوبات أمريكية جديدة على إيران", "text": ""}]),  # 12: a headline is enough
    ]))
    c = tmp_path / "in.csv"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([["id", "title", "text"], [good[2]["id"], good[2]["title"], good[2]["text"]]])
    first = buf.getvalue().encode()
    csv_line = first.count(b"\n") + 1  # the good row spans several lines: its body has newlines
    c.write_bytes(
        first
        + b"short,row\n"  # invalid_csv (2 fields, header has 3)
        + b'badutf,t,"\xd8\xb9\xff"\n'  # invalid_utf8
        + b"blank, ,\n"  # empty_text (a headline alone would do, but this one is blank too)
    )
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "empty.txt").write_bytes(b"  \n")
    (pages / "latin1.txt").write_bytes("café".encode("latin-1"))
    (pages / "ok.txt").write_bytes((good[3]["title"] + "\n" + good[3]["text"]).encode())
    out, rejects, stats = run(loaded, [j, c, pages], tmp_path / "out.jsonl", max_chars=50_000)

    assert [o["id"] for o in out] == ["g0", "g1", "headline", "g2", "ok.txt"]
    got = {(Path(r["source"]).name, r["line"], r["id"], r["reason"]) for r in rejects}
    assert got == {
        ("in.jsonl", 2, None, "invalid_utf8"), ("in.jsonl", 3, None, "invalid_json"),
        ("in.jsonl", 4, None, "not_an_object"), ("in.jsonl", 5, "missing", "missing_text"),
        ("in.jsonl", 6, "empty", "empty_text"), ("in.jsonl", 7, "type", "invalid_field"),
        ("in.jsonl", 8, "both", "invalid_document"), ("in.jsonl", 9, "long", "too_long"),
        ("in.jsonl", 10, "cut", "empty_text"),
        ("in.csv", csv_line, None, "invalid_csv"), ("in.csv", csv_line + 1, None, "invalid_utf8"),
        ("in.csv", csv_line + 2, "blank", "empty_text"),
        ("pages", None, "empty.txt", "empty_text"), ("pages", None, "latin1.txt", "invalid_utf8"),
    }
    assert {r["reason"] for r in rejects} == set(REJECT_REASONS)
    assert all(r["detail"] for r in rejects)
    long = next(r for r in rejects if r["reason"] == "too_long")
    assert str(len(articles[5]["text"]) * 40) in long["detail"] and "50000" in long["detail"]
    assert (stats.read, stats.tagged, stats.rejected) == (len(out) + len(rejects), 5, 14)


def test_too_long_can_be_truncated_instead(tmp_path: Path, loaded: LoadedModel, articles: list[dict]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(jsonl([{"id": "long", "text": articles[0]["text"]}]))
    out, rejects, _ = run(loaded, [src], tmp_path / "out.jsonl", max_chars=300, on_too_long="truncate")
    assert rejects == [] and out[0]["truncated"] is True


def test_csv_without_the_text_column_fails_at_once(tmp_path: Path, loaded: LoadedModel) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,body\n1,نص\n", "utf-8")
    with pytest.raises(BatchError, match="no 'text' column.*--text-field"):
        run_batch(BatchConfig(inputs=(str(src),), output=tmp_path / "out.jsonl"), loaded)


# ------------------------------------------------------------------------ parallel workers
def _mixed_input(tmp_path: Path, articles: list[dict]) -> Path:
    rows = []
    for i, a in enumerate(articles * 2):
        rows.append({"id": f"{a['id']}-{i}", "title": a["title"] if i % 37 else " ", "text": a["text"] if i % 37 else ""})
    src = tmp_path / "in.jsonl"
    src.write_bytes(jsonl(rows))
    return src


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_two_processes_keep_input_order(tmp_path: Path, loaded: LoadedModel, articles: list[dict], start_method) -> None:
    src = _mixed_input(tmp_path, articles)
    one = run_batch(BatchConfig(inputs=(str(src),), output=tmp_path / "one.jsonl", chunk_size=16), loaded)
    # Workers are forked only when this process runs no other thread; a live thread forces spawn.
    stop = threading.Event()
    t = threading.Thread(target=stop.wait) if start_method == "spawn" else None
    if t:
        t.start()
    try:
        two = run_batch(BatchConfig(inputs=(str(src),), output=tmp_path / "two.jsonl", chunk_size=16, n_process=2), loaded)
    finally:
        stop.set()
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert Path(f"{tmp_path}/two.jsonl.rejects.jsonl").read_bytes() == Path(f"{tmp_path}/one.jsonl.rejects.jsonl").read_bytes()
    assert (two.read, two.tagged, two.rejected) == (one.read, one.tagged, one.rejected) == (300, 291, 9)


# ------------------------------------------------------------------------ overwrite / resume
def test_refuses_to_overwrite_without_force(tmp_path: Path, loaded: LoadedModel, articles: list[dict]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(jsonl([{"id": "a", "text": articles[0]["text"]}]))
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n", "utf-8")
    with pytest.raises(BatchError, match="exists; use --force"):
        run_batch(BatchConfig(inputs=(str(src),), output=out), loaded)
    assert out.read_text("utf-8") == "precious\n"
    run_batch(BatchConfig(inputs=(str(src),), output=out, force=True), loaded)
    assert [o["id"] for o in read_lines(out)] == ["a"]
    with pytest.raises(BatchError, match="both an input and an output"):
        run_batch(BatchConfig(inputs=(str(src),), output=src, force=True), loaded)


def test_resume_of_a_finished_run_changes_nothing(tmp_path: Path, loaded: LoadedModel, articles: list[dict]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(jsonl([{"id": a["id"], "text": a["text"]} for a in articles[:10]]))
    out = tmp_path / "out.jsonl"
    run_batch(BatchConfig(inputs=(str(src),), output=out), loaded)
    before = out.read_bytes()
    said: list[str] = []
    stats = run_batch(BatchConfig(inputs=(str(src),), output=out, resume=True), loaded, log=said.append)
    assert stats.already_complete and stats.read == 10
    assert out.read_bytes() == before
    assert said == ["already complete: 10 tagged, 0 rejected of 10 read"]


def test_resume_continues_from_the_checkpoint_and_truncates_later_lines(
    tmp_path: Path, loaded: LoadedModel, articles: list[dict]
) -> None:
    """Simulate a crash: the checkpoint says 40 records, the files hold more (and a torn last line)."""
    src = _mixed_input(tmp_path, articles)
    clean = tmp_path / "clean.jsonl"
    run_batch(BatchConfig(inputs=(str(src),), output=clean, chunk_size=20), loaded)

    out = tmp_path / "out.jsonl"
    from tagger.batch import run_identity
    from tagger.readers import resolve_inputs
    from tagger.writers import Checkpoint, Counts, Position

    cfg = BatchConfig(inputs=(str(src),), output=out, chunk_size=20, resume=True)
    clean_lines = clean.read_bytes().splitlines(keepends=True)
    clean_rejects = Path(f"{clean}.rejects.jsonl").read_bytes().splitlines(keepends=True)
    raw_lines = src.read_bytes().splitlines(keepends=True)
    n_rej = sum(1 for r in read_lines(Path(f"{clean}.rejects.jsonl")) if r["line"] <= 40)
    head, head_rej = b"".join(clean_lines[: 40 - n_rej]), b"".join(clean_rejects[:n_rej])
    out.write_bytes(head + b"".join(clean_lines[40 - n_rej: 55]) + b'{"id": "torn')  # written after the checkpoint
    Path(f"{out}.rejects.jsonl").write_bytes(head_rej + b'{"torn')
    state = Checkpoint(
        identity=run_identity(resolve_inputs([str(src)]), loaded, cfg),
        next=Position(0, sum(map(len, raw_lines[:40])), 40),
        output_bytes=len(head), rejects_bytes=len(head_rej), counts=Counts(40, 40 - n_rej, n_rej),
    )
    cfg.checkpoint_path.write_text(json.dumps(state.to_json()), "utf-8")

    stats = run_batch(cfg, loaded)
    assert out.read_bytes() == clean.read_bytes()
    assert Path(f"{out}.rejects.jsonl").read_bytes() == Path(f"{clean}.rejects.jsonl").read_bytes()
    assert stats.read == 300 and stats.this_run == 260


def test_resume_refuses_a_different_run(tmp_path: Path, loaded: LoadedModel, articles: list[dict]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(jsonl([{"id": a["id"], "text": a["text"]} for a in articles[:10]]))
    out = tmp_path / "out.jsonl"
    run_batch(BatchConfig(inputs=(str(src),), output=out), loaded)
    from tagger.tagger import TagOptions

    with pytest.raises(BatchError, match="settings.options.threshold differs"):
        run_batch(BatchConfig(inputs=(str(src),), output=out, resume=True, options=TagOptions(threshold=0.2)), loaded)
    src.write_bytes(src.read_bytes() + jsonl([{"id": "new", "text": "نص جديد"}]))
    with pytest.raises(BatchError, match=r"inputs\[0\]\.(size|mtime_ns) differs"):
        run_batch(BatchConfig(inputs=(str(src),), output=out, resume=True), loaded)
    out.unlink()
    Path(f"{out}.checkpoint.json").unlink()
    out.write_text("x\n", "utf-8")
    with pytest.raises(BatchError, match="no checkpoint"):
        run_batch(BatchConfig(inputs=(str(src),), output=out, resume=True), loaded)
    # A rejects file of some other run is protected too, even when the output is empty.
    out.write_text("", "utf-8")
    rejects = Path(f"{out}.rejects.jsonl")
    rejects.write_text("precious\n", "utf-8")
    with pytest.raises(BatchError, match="rejects.jsonl exists but there is no checkpoint"):
        run_batch(BatchConfig(inputs=(str(src),), output=out, resume=True), loaded)
    assert rejects.read_text("utf-8") == "precious\n"


# ------------------------------------------------------------------------ damaged compressed input
def _decodable(data: bytes, suffix: str) -> list[bytes]:
    """The records a damaged compressed file still holds, decoded independently of the readers: all
    the bytes its decompressor yields before the damage, cut at b"\\n" (a torn last line included)."""
    import zlib

    d = zlib.decompressobj(wbits=31) if suffix == ".gz" else lzma.LZMADecompressor()
    text = d.decompress(data)
    assert not getattr(d, "eof", False), "the damage must stop the stream"
    return [line for line in text.split(b"\n") if line.strip()]


@pytest.fixture(scope="module")
def many_records(articles: list[dict]) -> bytes:
    """12,000 short JSONL records (real headlines and openings), about 4 MB."""
    rows = [{"id": f"r{i}", "title": a["title"], "text": a["text"][:200]} for i, a in
            zip(range(12_000), articles * 80)]
    return jsonl(rows)


@pytest.mark.parametrize("n_process", [1, 2])
@pytest.mark.parametrize("suffix", [".gz", ".xz"])
def test_a_damaged_compressed_input_loses_no_decoded_record(
    tmp_path: Path, loaded: LoadedModel, many_records: bytes, suffix: str, n_process: int
) -> None:
    """Issue 15, defect 5: a truncated .gz/.xz of 12,000 records, cut so that over 10,000 decode. Every
    record decoded before the break is in the output or the rejects (the torn last line as
    invalid_json), in input order, also with the chunks two workers had in flight; then the run stops
    naming the file and the line reached."""
    packed = gzip.compress(many_records) if suffix == ".gz" else lzma.compress(many_records)
    cut = packed[: int(len(packed) * 0.93)]
    src = tmp_path / f"in.jsonl{suffix}"
    src.write_bytes(cut)
    decodable = _decodable(cut, suffix)
    assert 10_000 < len(decodable) < 12_000
    out = tmp_path / "out.jsonl"
    with pytest.raises(BatchError) as err:
        run_batch(BatchConfig(inputs=(str(src),), output=out, n_process=n_process, chunk_size=256), loaded)
    tagged, rejects = read_lines(out), read_lines(Path(f"{out}.rejects.jsonl"))
    assert len(tagged) + len(rejects) == len(decodable)
    whole = [json.loads(line)["id"] for line in decodable[:-1]]
    assert [t["id"] for t in tagged] == whole  # every whole record, in order
    assert [(r["line"], r["reason"]) for r in rejects] == [(len(decodable), "invalid_json")]  # the torn one
    assert rejects[0]["detail"].startswith("the line is cut short: the input: cannot read (")
    message = str(err.value)
    assert f"{src}:{len(decodable)}: cannot read" in message and "truncated or corrupt" in message
    assert f"the {len(decodable):,} records read before it are written" in message
    checkpoint = json.loads(Path(f"{out}.checkpoint.json").read_text("utf-8"))
    assert checkpoint["counts"]["read"] == len(decodable) and not checkpoint["complete"]


def test_a_damaged_compressed_csv_keeps_the_rows_before_the_break(
    tmp_path: Path, loaded: LoadedModel, articles: list[dict]
) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "title", "text"])
    for i, a in zip(range(3000), articles * 20):
        w.writerow([f"r{i}", a["title"], a["text"][:150]])
    packed = gzip.compress(buf.getvalue().encode("utf-8"))
    src = tmp_path / "in.csv.gz"
    src.write_bytes(packed[: len(packed) // 2])
    out = tmp_path / "out.jsonl"
    with pytest.raises(BatchError, match=r"in\.csv\.gz:\d+: cannot read"):
        run_batch(BatchConfig(inputs=(str(src),), output=out, chunk_size=256), loaded)
    tagged, rejects = read_lines(out), read_lines(Path(f"{out}.rejects.jsonl"))
    decoded = b"\n".join(_decodable(src.read_bytes(), ".gz")).decode("utf-8", "replace")
    rows = list(csv.reader(io.StringIO(decoded)))[1:]  # the torn last row too: a record with too few fields
    assert len(tagged) + len(rejects) == len(rows) > 256  # more than the chunks written whole
    assert [r["reason"] for r in rejects] == ["invalid_csv"] and "cut short" in rejects[0]["detail"]
    assert [t["id"] for t in tagged] == [r[0] for r in rows[: len(tagged)]]


# ------------------------------------------------------------------------ resume, spelled differently
@pytest.mark.parametrize("first, second", [("relative", "absolute"), ("absolute", "relative")])
def test_resume_writes_the_same_bytes_however_the_input_path_is_spelled(
    tmp_path: Path, loaded: LoadedModel, articles: list[dict], monkeypatch: pytest.MonkeyPatch, first: str, second: str
) -> None:
    """Issue 15, defect 6: a run started as ``in.jsonl`` and resumed as ``/abs/in.jsonl`` (or the other
    way) is the same input (the checkpoint identifies it by its absolute path), and its reject lines
    keep the first run's spelling: output and rejects equal an uninterrupted run's, byte for byte."""
    from tagger.writers import OutputSink

    monkeypatch.chdir(tmp_path)
    _mixed_input(tmp_path, articles)  # 300 records, 9 of them rejected, spread over the file
    spelled = {"relative": "in.jsonl", "absolute": str(tmp_path / "in.jsonl")}
    clean = tmp_path / "clean.jsonl"
    run_batch(BatchConfig(inputs=(spelled[first],), output=clean, chunk_size=16), loaded)
    clean_rejects = Path(f"{clean}.rejects.jsonl").read_bytes()
    assert clean_rejects.count(b"\n") == 9 and json.dumps(spelled[first]).encode() in clean_rejects

    out = tmp_path / "out.jsonl"
    write, calls = OutputSink.write, []

    def interrupted(self, *args, **kwargs):  # Ctrl-C after 5 chunks
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return write(self, *args, **kwargs)

    monkeypatch.setattr(OutputSink, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_batch(BatchConfig(inputs=(spelled[first],), output=out, chunk_size=16), loaded)
    monkeypatch.setattr(OutputSink, "write", write)
    assert 0 < read_lines(Path(f"{out}.rejects.jsonl")).__len__() < 9  # some rejects before the stop, some after

    stats = run_batch(BatchConfig(inputs=(spelled[second],), output=out, chunk_size=16, resume=True), loaded)
    assert stats.this_run == 300 - 80
    assert out.read_bytes() == clean.read_bytes()
    assert Path(f"{out}.rejects.jsonl").read_bytes() == clean_rejects


def test_a_failed_checkpoint_write_leaves_no_temporary_file(
    tmp_path: Path, loaded: LoadedModel, articles: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15, defect 7: the disk fills while the checkpoint is written (simulated: half the JSON
    goes out, then ENOSPC). The run fails with that error, the previous checkpoint stays intact, no
    ``checkpoint.json.tmp`` is left, and --resume then finishes with an uninterrupted run's bytes."""
    import errno

    import tagger.writers as writers

    src = _mixed_input(tmp_path, articles)
    clean = tmp_path / "clean.jsonl"
    run_batch(BatchConfig(inputs=(str(src),), output=clean, chunk_size=16), loaded)

    out = tmp_path / "out.jsonl"
    dump, calls = writers.json.dump, []

    def disk_full(obj, f, **kw):
        calls.append(1)
        if len(calls) < 3:  # the first checkpoint (at the start) and one more go through
            return dump(obj, f, **kw)
        text = json.dumps(obj, **kw)
        f.write(text[: len(text) // 2])
        f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers.json, "dump", disk_full)
    with pytest.raises(OSError, match="No space left"):
        run_batch(BatchConfig(inputs=(str(src),), output=out, chunk_size=16, checkpoint_seconds=0), loaded)
    monkeypatch.setattr(writers.json, "dump", dump)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == [
        "out.jsonl", "out.jsonl.checkpoint.json", "out.jsonl.rejects.jsonl"]
    kept = json.loads(Path(f"{out}.checkpoint.json").read_text("utf-8"))
    assert kept["counts"]["read"] == 16 and not kept["complete"]  # the last checkpoint that was written whole

    run_batch(BatchConfig(inputs=(str(src),), output=out, chunk_size=16, resume=True), loaded)
    assert out.read_bytes() == clean.read_bytes()
    assert Path(f"{out}.rejects.jsonl").read_bytes() == Path(f"{clean}.rejects.jsonl").read_bytes()

"""`tagger tag` as a user runs it (real processes): batch mode, kill -9 and --resume, progress, errors."""
from __future__ import annotations

import fcntl
import json
import re
import lzma
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest


def tagger(*args: str, stdin: bytes | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tagger", "tag", *args], input=stdin, capture_output=True,
                          timeout=600, **kw)


@pytest.fixture(scope="module")
def corpus_lines(shared_dir: Path) -> list[bytes]:
    with lzma.open(shared_dir / "corpus/ant-train.jsonl.xz", "rb") as f:
        return [line for _, line in zip(range(4000), f)]


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory, corpus_lines: list[bytes]) -> Path:
    """4,000 real articles with a bad line every 97 lines: outputs and rejects both grow during a run."""
    path = tmp_path_factory.mktemp("big") / "in.jsonl"
    path.write_bytes(b"".join(b'{"id": "broken' + str(i).encode() + b'"\n' if i % 97 == 5 else line
                              for i, line in enumerate(corpus_lines)))
    return path


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory, big_input: Path) -> Path:
    out = tmp_path_factory.mktemp("clean") / "out.jsonl"
    p = tagger("--input", str(big_input), "--output", str(out), "--quiet")
    assert p.returncode == 0, p.stderr.decode()
    return out


def _children(pid: int) -> list[int]:
    """Child pids, from /proc/*/stat (field 4 is the parent pid)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("n_process", ["1", "2"])
def test_resume_after_kill_9_loses_and_duplicates_nothing(
    tmp_path: Path, big_input: Path, clean_run: Path, n_process: str
) -> None:
    out = tmp_path / "out.jsonl"
    checkpoint = Path(f"{out}.checkpoint.json")
    args = ["--input", str(big_input), "--output", str(out), "--quiet", "--chunk-size", "32",
            "--checkpoint-seconds", "0", "-j", n_process]
    proc = subprocess.Popen([sys.executable, "-m", "tagger", "tag", *args], stderr=subprocess.PIPE)
    target = clean_run.stat().st_size // 3
    deadline = time.monotonic() + 300
    while (not out.exists() or out.stat().st_size < target) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads(checkpoint.read_text("utf-8"))
    assert proc.returncode == -signal.SIGKILL and not state["complete"], "the run ended before it could be killed"
    assert 0 < state["counts"]["read"] < 4000
    if n_process == "2":
        assert len(workers) >= 2
        deadline = time.monotonic() + 10
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(_alive, workers)), "workers outlived the killed main process"

    p = tagger(*args[:-2], "--resume")
    assert p.returncode == 0, p.stderr.decode()
    assert out.read_bytes() == clean_run.read_bytes()
    assert Path(f"{out}.rejects.jsonl").read_bytes() == Path(f"{clean_run}.rejects.jsonl").read_bytes()
    final = json.loads(checkpoint.read_text("utf-8"))
    n_bad = sum(1 for i in range(4000) if i % 97 == 5)
    assert final["complete"] and final["counts"] == {"read": 4000, "tagged": 4000 - n_bad, "rejected": n_bad}


def test_summary_quiet_and_fields(tmp_path: Path, corpus_lines: list[bytes]) -> None:
    rows = [json.loads(line) for line in corpus_lines[:30]]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"key": r["id"], "head": r["title"], "body": r["text"]}, ensure_ascii=False) + "\n"
                           for r in rows) + "{oops\n", "utf-8")
    out = tmp_path / "out.jsonl"
    p = tagger("-i", str(src), "-o", str(out), "--id-field", "key", "--title-field", "head", "--text-field", "body")
    assert p.returncode == 0, p.stderr.decode()
    err = p.stderr.decode().strip()
    assert "read 31, tagged 30, rejected 1" in err and "docs/s" in err and len(err.splitlines()) == 1
    assert "\r" not in err  # no progress bar when stderr is not a terminal
    assert [json.loads(line)["id"] for line in out.read_text("utf-8").splitlines()] == [r["id"] for r in rows]
    [rej] = [json.loads(line) for line in Path(f"{out}.rejects.jsonl").read_text("utf-8").splitlines()]
    assert rej["reason"] == "invalid_json" and rej["line"] == 31 and rej["source"] == str(src)

    p = tagger("-i", str(src), "-o", str(out), "--quiet", "--force")
    assert p.returncode == 0 and p.stderr == b""


def test_progress_bar_on_a_terminal(tmp_path: Path, corpus_lines: list[bytes]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(corpus_lines[:300]))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a terminal has a size
    try:
        p = subprocess.run([sys.executable, "-m", "tagger", "tag", "-i", str(src), "-o", str(tmp_path / "o.jsonl")],
                           stderr=slave, stdout=subprocess.DEVNULL, timeout=600)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    shown = b"".join(chunks).decode("utf-8", "replace")
    assert p.returncode == 0
    assert "tagging" in shown and "docs/s" in shown and "300" in shown


def test_overwrite_and_mode_errors_are_one_line(tmp_path: Path, corpus_lines: list[bytes]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(corpus_lines[0])
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n", "utf-8")
    for args, message in [
        (["-i", str(src), "-o", str(out)], "use --force"),
        ([str(src), "--resume"], "--resume needs --output"),
        (["-i", str(src), "-j", "2"], "--n-process needs --output"),
        ([], "nothing to tag"),
        (["-i", "-", "-o", str(tmp_path / "x.jsonl"), "--resume"], "stdin"),
    ]:
        p = tagger(*args, stdin=b"")
        err = p.stderr.decode().strip()
        assert p.returncode == 2 and len(err.splitlines()) == 1 and message in err, (args, err)
    assert out.read_text("utf-8") == "keep me\n"


def test_stdout_mode_reads_csv_and_page_folders(tmp_path: Path, shared_dir: Path) -> None:
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "seed.txt").write_bytes((shared_dir / "examples/seed-article.txt").read_bytes())
    csv_path = tmp_path / "in.csv"
    csv_path.write_text('id,title,text\nc1,المنتخب يفوز,"فاز المنتخب الوطني في المباراة النهائية لكرة القدم."\n', "utf-8")
    p = tagger(str(pages), str(csv_path))
    assert p.returncode == 0, p.stderr.decode()
    out = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert [o["id"] for o in out] == ["seed.txt", "c1"]
    assert out[1]["topics"][0]["topic"] == "sports"
    # In stdout mode the first record that cannot be tagged stops the run, naming file and line.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "فاز المنتخب"}\n{"id": "b"}\n', "utf-8")
    p = tagger(str(bad))
    assert p.returncode == 2 and len(p.stdout.decode().splitlines()) == 1
    assert f"{bad}:2: document 'b' has no 'text', 'raw' or 'title' field" in p.stderr.decode()


def test_stdin_batch_detects_jsonl_and_refuses_csv_before_writing(tmp_path: Path, corpus_lines: list[bytes]) -> None:
    out = tmp_path / "out.jsonl"
    p = tagger("-i", "-", "-o", str(out), "--quiet", stdin=b"".join(corpus_lines[:20]))
    assert p.returncode == 0, p.stderr.decode()
    assert len(out.read_text("utf-8").splitlines()) == 20
    csv_out = tmp_path / "csv.jsonl"
    p = tagger("-i", "-", "-o", str(csv_out), "--format", "csv", stdin="id,text\n1,نص\n".encode())
    err = p.stderr.decode().strip()
    assert p.returncode == 2 and len(err.splitlines()) == 1 and "CSV from stdin" in err, err
    assert not list(tmp_path.glob("csv.jsonl*"))  # refused before any output file was created


@pytest.mark.parametrize("batch", [False, True])
def test_a_truncated_gzip_input_is_one_clear_error_naming_it(tmp_path: Path, corpus_lines: list[bytes],
                                                             batch: bool) -> None:
    import gzip

    src = tmp_path / "in.jsonl.gz"
    src.write_bytes(gzip.compress(b"".join(corpus_lines[:600]))[:-2000])  # cut inside the stream
    out = tmp_path / "out.jsonl"
    p = tagger(*(["-i", str(src), "-o", str(out), "--quiet"] if batch else [str(src)]))
    err = p.stderr.decode().strip()
    assert p.returncode == 2 and len(err.splitlines()) == 1, err
    assert "truncated or corrupt" in err
    if not batch:  # stdout mode stops at the first record it cannot tag: the torn one, named with its line
        assert re.search(rf"{re.escape(str(src))}:\d+: the line is cut short", err), err
    if batch:  # the records read before the damage are kept, in order (the torn last one rejected), and
        # the run says how many
        written = [json.loads(line)["id"] for line in out.read_text("utf-8").splitlines()]
        assert written == [json.loads(line)["id"] for line in corpus_lines[:len(written)]] and written
        rejects = [json.loads(line) for line in Path(f"{out}.rejects.jsonl").read_text("utf-8").splitlines()]
        assert [(r["line"], r["reason"]) for r in rejects] == [(len(written) + 1, "invalid_json")]
        assert f"{src}:{len(written) + 1}: cannot read" in err
        assert f"the {len(written) + 1} records read before it are written: {len(written)} tagged, 1 rejected" in err


def test_output_errors_are_blamed_on_stdout_and_a_closed_pipe_is_not_an_error(
    shared_dir: Path, tmp_path: Path
) -> None:
    dev = str(shared_dir / "gold/dev.jsonl")
    with open("/dev/full", "w") as full:
        for args in (["tag", dev], ["info"]):
            p = subprocess.run([sys.executable, "-m", "tagger", *args], stdout=full, stderr=subprocess.PIPE, timeout=300)
            err = p.stderr.decode().strip()
            assert p.returncode == 2 and err.endswith("cannot write to standard output: No space left on device"), err
    # `tagger tag … | head -1`: 300 results overflow the pipe; the reader leaves after one line.
    proc = subprocess.Popen([sys.executable, "-m", "tagger", "tag", dev], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and json.loads(proc.stdout.readline())["id"]
    proc.stdout.close()
    assert proc.wait(timeout=300) == 0
    assert proc.stderr is not None and proc.stderr.read() == b""


def test_keep_copies_input_fields_into_output_lines(tmp_path: Path) -> None:
    """`--keep title,text,url`: each output line starts with the record's own fields as given (a field it
    lacks is null; a CSV row's cells and a page's whole text as `raw` too), in stdout and batch mode alike."""
    src = tmp_path / "in.jsonl"
    rows = [{"id": "a", "title": "قمة عربية", "text": "انعقدت القمة العربية في الرياض\n\nوبحثت  الأزمة", "url": "u1",
             "extra": 1},
            {"id": "b", "text": "رفع البنك المركزي سعر الفائدة"}]
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    r = tagger("-i", str(src), "-o", str(out), "--keep", "title,text,url", "-q")
    assert r.returncode == 0, r.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    got = [json.loads(line) for line in lines]
    assert list(got[0])[:4] == ["title", "text", "url", "id"]
    assert (got[0]["title"], got[0]["text"], got[0]["url"]) == (rows[0]["title"], rows[0]["text"], "u1")
    assert (got[1]["title"], got[1]["url"]) == (None, None) and "extra" not in got[0]
    # Without --keep the same lines follow the kept fields byte for byte.
    plain = tagger(str(src))
    assert [json.dumps({k: v for k, v in g.items() if k not in ("title", "text", "url")}, ensure_ascii=False)
            for g in got] == plain.stdout.decode().splitlines()
    assert tagger(str(src), "--keep", "title").stdout.decode().splitlines()[0].startswith('{"title": "قمة عربية", "id"')
    csv = tmp_path / "in.csv"
    csv.write_text("id,title,text\nc1,عنوان,رفع البنك المركزي سعر الفائدة\n", encoding="utf-8")
    assert json.loads(tagger(str(csv), "--keep", "title").stdout)["title"] == "عنوان"


def test_keep_refuses_fields_the_output_has(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "text": "نص"}\n', encoding="utf-8")
    for name in ("id", "scores"):
        r = tagger(str(src), "--keep", f"title,{name}")
        assert r.returncode == 2 and f"--keep: cannot keep ['{name}']" in r.stderr.decode(), r.stderr

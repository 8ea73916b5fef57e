"""Spark (local mode): tag_dataframe and `tagger spark-tag` give the CLI's output for the same documents.

pyspark is the optional ``spark`` extra, which CI installs (.ci/run): when it is missing these tests
fail with that message instead of skipping, so CI cannot silently stop testing Spark. One local[2]
session serves every test here (a JVM start costs ~15 s).
"""
from __future__ import annotations

import gzip
import json
import lzma
import os
import sys
from pathlib import Path

import pytest

from tagger.artifacts import LoadedModel
from tagger.batch import BatchConfig, run_batch


@pytest.fixture(scope="session")
def spark():
    try:
        import pyarrow  # noqa: F401
        from pyspark.sql import SparkSession
    except ImportError as e:
        pytest.fail(f"{e.name} is not installed: the Spark tests need the spark extra "
                    f"(pip install -e '.[spark]'; .ci/run installs it)", pytrace=False)
    os.environ["PYSPARK_PYTHON"] = sys.executable  # executors' Python workers import this checkout's tagger
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]").appName("tagger-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "64")  # several batches per partition
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def rows(shared_dir: Path) -> list[dict]:
    """200 real articles, plus rows the tagger must reject."""
    with lzma.open(shared_dir / "corpus/ant-train.jsonl.xz", "rt", encoding="utf-8") as f:
        out = [{"id": r["id"], "title": r["title"], "text": r["text"], "url": r["url"], "tags": ["سياسة", "عاجل"]}
               for r in (json.loads(line) for _, line in zip(range(200), f))]
    out[10]["text"] = out[10]["title"] = ""  # nothing to tag (a headline alone would be tagged)
    out[20]["text"] = "كلمة " * 25_000  # over the 100,000-character limit
    out[30]["tags"] = None
    return out


@pytest.fixture(scope="module")
def cli_output(tmp_path_factory: pytest.TempPathFactory, rows: list[dict], loaded: LoadedModel) -> tuple[dict, dict]:
    """The batch CLI's output and rejects for the same rows, by id."""
    d = tmp_path_factory.mktemp("cli")
    src = d / "in.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    run_batch(BatchConfig(inputs=(str(src),), output=d / "out.jsonl"), loaded)
    out = {o["id"]: o for o in map(json.loads, (d / "out.jsonl").read_text("utf-8").splitlines())}
    rej = {o["id"]: o for o in map(json.loads, (d / "out.jsonl.rejects.jsonl").read_text("utf-8").splitlines())}
    assert len(out) == 198 and set(rej) == {rows[10]["id"], rows[20]["id"]}
    return out, rej


def _text_parts(folder: Path) -> list[str]:
    """The lines of a Spark JSON-lines output folder (gzipped text parts), in part order."""
    out = []
    for part in sorted(folder.glob("part-*.gz")):
        with gzip.open(part, "rt", encoding="utf-8") as f:
            out += f.read().splitlines()
    return out


def _json_parts(folder: Path) -> list[dict]:
    """The objects of a Spark JSON-lines output folder."""
    return [json.loads(line) for line in _text_parts(folder)]


def test_tag_dataframe_equals_the_cli(spark, rows: list[dict], cli_output: tuple[dict, dict], loaded: LoadedModel) -> None:
    from tagger.spark import OUTPUT_COLUMNS, row_to_json, tag_dataframe

    df = spark.createDataFrame(rows, "id string, title string, text string, url string, tags array<string>")
    tagged = tag_dataframe(df.repartition(3), loaded=loaded, keep=["url"])
    assert tagged.columns == ["url", *OUTPUT_COLUMNS]
    got = [r.asDict(recursive=True) for r in tagged.collect()]
    assert len(got) == len(rows)  # nothing dropped: rejects come back as rows with a reason
    out, rej = cli_output
    ok = {r["id"]: row_to_json(r) for r in got if r["reject_reason"] is None}
    assert ok == out
    bad = {r["id"]: (r["reject_reason"], r["reject_detail"]) for r in got if r["reject_reason"] is not None}
    assert bad == {k: (v["reason"], v["detail"]) for k, v in rej.items()}
    urls = {r["id"]: r["url"] for r in rows}
    assert all(r["url"] == urls[r["id"]] for r in got)


def test_spark_tag_command_parquet_and_jsonl(spark, tmp_path: Path, rows: list[dict], cli_output: tuple[dict, dict],
                                             loaded: LoadedModel) -> None:
    from tagger.cli import main

    out, rej = cli_output
    spark.createDataFrame(rows, "id string, title string, text string, url string, tags array<string>") \
        .write.parquet(str(tmp_path / "in.parquet"))
    assert main(["spark-tag", "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out.parquet"),
                 "--keep", "url"]) == 0
    got = {r["id"]: r.asDict(recursive=True) for r in spark.read.parquet(str(tmp_path / "out.parquet")).collect()}
    from tagger.spark import row_to_json

    assert {k: row_to_json(v) for k, v in got.items()} == out
    bad = spark.read.parquet(str(tmp_path / "out.parquet_rejects")).collect()
    assert {r["id"]: (r["reason"], r["detail"]) for r in bad} == {k: (v["reason"], v["detail"]) for k, v in rej.items()}
    # A Parquet reject names its file and row (1-based), as a `tagger tag` reject names file and line.
    import pyarrow.parquet as pq

    for r in bad:
        assert Path(r["source"]).parent == tmp_path / "in.parquet" and r["source"].endswith(".parquet")
        assert pq.read_table(r["source"]).column("id")[r["line"] - 1].as_py() == r["id"]
    # Existing output is not overwritten without --force.
    assert main(["spark-tag", "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out.parquet")]) == 2

    # JSON lines in and out: every line comes out as `tagger tag` (run_batch) makes it, tagged or
    # rejected with the same reason and detail, including the lines Spark's own JSON reader gets
    # wrong: invalid UTF-8 (it killed the job), "text": 42 among string texts (Spark's column is a
    # string column holding "42", which was tagged), a JSON array or string (a corrupt record to
    # Spark, not_an_object to the CLI). Blank lines are not records.
    src = tmp_path / "in.jsonl"
    extra = [
        b'{"id": "torn", "te\n',
        b'{"id": "badutf8", "title": "\xd8\xb9\xd9\x82", "text": "\xd8\xb9\xff\xfe abc"}\n',
        b'{"id": "numtext", "text": 42, "url": "u"}\n',
        b'{"id": "floattitle", "title": 4.5, "text": "\xd8\xb9\xd9\x82\xd9\x88\xd8\xa8\xd8\xa7\xd8\xaa"}\n',
        b'{"id": true, "text": "x"}\n',
        b'[1, 2, 3]\n',
        b'"just a string"\n',
        b'\n',
        b'   \r\n',
        json.dumps({"id": 12345, "title": rows[0]["title"], "text": rows[0]["text"]}, ensure_ascii=False).encode(),
    ]  # the last line has no "\n"
    src.write_bytes(b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows[:50]) + b"".join(extra))
    run_batch(BatchConfig(inputs=(str(src),), output=tmp_path / "cli.jsonl"), loaded)
    cli_out = {o["id"]: o for o in map(json.loads, (tmp_path / "cli.jsonl").read_text("utf-8").splitlines())}
    cli_rej = [json.loads(line) for line in (tmp_path / "cli.jsonl.rejects.jsonl").read_text("utf-8").splitlines()]
    assert len(cli_out) == 49 and len(cli_rej) == 2 + 7  # rows[10], rows[20] and all the odd lines but one

    # Small splits: the file is read by several tasks, and line numbers still count from its start.
    spark.conf.set("spark.sql.files.maxPartitionBytes", "16384")
    try:
        assert main(["spark-tag", "--input", str(src), "--output", str(tmp_path / "out_json"), "--keep", "url"]) == 0
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    # Byte for byte the lines `tagger tag` writes (scores as 0.0003, not 3.0E-4), the kept column first.
    urls = {r["id"]: r["url"] for r in rows} | {"numtext": "u"}
    cli_lines = (tmp_path / "cli.jsonl").read_text("utf-8").splitlines()
    lines = _text_parts(tmp_path / "out_json")
    assert sorted(lines) == sorted(
        f'{{"url": {json.dumps(urls.get(json.loads(line)["id"]), ensure_ascii=False)}, {line[1:]}' for line in cli_lines)
    assert any('": 0.000' in line for line in cli_lines) and not any("E-" in line for line in lines)
    # Rejects: the CLI's reject lines, source (the input as given) and line included.
    rejected = _text_parts(tmp_path / "out_json_rejects")
    cli_rej_lines = (tmp_path / "cli.jsonl.rejects.jsonl").read_text("utf-8").splitlines()
    assert sorted(rejected) == sorted(
        f'{{"url": {json.dumps(urls.get(r["id"]) if r["id"] is not None else None, ensure_ascii=False)}, {line[1:]}'
        for r, line in zip(cli_rej, cli_rej_lines))
    assert {json.loads(line)["source"] for line in rejected} == {str(src)}

    # A text field numeric on every line: Spark infers a bigint column, which tag_dataframe refuses;
    # spark-tag reads the lines, so each is rejected as `tagger tag` rejects it (the job goes on).
    src = tmp_path / "numbers.jsonl"
    src.write_text('{"id": "n1", "text": 42}\n{"id": "n2", "text": 7.5}\n'
                   + json.dumps({"id": "h1", "title": rows[0]["title"]}, ensure_ascii=False) + "\n", "utf-8")
    assert main(["spark-tag", "--input", str(src), "--output", str(tmp_path / "out_numbers"),
                 "--output-format", "parquet"]) == 0
    assert [r["id"] for r in spark.read.parquet(str(tmp_path / "out_numbers")).collect()] == ["h1"]  # a headline alone
    got = spark.read.parquet(str(tmp_path / "out_numbers_rejects")).collect()
    assert sorted((r["source"], r["line"], r["id"], r["reason"], r["detail"]) for r in got) == [
        (str(src), 1, "n1", "invalid_field", "field 'text' must be a string, got int"),
        (str(src), 2, "n2", "invalid_field", "field 'text' must be a string, got float"),
    ]


def test_invalid_utf8_in_a_column_rejects_that_row_only(spark, tmp_path: Path, rows: list[dict],
                                                        cli_output: tuple[dict, dict], loaded: LoadedModel) -> None:
    """Spark's strings are unchecked bytes (Parquet, its JSON reader, a binary→string cast): one bad
    value used to kill the whole job in Arrow's to_pylist. Now that row is an invalid_utf8 reject,
    naming the column, and every other row is tagged exactly as the CLI tags it."""
    from pyspark.sql import functions as F

    from tagger.spark import row_to_json, tag_dataframe

    out, rej = cli_output
    df = spark.createDataFrame(rows[:60], "id string, title string, text string, url string, tags array<string>")
    bad = F.unhex(F.lit("D8B9FFFE20616263")).cast("string")  # "ع", then bytes that are not UTF-8, " abc"
    ids = [r["id"] for r in rows[:60]]

    def spoil(column: str, row: int, value):
        return F.when(F.col("id") == ids[row], value).otherwise(F.col(column)).alias(column)

    df = df.select(spoil("id", 5, F.unhex(F.lit("626164FF")).cast("string")),  # the id itself: b"bad\xff"
                   spoil("title", 2, bad), spoil("text", 1, bad), spoil("url", 4, bad),  # url is only kept
                   spoil("tags", 3, F.array(F.lit("سياسة"), bad)))
    df.write.parquet(str(tmp_path / "bad.parquet"))
    tagged = tag_dataframe(spark.read.parquet(str(tmp_path / "bad.parquet")), loaded=loaded, keep=["url"])
    got = [r.asDict(recursive=True) for r in tagged.collect()]
    assert len(got) == 60
    rejected = {r["id"]: (r["reject_reason"], r["reject_detail"]) for r in got if r["reject_reason"] is not None}
    assert rejected == {
        ids[1]: ("invalid_utf8", "invalid UTF-8 in column 'text' at byte 2"),
        ids[2]: ("invalid_utf8", "invalid UTF-8 in column 'title' at byte 2"),
        ids[3]: ("invalid_utf8", "invalid UTF-8 in column 'tags'"),
        "bad\ufffd": ("invalid_utf8", "invalid UTF-8 in column 'id' at byte 3"),  # named as well as it can be
        **{k: (v["reason"], v["detail"]) for k, v in rej.items() if k in ids},
    }
    ok = {r["id"]: row_to_json(r) for r in got if r["reject_reason"] is None}
    assert ok == {k: out[k] for k in ids if k in out and k not in (ids[1], ids[2], ids[3], ids[5])}
    assert [r["url"] for r in got if r["id"] == ids[4]] == ["ع\ufffd\ufffd abc"]  # passed through untouched

    # JSON read by Spark itself: a line with invalid UTF-8 becomes a _corrupt_record holding those
    # bytes (that column killed the job too). Such lines are read as `tagger tag` reads them.
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows[:5])
                    + b'{"id": "badutf8", "text": "\xd8\xb9\xff\xfe abc"}\n[1, 2, 3]\n{"id": "torn", "te\n')
    run_batch(BatchConfig(inputs=(str(src),), output=tmp_path / "cli.jsonl"), loaded)
    cli_rej = [json.loads(line) for line in (tmp_path / "cli.jsonl.rejects.jsonl").read_text("utf-8").splitlines()]
    got = [r.asDict(recursive=True) for r in tag_dataframe(spark.read.json(str(src)), loaded=loaded).collect()]
    assert {r["id"]: row_to_json(r) for r in got if r["reject_reason"] is None} == {r["id"]: out[r["id"]]
                                                                                  for r in rows[:5]}
    assert sorted((r["reject_reason"], r["reject_detail"]) for r in got if r["reject_reason"] is not None) == \
        sorted((r["reason"], r["detail"]) for r in cli_rej) == sorted([
            ("invalid_utf8", "invalid UTF-8 at byte 29 of the line"),
            ("not_an_object", "expected a JSON object, got list"),
            ("invalid_json", "invalid JSON (Invalid control character at column 19)")])


def test_a_non_string_text_column_is_refused_up_front(spark, tmp_path: Path, loaded: LoadedModel, capsys) -> None:
    """No value of a bigint text column can be tagged (`tagger tag` rejects a number as invalid_field):
    a typed DataFrame says so in its schema, so tag_dataframe refuses it before any job runs."""
    from tagger.cli import main
    from tagger.readers import Fields
    from tagger.spark import tag_dataframe

    df = spark.createDataFrame([("a", 42, "x", 1.5, bytearray(b"x"))],
                               "id string, text bigint, s string, h double, b binary")
    with pytest.raises(ValueError, match=r"column 'text' \(text\) has type bigint, not string"):
        tag_dataframe(df, loaded=loaded)
    with pytest.raises(ValueError, match=r"column 'h' \(title\) has type double, not string"):
        tag_dataframe(df, loaded=loaded, fields=Fields(text="s", title="h"))
    with pytest.raises(ValueError, match=r"column 'b' \(raw\) has type binary.*binaryAsString"):
        tag_dataframe(df, loaded=loaded, fields=Fields(text="s", raw="b"))
    tag_dataframe(df, loaded=loaded, fields=Fields(text="s"))  # string columns are fine (and nothing runs yet)
    df.write.parquet(str(tmp_path / "numbers.parquet"))
    assert main(["spark-tag", "--input", str(tmp_path / "numbers.parquet"), "--output", str(tmp_path / "out")]) == 2
    assert "column 'text' (text) has type bigint, not string" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_headline_only_dataframe_is_tagged_like_the_cli(spark, tmp_path: Path, rows: list[dict],
                                                         loaded: LoadedModel) -> None:
    """A DataFrame of headlines (no text or raw column) is tagged, as `tagger tag` tags a record with only
    a title; a DataFrame with none of the three columns is refused before any job runs."""
    from tagger.spark import row_to_json, tag_dataframe

    heads = [{"id": r["id"], "title": r["title"]} for r in rows[:40] if r["title"]]
    src = tmp_path / "heads.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in heads), "utf-8")
    run_batch(BatchConfig(inputs=(str(src),), output=tmp_path / "out.jsonl"), loaded)
    cli = {o["id"]: o for o in map(json.loads, (tmp_path / "out.jsonl").read_text("utf-8").splitlines())}
    df = spark.createDataFrame([(r["id"], r["title"]) for r in heads], "id string, title string")
    got = {r["id"]: row_to_json(r.asDict(recursive=True)) for r in tag_dataframe(df, loaded=loaded).collect()}
    assert len(got) == len(heads) > 30 and got == cli
    assert any(o["topics"] for o in got.values())
    with pytest.raises(ValueError, match=r"no 'text', 'raw' or 'title' column; columns: \['id', 'body'\]"):
        tag_dataframe(spark.createDataFrame([("a", "x")], "id string, body string"), loaded=loaded)


def test_an_existing_output_is_refused_before_spark_starts(tmp_path: Path) -> None:
    """Issue 14: an existing --output was reported ~10 s later, in Spark's words. Now it is one line
    before any JVM: JAVA_HOME points nowhere here, so a Spark start would fail with another message."""
    import subprocess

    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "text": "نص"}\n', "utf-8")
    (tmp_path / "out").mkdir()
    env = os.environ | {"JAVA_HOME": str(tmp_path / "no-java")}
    for args, message in [
        (["--output", str(tmp_path / "out")], f"{tmp_path / 'out'} exists; use --force to overwrite it"),
        (["--output", str(tmp_path / "new"), "--rejects", str(tmp_path / "out")],
         f"{tmp_path / 'out'} exists; use --force to overwrite it"),
        (["--output", f"file://{tmp_path / 'out'}"], f"file://{tmp_path / 'out'} exists; use --force to overwrite it"),
    ]:
        p = subprocess.run([sys.executable, "-m", "tagger", "spark-tag", "--input", str(src), *args],
                           capture_output=True, env=env, timeout=120)
        assert p.returncode == 2 and p.stderr.decode() == f"tagger spark-tag: error: {message}\n", p.stderr.decode()
    p = subprocess.run([sys.executable, "-m", "tagger", "spark-tag", "--input", str(tmp_path / "missing.jsonl"),
                        "--output", str(tmp_path / "new")], capture_output=True, env=env, timeout=120)
    assert p.returncode == 2
    assert p.stderr.decode() == f"tagger spark-tag: error: {tmp_path / 'missing.jsonl'}: No such file or directory\n"

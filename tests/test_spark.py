"""Spark (local mode): tag_dataframe and `tagger spark-tag` give the CLI's output for the same documents.

pyspark is the optional ``spark`` extra, which CI installs (.ci/run): when it is missing these tests
fail with that message instead of skipping, so CI cannot silently stop testing Spark. One local[2]
session serves every test here (a JVM start costs ~15 s).
"""
from __future__ import annotations

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


def test_spark_tag_command_parquet_and_jsonl(spark, tmp_path: Path, rows: list[dict], cli_output: tuple[dict, dict]) -> None:
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
    assert {r["id"]: r["reject_reason"] for r in bad} == {k: v["reason"] for k, v in rej.items()}
    # Existing output is not overwritten without --force.
    assert main(["spark-tag", "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out.parquet")]) == 2

    # JSON lines in and out, with a line Spark cannot parse: it is rejected, not lost.
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:50]) + '{"id": "torn", "te\n', "utf-8")
    assert main(["spark-tag", "--input", str(src), "--output", str(tmp_path / "out_json")]) == 0
    lines = [json.loads(line) for part in sorted((tmp_path / "out_json").glob("part-*.json.gz"))
             for line in __import__("gzip").open(part, "rt", encoding="utf-8")]
    assert {o["id"]: o for o in lines} == {k: v for k, v in out.items() if k in {r["id"] for r in rows[:50]}}
    rejected = [json.loads(line) for part in sorted((tmp_path / "out_json_rejects").glob("part-*.json.gz"))
                for line in __import__("gzip").open(part, "rt", encoding="utf-8")]
    assert sorted(r["reject_reason"] for r in rejected) == ["empty_text", "invalid_json", "too_long"]

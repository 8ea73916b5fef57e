"""Tag a Spark DataFrame with the same predict path as the CLI and the server.

    from tagger.spark import tag_dataframe
    tagged = tag_dataframe(spark.read.parquet("articles.parquet"))   # id/title/text columns
    tagged.where("reject_reason IS NULL").write.parquet("tagged.parquet")

How it runs: the driver loads and verifies the model once and broadcasts its two files (manifest and
weights, a few MB); each executor's Python worker writes them to a temporary folder, loads them with
the usual sha256 check and keeps the Tagger for the life of the process, so the model crosses the
network once per executor and is unpickled once per Python worker, never per row or per batch.
Rows are tagged with ``mapInArrow``, one Arrow batch at a time
(``spark.sql.execution.arrow.maxRecordsPerBatch`` rows), through
:class:`tagger.batch.ChunkTagger` → :meth:`tagger.tagger.Tagger.tag_many`, so each tagged row
carries exactly the values of the CLI's output line for the same document, and a row that cannot be
tagged comes out with ``reject_reason``/``reject_detail`` instead of topics (nothing is dropped).

pyspark, pyarrow and pandas are the optional ``spark`` extra: ``pip install 'tagger[spark]'``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.artifacts import MANIFEST_FILE, LoadedModel, load_model
from tagger.batch import ChunkTagger
from tagger.paths import default_model_root
from tagger.readers import Chunk, Fields, Reject
from tagger.tagger import DEFAULT_MAX_CHARS, Tagger, TagOptions

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

__all__ = ["tag_dataframe", "output_schema", "row_to_json", "get_session", "OUTPUT_COLUMNS", "CORRUPT_RECORD"]

#: Columns tag_dataframe adds, in the CLI's output order, then the two reject columns.
OUTPUT_COLUMNS = ("id", "topics", "scores", "dropped_tags", "model_version", "truncated", "reject_reason", "reject_detail")
#: Spark's column for JSON lines it could not parse (PERMISSIVE mode); such rows are rejected.
CORRUPT_RECORD = "_corrupt_record"


def _require_pyspark() -> None:
    try:
        import pyarrow  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"tagger.spark needs pyspark and pyarrow ({e.name} is missing): pip install 'tagger[spark]'"
        ) from e


def output_schema(topics: Sequence[str], passthrough: StructType | None = None) -> StructType:
    """The Spark schema of tag_dataframe's result: passthrough columns, then OUTPUT_COLUMNS.
    ``scores`` is a struct with one field per topic (in model order), like the CLI's JSON object."""
    from pyspark.sql.types import (
        ArrayType,
        BooleanType,
        DoubleType,
        StringType,
        StructField,
        StructType,
    )

    evidence = ArrayType(StructType([StructField("ngram", StringType()), StructField("weight", DoubleType())]))
    topic = StructType([StructField("topic", StringType()), StructField("score", DoubleType()),
                        StructField("evidence", evidence)])
    fields = list(passthrough.fields) if passthrough is not None else []
    return StructType(fields + [
        StructField("id", StringType()),
        StructField("topics", ArrayType(topic)),
        StructField("scores", StructType([StructField(t, DoubleType()) for t in topics])),
        StructField("dropped_tags", ArrayType(StringType())),
        StructField("model_version", StringType()),
        StructField("truncated", BooleanType()),
        StructField("reject_reason", StringType()),
        StructField("reject_detail", StringType()),
    ])


def _arrow_types(topics: Sequence[str]) -> dict[str, pa.DataType]:
    import pyarrow as pa

    evidence = pa.list_(pa.struct([("ngram", pa.string()), ("weight", pa.float64())]))
    return {
        "id": pa.string(),
        "topics": pa.list_(pa.struct([("topic", pa.string()), ("score", pa.float64()), ("evidence", evidence)])),
        "scores": pa.struct([(t, pa.float64()) for t in topics]),
        "dropped_tags": pa.list_(pa.string()),
        "model_version": pa.string(),
        "truncated": pa.bool_(),
        "reject_reason": pa.string(),
        "reject_detail": pa.string(),
    }


# ------------------------------------------------------------------------- executor side
# One Tagger per Python worker process, keyed by the model's sha256: tasks reuse it.
_EXECUTOR_TAGGERS: dict[tuple[str, int, str], Tagger] = {}
_EXECUTOR_LOCK = threading.Lock()


def _executor_tagger(files: dict[str, bytes], sha256: str, max_chars: int, on_too_long: str) -> Tagger:
    key = (sha256, max_chars, on_too_long)
    with _EXECUTOR_LOCK:
        tagger = _EXECUTOR_TAGGERS.get(key)
        if tagger is None:
            tmp = Path(tempfile.mkdtemp(prefix="tagger-model-"))
            try:
                for name, data in files.items():
                    (tmp / name).write_bytes(data)
                loaded = load_model(tmp)  # the usual verification: sha256 before unpickling, versions
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            tagger = Tagger(loaded, max_chars=max_chars, on_too_long=on_too_long)
            _EXECUTOR_TAGGERS[key] = tagger
        return tagger


def _tag_batches_fn(
    broadcast: Any, sha256: str, topics: tuple[str, ...], fields: Fields, options: TagOptions, max_chars: int,
    on_too_long: str, passthrough: tuple[str, ...],
):
    """The mapInArrow function (a closure: cloudpickle ships it with these settings)."""

    def tag_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        worker = ChunkTagger(_executor_tagger(broadcast.value, sha256, max_chars, on_too_long), options, fields)
        types = _arrow_types(topics)
        for batch in batches:
            rows = batch.to_pylist()
            n = len(rows)
            chunk = Chunk(0, "item", "spark", [None] * n, rows, [""] * n)
            results = worker.results(chunk)
            cols: dict[str, list[Any]] = {k: [] for k in types}
            for row, r in zip(rows, results):
                if row.get(CORRUPT_RECORD) is not None:
                    r = Reject("spark", None, None, "invalid_json", "Spark could not parse this JSON line")
                if isinstance(r, Reject):
                    rid = row.get(fields.id)
                    out = dict.fromkeys(types)
                    out.update(id=r.id if r.id is not None else (None if rid is None else str(rid)),
                               reject_reason=r.reason, reject_detail=r.detail)
                else:
                    out = r.to_json()
                    out["truncated"] = True if out.get("truncated") else None
                    out["reject_reason"] = out["reject_detail"] = None
                    for t in out["topics"]:
                        t.setdefault("evidence", None)
                for k in types:
                    cols[k].append(out.get(k))
            arrays = [batch.column(name) for name in passthrough]
            arrays += [pa.array(cols[k], type=types[k]) for k in types]
            yield pa.RecordBatch.from_arrays(arrays, names=[*passthrough, *types])

    return tag_batches


# ---------------------------------------------------------------------------- driver side
def tag_dataframe(
    df: DataFrame,
    *,
    model: Path | str | None = None,
    loaded: LoadedModel | None = None,
    fields: Fields = Fields(),
    options: TagOptions = TagOptions(),
    max_chars: int = DEFAULT_MAX_CHARS,
    on_too_long: str = "reject",
    keep: Sequence[str] = (),
) -> DataFrame:
    """Tag every row of ``df``: the result has the ``keep`` columns of ``df``, then OUTPUT_COLUMNS.

    ``df`` needs the ``fields.text`` (or ``fields.raw``) column and should have ``fields.id``; title
    and tags columns are used when present. Lazy, like any DataFrame transformation.
    """
    _require_pyspark()
    loaded = loaded or load_model(Path(model) if model else default_model_root())
    Tagger(loaded, max_chars=max_chars, on_too_long=on_too_long)  # fail here, not on executors, on bad settings
    options.validate(loaded.model.topics)
    columns = set(df.columns)
    if fields.text not in columns and fields.raw not in columns:
        raise ValueError(f"the DataFrame has no {fields.text!r} (or {fields.raw!r}) column; columns: {df.columns}")
    missing = [c for c in keep if c not in columns]
    if missing:
        raise ValueError(f"columns to keep {missing} are not in the DataFrame")
    clash = [c for c in keep if c in OUTPUT_COLUMNS]
    if clash:
        raise ValueError(f"cannot keep {clash}: tag_dataframe writes columns of that name")

    manifest = loaded.manifest
    files = {MANIFEST_FILE: (loaded.path / MANIFEST_FILE).read_bytes(),
             manifest.get("model_file", "model.joblib"): (loaded.path / manifest.get("model_file", "model.joblib")).read_bytes()}
    spark = df.sparkSession
    broadcast = spark.sparkContext.broadcast(files)
    fn = _tag_batches_fn(broadcast, manifest["sha256"], tuple(loaded.model.topics), fields, options, max_chars,
                         on_too_long, tuple(keep))
    from pyspark.sql.types import StructType

    passthrough = StructType([df.schema[c] for c in keep]) if keep else None
    return df.mapInArrow(fn, output_schema(loaded.model.topics, passthrough))


def row_to_json(row: dict[str, Any]) -> dict[str, Any]:
    """A tagged row (``Row.asDict(recursive=True)``) as the CLI's JSON object for the same document."""
    out = {
        "id": row["id"],
        "topics": [
            {"topic": t["topic"], "score": t["score"]} | ({"evidence": t["evidence"]} if t.get("evidence") else {})
            for t in row["topics"]
        ],
        "scores": dict(row["scores"]),
        "dropped_tags": list(row["dropped_tags"]),
        "model_version": row["model_version"],
    }
    if row.get("truncated"):
        out["truncated"] = True
    return out


def get_session(app: str = "tagger", master: str | None = None) -> SparkSession:
    """The active SparkSession, or a new one (local mode on every core unless spark-submit or
    ``master`` says otherwise). Points ``PYSPARK_PYTHON`` at this interpreter when unset, so local
    Python workers import the same tagger."""
    _require_pyspark()
    import sys

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app)
    if master:
        builder = builder.master(master)
    return builder.getOrCreate()

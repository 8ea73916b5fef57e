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

Invalid UTF-8 in a string column (Spark's strings are bytes it never checks) rejects that row as
``invalid_utf8``, as ``tagger tag`` rejects such a record; the title/text/raw columns must be
strings. A typed column cannot tell the JSON string ``"42"`` from the number ``42`` (Spark's JSON
reader writes both as "42" into a string column), so for JSON lines pass each row's line as read
(``json_column``, as ``tagger spark-tag`` does): every line is then decoded, parsed and checked by
the CLI's own code, with the CLI's reject reasons and details.

pyspark, pyarrow and pandas are the optional ``spark`` extra: ``pip install 'tagger[spark]'``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.artifacts import MANIFEST_FILE, LoadedModel, load_model
from tagger.batch import ChunkTagger
from tagger.io import loads_json
from tagger.kept import with_kept
from tagger.paths import default_model_root
from tagger.readers import Chunk, Fields, Reject, to_document
from tagger.tagger import DEFAULT_MAX_CHARS, Tagger, TagOptions, TagResult

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

__all__ = ["tag_dataframe", "output_schema", "row_to_json", "get_session", "OUTPUT_COLUMNS", "CORRUPT_RECORD",
           "TEXT_TYPES"]

#: Columns tag_dataframe adds, in the CLI's output order, then the reject columns (a reject line's
#: reason, detail, source and line; source and line when the rows' ``origin`` is given).
OUTPUT_COLUMNS = ("id", "topics", "scores", "dropped_tags", "model_version", "truncated", "reject_reason", "reject_detail",
                  "reject_source", "reject_line")
#: Spark's column for JSON lines it could not parse (PERMISSIVE mode); such a row is read from that line,
#: as ``tagger tag`` would (invalid_utf8, invalid_json, not_an_object, ...).
CORRUPT_RECORD = "_corrupt_record"
#: Spark types a title/text/raw column may have; anything else is refused up front (void: all null).
TEXT_TYPES = ("string", "char", "varchar", "void")


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
        LongType,
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
        StructField("reject_source", StringType()),
        StructField("reject_line", LongType()),
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
        "reject_source": pa.string(),
        "reject_line": pa.int64(),
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
                manifest = json.loads(files[MANIFEST_FILE])
                # <name>/<version>, as published: loading checks a model sits in the folders it names.
                vdir = tmp / manifest["name"] / str(manifest["version"])
                vdir.mkdir(parents=True)
                for name, data in files.items():
                    (vdir / name).write_bytes(data)
                loaded = load_model(vdir)  # the usual verification: sha256, arrays only, versions
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            tagger = Tagger(loaded, max_chars=max_chars, on_too_long=on_too_long)
            _EXECUTOR_TAGGERS[key] = tagger
        return tagger


def _column_values(column: pa.Array, name: str, bad: dict[int, str]) -> list[Any]:
    """``column.to_pylist()``, except that a value holding invalid UTF-8 does not raise: it comes back
    decoded with U+FFFD (good enough to name the row) and its row goes into ``bad`` (row → detail).

    Arrow's own conversion is the fast path; only a batch that actually holds bad bytes pays for the
    per-value decoding (string columns are handed over as binary, nested ones element by element)."""
    try:
        return column.to_pylist()
    except UnicodeDecodeError:
        pass
    import pyarrow as pa

    t = column.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        out: list[Any] = _binary(column)
        for i, b in enumerate(out):
            if b is not None:
                try:
                    out[i] = b.decode("utf-8")
                except UnicodeDecodeError as e:
                    out[i] = b.decode("utf-8", "replace")
                    bad.setdefault(i, f"invalid UTF-8 in column {name!r} at byte {e.start}")
        return out
    out = []
    for i in range(len(column)):  # lists or structs of strings (tags): rare, and only this batch
        try:
            out.append(column[i].as_py())
        except UnicodeDecodeError:
            out.append(None)
            bad.setdefault(i, f"invalid UTF-8 in column {name!r}")
    return out


def _binary(column: pa.Array) -> list[bytes | None]:
    """A string or binary column's values as bytes (no decoding, so no UnicodeDecodeError)."""
    import pyarrow as pa

    t = column.type
    if pa.types.is_string(t):
        column = column.cast(pa.binary())
    elif pa.types.is_large_string(t):
        column = column.cast(pa.large_binary())
    return column.to_pylist()


def _corrupt_line(line: bytes, fields: Fields) -> Any:
    """A JSON line Spark's reader could not parse (its ``_corrupt_record``), read as ``tagger tag`` reads
    it: (reason, detail) for bytes that are not UTF-8 or text that is not JSON, with the CLI's words;
    else the JSON value, to be built and checked like any row (an array is not_an_object, ...)."""
    line += b"\n"  # Spark drops the line's end; the CLI parses it (same message for a torn string)
    r = to_document("json", "spark", None, line, "", fields)
    if isinstance(r, Reject) and r.reason in ("invalid_utf8", "invalid_json"):
        return (r.reason, r.detail)
    return loads_json(line.decode("utf-8"))


def rendered_line(result: TagResult | Reject, kept: dict[str, Any] | None = None) -> str:
    """The line `tagger tag` writes for a result (output) or a reject (rejects file), byte for byte,
    with ``kept`` columns first when given (JSON values; a date or other non-JSON value as its text)."""
    line = result.to_json_line() if isinstance(result, TagResult) else json.dumps(result.to_json(), ensure_ascii=False)
    return with_kept(line, kept)


def _tag_batches_fn(
    broadcast: Any, sha256: str, topics: tuple[str, ...], fields: Fields, options: TagOptions, max_chars: int,
    on_too_long: str, passthrough: tuple[str, ...], json_column: str | None = None,
    origin: tuple[str, str] | None = None, rendered: str | None = None,
):
    """The mapInArrow function (a closure: cloudpickle ships it with these settings)."""

    def tag_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        worker = ChunkTagger(_executor_tagger(broadcast.value, sha256, max_chars, on_too_long), options, fields)
        types = _arrow_types(topics)
        # Only the columns a document is built from are converted to Python (not url, html, ...).
        wanted = list(dict.fromkeys((fields.id, fields.title, fields.text, fields.raw, fields.tags)))
        for batch in batches:
            n = batch.num_rows
            names = batch.schema.names
            bad: dict[int, str] = {}  # rows with invalid UTF-8 in a column read → detail
            ids: list[Any] = (_column_values(batch.column(fields.id), fields.id, bad) if fields.id in names
                              else [None] * n)
            if json_column is not None:
                # Each row's JSON line, as read: decoded, parsed and checked exactly as `tagger tag` does a
                # JSONL line. The id column (if any) is the id of a line without one; the line decides.
                data: list[Any] = _binary(batch.column(json_column))
                chunk = Chunk(0, "json", "spark", [None] * n, data, ["" if i is None else str(i) for i in ids])
            else:
                cols = {name: ids if name == fields.id else _column_values(batch.column(name), name, bad)
                        for name in wanted if name in names}
                data = [dict(zip(cols, values)) for values in zip(*cols.values())] if cols else [{}] * n
                for i, detail in bad.items():
                    data[i] = ("invalid_utf8", detail)  # to_document turns (reason, detail) into that Reject
                if CORRUPT_RECORD in names and batch.column(CORRUPT_RECORD).null_count < n:
                    for i, line in enumerate(_binary(batch.column(CORRUPT_RECORD))):
                        if line is not None:
                            data[i] = _corrupt_line(line, fields)
                chunk = Chunk(0, "item", "spark", [None] * n, data, [""] * n)
            results = worker.results(chunk)
            if origin is not None:  # where each row came from: rejects name it as `tagger tag` does
                sources = batch.column(origin[0]).to_pylist()
                lines = batch.column(origin[1]).to_pylist()
                results = [dataclasses.replace(r, source=sources[i], line=lines[i]) if isinstance(r, Reject) else r
                           for i, r in enumerate(results)]
            cols_out: dict[str, list[Any]] = {k: [] for k in types}
            for rid, r in zip(ids, results):
                if isinstance(r, Reject):
                    out = dict.fromkeys(types)
                    out.update(id=r.id if r.id is not None else (None if rid is None else str(rid)),
                               reject_reason=r.reason, reject_detail=r.detail)
                    if origin is not None:
                        out.update(reject_source=r.source, reject_line=r.line)
                else:
                    out = r.to_json()
                    out["truncated"] = True if out.get("truncated") else None
                    out["reject_reason"] = out["reject_detail"] = None
                    for t in out["topics"]:
                        t.setdefault("evidence", None)
                for k in types:
                    cols_out[k].append(out.get(k))
            arrays = [batch.column(name) for name in passthrough]
            arrays += [pa.array(cols_out[k], type=types[k]) for k in types]
            names_out = [*passthrough, *types]
            if rendered is not None:
                bad_kept: dict[int, str] = {}
                kept = {name: _column_values(batch.column(name), name, bad_kept) for name in passthrough}
                arrays.append(pa.array([
                    rendered_line(r, {name: kept[name][i] for name in passthrough})
                    for i, r in enumerate(results)], type=pa.string()))
                names_out.append(rendered)
            yield pa.RecordBatch.from_arrays(arrays, names=names_out)

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
    json_column: str | None = None,
    origin: tuple[str, str] | None = None,
    rendered: str | None = None,
) -> DataFrame:
    """Tag every row of ``df``: the result has the ``keep`` columns of ``df``, then OUTPUT_COLUMNS
    (then ``rendered``, if given).

    ``df`` needs a ``fields.text``, ``fields.raw`` or ``fields.title`` string column (a headline alone is
    tagged, as by ``tagger tag``) and should have ``fields.id``; tags are used when present. A row with
    invalid UTF-8 in one of these columns is rejected (``invalid_utf8``). Lazy, like any DataFrame
    transformation.

    ``json_column`` names a string or binary column holding each row's JSON line as read (e.g.
    ``spark.read.text``): documents are then built from it exactly as ``tagger tag`` builds them from a
    JSONL line (same checks, reject reasons and details: ``"text": 42`` is ``invalid_field``, bad bytes
    ``invalid_utf8``); the other field columns are not read, except ``fields.id`` as the id of a line
    without one and of a reject whose line has no readable id.

    ``origin`` names two columns of ``df``, each row's source (a file) and line number: a reject then
    says where its record is (``reject_source``, ``reject_line``), as ``tagger tag``'s rejects do.
    ``rendered`` names a string column to add: each row as the line ``tagger tag`` writes for it, the
    output line of a tagged row or the rejects-file line of a reject, byte for byte (scores as
    ``0.0003``, not Spark's ``3.0E-4``), with the ``keep`` columns first.

    Raises ValueError, before any job runs, when none of those columns exists or one of them is not a
    string column (such as the bigint Spark infers for ``"text": 42`` in every JSON line).
    """
    _require_pyspark()
    loaded = loaded or load_model(Path(model) if model else default_model_root())
    Tagger(loaded, max_chars=max_chars, on_too_long=on_too_long)  # fail here, not on executors, on bad settings
    options.validate(loaded.model.topics)
    columns = set(df.columns)
    if json_column is not None:
        if json_column not in columns:
            raise ValueError(f"the DataFrame has no {json_column!r} column (json_column); columns: {df.columns}")
        kind = df.schema[json_column].dataType.simpleString()
        if kind not in ("string", "binary"):
            raise ValueError(f"column {json_column!r} (json_column) has type {kind}: it must hold JSON lines "
                             f"(string or binary)")
    else:
        if not columns & {fields.text, fields.raw, fields.title}:
            # A headline alone is tagged (as `tagger tag` tags a record with only a title); no column at all is not.
            raise ValueError(f"the DataFrame has no {fields.text!r}, {fields.raw!r} or {fields.title!r} column; "
                             f"columns: {df.columns}")
        for role, name in (("text", fields.text), ("title", fields.title), ("raw", fields.raw)):
            if name not in columns:
                continue
            kind = df.schema[name].dataType.simpleString()
            if kind.split("(")[0].split()[0] not in TEXT_TYPES:
                hint = ("; Parquet strings stored without the UTF8 annotation read as binary: set "
                        "spark.sql.parquet.binaryAsString=true" if kind == "binary" else "")
                raise ValueError(
                    f"column {name!r} ({role}) has type {kind}, not string: `tagger tag` rejects every non-string "
                    f"{role} (invalid_field), so no row could be tagged from it. Cast it to string if it really "
                    f"holds text, or choose another column (--{role}-field, Fields({role}=...)){hint}")
    missing = [c for c in keep if c not in columns]
    if missing:
        raise ValueError(f"columns to keep {missing} are not in the DataFrame")
    clash = [c for c in keep if c in OUTPUT_COLUMNS or c == rendered]
    if rendered is not None:  # kept columns go into the rendered lines too, beside a reject's keys
        clash += [c for c in keep if c in ("source", "line", "reason", "detail")]
    if clash:
        raise ValueError(f"cannot keep {clash}: tag_dataframe writes columns of that name")
    missing = [c for c in origin or () if c not in columns]
    if missing:
        raise ValueError(f"origin columns {missing} are not in the DataFrame")

    manifest = loaded.manifest
    files = {MANIFEST_FILE: (loaded.path / MANIFEST_FILE).read_bytes(),
             manifest["model_file"]: (loaded.path / manifest["model_file"]).read_bytes()}
    spark = df.sparkSession
    broadcast = spark.sparkContext.broadcast(files)
    fn = _tag_batches_fn(broadcast, manifest["sha256"], tuple(loaded.model.topics), fields, options, max_chars,
                         on_too_long, tuple(keep), json_column, origin, rendered)
    from pyspark.sql.types import StringType, StructField, StructType

    passthrough = StructType([df.schema[c] for c in keep]) if keep else None
    schema = output_schema(loaded.model.topics, passthrough)
    if rendered is not None:
        schema = schema.add(StructField(rendered, StringType()))
    return df.mapInArrow(fn, schema)


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

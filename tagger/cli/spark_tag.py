"""`tagger spark-tag`: tag a parquet or JSONL dataset on Spark (local mode, or a cluster via spark-submit).

    tagger spark-tag --input articles.parquet --output tagged.parquet
    spark-submit --py-files tagger.zip tagger_main.py spark-tag --input s3a://… --output s3a://…  (docs/deploy.md)

Tagged rows go to --output, rows that cannot be tagged to --rejects (default OUTPUT_rejects), with
their reason, source file and line (the row, for Parquet); the two together hold every input row once.
A JSON line is decoded, parsed and checked by `tagger tag`'s own code (not Spark's JSON reader), so it
is tagged or rejected exactly as `tagger tag` would; Parquet title/text/raw columns must be string
columns (a row with bytes that are not UTF-8 is rejected as invalid_utf8). JSON-lines output is the
lines `tagger tag` writes, byte for byte (gzipped text parts, ``part-*.txt.gz``). A local output that
exists, or a local input that does not, is refused before Spark starts.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import urllib.parse

from tagger.cli import CLIError, positive_int
from tagger.cli._common import add_model_option, load
from tagger.readers import Fields
from tagger.tagger import DEFAULT_MAX_CHARS, TagOptions


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", "-i", required=True, help="parquet or JSON-lines file/folder (any Spark path)")
    p.add_argument("--output", "-o", required=True, help="where tagged rows go (a Spark output folder)")
    p.add_argument("--rejects", default=None, help="where rows that cannot be tagged go (default: OUTPUT_rejects)")
    p.add_argument("--format", choices=("auto", "parquet", "jsonl"), default="auto",
                   help="input format (default: jsonl for .json/.jsonl[.gz] paths, else parquet)")
    p.add_argument("--output-format", choices=("parquet", "jsonl"), default=None,
                   help="output format (default: the input's)")
    add_model_option(p)
    p.add_argument("--id-field", default="id", help="id column (default: id; generated if the column is absent)")
    p.add_argument("--title-field", default="title", help="headline column (default: title)")
    p.add_argument("--text-field", default="text", help="article text column (default: text)")
    p.add_argument("--raw-field", default="raw", help="whole-page column (default: raw)")
    p.add_argument("--tags-field", default="tags", help="site tags column (default: tags)")
    p.add_argument("--keep", nargs="+", default=[], metavar="COLUMN", help="input columns copied to the output")
    p.add_argument("--explain", action="store_true", help="add the n-grams behind each chosen topic")
    p.add_argument("--threshold", type=float, default=None, help="one threshold for every topic (0-1)")
    p.add_argument("--top-k", type=positive_int, default=None, help="keep at most k topics per document (k >= 1)")
    p.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="longer documents are rejected")
    p.add_argument("--partitions", type=int, default=None, help="repartition the input first (spread the work)")
    p.add_argument("--master", default=None, help="Spark master (default: spark-submit's, else local[*])")
    p.add_argument("--force", action="store_true", help="overwrite existing output folders")


def _is_json(path: str) -> bool:
    name = path.rstrip("/").lower()
    return name.endswith((".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".jsonl.bz2"))


#: The column holding each input JSON line (bytes as read) for tag_dataframe(json_column=...).
JSON_LINE = "_json_line"
#: Each row's file and line (or row) number, for rejects (tag_dataframe(origin=...)).
SOURCE, LINE = "__tagger_source", "__tagger_line"
#: Each row as `tagger tag` writes it, for JSON-lines output (tag_dataframe(rendered=...)).
RENDERED = "__tagger_line_out"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _local_path(path: str) -> str | None:
    """The local file system path ``path`` names (no scheme, or ``file:``), else None (s3a://, hdfs://)."""
    if path.startswith("file:"):
        return urllib.parse.unquote(urllib.parse.urlparse(path).path)
    return None if _SCHEME.match(path) else path


def _check_paths(args: argparse.Namespace, rejects: str) -> None:
    """What can be checked before a Spark session starts (~10 s) and answered in our words, not
    Spark's: a local output that exists (without --force), a local input that does not."""
    if not args.force:
        for path in (args.output, rejects):
            local = _local_path(path)
            if local is not None and os.path.lexists(local):
                raise CLIError(f"{path} exists; use --force to overwrite it")
    local = _local_path(args.input)
    if local is not None and not any(c in local for c in "*?[{") and not os.path.exists(local):
        raise CLIError(f"{args.input}: No such file or directory")


def _source_names(files: list[str], given: str) -> dict[str, str]:
    """How rejects name each input file: as given on the command line when it is the one local file
    (as `tagger tag` names it), else by its local path, or its URI when it is not local."""
    local = _local_path(given)
    if len(files) == 1 and local is not None and os.path.isfile(local):
        return {files[0]: given}
    return {f: _local_path(f) or f for f in files}


def _with_origin(spark, df, given: str):
    """A file-scan DataFrame (straight from ``spark.read``) plus SOURCE and LINE columns: each row's file
    and 1-based line (JSON lines, blank lines counted as `tagger tag` counts them) or row (Parquet).

    Spark gives no line numbers, but a file is read in splits, each by one task, in order: a small
    first job counts the rows of each split; a row's number is then the rows of the file's earlier
    splits plus its place in its own split (from ``monotonically_increasing_id``, which counts up
    within a task). The count is one extra read of the input, without parsing or tagging it.
    """
    from pyspark.sql import functions as F

    meta = F.col("_metadata")
    scanned = df.select("*", meta.file_path.alias("__file"), meta.file_block_start.alias("__block"),
                        F.monotonically_increasing_id().alias("__row"))
    splits = scanned.groupBy("__file", "__block").agg(F.count(F.lit(1)).alias("n"),
                                                      F.min("__row").alias("first")).collect()
    names = _source_names(sorted({r["__file"] for r in splits}), given)
    offsets, seen = [], dict.fromkeys(names, 0)
    for r in sorted(splits, key=lambda r: (r["__file"], r["__block"])):
        offsets.append((r["__file"], r["__block"], seen[r["__file"]] + 1 - r["first"], names[r["__file"]]))
        seen[r["__file"]] += r["n"]
    table = spark.createDataFrame(offsets, f"__file string, __block long, __shift long, {SOURCE} string")
    joined = scanned.join(F.broadcast(table), ["__file", "__block"])
    return joined.select(*(F.col(c) for c in df.columns), SOURCE, (F.col("__row") + F.col("__shift")).alias(LINE))


def _json_lines(spark, path: str, fields: Fields, keep: list[str]):
    """JSON lines as a DataFrame of (keep columns..., id, JSON_LINE, SOURCE, LINE).

    Each document is built from its line by the CLI's own code (``json_column``), so Spark's typed
    columns never stand in for the record: a typed column cannot tell ``"text": 42`` from
    ``"text": "42"`` (Spark's reader writes both as "42"), and Spark's reader turns a line with invalid
    UTF-8 or a JSON array into a corrupt record, where ``tagger tag`` says invalid_utf8 or
    not_an_object. Lines are split on "\\n" and blank ones skipped, as ``tagger tag`` does (which also
    parses each line with its "\\n": an unterminated string then reports the same error); Spark
    parses a line only for the ``keep`` columns and the id (the id of a line ``tagger tag`` cannot
    read, or of one without an id: then a generated one, as for Parquet).
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    lines = _with_origin(spark, spark.read.option("lineSep", "\n").text(path), path)  # Hadoop drops a leading BOM
    lines = lines.where(~F.col("value").rlike(r"^\s*$"))  # Java's \s is bytes.isspace()'s set
    schema = [StructField(fields.id, StringType())]
    kept = [c for c in dict.fromkeys(keep) if c != fields.id]
    if kept:  # their types: Spark's inference (one more pass over the data, only when columns are kept)
        inferred = spark.read.json(path).schema
        missing = [c for c in kept if c not in inferred.names]
        if missing:
            raise CLIError(f"columns to keep {missing} are not in {path} (its fields: {', '.join(inferred.names)})")
        schema += [inferred[c] for c in kept]
    parsed = F.from_json(F.col("value"), StructType(schema))
    rid = parsed[fields.id]
    generated = F.monotonically_increasing_id().cast("string")
    return lines.select(
        *(parsed[c].alias(c) for c in kept),
        F.when(rid.isNull() | (rid == ""), generated).otherwise(rid).alias(fields.id),
        F.concat(F.col("value"), F.lit("\n")).alias(JSON_LINE),  # the line as `tagger tag` parses it
        SOURCE, LINE,
    )


def run(args: argparse.Namespace) -> int:
    try:
        import pyarrow  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError as e:
        raise CLIError(f"spark-tag needs the spark extra ({e.name} is missing): pip install 'tagger[spark]'") from e

    in_format = args.format if args.format != "auto" else ("jsonl" if _is_json(args.input) else "parquet")
    out_format = args.output_format or in_format
    rejects = args.rejects or f"{args.output.rstrip('/')}_rejects"
    _check_paths(args, rejects)
    loaded = load(args)
    options = TagOptions(threshold=args.threshold, top_k=args.top_k, explain=args.explain)
    try:
        options.validate(loaded.model.topics)
    except ValueError as e:
        raise CLIError(str(e)) from e
    fields = Fields(id=args.id_field, title=args.title_field, text=args.text_field, raw=args.raw_field,
                    tags=args.tags_field)

    from tagger.spark import get_session, tag_dataframe

    spark = get_session("tagger spark-tag", args.master)
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    json_column = None
    try:
        if in_format == "jsonl":
            df, json_column = _json_lines(spark, args.input, fields, args.keep), JSON_LINE
        else:
            df = _with_origin(spark, spark.read.parquet(args.input), args.input)
            if fields.id not in df.columns:
                df = df.withColumn(fields.id, F.monotonically_increasing_id().cast("string"))
    except AnalysisException as e:
        raise CLIError(f"{args.input}: {str(e).splitlines()[0]}") from e
    if args.partitions:
        df = df.repartition(args.partitions)
    try:
        tagged = tag_dataframe(df, loaded=loaded, fields=fields, options=options, max_chars=args.max_chars,
                               keep=args.keep, json_column=json_column, origin=(SOURCE, LINE),
                               rendered=RENDERED if out_format == "jsonl" else None)
    except ValueError as e:
        raise CLIError(str(e)) from e

    # Tagging runs once: both outputs are written from the persisted result.
    tagged = tagged.persist()
    try:
        ok = tagged.where("reject_reason IS NULL")
        bad = tagged.where("reject_reason IS NOT NULL")
        if out_format == "jsonl":  # the lines `tagger tag` writes (Spark's JSON writer prints 3.0E-4)
            ok, bad = ok.select(RENDERED), bad.select(RENDERED)
        else:  # rejects with the columns of a `tagger tag` rejects line
            ok = ok.drop("reject_reason", "reject_detail", "reject_source", "reject_line")
            bad = bad.select(*args.keep, F.col("reject_source").alias("source"), F.col("reject_line").alias("line"),
                             "id", F.col("reject_reason").alias("reason"), F.col("reject_detail").alias("detail"))
        mode = "overwrite" if args.force else "errorifexists"
        try:
            for frame, path in ((ok, args.output), (bad, rejects)):
                writer = frame.write.mode(mode)
                if out_format == "jsonl":
                    writer.option("compression", "gzip").text(path)
                else:
                    writer.parquet(path)
        except AnalysisException as e:
            raise CLIError(f"{str(e).splitlines()[0]} (use --force to overwrite)") from e
        n_ok, n_bad = ok.count(), bad.count()
    finally:
        tagged.unpersist()
    print(f"tagged {n_ok:,}, rejected {n_bad:,} ({rejects}); output: {args.output}", file=sys.stderr)
    return 0

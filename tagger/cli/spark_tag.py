"""`tagger spark-tag`: tag a parquet or JSONL dataset on Spark (local mode, or a cluster via spark-submit).

    tagger spark-tag --input articles.parquet --output tagged.parquet
    spark-submit --py-files tagger.zip -m tagger spark-tag --input s3a://… --output s3a://…   (see README)

Tagged rows go to --output, rows that cannot be tagged to --rejects (default OUTPUT_rejects), with
their reason; the two together hold every input row once.
"""
from __future__ import annotations

import argparse
import sys

from tagger.cli import CLIError
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
    p.add_argument("--top-k", type=int, default=None, help="keep at most k topics per document")
    p.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="longer documents are rejected")
    p.add_argument("--partitions", type=int, default=None, help="repartition the input first (spread the work)")
    p.add_argument("--master", default=None, help="Spark master (default: spark-submit's, else local[*])")
    p.add_argument("--force", action="store_true", help="overwrite existing output folders")


def _is_json(path: str) -> bool:
    name = path.rstrip("/").lower()
    return name.endswith((".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".jsonl.bz2"))


def run(args: argparse.Namespace) -> int:
    try:
        import pyarrow  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError as e:
        raise CLIError(f"spark-tag needs the spark extra ({e.name} is missing): pip install 'tagger[spark]'") from e

    loaded = load(args)
    options = TagOptions(threshold=args.threshold, top_k=args.top_k, explain=args.explain)
    try:
        options.validate(loaded.model.topics)
    except ValueError as e:
        raise CLIError(str(e)) from e
    fields = Fields(id=args.id_field, title=args.title_field, text=args.text_field, raw=args.raw_field,
                    tags=args.tags_field)
    in_format = args.format if args.format != "auto" else ("jsonl" if _is_json(args.input) else "parquet")
    out_format = args.output_format or in_format
    rejects = args.rejects or f"{args.output.rstrip('/')}_rejects"

    from tagger.spark import CORRUPT_RECORD, get_session, tag_dataframe

    spark = get_session("tagger spark-tag", args.master)
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    try:
        if in_format == "jsonl":
            df = spark.read.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT_RECORD).json(args.input)
        else:
            df = spark.read.parquet(args.input)
    except AnalysisException as e:
        raise CLIError(f"{args.input}: {str(e).splitlines()[0]}") from e
    if fields.id not in df.columns:
        df = df.withColumn(fields.id, F.monotonically_increasing_id().cast("string"))
    if args.partitions:
        df = df.repartition(args.partitions)
    try:
        tagged = tag_dataframe(df, loaded=loaded, fields=fields, options=options, max_chars=args.max_chars,
                               keep=args.keep)
    except ValueError as e:
        raise CLIError(str(e)) from e

    # Tagging runs once: both outputs are written from the persisted result.
    tagged = tagged.persist()
    try:
        ok = tagged.where("reject_reason IS NULL").drop("reject_reason", "reject_detail")
        bad = tagged.where("reject_reason IS NOT NULL").select(*args.keep, "id", "reject_reason", "reject_detail")
        mode = "overwrite" if args.force else "errorifexists"
        try:
            for frame, path in ((ok, args.output), (bad, rejects)):
                writer = frame.write.mode(mode)
                if out_format == "jsonl":
                    writer.option("compression", "gzip").json(path)
                else:
                    writer.parquet(path)
        except AnalysisException as e:
            raise CLIError(f"{str(e).splitlines()[0]} (use --force to overwrite)") from e
        n_ok, n_bad = ok.count(), bad.count()
    finally:
        tagged.unpersist()
    print(f"tagged {n_ok:,}, rejected {n_bad:,} ({rejects}); output: {args.output}", file=sys.stderr)
    return 0

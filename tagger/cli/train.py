"""`tagger train`: fit a model from the corpus + gold articles, report dev metrics, publish a version."""
from __future__ import annotations

import argparse
from pathlib import Path

from tagger.cli import CLIError
from tagger.cli._common import add_labels_option, label_files, check_data_files, require_training, settings
from tagger.paths import shared_dir


def register(p: argparse.ArgumentParser) -> None:
    shared = shared_dir()
    p.add_argument("--corpus", type=Path, default=shared / "corpus/ant-train.jsonl.xz",
                   help="weakly labelled corpus, JSONL(.gz/.xz) (default: ../shared/corpus/ant-train.jsonl.xz)")
    p.add_argument("--gold", type=Path, action="append", default=None,
                   help="gold-labelled training articles; repeatable (default: ../shared/gold/train.jsonl.xz)")
    add_labels_option(p)
    p.add_argument("--dev", type=Path, default=shared / "gold/dev.jsonl",
                   help="gold file to report on, never fitted on (default: ../shared/gold/dev.jsonl); 'none' to skip")
    p.add_argument("--out", type=Path, default=None,
                   help="model folder to publish into; a new numbered version is added atomically "
                        "[default: TAGGER_MODEL, else the shipped model's folder]")
    p.add_argument("--taxonomy", type=Path, default=None, help="taxonomy JSON (default: the packaged one)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same data + seed = same model (default 0)")
    p.add_argument("--no-publish", action="store_true", help="train and report, write nothing")


def run(args: argparse.Namespace) -> int:
    require_training('tagger train')
    from tagger.io import InputError
    from tagger.taxonomy import Taxonomy, UnknownTopicError, default_taxonomy
    from tagger.training.fit import TrainConfig
    from tagger.training.pipeline import train_and_publish

    shared = shared_dir()
    gold = args.gold or [shared / "gold/train.jsonl.xz"]
    dev = None if str(args.dev).lower() == "none" else args.dev
    labels = label_files(args, shared / "corpus/ant-train.jsonl.xz")
    out = args.out or settings(args).model_path
    if (Path(out) / "manifest.json").is_file():
        raise CLIError(f"{out} is a version folder; publish into the model folder that holds the versions "
                       f"({Path(out).parent})")
    check_data_files([args.corpus, *gold, *labels, *([dev] if dev else [])])
    try:
        taxonomy = Taxonomy.load(args.taxonomy) if args.taxonomy else default_taxonomy()
        train_and_publish(
            corpus=args.corpus, gold=gold, labels=labels, dev=dev, taxonomy=taxonomy,
            model_root=out, cfg=TrainConfig(seed=args.seed),
            publish=not args.no_publish, card=True,
        )
    except (InputError, UnknownTopicError, ValueError) as e:
        raise CLIError(str(e)) from e
    return 0

"""`tagger retrain`: train a candidate with new data, compare it with the live model on gold, and
promote it (a new version folder, atomically) only if it is not worse. Exit 0 promoted (or would be,
with --dry-run), 1 refused, 2 bad input."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import sys
import time

from tagger.cli import CLIError, emit
from tagger.cli._common import add_labels_option, label_files, check_data_files, require_training, settings
from tagger.paths import shared_dir

EPILOG = """\
base data: --gold articles, the --corpus, and label files (--labels; by default training/labels/*.jsonl,
which annotate the default corpus): {"id": ..., "topics": [...]} rows that make corpus articles gold.
new data (--new, JSONL like the corpus): a line with "topics" is a labelled article (it replaces a base
gold article with the same id); a line without is unlabelled; "tags" (the site's own tags) are audited
and the ones that agree with a topic become weak labels. Corrections (--corrections, JSONL by id):
{"id": ..., "topics": [...]} replaces an article's labels, {"id": ..., "add": [...], "remove": [...]}
edits them. A --new line with no text, or with a near miss of a field it lacks ("topic" for "topics"),
is an error. The gate gold (--gold-eval) must share no id with the training gold. Every input is read
and checked before training starts.

The live model is the newest version under --model (the model folder a server serves) that loads.
A folder whose versions all fail to load, a folder of model folders (models/ instead of models/NAME)
and a folder with no versions are errors (exit 2): only --first-version creates version 1, published
without a gate. With nothing new (no --new, no --corrections) there is nothing to retrain on, which
is an error unless --same-data says it is meant (e.g. to check a changed rule file or taxonomy).

examples:
  tagger retrain --new new.jsonl --dry-run
  tagger retrain --new new.jsonl --corrections fixes.jsonl --wait-served localhost:50051
  tagger retrain --taxonomy topics+environment.json --keywords keywords+environment.json --new env.jsonl
  tagger retrain --model models/new-model --first-version --gold gold.jsonl --corpus corpus.jsonl
"""


def register(p: argparse.ArgumentParser) -> None:
    shared = shared_dir()
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("--model", "--model-root", dest="model", type=Path, default=None, metavar="PATH",
                   help="model folder whose newest version is live and where a promoted version is published "
                        "[env TAGGER_MODEL; default the shipped model's folder]")
    p.add_argument("--corpus", type=Path, default=shared / "corpus/ant-train.jsonl.xz",
                   help="base corpus JSONL(.gz/.xz) (default: ../shared/corpus/ant-train.jsonl.xz)")
    p.add_argument("--gold", type=Path, action="append", default=None,
                   help="base gold training articles; repeatable (default: ../shared/gold/train.jsonl.xz)")
    add_labels_option(p)
    p.add_argument("--new", type=Path, action="append", default=[],
                   help="new articles JSONL: labelled (with topics) and/or unlabelled, optionally with tags; repeatable")
    p.add_argument("--from-review", metavar="URL", default=None,
                   help="also train on the editors' decisions in the review store at URL (as `tagger review export` "
                        "writes them: accepted and corrected topics; the random slice never)")
    p.add_argument("--review-since", metavar="DATE", default=None,
                   help="with --from-review: only decisions made at or after this ISO date/time (UTC)")
    p.add_argument("--corrections", type=Path, action="append", default=[],
                   help="label corrections JSONL keyed by id; repeatable")
    p.add_argument("--gold-eval", type=Path, action="append", default=None,
                   help="gold set the gate compares on, never trained on; repeatable (default: ../shared/gold/dev.jsonl)")
    p.add_argument("--taxonomy", type=Path, default=None,
                   help="taxonomy JSON, e.g. with a new topic (default: the live model's, else the packaged one)")
    p.add_argument("--keywords", type=Path, default=None, help="keyword rules JSON (default: training/rules/keywords.json)")
    p.add_argument("--sections", type=Path, default=None, help="section rules JSON (default: training/rules/sections.json)")
    g = p.add_argument_group("training (default: the live model's training configuration)")
    g.add_argument("--seed", type=int, default=None, help="random seed; same inputs + seed = same metrics and decision")
    g.add_argument("--max-features", type=int, default=None)
    g.add_argument("--cv-folds", type=int, default=None)
    g.add_argument("--n-jobs", type=int, default=None)
    g = p.add_argument_group("gate")
    g.add_argument("--tol", type=float, default=0.01, help="largest allowed micro-F1 drop (default 0.01)")
    g.add_argument("--topic-tol", type=float, default=0.05, help="largest allowed per-topic F1 drop (default 0.05)")
    g.add_argument("--min-net-losses", type=int, default=4,
                   help="a topic fails only if the candidate also gets at least this many more of its articles "
                        "wrong than the live model (default 4; guards against small-sample noise)")
    g.add_argument("--min-support", type=int, default=10,
                   help="gold articles a topic needs in a gate set to be gated (default 10)")
    g.add_argument("--new-topic-min-f1", type=float, default=0.5,
                   help="F1 a new topic needs where a gate set has enough of it (default 0.5)")
    g = p.add_argument_group("site tags")
    g.add_argument("--no-tags", action="store_true", help="ignore the articles' site tags")
    g.add_argument("--tag-noise-share", type=float, default=0.5,
                   help="a tag on at least this share of tagged pages is navigation noise (default 0.5)")
    g.add_argument("--tag-min-support", type=int, default=10, help="pages a tag needs to be trusted (default 10)")
    g.add_argument("--tag-min-precision", type=float, default=0.6,
                   help="share of a tag's pages that must have the topic (default 0.6)")
    g.add_argument("--tag-min-lift", type=float, default=3.0,
                   help="how many times the topic's base rate that share must be (default 3)")
    p.add_argument("--first-version", action="store_true",
                   help="--model-root has no versions yet: create version 1, ungated (there is no live model to "
                        "compare with); without this flag a model root with no versions is an error")
    p.add_argument("--same-data", action="store_true",
                   help="retrain although nothing is new (no --new or --corrections), e.g. after changing rules")
    p.add_argument("--dry-run", action="store_true", help="train, compare and report; publish nothing")
    p.add_argument("--report", type=Path, default=None, help="also write the decision and metrics as JSON")
    p.add_argument("--card", type=Path, default=None, help="also write the candidate's MODEL.md here")
    p.add_argument("--wait-served", metavar="HOST:PORT", default=None,
                   help="after promoting, wait until the gRPC server there serves the new version")
    p.add_argument("--wait-timeout", type=float, default=60.0, help="seconds --wait-served waits (default 60)")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _review_export(url: str, since: str | None) -> Path:
    """The review store's decisions written as a --new file (in a private temporary folder kept for the
    run, so the manifest's fingerprint names a real file)."""
    import tempfile

    from tagger.review.export import decisions_as_new_rows, parse_since, write_jsonl

    try:
        rows = decisions_as_new_rows(url, parse_since(since) if since else None)
    except ValueError as e:
        raise CLIError(str(e)) from e
    except Exception as e:  # the store could not be opened or read: one line, not a traceback
        raise CLIError(f"--from-review {url.split('@')[-1]}: cannot read the review store: {e.__class__.__name__}") from e
    if not rows:
        raise CLIError("--from-review: the review store has no decisions to train on"
                       + (f" since {since}" if since else ""))
    path = Path(tempfile.mkdtemp(prefix="tagger-review-")) / "review-decisions.jsonl"
    write_jsonl(rows, path)
    _log(f"from the review store: {len(rows)} decided articles")
    return path


def wait_until_served(target: str, version: str, timeout: float = 60.0) -> None:
    """Block until the gRPC server at ``target`` answers with model ``version`` (its folder watch
    picked it up); raises TimeoutError."""
    from tagger.client import TaggerClient  # grpc only when asked for

    deadline = time.monotonic() + timeout
    with TaggerClient(target, timeout=max(1.0, timeout)) as client:
        while True:
            try:
                if client.model_info(timeout=5).version == version:
                    return
            except Exception:  # a restarting server: keep asking until the deadline
                pass
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{target} did not serve {version} within {timeout:.0f}s")
            time.sleep(0.2)


def run(args: argparse.Namespace) -> int:
    require_training('tagger retrain')
    from tagger.artifacts import ArtifactError
    from tagger.io import InputError
    from tagger.taxonomy import UnknownTopicError
    from tagger.training.gate import GatePolicy
    from tagger.training.retrain import RetrainError, retrain
    from tagger.training.tags import TagAuditConfig

    if not (args.new or args.corrections or args.from_review or args.same_data or args.first_version):
        raise CLIError("nothing new to retrain on: give --new FILE, --corrections FILE or --from-review URL "
                       "(or --same-data to retrain on the base data alone)")
    if args.from_review:
        args.new = [*args.new, _review_export(args.from_review, args.review_since)]
    model_root = settings(args).model_path
    shared = shared_dir()
    gold = args.gold or [shared / "gold/train.jsonl.xz"]
    gold_eval = args.gold_eval or [shared / "gold/dev.jsonl"]
    labels = label_files(args, shared / "corpus/ant-train.jsonl.xz")
    optional = [p for p in (args.taxonomy, args.keywords, args.sections) if p is not None]
    check_data_files([args.corpus, *gold, *labels, *args.new, *args.corrections, *gold_eval, *optional])
    for option, path in (("--report", args.report), ("--card", args.card)):
        # Checked now: found missing only after training (and publishing), the run would be wasted.
        if path is not None and not Path(path).parent.is_dir():
            raise CLIError(f"{option} {path}: no folder {Path(path).parent}")
    try:
        policy = GatePolicy(args.tol, args.topic_tol, args.min_support, args.new_topic_min_f1, args.min_net_losses)
        tags = None if args.no_tags else TagAuditConfig(
            args.tag_noise_share, args.tag_min_support, args.tag_min_precision, args.tag_min_lift)
        result = retrain(
            model_root=model_root, corpus=args.corpus, gold=gold, gold_eval=gold_eval,
            labels=labels, new=args.new, corrections=args.corrections, taxonomy=args.taxonomy, keywords=args.keywords,
            sections=args.sections, policy=policy, tag_audit=tags, dry_run=args.dry_run,
            first_version=args.first_version,
            config={"seed": args.seed, "max_features": args.max_features, "cv_folds": args.cv_folds,
                    "n_jobs": args.n_jobs},
            log=_log,
        )
    except (InputError, UnknownTopicError, RetrainError, ArtifactError, ValueError, OSError) as e:
        raise CLIError(str(e)) from e
    emit(result.decision.table())
    if args.report:
        args.report.write_text(json.dumps(result.report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if args.card:
        args.card.write_text(result.card, encoding="utf-8")
    if result.published and args.wait_served:
        version = f"{result.published.parent.name}/{result.published.name}"
        try:
            wait_until_served(args.wait_served, version, args.wait_timeout)
        except TimeoutError as e:
            raise CLIError(f"promoted {result.published}, but {e}") from e
        emit(f"served: {args.wait_served} answers with {version}")
    return result.exit_code

"""Label files: corpus articles given their full labels by id (training/labels/), read by `tagger train`
and `tagger retrain` through one assembly step; the shipped annotations name real corpus articles."""
from __future__ import annotations

import argparse
import json
import lzma
from pathlib import Path

import pytest
from test_retrain_helpers import Setup, live, live_template, write_jsonl  # noqa: F401  (fixtures)

from tagger.cli import CLIError
from tagger.cli import main as tagger_main
from tagger.cli._common import label_files
from tagger.io import InputError
from tagger.artifacts import sha256_file
from tagger.taxonomy import UnknownTopicError, default_taxonomy
from tagger.training.assemble import LABELS_DIR, assemble_training_data, default_label_files, read_labels
from tagger.training.retrain import retrain


def _files(tmp_path: Path) -> tuple[Path, Path]:
    gold = write_jsonl(tmp_path / "gold.jsonl",
                       [{"id": f"g{i}", "title": "t", "text": "نص", "topics": ["politics"]} for i in range(2)])
    corpus = write_jsonl(tmp_path / "corpus.jsonl",
                         [{"id": f"c{i}", "title": "t", "text": "نص", "outlet": "x"} for i in range(4)])
    return gold, corpus


def test_label_files_make_corpus_articles_gold_in_order(tmp_path: Path) -> None:
    tx = default_taxonomy()
    gold, corpus = _files(tmp_path)
    one = write_jsonl(tmp_path / "one.jsonl", [{"id": "c2", "topics": ["sanctions", "diplomacy"]},
                                               {"id": "c0", "topics": []}])
    two = write_jsonl(tmp_path / "two.jsonl", [{"id": "c3", "topics": ["sports"], "note": "round 2"}])
    data = assemble_training_data(gold=[gold], corpus=corpus, labels=[one, two], taxonomy=tx)
    # Gold first, then label-file articles in file order, topics in taxonomy order; the corpus keeps the rest.
    assert [(a.id, a.topics) for a in data.gold] == [
        ("g0", ("politics",)), ("g1", ("politics",)), ("c2", ("diplomacy", "sanctions")), ("c0", ()), ("c3", ("sports",))]
    assert data.gold[2].body == "نص" and data.gold[2].outlet == "x"  # the corpus article itself, not a stub
    assert [a.id for a in data.unlabelled] == ["c1"]
    assert data.summary["labels"] == {"files": 2, "articles": 3}

    # Corrections come after label files and may change what they say.
    fix = write_jsonl(tmp_path / "fix.jsonl", [{"id": "c2", "remove": ["diplomacy"]}])
    data = assemble_training_data(gold=[gold], corpus=corpus, labels=[one], corrections=[fix], taxonomy=tx)
    assert dict((a.id, a.topics) for a in data.gold)["c2"] == ("sanctions",)

    none = assemble_training_data(gold=[gold], corpus=corpus, taxonomy=tx)
    assert len(none.gold) == 2 and len(none.unlabelled) == 4 and none.summary["labels"] == {}

    # Two gold files naming one article would let the file order decide its labels silently.
    again = write_jsonl(tmp_path / "again.jsonl", [{"id": "g1", "title": "t", "text": "نص", "topics": ["sports"]}])
    with pytest.raises(InputError, match=r"again\.jsonl: article 'g1' is also in gold file .*gold\.jsonl"):
        assemble_training_data(gold=[gold, again], corpus=corpus, taxonomy=tx)


@pytest.mark.parametrize("rows, match", [
    ([{"id": "c9", "topics": ["sports"]}], r"labels\.jsonl:1: no article with id 'c9' in the corpus"),
    ([{"id": "g0", "topics": ["sports"]}], r"labels\.jsonl:1: article 'g0' is already a gold article"),
    ([{"id": "c1", "topics": ["sports"]}, {"id": "c1", "topics": []}],
     r"labels\.jsonl:2: article 'c1' is labelled twice \(first at .*labels\.jsonl:1\)"),
    ([{"id": "c1", "add": ["sports"]}], r"labels\.jsonl:1: a label file gives each article its full 'topics'"),
    ([{"id": "c1", "topics": ["sport"]}], r"unknown topic id 'sport' \(did you mean 'sports'\?\)"),
    ([{"id": "c1", "topic": ["sports"]}], r"unknown field\(s\) \['topic'\]"),
    ([{"topics": ["sports"]}], r"labels\.jsonl:1: a label row needs a string 'id'"),
])
def test_a_bad_label_file_is_a_clear_error(tmp_path: Path, rows: list[dict], match: str) -> None:
    gold, corpus = _files(tmp_path)
    path = write_jsonl(tmp_path / "labels.jsonl", rows)
    with pytest.raises((InputError, UnknownTopicError), match=match):
        assemble_training_data(gold=[gold], corpus=corpus, labels=[path], taxonomy=default_taxonomy())


def test_shipped_labels_are_the_default_only_for_the_corpus_they_annotate(tmp_path: Path) -> None:
    default_corpus = tmp_path / "ant-train.jsonl.xz"

    def resolve(*labels: str, corpus: Path = default_corpus) -> list[Path]:
        return label_files(argparse.Namespace(labels=list(labels) or None, corpus=corpus), default_corpus)

    assert default_label_files() and resolve() == default_label_files()
    assert resolve(corpus=tmp_path / "other.jsonl") == []  # its ids would not be in another corpus
    assert resolve("none") == [] and resolve("NONE", corpus=tmp_path / "other.jsonl") == []
    assert resolve("a.jsonl", "b.jsonl") == [Path("a.jsonl"), Path("b.jsonl")]
    with pytest.raises(CLIError, match="--labels none cannot be combined"):
        resolve("none", "a.jsonl")


def test_train_refuses_a_bad_label_file_before_fitting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gold, corpus = _files(tmp_path)
    labels = write_jsonl(tmp_path / "labels.jsonl", [{"id": "c1", "topics": ["sports"]}, {"id": "cx", "topics": []}])
    rc = tagger_main(["train", "--no-publish", "--dev", "none", "--corpus", str(corpus), "--gold", str(gold),
                      "--labels", str(labels)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.endswith(f"{labels}:2: no article with id 'cx' in the corpus {corpus}"), err
    rc = tagger_main(["train", "--no-publish", "--dev", "none", "--labels", str(tmp_path / "missing.jsonl")])
    assert rc == 2 and "missing.jsonl: no such file" in capsys.readouterr().err


def test_the_shipped_annotations_label_real_corpus_articles(shared_dir: Path) -> None:
    """Every row names a corpus article that is not gold, once, with known topics (checked by the same
    assembly `tagger train` runs), and none is a dev article or from an outlet the corpus lacks."""
    tx = default_taxonomy()
    files = default_label_files()
    assert files and all(f.parent == LABELS_DIR for f in files)
    rows = [r for f in files for r in read_labels(f, tx)]
    data = assemble_training_data(gold=[shared_dir / "gold/train.jsonl.xz"], corpus=shared_dir / "corpus/ant-train.jsonl.xz",
                                  labels=files, taxonomy=tx)
    assert data.summary["labels"]["articles"] == len(rows) > 1000
    promoted = {a.id: a for a in data.gold[-len(rows):]}
    assert set(promoted) == {r.id for r in rows}
    assert {a.outlet for a in promoted.values()} <= {"sky-news-arabia", "al-arabiya", "cnn-arabic"}
    dev_ids = {json.loads(line)["id"] for line in (shared_dir / "gold/dev.jsonl").open(encoding="utf-8")}
    gold_ids = {json.loads(line)["id"] for line in lzma.open(shared_dir / "gold/train.jsonl.xz", "rt")}
    assert not (dev_ids | gold_ids) & set(promoted)
    assert sum("sanctions" in (a.topics or ()) for a in promoted.values()) > 200


def test_retrain_trains_on_label_files_and_records_them(live: Setup, tmp_path: Path) -> None:
    """The shipped annotations of the small test corpus's articles, given to `retrain` as a label file:
    they become gold, and the candidate's manifest names the file and counts them."""
    in_corpus = {a.id for a in live.data.corpus}
    rows = [{"id": r.id, "topics": list(r.topics or ())} for f in default_label_files()
            for r in read_labels(f, live.data.tx) if r.id in in_corpus]
    assert len(rows) >= 40
    path = write_jsonl(tmp_path / "labels.jsonl", rows)
    result = retrain(**live.retrain_kwargs(), labels=[path], dry_run=True)
    manifest = result.manifest
    assert manifest["training_data"]["labels"] == [{"path": "labels.jsonl", "sha256": sha256_file(path),
                                                    "size_bytes": path.stat().st_size}]
    assert manifest["data_summary"]["labels"] == {"files": 1, "articles": len(rows)}
    assert manifest["n_gold"] == 300 + len(rows)
    assert f"({len(rows)} of them corpus articles labelled by the label files)" in result.card


def _blind_check(name: str, shared_dir: Path):
    """A blind check's calls (checks/NAME), gold's labels for the same articles, and the score of the
    calls against gold with the project's metrics."""
    from tagger.metrics import score

    tx = default_taxonomy()
    check = {r.id: set(r.topics or ()) for r in read_labels(LABELS_DIR / "checks" / name, tx)}
    gold = {json.loads(line)["id"]: set(json.loads(line)["topics"])
            for line in lzma.open(shared_dir / "gold/train.jsonl.xz", "rt", encoding="utf-8")}
    assert set(check) <= set(gold)
    return check, gold, score({i: gold[i] for i in check}, check, tx.ids)


def test_the_annotators_agree_with_gold_on_the_blind_check(shared_dir: Path) -> None:
    """training/labels/README.md's agreement figures, recomputed: the annotators' labels for the 300 gold
    articles mixed blind into their batches, scored against gold with the project's metrics."""
    tx = default_taxonomy()
    check, gold, report = _blind_check("blind-gold.jsonl", shared_dir)
    assert len(check) == 300
    assert round(report.micro_f1, 3) == 0.954 and round(report.macro_f1, 3) == 0.947
    assert sum(check[i] == gold[i] for i in check) == 261
    sanctions = next(m for m in report.per_topic if m.topic == "sanctions")
    assert (round(sanctions.precision, 2), sanctions.recall, sanctions.support) == (0.87, 1.0, 20)
    # None of them is in the label file that trains the model: gold articles keep their gold labels.
    assert not set(check) & {r.id for f in default_label_files() for r in read_labels(f, tx)}


def test_the_military_review_agrees_with_gold_on_its_blind_check(shared_dir: Path) -> None:
    """The second pass's blind check (training/labels/README.md): the reviewers' military calls on 120
    gold articles mixed into their batches, against gold."""
    calls = {}
    for line in (LABELS_DIR / "checks/military-review-gold.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        calls[row["id"]] = row["military"]
    gold = {json.loads(line)["id"]: "military" in json.loads(line)["topics"]
            for line in lzma.open(shared_dir / "gold/train.jsonl.xz", "rt", encoding="utf-8")}
    assert len(calls) == 120 and set(calls) <= set(gold)
    pairs = [(gold[i], calls[i]) for i in calls]
    assert pairs.count((True, True)) == 58 and pairs.count((True, False)) == 2
    assert pairs.count((False, True)) == 6 and pairs.count((False, False)) == 54


def test_the_2026_12_round_agrees_with_gold_on_its_blind_check(shared_dir: Path) -> None:
    """The uncertainty-sampled round (training/labels/README.md): 300 gold articles mixed blind into its
    30 batches, the annotators' calls scored against gold; the bar is micro-F1 >= 0.95."""
    tx = default_taxonomy()
    check, gold, report = _blind_check("blind-gold-2026-12.jsonl", shared_dir)
    assert len(check) == 300
    assert round(report.micro_f1, 3) == 0.969 and report.micro_f1 >= 0.95
    assert sum(check[i] == gold[i] for i in check) == 278
    # Fresh controls: none was in the earlier rounds' blind checks, none trains the model.
    earlier = {r.id for r in read_labels(LABELS_DIR / "checks/blind-gold.jsonl", tx)}
    assert not set(check) & earlier
    assert not set(check) & {r.id for f in default_label_files() for r in read_labels(f, tx)}


def test_the_2026_12_round_is_disjoint_from_earlier_labels() -> None:
    tx = default_taxonomy()
    ids = {f.name: [r.id for r in read_labels(f, tx)] for f in default_label_files()}
    assert len(ids["uncertain-2026-12.jsonl"]) == 2000 and len(ids["random-2026-12.jsonl"]) == 1000
    every = [i for rows in ids.values() for i in rows]
    assert len(every) == len(set(every))  # no article labelled twice across rounds


def test_the_2026_12_r2_round_agrees_with_gold_on_its_blind_check(shared_dir: Path) -> None:
    """The double-annotated round (training/labels/README.md): 250 fresh gold articles mixed blind into
    its 25 batches; the final (agreed or adjudicated) calls scored against gold."""
    tx = default_taxonomy()
    check, gold, report = _blind_check("blind-gold-2026-12-r2.jsonl", shared_dir)
    assert len(check) == 250
    assert round(report.micro_f1, 3) == 0.946 and round(report.macro_f1, 3) == 0.943
    assert sum(check[i] == gold[i] for i in check) == 217
    earlier = {r.id for name in ("blind-gold.jsonl", "blind-gold-2026-12.jsonl")
               for r in read_labels(LABELS_DIR / "checks" / name, tx)}
    assert not set(check) & earlier
    assert not set(check) & {r.id for f in default_label_files() for r in read_labels(f, tx)}
    assert not set(check) & {r.id for f in (LABELS_DIR / "candidates").glob("*.jsonl") for r in read_labels(f, tx)}


def test_the_2026_12_r2_round_is_disjoint_from_earlier_labels_and_not_trained_by_default() -> None:
    """Round 2026-12-r2 is kept under candidates/: measured, refused by the gate, so not in the default
    training set (training/labels/README.md)."""
    tx = default_taxonomy()
    candidates = LABELS_DIR / "candidates"
    r2 = {f: [r.id for r in read_labels(candidates / f, tx)]
          for f in ("uncertain-2026-12-r2.jsonl", "mission-2026-12-r2.jsonl")}
    assert len(r2["uncertain-2026-12-r2.jsonl"]) == 2000 and len(r2["mission-2026-12-r2.jsonl"]) == 500
    assert not {p.parent for p in default_label_files()} & {candidates}
    every = [i for f in default_label_files() for i in (r.id for r in read_labels(f, tx))]
    every += [i for rows in r2.values() for i in rows]
    assert len(every) == len(set(every))

"""`tagger retrain`: the gate refuses a worse candidate per topic, promotes a better one reproducibly,
corrections change exactly the labels they name, and the README's cut-off walk-through holds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_DOCS, tiny_model
from test_retrain_helpers import (  # noqa: F401  (live, live_template are fixtures)
    BASE_GOLD,
    NAME,
    QUIET,
    SMALL,
    SMALL_CFG,
    Setup,
    article_json,
    live,
    live_template,
    write_jsonl,
)

from tagger.artifacts import list_versions, load_model
from tagger.cli import main as tagger_main
from tagger.io import InputError
from tagger.model import TopicModel
from tagger.taxonomy import Taxonomy, UnknownTopicError, default_taxonomy
from tagger.training.data import Article
from tagger.training.fit import TrainConfig
from tagger.training.pipeline import train_and_publish
from tagger.training.assemble import apply_corrections, assemble_training_data
from tagger.training.gate import GatePolicy, compare
from tagger.training.retrain import RetrainError, retrain

NEW_GOLD = slice(BASE_GOLD, 1200)  # the labelled "new data": 900 more gold articles


def new_gold_file(live: Setup, folder: Path) -> Path:
    return write_jsonl(folder / "new.jsonl", (article_json(a, a.topics) for a in live.data.gold[NEW_GOLD]))


# ------------------------------------------------------------------------------------ the gate
def _tiny_gold(copies: int = 12) -> list[Article]:
    """Each TINY_DOCS text ``copies`` times, labelled with its topic (enough support to be gated)."""
    return [Article(id=f"{t}-{i}", title="", body=text, topics=(t,)) for t, text in TINY_DOCS.items() for i in range(copies)]


def _without(model: TopicModel, topic: str) -> TopicModel:
    """The same model with one topic's weights zeroed: it never predicts that topic."""
    coef, b = model.coef.copy(), model.intercept.copy()
    j = model.topics.index(topic)
    coef[:, j], b[j] = 0.0, -8.0
    return TopicModel(model.featurizer, model.topics, coef, b, model.thresholds)


def test_gate_decisions_on_hand_made_models() -> None:
    gold = [("g", _tiny_gold())]
    live = tiny_model()
    same = compare(live, "m/1", tiny_model(), gold)
    assert same.promote and not same.comparisons[0].failed

    worse = compare(live, "m/1", _without(tiny_model(), "sanctions"), gold)
    assert not worse.promote
    assert any(r.startswith("g: sanctions F1 0.000 is below live 1.000") for r in worse.reasons), worse.reasons
    assert not any("sports" in r or "economy" in r for r in worse.reasons)
    assert "FAIL" in worse.table() and "REFUSED" in worse.table()

    # The same candidate passes when the tolerances allow any drop.
    lenient = compare(live, "m/1", _without(tiny_model(), "sanctions"), gold, GatePolicy(tol=1, topic_tol=1))
    assert lenient.promote

    lost = compare(live, "m/1", tiny_model(("sanctions", "sports")), gold)
    assert not lost.promote and "lacks topic(s) ['economy']" in lost.reasons[0]

    fewer = compare(tiny_model(("sanctions", "sports")), "m/1", live, gold)  # economy is new
    assert fewer.promote and fewer.new_topics == ("economy",)
    row = next(r for r in fewer.comparisons[0].rows if r.topic == "economy")
    assert row.live_f1 is None and row.status == "new"

    low = compare(live, "m/1", _without(tiny_model(), "sanctions"), [("g", _tiny_gold(copies=3))])
    assert low.promote is False and "micro-F1" in low.reasons[0]  # micro-F1 still gates
    assert all(r.status == "low support" for r in low.comparisons[0].rows)

    first = compare(None, None, live, gold)
    assert first.promote and "first version" in first.reasons[0]


# ----------------------------------------------------------------------------- corrections
def test_corrections_change_exactly_the_named_labels(tmp_path: Path) -> None:
    tx = default_taxonomy()
    rows = [{"id": f"a{i}", "title": "t", "text": "نص", "topics": ["politics"]} for i in range(4)]
    gold = write_jsonl(tmp_path / "gold.jsonl", rows)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": f"c{i}", "title": "t", "text": "نص"} for i in range(3)])
    new = write_jsonl(tmp_path / "new.jsonl", [
        {"id": "a3", "title": "t", "text": "نص", "topics": ["economy"]},  # a relabelled base article
        {"id": "c2", "title": "t", "text": "نص", "tags": ["عقوبات"]},  # an unlabelled page with site tags
    ])
    fixes = write_jsonl(tmp_path / "fixes.jsonl", [
        {"id": "a0", "topics": ["diplomacy", "sanctions"]},
        {"id": "a1", "add": ["security"], "remove": ["politics"], "note": "annotator 7"},
        {"id": "a2", "add": ["politics"]},  # no change
        {"id": "c0", "topics": ["sports"]},  # an unlabelled article becomes gold
    ])
    data = assemble_training_data(gold=[gold], corpus=corpus, new=[new], corrections=[fixes], taxonomy=tx)
    labels = {a.id: a.topics for a in data.gold}
    assert labels == {"a0": ("diplomacy", "sanctions"), "a1": ("security",), "a2": ("politics",),
                      "a3": ("economy",), "c0": ("sports",)}
    assert [a.id for a in data.unlabelled] == ["c1", "c2"] and data.unlabelled[1].tags == ("عقوبات",)
    assert data.summary["corrections"] == {"entries": 4, "changed": 3, "promoted_to_gold": 1}
    assert data.summary["new"] == {"labelled": 1, "replaced_gold": 1, "unlabelled": 1, "tagged": 1}

    # A typo must not silently do nothing.
    for bad, match in (({"id": "zz", "topics": []}, "no article with id 'zz'"),
                       ({"id": "c1", "add": ["sports"]}, "no labels to add to"),
                       ({"id": "a0", "topics": ["sport"]}, r"'sport'.*bad\.jsonl:1"),
                       ({"id": "a0", "topics": ["sports"], "add": ["economy"]}, "not both")):
        path = write_jsonl(tmp_path / "bad.jsonl", [bad])
        with pytest.raises((InputError, UnknownTopicError), match=match):
            assemble_training_data(gold=[gold], corpus=corpus, new=[], corrections=[path], taxonomy=tx)


def test_apply_corrections_keeps_taxonomy_order() -> None:
    tx = default_taxonomy()
    gold = {"x": Article(id="x", title="", body="", topics=("culture",))}
    from tagger.training.assemble import Correction

    apply_corrections(gold, {}, [Correction("x", None, ("diplomacy",), (), "here")], tx)
    assert gold["x"].topics == ("diplomacy", "culture")


# -------------------------------------------------------------------------- end to end (small)
def test_corrupted_labels_are_refused_with_a_per_topic_reason(live: Setup, tmp_path: Path, capsys) -> None:
    # A bad annotation batch: sanctions is taken off every article that has it and put on sports stories.
    affected = live.data.gold[: NEW_GOLD.stop]
    fixes = [{"id": a.id, "remove": ["sanctions"]} for a in affected if "sanctions" in a.topics]
    fixes += [{"id": a.id, "add": ["sanctions"]} for a in affected if "sports" in a.topics]
    corrections = write_jsonl(tmp_path / "fixes.jsonl", fixes)
    report = tmp_path / "report.json"
    rc = tagger_main([*live.retrain_args(), "--new", str(new_gold_file(live, tmp_path)),
                      "--corrections", str(corrections), "--report", str(report)])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "REFUSED" in out and "sanctions" in out
    decision = json.loads(report.read_text("utf-8"))["decision"]
    assert not decision["promote"]
    assert any(r.startswith("dev: sanctions F1") and "is below live" in r for r in decision["reasons"])
    sanctions = next(t for t in decision["comparisons"][0]["topics"] if t["topic"] == "sanctions")
    assert sanctions["failed"] and sanctions["candidate_f1"] < sanctions["live_f1"] - 0.05
    assert [p.name for p in list_versions(live.root)] == ["1"]  # nothing published
    summary = json.loads(report.read_text("utf-8"))["data"]["corrections"]
    assert summary["changed"] == len(fixes) and summary["entries"] == len(fixes)


def test_same_inputs_and_seed_give_the_same_metrics_and_decision(live: Setup, tmp_path: Path, capsys) -> None:
    new = new_gold_file(live, tmp_path)
    reports = []
    for i in range(2):
        path = tmp_path / f"report{i}.json"
        assert tagger_main([*live.retrain_args(), "--new", str(new), "--seed", "5", "--dry-run",
                             "--report", str(path)]) == 0
        reports.append(json.loads(path.read_text("utf-8")))
    assert reports[0] == reports[1]
    assert reports[0]["decision"]["promote"] and reports[0]["seed"] == 5 and reports[0]["published"] is None
    assert [p.name for p in list_versions(live.root)] == ["1"]  # a dry run publishes nothing
    # The live model's small training configuration was reused, with the seed overridden.
    assert reports[0]["train_config"]["max_features"] == SMALL_CFG.max_features
    assert "PROMOTE" in capsys.readouterr().out


def test_bad_inputs_are_usage_errors(live: Setup, tmp_path: Path, capsys) -> None:
    assert tagger_main([*live.retrain_args(), "--new", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err
    eleven = Taxonomy(t for t in default_taxonomy() if t.id != "culture")
    path = tmp_path / "eleven.json"
    path.write_text(json.dumps(eleven.to_dict(), ensure_ascii=False), "utf-8")
    assert tagger_main([*live.retrain_args(), "--same-data", "--taxonomy", str(path)]) == 2
    assert "lacks topic(s) ['culture']" in capsys.readouterr().err
    assert tagger_main([*live.retrain_args(), "--same-data", "--tol", "-1"]) == 2
    with pytest.raises(RetrainError, match="unknown training setting"):
        retrain(**live.retrain_kwargs(), config={"bogus": 1})
    assert [p.name for p in list_versions(live.root)] == ["1"]


# ------------------------------------------------------------------- the README's walk-through
def test_cutoff_walk_through_promotes_with_a_dev_gain(live_template: Setup, tmp_path: Path, capsys) -> None:
    """The README's real-data walk-through at a reduced size: a model trained on the labelled
    articles published before 2018-06-01, then `tagger retrain` with the later ones as new data."""
    shared = live_template.data.dev.parent.parent
    work = tmp_path / "work"
    assert tagger_main(["split-by-date", "--cutoff", "2018-06-01", "--out-dir", str(work),
                         str(shared / "gold/train.jsonl.xz")]) == 0
    assert "1190 before, 910 on or after" in capsys.readouterr().out
    before, after = work / "train-before.jsonl", work / "train-after.jsonl"
    root = work / "models" / NAME
    # `tagger train --gold before ...` (seed 0, as in the README) at the test's small size. Thresholds
    # alone decide here: at this size (8k features, 3 folds) the empty-answer rule trades 4 humanitarian
    # articles for others on dev, and the gate rightly refuses a per-topic loss like that; what this test
    # checks is that the later data's gain gets through the gate.
    train_and_publish(corpus=live_template.corpus, gold=[before], dev=live_template.data.dev,
                      taxonomy=default_taxonomy(), model_root=root,
                      cfg=TrainConfig(seed=0, empty_fallback=0.0, **SMALL), log=QUIET)
    report = tmp_path / "report.json"
    rc = tagger_main(["retrain", "--model", str(root), "--corpus", str(live_template.corpus),
                      "--gold", str(before), "--new", str(after), "--gold-eval", str(live_template.data.dev),
                      "--report", str(report)])
    out = capsys.readouterr().out
    assert rc == 0, out
    r = json.loads(report.read_text("utf-8"))
    gain = r["candidate_metrics"]["dev"]["micro_f1"] - r["live_metrics"]["dev"]["micro_f1"]
    assert gain > 0.01, out
    assert r["data"]["new"]["labelled"] == 910
    loaded = load_model(root)
    assert loaded.version == f"{NAME}/2" and loaded.manifest["n_gold"] == 2100
    card = (root / "2" / "MODEL.md").read_text("utf-8")
    assert "v1 F1" in card and f"Gate against `{NAME}/1`" in card
    assert np.isclose(loaded.manifest["metrics"]["dev"]["micro_f1"], r["candidate_metrics"]["dev"]["micro_f1"])

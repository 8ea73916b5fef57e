"""MODEL.md: rendered from the manifest alone, with per-topic metrics, weak-label sources, known
weaknesses read off the numbers, and the comparison with the previous version."""
from __future__ import annotations

from pathlib import Path

from test_retrain_helpers import QUIET, SMALL_CFG, Setup, live_template  # noqa: F401

from tagger.artifacts import load_model
from tagger.training.card import known_weaknesses, render_card
from tagger.training.pipeline import train_and_publish


def _report(f1s: dict[str, tuple[float, int]], micro: float) -> dict:
    return {"n_docs": 300, "micro_f1": micro, "macro_f1": micro, "mission_f1": micro,
            "per_topic": {t: {"precision": f + 0.05 if f < 0.9 else f, "recall": f - 0.05 if f < 0.9 else f, "f1": f,
                              "support": n} for t, (f, n) in f1s.items()}}


def _manifest() -> dict:
    return {
        "name": "arabic-news-topics", "version": "3", "topics": ["diplomacy", "sanctions", "energy", "environment"],
        "seed": 0, "train_config": {"use_sections": True, "use_self_training": True, "use_keywords": True,
                                    "self_train_hi": 0.9, "self_train_lo": 0.1, "weak_weight": 0.3},
        "training_data": {"corpus": {"path": "ant-train.jsonl.xz", "sha256": "e" * 64, "size_bytes": 9528632},
                          "labels": [{"path": "ant-train-annotations.jsonl", "sha256": "b" * 64, "size_bytes": 2000}],
                          "new": [{"path": "new.jsonl", "sha256": "a" * 64, "size_bytes": 1000}]},
        "n_gold": 2100, "n_unlabelled": 21213,
        "gold_topic_counts": {"diplomacy": 570, "sanctions": 124, "energy": 30, "environment": 0},
        "weak_labels": {"sanctions": {"positive": 400, "negative": 9000}},
        "tag_rule_positives": {"sanctions": 45},
        "cv_f1": {"diplomacy": 0.86, "sanctions": 0.78, "energy": 0.7, "environment": 0.6},
        "metrics": {"dev": {"file": {"path": "dev.jsonl", "sha256": "d" * 64, "size_bytes": 1}}
                    | _report({"diplomacy": (0.9, 65), "sanctions": (0.55, 25), "energy": (0.7, 6),
                               "environment": (0.0, 0)}, 0.8)},
        "data_summary": {"labels": {"files": 1, "articles": 1560}, "new": {"labelled": 900, "replaced_gold": 0, "unlabelled": 0, "tagged": 900},
                         "corrections": {"entries": 5, "changed": 4, "promoted_to_gold": 1},
                         "gold_outlets": ["al-arabiya", "sky-news-arabia"], "eval_outlets": {"dev": ["bbc-arabic"]}},
        "retrain": {
            "command": "tagger retrain", "previous_version": "arabic-news-topics/2",
            "tag_audit": {"n_docs": 900, "rules": {"عقوبات": ["sanctions"]}, "noise": ["أخبار"]},
            "gate": {"promote": True, "live_version": "arabic-news-topics/2", "new_topics": ["environment"],
                     "policy": {"tol": 0.01, "topic_tol": 0.05, "min_support": 10, "new_topic_min_f1": 0.5},
                     "reasons": ["dev: micro-F1 0.780 -> 0.800 (+0.020); none of the 2 topics ..."],
                     "comparisons": [{"name": "dev", "live_micro_f1": 0.78, "candidate_micro_f1": 0.8}]},
        },
    }


def test_card_has_every_section_and_the_comparison() -> None:
    previous = {"version": "2", "metrics": {"dev": _report({"diplomacy": (0.88, 65), "sanctions": (0.5, 25),
                                                            "energy": (0.8, 6)}, 0.78)}}
    card = render_card(_manifest(), previous)
    assert card.startswith("# Model card: arabic-news-topics/3")
    for heading in ("## Data", "## Weak-label sources", "## Metrics", "## Comparison with the previous version",
                    "## Known weaknesses"):
        assert heading in card
    assert "| diplomacy | 0.900 | 0.900 | 0.900 | 65 | 0.880 | +0.020 |" in card
    assert "| environment | " in card and "| 0 | – | – |" in card  # new topic: no previous F1
    assert "(v2: micro-F1 0.780, Δ +0.020)" in card
    assert "`عقوبات` → sanctions" in card and "navigation noise: `أخبار`" in card
    assert "| sanctions | 400 | 9000 | 45 |" in card
    assert "Gate against `arabic-news-topics/2`" in card and "**promoted**" in card
    assert "New topics (not in the previous version): environment." in card
    assert "- labels: `ant-train-annotations.jsonl` (2,000 bytes, sha256 `bbbbbbbbbbbb…`)" in card
    assert "- 2100 gold-labelled training articles (1560 of them corpus articles labelled by the label files)" in card
    assert "new data: 900 labelled articles" in card and "4 articles' labels changed" in card


def test_weaknesses_are_read_off_the_numbers() -> None:
    w = "\n".join(known_weaknesses(_manifest()))
    assert "`environment` has no gold training article" in w
    assert "`energy` has only 30 gold training articles" in w
    assert "`sanctions` is weak on dev (F1 0.55" in w
    assert "`energy` (6)" in w  # too few articles to read its F1
    assert "dev has no article of `environment`" in w
    assert "outlet(s) bbc-arabic that no gold training article is from" in w
    assert "`diplomacy`" not in w


def test_tagger_train_can_write_a_card_compared_with_the_previous_version(live_template: Setup, tmp_path: Path) -> None:
    data = live_template.data
    root = tmp_path / "m"
    for _ in range(2):
        train_and_publish(corpus=live_template.corpus, gold=[live_template.base_gold], dev=data.dev, taxonomy=data.tx,
                          model_root=root, cfg=SMALL_CFG, log=QUIET, card=True)
    first, second = (root / "1" / "MODEL.md").read_text("utf-8"), (root / "2" / "MODEL.md").read_text("utf-8")
    assert "# Model card: m/1" in first and "v1 F1" not in first and "## Comparison" not in first
    assert "# Model card: m/2" in second and "| v1 F1 | Δ |" in second and "+0.000" in second
    assert load_model(root / "2").manifest["version"] == "2"  # published through the same verified path
    # Without card=True nothing changes: no MODEL.md.
    train_and_publish(corpus=live_template.corpus, gold=[live_template.base_gold], dev=data.dev, taxonomy=data.tx,
                      model_root=root, cfg=SMALL_CFG, log=QUIET)
    assert not (root / "3" / "MODEL.md").exists()

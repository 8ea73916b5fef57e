"""Site tags as weak labels: the audit separates navigation noise, uninformative entity tags and
topic-agreeing tags; agreeing tags become weak positives in training.

The shared corpus carries no tags, so tagged pages are built from real articles the way news sites
tag them: navigation words on every page, `عقوبات` (in its spellings) on sanctions stories, a sport
tag on sport stories, and entity tags drawn with a seeded RNG regardless of topic."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from test_retrain_helpers import (  # noqa: F401
    BASE_GOLD,
    Setup,
    article_json,
    live,
    live_template,
    write_jsonl,
)

from tagger.taxonomy import default_taxonomy
from tagger.training.data import Article
from tagger.training.fit import TrainConfig, _weak_labels
from tagger.training.retrain import retrain
from tagger.training.tags import TagAuditConfig, TagRules, audit_tags, tag_key
from tagger.training.weak import ABSTAIN

NAVIGATION = ["أخبار", "الرئيسية", "العالم"]
ENTITIES = ["ترامب", "إيران", "روسيا", "السعودية", "مصر", "الصين"]
SANCTIONS_SPELLINGS = ["عقوبات", "العقوبات", "والعقوبات"]


def site_tags(a: Article, rng: random.Random) -> list[str]:
    tags = list(NAVIGATION) + rng.sample(ENTITIES, 2)
    if "sanctions" in (a.topics or ()):
        tags.append(rng.choice(SANCTIONS_SPELLINGS))
    if "sports" in (a.topics or ()):
        tags.append("كرة القدم")
    if rng.random() < 0.01:
        tags.append("وسم نادر")
    return tags


def test_tag_key_folds_spellings() -> None:
    assert len({tag_key(t) for t in SANCTIONS_SPELLINGS}) == 1
    assert tag_key("كرة القدم") != tag_key("كرة")


def test_audit_separates_noise_entities_and_topic_tags(live_template: Setup) -> None:
    articles = live_template.data.gold[:600]
    rng = random.Random(7)
    tags = [site_tags(a, rng) for a in articles]
    tx = default_taxonomy()
    audit = audit_tags(tags, [set(a.topics) for a in articles], tx.ids, TagAuditConfig(), {"gold": len(articles)})
    kinds = {s.tag: s.kind for s in audit.tags}
    assert all(kinds[t] == "noise" for t in NAVIGATION)
    assert all(kinds[t] == "uninformative" for t in ENTITIES)
    assert kinds["وسم نادر"] == "rare"
    sanctions = next(s for s in audit.tags if s.key == tag_key("عقوبات"))
    assert sanctions.kind == "rule" and sanctions.rule_topics == ("sanctions",)
    assert sanctions.n_docs == sum("sanctions" in a.topics for a in articles)  # three spellings, one tag
    topic, _, precision, lift = sanctions.best[0]
    assert (topic, precision) == ("sanctions", 1.0) and lift > 5
    assert kinds["كرة القدم"] == "rule"

    rules = audit.rules(tx.ids)
    assert set(rules.rules.values()) == {("sanctions",), ("sports",)}
    row = rules.labels(["أخبار", "والعقوبات", "ترامب"])
    assert row[tx.ids.index("sanctions")] == 1 and (row == ABSTAIN).sum() == len(tx.ids) - 1
    assert (rules.labels(["أخبار", "إيران"]) == ABSTAIN).all()

    js = audit.to_json()
    assert set(js["noise"]) == set(NAVIGATION) and js["rules"][sanctions.tag] == ["sanctions"]
    table = audit.table()
    assert "noise" in table and "rule → sanctions" in table and "600 tagged articles" in table
    json.dumps(js, ensure_ascii=False)  # JSON-ready for the manifest


def test_audit_thresholds_are_validated_and_applied() -> None:
    for bad in ({"noise_share": 0}, {"min_precision": 1.5}, {"min_support": 0}, {"min_lift": 0.5}):
        with pytest.raises(ValueError):
            TagAuditConfig(**bad)
    # 10 pages, 7 with the topic: a rule at precision 0.6, not at 0.8.
    tags = [["x"]] * 10 + [["y"]] * 30
    labels = [{"economy"}] * 7 + [set()] * 33
    assert audit_tags(tags, labels, ["economy"]).tags[1].kind == "rule"
    assert audit_tags(tags, labels, ["economy"], TagAuditConfig(min_precision=0.8)).tags[1].kind == "uninformative"
    with pytest.raises(ValueError):
        audit_tags([["x"]], [], ["economy"])


def test_tag_positives_beat_the_model_but_not_sections() -> None:
    cfg = TrainConfig()
    P = np.array([[0.05, 0.5], [0.05, 0.5]])  # the model says "no" to topic 0
    tagged = np.array([[1, ABSTAIN], [1, ABSTAIN]], dtype=np.int8)
    sections = np.array([[ABSTAIN, ABSTAIN], [0, ABSTAIN]], dtype=np.int8)  # row 1's section rules topic 0 out
    L = _weak_labels(P, None, sections, cfg, tagged)
    assert L[0, 0] == 1 and L[1, 0] == 0 and L[0, 1] == ABSTAIN
    assert (_weak_labels(None, None, None, cfg, tagged) == tagged).all()  # tags alone label too
    assert (_weak_labels(P, None, sections, cfg) == _weak_labels(P, None, sections, cfg, None)).all()


def test_retrain_learns_from_tagged_pages(live: Setup, tmp_path: Path) -> None:
    """Unlabelled tagged pages: the audit labels them with the live model's predictions, finds the
    sanctions and sport tags, and the candidate gets those pages as weak positives."""
    rng = random.Random(11)
    pages = live.data.gold[BASE_GOLD:1200]  # their gold labels are NOT given: only title, text, tags
    new = write_jsonl(tmp_path / "tagged.jsonl", (article_json(a, None, tags=site_tags(a, rng)) for a in pages))
    result = retrain(**live.retrain_kwargs(), new=[new], dry_run=True)
    audit = result.audit
    assert audit is not None and audit.label_sources == {"gold": 0, "live model": len(pages)}
    assert {s.tag for s in audit.of_kind("noise")} == set(NAVIGATION)
    rules = {s.key: s.rule_topics for s in audit.of_kind("rule")}
    assert rules[tag_key("عقوبات")] == ("sanctions",) and rules[tag_key("كرة القدم")] == ("sports",)
    assert not any(tag_key(e) in rules for e in ENTITIES)
    n_sanctions = sum("sanctions" in a.topics for a in pages)
    m = result.manifest
    assert m["tag_rule_positives"]["sanctions"] == n_sanctions
    assert m["weak_labels"]["sanctions"]["positive"] >= n_sanctions
    assert m["retrain"]["tag_audit"]["noise"] and "site tags: audited over 900 tagged articles" in result.card
    assert result.published is None


def test_tag_rules_are_optional_for_fit() -> None:
    rules = TagRules(("a", "b"), {})
    assert not rules and (rules.labels(["x"]) == ABSTAIN).all()

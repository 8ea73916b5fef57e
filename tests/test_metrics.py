"""Metrics agree with shared/tools/score_topics.py, and with a hand-computed example."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tagger.metrics import score
from tagger.taxonomy import default_taxonomy

GOLD = {"a": {"diplomacy", "military"}, "b": {"sanctions"}, "c": set(), "d": {"military"}}
PRED = {"a": {"diplomacy"}, "b": {"sanctions", "economy"}, "c": {"military"}, "d": {"military"}}


def test_hand_computed_example() -> None:
    r = score(GOLD, PRED, ["diplomacy", "military", "sanctions", "economy"])
    m = {x.topic: x for x in r.per_topic}
    # military: tp=1 (d), fp=1 (c), fn=1 (a) → P=R=F1=0.5
    assert (m["military"].tp, m["military"].fp, m["military"].fn) == (1, 1, 1)
    assert m["military"].f1 == pytest.approx(0.5)
    assert m["diplomacy"].f1 == pytest.approx(1.0) and m["sanctions"].f1 == pytest.approx(1.0)
    assert m["economy"].precision == 0.0 and m["economy"].f1 == 0.0 and m["economy"].support == 0
    # micro: TP=3, FP=2, FN=1 → 6/9
    assert r.micro_f1 == pytest.approx(6 / 9)
    assert r.mission_f1 == pytest.approx((1.0 + 0.5 + 1.0) / 3)
    # No topic has support >= 10: macro-F1 is undefined (the reference scorer divides by zero), not 0.
    assert math.isnan(r.macro_f1) and r.to_json()["macro_f1"] is None and "macro-F1 (support>=10) n/a" in r.table()


def test_missing_prediction_is_an_error() -> None:
    with pytest.raises(ValueError, match="no prediction"):
        score(GOLD, {"a": set()}, ["military"])


def test_agrees_with_the_official_scorer(tmp_path: Path, shared_dir: Path) -> None:
    gold_lines = [json.loads(l) for l in open(shared_dir / "gold/dev.jsonl", encoding="utf-8")][:60]
    topics = default_taxonomy().ids
    # A deliberately imperfect prediction: drop the first topic, add a rotating wrong one.
    pred = {g["id"]: set(g["topics"][1:]) | {topics[i % len(topics)]} for i, g in enumerate(gold_lines)}
    gold_path, pred_path = tmp_path / "gold.jsonl", tmp_path / "pred.jsonl"
    gold_path.write_text("".join(json.dumps(g, ensure_ascii=False) + "\n" for g in gold_lines), "utf-8")
    pred_path.write_text("".join(json.dumps({"id": i, "topics": sorted(t)}) + "\n" for i, t in pred.items()), "utf-8")
    out = subprocess.run(
        [sys.executable, str(shared_dir / "tools/score_topics.py"), str(gold_path), str(pred_path)],
        capture_output=True, text=True, check=True,
    ).stdout
    ours = score({g["id"]: set(g["topics"]) for g in gold_lines}, pred, topics).table()
    assert ours.strip() == out.strip()

"""The shipped model in the pickle-free format scores exactly as the pickled one did.

``tests/data/v4-dev-scores.json`` holds every dev article's twelve scores, computed with
``arabic-news-topics/4`` as it was shipped before (``model.joblib``, format 1), just before the
conversion to ``model.npz``; the pickle itself is gone from the repo (git history keeps it).
Version 4 stays in models/ as the converted predecessor of version 5; it was trained with text
normalisation v2, so it is loaded here with the normalisation check off (no dev text contains what
v3 changed: zero-width characters inside words or presentation forms).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tagger.artifacts import load_model
from tagger.document import Document
from tagger.paths import default_model_root
from tagger.tagger import Tagger
from tagger.training.data import read_gold

REFERENCE = Path(__file__).parent / "data" / "v4-dev-scores.json"


def test_converted_model_scores_dev_as_the_pickled_one_did(shared_dir: Path) -> None:
    ref = json.loads(REFERENCE.read_text("utf-8"))
    loaded = load_model(default_model_root() / ref["model"].split("/")[1], check_versions=False)
    assert loaded.version == ref["model"] and list(loaded.model.topics) == ref["topics"]
    gold = read_gold(shared_dir / "gold/dev.jsonl", loaded.taxonomy)
    assert {a.id for a in gold} == set(ref["scores"])
    results = Tagger(loaded).tag_many([Document(id=a.id, title=a.title, body=a.body) for a in gold])
    got = np.array([[r.scores[t] for t in ref["topics"]] for r in results])
    want = np.array([ref["scores"][r.id] for r in results])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert loaded.manifest["converted"]["sha256_before"] != loaded.manifest["sha256"]

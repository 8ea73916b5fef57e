"""Training on a small slice of the real data: deterministic, validated inputs, weak labels used."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from tagger.artifacts import load_model
from tagger.io import InputError
from tagger.taxonomy import UnknownTopicError, default_taxonomy
from tagger.training.data import read_articles, read_gold
from tagger.training.fit import TrainConfig, fit_model
from tagger.training.pipeline import evaluate_model, train_and_publish
from tagger.training.weak import load_keyword_rules, load_section_rules

SMALL = TrainConfig(seed=3, max_features=8_000, cv_folds=3, n_jobs=1)


@pytest.fixture(scope="module")
def small_data(shared_dir: Path):
    tx = default_taxonomy()
    gold = read_gold(shared_dir / "gold/train.jsonl.xz", tx)[:300]
    # Every 24th article: all three outlets and all sections, in a small, fixed sample.
    corpus = list(itertools.islice(read_articles(shared_dir / "corpus/ant-train.jsonl.xz"), 0, None, 24))
    return tx, gold, corpus


def _fit(small_data, cfg=SMALL):
    tx, gold, corpus = small_data
    return fit_model(gold, corpus, tx, cfg, load_keyword_rules(tx), load_section_rules(tx), log=lambda *a: None)


def test_same_data_and_seed_give_the_same_model(small_data) -> None:
    a, b = _fit(small_data), _fit(small_data)
    np.testing.assert_array_equal(a.model.coef, b.model.coef)
    np.testing.assert_array_equal(a.model.thresholds, b.model.thresholds)
    assert a.model.featurizer.vocabulary_ == b.model.featurizer.vocabulary_
    tx, gold, _ = small_data
    assert evaluate_model(a.model, gold[:100]).to_json() == evaluate_model(b.model, gold[:100]).to_json()


def test_weak_labels_come_from_sections_and_self_training(small_data) -> None:
    r = _fit(small_data)
    weak = r.stats["weak_labels"]
    assert weak["sports"]["positive"] > 50  # the sport section
    assert weak["diplomacy"]["negative"] > 50
    assert r.stats["n_unlabelled"] < len(small_data[2])  # gold ids are not reused as weak data
    off = _fit(small_data, TrainConfig(**{**SMALL.__dict__, "weak_weight": 0.0}))
    assert not np.array_equal(off.model.coef, r.model.coef)


def test_learns_something_real(small_data) -> None:
    tx, gold, _ = small_data
    r = _fit(small_data)
    assert 0.05 <= r.model.thresholds.min() and r.model.thresholds.max() <= 0.95
    report = evaluate_model(r.model, gold)
    assert report.f1("sports") > 0.8


def test_config_is_validated() -> None:
    for bad in ({"C": 0}, {"weak_weight": -1}, {"self_train_lo": 0.9, "self_train_hi": 0.5}, {"cv_folds": 1}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_unknown_topic_in_gold_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "gold.jsonl"
    rows = [{"id": "a", "title": "t", "text": "نص", "topics": ["sports"]},
            {"id": "b", "title": "t", "text": "نص", "topics": ["sport"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    with pytest.raises(UnknownTopicError, match=r"'sport'.*gold\.jsonl:2"):
        read_gold(path, default_taxonomy())


def test_bad_corpus_lines_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"id": "a", "text": "x"}\n{"id": "b", "text": 5}\n')
    with pytest.raises(InputError, match=r"c\.jsonl:2: field 'text' must be a string"):
        list(read_articles(path))
    path.write_bytes(b'{"id": "a", "text": "x"}\n\xff\xfe\n')
    with pytest.raises(InputError, match="invalid UTF-8"):
        list(read_articles(path))


def test_a_truncated_compressed_corpus_names_the_line_reached(tmp_path: Path) -> None:
    """The suffix is matched in any case (.XZ), and a stream cut short is one InputError with the hint
    the batch reader gives too (tagger.io.cannot_read), after the whole lines before it."""
    import lzma

    data = lzma.compress("".join(json.dumps({"id": f"a{i}", "text": "نص " * 50}) + "\n" for i in range(200)).encode())
    path = tmp_path / "corpus.jsonl.XZ"
    path.write_bytes(data[: len(data) // 2])
    seen = []
    with pytest.raises(InputError, match=r"corpus\.jsonl\.XZ:\d+: cannot read \(.*\): is the file truncated or corrupt\?"):
        seen.extend(read_articles(path))
    assert seen and seen[0].id == "a0"


@pytest.mark.parametrize(("name", "content", "message"), [
    ("keywords.json", {"min_count": 2}, "expected a JSON object with a 'topics' object"),
    ("keywords.json", [{"topics": {}}], "expected a JSON object with a 'topics' object"),
    ("keywords.json", "{not json", "not valid JSON"),
    ("keywords.json", b'{"topics": {"sports": ["\xff"]}}', "not UTF-8 text"),
    ("sections.json", {"sections": {"sport": ["sports"]}}, "section 'sport': expected an object with 'positive'"),
    ("sections.json", {"sections": {"sport": {"positive": "sports"}}}, "section 'sport': expected an object"),
])
def test_a_rules_file_of_the_wrong_shape_is_a_clear_error(tmp_path: Path, name: str, content, message: str) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content), "utf-8")
    load = load_keyword_rules if name == "keywords.json" else load_section_rules
    with pytest.raises(ValueError, match=message):
        load(default_taxonomy(), path)
    with pytest.raises(ValueError, match="cannot read the rules"):
        load(default_taxonomy(), tmp_path / "missing.json")


def test_train_and_publish_writes_a_verified_version(small_data, shared_dir: Path, tmp_path: Path) -> None:
    tx, gold, corpus = small_data
    gold_path = tmp_path / "gold.jsonl"
    corpus_path = tmp_path / "corpus.jsonl"
    gold_path.write_text("".join(json.dumps({"id": a.id, "title": a.title, "text": a.body, "topics": list(a.topics), "outlet": a.outlet}, ensure_ascii=False) + "\n" for a in gold[:200]), "utf-8")
    corpus_path.write_text("".join(json.dumps({"id": a.id, "title": a.title, "text": a.body, "sections": list(a.sections)}, ensure_ascii=False) + "\n" for a in corpus[:600]), "utf-8")
    _, report, out = train_and_publish(
        corpus=corpus_path, gold=[gold_path], dev=shared_dir / "gold/dev.jsonl", taxonomy=tx,
        model_root=tmp_path / "models" / "m", cfg=SMALL, log=lambda *a: None,
    )
    loaded = load_model(out)
    m = loaded.manifest
    assert m["seed"] == 3 and m["training_data"]["corpus"]["size_bytes"] == corpus_path.stat().st_size
    assert len(m["training_data"]["corpus"]["sha256"]) == 64
    assert m["metrics"]["dev"]["micro_f1"] == pytest.approx(report.micro_f1, abs=1e-4)

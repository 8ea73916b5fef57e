"""Choosing the articles of a labelling round (tagger.training.select): the least sure under the shipped
model by tagger.uncertainty's ranking, or a seeded random draw; never two copies of one story."""
from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
from test_retrain_helpers import write_jsonl

from tagger.artifacts import LoadedModel
from tagger.document import Document
from tagger.tagger import Tagger
from tagger.training.data import Article, read_articles
from tagger.training.select import (
    DUPLICATE_PREFIX_CHARS, candidate_pool, choose_random, choose_uncertain, duplicate_keys, score_articles,
)
from tagger.uncertainty import margin


@pytest.fixture(scope="module")
def corpus_articles(shared_dir: Path) -> list[Article]:
    """240 articles spread over the real corpus (every 97th: all three outlets, every section)."""
    articles = list(itertools.islice(read_articles(shared_dir / "corpus/ant-train.jsonl.xz"), 0, 97 * 240, 97))
    assert len({a.outlet for a in articles}) == 3 and len({a.sections for a in articles}) > 5
    return articles


def _copy(a: Article, new_id: str, **changes: str) -> Article:
    return dataclasses.replace(a, id=new_id, **changes)


def test_the_pool_is_the_corpus_minus_excluded_ids_in_corpus_order(tmp_path: Path) -> None:
    rows = [{"id": f"c{i}", "title": f"عنوان {i}", "text": "نص الخبر", "outlet": "x"} for i in range(5)]
    path = write_jsonl(tmp_path / "corpus.jsonl", rows)
    assert [a.id for a in candidate_pool(path, {"c1", "c3", "not-there"})] == ["c0", "c2", "c4"]
    assert [a.id for a in candidate_pool(read_articles(path), set())] == [f"c{i}" for i in range(5)]

    # An article nobody can read is not quietly left out of the round.
    path = write_jsonl(tmp_path / "bad.jsonl", rows + [{"id": "blank", "title": " ", "text": ""}])
    with pytest.raises(ValueError, match="corpus article 'blank' has no text"):
        candidate_pool(path, set())
    assert len(candidate_pool(path, {"blank"})) == 5


def test_uncertain_choice_is_the_least_sure_under_the_shipped_model(loaded: LoadedModel,
                                                                     corpus_articles: list[Article]) -> None:
    chosen = choose_uncertain(loaded, corpus_articles, 30, seed=7)
    assert len(chosen) == 30 and len({s.article.id for s in chosen}) == 30

    # Recompute what "least sure" means from the predict path's own scores: the margin of each article's
    # scores from the model's thresholds.
    results = Tagger(loaded).tag_many([Document(id=a.id, title=a.title, body=a.body) for a in corpus_articles])
    scores = np.array([[r.scores[t] for t in loaded.model.topics] for r in results])
    expected = dict(zip((a.id for a in corpus_articles), margin(scores, loaded.model.thresholds)))
    predicted = {r.id: tuple(t.topic for t in r.topics) for r in results}
    for s in chosen:
        assert s.margin == pytest.approx(expected[s.article.id], abs=1e-12)
        assert s.predicted == predicted[s.article.id]
    margins = [s.margin for s in chosen]
    assert margins == sorted(margins)
    # Nothing left out is less sure than what was taken (these 240 articles hold no near-duplicates).
    left_out = [m for i, m in expected.items() if i not in {s.article.id for s in chosen}]
    assert min(left_out) >= margins[-1]
    assert margins[0] < 0.2 < float(np.median(list(expected.values())))

    # score_articles gives every article the same figures, in input order.
    every = score_articles(loaded, corpus_articles)
    assert [s.article.id for s in every] == [a.id for a in corpus_articles]
    assert [s.margin for s in every] == pytest.approx([expected[a.id] for a in corpus_articles], abs=1e-12)

    # Same seed, same answer; bad sizes are refused.
    assert [s.article.id for s in choose_uncertain(loaded, corpus_articles, 30, seed=7)] == \
        [s.article.id for s in chosen]
    with pytest.raises(ValueError, match="asked for 241 articles but the pool has only 240"):
        choose_uncertain(loaded, corpus_articles, 241, seed=7)
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        choose_uncertain(loaded, corpus_articles, -1, seed=7)


def test_near_duplicates_get_one_label_not_several(loaded: LoadedModel, corpus_articles: list[Article]) -> None:
    least = choose_uncertain(loaded, corpus_articles, 3, seed=1)
    top, second = least[0].article, least[1].article
    same_title = _copy(top, "dup-title", body="خبر آخر تماما عن موضوع مختلف. " * 5)
    # The same opening (spacing aside) and a different ending: a re-post with another tag line.
    opening = top.body[:DUPLICATE_PREFIX_CHARS + 50]
    same_opening = _copy(top, "dup-body", title="عنوان جديد لنفس الخبر", body="  " + opening.replace(" ", "  ") + " نهاية أخرى")
    assert set(duplicate_keys(same_title)) & set(duplicate_keys(top))
    assert set(duplicate_keys(same_opening)) & set(duplicate_keys(top))

    articles = [same_title, *corpus_articles, same_opening]
    chosen = [s.article.id for s in choose_uncertain(loaded, articles, 10, seed=1)]
    assert len(chosen) == 10
    # One of the three copies of the least-sure story is taken (the one that ranks first); its twins
    # are passed over even if they rank as unsure.
    assert len({"dup-title", "dup-body", top.id} & set(chosen)) == 1

    # A story already labelled (a `known` article) is not chosen again under another id.
    chosen = [s.article.id for s in choose_uncertain(loaded, corpus_articles, 10, seed=1, known=[_copy(second, "gold-1")])]
    assert second.id not in chosen and top.id in chosen

    # Too few distinct stories for the request is an error, not a short list.
    copies = [_copy(top, f"copy-{i}") for i in range(5)]
    with pytest.raises(ValueError, match="only 1 are not near-duplicates"):
        choose_uncertain(loaded, copies, 2, seed=1)


def test_the_seed_decides_between_equally_unsure_copies(loaded: LoadedModel,
                                                        corpus_articles: list[Article]) -> None:
    """Re-posted copies score exactly alike; which one is kept follows the seed, not the corpus order."""
    top = choose_uncertain(loaded, corpus_articles, 1, seed=0)[0].article
    copies = [_copy(top, f"copy-{i}") for i in range(8)]
    articles = corpus_articles[:50] + copies
    kept = {seed: [s.article.id for s in choose_uncertain(loaded, articles, 5, seed=seed)] for seed in range(6)}
    first = {seed: ids[0] for seed, ids in kept.items()}
    assert all(f.startswith("copy-") for f in first.values())
    assert len(set(first.values())) > 1
    assert all(sum(i.startswith("copy-") for i in ids) == 1 for ids in kept.values())
    assert kept[3] == [s.article.id for s in choose_uncertain(loaded, articles, 5, seed=3)]


def test_random_choice_is_seeded_excludes_ids_and_skips_duplicates(corpus_articles: list[Article]) -> None:
    ids = [a.id for a in corpus_articles]
    one = [a.id for a in choose_random(corpus_articles, 50, seed=20261209)]
    assert one == [a.id for a in choose_random(corpus_articles, 50, seed=20261209)]
    assert one != [a.id for a in choose_random(corpus_articles, 50, seed=20261210)]
    assert len(set(one)) == 50 and set(one) <= set(ids)
    assert one[:10] != [i for i in ids if i in set(one)][:10]  # drawn, not the corpus's first ones

    excluded = set(ids[:200])
    rest = [a.id for a in choose_random(corpus_articles, 40, seed=1, exclude_ids=excluded)]
    assert sorted(rest) == sorted(ids[200:])
    with pytest.raises(ValueError, match="asked for 41 articles but the pool has only 40"):
        choose_random(corpus_articles, 41, seed=1, exclude_ids=excluded)

    # Copies of a story, or of a known (already labelled) one, count once.
    a, b = corpus_articles[0], corpus_articles[1]
    doubled = [a, _copy(a, "a-again"), b, _copy(b, "b-again", title="عنوان آخر")]
    assert len(choose_random(doubled, 2, seed=5)) == 2
    with pytest.raises(ValueError, match="only 2 are not near-duplicates"):
        choose_random(doubled, 3, seed=5)
    assert [x.id for x in choose_random(doubled, 1, seed=5, known=[_copy(a, "gold-a")])][0] in {b.id, "b-again"}

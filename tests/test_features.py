"""The featuriser computes scikit-learn's TF-IDF exactly, with its own fast lookup."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from tagger.features import NotFittedError, TfidfFeaturizer
from tagger.text import analyze

DOCS = [
    "فرضت الولايات المتحدة عقوبات جديدة على كوريا الشمالية بسبب برنامجها الصاروخي",
    "الولايات المتحدة تهدد بفرض عقوبات على روسيا إذا أرسلت كوريا الشمالية أسلحة",
    "فاز المنتخب في مباراة كرة القدم وتأهل إلى نهائي كأس العالم",
    "المنتخب الوطني يخسر المباراة الودية أمام كوريا الجنوبية",
    "ارتفعت أسعار النفط بعد قرار أوبك خفض الإنتاج والعقوبات على إيران",
    "",
    "عقوبات عقوبات عقوبات",
]


def _sklearn(tokens: list[list[str]], **kw) -> TfidfVectorizer:
    return TfidfVectorizer(
        tokenizer=lambda x: x, preprocessor=lambda x: x, lowercase=False, token_pattern=None,
        ngram_range=(1, 2), sublinear_tf=True, **kw,
    ).fit(tokens)


def test_matches_sklearn_tfidf_exactly() -> None:
    tokens = [analyze(d) for d in DOCS]
    ours = TfidfFeaturizer(min_df=2, max_features=None).fit(tokens)
    ref = _sklearn(tokens, min_df=2)
    assert ours.vocabulary_ == ref.vocabulary_
    np.testing.assert_allclose(ours.idf_, ref.idf_, rtol=0, atol=1e-12)
    new = [analyze("عقوبات جديدة على كوريا الشمالية والمنتخب"), analyze("كلمات لم ترها النماذج"), []]
    a = ours.transform_tokens(tokens + new).toarray()
    b = ref.transform(tokens + new).toarray()
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_matrices_are_canonical_csr() -> None:
    """Rows come out in first-occurrence order; the matrices handed to scikit-learn must still be
    canonical (sorted, no duplicates): training fits topics on one matrix in parallel threads, and
    unsorted rows made those fits differ from run to run."""
    tokens = [analyze(d) for d in DOCS]
    feat = TfidfFeaturizer(min_df=1, max_features=None).fit(tokens)
    rows = feat.rows_tokens(tokens)
    assert any((np.diff(rows.row(i)[0]) < 0).any() for i in range(len(rows))), "fixture rows should be unsorted"
    before = [(i.copy(), v.copy()) for i, v in map(rows.row, range(len(rows)))]
    for m in (feat.transform_tokens(tokens), feat.transform_documents([("", d) for d in DOCS]), rows.to_csr()):
        assert m.has_canonical_format
        assert all((np.diff(m.indices[a:b]) > 0).all() for a, b in zip(m.indptr[:-1], m.indptr[1:]))
    # Building the matrix leaves the rows as they were (values still on their own features).
    for k, (i, v) in enumerate(before):
        np.testing.assert_array_equal(rows.row(k)[0], i)
        np.testing.assert_array_equal(rows.row(k)[1], v)


def test_matches_sklearn_on_real_articles(shared_dir) -> None:
    from tagger.training.data import read_articles

    arts = [a for _, a in zip(range(300), read_articles(shared_dir / "gold/dev.jsonl"))]
    tokens = [analyze(a.title + "\n" + a.body) for a in arts]
    ours = TfidfFeaturizer(min_df=2, max_features=None).fit(tokens[:200])
    ref = _sklearn(tokens[:200], min_df=2)
    assert ours.vocabulary_ == ref.vocabulary_
    diff = abs(ours.transform_tokens(tokens[200:]) - ref.transform(tokens[200:]))
    assert diff.max() < 1e-12


def test_max_features_keeps_bigrams_resolvable() -> None:
    tokens = [analyze(d) for d in DOCS]
    feat = TfidfFeaturizer(min_df=1, max_features=12).fit(tokens)
    vocab = feat.vocabulary_
    assert 0 < len(vocab) <= 12
    for g in vocab:
        if " " in g:
            assert all(w in vocab for w in g.split(" "))
    assert sorted(vocab, key=vocab.get) == sorted(vocab)  # columns in sorted n-gram order


def test_unfitted_use_is_a_clear_error() -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        TfidfFeaturizer().transform(["نص"])


@pytest.mark.parametrize("kw", [{"min_df": 0}, {"min_df": 1.5}, {"max_features": 0}, {"max_features": "10"}])
def test_parameters_are_validated(kw: dict) -> None:
    with pytest.raises(ValueError):
        TfidfFeaturizer(**kw)


def test_fit_on_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="zero documents"):
        TfidfFeaturizer().fit([])


def test_pickle_and_from_vocabulary_round_trip() -> None:
    tokens = [analyze(d) for d in DOCS]
    feat = TfidfFeaturizer(min_df=1, max_features=None).fit(tokens)
    expected = feat.transform_tokens(tokens).toarray()
    clone = pickle.loads(pickle.dumps(feat))
    np.testing.assert_array_equal(clone.transform_tokens(tokens).toarray(), expected)
    rebuilt = TfidfFeaturizer.from_vocabulary(
        feat.feature_names(), feat.idf_, min_df=1, max_features=None, n_docs=feat.n_docs_
    )
    np.testing.assert_array_equal(rebuilt.transform_tokens(tokens).toarray(), expected)


def test_from_vocabulary_rejects_inconsistent_input() -> None:
    with pytest.raises(ValueError, match="idf has shape"):
        TfidfFeaturizer.from_vocabulary(["a", "b"], np.ones(3), min_df=1, max_features=None, n_docs=1)
    with pytest.raises(ValueError, match="bigram"):
        TfidfFeaturizer.from_vocabulary(["a", "a c"], np.ones(2), min_df=1, max_features=None, n_docs=1)


def test_the_feature_count_is_bounded_where_bigram_keys_still_fit_the_lookup() -> None:
    from tagger.features import MAX_FEATURES

    with pytest.raises(ValueError, match="max_features"):
        TfidfFeaturizer(max_features=MAX_FEATURES + 1)
    TfidfFeaturizer(max_features=MAX_FEATURES)


def test_a_dropped_model_is_freed_without_the_garbage_collector() -> None:
    """Issue 15, defect 1: the featuriser held a bound method of itself (its word table's resolver), a
    reference cycle, so a model replaced by a hot reload stayed in memory until a full collection.
    With the collector off, dropping the last reference must free the model, featuriser and word
    table at once (``bench/reload_memory.py`` shows the memory side)."""
    import gc
    import weakref

    from tagger.artifacts import load_model
    from tagger.document import from_fields
    from tagger.paths import default_model_root
    from tagger.tagger import Tagger

    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        tagger = Tagger(load_model(default_model_root()))
        # Tagging fills the word table (and takes the str path for a document outside the code page).
        tagger.tag_many([from_fields(id="a", title="عقوبات", text=DOCS[0]), from_fields(id="b", title="", text="😀 " + DOCS[4])])
        feat = tagger.loaded.model.featurizer
        assert len(feat._word_ids) > 0
        refs = {name: weakref.ref(obj) for name, obj in (
            ("tagger", tagger), ("model", tagger.loaded.model), ("featurizer", feat), ("word table", feat._word_ids))}
        del tagger, feat
        alive = [name for name, ref in refs.items() if ref() is not None]
        assert alive == [], f"still alive without a collection: {alive}"
    finally:
        if was_enabled:
            gc.enable()

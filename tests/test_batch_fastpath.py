"""The fast featurisation path gives exactly what the reference definitions give.

Batch throughput rests on three rewrites: text normalisation through a one-byte code page
(``tagger.text``), set-based stemming, and the compiled row builder (``tagger.kernels``). Each is
checked here against a plain reference: the original ``str.translate``/regex pipeline, the original
affix loop, and scikit-learn's ``TfidfVectorizer`` with the shipped model's vocabulary and idf.
"""
from __future__ import annotations

import json
import lzma
import random
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from tagger import text
from tagger.artifacts import LoadedModel
from tagger.features import TfidfFeaturizer
from tagger.text import analyze, document_tokens, normalize, stem, tokenize


@pytest.fixture(scope="module")
def articles(shared_dir: Path) -> list[dict]:
    """1,500 corpus articles and the 300 dev articles (another outlet)."""
    rows = []
    with lzma.open(shared_dir / "corpus/ant-train.jsonl.xz", "rt", encoding="utf-8") as f:
        for _, line in zip(range(1500), f):
            rows.append(json.loads(line))
    with open(shared_dir / "gold/dev.jsonl", encoding="utf-8") as f:
        rows += [json.loads(line) for line in f]
    return rows


# --------------------------------------------------------------------------------- text
def _reference_stem(word: str) -> str:
    """The original affix loop, kept here as the definition of stem()."""
    if len(word) <= 3 or not "\u0621" <= word[0] <= "\u064a":
        return word
    for p in text._PREFIXES:
        if word.startswith(p) and len(word) - len(p) >= 3:
            word = word[len(p):]
            break
    for s in text._SUFFIXES:
        if word.endswith(s) and len(word) - len(s) >= 3:
            word = word[: -len(s)]
            break
    return word


def _reference_analyze(s: str) -> list[str]:
    return [_reference_stem(t) for t in text._tokenize_reference(s)]


EDGE_CASES = [
    "",
    "   ",
    "الْعَرَبِيَّةُ والعقوباتُ",
    "عربـــي ـ كلمة",  # tatweel inside and alone
    "قالَ الرَّئِيسُ: «نَعَم»، 2018!",
    "عام ٢٠١٨ و۱۲۳ ٪٥",
    "Reuters NEWS Ünïcode ÉTÉ",
    "ΣΟΦΟΣ σοφός",  # final sigma: context-dependent lower case → reference path
    "İstanbul",  # lower-cases to two characters → reference path
    "ﻟﻠﻌﻘﻮﺑﺎﺕ presentation forms",  # outside the code page
    "emoji 😀 بين الكلمات",
    "a\u200bb\u200cc\u200fd\u202be",  # zero-width and bidi controls
    "line\x1cseparators\x1d\x1e\x1fand\u2029paragraph\u00a0nbsp",
    "snake_case_words and __dunder__",
    "\u0610\u0611ﷺ honorifics",
    "ک ی ٱ",
]


@pytest.mark.parametrize("s", EDGE_CASES)
def test_edge_cases_match_the_reference(s: str) -> None:
    assert normalize(s) == text._normalize_reference(s)
    assert tokenize(s) == text._tokenize_reference(s)
    assert analyze(s) == _reference_analyze(s)


def test_real_articles_match_the_reference(articles: list[dict]) -> None:
    fallbacks = 0
    for a in articles:
        for s in (a["title"], a["text"]):
            assert normalize(s) == text._normalize_reference(s)
            assert tokenize(s) == text._tokenize_reference(s)
            fallbacks += text._word_bytes(s) is None
        assert document_tokens(a["title"], a["text"]) == (
            _reference_analyze(a["title"]) * 2 + _reference_analyze(a["text"])
        )
    # The code page is meant to cover real Arabic news: nearly every text takes the fast path.
    assert fallbacks < 0.01 * 2 * len(articles)


def test_random_strings_match_the_reference() -> None:
    rng = random.Random(7)
    alphabet = text._CODE_PAGE + "ﻟﷺ😀ΣİÉǅ\u3000\u2028\u0301_"
    for _ in range(20_000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert normalize(s) == text._normalize_reference(s), repr(s)
        assert tokenize(s) == text._tokenize_reference(s), repr(s)
        assert analyze(s) == _reference_analyze(s), repr(s)


def test_stem_matches_the_affix_loop() -> None:
    rng = random.Random(3)
    letters = "اويهلتنمبكفسعرقى" + "ab1"
    words = {"".join(rng.choice(letters) for _ in range(rng.randint(0, 9))) for _ in range(50_000)}
    words |= {p + mid + s for p in text._PREFIXES for s in text._SUFFIXES for mid in ("", "ك", "كت", "كتب", "كتاب")}
    for w in words:
        assert text._stem(w) == _reference_stem(w), w
        assert stem(w) == _reference_stem(w), w


def test_stems_are_interned_like_the_vocabulary(loaded: LoadedModel) -> None:
    # row() relies on identity hits: the featuriser's keys and the analyser's stems are one object.
    vocab_keys = {k: k for k in loaded.model.featurizer._unigram_ids}
    toks = analyze("فرضت الولايات المتحدة عقوبات جديدة على كوريا الشمالية")
    assert toks and all(vocab_keys[t] is t for t in toks if t in vocab_keys)


# ----------------------------------------------------------------------------- features
def _sklearn_like(feat: TfidfFeaturizer) -> TfidfVectorizer:
    vec = TfidfVectorizer(
        tokenizer=lambda x: x, preprocessor=lambda x: x, lowercase=False, token_pattern=None,
        ngram_range=(1, 2), sublinear_tf=True, vocabulary=feat.feature_names(),
    )
    vec.fit([["x"]])
    vec.idf_ = feat.idf_  # the model's idf, not one learnt from the dummy fit
    return vec


def _unique_row(feat: TfidfFeaturizer, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The original row(): string-free bigrams, np.unique counts; the fast row must equal it bit for bit."""
    ids = feat.vocabulary_
    uni = np.array([ids.get(t, -1) if " " not in t else -1 for t in tokens], dtype=np.int64)
    cols = list(uni[uni >= 0])
    for a, b in zip(tokens, tokens[1:]):
        j = ids.get(f"{a} {b}")
        if j is not None:
            cols.append(j)
    if not cols:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    idx, counts = np.unique(np.array(cols, dtype=np.int64), return_counts=True)
    vals = (np.log(counts) + 1.0) * feat.idf_[idx]
    vals /= np.sqrt(vals @ vals)
    return idx, vals


def test_rows_equal_sklearn_tfidf_on_the_shipped_vocabulary(articles: list[dict], loaded: LoadedModel) -> None:
    feat = loaded.model.featurizer
    token_lists = [document_tokens(a["title"], a["text"]) for a in articles[:600]]
    token_lists += [[], ["غير_موجود"], ["غير", "موجود", "اطلاقا"], token_lists[0][:1], token_lists[1] * 3]
    ours = feat.transform_tokens(token_lists)
    ref = _sklearn_like(feat).transform(token_lists)
    ours.sort_indices()
    ref = sp.csr_matrix(ref)
    ref.sort_indices()
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(ours.indptr, ref.indptr)
    np.testing.assert_array_equal(ours.indices, ref.indices)
    np.testing.assert_allclose(ours.data, ref.data, rtol=0, atol=1e-12)


def test_rows_equal_the_unique_based_original(articles: list[dict], loaded: LoadedModel) -> None:
    """The compiled row builder against a per-document np.unique reference: the same features (each
    once; ours in order of first occurrence) and counts; values equal up to the order of the norm's
    sum (a sequential sum against BLAS's: a few ulps, under 1e-14 relative here)."""
    feat = loaded.model.featurizer
    for a in articles[:400]:
        tokens = document_tokens(a["title"], a["text"])
        idx, vals = feat.row(tokens)
        ref_idx, ref_vals = _unique_row(feat, tokens)
        order = np.argsort(idx)
        idx, vals = idx[order], vals[order]
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(vals, ref_vals, rtol=1e-14, atol=0)


def test_a_document_scores_the_same_alone_and_in_any_chunk(articles: list[dict], loaded: LoadedModel) -> None:
    """Server requests (one document) and batch chunks (hundreds) must agree bit for bit, or a score
    on a threshold could tip differently."""
    model = loaded.model
    pairs = [(a["title"], a["text"]) for a in articles[:150]] + [("", ""), ("عنوان فقط", "")]
    together = model.scores_rows(model.featurizer.rows_documents(pairs))
    in_threes = np.vstack([model.scores_rows(model.featurizer.rows_documents(pairs[i:i + 3]))
                           for i in range(0, len(pairs), 3)])
    alone = np.vstack([model.scores_rows(model.featurizer.rows_documents([p])) for p in pairs])
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(in_threes, alone)


def test_scores_equal_the_reference_pipeline(articles: list[dict], loaded: LoadedModel) -> None:
    """Reference text pipeline → scikit-learn TF-IDF → logistic scores, against the fast path."""
    model = loaded.model
    vec = _sklearn_like(model.featurizer)
    sample = articles[-200:]
    ref_tokens = [_reference_analyze(a["title"]) * 2 + _reference_analyze(a["text"]) for a in sample]
    z = vec.transform(ref_tokens) @ model.coef + model.intercept
    expected = 1.0 / (1.0 + np.exp(-z))
    got = np.array([model.scores_tokens(document_tokens(a["title"], a["text"])) for a in sample])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_featurizer_survives_pickling_with_its_fast_index(loaded: LoadedModel) -> None:
    import pickle

    feat = loaded.model.featurizer
    clone = pickle.loads(pickle.dumps(feat))
    tokens = analyze("فرضت الولايات المتحدة عقوبات جديدة على كوريا الشمالية وعقوبات جديدة")
    for a, b in zip(clone.row(tokens), feat.row(tokens)):
        np.testing.assert_array_equal(a, b)
    assert clone._unigram_ids["كلمة_لا_توجد"] == clone.n_features  # unknown words stay unknown


def test_transform_documents_equals_the_token_path_bit_for_bit(articles: list[dict], loaded: LoadedModel) -> None:
    """The word → id fast path (no str per word, no stem → id lookup) against document_tokens + row()."""
    feat = loaded.model.featurizer
    pairs = [(a["title"], a["text"]) for a in articles[:300]] + [(a["title"], a["text"]) for a in articles[-100:]]
    pairs += [
        ("", articles[0]["text"]),  # no title
        (articles[1]["title"], ""),  # title only
        ("", ""),
        ("عنوان 😀 خارج صفحة الرموز", articles[2]["text"]),  # title outside the code page: the str path
        (articles[3]["title"], articles[3]["text"] + " ﻟﻠﻌﻘﻮﺑﺎﺕ"),  # body outside the code page
        ("كلمات لم ترها النماذج قط", "غريبه غريبه غريبه"),
    ]
    expected = feat.transform_tokens(document_tokens(t, b) for t, b in pairs)
    for _ in range(2):  # cold, then warm word → id cache
        got = feat.transform_documents(pairs)
        np.testing.assert_array_equal(got.indptr, expected.indptr)
        np.testing.assert_array_equal(got.indices, expected.indices)
        np.testing.assert_array_equal(got.data, expected.data)
    assert text.document_word_bytes("عنوان 😀", "نص") is None and text.document_word_bytes("", "نص 😀") is None
    words = text.document_word_bytes("عنوان", "والعقوبات").split()
    assert [text.word_stem(w) for w in words] == document_tokens("عنوان", "والعقوبات")


def test_compiled_word_folding_equals_document_word_bytes(articles: list[dict]) -> None:
    """fold_words over UTF-16 code units is document_word_bytes, byte for byte, and sets aside
    exactly the documents with a character outside the code page, wherever they sit in a chunk."""
    from tagger.kernels import fold_words

    every_char = "".join(text._CODE_PAGE) + "".join(map(chr, range(0x0600, 0x0700)))
    pairs = [(a["title"], a["text"]) for a in articles[:200] + articles[-100:]]
    pairs += [("", s) for s in EDGE_CASES] + [(s, "نص") for s in EDGE_CASES] + [(every_char, every_char[::-1])]
    pairs += [("a\ud800", "b"), ("", "\udfff"), ("x", "\x00 nul \x00"), ("", ""), ("\u200b", "\u0640\u064b")]
    pairs += [("", "خبر"), ("", "عاجل 😀")]  # last, and ending outside the code page: the padding stays zero
    units = [text.document_units(t, b) for t, b in pairs]
    ends = np.cumsum([len(u) // 2 for u in units])
    buf64, n, seg_ends, outside = fold_words(np.frombuffer(b"".join(units), np.uint16), ends, text.WORD_UNITS)
    folded = buf64.view(np.uint8)[:n].tobytes()
    assert seg_ends[-1] == n and (buf64.view(np.uint8)[n:] == 0).all()
    starts = [0, *(seg_ends[:-1] + 1).tolist()]
    for (t, b), start, end, out in zip(pairs, starts, seg_ends.tolist(), outside.tolist()):
        expected = text.document_word_bytes(t, b)
        assert out == (expected is None), (t, b)
        assert folded[start:end] == (b"" if expected is None else expected), (t[:40], b[:40])
    assert outside.sum() >= 8  # the emoji, presentation forms, surrogates ... cases above


def test_compiled_stemming_equals_stem(articles: list[dict]) -> None:
    """stem_spans on code-page bytes against stem() on the decoded word: every word of 300 articles
    and every affix combination around roots of 1-5 letters, Arabic or not."""
    import itertools

    from tagger.features import _packed
    from tagger.kernels import stem_spans

    words = {w for a in articles[:300] for w in (text.document_word_bytes(a["title"], a["text"]) or b"").split()}
    roots = ["ب", "كت", "كتب", "درس", "مدرس", "a", "ab", "abc", "abcd", "12", "١٢٣٤", "é", "هها", "يين"]
    affixes = ["", *text._PREFIXES, *text._SUFFIXES]
    made = {p + r + x for p, r, x in itertools.product(affixes, roots, affixes)}
    words |= {text.code_page_bytes(w) for w in made} - {None}
    words = sorted(w for w in words if w)
    buf64, starts, lengths = _packed(words)
    buf = buf64.view(np.uint8)
    got_starts, got_lengths = stem_spans(buf, buf64, starts, lengths, *text.STEM_TABLES)
    for w, s, n in zip(words, got_starts.tolist(), got_lengths.tolist()):
        word = text._decode(w, "strict", text._CODE_PAGE)[0]
        assert buf[s: s + n].tobytes() == text.code_page_bytes(text.stem(word)), word


# ------------------------------------------------------------------------- page cleaning
def _line_variants(s: str) -> list[str]:
    return [s, s.replace("\n", "\r\n"), s.replace("\n", "\u2028"), s.replace("\n", "\x1c"), "  " + s + "\n\n"]


PAGE_LIKE = [
    "عنوان\nتاريخ النشر: 2018\nنص المقال\nالمصدر: وكالات\nكلمات دلالية: سياسة اقتصاد",
    "نص\n  - إقرأ أيضاً: عنوان آخر\nبقية النص",
    "نص\nاقرأ أيضا\nقصة ملصوقة",
    "نص\n«قد يهمك: شيء\nتابعوا أحدث الأخبار عبر تطبيق سكاي نيوز",
    "قدم الوزير استقالته\nحملة انتخابية\nنزلت الأسعار",  # look like markers at a glance; are not
    "emoji 😀\nتاريخ النشر: 2018",
    "",
    "\n\n",
]


def test_the_one_pass_cleaner_equals_the_line_by_line_parser(articles: list[dict]) -> None:
    from tagger import document

    texts = [a["text"] for a in articles] + [a["title"] + "\n" + a["text"] for a in articles[:300]] + PAGE_LIKE
    for s in texts:
        for v in _line_variants(s):
            assert document._split_parts(v) == document._split_parts_line_by_line(v), v[:80]


# ------------------------------------------------------------------------- output lines
def test_json_lines_equal_json_dumps(articles: list[dict], loaded: LoadedModel) -> None:
    """Batch lines are rendered from score arrays, not from TagResults: they must be the very text
    json.dumps gives for the TagResult, under every option and for awkward ids and tags."""
    from tagger.document import Document, from_fields
    from tagger.tagger import Tagger, TagOptions

    tagger = Tagger(loaded)
    docs = [from_fields(id=a.get("id", ""), title=a["title"], text=a["text"]) for a in articles[:200]]
    docs += [Document(id='q"uote\\ \ud800 😀 \n', body="عقوبات على إيران", tags=("تاغ", 'a"b', "%s")),
             Document(id="long", body="سياسة " * 60_000)]
    options = (TagOptions(), TagOptions(explain=True), TagOptions(threshold=0.0), TagOptions(threshold=1.0),
               TagOptions(topics=("sanctions", "diplomacy")), TagOptions(top_k=1), TagOptions(top_k=0),
               TagOptions(threshold=0.0, top_k=3, topics=("sanctions", "military", "economy")))
    for opts in options:
        results = tagger.tag_many(docs, opts)
        expected = [json.dumps(r.to_json(), ensure_ascii=False) for r in results]
        assert [r.to_json_line() for r in results] == expected
        assert tagger.tag_lines(docs, opts) == expected, opts
    assert any(r.truncated for r in tagger.tag_many(docs))


def test_chosen_topics_follow_the_definition_with_ties_nan_and_every_option() -> None:
    """choose_topics against its definition: passed and allowed topics sorted by (-score, index)."""
    from tagger.kernels import choose_topics

    rng = np.random.default_rng(3)
    scores = np.round(rng.random((400, 12)), 1)  # rounding makes many ties
    scores[5, 3] = np.nan
    thresholds = np.round(rng.random(12) * 0.6, 1)
    for allowed in (np.ones(12, bool), rng.random(12) < 0.5, np.zeros(12, bool)):
        for top_k in (-1, 0, 1, 3, 12):
            flat, ends = choose_topics(scores, thresholds, allowed, top_k)
            got = np.split(flat, ends[:-1])
            for row, chosen in zip(scores.tolist(), got):
                want = sorted((j for j in range(12) if allowed[j] and row[j] >= thresholds[j]), key=lambda j: (-row[j], j))
                assert chosen.tolist() == (want if top_k < 0 else want[:top_k])
            thresholds_pos = np.maximum(thresholds, 0.05)
            for fallback in (0.5, 0.9):
                flat, ends = choose_topics(scores, thresholds_pos, allowed, top_k, fallback)
                for row, chosen in zip(scores.tolist(), np.split(flat, ends[:-1])):
                    want = sorted((j for j in range(12) if allowed[j] and row[j] >= thresholds_pos[j]),
                                  key=lambda j: (-row[j], j))
                    ratios = [(row[j] / thresholds_pos[j], -j) for j in range(12) if allowed[j] and row[j] == row[j]]
                    if not want and ratios and max(ratios)[0] >= fallback and max(ratios)[0] > 0:
                        want = [-max(ratios)[1]]
                    assert chosen.tolist() == (want if top_k < 0 else want[:top_k]), (row, fallback)


def test_scores_round_like_python_round_near_every_half() -> None:
    """The chunk-wide rounding is Python's round(s, 4) exactly, including scores whose product with
    10,000 rounds across a half (where rint(s * 1e4) alone would be wrong)."""
    from tagger.tagger import _SCORE_TEXT, _score_units

    rng = np.random.default_rng(7)
    halves = (np.arange(10_000) + 0.5) / 10_000
    near = np.concatenate([np.nextafter(halves, 0), halves, np.nextafter(halves, 1)])
    scores = np.concatenate([rng.random(50_000), near, [0.0, 1.0, 0.03125, 0.00005]])
    scores = scores[: len(scores) // 4 * 4].reshape(-1, 4)
    units = _score_units(scores)
    assert units is not None
    assert [[_SCORE_TEXT[u] for u in row] for row in units] == [[repr(round(s, 4)) for s in row] for row in scores.tolist()]
    assert _score_units(np.array([[0.5, np.nan]])) is None
    assert _score_units(np.array([[1.5]])) is None


def test_a_one_topic_model_scores_the_same_alone_and_in_a_chunk(articles: list[dict]) -> None:
    """A one-column weight matrix is the shape where a vectorised sum would change its order."""
    from tagger.model import TopicModel

    tokens = [document_tokens(a["title"], a["text"]) for a in articles[:120]]
    feat = TfidfFeaturizer(min_df=1, max_features=5_000).fit(tokens)
    rng = np.random.default_rng(0)
    model = TopicModel(feat, ["only"], rng.standard_normal((feat.n_features, 1)), [0.1], [0.5])
    together = model.scores_rows(feat.rows_tokens(tokens))
    alone = np.vstack([model.scores_rows(feat.rows_tokens([t])) for t in tokens])
    np.testing.assert_array_equal(together, alone)


def test_tag_many_in_internal_chunks_equals_one_by_one(articles: list[dict], loaded: LoadedModel) -> None:
    from tagger.document import from_fields
    from tagger.tagger import Tagger

    tagger = Tagger(loaded)
    docs = [from_fields(id=str(i), title=a["title"], text=a["text"]) for i, a in enumerate(articles[:700])]
    many = tagger.tag_many(docs)  # more than one internal chunk
    assert [r.to_json() for r in many] == [tagger.tag(d).to_json() for d in docs]


def test_threads_featurising_at_once_get_the_serial_rows(articles: list[dict], loaded: LoadedModel) -> None:
    """The compiled loops release the GIL and reuse per-thread scratch: server threads featurising
    together must each get exactly what they would get alone."""
    import threading

    feat = loaded.model.featurizer
    pairs = [(a["title"], a["text"]) for a in articles[:400]]
    groups = [pairs[i::4] for i in range(4)]
    expected = [feat.rows_documents(g) for g in groups]
    errors: list[str] = []

    def work(k: int) -> None:
        for _ in range(5):
            got = feat.rows_documents(groups[k])
            same = all(np.array_equal(getattr(got, f), getattr(expected[k], f)) for f in ("indptr", "indices", "data"))
            if not same:
                errors.append(f"thread {k} got different rows")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors

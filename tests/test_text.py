"""The one text pipeline: normalisation, tokenisation, stemming, the document view."""
from __future__ import annotations

import pytest

from tagger.text import NORMALIZATION_VERSION, analyze, document_tokens, normalize, stem, tokenize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("أحمد إبراهيم آمال ٱلله", "احمد ابراهيم امال الله"),  # hamza / madda / wasla alef forms
        ("على مستشفى", "علي مستشفي"),  # alef maqsura → ya
        ("مدرسة الحكومة", "مدرسه الحكومه"),  # ta marbuta → ha
        ("الْعَرَبِيَّةُ", "العربيه"),  # harakat, shadda, sukun
        ("كتابٌ جميلاً", "كتاب جميلا"),  # tanween
        ("عربـــي", "عربي"),  # tatweel
        ("کتاب یوم", "كتاب يوم"),  # Persian keheh and yeh
        ("عام ٢٠١٨ و۱۲۳", "عام 2018 و123"),  # Arabic-Indic and extended digits
        ("  سطر\n\tآخر \u00a0 هنا  ", "سطر اخر هنا"),  # any whitespace squeezed
        ("Reuters NEWS Ünïcode", "reuters news ünïcode"),  # Latin lower-cased
        ("", ""),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_tokenize_survives_diacritics() -> None:
    # scikit-learn's default token_pattern splits this word at the first combining mark.
    assert tokenize("الْعَرَبِيَّةُ") == ["العربيه"]
    assert tokenize("قالَ الرَّئِيسُ: «نَعَم»، 2018!") == ["قال", "الرئيس", "نعم", "2018"]


def test_tokenize_splits_on_punctuation_and_underscores() -> None:
    assert tokenize("واشنطن-موسكو،بيونغ_يانغ.") == ["واشنطن", "موسكو", "بيونغ", "يانغ"]


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("والعقوبات", "عقوب"),
        ("بالعقوبات", "عقوب"),
        ("للعقوبات", "عقوب"),
        ("عقوبات", "عقوب"),
        ("الجيش", "جيش"),
        ("قال", "قال"),  # three letters: untouched
        ("reuters", "reuters"),  # not Arabic: untouched
        ("2018", "2018"),
    ],
)
def test_stem(word: str, expected: str) -> None:
    assert stem(word) == expected


def test_analyze_is_tokenize_then_stem() -> None:
    text = "فرضت الولايات المتحدة عقوباتٍ جديدة على كوريا الشمالية"
    assert analyze(text) == [stem(t) for t in tokenize(text)]


def test_document_tokens_counts_the_headline_twice() -> None:
    assert document_tokens("عقوبات جديدة", "نص الخبر") == analyze("عقوبات جديدة") * 2 + analyze("نص الخبر")
    assert document_tokens("", "نص") == analyze("نص")


def _isolated_forms(text: str) -> str:
    """Text as a PDF extractor or a legacy system writes it: each Arabic letter as its presentation form."""
    import unicodedata

    out = []
    for ch in text:
        try:
            out.append(unicodedata.lookup(unicodedata.name(ch) + " ISOLATED FORM"))
        except KeyError:
            out.append(ch)
    return "".join(out)


def test_zero_width_characters_inside_words_do_not_split_them() -> None:
    # ZWNJ, ZWSP, RLM and a soft hyphen as pasted from social media and CMS editors.
    text = "فرضت الولايات المتحدة عقو\u200cبات جديدة على كوريا الشمال\u200bية بعد تجربة صارو\u200fخية، وال\u00adحكومة تدين"
    clean = "فرضت الولايات المتحدة عقوبات جديدة على كوريا الشمالية بعد تجربة صاروخية، والحكومة تدين"
    assert tokenize(text) == tokenize(clean)
    assert normalize("\u202bمرحبا\u202c\u2067 بكم\u2069\ufeff") == "مرحبا بكم"


def test_presentation_forms_read_as_their_base_letters() -> None:
    clean = "العقوبات الأمريكية على إيران لا تشمل الأدوية"
    shaped = _isolated_forms(clean)
    assert shaped != clean and all(not ("\u0621" <= c <= "\u064a") for c in shaped if not c.isspace())
    assert tokenize(shaped) == tokenize(clean)
    # Ligatures: lam-alef (ﻻ, ﻷ) and the word Allah (ﷲ) come apart into their letters.
    assert tokenize("\ufefb \ufef7 \ufdf2") == tokenize("لا لأ الله")
    assert NORMALIZATION_VERSION == 3

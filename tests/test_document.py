"""The page parser keeps the article and drops page parts; structured input goes through the same cleaning."""
from __future__ import annotations

from pathlib import Path

import pytest

from tagger.document import Document, clean_text, from_fields, parse_page

TITLE = "الكرملين يعلن عن زيارة قريبة لزعيم كوريا الشمالية.. كيف علقت واشنطن؟"
BODY_LINE = "وقال المتحدث إن المحادثات بين البلدين ستستأنف الأسبوع المقبل."
OTHER = "كوريا الشمالية تدين التدريبات العسكرية وتحذر من اندلاع حرب حقيقية"


@pytest.fixture(scope="module")
def seed_raw(shared_dir: Path) -> str:
    return (shared_dir / "examples" / "seed-article.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def seed_lines(seed_raw: str) -> list[str]:
    lines = seed_raw.splitlines()
    # The layout these tests cut pieces out of; if the example changes, fail here, not obscurely.
    assert lines[0] == TITLE
    assert lines[1].startswith("تاريخ النشر:")
    assert lines[2].startswith("أعلنت الرئاسة")
    assert "سيدفعون ثمنا" in lines[17]
    assert lines[18].startswith("المصدر:") and lines[19].startswith("كلمات دلالية:")
    assert lines[20].startswith("إقرأ أيضاً")
    return lines


@pytest.fixture(scope="module")
def seed_body(seed_lines: list[str]) -> str:
    return "\n".join(seed_lines[2:18])


def test_seed_page_parsed_exactly(seed_raw: str, seed_body: str) -> None:
    doc = parse_page(seed_raw, id="seed")
    assert doc.id == "seed"
    assert doc.title == TITLE
    assert doc.date == "11th, September 2023 GMT"
    assert doc.body == seed_body
    assert len(doc.body.splitlines()) == 16
    assert doc.body.startswith("أعلنت الرئاسة الروسية")
    assert doc.body.endswith('"سيدفعون ثمنا مقابل هذا الأمر في المجتمع الدولي".')
    assert doc.source == "عربي21"
    assert doc.tags[:3] == ("سياسة", "اقتصاد", "رياضة")
    assert len(doc.tags) == len(set(doc.tags))
    assert "روسيا" in doc.tags and "كوريا" in doc.tags
    assert doc.dropped == ("date", "source", "tags", "read_also", "app_promo")
    # Nothing of the read-also story, the promo or the marker lines reaches the model.
    for gone in ("فريدوم شيلد", "فريدوم إيدج", "تطبيق", "إقرأ", "المصدر", "كلمات دلالية", "تاريخ النشر"):
        assert gone not in doc.text, gone
    assert doc.text == TITLE + "\n" + seed_body


@pytest.mark.parametrize(
    ("missing", "keep", "title", "date", "source", "has_tags", "dropped"),
    [
        ("title", lambda i: i != 0, "", "11th, September 2023 GMT", "عربي21", True,
         ("date", "source", "tags", "read_also", "app_promo")),
        ("date", lambda i: i != 1, TITLE, "", "عربي21", True,
         ("source", "tags", "read_also", "app_promo")),
        ("source", lambda i: i != 18, TITLE, "11th, September 2023 GMT", "", True,
         ("date", "tags", "read_also", "app_promo")),
        ("tags", lambda i: i != 19, TITLE, "11th, September 2023 GMT", "عربي21", False,
         ("date", "source", "read_also", "app_promo")),
        ("read_also", lambda i: i < 20, TITLE, "11th, September 2023 GMT", "عربي21", True,
         ("date", "source", "tags")),
        ("all markers", lambda i: i == 0 or 2 <= i < 18, TITLE, "", "", False, ()),
    ],
)
def test_each_part_missing(
    seed_lines: list[str], seed_body: str, missing: str, keep, title: str, date: str,
    source: str, has_tags: bool, dropped: tuple[str, ...],
) -> None:
    raw = "\n".join(line for i, line in enumerate(seed_lines) if keep(i))
    doc = parse_page(raw)
    assert doc.title == title
    assert doc.body == seed_body
    assert doc.date == date
    assert doc.source == source
    assert bool(doc.tags) == has_tags
    assert doc.dropped == dropped


def test_body_missing(seed_lines: list[str]) -> None:
    doc = parse_page("\n".join(seed_lines[:2] + seed_lines[18:]))
    assert doc.title == TITLE and doc.body == "" and doc.source == "عربي21"
    assert doc.text == TITLE


def test_crlf_and_blank_lines_do_not_matter(seed_raw: str) -> None:
    spaced = "\n\n  " + seed_raw.replace("\n", "\r\n\r\n   ") + "\r\n"
    assert parse_page(spaced) == parse_page(seed_raw)


@pytest.mark.parametrize(
    "marker",
    [
        "إقرأ أيضاً:",
        "اقرأ أيضا",
        "إقرأ أيضا:",
        "اقرأ ايضاً",
        "اقرأ أيضًا:",
        "اِقْرَأْ أَيْضاً:",  # full diacritics
        "اقـــرأ أيضـــاً:",  # tatweel
        "اقرأ أيضاً :",
        "اقرأ أيضاً،",  # Arabic comma
        "اقرأ أيضاً؛",  # Arabic semicolon
        "اقرأ أيضاً\u00a0",
        "• اقرأ أيضاً...",
    ],
)
def test_read_also_variants_drop_everything_after(marker: str) -> None:
    raw = "\n".join([TITLE, BODY_LINE, marker, OTHER, "فقرة من الخبر الآخر عن المناورات."])
    doc = parse_page(raw)
    assert doc.title == TITLE
    assert doc.body == BODY_LINE
    assert doc.dropped == ("read_also",)
    assert "المناورات" not in doc.text and "تحذر" not in doc.text


@pytest.mark.parametrize("marker", ["اقرأ أيضا| ", "إقرأ أيضا: ", "إقرأ أيضا:\u00a0"])
def test_read_also_with_inline_headline_drops_only_that_line(marker: str) -> None:
    # CNN puts "اقرأ أيضا: <headline>" links mid-article and the article goes on after them.
    raw = "\n".join([TITLE, BODY_LINE, marker + OTHER, "فقرة ثانية من المقال."])
    doc = parse_page(raw)
    assert doc.body == BODY_LINE + "\nفقرة ثانية من المقال."
    assert doc.dropped == ("read_also",)
    assert "تحذر" not in doc.text


def test_read_also_lookalikes_are_body() -> None:
    lines = [
        "اقرأ إيضاح الوزارة كاملا في البيان المرفق.",  # ايضاح, not ايضا
        "وقال: اقرأ أيضا ما كتبه المراسل.",  # not at the start of the line
        "اقرأوا التقرير أيضا.",
    ]
    doc = parse_page("\n".join([TITLE, *lines]))
    assert doc.body.splitlines() == lines
    assert doc.dropped == ()


@pytest.mark.parametrize(
    "promo",
    [
        "تابع أحدث الأخبار عبر تطبيق",
        "حمّل تطبيق عربي21 الآن",
        "تابعوا آخر الأخبار عبر التطبيق",
        "- تابعونا على تطبيق الموقع",
    ],
)
def test_app_promo_dropped_anywhere(promo: str) -> None:
    raw = "\n".join([TITLE, promo, BODY_LINE, promo, "فقرة ثانية."])
    doc = parse_page(raw)
    assert doc.title == TITLE
    assert doc.body == BODY_LINE + "\nفقرة ثانية."
    assert doc.dropped == ("app_promo",)


@pytest.mark.parametrize(
    "line",
    [
        "حمل وزير الخارجية إيران المسؤولية عن التصعيد الأخير في المنطقة.",
        "تابع الوزير تطبيق الاتفاق.",  # a finished sentence
        "تابع الوزير حديثه عن تطبيق الاتفاق بين البلدين خلال المؤتمر الصحفي الذي عقد في العاصمة",
    ],
)
def test_news_sentences_like_promos_are_kept(line: str) -> None:
    doc = parse_page("\n".join([TITLE, line]))
    assert doc.body == line
    assert doc.dropped == ()


def test_teaser_line_dropped_alone() -> None:
    raw = "\n".join([TITLE, BODY_LINE, "قد يهمك: " + OTHER, "فقرة تكمل الخبر."])
    doc = parse_page(raw)
    assert doc.body == BODY_LINE + "\nفقرة تكمل الخبر."
    assert doc.dropped == ("teaser",)


def test_tag_line_split_and_deduped() -> None:
    doc = parse_page(TITLE + "\n" + BODY_LINE + "\nكلمات دلالية: روسيا، أمريكا | الصين,روسيا  سياسة")
    assert doc.tags == ("روسيا", "أمريكا", "الصين", "سياسة")
    assert doc.body == BODY_LINE


def test_marker_values_without_colon_and_empty() -> None:
    doc = parse_page("عنوان\nتاريخ النشر 2023-09-11 10:30\nنص الخبر.\nالمصدر:\nكلمات دلالية")
    assert doc.date == "2023-09-11 10:30"
    assert doc.source == "" and doc.tags == ()
    assert doc.dropped == ("date", "source", "tags")
    assert (doc.title, doc.body) == ("عنوان", "نص الخبر.")


@pytest.mark.parametrize(
    ("raw", "title", "body"),
    [
        ("عنوان الخبر\nالفقرة الأولى.\nالفقرة الثانية.", "عنوان الخبر", "الفقرة الأولى.\nالفقرة الثانية."),
        ("هل تنجح المفاوضات؟\nالفقرة الأولى.", "هل تنجح المفاوضات؟", "الفقرة الأولى."),
        ("جملة كاملة.\nجملة ثانية.", "", "جملة كاملة.\nجملة ثانية."),
        ('قال الوزير "سنرد".\nجملة ثانية.', "", 'قال الوزير "سنرد".\nجملة ثانية.'),
        ("وأضاف الوزير:\nسنرد قريبا.", "", "وأضاف الوزير:\nسنرد قريبا."),
        ("سطر واحد فقط بلا علامة", "", "سطر واحد فقط بلا علامة"),
        ("ع" * 201 + "\nفقرة.", "", "ع" * 201 + "\nفقرة."),
        ("ع" * 200 + "\nفقرة.", "ع" * 200, "فقرة."),
    ],
)
def test_plain_text_title_rule(raw: str, title: str, body: str) -> None:
    doc = parse_page(raw)
    assert (doc.title, doc.body, doc.dropped) == (title, body, ())


def test_long_first_line_of_a_page_is_body() -> None:
    long = "ع" * 201
    doc = parse_page(long + "\nالمصدر: وكالة")
    assert doc.title == "" and doc.body == long and doc.source == "وكالة"


@pytest.mark.parametrize("raw", ["", "   ", "\n\n\r\n", "\u2029"])
def test_empty(raw: str) -> None:
    assert parse_page(raw, id="x") == Document(id="x")
    assert parse_page(raw).text == ""


@pytest.mark.parametrize(
    "raw",
    ["\x00", "\ud800 نص", ":", "المصدر:", "إقرأ أيضاً:", "تابع تطبيق", "a\x1cb\x85c", "\t|،|", "ـــ"],
)
def test_never_raises_on_odd_strings(raw: str) -> None:
    assert isinstance(parse_page(raw), Document)


def test_parse_page_rejects_non_str() -> None:
    with pytest.raises(TypeError, match="raw"):
        parse_page(None)  # type: ignore[arg-type]


def test_document_text() -> None:
    assert Document(title="ع", body="ب").text == "ع\nب"
    assert Document(body="ب").text == "ب"
    assert Document(title="ع").text == "ع"


# -- structured input --------------------------------------------------------------------------


def test_from_fields_title_and_text_cleaned_like_a_page() -> None:
    text = "\n".join([BODY_LINE, "تابع أحدث الأخبار عبر تطبيق", "فقرة ثانية.", "اقرأ أيضا:", OTHER, "فقرة من الخبر الآخر."])
    doc = from_fields(id="a1", title="  عنوان\nالخبر ", text=text)
    assert doc.id == "a1"
    assert doc.title == "عنوان الخبر"  # a title is one line
    assert doc.body == BODY_LINE + "\nفقرة ثانية."
    assert doc.body == clean_text(text)
    assert doc.dropped == ("app_promo", "read_also")
    assert doc.text == "عنوان الخبر\n" + BODY_LINE + "\nفقرة ثانية."


def test_from_fields_text_first_line_is_never_a_title() -> None:
    doc = from_fields(text="عنوان\nفقرة.")
    assert doc.title == "" and doc.body == "عنوان\nفقرة."


def test_from_fields_raw_matches_parse_page_and_merges(seed_raw: str) -> None:
    assert from_fields(raw=seed_raw, id="s") == parse_page(seed_raw, id="s")
    doc = from_fields(raw=seed_raw, title="عنوان آخر", tags=["كيم", "سياسة", " جديد "])
    assert doc.title == "عنوان آخر"
    assert doc.tags[0] == "سياسة" and doc.tags[-2:] == ("كيم", "جديد")
    assert doc.tags.count("سياسة") == 1
    assert doc.body == parse_page(seed_raw).body


def test_from_fields_tags_tuple_and_empty() -> None:
    assert from_fields(text="نص.", tags=("أ", "ب", "أ", "")).tags == ("أ", "ب")
    assert from_fields() == Document()


def test_from_fields_raw_and_text_conflict() -> None:
    with pytest.raises(ValueError, match="both 'raw' and 'text'"):
        from_fields(raw="عنوان\nنص", text="نص")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"id": 1}, "'id'"),
        ({"title": None}, "'title'"),
        ({"text": b"bytes"}, "'text'"),
        ({"raw": 3.0}, "'raw'"),
        ({"tags": "سياسة اقتصاد"}, "'tags'"),
        ({"tags": {"سياسة"}}, "'tags'"),
        ({"tags": ["سياسة", 2]}, r"'tags' item 1"),
    ],
)
def test_from_fields_type_errors(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(TypeError, match=field):
        from_fields(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("mark", ["\u200f", "\u200e", "\u202b", "• ", "- ", "\ufeff"])
def test_invisible_marks_and_bullets_do_not_hide_page_parts(seed_raw: str, mark: str) -> None:
    """Scraped Arabic lines often start with a direction mark (64 corpus lines do); a bullet or dash is
    common too. Neither may hide the date, source or tag line: the tags would reach the model."""
    page = "\n".join(mark + line if line.startswith(("تاريخ", "المصدر", "كلمات")) else line
                     for line in seed_raw.split("\n"))
    assert parse_page(page) == parse_page(seed_raw)


def test_zero_width_characters_inside_markers_are_ignored(seed_raw: str) -> None:
    page = seed_raw.replace("كلمات دلالية", "كلمات\u200c دلالية").replace("إقرأ أيضاً", "إقرأ\u200c أيضاً")
    assert parse_page(page) == parse_page(seed_raw)


@pytest.mark.parametrize("text", [
    "حمّل وزير الخارجية واشنطن مسؤولية تطبيق العقوبات",  # تطبيق: "implementation", not an app
    "تابع الوزير تطبيق الخطة الأمنية في المحافظات",
    "قد يهمك أن تعلم أن العقوبات ستفرض غدا",  # a sentence, not a "قد يهمك:" teaser
    "تاريخ النشر في العالم العربي",  # a headline about the history of publishing, not a date line
])
def test_words_that_also_open_page_parts_stay_article_text(text: str) -> None:
    doc = parse_page(f"{text}\nقال الوزير إن المحادثات مستمرة.\nالمصدر: وكالات")
    assert doc.title == text and doc.date == "" and doc.dropped == ("source",)
    assert text in clean_text(f"عنوان\n{text}\nنص.")


def test_tags_after_a_glued_story_separators_and_a_dash_before_the_date(seed_raw: str) -> None:
    head, tag_line = [], ""
    for line in seed_raw.split("\n"):
        if line.startswith("كلمات دلالية"):
            tag_line = line
        else:
            head.append(line)
    moved = parse_page("\n".join(head) + "\n" + tag_line)  # the tag line after the read-also story
    assert moved.tags == parse_page(seed_raw).tags and "read_also" in moved.dropped
    doc = parse_page("عنوان\nتاريخ النشر - 11 سبتمبر 2023\nنص.\nكلمات دلالية: روسيا ؛ كوريا / أمريكا - سياسة")
    assert doc.date == "11 سبتمبر 2023" and doc.tags == ("روسيا", "كوريا", "أمريكا", "سياسة")


def test_an_explicit_title_does_not_swallow_a_headless_pages_first_paragraph() -> None:
    raw = "الفقرة الأولى من المقال عن العقوبات.\nالفقرة الثانية.\nكلمات دلالية: سياسة"
    doc = from_fields(raw=raw, title="عنوان صريح")
    assert doc.title == "عنوان صريح"
    assert doc.body == "الفقرة الأولى من المقال عن العقوبات.\nالفقرة الثانية."

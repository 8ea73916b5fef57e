"""The packaged taxonomy agrees with ../shared/topics.md, validates ids, and rejects bad taxonomies."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tagger.taxonomy import (
    MISSION_TOPICS,
    Taxonomy,
    Topic,
    UnknownTopicError,
    default_taxonomy,
)

EXPECTED_IDS = (
    "diplomacy", "military", "sanctions", "security", "politics", "economy",
    "energy", "humanitarian", "health", "technology", "sports", "culture",
)


def parse_topics_md(path: Path) -> list[dict[str, str]]:
    """Rows of the markdown table in topics.md, keyed by its header (id, Arabic, definition, ...)."""
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            if header is not None and rows:
                break  # the table has ended
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif set("".join(cells)) <= set("-: "):
            continue  # the |---| separator row
        else:
            assert len(cells) == len(header), f"malformed table row in {path}: {line!r}"
            rows.append(dict(zip(header, cells)))
    assert header is not None and rows, f"no topic table found in {path}"
    return rows


@pytest.fixture(scope="module")
def md_rows(shared_dir: Path) -> list[dict[str, str]]:
    return parse_topics_md(shared_dir / "topics.md")


def test_agrees_with_shared_topics_md(md_rows: list[dict[str, str]]) -> None:
    tax = default_taxonomy()
    assert tax.ids == tuple(r["id"].strip("`") for r in md_rows)
    assert [t.ar for t in tax] == [r["Arabic"] for r in md_rows]
    for topic, row in zip(tax, md_rows):
        assert topic.definition == row["definition"], topic.id
        assert topic.includes == row["includes"], topic.id
        assert topic.excludes == row["excludes"], topic.id


def test_default_taxonomy_shape() -> None:
    tax = default_taxonomy()
    assert tax.ids == EXPECTED_IDS
    assert len(tax) == 12
    assert [t.en for t in tax] == [i.capitalize() for i in EXPECTED_IDS]
    assert tax.get("culture").ar == "ثقافة وفنون"
    assert tax.index("sanctions") == 2
    assert "military" in tax and "Military" not in tax and 3 not in tax
    assert set(MISSION_TOPICS) <= set(tax.ids)
    assert default_taxonomy() is tax  # loaded once


def test_json_file_is_to_dict() -> None:
    packaged = Path(__file__).resolve().parent.parent / "tagger" / "data" / "topics.json"
    data = json.loads(packaged.read_text(encoding="utf-8"))
    assert data["version"] == 1
    assert default_taxonomy().to_dict() == data
    assert Taxonomy.from_dict(data) == default_taxonomy()


def test_immutable() -> None:
    tax = default_taxonomy()
    with pytest.raises(AttributeError):
        tax.topics = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        tax.get("energy").ar = "x"  # type: ignore[misc]
    assert isinstance(tax.topics, tuple) and isinstance(tax.ids, tuple)


def test_validate_dedupes_and_keeps_order() -> None:
    tax = default_taxonomy()
    assert tax.validate(["sanctions", "diplomacy", "sanctions"], "test") == ["sanctions", "diplomacy"]
    assert tax.validate((t for t in ["energy"]), "test") == ["energy"]
    assert tax.validate([], "test") == []


def test_validate_unknown_names_id_source_and_known_ids() -> None:
    tax = default_taxonomy()
    with pytest.raises(UnknownTopicError) as err:
        tax.validate(["diplomacy", "militry", "weather"], "gold file dev.jsonl line 7")
    msg = str(err.value)
    assert "'militry'" in msg and "'weather'" in msg
    assert "gold file dev.jsonl line 7" in msg
    assert ", ".join(EXPECTED_IDS) in msg
    assert "did you mean 'military'" in msg
    assert err.value.unknown == ("militry", "weather")
    assert err.value.where == "gold file dev.jsonl line 7"
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("bad", [[3], ["diplomacy", None], [["military"]]])
def test_validate_non_string_ids(bad: list[object]) -> None:
    with pytest.raises(UnknownTopicError, match=r"must be strings.*in request 12"):
        default_taxonomy().validate(bad, "request 12")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["diplomacy", None, 5])
def test_validate_rejects_non_list(bad: object) -> None:
    with pytest.raises(UnknownTopicError, match="expected a list of topic ids"):
        default_taxonomy().validate(bad, "row 3")  # type: ignore[arg-type]


def test_get_and_index_unknown() -> None:
    tax = default_taxonomy()
    with pytest.raises(UnknownTopicError, match="'weather'"):
        tax.get("weather")
    with pytest.raises(UnknownTopicError, match="must be strings"):
        tax.index(1)  # type: ignore[arg-type]


def _topic(**kw: str) -> dict[str, str]:
    base = {"id": "weather", "ar": "طقس", "en": "Weather", "definition": "d", "includes": "", "excludes": ""}
    return {**base, **kw}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a JSON object"),
        ({"version": 2, "topics": [_topic()]}, "unsupported taxonomy version 2"),
        ({"version": 1, "topics": []}, "non-empty list"),
        ({"version": 1, "topics": [_topic(), "x"]}, "topic #2 must be an object"),
        ({"version": 1, "topics": [_topic(id="Weather")]}, "invalid id 'Weather'"),
        ({"version": 1, "topics": [_topic(id="2nd")]}, "invalid id '2nd'"),
        ({"version": 1, "topics": [_topic(id="a-b")]}, "invalid id 'a-b'"),
        ({"version": 1, "topics": [_topic(), _topic()]}, "duplicate id 'weather'"),
        ({"version": 1, "topics": [_topic(ar=" ")]}, "'ar' must not be empty"),
        ({"version": 1, "topics": [_topic(en="")]}, "'en' must not be empty"),
        ({"version": 1, "topics": [{"id": "weather", "ar": "طقس"}]}, "missing en, definition"),
        ({"version": 1, "topics": [{**_topic(), "exclude": ""}]}, "unexpected keys: exclude"),
        ({"version": 1, "topics": [{**_topic(), "ar": 5}]}, "'ar' must be a string"),
        ({"version": 1, "topics": [_topic()], "extra": 1}, "unexpected keys: extra"),
    ],
)
def test_from_dict_rejects_bad_taxonomy(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Taxonomy.from_dict(data)  # type: ignore[arg-type]


def test_load_good_and_bad_files(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"version": 1, "topics": [_topic()]}), encoding="utf-8")
    assert Taxonomy.load(good).ids == ("weather",)

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 1, "topics": [_topic(), _topic()]}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.json: .*duplicate id 'weather'"):
        Taxonomy.load(bad)

    broken = tmp_path / "broken.json"
    broken.write_text('{"version": 1,', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json"):
        Taxonomy.load(broken)


def test_with_topic_returns_new_taxonomy() -> None:
    tax = default_taxonomy()
    weather = Topic(**_topic())
    bigger = tax.with_topic(weather)
    assert bigger.ids == (*EXPECTED_IDS, "weather")
    assert bigger.index("weather") == 12 and bigger.get("weather") is weather
    assert "weather" not in tax and len(tax) == 12  # the original is untouched
    assert Taxonomy.from_dict(bigger.to_dict()) == bigger
    with pytest.raises(ValueError, match="duplicate id 'energy'"):
        tax.with_topic(dataclasses.replace(weather, id="energy"))
    with pytest.raises(ValueError, match="invalid id"):
        tax.with_topic(dataclasses.replace(weather, id="Weather Topic"))

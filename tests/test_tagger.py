"""The one predict path: options, validation, truncation, explanation."""
from __future__ import annotations

from pathlib import Path

import pytest

from tagger.artifacts import LoadedModel
from tagger.document import Document, parse_page
from tagger.tagger import InvalidDocumentError, TagOptions, Tagger
from tagger.taxonomy import UnknownTopicError

from helpers import TINY_DOCS, tiny_model


@pytest.fixture
def tagger() -> Tagger:
    return Tagger(LoadedModel(tiny_model(), {"name": "tiny", "version": "1"}, Path(".")))


def _doc(topic: str, id: str = "x") -> Document:
    return Document(id=id, body=TINY_DOCS[topic])


def test_results_in_order_with_ids_and_version(tagger: Tagger) -> None:
    res = tagger.tag_many([_doc("sports", "a"), _doc("sanctions", "b"), _doc("economy", "c")])
    assert [r.id for r in res] == ["a", "b", "c"]
    assert [r.topics[0].topic for r in res] == ["sports", "sanctions", "economy"]
    assert all(r.model_version == "tiny/1" for r in res)
    assert set(res[0].scores) == {"sanctions", "sports", "economy"}


def test_chosen_topics_are_best_first_and_above_threshold(tagger: Tagger) -> None:
    doc = Document(body=TINY_DOCS["sanctions"] + " " + TINY_DOCS["economy"])
    r = tagger.tag(doc, TagOptions(threshold=0.01))
    scores = [t.score for t in r.topics]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3
    assert [t.topic for t in tagger.tag(doc, TagOptions(threshold=0.01, top_k=1)).topics] == [r.topics[0].topic]
    assert tagger.tag(doc, TagOptions(threshold=1.0)).topics == ()


def test_topic_restriction_and_unknown_topics(tagger: Tagger) -> None:
    r = tagger.tag(_doc("sanctions"), TagOptions(threshold=0.0, topics=("economy",)))
    assert [t.topic for t in r.topics] == ["economy"]
    with pytest.raises(UnknownTopicError, match="astrology"):
        tagger.tag(_doc("sanctions"), TagOptions(topics=("astrology",)))


@pytest.mark.parametrize(
    "opts", [TagOptions(threshold=1.5), TagOptions(threshold=float("nan")), TagOptions(top_k=-1), TagOptions(explain_n=0)]
)
def test_bad_options_are_rejected(tagger: Tagger, opts: TagOptions) -> None:
    with pytest.raises(ValueError):
        tagger.tag(_doc("sports"), opts)


def test_empty_document_is_rejected_naming_it(tagger: Tagger) -> None:
    with pytest.raises(InvalidDocumentError, match="'e1' has no text"):
        tagger.tag_many([_doc("sports"), Document(id="e1", title="  ", body="\n")])


def test_too_long_is_truncated_and_flagged_or_rejected(tagger: Tagger) -> None:
    long_doc = Document(id="L", body=TINY_DOCS["sports"] + " كلمة" * 100)
    short = Tagger(tagger.loaded, max_chars=len(TINY_DOCS["sports"]))
    r = short.tag(long_doc)
    assert r.truncated and r.topics[0].topic == "sports"
    assert r.to_json()["truncated"] is True
    assert "truncated" not in tagger.tag(long_doc).to_json()
    with pytest.raises(InvalidDocumentError, match="over the limit"):
        Tagger(tagger.loaded, max_chars=10, on_too_long="reject").tag(long_doc)
    with pytest.raises(ValueError):
        Tagger(tagger.loaded, on_too_long="drop")


def test_explain_gives_the_ngrams_behind_each_topic(tagger: Tagger) -> None:
    r = tagger.tag(_doc("sanctions"), TagOptions(explain=True, explain_n=3))
    ev = r.topics[0].evidence
    assert 1 <= len(ev) <= 3 and all(e.weight > 0 for e in ev)
    assert "عقوب" in [e.ngram for e in ev] or all(" " not in e.ngram for e in ev)
    assert tagger.tag(_doc("sanctions")).topics[0].evidence == ()


def test_explanation_ties_go_to_the_lower_feature_whatever_the_row_order(tagger: Tagger) -> None:
    import numpy as np

    from tagger.model import TopicModel

    base = tagger.loaded.model
    j = base.topics.index("sanctions")
    coef = base.coef.copy()
    coef[[3, 5, 7], j] = 0.5  # three features that contribute exactly alike
    model = TopicModel(base.featurizer, base.topics, coef, base.intercept, base.thresholds)
    idx, vals = np.array([7, 3, 5]), np.ones(3)
    names = model.feature_names
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        ev = model.explain_row(idx[order], vals[order], "sanctions", top_n=2)
        assert [e.ngram for e in ev] == [names[3], names[5]]


def test_page_parts_never_add_topics(tagger: Tagger) -> None:
    # A sports article with a glued read-also story about sanctions and a tag line full of sanctions.
    raw = "\n".join([
        "عنوان رياضي", TINY_DOCS["sports"], "كلمات دلالية: عقوبات كوريا الشمالية",
        "إقرأ أيضاً:", TINY_DOCS["sanctions"],
    ])
    doc = parse_page(raw, id="p")
    r = tagger.tag(doc)
    assert [t.topic for t in r.topics] == ["sports"]
    assert r.dropped_tags == ("عقوبات", "كوريا", "الشمالية")


def test_a_topic_named_twice_in_options_is_chosen_once(tagger: Tagger) -> None:
    r = tagger.tag(_doc("sanctions"), TagOptions(threshold=0.0, topics=("sanctions", "sanctions")))
    assert [t.topic for t in r.topics] == ["sanctions"]


def test_an_empty_answer_falls_back_to_the_best_topic_near_its_threshold(tmp_path) -> None:
    """The model's empty_fallback rule: a document over no threshold gets its best topic (by score /
    threshold) when that ratio reaches the rule; it travels in the manifest; a caller's own flat
    threshold means plain thresholding."""
    import numpy as np

    from tagger.artifacts import load_model, publish_model
    from tagger.document import Document
    from tagger.model import TopicModel
    from tagger.tagger import Tagger, TagOptions

    from helpers import TINY_DOCS, tiny_model

    base = tiny_model()
    # Intercepts set so that the sports text scores exactly 0.6 on sports (logit 0.405), lower elsewhere.
    logits = np.log(base.scores([TINY_DOCS["sports"]])[0]) - np.log1p(-base.scores([TINY_DOCS["sports"]])[0])
    intercept = base.intercept + np.array([-5.0, np.log(0.6 / 0.4), -5.0]) - logits
    doc = Document(id="d", title="", body=TINY_DOCS["sports"])

    def model(fallback=None):
        return TopicModel(base.featurizer, base.topics, base.coef, intercept, np.full(3, 0.9), empty_fallback=fallback)

    assert model().scores([TINY_DOCS["sports"]])[0][1] == pytest.approx(0.6)
    assert Tagger(load_model(publish_model(model(), tmp_path / "a"))).tag(doc).topics == ()
    loaded = load_model(publish_model(model(0.5), tmp_path / "b"))  # 0.6 / 0.9 = 0.67 >= 0.5
    assert loaded.manifest["decision"] == {"empty_fallback": 0.5} and loaded.model.empty_fallback == 0.5
    tagger = Tagger(loaded)
    assert [t.topic for t in tagger.tag(doc).topics] == ["sports"]
    assert tagger.tag(doc, TagOptions(threshold=0.9)).topics == ()
    assert tagger.tag(doc, TagOptions(top_k=0)).topics == ()
    assert tagger.tag_lines([doc]) == [tagger.tag(doc).to_json_line()]
    assert Tagger(load_model(publish_model(model(0.7), tmp_path / "c"))).tag(doc).topics == ()  # 0.67 < 0.7


@pytest.mark.parametrize("opts", [
    TagOptions(), TagOptions(threshold=0.2), TagOptions(top_k=1), TagOptions(threshold=0.05, top_k=3),
    TagOptions(topics=("politics", "economy", "security")), TagOptions(top_k=0),
], ids=["default", "threshold", "top_k", "threshold+top_k", "topics", "top_k=0"])
def test_one_document_alone_equals_it_inside_a_batch_on_the_dev_set(shared_dir: Path, loaded: LoadedModel,
                                                                     opts: TagOptions) -> None:
    """A single document takes Tagger._tag_one (what a server's Tag call runs); inside a batch it takes
    the chunk path. Same TagResult, scores bit for bit, on every dev article and each kind of option."""
    import json

    from tagger.document import from_fields

    tagger = Tagger(loaded, max_chars=1_500)  # some dev articles are longer: the truncated flag too
    with open(shared_dir / "gold/dev.jsonl", encoding="utf-8") as f:
        docs = [from_fields(id=a["id"], title=a["title"], text=a["text"]) for a in map(json.loads, f)]
    batch = tagger.tag_many(docs, opts)
    alone = [tagger.tag_many([d], opts)[0] for d in docs]
    assert len(alone) == len(docs) == 300
    assert alone == batch  # dataclass equality: every float compared exactly
    assert [tagger.tag(d, opts) for d in docs[:20]] == batch[:20]
    assert any(r.truncated for r in alone) and any(not r.truncated for r in alone)
    assert all(t.topic in opts.topics for r in alone for t in r.topics) if opts.topics else True
    if opts == TagOptions():  # the model's empty-answer fallback is part of the default path
        assert loaded.model.empty_fallback

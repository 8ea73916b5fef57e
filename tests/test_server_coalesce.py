"""Opportunistic batching of single documents: concurrent callers get exactly what tagging each document
alone gives, whatever their options, models or invalid neighbours."""
from __future__ import annotations

import threading

import pytest

from tagger.artifacts import LoadedModel
from tagger.document import from_fields
from tagger.server_coalesce import Coalescer
from tagger.tagger import InvalidDocumentError, Tagger, TagOptions

TEXTS = ["فرضت واشنطن عقوبات جديدة على موسكو", "فاز المنتخب في المباراة النهائية", "بحث الوزير التعاون العسكري",
         "ارتفعت أسعار النفط في الأسواق"]


def test_concurrent_callers_get_their_own_results(loaded: LoadedModel) -> None:
    taggers = [Tagger(loaded), Tagger(loaded, max_chars=10, on_too_long="truncate")]  # a model "reload" mid-way
    options = [TagOptions(), TagOptions(top_k=1), TagOptions(explain=True, explain_n=2)]
    jobs = [(i, taggers[i % 2], from_fields(id=str(i), text=TEXTS[i % 4]), options[i % 3]) for i in range(96)]
    jobs += [(1000, taggers[0], from_fields(id="empty", text="   "), options[0])]  # invalid: no text
    coalescer = Coalescer(max_batch=8)
    got: dict[int, object] = {}
    start = threading.Barrier(16)

    def call(share: list) -> None:
        start.wait()
        for i, tagger, doc, opts in share:
            try:
                got[i] = coalescer.tag(tagger, doc, opts)
            except InvalidDocumentError as e:
                got[i] = e

    threads = [threading.Thread(target=call, args=(jobs[k::16],)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(got) == len(jobs)
    for i, tagger, doc, opts in jobs:
        if i == 1000:
            assert isinstance(got[i], InvalidDocumentError)
            continue
        assert got[i] == tagger.tag_many([doc], opts)[0], i
    assert coalescer.documents == len(jobs) and coalescer.batches <= len(jobs)


def test_a_lone_call_is_its_own_batch_and_errors_are_raised(loaded: LoadedModel) -> None:
    coalescer = Coalescer()
    tagger = Tagger(loaded)
    doc = from_fields(id="a", text=TEXTS[0])
    assert coalescer.tag(tagger, doc, TagOptions()) == tagger.tag(doc)
    assert (coalescer.batches, coalescer.documents) == (1, 1)
    with pytest.raises(InvalidDocumentError):
        coalescer.tag(tagger, from_fields(id="e", text=""), TagOptions())

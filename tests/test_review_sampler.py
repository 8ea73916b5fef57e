"""The live-traffic sampler: the RPC side never waits or fails; what is sampled reaches the store; what
cannot be kept is counted."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tagger.document import Document
from tagger.review.queue import QueueBuilder
from tagger.review.sampler import ReviewSampler
from tagger.review.store import Store
from tagger.tagger import Tagger

DOCS = [Document(id=f"live-{i}", title=f"قمة عربية {i}", body="انعقدت القمة العربية في الرياض بحضور وزراء الخارجية",
                 tags=("سياسة",)) for i in range(20)]


@pytest.fixture
def tagged(loaded):
    return Tagger(loaded).tag_many(DOCS)


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_sampled_documents_reach_the_store_with_their_prediction(tmp_path: Path, loaded, tagged) -> None:
    registry = CollectorRegistry()
    with Store(str(tmp_path / "r.db"), topics=loaded.model.topics) as store:
        draws = iter([0.1, 0.9] * 10)  # every other document is under the rate
        sampler = ReviewSampler(store, QueueBuilder.for_model(loaded), 0.5, registry=registry,
                                rng=lambda: next(draws), flush_seconds=0.05)
        assert sampler.offer(DOCS, tagged) == 10
        sampler.close()
        assert store.queue_counts()["items"] == 10
        item = store.get_item(store.item_id("live-0"))
        assert item.predicted == [{"topic": t.topic, "score": round(t.score, 4)} for t in tagged[0].topics]
        assert item.model_version == loaded.version and item.tags == ["سياسة"]
        assert store.item_id("live-1") is None
    assert _value(registry, "tagger_review_sample_recorded_total") == 10


class BlockingStore:
    """A store whose first write waits until released: the database is slow."""

    def __init__(self) -> None:
        self.entered, self.release, self.rows = threading.Event(), threading.Event(), []

    def add_items(self, rows):
        self.entered.set()
        assert self.release.wait(30)
        self.rows.extend(rows)
        return len(rows), []


def test_a_slow_store_never_blocks_the_rpc_and_drops_are_counted(loaded, tagged) -> None:
    registry = CollectorRegistry()
    store = BlockingStore()
    sampler = ReviewSampler(store, QueueBuilder.for_model(loaded), 1.0, capacity=5, batch=1, registry=registry,
                            flush_seconds=0.05)
    assert sampler.offer(DOCS[:1], tagged[:1]) == 1
    assert store.entered.wait(10)  # the writer holds document 0 inside the slow store
    assert sampler.offer(DOCS[1:], tagged[1:]) == 5  # returns at once: 5 buffered, 14 dropped
    assert _value(registry, "tagger_review_sample_dropped_total", reason="buffer_full") == 14
    store.release.set()
    sampler.close()
    assert [r["doc_id"] for r in store.rows] == [f"live-{i}" for i in range(6)]


class FailingStore:
    def add_items(self, rows):
        raise ConnectionError("database is down")


def test_a_failing_store_loses_samples_not_requests(loaded, tagged) -> None:
    registry = CollectorRegistry()
    sampler = ReviewSampler(FailingStore(), QueueBuilder.for_model(loaded), 1.0, registry=registry, flush_seconds=0.05)
    assert sampler.offer(DOCS, tagged) == 20
    sampler.close()
    assert _value(registry, "tagger_review_sample_dropped_total", reason="store_error") == 20
    assert _value(registry, "tagger_review_sample_recorded_total") == 0


def test_rate_bounds_and_documents_without_ids(tmp_path: Path, loaded, tagged) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ReviewSampler(FailingStore(), QueueBuilder.for_model(loaded), 1.5)
    with Store(str(tmp_path / "r.db"), topics=loaded.model.topics) as store:
        sampler = ReviewSampler(store, QueueBuilder.for_model(loaded), 0.0, registry=CollectorRegistry())
        assert sampler.offer(DOCS, tagged) == 0
        sampler.close()
        anonymous = Document(title="بلا معرف", body="نص خبر بلا معرف")
        sampler = ReviewSampler(store, QueueBuilder.for_model(loaded), 1.0, registry=CollectorRegistry(),
                                flush_seconds=0.05)
        result = Tagger(loaded).tag(anonymous)
        sampler.offer([anonymous, anonymous], [result, result])
        sampler.close()
        assert store.queue_counts()["items"] == 1  # the same text twice is one item, under a content id


def test_tagger_serve_review_db_queues_served_documents(tmp_path: Path, loaded) -> None:
    """The hook in `tagger serve`: --review-db/--review-sample on a real gRPC server on 127.0.0.1."""
    from tagger.client import TaggerClient
    from tagger.config import ServeConfig
    from tagger.server import make_holder, running

    db = str(tmp_path / "live.db")
    cfg = ServeConfig(host="127.0.0.1", port=0, workers=1, threads=4, metrics_port=0, reload_interval=0, grace=1,
                      review_db=db, review_sample=1.0).validate()
    with running(cfg, make_holder(cfg, loaded)) as server:
        with TaggerClient(f"127.0.0.1:{server.port}", timeout=20) as client:
            client.tag({"id": "a1", "title": "قمة عربية", "text": "انعقدت القمة العربية في الرياض"})
            client.tag_batch([{"id": f"b{i}", "title": "مباراة", "text": f"فاز الفريق بالمباراة {i}"} for i in range(3)])
        registry = server.metrics.registry
    # Stopping the server wrote what was buffered.
    assert registry.get_sample_value("tagger_review_sample_recorded_total") == 4
    with Store(db) as store:
        assert store.queue_counts()["items"] == 4
        item = store.get_item(store.item_id("a1"))
        assert item.model_version == loaded.version and item.title == "قمة عربية"

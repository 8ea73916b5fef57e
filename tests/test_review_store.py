"""The review store on SQLite and on a real PostgreSQL: schema by migration, leases, decisions with
history, undo, concurrent editors."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from review_fixtures import db_url, pg_server  # noqa: F401  (fixtures)
from sqlalchemy import inspect, select, update

from tagger.review.schema import items, metadata
from tagger.review.store import Store, StoreError, utcnow

TOPICS = ["diplomacy", "military", "sanctions"]


def item_row(doc_id: str, priority: float, predicted=("diplomacy",), random_slice=False, needed=1) -> dict:
    return dict(doc_id=doc_id, title=f"title {doc_id}", text="نص المقال", tags=["سياسة"], outlet="x", url="",
                published="", source="import", model_version="arabic-news-topics/4",
                predicted=[{"topic": t, "score": 0.7} for t in predicted],
                scores={t: (0.7 if t in predicted else 0.1) for t in TOPICS}, evidence=None, priority=priority,
                signals={}, random_slice=random_slice, reviews_needed=needed)


@pytest.fixture
def store(db_url: str):  # noqa: F811
    # random_share=0: the queue order is the active order unless a test says otherwise
    with Store(db_url, topics=TOPICS, random_share=0.0, seed=1) as s:
        yield s


def test_migration_creates_the_schema_the_code_queries(store: Store) -> None:
    insp = inspect(store.engine)
    assert set(metadata.tables) <= set(insp.get_table_names())
    for name, table in metadata.tables.items():
        assert {c["name"] for c in insp.get_columns(name)} == {c.name for c in table.columns}
    assert "ix_items_queue" in {i["name"] for i in insp.get_indexes("items")}
    # Migrating an up-to-date database again is a no-op, not an error.
    Store(store.url, topics=TOPICS).close()


def test_queue_order_lease_and_two_editors(store: Store) -> None:
    store.add_items([item_row("b", 0.5), item_row("a", 0.1), item_row("c", 0.9)])
    ana = store.user_by_token(store.add_user("ana", "editor", "pw-ana"))
    bob = store.user_by_token(store.add_user("bob", "editor", "pw-bob"))
    first = store.next_item(ana)
    assert first.doc_id == "a"  # lowest priority first
    assert store.next_item(ana).id == first.id  # a reload hands back the held item
    assert store.next_item(bob).doc_id == "b"  # leased to ana: bob gets the next one
    store.decide(ana, first.id, ["diplomacy"])
    assert store.next_item(ana).doc_id == "c"


def test_deciding_someone_elses_leased_item_keeps_their_lease(store: Store) -> None:
    store.add_items([item_row("a", 0.1, needed=2), item_row("b", 0.2)])
    ana = store.user_by_token(store.add_user("ana"))
    bob = store.user_by_token(store.add_user("bob"))
    held = store.next_item(ana)
    store.decide(bob, held.id, ["military"])  # e.g. through the API, by id; one of its two reviews
    assert store.next_item(ana).id == held.id  # still ana's: her page does not change under her
    assert store.next_item(bob).doc_id == "b"


def test_an_abandoned_lease_expires(store: Store) -> None:
    store.add_items([item_row("a", 0.1)])
    ana = store.user_by_token(store.add_user("ana"))
    bob = store.user_by_token(store.add_user("bob"))
    got = store.next_item(ana)
    assert store.next_item(bob) is None
    with store.engine.begin() as conn:  # time passes: the lease is over
        conn.execute(update(items).values(lease_expires=utcnow() - timedelta(seconds=1)))
    assert store.next_item(bob).id == got.id


def test_decisions_keep_who_what_when_and_history(store: Store) -> None:
    store.add_items([item_row("a", 0.1, predicted=("diplomacy", "sanctions"))])
    ana = store.user_by_token(store.add_user("ana"))
    item = store.next_item(ana)
    d1 = store.decide(ana, item.id, ["sanctions", "diplomacy"])
    assert d1["action"] == "accept" and d1["topics"] == ["diplomacy", "sanctions"]  # taxonomy order
    d2 = store.decide(ana, item.id, ["military"])
    assert d2["action"] == "correct"
    hist = store.history(item.id)
    assert [(h["decision_id"], h["current"], h["topics"]) for h in hist] == [
        (d1["decision_id"], False, ["diplomacy", "sanctions"]), (d2["decision_id"], True, ["military"])]
    assert all(h["user"] == "ana" and h["model_version"] == "arabic-news-topics/4" for h in hist)
    assert store.queue_counts()["open"] == 0  # one editor decided twice: still one review
    [standing] = store.standing_decisions()
    assert standing["topics"] == ["military"] and standing["predicted"] == ["diplomacy", "sanctions"]


def test_undo_restores_the_decision_it_replaced_and_reopens(store: Store) -> None:
    store.add_items([item_row("a", 0.1), item_row("b", 0.2)])
    ana = store.user_by_token(store.add_user("ana"))
    a = store.next_item(ana)
    first = store.decide(ana, a.id, ["military"])
    second = store.decide(ana, a.id, [])
    undone = store.undo(ana)
    assert undone == {"id": a.id, "undone_decision_id": second["decision_id"],
                      "restored_decision_id": first["decision_id"]}
    assert store.standing_decisions()[0]["topics"] == ["military"]
    assert store.undo(ana)["restored_decision_id"] is None
    assert store.standing_decisions() == []
    assert store.queue_counts()["open"] == 2
    assert store.next_item(ana).id == a.id  # undone item comes straight back to its editor
    assert store.undo(ana) is None
    # Undo while another item is on screen: the undone item comes back, the other one returns to the queue.
    store.decide(ana, a.id, ["military"])
    b = store.next_item(ana)
    assert b.id != a.id
    store.undo(ana)
    assert store.next_item(ana).id == a.id
    bob = store.user_by_token(store.add_user("bob"))
    assert store.next_item(bob).id == b.id


def test_skip_leaves_my_queue_not_the_others(store: Store) -> None:
    store.add_items([item_row("a", 0.1), item_row("b", 0.2)])
    ana = store.user_by_token(store.add_user("ana"))
    bob = store.user_by_token(store.add_user("bob"))
    a = store.next_item(ana)
    store.skip(ana, a.id)
    assert store.next_item(ana).doc_id == "b"
    assert store.next_item(bob).doc_id == "a"
    assert store.queue_counts()["open"] == 2


def test_double_review_needs_two_different_editors(store: Store) -> None:
    store.add_items([item_row("a", 0.1, needed=2)])
    ana = store.user_by_token(store.add_user("ana"))
    bob = store.user_by_token(store.add_user("bob"))
    a = store.next_item(ana)
    store.decide(ana, a.id, ["diplomacy"])
    assert store.next_item(ana) is None  # ana decided it; it waits for a second editor
    assert store.next_item(bob).id == a.id
    store.decide(bob, a.id, ["military"])
    assert store.queue_counts()["open"] == 0
    assert sorted(d["topics"][0] for d in store.standing_decisions()) == ["diplomacy", "military"]


def test_concurrent_editors_never_lose_each_others_decisions(store: Store) -> None:
    store.add_items([item_row(f"d{i}", i / 100, needed=2) for i in range(20)])
    editors = [store.user_by_token(store.add_user(f"e{i}")) for i in range(4)]
    errors: list[BaseException] = []
    claimed: list[list[int]] = [[] for _ in editors]

    def work(k: int) -> None:
        # An editor with nothing to take right now (the rest leased to others) looks again, as one
        # reloading the page would, until the queue is empty (bounded: 30 s).
        deadline = time.monotonic() + 30
        try:
            while store.queue_counts()["open"] and time.monotonic() < deadline:
                item = store.next_item(editors[k])
                if item is None:
                    time.sleep(0.01)
                    continue
                claimed[k].append(item.id)
                store.decide(editors[k], item.id, ["sanctions"] if k % 2 else [])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(editors))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    standing = store.standing_decisions()
    assert len(standing) == 40  # 20 items x 2 reviews, none lost or overwritten
    per_item: dict[int, set[int]] = {}
    for d in standing:
        per_item.setdefault(d["item_id"], set()).add(d["user_id"])
    assert all(len(users) == 2 for users in per_item.values())
    assert store.queue_counts()["open"] == 0
    with store.engine.connect() as conn:
        assert set(conn.execute(select(items.c.reviews_done)).scalars()) == {2}


def test_bad_requests_are_refused_clearly(store: Store) -> None:
    store.add_items([item_row("a", 0.1)])
    ana = store.user_by_token(store.add_user("ana"))
    with pytest.raises(StoreError, match="unknown topic"):
        store.decide(ana, 1, ["weather"])
    with pytest.raises(StoreError, match="no item 99"):
        store.decide(ana, 99, [])
    with pytest.raises(StoreError, match="already exists"):
        store.add_user("ana")
    with pytest.raises(StoreError, match="unknown role"):
        store.add_user("zed", role="boss")
    assert store.add_items([item_row("a", 0.3), item_row("z", 0.3)]) == (1, ["a"])


def test_passwords_tokens_and_sessions(store: Store) -> None:
    token = store.add_user("ana", "admin", "correct horse")
    assert store.user_by_token(token).role == "admin"
    assert store.user_by_token(token + "x") is None
    assert store.check_password("ana", "correct horse").name == "ana"
    assert store.check_password("ana", "wrong") is None
    assert store.check_password("nobody", "correct horse") is None
    with store.engine.connect() as conn:
        stored = conn.execute(select(metadata.tables["users"].c.password_hash, metadata.tables["users"].c.token_hash)).one()
    assert stored.password_hash.startswith("scrypt$") and "correct horse" not in stored.password_hash
    assert token not in stored.token_hash
    user = store.check_password("ana", "correct horse")
    cookie, csrf = store.open_session(user)
    assert store.session(cookie) == (user, csrf)
    store.close_session(cookie)
    assert store.session(cookie) is None

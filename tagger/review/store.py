"""The review store: users, the queue of items, editors' decisions (with history) and sign-in sessions,
in one SQL database — a SQLite file by default, PostgreSQL by URL.

Contracts the rest of the review app relies on:

- an item is leased to one editor at a time; a lease expires after ``lease_seconds`` so an abandoned
  item returns to the queue (:meth:`Store.next_item`);
- every decision is a row: who, when, the topics confirmed, the prediction shown and its model
  version. Re-deciding moves the editor's previous decision into history (``current`` false) and
  never touches another editor's decision; counters move with SQL increments, so two editors
  deciding at once both count (:meth:`Store.decide`);
- ``undo`` withdraws an editor's latest decision and restores the one it replaced, if any.
"""
from __future__ import annotations

import json
import random
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Engine, and_, create_engine, event, exists, func, insert, or_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError

from tagger.review.auth import hash_password, new_token, token_hash, verify_password
from tagger.review.schema import admin_actions, decisions, items, login_failures, sessions, users

__all__ = ["ROLES", "EncodedItems", "Item", "Store", "StoreError", "User", "encode_items", "engine_url", "migrate",
           "utcnow"]

ROLES = ("editor", "admin")
#: How long an item stays with the editor it was handed to before it returns to the queue.
DEFAULT_LEASE_SECONDS = 600
#: Share of next-item requests served from the random slice (see tagger.review.queue).
RANDOM_SHARE = 0.10
_JSON_COLUMNS = frozenset(c.name for c in items.columns if isinstance(c.type, JSON))
#: Candidates read per next-item query; more than one so a few items leased by others are skipped cheaply.
_CANDIDATES = 8


class StoreError(ValueError):
    """A request the store refuses (unknown item, user or topic, bad URL); the message says which."""


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def engine_url(url: str) -> str:
    """A database URL as SQLAlchemy takes it: a plain path is a SQLite file, ``postgresql://`` uses
    psycopg 3 (the driver the project installs)."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise StoreError(f"not a database URL: {url!r}") from e
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported database {parsed.get_backend_name()!r}: use a SQLite path or postgresql://")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets editors read while another writes; busy_timeout waits for the writer instead of failing.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    url = engine_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, pool_size=8, max_overflow=8)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema (Alembic ``upgrade head``); a new database is created."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("tagger.review") / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str


@dataclass(frozen=True)
class Item:
    """A queue item as shown to an editor."""

    id: int
    doc_id: str
    title: str
    text: str
    tags: list[str]
    outlet: str
    url: str
    model_version: str
    predicted: list[dict[str, Any]]
    scores: dict[str, float]
    evidence: dict[str, list[dict[str, Any]]] | None
    random_slice: bool
    reviews_needed: int
    reviews_done: int
    lease_expires: datetime | None

    @property
    def predicted_topics(self) -> list[str]:
        return [p["topic"] for p in self.predicted]


_ITEM_COLUMNS = (items.c.id, items.c.doc_id, items.c.title, items.c.text, items.c.tags, items.c.outlet, items.c.url,
                 items.c.model_version, items.c.predicted, items.c.scores, items.c.evidence, items.c.random_slice,
                 items.c.reviews_needed, items.c.reviews_done, items.c.lease_expires)


def _item(row: Any) -> Item:
    return Item(*row)


_INSERT_COLUMNS = tuple(c.name for c in items.columns if c.name != "id")
#: Rows ready for the driver: (doc ids, one tuple of _INSERT_COLUMNS values per row).
EncodedItems = tuple[list[str], list[tuple[Any, ...]]]


def encode_items(rows: Sequence[Mapping[str, Any]], sqlite: bool) -> EncodedItems:
    """Queue rows (see :meth:`Store.add_items`) as the driver takes them: JSON columns serialised, the
    fixed columns of a new item filled in. Pure, so an import's worker process can run it. Raises
    StoreError when an id appears twice."""
    ids = [r["doc_id"] for r in rows]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise StoreError(f"id {dup!r} appears twice in the same import")
    now = utcnow()
    # SQLite compares times as text: write SQLAlchemy's own format (always with microseconds).
    fixed = {"reviews_done": 0, "is_open": True, "lease_user_id": None, "lease_expires": None,
             "imported_at": now.isoformat(" ", timespec="microseconds") if sqlite else now}
    plan = [(c, c in fixed, c in _JSON_COLUMNS) for c in _INSERT_COLUMNS]
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    return ids, [tuple([fixed[c] if is_fixed else dumps(r[c]) if is_json else r[c] for c, is_fixed, is_json in plan])
                 for r in rows]


class Store:
    """One review database. Thread-safe: every method uses its own connection from the pool."""

    def __init__(self, url: str, *, topics: Sequence[str] | None = None, lease_seconds: int = DEFAULT_LEASE_SECONDS,
                 random_share: float = RANDOM_SHARE, upgrade: bool = True, seed: int | None = None) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.topics = tuple(topics) if topics is not None else None
        self.lease = timedelta(seconds=lease_seconds)
        self.random_share = random_share
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        if upgrade:
            migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ users
    def add_user(self, name: str, role: str = "editor", password: str | None = None) -> str:
        """Create an account; returns its bearer token (only its hash is stored, so this is the one time
        it can be shown)."""
        if role not in ROLES:
            raise StoreError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        if not name or len(name) > 100 or name.strip() != name:
            raise StoreError("a user name is 1-100 characters without surrounding spaces")
        token = new_token()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(users).values(
                    name=name, role=role, password_hash=hash_password(password) if password else None,
                    token_hash=token_hash(token), created_at=utcnow()))
        except IntegrityError as e:
            raise StoreError(f"user {name!r} already exists") from e
        return token

    def user_by_token(self, token: str) -> User | None:
        """The enabled user whose bearer token this is."""
        with self.engine.connect() as conn:
            row = conn.execute(select(users.c.id, users.c.name, users.c.role)
                               .where(users.c.token_hash == token_hash(token), users.c.disabled_at.is_(None))).first()
        return User(*row) if row else None

    def check_password(self, name: str, password: str) -> User | None:
        """The user if the password is theirs; None otherwise (also for an unknown name or an API-only
        account), after the same KDF work so timing does not tell which."""
        with self.engine.connect() as conn:
            row = conn.execute(select(users.c.id, users.c.name, users.c.role, users.c.password_hash)
                               .where(users.c.name == name, users.c.disabled_at.is_(None))).first()
        if row is None or row.password_hash is None:
            verify_password(password, None)
            return None
        return User(row.id, row.name, row.role) if verify_password(password, row.password_hash) else None

    def user_names(self) -> dict[int, str]:
        with self.engine.connect() as conn:
            return dict(conn.execute(select(users.c.id, users.c.name)).all())

    # --------------------------------------------------------------------------------- sessions
    def open_session(self, user: User, hours: float = 12) -> tuple[str, str]:
        """A new sign-in session: (cookie token, CSRF token). Only the cookie token's hash is stored."""
        token, csrf = new_token(), secrets.token_urlsafe(24)
        with self.engine.begin() as conn:
            conn.execute(insert(sessions).values(token_hash=token_hash(token), user_id=user.id, csrf=csrf,
                                                 expires_at=utcnow() + timedelta(hours=hours)))
        return token, csrf

    def session(self, token: str) -> tuple[User, str] | None:
        """(user, CSRF token) of a live session."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(users.c.id, users.c.name, users.c.role, sessions.c.csrf)
                .join(users, users.c.id == sessions.c.user_id)
                .where(sessions.c.token_hash == token_hash(token), sessions.c.expires_at > utcnow(),
                       users.c.disabled_at.is_(None))).first()
        return (User(row.id, row.name, row.role), row.csrf) if row else None

    def close_session(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sessions.delete().where(sessions.c.token_hash == token_hash(token)))

    # ------------------------------------------------------------------------- admin powers
    # Each admin method checks the caller's role itself (the app checks too: two locks on one door),
    # and writes its admin_actions row in the same transaction as the change, so no change goes unrecorded.
    @staticmethod
    def _require_admin(admin: User) -> None:
        if admin.role != "admin":
            raise PermissionError(f"{admin.name} is not an admin")

    def _target(self, conn: Any, name: str) -> Any:
        row = conn.execute(select(users.c.id, users.c.name, users.c.role, users.c.disabled_at)
                           .where(users.c.name == name)).first()
        if row is None:
            raise StoreError(f"no user {name!r}")
        return row

    @staticmethod
    def _audit(conn: Any, admin: User, action: str, target_id: int | None, detail: Mapping[str, Any]) -> None:
        conn.execute(insert(admin_actions).values(at=utcnow(), admin_id=admin.id, action=action,
                                                  target_user_id=target_id, detail=dict(detail)))

    def set_disabled(self, admin: User, name: str, disabled: bool) -> dict[str, Any]:
        """Disable (or enable again) an account. Disabling ends its sessions and stops its token and
        password at once, and hands the items it holds back to the queue; its decisions stay."""
        self._require_admin(admin)
        with self.engine.begin() as conn:
            target = self._target(conn, name)
            if target.id == admin.id and disabled:
                raise StoreError("an admin cannot disable their own account")
            released = 0
            if disabled:
                conn.execute(update(users).where(users.c.id == target.id).values(
                    disabled_at=target.disabled_at or utcnow()))
                conn.execute(sessions.delete().where(sessions.c.user_id == target.id))
                released = conn.execute(update(items).where(items.c.lease_user_id == target.id)
                                        .values(lease_user_id=None, lease_expires=None)).rowcount
            else:
                conn.execute(update(users).where(users.c.id == target.id).values(disabled_at=None))
            self._audit(conn, admin, "disable" if disabled else "enable", target.id,
                        {"user": target.name, "was_disabled": target.disabled_at is not None,
                         "leases_released": released})
        return {"user": target.name, "disabled": disabled, "leases_released": released}

    def rotate_token(self, admin: User, name: str) -> str:
        """A new bearer token for ``name`` (returned once; only its hash is stored); the old one stops working."""
        self._require_admin(admin)
        token = new_token()
        with self.engine.begin() as conn:
            target = self._target(conn, name)
            conn.execute(update(users).where(users.c.id == target.id).values(token_hash=token_hash(token)))
            self._audit(conn, admin, "rotate_token", target.id, {"user": target.name})
        return token

    def release_lease(self, admin: User, item_id: int) -> dict[str, Any]:
        """Hand an item another editor holds back to the queue (e.g. an editor who went home)."""
        self._require_admin(admin)
        with self.engine.begin() as conn:
            row = conn.execute(select(items.c.doc_id, items.c.lease_user_id, items.c.lease_expires, users.c.name)
                               .outerjoin(users, users.c.id == items.c.lease_user_id)
                               .where(items.c.id == item_id)).first()
            if row is None:
                raise StoreError(f"no item {item_id}")
            if row.lease_user_id is None or row.lease_expires is None or row.lease_expires <= utcnow():
                raise StoreError(f"article {row.doc_id!r} is not leased to anyone")
            conn.execute(update(items).where(items.c.id == item_id, items.c.lease_user_id == row.lease_user_id)
                         .values(lease_user_id=None, lease_expires=None))
            self._audit(conn, admin, "release_lease", row.lease_user_id, {"id": row.doc_id, "user": row.name})
        return {"id": row.doc_id, "released_from": row.name}

    def users_overview(self) -> list[dict[str, Any]]:
        """Every account with its state and per-editor figures: standing decisions (accepted, corrected),
        skips, decisions withdrawn by undo, items held now and when it last decided."""
        now = utcnow()
        with self.engine.connect() as conn:
            accounts = conn.execute(select(users.c.id, users.c.name, users.c.role, users.c.created_at,
                                           users.c.disabled_at).order_by(users.c.name)).all()
            counts: dict[tuple[int, str], int] = {
                (r.user_id, r.action): r.n for r in conn.execute(
                    select(decisions.c.user_id, decisions.c.action, func.count().label("n"))
                    .where(decisions.c.current).group_by(decisions.c.user_id, decisions.c.action))}
            undone = dict(conn.execute(select(decisions.c.user_id, func.count()).where(decisions.c.undone)
                                       .group_by(decisions.c.user_id)).all())
            last = dict(conn.execute(select(decisions.c.user_id, func.max(decisions.c.created_at))
                                     .group_by(decisions.c.user_id)).all())
            held = dict(conn.execute(select(items.c.lease_user_id, func.count()).where(items.c.lease_expires > now)
                                     .group_by(items.c.lease_user_id)).all())
        return [{"name": u.name, "role": u.role, "created_at": u.created_at, "disabled": u.disabled_at is not None,
                 "disabled_at": u.disabled_at, "accepted": counts.get((u.id, "accept"), 0),
                 "corrected": counts.get((u.id, "correct"), 0), "skipped": counts.get((u.id, "skip"), 0),
                 "undone": undone.get(u.id, 0), "leases_held": held.get(u.id, 0), "last_decision_at": last.get(u.id)}
                for u in accounts]

    def leases(self) -> list[dict[str, Any]]:
        """Items leased now: article id, holder, expiry (soonest first)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(items.c.id, items.c.doc_id, items.c.title, users.c.name, items.c.lease_expires)
                                .join(users, users.c.id == items.c.lease_user_id)
                                .where(items.c.lease_expires > utcnow()).order_by(items.c.lease_expires)).all()
        return [{"item_id": r.id, "id": r.doc_id, "title": r.title, "user": r.name, "expires": r.lease_expires}
                for r in rows]

    def admin_log(self, limit: int = 200) -> list[dict[str, Any]]:
        """The latest admin actions, newest first: when, which admin, what, on whom, details."""
        target = users.alias("target")
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(admin_actions.c.id, admin_actions.c.at, users.c.name.label("admin"), admin_actions.c.action,
                       target.c.name.label("target"), admin_actions.c.detail)
                .join(users, users.c.id == admin_actions.c.admin_id)
                .outerjoin(target, target.c.id == admin_actions.c.target_user_id)
                .order_by(admin_actions.c.id.desc()).limit(limit)).all()
        return [dict(r._mapping) for r in rows]

    # ------------------------------------------------------------------- sign-in failures
    def login_failures(self, keys: Sequence[str], since: datetime) -> dict[str, tuple[int, datetime]]:
        """For each key with failures at or after ``since``: (how many, the oldest of them)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(login_failures.c.key, func.count(), func.min(login_failures.c.at))
                                .where(login_failures.c.key.in_(list(keys)), login_failures.c.at >= since)
                                .group_by(login_failures.c.key)).all()
        return {r[0]: (r[1], r[2]) for r in rows}

    def record_login_failure(self, keys: Sequence[str], at: datetime, prune_before: datetime) -> None:
        """One failure row per key; rows older than ``prune_before`` are deleted in the same transaction,
        so the table holds one window of failures."""
        with self.engine.begin() as conn:
            conn.execute(login_failures.delete().where(login_failures.c.at < prune_before))
            conn.execute(insert(login_failures), [{"key": k[:300], "at": at} for k in keys])

    # ------------------------------------------------------------------------------------ items
    def add_items(self, rows: Iterable[Mapping[str, Any]]) -> tuple[int, list[str]]:
        """Insert queue items (dicts of the ``items`` columns a queue builder makes, see
        tagger.review.queue). An id already in the store is not imported again: returns (n added, the
        duplicate ids), so a re-run of the same import adds nothing and says so."""
        return self.add_encoded(encode_items(list(rows), self.engine.dialect.name == "sqlite"))

    def add_encoded(self, encoded: EncodedItems) -> tuple[int, list[str]]:
        """:meth:`add_items` for rows already made driver-ready by :func:`encode_items` (which an import's
        worker process runs, so this process only talks to the database): one transaction, one query
        for the ids already stored, one bulk write of the rest."""
        ids, params = encoded
        if not ids:
            return 0, []
        with self.engine.begin() as conn:
            existing: set[str] = set()
            for start in range(0, len(ids), 1000):
                part = ids[start:start + 1000]
                existing.update(conn.execute(select(items.c.doc_id).where(items.c.doc_id.in_(part))).scalars())
            new = [p for i, p in zip(ids, params) if i not in existing] if existing else params
            if new:
                # Straight to the driver (executemany on SQLite, COPY on PostgreSQL) with JSON serialised
                # by encode_items: SQLAlchemy's per-value type processing cost more than the database
                # itself (docs/review.md, import bench).
                if self.engine.dialect.name == "sqlite":
                    marks = ", ".join(["?"] * len(_INSERT_COLUMNS))
                    conn.exec_driver_sql(f"INSERT INTO items ({', '.join(_INSERT_COLUMNS)}) VALUES ({marks})", new)
                else:  # PostgreSQL: COPY, several times faster than a multi-row INSERT for thousands of rows
                    with conn.connection.driver_connection.cursor() as cur, \
                            cur.copy(f"COPY items ({', '.join(_INSERT_COLUMNS)}) FROM STDIN") as copy:
                        for p in new:
                            copy.write_row(p)
        return len(new), [i for i in ids if i in existing]

    def get_item(self, item_id: int) -> Item | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_ITEM_COLUMNS).where(items.c.id == item_id)).first()
        return _item(row) if row else None

    def item_id(self, doc_id: str) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(select(items.c.id).where(items.c.doc_id == doc_id)).scalar()

    def set_evidence(self, item_id: int, evidence: Mapping[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(items).where(items.c.id == item_id).values(evidence=dict(evidence)))

    # ------------------------------------------------------------------------------------ queue
    def next_item(self, user: User) -> Item | None:
        """The item this editor should review now, leased to them; None when the queue has nothing for them.

        An item they already hold is handed back (a reload does not burn the queue). Otherwise the
        random slice is drawn from ``random_share`` of the time and the active-learning order the rest
        (each falls back on the other when empty); the first open, unleased item this editor has not
        decided or skipped is claimed with a conditional UPDATE, so two editors never get the same item.
        """
        now = utcnow()
        with self.engine.begin() as conn:
            held = conn.execute(select(*_ITEM_COLUMNS).where(
                items.c.lease_user_id == user.id, items.c.lease_expires > now, items.c.is_open)
                .order_by(items.c.lease_expires.desc(), items.c.id).limit(1)).first()
            if held:
                return _item(held)
        with self._rng_lock:
            first = self._rng.random() < self.random_share
        for random_slice in (first, not first):
            for _ in range(4):  # another editor may claim a candidate first; look again
                with self.engine.begin() as conn:
                    candidates = conn.execute(
                        select(items.c.id).where(
                            items.c.is_open, items.c.random_slice == random_slice,
                            or_(items.c.lease_expires.is_(None), items.c.lease_expires <= now),
                            ~exists().where(decisions.c.item_id == items.c.id, decisions.c.user_id == user.id,
                                            decisions.c.current))
                        .order_by(items.c.is_open, items.c.random_slice, items.c.priority, items.c.id)
                        .limit(_CANDIDATES)).scalars().all()
                    if not candidates:
                        break
                    for item_id in candidates:
                        claimed = conn.execute(
                            update(items).where(
                                items.c.id == item_id, items.c.is_open,
                                or_(items.c.lease_expires.is_(None), items.c.lease_expires <= now))
                            .values(lease_user_id=user.id, lease_expires=now + self.lease)).rowcount
                        if claimed:
                            row = conn.execute(select(*_ITEM_COLUMNS).where(items.c.id == item_id)).one()
                            return _item(row)
        return None

    def release(self, user: User, item_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(items).where(items.c.id == item_id, items.c.lease_user_id == user.id)
                         .values(lease_user_id=None, lease_expires=None))

    # -------------------------------------------------------------------------------- decisions
    def _check_topics(self, topics: Sequence[str]) -> list[str]:
        if not isinstance(topics, (list, tuple)) or not all(isinstance(t, str) for t in topics):
            raise StoreError("'topics' must be a list of topic ids")
        if len(set(topics)) != len(topics):
            raise StoreError(f"a topic is given twice in {list(topics)}")
        if self.topics is not None:
            unknown = [t for t in topics if t not in self.topics]
            if unknown:
                raise StoreError(f"unknown topic(s) {unknown}; the topics are {', '.join(self.topics)}")
            return [t for t in self.topics if t in topics]
        return list(topics)

    def decide(self, user: User, item_id: int, topics: Sequence[str]) -> dict[str, Any]:
        """Record the topic set ``user`` confirms for an item (``[]`` = none of the topics). Returns the
        decision as stored: ``{"decision_id", "id", "action", "topics", "model_version"}``."""
        topics = self._check_topics(topics)
        return self._record(user, item_id, topics, skip=False)

    def skip(self, user: User, item_id: int) -> dict[str, Any]:
        """Pass on an item: it leaves this editor's queue (undo brings it back) and stays open for others."""
        return self._record(user, item_id, [], skip=True)

    def _record(self, user: User, item_id: int, topics: list[str], *, skip: bool) -> dict[str, Any]:
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    return self._record_in(conn, user, item_id, topics, skip)
            except IntegrityError:
                # The same editor's concurrent submit won the one-current-decision index: record again,
                # now as a re-decision of that one.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _record_in(self, conn: Any, user: User, item_id: int, topics: list[str], skip: bool) -> dict[str, Any]:
        item = conn.execute(select(items.c.predicted, items.c.model_version)
                            .where(items.c.id == item_id)).first()
        if item is None:
            raise StoreError(f"no item {item_id}")
        predicted = [p["topic"] for p in item.predicted]
        previous = conn.execute(select(decisions.c.id, decisions.c.action).where(
            decisions.c.item_id == item_id, decisions.c.user_id == user.id, decisions.c.current)).first()
        if skip and previous is not None and previous.action != "skip":
            raise StoreError(f"item {item_id} is already decided by {user.name}; undo it or decide again")
        if previous is not None:
            conn.execute(update(decisions).where(decisions.c.id == previous.id).values(current=False))
        action = "skip" if skip else ("accept" if set(topics) == set(predicted) else "correct")
        decision_id = conn.execute(insert(decisions).values(
            item_id=item_id, user_id=user.id, action=action, topics=topics, predicted=predicted,
            model_version=item.model_version, created_at=utcnow(), current=True, undone=False)).inserted_primary_key[0]
        counted_before = previous is not None and previous.action != "skip"
        delta = (0 if skip else 1) - (1 if counted_before else 0)
        values: dict[str, Any] = {}
        if delta:
            values["reviews_done"] = items.c.reviews_done + delta
            values["is_open"] = items.c.reviews_done + delta < items.c.reviews_needed
        if values:
            conn.execute(update(items).where(items.c.id == item_id).values(**values))
        # Done with it: release this editor's lease (another editor's lease on the item stays theirs).
        conn.execute(update(items).where(items.c.id == item_id, items.c.lease_user_id == user.id)
                     .values(lease_user_id=None, lease_expires=None))
        return {"decision_id": decision_id, "id": item_id, "action": action, "topics": topics,
                "model_version": item.model_version}

    def undo(self, user: User) -> dict[str, Any] | None:
        """Withdraw this editor's latest standing decision (or skip): the decision they made before it on
        the same item, if any, stands again; the item is leased back to them so it is shown next.
        Returns ``{"id", "undone_decision_id", "restored_decision_id"}``, or None with nothing to undo."""
        with self.engine.begin() as conn:
            last = conn.execute(select(decisions.c.id, decisions.c.item_id, decisions.c.action).where(
                decisions.c.user_id == user.id, decisions.c.current).order_by(decisions.c.id.desc()).limit(1)).first()
            if last is None:
                return None
            conn.execute(update(decisions).where(decisions.c.id == last.id).values(current=False, undone=True))
            before = conn.execute(select(decisions.c.id, decisions.c.action).where(
                decisions.c.item_id == last.item_id, decisions.c.user_id == user.id, ~decisions.c.undone,
                decisions.c.id < last.id).order_by(decisions.c.id.desc()).limit(1)).first()
            if before is not None:
                conn.execute(update(decisions).where(decisions.c.id == before.id).values(current=True))
            delta = (1 if before is not None and before.action != "skip" else 0) - (1 if last.action != "skip" else 0)
            # The editor goes back to the undone item: the one they were shown meanwhile returns to the queue.
            conn.execute(update(items).where(items.c.lease_user_id == user.id, items.c.id != last.item_id)
                         .values(lease_user_id=None, lease_expires=None))
            values: dict[str, Any] = {"lease_user_id": user.id, "lease_expires": utcnow() + self.lease}
            if delta:
                values["reviews_done"] = items.c.reviews_done + delta
                values["is_open"] = items.c.reviews_done + delta < items.c.reviews_needed
            conn.execute(update(items).where(items.c.id == last.item_id).values(**values))
        return {"id": last.item_id, "undone_decision_id": last.id,
                "restored_decision_id": before.id if before is not None else None}

    def history(self, item_id: int) -> list[dict[str, Any]]:
        """Every decision ever made on an item, oldest first, undone and replaced ones included."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(decisions.c.id, users.c.name, decisions.c.action, decisions.c.topics, decisions.c.predicted,
                       decisions.c.model_version, decisions.c.created_at, decisions.c.current, decisions.c.undone)
                .join(users, users.c.id == decisions.c.user_id)
                .where(decisions.c.item_id == item_id).order_by(decisions.c.id)).all()
        return [{"decision_id": r.id, "user": r.name, "action": r.action, "topics": r.topics,
                 "predicted": r.predicted, "model_version": r.model_version, "at": r.created_at,
                 "current": r.current, "undone": r.undone} for r in rows]

    def standing_decisions(self, since: datetime | None = None, *, articles: bool = True) -> list[dict[str, Any]]:
        """Every editor's standing decision (skips excluded) with its item, oldest first: what export and
        stats read. ``articles=False`` leaves out the article fields (title, text, tags, outlet,
        published), which the stats do not need."""
        cond = [decisions.c.current, decisions.c.action != "skip"]
        if since is not None:
            cond.append(decisions.c.created_at >= since)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(decisions.c.id, decisions.c.user_id, decisions.c.topics, decisions.c.predicted,
                       decisions.c.model_version, decisions.c.created_at, decisions.c.action,
                       items.c.id.label("item_id"), items.c.doc_id, items.c.random_slice, items.c.reviews_needed,
                       *((items.c.title, items.c.text, items.c.tags, items.c.outlet, items.c.published)
                         if articles else ()))
                .join(items, items.c.id == decisions.c.item_id).where(and_(*cond)).order_by(decisions.c.id)).all()
        return [dict(r._mapping) for r in rows]

    def queue_counts(self) -> dict[str, int]:
        now = utcnow()
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(items)).scalar() or 0
            open_ = conn.execute(select(func.count()).select_from(items).where(items.c.is_open)).scalar() or 0
            open_random = conn.execute(select(func.count()).select_from(items).where(
                items.c.is_open, items.c.random_slice)).scalar() or 0
            leased = conn.execute(select(func.count()).select_from(items).where(
                items.c.lease_expires > now, items.c.is_open)).scalar() or 0
        return {"items": total, "open": open_, "open_random_slice": open_random, "leased": leased,
                "done": total - open_}


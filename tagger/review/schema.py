"""The review store's tables (SQLAlchemy Core). Alembic's migrations (``migrations/``) create them; this
module is what the code queries, and a test holds the two to the same schema.

All times are naive UTC ``datetime``s: SQLite has no time zones, and one convention on both backends
keeps comparisons (lease expiry, ``--since``) identical.
"""
from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("password_hash", String(255), nullable=True),  # None: an API-only account (bearer token)
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 hex of the bearer token
    Column("created_at", DateTime, nullable=False),
    Column("disabled_at", DateTime, nullable=True),  # set by an admin: no sign-in, session or token works
)

items = Table(
    "items", metadata,
    Column("id", Integer, primary_key=True),
    Column("doc_id", String(500), nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("outlet", String(200), nullable=False),
    Column("url", Text, nullable=False),
    Column("published", String(50), nullable=False),
    Column("source", String(20), nullable=False),  # import | batch | live
    Column("model_version", String(200), nullable=False),
    Column("predicted", JSON, nullable=False),  # [{"topic", "score"}] the model chose, best first
    Column("scores", JSON, nullable=False),  # every topic's score
    Column("evidence", JSON, nullable=True),  # {topic: [{"ngram", "weight"}]} or None (computed when shown)
    Column("priority", Float, nullable=False),  # lower is reviewed sooner (see tagger.review.queue)
    Column("signals", JSON, nullable=False),  # the parts of the priority, for the docs and the stats
    Column("random_slice", Boolean, nullable=False),  # the unbiased quality sample: never trained on
    Column("reviews_needed", Integer, nullable=False),  # 2 for the double-review sample, else 1
    Column("reviews_done", Integer, nullable=False),
    Column("is_open", Boolean, nullable=False),  # reviews_done < reviews_needed
    Column("lease_user_id", Integer, ForeignKey("users.id"), nullable=True),
    Column("lease_expires", DateTime, nullable=True),
    Column("imported_at", DateTime, nullable=False),
)
# The queue's one access path: open items of a slice in priority order.
Index("ix_items_queue", items.c.is_open, items.c.random_slice, items.c.priority, items.c.id)
Index("ix_items_lease_user", items.c.lease_user_id)

decisions = Table(
    "decisions", metadata,
    Column("id", Integer, primary_key=True),
    Column("item_id", Integer, ForeignKey("items.id"), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("action", String(10), nullable=False),  # accept | correct | skip
    Column("topics", JSON, nullable=False),  # the topic set the editor confirmed ([] for skip)
    Column("predicted", JSON, nullable=False),  # the topic set shown (the item's prediction then)
    Column("model_version", String(200), nullable=False),  # which model's prediction was shown
    Column("created_at", DateTime, nullable=False),
    Column("current", Boolean, nullable=False),  # this editor's standing decision on the item
    Column("undone", Boolean, nullable=False),
)
Index("ix_decisions_item_user", decisions.c.item_id, decisions.c.user_id)
Index("ix_decisions_user", decisions.c.user_id, decisions.c.id)
Index("ix_decisions_created", decisions.c.created_at)
# One standing decision per editor and item: a double submit cannot leave two, and re-deciding
# moves the old one into history (current = false) instead of overwriting it.
Index("ux_decisions_current", decisions.c.item_id, decisions.c.user_id, unique=True,
      sqlite_where=text("current"), postgresql_where=text("current"))

sessions = Table(
    "sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("expires_at", DateTime, nullable=False),
)

# Every admin action: who, when, what, on whom (tagger.review.store.Store's admin methods write it).
admin_actions = Table(
    "admin_actions", metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime, nullable=False),
    Column("admin_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("action", String(40), nullable=False),  # disable | enable | rotate_token | release_lease
    Column("target_user_id", Integer, ForeignKey("users.id"), nullable=True),
    Column("detail", JSON, nullable=False),
)
Index("ix_admin_actions_at", admin_actions.c.at)

# Recent failed sign-ins, one row per failure per key ("ip:ADDRESS" and "user:NAME"), pruned once older
# than the limiter's window: the budget every app process (and a restarted one) shares.
login_failures = Table(
    "login_failures", metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(300), nullable=False),
    Column("at", DateTime, nullable=False),
)
Index("ix_login_failures_key_at", login_failures.c.key, login_failures.c.at)
Index("ix_login_failures_at", login_failures.c.at)

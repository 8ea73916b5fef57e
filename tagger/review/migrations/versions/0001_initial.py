"""The review store's first schema: users, items (the queue), decisions (with history), sessions.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("doc_id", sa.String(500), nullable=False, unique=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("outlet", sa.String(200), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("published", sa.String(50), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("predicted", sa.JSON, nullable=False),
        sa.Column("scores", sa.JSON, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=True),
        sa.Column("priority", sa.Float, nullable=False),
        sa.Column("signals", sa.JSON, nullable=False),
        sa.Column("random_slice", sa.Boolean, nullable=False),
        sa.Column("reviews_needed", sa.Integer, nullable=False),
        sa.Column("reviews_done", sa.Integer, nullable=False),
        sa.Column("is_open", sa.Boolean, nullable=False),
        sa.Column("lease_user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("lease_expires", sa.DateTime, nullable=True),
        sa.Column("imported_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_items_queue", "items", ["is_open", "random_slice", "priority", "id"])
    op.create_index("ix_items_lease_user", "items", ["lease_user_id"])
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("topics", sa.JSON, nullable=False),
        sa.Column("predicted", sa.JSON, nullable=False),
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("current", sa.Boolean, nullable=False),
        sa.Column("undone", sa.Boolean, nullable=False),
    )
    op.create_index("ix_decisions_item_user", "decisions", ["item_id", "user_id"])
    op.create_index("ix_decisions_user", "decisions", ["user_id", "id"])
    op.create_index("ix_decisions_created", "decisions", ["created_at"])
    op.create_index("ux_decisions_current", "decisions", ["item_id", "user_id"], unique=True,
                    sqlite_where=sa.text("current"), postgresql_where=sa.text("current"))
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("sessions", "decisions", "items", "users"):
        op.drop_table(table)

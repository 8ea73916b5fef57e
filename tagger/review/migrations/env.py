"""Alembic environment: migrations run on the connection :func:`tagger.review.store.migrate` passes in."""
from __future__ import annotations

from alembic import context

from tagger.review.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the review store's migrations through tagger.review.store.migrate(url)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

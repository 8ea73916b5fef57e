"""Alembic migrations of the review store (run by :func:`tagger.review.store.migrate`)."""

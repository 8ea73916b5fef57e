"""Fixtures of the review tests: every store test runs against a SQLite file and a real PostgreSQL server
(started once per test session by :mod:`review_pg`, one fresh database per test)."""
from __future__ import annotations

import itertools
from collections.abc import Iterator

import psycopg
import pytest
from review_pg import postgres_server
from sqlalchemy.engine import make_url

_names = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def fresh_pg_database(server_url: str) -> str:
    """A new empty database on the test server; its URL."""
    url = make_url(server_url)
    name = f"t{next(_names)}"
    with psycopg.connect(host=url.query["host"], port=int(url.query["port"]), user="postgres",
                         dbname=url.database, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "review.db")
    return fresh_pg_database(request.getfixturevalue("pg_server"))

"""The review app's JSON API and sign-in, against a real `tagger review serve --port 0` process."""
from __future__ import annotations

import json
import re
import urllib.parse  # noqa: F401  (review_server's Client uses it)
from pathlib import Path

import pytest
from review_fixtures import db_url, pg_server  # noqa: F401  (fixtures)
from review_server import Client, ReviewServer

from tagger.review.importer import import_files
from tagger.review.store import Store

HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


def _seed(db: str, loaded, tmp_path: Path, shared_dir: Path, n: int = 20) -> tuple[str, str]:
    """n dev articles queued (the first with a hostile title); an editor with a password; returns tokens."""
    day = tmp_path / "day.jsonl"
    with open(shared_dir / "gold/dev.jsonl", encoding="utf-8") as f, open(day, "w", encoding="utf-8") as g:
        for k, line in zip(range(n), f):
            row = json.loads(line)
            row.pop("topics")
            if k == 0:
                row["title"] = HOSTILE + row["title"]
            g.write(json.dumps(row, ensure_ascii=False) + "\n")
    with Store(db, topics=loaded.model.topics) as store:
        assert import_files(store, loaded, [str(day)]).added == n
        return store.add_user("ana", "editor", "s3cret-pass"), store.add_user("bot", "editor")


@pytest.fixture
def server(db_url: str, loaded, tmp_path: Path, shared_dir: Path):  # noqa: F811
    tokens = _seed(db_url, loaded, tmp_path, shared_dir)
    srv = ReviewServer(db_url)
    yield srv, tokens, db_url
    srv.stop()


def test_everything_but_health_and_sign_in_needs_a_caller(server) -> None:
    srv, _, _ = server
    anon = Client(srv.url)
    assert anon.request("GET", "/healthz")[:1] == (200,)
    for method, path in (("GET", "/api/queue/next"), ("POST", "/api/decisions"), ("GET", "/api/stats"),
                         ("POST", "/api/undo"), ("POST", "/api/skip")):
        status, headers, body = anon.request(method, path, body={} if method == "POST" else None)
        assert status == 401, path
        assert headers["WWW-Authenticate"] == "Bearer" and "error" in body
    assert Client(srv.url, token="not-a-token").request("GET", "/api/queue/next")[0] == 401
    for page in ("/", "/stats"):
        status, headers, _ = anon.request("GET", page)
        assert (status, headers["Location"]) == (303, "/login")
    assert anon.request("GET", "/login")[0] == 200


def test_review_through_the_api(server, loaded) -> None:
    srv, (ana_token, bot_token), db = server
    ana = Client(srv.url, ana_token)
    status, _, item = ana.request("GET", "/api/queue/next")
    assert status == 200
    assert set(item) >= {"id", "title", "text", "topics", "evidence", "dropped_tags", "model_version"}
    assert item["model_version"] == loaded.version
    assert all(set(t) == {"topic", "score"} for t in item["topics"])
    # Evidence comes as the article's own words, not stems.
    for entries in item["evidence"].values():
        for e in entries:
            assert all(w in item["title"] + item["text"] for w in e["words"])
    assert any(e["words"] for entries in item["evidence"].values() for e in entries)
    # Leased: the other editor gets another article.
    status, _, other = Client(srv.url, bot_token).request("GET", "/api/queue/next")
    assert status == 200 and other["id"] != item["id"]

    status, _, bad = ana.request("POST", "/api/decisions", {"id": item["id"], "topics": ["weather"]})
    assert status == 400 and "unknown topic" in bad["error"]
    assert ana.request("POST", "/api/decisions", {"id": "nope", "topics": []})[0] == 404
    assert ana.request("POST", "/api/decisions", {"id": item["id"]})[0] == 400
    status, _, decision = ana.request("POST", "/api/decisions", {"id": item["id"], "topics": []})
    assert status == 201 and decision["topics"] == [] and decision["user"] == "ana"
    assert decision["model_version"] == loaded.version
    with Store(db) as store:
        [hist] = store.history(store.item_id(item["id"]))
    assert (hist["user"], hist["topics"], hist["current"]) == ("ana", [], True)

    status, _, undone = ana.request("POST", "/api/undo")
    assert status == 200 and undone["id"] == item["id"]
    assert ana.request("GET", "/api/queue/next")[2]["id"] == item["id"]  # back to its editor
    predicted = [t["topic"] for t in item["topics"]]
    assert ana.request("POST", "/api/decisions", {"id": item["id"], "topics": predicted})[2]["action"] == "accept"

    status, _, stats = ana.request("GET", "/api/stats")
    assert status == 200
    assert stats["decisions"] == 1 and stats["per_model_version"][loaded.version]["exact_agreement"] == 1.0
    assert set(stats["per_topic"]) == set(loaded.model.topics)
    assert stats["queue"]["items"] == 20


def _login(client: Client, name: str, password: str) -> tuple[int, object, object]:
    status, _, page = client.request("GET", "/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    return client.request("POST", "/login", form={"name": name, "password": password, "csrf": nonce})


def test_sign_in_session_csrf_and_rate_limit(server) -> None:
    srv, _, _ = server
    browser = Client(srv.url)
    status, headers, _ = _login(browser, "ana", "s3cret-pass")
    assert (status, headers["Location"]) == (303, "/")
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    status, headers, page = browser.request("GET", "/")
    assert status == 200 and 'dir="rtl"' in page
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    csrf = re.search(r'<meta name="csrf" content="([^"]+)"', page).group(1)
    doc_id = re.search(r'data-id="([^"]+)"', page).group(1)
    # A cookie alone cannot post (cross-site forgery); with the page's token it can.
    assert browser.request("POST", "/api/decisions", {"id": doc_id, "topics": []})[0] == 403
    status, _, _ = browser.request("POST", "/api/decisions", {"id": doc_id, "topics": []}, {"X-CSRF-Token": csrf})
    assert status == 201
    # Hostile markup in article text is escaped in the page, never emitted as markup.
    pages = []
    for _ in range(25):
        status, _, page = browser.request("GET", "/")
        pages.append(page)
        m = re.search(r'data-id="([^"]+)"', page)
        if not m:
            break
        browser.request("POST", "/api/decisions", {"id": m.group(1), "topics": []}, {"X-CSRF-Token": csrf})
    hostile_page = next(p for p in pages if "pwned" in p)
    assert "<script>window.pwned" not in hostile_page and "&lt;script&gt;window.pwned=1" in hostile_page
    assert "<img src=x" not in hostile_page
    # Failed sign-ins are limited.
    intruder = Client(srv.url)
    codes = [_login(intruder, "ana", f"guess-{k}")[0] for k in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    assert _login(intruder, "ana", "s3cret-pass")[0] == 429  # even the right password waits
    assert not any("s3cret-pass" in line or "guess-" in line for line in srv.log)

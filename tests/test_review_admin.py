"""The admin role's powers (list users with per-editor figures, disable/enable, rotate a token, release
another editor's lease, the audit log), refused to editors, on the store and through real `tagger review
serve` processes; and the sign-in limit shared by two app processes on one database and across a restart."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from review_fixtures import db_url, pg_server  # noqa: F401  (fixtures)
from review_server import Client, ReviewServer
from sqlalchemy import func, select
from test_review_api import _login, _seed

from tagger.review.schema import admin_actions, login_failures
from tagger.review.store import Store, StoreError


def _admin(db: str) -> str:
    with Store(db) as store:
        return store.add_user("lead", "admin", "lead-pass-123")


def test_admin_powers_on_the_store(db_url: str, loaded, tmp_path: Path, shared_dir: Path) -> None:  # noqa: F811
    ana_token, bot_token = _seed(db_url, loaded, tmp_path, shared_dir)
    lead_token = _admin(db_url)
    with Store(db_url, topics=loaded.model.topics) as store:
        lead, ana, bot = (store.user_by_token(t) for t in (lead_token, ana_token, bot_token))
        session, _ = store.open_session(ana)
        held = store.next_item(ana)
        store.decide(bot, store.next_item(bot).id, [])  # bot decides one: per-editor figures
        # Editors have none of these powers, even called on the store directly.
        for call in (lambda: store.set_disabled(bot, "ana", True), lambda: store.rotate_token(bot, "ana"),
                     lambda: store.release_lease(bot, held.id)):
            with pytest.raises(PermissionError):
                call()
        with pytest.raises(StoreError, match="own account"):
            store.set_disabled(lead, "lead", True)
        with pytest.raises(StoreError, match="no user 'nobody'"):
            store.set_disabled(lead, "nobody", True)
        # Disabling: token, session and password stop at once; the item ana held goes back to the queue.
        assert store.set_disabled(lead, "ana", True)["leases_released"] == 1
        assert store.user_by_token(ana_token) is None and store.session(session) is None
        assert store.check_password("ana", "s3cret-pass") is None
        assert store.get_item(held.id).lease_expires is None
        overview = {u["name"]: u for u in store.users_overview()}
        assert overview["ana"]["disabled"] and not overview["bot"]["disabled"]
        assert overview["bot"]["corrected"] + overview["bot"]["accepted"] == 1 and overview["bot"]["last_decision_at"]
        store.set_disabled(lead, "ana", False)
        assert store.user_by_token(ana_token) == ana and store.check_password("ana", "s3cret-pass") == ana
        # Rotating: the old token stops, the new one works.
        new = store.rotate_token(lead, "bot")
        assert store.user_by_token(bot_token) is None and store.user_by_token(new) == bot
        # Releasing another editor's lease.
        item = store.next_item(ana)
        assert store.release_lease(lead, item.id) == {"id": item.doc_id, "released_from": "ana"}
        with pytest.raises(StoreError, match="not leased"):
            store.release_lease(lead, item.id)
        log = store.admin_log()
        assert [(a["admin"], a["action"], a["target"]) for a in log] == [
            ("lead", "release_lease", "ana"), ("lead", "rotate_token", "bot"), ("lead", "enable", "ana"),
            ("lead", "disable", "ana")]
        assert all(a["at"] is not None for a in log) and log[0]["detail"]["id"] == item.doc_id


def test_admin_api_and_page_and_editors_get_403(db_url: str, loaded, tmp_path: Path,  # noqa: F811
                                                shared_dir: Path) -> None:
    ana_token, bot_token = _seed(db_url, loaded, tmp_path, shared_dir)
    lead_token = _admin(db_url)
    srv = ReviewServer(db_url)
    try:
        ana, lead = Client(srv.url, ana_token), Client(srv.url, lead_token)
        # Editors: 403 on every admin call and on the page (signed in with a password).
        for method, path, body in (("GET", "/api/admin/users", None), ("GET", "/api/admin/actions", None),
                                   ("POST", "/api/admin/users/bot/disable", {}),
                                   ("POST", "/api/admin/users/bot/rotate-token", {}),
                                   ("POST", "/api/admin/leases/release", {"id": "x"})):
            status, _, answer = ana.request(method, path, body)
            assert (status, answer) == (403, {"error": "admins only"}), path
        editor_browser = Client(srv.url)
        assert _login(editor_browser, "ana", "s3cret-pass")[0] == 303
        status, _, page = editor_browser.request("GET", "/admin")
        assert status == 403 and "this page is for admins" in page and 'id="users"' not in page
        assert "/admin" not in editor_browser.request("GET", "/stats")[2].split("<main>")[0]  # no admin link
        # The lead lists users with per-editor figures and current leases.
        item = ana.request("GET", "/api/queue/next")[2]
        status, _, listing = lead.request("GET", "/api/admin/users")
        assert status == 200
        assert {u["name"]: u["role"] for u in listing["users"]} == {"ana": "editor", "bot": "editor", "lead": "admin"}
        assert [(lease["id"], lease["user"]) for lease in listing["leases"]] == [(item["id"], "ana")]
        # Release ana's lease: bot is handed that item next.
        assert lead.request("POST", "/api/admin/leases/release", {"id": item["id"]})[2] == {
            "id": item["id"], "released_from": "ana"}
        bot = Client(srv.url, bot_token)
        # Disable ana: her token and her browser session stop at once, in this running server.
        status, _, done = lead.request("POST", "/api/admin/users/ana/disable", {})
        assert (status, done["disabled"]) == (200, True)
        assert ana.request("GET", "/api/queue/next")[0] == 401
        assert editor_browser.request("GET", "/")[:1] == (303,)
        assert _login(Client(srv.url), "ana", "s3cret-pass")[0] == 401
        assert lead.request("POST", "/api/admin/users/ana/enable", {})[0] == 200
        assert ana.request("GET", "/api/queue/next")[0] in (200, 204)
        # Rotate bot's token: the old one is refused, the new one works.
        status, _, rotated = lead.request("POST", "/api/admin/users/bot/rotate-token", {})
        assert status == 200 and bot.request("GET", "/api/stats")[0] == 401
        assert Client(srv.url, rotated["token"]).request("GET", "/api/stats")[0] == 200
        assert lead.request("POST", "/api/admin/users/nobody/disable", {})[0] == 404
        assert lead.request("POST", "/api/admin/users/lead/disable", {})[0] == 400
        # The page: signed in as the lead, the buttons post forms with the session's CSRF token.
        browser = Client(srv.url)
        assert _login(browser, "lead", "lead-pass-123")[0] == 303
        status, _, page = browser.request("GET", "/admin")
        assert status == 200 and 'data-user="ana"' in page and 'href="/admin"' in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        assert browser.request("POST", "/admin/users/ana/disable", form={"csrf": "forged"})[0] == 403
        status, _, page = browser.request("POST", "/admin/users/ana/disable", form={"csrf": csrf})
        assert status == 200 and "disabled ana" in page and '<tr data-user="ana" class="disabled">' in page
        status, _, page = browser.request("POST", "/admin/users/bot/rotate-token", form={"csrf": csrf})
        token = re.search(r"<code>([^<]+)</code>", page).group(1)
        assert Client(srv.url, token).request("GET", "/api/stats")[0] == 200
        # Every action is in the audit log: who, when, what, on whom.
        status, _, log = lead.request("GET", "/api/admin/actions")
        assert [(a["admin"], a["action"], a["target"]) for a in log["actions"]] == [
            ("lead", "rotate_token", "bot"), ("lead", "disable", "ana"), ("lead", "rotate_token", "bot"),
            ("lead", "enable", "ana"), ("lead", "disable", "ana"), ("lead", "release_lease", "ana")]
        assert all(a["at"].endswith("Z") for a in log["actions"])
        assert token not in "".join(srv.log) and rotated["token"] not in "".join(srv.log)
    finally:
        srv.stop()


def test_sign_in_limit_is_shared_by_processes_and_survives_a_restart(tmp_path: Path, loaded,
                                                                      shared_dir: Path) -> None:
    db = str(tmp_path / "review.db")
    _seed(db, loaded, tmp_path, shared_dir, n=2)
    first, second = ReviewServer(db), ReviewServer(db)
    try:
        assert first.port != second.port
        # 5 failures in all, split between the two processes: the budget is spent for both.
        codes = [_login(Client(srv.url), "ana", f"guess-{k}")[0] for k, srv in enumerate([first, second] * 2 + [first])]
        assert codes == [401] * 5
        assert _login(Client(second.url), "ana", "s3cret-pass")[0] == 429
        assert _login(Client(first.url), "ana", "s3cret-pass")[0] == 429
        second.stop()
        second = ReviewServer(db)  # a restart does not give a fresh budget either
        status, headers, _ = _login(Client(second.url), "ana", "s3cret-pass")
        assert status == 429 and 250 <= int(headers["Retry-After"]) <= 301
        # Another user name from the same address is limited by the address's budget (127.0.0.1).
        assert _login(Client(second.url), "bot", "whatever")[0] == 429
    finally:
        first.stop()
        second.stop()
    with Store(db) as store, store.engine.connect() as conn:
        keys = dict(conn.execute(select(login_failures.c.key, func.count()).group_by(login_failures.c.key)).all())
        assert keys == {"ip:127.0.0.1": 5, "user:ana": 5}
        # Failures older than the window are pruned when the next one is recorded.
        from datetime import timedelta

        from tagger.review.auth import LoginLimiter

        limiter = LoginLimiter(store, window=300)
        conn.execute(login_failures.update().values(at=login_failures.c.at - timedelta(seconds=301)))
        conn.commit()
        assert limiter.retry_after("127.0.0.1", "ana") == 0.0
        limiter.failed("10.0.0.9", "carl")
        left = dict(conn.execute(select(login_failures.c.key, func.count()).group_by(login_failures.c.key)).all())
        assert left == {"ip:10.0.0.9": 1, "user:carl": 1}
        assert conn.execute(select(func.count()).select_from(admin_actions)).scalar() == 0


def test_behind_a_proxy_the_address_the_proxy_reports_counts(tmp_path: Path, loaded, shared_dir: Path) -> None:
    """With --behind-proxy 127.0.0.1, the client address is the right-most X-Forwarded-For entry that is not
    the proxy: one client's failures (under any user names, with a forged left part) block that client
    only, not the proxy's other clients."""
    db = str(tmp_path / "review.db")
    _seed(db, loaded, tmp_path, shared_dir, n=2)
    srv = ReviewServer(db, "--behind-proxy", "127.0.0.1")

    def login(forwarded: str, name: str, password: str) -> int:
        client = Client(srv.url)
        _, headers, page = client.request("GET", "/login", headers={"X-Forwarded-For": forwarded})
        nonce = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        # Behind a proxy cookies are Secure, which a cookie jar keeps off plain http: send it by hand.
        cookie = re.search(r"(tagger_review_login=[^;]+)", headers["Set-Cookie"]).group(1)
        return client.request("POST", "/login", headers={"X-Forwarded-For": forwarded, "Cookie": cookie},
                              form={"name": name, "password": password, "csrf": nonce})[0]

    try:
        codes = [login(f"10.9.9.{k}, 203.0.113.5", f"name-{k}", "guess") for k in range(5)]
        assert codes == [401] * 5
        assert login("203.0.113.5", "ana", "s3cret-pass") == 429
        assert login("198.51.100.7", "ana", "s3cret-pass") == 303  # another client of the same proxy
    finally:
        srv.stop()
    with Store(db) as store, store.engine.connect() as conn:
        keys = {k for (k,) in conn.execute(select(login_failures.c.key))}
    assert "ip:203.0.113.5" in keys and not any(k.startswith("ip:10.9.9.") or k == "ip:127.0.0.1" for k in keys)


def test_a_store_made_before_admin_powers_is_upgraded_in_place(db_url: str) -> None:  # noqa: F811
    """A database at migration 0001 (users, items, sessions made by the previous version) opens with its
    accounts intact and gains the new columns and tables (migration 0002)."""
    from importlib import resources

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import MetaData, Table, insert

    from tagger.review.auth import hash_password, token_hash
    from tagger.review.store import make_engine, utcnow

    engine = make_engine(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("tagger.review") / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")

    old_users = Table("users", MetaData(), autoload_with=engine)
    assert "disabled_at" not in old_users.c
    with engine.begin() as conn:
        conn.execute(insert(old_users).values(name="old", role="admin", password_hash=hash_password("pw-old-1"),
                                              token_hash=token_hash("tok-old"), created_at=utcnow()))
    engine.dispose()
    with Store(db_url) as store:
        old = store.check_password("old", "pw-old-1")
        assert old is not None and store.user_by_token("tok-old") == old and old.role == "admin"
        store.add_user("new-editor")
        assert store.set_disabled(old, "new-editor", True)["disabled"]
        assert [a["action"] for a in store.admin_log()] == ["disable"]

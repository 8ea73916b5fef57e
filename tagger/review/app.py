"""The review web app (Starlette + uvicorn): the editor's page, the stats page and the JSON API.

Every route except ``/login`` and ``/healthz`` needs a signed-in caller: a session cookie (pages and
the page's own API calls, which must echo the session's CSRF token in ``X-CSRF-Token``) or
``Authorization: Bearer TOKEN`` (scripts). Unauthenticated API calls get 401; pages redirect to the
sign-in page. Article text is data: templates escape it and the Content-Security-Policy allows no
inline script, so markup in a title or body shows as text.
"""
from __future__ import annotations

import inspect
import json
import logging
import secrets
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tagger.artifacts import LoadedModel
from tagger.review.auth import LoginLimiter
from tagger.review.charts import bar_chart, line_chart
from tagger.review.evidence import evidence_words, explain, marks, segments
from tagger.review.stats import compute_stats
from tagger.review.store import Item, Store, StoreError, User

__all__ = ["ServeOptions", "create_app", "serve", "TOPIC_KEYS"]

log = logging.getLogger("tagger.review")

COOKIE = "tagger_review_session"
LOGIN_COOKIE = "tagger_review_login"
#: Keys that toggle the 1st..12th topic on the review page.
TOPIC_KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "-", "=")
_MAX_BODY = 64 * 1024
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: Path | None = None
    tls_key: Path | None = None
    proxy_ips: str | None = None  # trust X-Forwarded-* from these


class _Error(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ReviewApp:
    """Routes over one store and the current model (for evidence of items imported without it)."""

    def __init__(self, store: Store, loaded: LoadedModel, *, secure_cookies: bool = False,
                 limiter: LoginLimiter | None = None) -> None:
        self.store, self.loaded = store, loaded
        self.secure_cookies = secure_cookies
        self.limiter = limiter or LoginLimiter(store)
        self.topics = tuple(loaded.model.topics)
        taxonomy = loaded.taxonomy
        self.topic_names = {t.id: t.ar for t in taxonomy.topics if t.id in self.topics}
        self.jinja = Environment(loader=PackageLoader("tagger.review", "templates"),
                                 autoescape=select_autoescape(default=True, default_for_string=True))
        self.jinja.filters["pct"] = lambda v: "n/a" if v is None else f"{v:.1%}"

    # -------------------------------------------------------------------------------- plumbing
    def _caller(self, request: Request) -> tuple[User, str | None] | None:
        """(user, session CSRF token or None for a bearer token)."""
        auth = request.headers.get("authorization")
        if auth is not None:
            scheme, _, token = auth.partition(" ")
            user = self.store.user_by_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
            return (user, None) if user else None
        cookie = request.cookies.get(COOKIE)
        return self.store.session(cookie) if cookie else None

    def _api_user(self, request: Request) -> User:
        caller = self._caller(request)
        if caller is None:
            raise _Error(401, "sign in, or send Authorization: Bearer TOKEN")
        user, csrf = caller
        if csrf is not None and request.method not in ("GET", "HEAD") and not secrets.compare_digest(
                request.headers.get("x-csrf-token", ""), csrf):
            raise _Error(403, "missing or wrong X-CSRF-Token")
        return user

    async def _json_body(self, request: Request) -> dict[str, Any]:
        body = await request.body()
        if len(body) > _MAX_BODY:
            raise _Error(413, f"request body over {_MAX_BODY} bytes")
        try:
            data = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise _Error(400, f"the body is not JSON ({e})") from None
        if not isinstance(data, dict):
            raise _Error(400, "the body must be a JSON object")
        return data

    def _item_id(self, data: dict[str, Any]) -> int:
        doc_id = data.get("id")
        if not isinstance(doc_id, str) or not doc_id:
            raise _Error(400, "'id' (the article id) must be a non-empty string")
        item_id = self.store.item_id(doc_id)
        if item_id is None:
            raise _Error(404, f"no article {doc_id!r} in the review queue")
        return item_id

    def _evidence(self, item: Item) -> dict[str, list[dict]]:
        """The item's evidence n-grams; computed with the current model (and kept) when the import did
        not keep any and the item was tagged by this model version."""
        evidence = item.evidence
        if evidence is None and item.model_version == self.loaded.version:
            evidence = explain(self.loaded, item.title, item.text, item.predicted_topics)
            self.store.set_evidence(item.id, evidence)
        return evidence or {}

    def item_json(self, item: Item) -> dict[str, Any]:
        return {
            "id": item.doc_id, "title": item.title, "text": item.text,
            "topics": [{"topic": p["topic"], "score": p["score"]} for p in item.predicted],
            "scores": item.scores,
            "evidence": evidence_words(item.title, item.text, self._evidence(item)),
            "dropped_tags": item.tags, "model_version": item.model_version, "outlet": item.outlet,
            "url": item.url, "lease_expires": item.lease_expires.isoformat() + "Z" if item.lease_expires else None,
        }

    def _render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.jinja.get_template(name).render(**context), status_code=status)

    # ------------------------------------------------------------------------------------ API
    def api_next(self, request: Request) -> Response:
        item = self.store.next_item(self._api_user(request))
        return Response(status_code=204) if item is None else JSONResponse(self.item_json(item))

    async def api_decide(self, request: Request) -> Response:
        user = self._api_user(request)
        data = await self._json_body(request)
        if "topics" not in data:
            raise _Error(400, "'topics' is required: the topic ids the editor confirms ([] for none)")
        item_id = self._item_id(data)
        try:
            decision = self.store.decide(user, item_id, data["topics"])
        except StoreError as e:
            raise _Error(400, str(e)) from None
        return JSONResponse(decision | {"id": data["id"], "user": user.name}, status_code=201)

    async def api_skip(self, request: Request) -> Response:
        user = self._api_user(request)
        item_id = self._item_id(await self._json_body(request))
        try:
            self.store.skip(user, item_id)
        except StoreError as e:
            raise _Error(409, str(e)) from None
        return JSONResponse({"skipped": True})

    def api_undo(self, request: Request) -> Response:
        undone = self.store.undo(self._api_user(request))
        if undone is None:
            raise _Error(404, "nothing to undo")
        item = self.store.get_item(undone["id"])
        return JSONResponse({"id": item.doc_id if item else None, "undone_decision_id": undone["undone_decision_id"],
                             "restored_decision_id": undone["restored_decision_id"]})

    def api_stats(self, request: Request) -> Response:
        self._api_user(request)
        return JSONResponse(compute_stats(self.store))

    # ---------------------------------------------------------------------------------- pages
    def login_page(self, request: Request, error: str = "", status: int = 200) -> Response:
        nonce = secrets.token_urlsafe(16)
        response = self._render("login.html", status, error=error, login_csrf=nonce)
        response.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="strict", secure=self.secure_cookies,
                            path="/login")
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not secrets.compare_digest(str(form.get("csrf", "")), nonce):
            return self.login_page(request, "the sign-in form expired; try again", 403)
        client = request.client.host if request.client else "?"
        wait = self.limiter.retry_after(client, name)
        if wait > 0:
            response = self.login_page(request, f"too many failed sign-ins; try again in {int(wait) + 1} s", 429)
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        user = self.store.check_password(name, password)
        if user is None:
            self.limiter.failed(client, name)
            log.info("failed sign-in for a user name from %s", client)  # the name may be a password typed in
            return self.login_page(request, "wrong user name or password", 401)
        token, _ = self.store.open_session(user)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=self.secure_cookies,
                            max_age=12 * 3600)
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(self, request: Request) -> Response:
        caller = self._caller(request)
        form = await request.form()
        if caller and caller[1] and secrets.compare_digest(str(form.get("csrf", "")), caller[1]):
            self.store.close_session(request.cookies.get(COOKIE, ""))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    def review_page(self, request: Request) -> Response:
        caller = self._caller(request)
        if caller is None or caller[1] is None:
            return RedirectResponse("/login", status_code=303)
        user, csrf = caller
        item = self.store.next_item(user)
        context: dict[str, Any] = {"user": user, "csrf": csrf, "item": None}
        if item is not None:
            evidence = self._evidence(item)
            chosen = set(item.predicted_topics)
            context.update(
                item=item,
                title=segments(item.title, marks(item.title, evidence)),
                body=[segments(p, marks(p, evidence)) for p in item.text.split("\n") if p.strip()],
                topics=[{"id": t, "name": self.topic_names.get(t, t), "key": TOPIC_KEYS[i] if i < len(TOPIC_KEYS) else "",
                         "score": item.scores.get(t, 0.0), "chosen": t in chosen,
                         "evidence": evidence_words(item.title, item.text, {t: evidence.get(t, [])})[t]}
                        for i, t in enumerate(self.topics)],
            )
        return self._render("review.html", **context)

    def stats_page(self, request: Request) -> Response:
        caller = self._caller(request)
        if caller is None or caller[1] is None:
            return RedirectResponse("/login", status_code=303)
        stats = compute_stats(self.store)
        days = sorted({r["day"] for r in stats["over_time"]})
        versions = sorted({r["model_version"] for r in stats["over_time"]})
        by_key = {(r["day"], r["model_version"]): r["topic_agreement"] for r in stats["over_time"]}
        editors = sorted({r["editor"] for r in stats["throughput"]})
        charts = [
            bar_chart("Agreement per topic, random slice (unbiased)",
                      [(t, v["agreement"]) for t, v in stats["per_topic_random_slice"].items()], max_value=1.0),
            bar_chart("Model–editor agreement per topic (all decisions)",
                      [(t, v["agreement"]) for t, v in stats["per_topic"].items()], max_value=1.0),
            bar_chart("Exact topic-set agreement per model version",
                      [(v, s["exact_agreement"]) for v, s in stats["per_model_version"].items()], max_value=1.0),
            line_chart("Topic agreement over time, per model version", days,
                       {v: [by_key.get((d, v)) for d in days] for v in versions}),
            bar_chart("Editor throughput (decisions)",
                      [(e, float(sum(r["decisions"] for r in stats["throughput"] if r["editor"] == e)))
                       for e in editors], fmt="{:.0f}"),
            bar_chart(f"Inter-editor agreement per topic ({stats['inter_editor']['items']} double-reviewed)",
                      list(stats["inter_editor"]["per_topic"].items()), max_value=1.0),
            bar_chart("Queue", [(k, float(v)) for k, v in stats["queue"].items()], fmt="{:,.0f}"),
        ]
        return self._render("stats.html", user=caller[0], csrf=caller[1], stats=stats,
                            charts=[Markup(c) for c in charts])  # noqa: S704 - built from escaped parts

    # ---------------------------------------------------------------------------------- admin
    def _api_admin(self, request: Request) -> User:
        user = self._api_user(request)
        if user.role != "admin":
            raise _Error(403, "admins only")
        return user

    @staticmethod
    def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v.isoformat() + "Z" if isinstance(v, datetime) else v for k, v in r.items()} for r in rows]

    def _admin_do(self, admin: User, action: str, name: str | None = None, doc_id: str | None = None) -> dict[str, Any]:
        """One admin action (the store records it); StoreError is the caller's mistake (400/404)."""
        try:
            if action in ("disable", "enable"):
                assert name is not None
                return self.store.set_disabled(admin, name, action == "disable")
            if action == "rotate-token":
                assert name is not None
                return {"user": name, "token": self.store.rotate_token(admin, name)}
            if action == "release":
                item_id = self._item_id({"id": doc_id})
                return self.store.release_lease(admin, item_id)
        except StoreError as e:
            raise _Error(404 if str(e).startswith("no ") else 400, str(e)) from None
        raise _Error(404, f"no admin action {action!r}")

    def api_admin_users(self, request: Request) -> Response:
        self._api_admin(request)
        return JSONResponse({"users": self._jsonable(self.store.users_overview()),
                             "leases": self._jsonable(self.store.leases())})

    def api_admin_user_action(self, request: Request) -> Response:
        admin = self._api_admin(request)
        return JSONResponse(self._admin_do(admin, request.path_params["action"], name=request.path_params["name"]))

    async def api_admin_release(self, request: Request) -> Response:
        admin = await run_in_threadpool(self._api_admin, request)
        data = await self._json_body(request)
        return JSONResponse(await run_in_threadpool(self._admin_do, admin, "release", None, data.get("id")))

    def api_admin_log(self, request: Request) -> Response:
        self._api_admin(request)
        return JSONResponse({"actions": self._jsonable(self.store.admin_log())})

    def _admin_caller(self, request: Request) -> tuple[User, str] | Response:
        caller = self._caller(request)
        if caller is None or caller[1] is None:
            return RedirectResponse("/login", status_code=303)
        if caller[0].role != "admin":
            return self._render("admin.html", 403, user=caller[0], csrf=caller[1], users=[], leases=[], log=[],
                                message="this page is for admins", error=True)
        return caller[0], caller[1]

    def admin_page(self, request: Request, message: str = "", error: bool = False,
                   new_token: dict[str, str] | None = None, status: int = 200) -> Response:
        caller = self._admin_caller(request)
        if isinstance(caller, Response):
            return caller
        user, csrf = caller
        return self._render("admin.html", status, user=user, csrf=csrf, users=self.store.users_overview(),
                            leases=self.store.leases(), log=self.store.admin_log(50), message=message, error=error,
                            new_token=new_token)

    async def admin_form(self, request: Request) -> Response:
        """The page's buttons: a form post with the session's CSRF token, answered with the page."""
        caller = await run_in_threadpool(self._admin_caller, request)
        if isinstance(caller, Response):
            return caller
        admin, csrf = caller
        form = await request.form()
        if not secrets.compare_digest(str(form.get("csrf", "")), csrf):
            return await run_in_threadpool(self.admin_page, request, "the form expired; try again", True, None, 403)
        action = request.path_params.get("action", "release")
        try:
            done = await run_in_threadpool(self._admin_do, admin, action, request.path_params.get("name"),
                                           str(form.get("id", "")))
        except _Error as e:
            return await run_in_threadpool(self.admin_page, request, str(e), True, None, e.status)
        token = {"user": done["user"], "token": done["token"]} if "token" in done else None
        what = {"disable": "disabled", "enable": "enabled", "rotate-token": "new token for", "release": "released"}
        target = done.get("user") or done.get("id")
        return await run_in_threadpool(self.admin_page, request, f"{what.get(action, action)} {target}", False, token)

    @staticmethod
    def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})


def _guard(fn: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
    """API errors as JSON ``{"error"}`` with their status; security headers on every response. Sync
    handlers touch the database, so they run in the thread pool, off the event loop."""
    is_async = inspect.iscoroutinefunction(fn)

    async def endpoint(request: Request) -> Response:
        try:
            response = await fn(request) if is_async else await run_in_threadpool(fn, request)
        except _Error as e:
            response = JSONResponse({"error": str(e)}, status_code=e.status)
            if e.status == 401:
                response.headers["WWW-Authenticate"] = "Bearer"
        response.headers.update(_SECURITY_HEADERS)
        return response

    return endpoint


def create_app(store: Store, loaded: LoadedModel, *, secure_cookies: bool = False,
               limiter: LoginLimiter | None = None) -> Starlette:
    app = ReviewApp(store, loaded, secure_cookies=secure_cookies, limiter=limiter)
    static = Path(__file__).resolve().parent / "static"
    return Starlette(routes=[
        Route("/healthz", _guard(app.health)),
        Route("/login", _guard(app.login_page), methods=["GET"]),
        Route("/login", _guard(app.login), methods=["POST"]),
        Route("/logout", _guard(app.logout), methods=["POST"]),
        Route("/", _guard(app.review_page)),
        Route("/stats", _guard(app.stats_page)),
        Route("/api/queue/next", _guard(app.api_next)),
        Route("/api/decisions", _guard(app.api_decide), methods=["POST"]),
        Route("/api/skip", _guard(app.api_skip), methods=["POST"]),
        Route("/api/undo", _guard(app.api_undo), methods=["POST"]),
        Route("/api/stats", _guard(app.api_stats)),
        Route("/api/admin/users", _guard(app.api_admin_users)),
        Route("/api/admin/users/{name}/{action}", _guard(app.api_admin_user_action), methods=["POST"]),
        Route("/api/admin/leases/release", _guard(app.api_admin_release), methods=["POST"]),
        Route("/api/admin/actions", _guard(app.api_admin_log)),
        Route("/admin", _guard(app.admin_page)),
        Route("/admin/users/{name}/{action}", _guard(app.admin_form), methods=["POST"]),
        Route("/admin/leases/release", _guard(app.admin_form), methods=["POST"]),
        Mount("/static", StaticFiles(directory=static), name="static"),
    ])


def _display_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True) if "://" in url else url


def serve(store: Store, loaded: LoadedModel, options: ServeOptions) -> int:
    """Listen (port 0 = any free port), print a ``ready:`` line with the bound port, serve until SIGINT/SIGTERM."""
    import uvicorn

    tls = options.tls_cert is not None
    app = create_app(store, loaded, secure_cookies=tls or options.proxy_ips is not None)
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((options.host, options.port))
    sock.listen(128)
    sock.set_inheritable(True)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, server_header=False,
        ssl_certfile=str(options.tls_cert) if tls else None, ssl_keyfile=str(options.tls_key) if tls else None,
        proxy_headers=options.proxy_ips is not None, forwarded_allow_ips=options.proxy_ips or "127.0.0.1",
    )
    server = uvicorn.Server(config)
    port = sock.getsockname()[1]
    scheme = "https" if tls else "http"
    print(f"ready: review app on {scheme}://{options.host}:{port} (model {loaded.version}, "
          f"db {_display_url(store.url)})", file=sys.stderr, flush=True)
    server.run(sockets=[sock])
    return 0

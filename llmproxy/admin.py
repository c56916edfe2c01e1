"""The admin API under /admin/api/ (usage, recent requests, one request's story, the config in force, the
last reloads), for the admin key only; and the dashboard page at /admin, whose static files need no key
(they hold no data: the page asks for the admin key and sends it on every /admin/api call)."""
from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from . import access, report
from .headers import redact
from .state import STATE

# config fields whose values are secrets whatever they hold (the rest is redacted by value)
_SECRET_FIELDS = frozenset({"key", "keys", "key_sha256", "admin_key", "user_jwt_secret"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/api/usage", _guarded(usage))
    app.router.add_get("/admin/api/requests", _guarded(requests))
    app.router.add_get("/admin/api/requests/{id}", _guarded(one_request))
    app.router.add_get("/admin/api/reloads", _guarded(reloads))
    app.router.add_get("/admin/api/config", _guarded(config))
    app.router.add_get("/admin", page)
    app.router.add_get("/admin/", page)
    app.router.add_get("/admin/static/{name}", static)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body, option=orjson.OPT_INDENT_2), content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": {"message": message, "type": "authentication_error" if status == 401 else "permission_error"}}, status)


def _guarded(handler: Callable[[web.Request], Awaitable[web.Response]]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """With ``access:`` set, only ``access.admin_key`` opens the admin API (a client key: 403; nothing or another key: 401)."""

    async def guarded(request: web.Request) -> web.Response:
        cfg = request.app[STATE].snap.config
        if cfg.clients is not None and not access.is_admin(cfg, request):
            if not cfg.admin_key:
                return _error(403, "the admin API needs access.admin_key in router.yaml, sent as 'Authorization: Bearer <admin_key>'")
            key = access.presented_key(request)
            try:
                client = access.authenticate(cfg, request) if key else None
            except Exception:
                client = None
            if client is not None:
                return _error(403, f"a client key (client '{client.name}') does not open the admin API; send access.admin_key")
            return _error(401, "the admin API needs access.admin_key: send 'Authorization: Bearer <admin_key>'")
        try:
            return await handler(request)
        except ValueError as e:
            return _json({"error": {"message": str(e), "type": "invalid_request_error"}}, 400)

    return guarded


def since_of(value: str | None, default: str = "7d") -> float:
    """``7d``, ``24h``, ``30m``, ``2w`` (back from now) or unix seconds."""
    s = (value or default).strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        if s and s[-1] in units:
            return time.time() - float(s[:-1]) * units[s[-1]]
        return float(s)
    except ValueError:
        raise ValueError(f"since: expected 7d, 24h, 30m or unix seconds, got {s!r}") from None


async def _query(request: web.Request, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """``fn(connection, …)`` on a read-only connection in a thread, after the rows queued so far are written."""
    state = request.app[STATE]
    await state.log.flush()
    db = state.snap.config.log_path

    def run() -> Any:
        con = report.connect(db)
        try:
            return fn(con, *args, **kw)
        finally:
            con.close()

    return await asyncio.to_thread(run)


async def usage(request: web.Request) -> web.Response:
    by = request.query.get("by", "model")
    if by not in report.KEYS:
        raise ValueError(f"by: expected one of {', '.join(report.KEYS)}, got {by!r}")
    since = since_of(request.query.get("since"))
    split = request.query.get("split")
    if split:  # per day and per model, client, user or backend: the dashboard's charts
        if by != "day" or split not in report.SPLITS:
            raise ValueError(f"split: expected by=day and split={'|'.join(report.SPLITS)}, got by={by!r}, split={split!r}")
        return _json({"by": by, "split": split, "since": int(since), "groups": await _query(request, report.usage_split, split, since)})
    return _json({"by": by, "since": int(since), "groups": await _query(request, report.usage, by, since)})


def _limit(q: Any, default: int, most: int) -> int:
    try:
        return min(max(int(q.get("limit", default)), 1), most)
    except ValueError:
        raise ValueError(f"limit: expected a number, got {q.get('limit')!r}") from None


async def requests(request: web.Request) -> web.Response:
    q = request.query
    limit = _limit(q, 50, 1000)
    status = q.get("status") or None
    if status and status != "error" and not status.isdigit():
        raise ValueError(f"status: expected a status code or 'error', got {status!r}")
    rows = await _query(request, report.recent, limit, status=status, model=q.get("model") or None, client=q.get("client") or None)
    return _json({"requests": rows})


async def one_request(request: web.Request) -> web.Response:
    """One row, its attempt story and, with ``log.bodies`` on, its kept bodies (else null)."""
    row = await _query(request, report.request, request.match_info["id"])
    if row is None:
        return _json({"error": {"message": f"no request {request.match_info['id']!r} in the log", "type": "not_found_error"}}, 404)
    try:
        attempts = orjson.loads(row["attempt_log"]) if row["attempt_log"] else []
    except orjson.JSONDecodeError:
        attempts = []
    return _json({"request": row, "attempts": attempts, "bodies": await _query(request, report.bodies, row["id"])})


async def reloads(request: web.Request) -> web.Response:
    return _json({"reloads": await _query(request, report.reloads, _limit(request.query, 20, 1000))})


async def config(request: web.Request) -> web.Response:
    snap = request.app[STATE].snap
    return _json({"path": str(snap.config.path), "sha256": snap.config.sha256, "loaded_at": snap.config.loaded_at,
                  "config": _hidden(snap.config.raw, snap.secrets)})


def _hidden(node: Any, secrets: tuple[str, ...], name: str | None = None) -> Any:
    """The config with secret fields as ``***`` and every configured secret redacted by value elsewhere (headers, urls)."""
    if name in _SECRET_FIELDS:
        return [_stars(v) for v in node] if isinstance(node, list) else _stars(node)
    if isinstance(node, dict):
        return {k: _hidden(v, secrets, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_hidden(v, secrets) for v in node]
    if isinstance(node, str):
        return redact(node, secrets)
    return node


def _stars(value: Any) -> Any:
    return "***" if value is not None else None


# The dashboard: files straight inside the package's dashboard/ folder, asked for by a plain name (no folder, no dot first,
# one of the suffixes below): nothing else on the disk can be reached through /admin/static.
DASHBOARD = Path(__file__).parent / "dashboard"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",  # kept, but asked again each time (an ETag makes that a 304): a reload picks up a new version
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}


def _dashboard_file(request: web.Request, name: str) -> web.Response:
    path = DASHBOARD / name
    if path.suffix not in _TYPES or path.parent != DASHBOARD or not path.is_file():
        raise web.HTTPNotFound(text="no such dashboard file", content_type="text/plain")
    data = path.read_bytes()
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    headers = {**_PAGE_HEADERS, "ETag": etag}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, content_type=_TYPES[path.suffix], charset="utf-8", headers=headers)


async def page(request: web.Request) -> web.Response:
    """``/admin``: the page holds no data, so it loads without a key; every /admin/api call it makes carries one."""
    return _dashboard_file(request, "index.html")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise web.HTTPNotFound(text="no such dashboard file", content_type="text/plain")
    return _dashboard_file(request, name)

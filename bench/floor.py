"""The reference floor: a bare aiohttp pass-through proxy, the least any aiohttp proxy can cost.

Reads the body, sends it upstream on one pooled keep-alive session, and returns the answer
(streamed chunk by chunk when it is an event stream).  No auth, no routing, no log.

    python bench/floor.py PORT UPSTREAM_URL [asyncio|uvloop]
"""
from __future__ import annotations

import sys

import aiohttp
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)


async def handle(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    session = request.app[SESSION]
    async with session.post(UPSTREAM + request.path, data=body, headers={"Content-Type": "application/json"}) as up:
        ctype = up.headers.get("Content-Type", "application/json")
        if not ctype.startswith("text/event-stream"):
            return web.Response(status=up.status, body=await up.read(), headers={"Content-Type": ctype})
        resp = web.StreamResponse(status=up.status, headers={"Content-Type": ctype, "Cache-Control": "no-cache"})
        await resp.prepare(request)
        async for chunk in up.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp


async def session_ctx(app: web.Application):  # noqa: ANN201
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    app[SESSION] = aiohttp.ClientSession(connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",))
    yield
    await app[SESSION].close()


def make_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/{tail:.*}", handle)
    return app


if __name__ == "__main__":
    port, UPSTREAM = int(sys.argv[1]), sys.argv[2].rstrip("/")
    loop_factory = None
    if len(sys.argv) > 3 and sys.argv[3] == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    web.run_app(make_app(), host="127.0.0.1", port=port, print=None, access_log=None, loop=loop_factory() if loop_factory else None)

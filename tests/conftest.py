"""Shared test rig: fake upstreams as real aiohttp servers on 127.0.0.1 port 0, and llmproxy itself."""
from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson
import pytest
import yaml
from aiohttp import web

from llmproxy.app import make_app
from llmproxy.state import STATE

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = Path(__file__).parent / "golden"
REGEN_GOLDEN = os.environ.get("LLMPROXY_REGEN_GOLDEN") == "1"


def fixture_bytes(name: str) -> bytes:
    """A recorded upstream body, e.g. ``fixture_bytes("openai/stream-text-usage.sse")``."""
    return (FIXTURES / name).read_bytes()


def sse_wire(name: str) -> bytes:
    """A recorded stream as its provider sends it; a data-only ``.chunks.jsonl`` gets ``event: <type>`` lines back."""
    raw = fixture_bytes(name)
    if not name.endswith(".chunks.jsonl"):
        return raw
    lines = [line for line in raw.splitlines() if line.strip()]
    return b"".join(b"event: " + orjson.loads(line)["type"].encode() + b"\ndata: " + line + b"\n\n" for line in lines)


def check_golden(folder: str, name: str, data: bytes) -> None:
    """``data`` must equal tests/golden/<folder>/<name> byte for byte.

    ``LLMPROXY_REGEN_GOLDEN=1 pytest …`` rewrites the files instead; then read the diff (a golden
    file that encodes a bug is worse than none).
    """
    path = GOLDEN / folder / name
    if REGEN_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert path.exists(), f"golden file {path} missing; run with LLMPROXY_REGEN_GOLDEN=1 and read what it wrote"
    assert data == path.read_bytes(), f"golden mismatch: {path}"


def from_upstream(module, events, meta):  # noqa: ANN001, ANN201
    """A backend module's stream reader driven as the translated path drives it: each event with data
    until the backend's own end, then ``end()``; the hub chunks one at a time (a test may stop at an error)."""
    reader = module.FromUpstream(meta)
    for ev in events:
        if ev[1] is None:  # ((name, data): a framer's read hands plain pairs)
            continue
        yield from reader.event(ev)
        if reader.done:
            break
    yield from reader.end()


def to_client(writer, chunks):  # noqa: ANN001, ANN201
    """A front door's stream writer over hub ``chunks``: each non-empty piece, then the closing bytes."""
    for chunk in chunks:
        piece = writer.chunk(chunk)
        if piece:
            yield piece
    tail = writer.end()
    if tail:
        yield tail


def splits(data: bytes, mode: str | int | list[int] | None, seed: int = 0) -> list[bytes]:
    """Cut ``data`` the way a network might: ``None`` whole, ``"random"``, ``1`` byte by byte, or at offsets."""
    if mode is None:
        return [data]
    if mode == "random":
        rnd = random.Random(seed)
        out, i = [], 0
        while i < len(data):
            n = rnd.randint(1, 64)
            out.append(data[i : i + n])
            i += n
        return out
    if isinstance(mode, int):
        return [data[i : i + mode] for i in range(0, len(data), mode)]
    cuts = [0, *mode, len(data)]
    return [data[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


@dataclass
class Reply:
    """What a fake upstream answers on one path."""

    body: bytes = b"{}"
    status: int = 200
    content_type: str = "application/json"
    split: Any = None  # see splits()
    gap: float = 0.0  # seconds between pieces
    hang_before: float = 0.0  # seconds before the response headers
    hang_after: int | None = None  # stop sending after this many pieces and hang
    reset_after: int | None = None  # after this many pieces, drop the connection (a reset mid-stream)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    path: str
    query: str  # raw, as it came on the request line
    headers: dict[str, str]
    body: Any


class FakeUpstream:
    """A real HTTP server replaying fixed replies and recording what it was sent."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply | Callable[[web.Request], Awaitable[web.StreamResponse]]] = {}
        self.seen: list[Seen] = []
        self.url = ""
        self.cancelled = 0  # responses whose client went away mid-way
        self.done = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw
        self.seen.append(Seen(request.path, request.rel_url.raw_query_string, dict(request.headers), body))
        reply = self.routes.get(request.path)
        if reply is None:
            return web.json_response({"error": {"message": f"fake upstream: no route {request.path}"}}, status=404)
        if callable(reply):
            return await reply(request)
        if reply.hang_before:
            await asyncio.sleep(reply.hang_before)
        resp = web.StreamResponse(status=reply.status, headers={"Content-Type": reply.content_type, **reply.headers})
        try:
            await resp.prepare(request)
            for i, piece in enumerate(splits(reply.body, reply.split)):
                if reply.hang_after is not None and i >= reply.hang_after:
                    await asyncio.sleep(3600)
                if reply.reset_after is not None and i >= reply.reset_after:
                    request.transport.abort()
                    raise ConnectionResetError("fake upstream: reset")
                await resp.write(piece)
                if reply.gap:
                    await asyncio.sleep(reply.gap)
            await resp.write_eof()
        except (asyncio.CancelledError, ConnectionError):
            self.cancelled += 1
            self.done.set()
            raise
        self.done.set()
        return resp


def chunked(body: bytes, size: int = 37) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size))
    return out + b"0\r\n\r\n"


def reply(body: bytes, *, status: str = "200 OK", framing: str = "length", extra: bytes = b"",
          content_type: str = "application/json") -> bytes:
    """The bytes of one whole HTTP/1.1 response (for ``Raw``): body framed by ``length``, ``chunked`` or ``close``."""
    head = b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: " + content_type.encode() + b"\r\n" + extra
    if framing == "length":
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    if framing == "chunked":
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body)
    return head + b"Connection: close\r\n\r\n" + body  # delimited by the connection's end


class Raw:
    """A scripted HTTP server on a raw socket: each request, on whatever connection, gets the next
    reply (bytes sent as they are, in pieces); ``None`` reads the request and closes unanswered;
    ``close_after`` closes the connection after each reply.  ``per_connection`` counts the requests
    each connection carried, in the order the connections came."""

    def __init__(self, replies: list[bytes | None], split=None, close_after: bool = False, gap: float = 0.0) -> None:
        self.replies, self.split, self.close_after, self.gap = list(replies), split, close_after, gap
        self.per_connection: list[int] = []
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.url = ""  # set by start()

    @property
    def connections(self) -> int:
        return len(self.per_connection)

    async def start(self, ssl_ctx: ssl.SSLContext | None = None) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl_ctx)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"{'https' if ssl_ctx else 'http'}://127.0.0.1:{port}"
        return self.url

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = len(self.per_connection)
        self.per_connection.append(0)
        try:
            while self.replies:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                self.per_connection[n] += 1
                data = self.replies.pop(0)
                if data is None:  # read the request, answer nothing, close: a keep-alive that ran out as it was used
                    break
                for piece in splits(data, self.split):
                    writer.write(piece)
                    await writer.drain()
                    if self.gap:
                        await asyncio.sleep(self.gap)
                if self.close_after or b"Connection: close" in data:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


@pytest.fixture
async def upstream(aiohttp_server):
    """``fake = await upstream({"/v1/chat/completions": Reply(...)})`` → a running FakeUpstream."""

    async def start(routes: dict | None = None) -> FakeUpstream:
        fake = FakeUpstream()
        fake.routes.update(routes or {})
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", fake.handle)
        server = await aiohttp_server(app)
        fake.url = str(server.make_url("")).rstrip("/")
        return fake

    return start


class Proxy:
    """A running llmproxy (in this process, on a real socket) with its config file and log."""

    def __init__(self, app: web.Application, url: str, path: Path) -> None:
        self.app, self.url, self.path = app, url, path
        self.clients: list[Any] = []  # SDK clients to close at teardown

    @property
    def state(self):  # noqa: ANN201
        return self.app[STATE]

    async def rows(self) -> list[dict]:
        await self.state.log.flush()
        con = sqlite3.connect(self.state.snap.config.log_path)
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute("SELECT * FROM requests ORDER BY ts")]
        finally:
            con.close()

    def openai(self, **kw: Any):  # noqa: ANN201
        import openai

        c = openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=kw.pop("api_key", "sk-test"), max_retries=0, **kw)
        self.clients.append(c)
        return c


def openai_config(url: str, **extra: Any) -> dict:
    """A minimal router.yaml dict: backend 'up' (api: openai) at ``url`` and model 'gpt' on it."""
    cfg = {
        "backends": {"up": {"api": "openai", "url": url + "/v1", "headers": {"Authorization": "Bearer sk-upstream-secret-0123456789"}}},
        "models": {"gpt": {"backend": "up", "model": "gpt-4o-mini"}},
    }
    cfg.update(extra)
    return cfg


@pytest.fixture
async def proxy(aiohttp_server, tmp_path):
    """``p = await proxy(config_dict)`` → a running Proxy on that config."""

    started: list[Proxy] = []

    async def start(config: dict) -> Proxy:
        path = tmp_path / "router.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        app = make_app(path, signals=False)
        server = await aiohttp_server(app)
        p = Proxy(app, str(server.make_url("")).rstrip("/"), path)
        started.append(p)
        return p

    yield start
    for p in started:
        for c in p.clients:
            await c.close()


@pytest.fixture(autouse=True)
def _no_proxy_from_the_environment(monkeypatch):
    """The fake upstreams are on 127.0.0.1: a developer's HTTP(S)_PROXY must not send llmproxy's calls elsewhere
    (tests that want a proxy set the variables themselves)."""
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)

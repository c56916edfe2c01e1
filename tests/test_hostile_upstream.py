"""A hostile or broken upstream, end to end: client → llmproxy → a raw socket sending scripted bytes.

Whatever an upstream sends that is not a well-formed HTTP/1.1 response (RFC 9112), the client gets
a prompt 502 that says what was wrong, the request log gets one row saying the same, and the
connection that carried it is never used again: the next request, answered properly this time,
arrives on a new connection and gets its own answer.  Bytes past a complete answer (a second
response smuggled after it, or junk) let that answer through but close its connection too.  Two
size caps keep a decoded body (``limits.max_response_mb``) and one stream event
(``limits.max_event_mb``) from taking the process's memory.

Each malformed answer is tried twice: for a plain request and for a ``stream: true`` one (the same
bytes labelled ``text/event-stream``); nothing reached the client yet, so both are a 502.  The
messages are checked loosely (a word of llhttp's wording or the proxy's own), but always for the
backend's name.  The model gets one attempt, so a retry cannot hide what the first one did.
"""
from __future__ import annotations

import re
import time
import zlib

import aiohttp
import orjson
import pytest

from conftest import Raw, fixture_bytes, openai_config, reply

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
CHUNKED = OK + b"Transfer-Encoding: chunked\r\n\r\n"
X26 = b"x" * 0x1A  # what a lax parser would read as the chunk for "0x1a" or "+1a"

# name: (what the upstream answers, a pattern the 502's message must match, case-insensitively)
BROKEN = {
    "two-content-lengths": (OK + b"Content-Length: 5\r\nContent-Length: 24\r\n\r\nhello", r"content-length"),
    "content-length-minus-1": (OK + b"Content-Length: -1\r\n\r\nhello", r"content-length"),
    "content-length-plus-underscore": (OK + b"Content-Length: +24_0\r\n\r\nhello", r"content-length"),
    "chunk-size-minus-5": (CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n", r"chunk"),
    "chunk-size-0x1a": (CHUNKED + b"0x1a\r\n" + X26 + b"\r\n0\r\n\r\n", r"chunk"),
    "chunk-size-plus-1a": (CHUNKED + b"+1a\r\n" + X26 + b"\r\n0\r\n\r\n", r"chunk"),
    # RFC 9112 §6.3: a response with both may be an attempt at smuggling; neither length can be trusted
    "chunked-and-content-length": (OK + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                                   r"content-length|transfer-encoding"),
    "bare-cr-in-header": (OK + b"X-A: a\rb\r\nContent-Length: 5\r\n\r\nhello", r"header|\bCR\b"),
    "lf-only-lines": (b"HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: 5\n\nhello", r"\bCR\b|\bLF\b|line|header"),
    "status-2000": (b"HTTP/1.1 2000 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello", r"status"),
}

# name: what follows a complete, correct answer in the same write
TRAILING = {
    "response-splitting": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    "bytes-after-the-body": b"0123456789",
}

ANSWER = fixture_bytes("openai/nonstream-text.json")
STREAM = fixture_bytes("openai/stream-text-usage.sse")
SECOND = orjson.dumps({**orjson.loads(ANSWER), "id": "chatcmpl-the-second-answer"})  # the next request's own answer
CHAT = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
PROMPT = 1.0  # seconds: a rejected answer is a 502 at once, not after timeout.first_byte (2 s here)


def as_stream(answer: bytes) -> bytes:
    """The same answer, labelled as the event stream a ``stream: true`` request expects."""
    return answer.replace(b"application/json", b"text/event-stream")


def config(url: str, **limits: float) -> dict:
    """Backend 'up' at ``url``, one attempt per request (a retry would take the next scripted answer);
    short timeouts, so an answer the proxy waits on instead of rejecting fails fast."""
    cfg = openai_config(url, limits=limits) if limits else openai_config(url)
    cfg["backends"]["up"]["timeout"] = {"first_byte": 2, "idle": 2}
    cfg["models"]["gpt"]["max_attempts"] = 1
    return cfg


@pytest.fixture
async def scripted():
    """``raw = await scripted(first, split=...)``: a Raw server answering ``first``, then SECOND (correctly framed)."""
    servers: list[Raw] = []

    async def start(first: bytes, split: int | None = None) -> Raw:
        raw = Raw([first, reply(SECOND)], split=split)
        await raw.start()
        servers.append(raw)
        return raw

    yield start
    for raw in servers:
        await raw.stop()


async def ask(p, stream: bool) -> tuple[int, bytes, float]:  # noqa: ANN001
    """One chat request through the proxy: its status, its whole body and the seconds it took."""
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}} if stream else CHAT
    t0 = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:
        async with s.post(p.url + "/v1/chat/completions", json=body) as r:
            return r.status, await r.read(), time.monotonic() - t0


async def failed(p, status: int, body: bytes, says: str, *, in_band: bool = False) -> None:  # noqa: ANN001
    """The client got a 502 in OpenAI's shape (or, with ``in_band``, a stream ending in an error event)
    naming the backend and matching ``says``; the log has one row, 502, with the same message."""
    if in_band and status == 200:
        last = body.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
        assert last.startswith(b"data: {"), f"the stream did not end with an error event: ...{body[-200:]!r}"
        error = orjson.loads(last[len(b"data: "):])["error"]
    else:
        assert status == 502, f"expected a 502, got {status}: {body[:300]!r}"
        error = orjson.loads(body)["error"]
    message = error["message"]
    assert isinstance(message, str) and isinstance(error["type"], str)
    assert "backend 'up'" in message and re.search(says, message, re.I), message
    [row] = await p.rows()
    assert row["status"] == 502 and row["error"] == message


async def the_next_request_gets_a_new_connection(p, raw: Raw) -> None:  # noqa: ANN001
    """The upstream now answers properly: the request goes on a new connection and gets its own answer."""
    status, body, _ = await ask(p, stream=False)
    assert (status, body) == (200, SECOND), f"{status}: {body[:300]!r}"
    assert raw.per_connection == [1, 1], f"requests per connection {raw.per_connection}: the poisoned one was used again"
    assert (await p.rows())[-1]["status"] == 200


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("answer, says", BROKEN.values(), ids=BROKEN.keys())
async def test_a_malformed_answer_is_a_prompt_502_and_its_connection_is_dropped(proxy, scripted, answer, says, stream):
    raw = await scripted(as_stream(answer) if stream else answer)
    p = await proxy(config(raw.url))
    status, body, took = await ask(p, stream)
    await failed(p, status, body, says)
    assert took < PROMPT, f"the 502 took {took:.2f} s: the proxy waited for a timeout instead of rejecting the bytes"
    await the_next_request_gets_a_new_connection(p, raw)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("extra", TRAILING.values(), ids=TRAILING.keys())
async def test_bytes_past_a_complete_answer_close_its_connection(proxy, scripted, extra, stream):
    good = reply(STREAM, content_type="text/event-stream") if stream else reply(ANSWER)
    raw = await scripted(good + extra)
    p = await proxy(config(raw.url))
    status, body, _ = await ask(p, stream)
    assert (status, body) == (200, STREAM if stream else ANSWER), f"{status}: {body[:300]!r}"
    [row] = await p.rows()
    assert row["status"] == 200
    await the_next_request_gets_a_new_connection(p, raw)


def gzip_bomb(mib: int) -> bytes:
    """About 1 KiB of gzip per MiB of zeros it inflates to (compressed a MiB at a time: the zeros are never all in memory)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join([z.compress(zeros) for _ in range(mib)]) + z.flush()


def peak_rss_mib(reset: bool = False) -> float:
    """The process's peak resident memory (VmHWM, the high-water mark of VmRSS); ``reset`` starts it again from now."""
    if reset:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: resets VmHWM to the current VmRSS
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


async def test_a_gzip_bomb_stops_at_max_response_mb(proxy, scripted):
    bomb = gzip_bomb(200)
    assert len(bomb) < 256 * 1024
    raw = await scripted(reply(bomb, extra=b"Content-Encoding: gzip\r\n"))
    p = await proxy(config(raw.url, max_response_mb=1))
    before = peak_rss_mib(reset=True)
    status, body, _ = await ask(p, stream=False)
    grew = peak_rss_mib() - before
    await failed(p, status, body, r"max_response_mb")
    assert grew < 100, f"memory peaked {grew:.0f} MiB above where it was: the body was inflated past the cap"
    await the_next_request_gets_a_new_connection(p, raw)


async def test_an_endless_event_stops_at_max_event_mb(proxy, scripted):
    event = b"data: " + b"x" * (8 << 20)  # one event of 8 MiB, never terminated by a blank line
    raw = await scripted(reply(event, content_type="text/event-stream"), split=64 * 1024)
    p = await proxy(config(raw.url, max_event_mb=1))
    status, body, took = await ask(p, stream=True)
    await failed(p, status, body, r"max_event_mb", in_band=True)
    assert took < 5, f"the stream took {took:.1f} s to fail"
    await the_next_request_gets_a_new_connection(p, raw)

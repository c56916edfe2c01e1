"""A fast fake upstream for the benchmark: OpenAI and Anthropic, plain and streamed, on raw asyncio.

``llmproxy.mock`` builds every answer through llmproxy's translators (parse → hub → encode), which
costs more per request than the reference floor proxy itself, so it would cap the floor and hide the
difference being measured.  This one answers from pre-encoded bytes on a bare ``asyncio.Protocol``.

The upstream model name says what to send: ``c<N>g<ms>`` streams N content chunks ``ms`` apart
(first chunk at once); anything else streams 8 chunks with no gap.  Non-stream answers are one
fixed JSON body with usage.  Only ``Content-Length`` request bodies (what aiohttp and wrk send).

    python bench/upstream.py PORT
"""
from __future__ import annotations

import asyncio
import functools
import re
import signal
import sys

import orjson

_CL = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)
_SPEC = re.compile(r"c(\d+)g(\d+(?:\.\d+)?)$")

OPENAI_PLAIN = orjson.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the bench upstream, a short answer."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
})
ANTHROPIC_PLAIN = orjson.dumps({
    "id": "msg_bench", "type": "message", "role": "assistant", "model": "bench",
    "content": [{"type": "text", "text": "Hello from the bench upstream, a short answer."}],
    "stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 9},
})


def _oa(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> bytes:
    c: dict = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "bench"}
    c["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    if usage is not None:
        c["usage"] = usage
    return b"data: " + orjson.dumps(c) + b"\n\n"


def _an(name: str, data: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


OA_FIRST = _oa({"role": "assistant", "content": "tok "})
OA_PIECE = _oa({"content": "tok "})
OA_END = _oa({}, "stop")
OA_USAGE = _oa(None, usage={"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32})
OA_DONE = b"data: [DONE]\n\n"
AN_FIRST = (
    _an("message_start", {"message": {"id": "msg_bench", "type": "message", "role": "assistant", "model": "bench", "content": [],
                                      "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 1}}})
    + _an("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    + _an("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "tok "}})
)
AN_PIECE = _an("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "tok "}})
AN_END = (
    _an("content_block_stop", {"index": 0})
    + _an("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 20}})
    + _an("message_stop", {})
)


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _plain(status: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)


STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
NOT_FOUND = _plain(b"404 Not Found", b'{"error":{"message":"bench upstream: no such path"}}')


class Server(asyncio.Protocol):
    """HTTP/1.1 keep-alive, one request at a time per connection."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport  # type: ignore[assignment]
        self.buf = b""
        self.busy = False

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        while True:
            buf = self.buf
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                return
            m = _CL.search(buf, 0, i + 2)
            n = int(m.group(1)) if m else 0
            end = i + 4 + n
            if len(buf) < end:
                return
            head, body, self.buf = buf[:i], buf[i + 4 : end], buf[end:]
            path = head.split(b" ", 2)[1]
            if not self._answer(path, body):
                return

    def _answer(self, path: bytes, body: bytes) -> bool:
        """Write or start the answer; False while a stream is being written."""
        anthropic = path.endswith(b"/messages")
        if not anthropic and not path.endswith(b"/chat/completions"):
            self.t.write(NOT_FOUND)
            return True
        req = orjson.loads(body) if body else {}
        if not req.get("stream"):
            self.t.write(_plain(b"200 OK", ANTHROPIC_PLAIN if anthropic else OPENAI_PLAIN))
            return True
        m = _SPEC.match(str(req.get("model", "")))
        chunks, gap = (int(m.group(1)), float(m.group(2)) / 1000) if m else (8, 0.0)
        usage = not anthropic and bool((req.get("stream_options") or {}).get("include_usage"))
        if gap <= 0:
            self.t.write(STREAM_HEAD + b"".join(_frame(p) for p in self._pieces(anthropic, chunks, usage)) + b"0\r\n\r\n")
            return True
        self.busy = True
        self.frames, self.sent, self.gap = _frames(anthropic, chunks, usage), 1, gap
        self.t.write(STREAM_HEAD + self.frames[0])
        self.loop = asyncio.get_running_loop()
        self.loop.call_later(gap, self._tick)
        return False

    @staticmethod
    def _pieces(anthropic: bool, chunks: int, usage: bool) -> list[bytes]:
        if anthropic:
            return [AN_FIRST] + [AN_PIECE] * (chunks - 2) + [AN_PIECE + AN_END]
        return [OA_FIRST] + [OA_PIECE] * (chunks - 2) + [OA_PIECE + OA_END + (OA_USAGE if usage else b"") + OA_DONE]

    def _tick(self) -> None:
        """The next chunk of a paced stream, ``gap`` after the last one was written (a timer, not a task: thousands run at once)."""
        if self.t.is_closing():
            return
        self.t.write(self.frames[self.sent])
        self.sent += 1
        if self.sent < len(self.frames):
            self.loop.call_later(self.gap, self._tick)
            return
        self.t.write(b"0\r\n\r\n")
        self.busy = False
        self._next()


@functools.lru_cache(maxsize=64)
def _frames(anthropic: bool, chunks: int, usage: bool) -> tuple[bytes, ...]:
    """A paced stream's chunks, each framed for chunked transfer encoding."""
    return tuple(_frame(p) for p in Server._pieces(anthropic, chunks, usage))


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(Server, "127.0.0.1", port, backlog=4096)
    print(f"bench upstream on 127.0.0.1:{port}", flush=True)
    await stop.wait()
    server.close()  # not wait_closed(): it would wait for the proxies' keep-alive connections


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

"""An asyncio load generator on raw keep-alive HTTP/1.1 connections (run in its own process).

    python bench/loadgen.py '{"url": ..., "path": ..., "body": ..., "conns": 64, "seconds": 5, "stream": true, "end": "[DONE]"}'

Each connection sends the request again as soon as the last answer ended; prints one JSON line:
requests, errors, req/s, latency percentiles (ms) and, for streams, first byte and the span from
the first to the last body byte.  With ``"count"`` each connection sends exactly that many.

How the connections' requests line up in time (they start at once unless told otherwise):
``"stagger_ms"``: connection i starts i/conns of this later (spread over one answer's length);
``"think_ms"``: each request waits a random 0…think_ms first, so connections do not fall back into step;
``"together"``: every connection sends its n-th request at the same moment (a barrier), n = 1…count.
"""
from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from urllib.parse import urlsplit

_now = time.perf_counter


class Conn(asyncio.Protocol):
    """One keep-alive connection; ``ask()`` sends a request and waits for the whole answer."""

    def __init__(self) -> None:
        self.fut: asyncio.Future | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(ConnectionError(f"connection lost: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def ask(self, request: bytes) -> asyncio.Future:
        self.buf = b""
        self.head = True
        self.status = 0
        self.length = -1  # -1 chunked
        self.need = 0  # bytes left in the current chunk (chunked) or body (content-length)
        self.tail = b""
        self.t_first = self.t_last = 0.0
        self.fut = asyncio.get_running_loop().create_future()
        self.t0 = _now()
        self.t.write(request)
        return self.fut

    def data_received(self, data: bytes) -> None:
        now = _now()
        buf = self.buf + data
        if self.head:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                self.buf = buf
                return
            head = buf[:i].decode("latin-1").lower()
            self.status = int(head[9:12])
            self.head = False
            if "transfer-encoding: chunked" not in head:
                cl = head.find("content-length:")
                self.length = int(head[cl + 15 :].split("\r\n", 1)[0]) if cl >= 0 else 0
                self.need = self.length
            buf = buf[i + 4 :]
            if not buf and self.length != 0:
                self.buf = b""
                return
        if buf and not self.t_first:
            self.t_first = now
        self.t_last = now
        if self.length >= 0:  # content-length body
            self.need -= len(buf)
            self.tail = (self.tail + buf)[-256:]
            self.buf = b""
            if self.need <= 0:
                self._done()
            return
        while True:  # chunked: frames of "<hex>\r\n<data>\r\n", ended by "0\r\n\r\n"
            if self.need:
                take = buf[: self.need]
                self.tail = (self.tail + take)[-256:]
                self.need -= len(take)
                buf = buf[len(take) :]
                if self.need:
                    self.buf = b""
                    return
            j = buf.find(b"\r\n")
            if j < 0:
                self.buf = buf
                return
            line = buf[:j].strip()
            size = int(line.split(b";")[0], 16)
            if size == 0:
                if len(buf) < j + 4:
                    self.buf = buf
                    return
                self.buf = b""
                self._done()
                return
            buf = buf[j + 2 :]
            self.need = size + 2  # data and its CRLF

    def _done(self) -> None:
        if self.fut is not None and not self.fut.done():
            self.fut.set_result((self.status, self.t0, self.t_first or _now(), self.t_last or _now(), self.tail))


def pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


async def run(o: dict) -> dict:
    u = urlsplit(o["url"])
    body = json.dumps(o["body"]).encode()
    headers = "".join(f"{k}: {v}\r\n" for k, v in (o.get("headers") or {}).items())
    request = (f"POST {u.path.rstrip('/')}{o['path']} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
               f"{headers}Content-Length: {len(body)}\r\n\r\n").encode() + body
    end = o.get("end", "").encode()
    loop = asyncio.get_running_loop()
    lat: list[float] = []
    first: list[float] = []
    span: list[float] = []
    errors: list[str] = []
    deadline = _now() + o.get("seconds", 5)
    count = o.get("count")
    stagger, think = o.get("stagger_ms", 0) / 1000, o.get("think_ms", 0) / 1000
    rnd = random.Random(1)  # the same pauses on every run
    together = asyncio.Barrier(o["conns"]) if o.get("together") else None

    async def worker(i: int) -> None:
        try:
            _, c = await loop.create_connection(Conn, u.hostname, u.port)
        except OSError as e:
            errors.append(f"connect: {e}")
            if together is not None:
                await together.abort()
            return
        n = 0
        try:
            if stagger:
                await asyncio.sleep(stagger * i / o["conns"])
            while (count is None and _now() < deadline) or (count is not None and n < count):
                n += 1
                if think:
                    await asyncio.sleep(rnd.uniform(0, think))
                if together is not None:
                    try:
                        await together.wait()
                    except asyncio.BrokenBarrierError:  # another connection failed: so do the ones left
                        return
                try:
                    status, t0, tf, tl, tail = await asyncio.wait_for(c.ask(request), o.get("timeout", 60))
                except (ConnectionError, asyncio.TimeoutError) as e:
                    errors.append(f"{type(e).__name__}: {e}")
                    if together is not None:
                        await together.abort()
                    return
                if status != 200 or (end and end not in tail):
                    errors.append(f"status {status}: …{tail[-120:].decode(errors='replace')}")
                    continue
                lat.append((tl - t0) * 1000)
                first.append((tf - t0) * 1000)
                span.append((tl - tf) * 1000)
        finally:
            c.t.close()

    t0 = _now()
    await asyncio.gather(*(worker(i) for i in range(o["conns"])))
    took = _now() - t0
    out = {"requests": len(lat), "errors": len(errors), "error_sample": errors[:3], "seconds": round(took, 3), "rps": round(len(lat) / took, 1)}
    for name, xs in (("lat", lat), ("first", first), ("span", span)):
        out[name] = {"p50": pct(xs, 50), "p99": pct(xs, 99), "mean": sum(xs) / len(xs) if xs else None}
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))

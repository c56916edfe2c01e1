"""An asyncio load generator on raw keep-alive HTTP/1.1 connections (run in its own process).

    python bench/loadgen.py '{"url": ..., "path": ..., "body": ..., "conns": 64, "seconds": 5, "stream": true, "end": "[DONE]"}'

Each connection sends the request again as soon as the last answer ended; prints one JSON line:
requests, errors, req/s, latency percentiles (ms) and, for streams, first byte and the span from
the first to the last body byte.  With ``"count"`` each connection sends exactly that many.

How the connections' requests line up in time (they start at once unless told otherwise):
``"stagger_ms"``: connection i starts i/conns of this later (spread over one answer's length);
``"think_ms"``: each request waits a random 0…think_ms first, so connections do not fall back into step;
``"together"``: every connection sends its n-th request at the same moment (a barrier), n = 1…count.

Connections are all opened before the first request, ``"connect_batch"`` (default 50) at a time
with a short pause between, so a proxy's listen backlog (aiohttp's default is 128) does not
overflow when thousands open at once; a connect refused or reset is retried a few times
(``connect_retries``), and the kernel's listen-queue overflows during the connect phase are counted
(``listen_overflows``; machine-wide, so another program's count too; each one a SYN resent later).

For streams, ``"gap_ms"`` records the time between consecutive body reads that carry event bytes,
less ``gap_ms`` (``gap_added`` in ms), and ``"mark"`` counts that string in the event bytes
(``marks``, e.g. ``"content"`` = content chunks; ``marks_per_s`` over ``window_s``, the first request
sent to the last byte received).  With ``gap_ms``, how busy each CPU was from the end of the connect
phase to the last answer (``cpu_busy_pct``) is reported too.  With ``"watch_pid"``, that process's
CPU seconds (utime + stime) over the same span, the load itself: ``watched_cpu_s``, ``watched_busy_pct``.

``"uvloop": true`` runs the generator on uvloop (for the thousands of slow streams, where the
asyncio loop's cost per read would make the generator, not the proxy, the limit).
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import re
import resource
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

_now = time.perf_counter
CONNECT_RETRIES = 5
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds (from /proc/<pid>/stat; fields after the ``(comm)``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def busy_cpus() -> list[tuple[int, int]]:
    """(busy, total) clock ticks of each CPU since boot, from /proc/stat."""
    out = []
    for line in Path("/proc/stat").read_text().splitlines()[1:]:
        if not re.match(r"cpu\d", line):
            break
        t = [int(x) for x in line.split()[1:9]]  # user nice system idle iowait irq softirq steal (guest is inside user)
        out.append((sum(t) - t[3] - t[4], sum(t)))  # idle and iowait are not busy
    return out


def busy_pct(before: list[tuple[int, int]], after: list[tuple[int, int]]) -> list[float]:
    return [round(100 * (a[0] - b[0]) / max(1, a[1] - b[1]), 1) for b, a in zip(before, after)]


def listen_overflows() -> int | None:
    """The kernel's TcpExt ListenOverflows (connections a full listen queue turned away), machine-wide."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return dict(zip(names.split()[1:], map(int, values.split()[1:]))).get("ListenOverflows")
    return None


def raise_nofile(need: int) -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; warns (stderr) when that is below ``need``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit != resource.RLIM_INFINITY and limit < need:
        print(f"loadgen: the open-file limit is {limit}, below the {need} this run needs: expect connect errors", file=sys.stderr)
    return limit


class Conn(asyncio.Protocol):
    """One keep-alive connection; ``ask()`` sends a request and waits for the whole answer."""

    def __init__(self, mark: bytes = b"", track: bool = False) -> None:
        self.fut: asyncio.Future | None = None
        self.mark, self.track = mark, track or bool(mark)
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
        self.t_event = 0.0  # the last read that carried event bytes
        self.gaps: list[float] = []
        self.marks = 0
        self.carry = b""  # the last len(mark) - 1 event bytes, for a mark split between reads
        self.fut = asyncio.get_running_loop().create_future()
        self.t0 = _now()
        self.t.write(request)
        return self.fut

    def data_received(self, data: bytes) -> None:
        now = _now()
        if not self.track:
            self._read(data, now)
            return
        self.carried = False
        self._read(data, now)
        if self.carried:
            if self.t_event:
                self.gaps.append(now - self.t_event)
            self.t_event = now

    def _read(self, data: bytes, now: float) -> None:
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
                if self.track and self.need > 2:  # event bytes, not only the frame's closing CRLF
                    self.carried = True
                    if self.mark:
                        seen = self.carry + take[: self.need - 2]
                        self.marks += seen.count(self.mark)
                        self.carry = seen[1 - len(self.mark) :] if len(self.mark) > 1 else b""
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
    count = o.get("count")
    stagger, think = o.get("stagger_ms", 0) / 1000, o.get("think_ms", 0) / 1000
    rnd = random.Random(1)  # the same pauses on every run
    together = asyncio.Barrier(o["conns"]) if o.get("together") else None
    mark, gap_ms = o.get("mark", "").encode(), o.get("gap_ms")
    added: list[float] = []  # per-chunk gap less gap_ms, ms
    marks, sent, ended = 0, float("inf"), 0.0
    retries = 0

    async def connect() -> Conn:
        nonlocal retries
        attempt = 0
        while True:
            try:
                return (await loop.create_connection(lambda: Conn(mark, gap_ms is not None), u.hostname, u.port))[1]
            except (ConnectionRefusedError, ConnectionResetError):
                if attempt == CONNECT_RETRIES:
                    raise
                attempt += 1
                retries += 1
                await asyncio.sleep(0.05 * attempt)

    t_connect, overflows = _now(), listen_overflows()
    opened: list[Conn | BaseException] = []
    batch = o.get("connect_batch", 50)
    for k in range(0, o["conns"], batch):  # a batch at a time, a pause between for the server to accept them
        opened += await asyncio.gather(*(connect() for _ in range(min(batch, o["conns"] - k))), return_exceptions=True)
        if k + batch < o["conns"]:
            await asyncio.sleep(0.01)
    connect_s = _now() - t_connect
    overflows = None if overflows is None else listen_overflows() - overflows  # type: ignore[operator]
    watch = o.get("watch_pid")
    cpus, watched = busy_cpus() if gap_ms is not None else None, cpu_s(watch) if watch else None
    deadline = _now() + o.get("seconds", 5)

    async def worker(i: int) -> None:
        nonlocal marks, sent, ended
        c = opened[i]
        if isinstance(c, BaseException):
            errors.append(f"connect: {c}")
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
                if gap_ms is not None:
                    added.extend(g * 1000 - gap_ms for g in c.gaps)
                    marks += c.marks
                    sent, ended = min(sent, t0), max(ended, tl)
        finally:
            c.t.close()

    t0 = _now()
    await asyncio.gather(*(worker(i) for i in range(o["conns"])))
    took = _now() - t0
    out = {"requests": len(lat), "errors": len(errors), "error_sample": errors[:3], "seconds": round(took, 3), "rps": round(len(lat) / took, 1),
           "connect_s": round(connect_s, 3), "connect_retries": retries, "listen_overflows": overflows}
    if cpus is not None:
        out["cpu_busy_pct"] = busy_pct(cpus, busy_cpus())
    if watched is not None:
        used = cpu_s(watch) - watched
        out.update(watched_cpu_s=round(used, 2), watched_busy_pct=round(100 * used / took, 1))
    for name, xs in (("lat", lat), ("first", first), ("span", span)):
        out[name] = {"p50": pct(xs, 50), "p99": pct(xs, 99), "mean": sum(xs) / len(xs) if xs else None}
    if gap_ms is not None:
        window = ended - sent if lat else 0.0
        out["gap_added"] = {"p50": pct(added, 50), "p99": pct(added, 99), "max": max(added, default=None), "gaps": len(added)}
        out.update(marks=marks, window_s=round(window, 3), marks_per_s=round(marks / window, 1) if window > 0 else None)
    return out


if __name__ == "__main__":
    opts = json.loads(sys.argv[1])
    raise_nofile(opts["conns"] + 100)
    if opts.get("uvloop"):
        import uvloop

        print(json.dumps(uvloop.run(run(opts))))
    else:
        print(json.dumps(asyncio.run(run(opts))))

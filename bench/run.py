"""``make bench``: llmproxy against a bare aiohttp pass-through (the floor) and a direct call.

Starts the fast fake upstream (bench/upstream.py), the floor (bench/floor.py) and llmproxy as
subprocesses; the proxy under test is pinned to CPU 0 with taskset, the upstream and the load
generator to CPU 1 (when taskset exists and there are two CPUs).  Plain requests are driven by
``wrk`` when it is installed, else by bench/loadgen.py; streams always by bench/loadgen.py.
llmproxy runs as it would be deployed: ``access.clients`` set (every request carries the bench
client's key) and the request log on.

Per path (OpenAI relay, Anthropic relay, translated): requests/s and latency at 1 and 64
connections, stream first byte and inter-chunk delay on paced streams, streams/s at 64 and the
proxy's CPU per stream there (utime + stime from /proc, before and after the load); the ratios the
targets check are taken again in alternating rounds, the floor and llmproxy taking turns (``paired``).  Then 2,000
slow streams at 20 events/s each, all open together (direct, floor and llmproxy: events/s
delivered, added inter-chunk delay, RSS, errors), the log writer, an RSS soak and start-up time.  The soft
open-file limit is raised to the hard one (a warning when that is too low for the slow streams).
Prints one table and writes bench-results/<time>-<commit>.json so two runs can be compared.

    python bench/run.py [--seconds 5] [--soak 100000] [--slow 2000] [--loop asyncio|uvloop] [--no-wrk]
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from loadgen import TICK, busy_cpus, busy_pct, cpu_s  # bench/ is this script's folder, first on sys.path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
# The llmproxy measured is this tree's, not whatever the venv has installed (an editable install of another checkout)
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
GAP_CHUNKS, GAP_MS = 20, 10  # the paced stream: 20 chunks 10 ms apart
LIMIT_ROUNDS, LIMIT_SECONDS = 15, 3  # rounds of the limits-on / limits-off comparison, and seconds per test
PAIRED_ROUNDS = 5  # rounds of the floor-vs-llmproxy ratios the targets read (LIMIT_SECONDS per test)
PACED_RUNS = 3  # rounds of the paced-stream tests; each side's median run (by first byte p50) is reported
WAVES = 10  # the paced streams sent together: 64 at the same moment, this many times a run
SLOW_CHUNKS, SLOW_MS = 60, 50  # the slow streams: 20 events/s each for 3 s, all open together
CLIENT_KEY = "sk-bench-client-0123456789abcdef"  # llmproxy runs with access.clients set: every request carries it
ADMIN_KEY = "bench-admin-key-0123456789"  # /health's details (the soak reads the log writer's counts there)
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}  # sent to the floor and the direct call too (they ignore it): the same bytes everywhere
PROMPT = [{"role": "user", "content": "Say hello to the benchmark, please."}]

PINNED = bool(shutil.which("taskset")) and (os.cpu_count() or 1) >= 2


def pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if PINNED else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(slow: int) -> dict:
    """Soft RLIMIT_NOFILE to the hard limit (the subprocesses inherit it); warns when the slow test may not fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = 2 * slow + 500  # the proxy holds a client and an upstream socket per slow stream, plus its own files
    if slow and hard != resource.RLIM_INFINITY and hard < need:
        print(f"WARNING: the hard open-file limit is {hard}, below the ~{need:,} that {slow:,} slow streams need "
              f"(a client and an upstream socket each, plus margin): expect errors there; raise it (ulimit -Hn) or pass --slow {max(0, (hard - 500) // 2)}",
              file=sys.stderr, flush=True)
    return {"soft_was": soft, "hard": hard}


def machine_busy(seconds: float = 1.0) -> list[float]:
    """How busy each CPU is before the bench starts (another program's load skews every figure)."""
    before = busy_cpus()
    time.sleep(seconds)
    return busy_pct(before, busy_cpus())


def mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Proc:
    """A server subprocess, its log in the work folder."""

    def __init__(self, name: str, cmd: list[str], port: int, work: Path, cpu: int | None) -> None:
        self.name, self.port = name, port
        self.log = work / f"{name}.log"
        self.t0 = time.perf_counter()
        self.p = subprocess.Popen((pin(cpu) if cpu is not None else []) + cmd, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, cwd=work)
        LIVE.append(self)

    def wait_port(self, timeout: float = 15) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.p.poll() is not None:
                raise SystemExit(f"{self.name} exited:\n{self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.01)
        raise SystemExit(f"{self.name} did not listen on {self.port}")

    def server_pid(self) -> int:
        """``taskset`` execs the command, so the PID Popen knows is the server's own; checked, once it listens."""
        argv0 = Path(f"/proc/{self.p.pid}/cmdline").read_bytes().split(b"\0")[0]
        if argv0.endswith(b"taskset"):
            raise SystemExit(f"{self.name}: pid {self.p.pid} is still taskset, not the server")
        return self.p.pid

    def peak_mib(self) -> float:
        return mib(self.p.pid, "VmHWM")

    def rss_mib(self) -> float:
        return mib(self.p.pid, "VmRSS")

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if self in LIVE:
            LIVE.remove(self)


LIVE: list[Proc] = []  # the servers running now: upstream, floor, llmproxy


def own_cpu_s() -> float:
    """CPU seconds of this bench's processes: run.py, its finished load generators and its running servers."""
    me, done = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + done.ru_utime + done.ru_stime + sum(cpu_s(p.p.pid) for p in LIVE)


def with_others(load: Callable[[], dict]) -> dict:
    """Runs one load and adds ``others_pct``: the CPU the machine spent outside this bench meanwhile, in % of one core.

    The machine may be shared: another program's load takes CPU from the proxy or the load
    generator and skews that test's figures.  Busy time from /proc/stat (all CPUs) less this
    bench's own processes' CPU time (softirq is charged to whichever task it interrupts).
    """
    ours, busy, t0 = own_cpu_s(), sum(b for b, _ in busy_cpus()) / TICK, time.perf_counter()
    r = load()
    others = sum(b for b, _ in busy_cpus()) / TICK - busy - (own_cpu_s() - ours)
    r["others_pct"] = round(100 * max(0.0, others) / (time.perf_counter() - t0), 1)
    return r


def post(port: int, path: str, body: dict) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **AUTH})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


# ------------------------------------------------------------------ load generators


def loadgen(**o: object) -> dict:
    o.setdefault("headers", AUTH)
    cmd = pin(1) + [PY, str(HERE / "loadgen.py"), json.dumps(o)]
    return with_others(lambda: json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout))


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(s: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", s)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def wrk(url: str, path: str, body: dict, conns: int, seconds: float, work: Path) -> dict:
    script = work / "post.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\nwrk.headers["Content-Type"] = "application/json"\n'
                      + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in AUTH.items()))
    cmd = pin(1) + ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script), url + path]
    return with_others(lambda: _wrk_result(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout))


def _wrk_result(out: str) -> dict:
    pcts = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.M))
    done = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return {"requests": int(done.group(1)) if done else 0, "errors": errors, "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "lat": {"p50": _ms(pcts.get("50", "nan")), "p99": _ms(pcts.get("99", "nan"))}, "tool": "wrk"}


def plain(o: argparse.Namespace, url: str, path: str, body: dict, conns: int, work: Path) -> dict:
    if o.wrk:
        return wrk(url, path, body, conns, o.seconds, work)
    return {**loadgen(url=url, path=path, body=body, conns=conns, seconds=o.seconds), "tool": "loadgen"}


# ------------------------------------------------------------------ what is measured


def bodies(fmt: str, model: str, stream: bool = False) -> dict:
    b: dict = {"model": model, "max_tokens": 64, "messages": PROMPT}
    if stream:
        b["stream"] = True
    return b


def suite(o: argparse.Namespace, url: str, path: str, fmt: str, prefix: str, end: str, work: Path, proxy: Proc | None = None) -> dict:
    """Plain at 1 and 64 connections, stream rate at 64 (the paced streams: ``first_byte``).

    For the stream rate, the load generator reads the proxy's CPU time (when there is a proxy) just
    before the load and just after it: ``cpu_ms_per_stream`` is its CPU milliseconds per stream
    completed, ``busy_pct`` that CPU time over the load's wall time (100 = its core never idle).
    """
    r = {"c1": plain(o, url, path, bodies(fmt, prefix + "plain"), 1, work), "c64": plain(o, url, path, bodies(fmt, prefix + "plain"), 64, work)}
    r["rate"] = rate = loadgen(url=url, path=path, body=bodies(fmt, prefix + "fast", True), conns=64, seconds=o.seconds, end=end,
                               watch_pid=proxy.server_pid() if proxy else None)
    if proxy:
        rate["cpu_ms_per_stream"] = rate["watched_cpu_s"] * 1000 / rate["requests"] if rate["requests"] else None
        rate["busy_pct"] = rate["watched_busy_pct"]
    return r


def first_byte(o: argparse.Namespace, sides: list[tuple[dict, str, str, str]], fmt: str, end: str) -> None:
    """64 paced streams, two ways, on each (result, url, path, model prefix) in turn, PACED_RUNS rounds.

    Steady: the connections start spread over one stream's length and pause a random 0…GAP_MS
    before each request, so new requests meet the other streams' chunks at every phase.  (Started
    all at once and sent back to back, the 64 stay bunched for the whole run, and the first byte
    swung ±40% from run to run with how the bunches met.)  Together: all 64 sent at the same moment,
    WAVES times: a whole burst of streams arriving at once.  The sides take turns, round by round,
    so a change in the machine's load lands on all of them; each keeps its median run of each kind.
    """
    got: list[dict[str, list[dict]]] = [{"paced": [], "together": []} for _ in sides]
    for _ in range(PACED_RUNS):
        for (_, url, path, prefix), g in zip(sides, got):
            body = bodies(fmt, f"{prefix}c{GAP_CHUNKS}g{GAP_MS}", True)
            g["paced"].append(loadgen(url=url, path=path, body=body, conns=64, seconds=o.seconds, end=end,
                                      stagger_ms=GAP_CHUNKS * GAP_MS, think_ms=GAP_MS))
            g["together"].append(loadgen(url=url, path=path, body=body, conns=64, count=WAVES, together=True, end=end))
    for (r, *_), g in zip(sides, got):
        r["paced"], r["together"] = _median_run(g["paced"]), _median_run(g["together"])
        paced = r["paced"]
        paced["gap_added_ms"] = paced["span"]["mean"] / (GAP_CHUNKS - 1) - GAP_MS if paced["requests"] else None


def _median_run(runs: list[dict]) -> dict:
    """The run with the median first byte p50; with every run's p50 and the errors of all."""
    runs = sorted(runs, key=lambda x: x["first"]["p50"] if x["requests"] else float("inf"))
    mid = dict(runs[len(runs) // 2])
    mid["first_p50_runs"] = sorted(x["first"]["p50"] for x in runs if x["requests"])
    mid["errors"] = sum(x["errors"] for x in runs)
    mid["others_pct"] = max(x["others_pct"] for x in runs)
    return mid


LIMITS = """      group: family
      rpm: 100000000
      tpm: 10000000000
      budget: {usd: 1000000000, per: day}
"""  # every check on, none ever reached: what the checks cost, not what refusing costs


def llmproxy_config(work: Path, port: int, up: int, limits: bool = False) -> Path:
    """The bench's router.yaml; with ``limits``, the client has rpm, tpm and a daily budget, and its group a monthly one."""
    cfg = work / "router.yaml"
    groups = "  groups: {family: {rpm: 100000000, tpm: 10000000000, budget: {usd: 1000000000, per: month}}}\n" if limits else ""
    cfg.write_text(f"""listen: 127.0.0.1:{port}
log: {{path: {work / 'bench.db'}}}
backends:
  oa: {{api: openai, url: "http://127.0.0.1:{up}/v1", headers: {{Authorization: "Bearer sk-bench-0123456789abcdef"}}}}
  an: {{api: anthropic, url: "http://127.0.0.1:{up}", headers: {{x-api-key: "sk-ant-bench-0123456789abcdef"}}}}
models:
  bench: {{backend: oa, model: plain}}
  oa/fast: {{backend: oa, model: fast, price: {{input: 2.5, output: 10}}}}
  an/fast: {{backend: an, model: fast, price: {{input: 3, output: 15}}}}
access:
  admin_key: {ADMIN_KEY}
{groups}  clients:
    - name: bench
      key_sha256: {hashlib.sha256(CLIENT_KEY.encode()).hexdigest()}
{LIMITS if limits else ""}""")
    return cfg


def start_llmproxy(o: argparse.Namespace, work: Path, up: int, name: str, limits: bool = False) -> tuple[Proc, float]:
    """llmproxy as users run it (log level info, request log on); returns it and seconds to first answer."""
    port = free_port()
    (work / name).mkdir(exist_ok=True)
    cfg = llmproxy_config(work / name, port, up, limits)
    if o.loop == "uvloop":
        cmd = [PY, "-c", "import sys, uvloop; uvloop.install(); from llmproxy.cli import main; sys.exit(main(sys.argv[1:]))", "serve", "-c", str(cfg)]
    else:
        cmd = [PY, "-m", "llmproxy", "serve", "-c", str(cfg)]
    p = Proc(name, cmd, port, work, cpu=0)
    end = time.monotonic() + 15
    while True:
        try:
            status, raw = post(port, "/v1/chat/completions", bodies("openai", "oa/plain"))
            if status == 200:
                break
            raise SystemExit(f"llmproxy answered {status}: {raw[:300]!r}")
        except OSError:
            if p.p.poll() is not None or time.monotonic() > end:
                raise SystemExit(f"llmproxy did not start:\n{p.log.read_text()[-2000:]}") from None
            time.sleep(0.005)
    return p, time.perf_counter() - p.t0


def start_floor(o: argparse.Namespace, work: Path, up: int, name: str) -> Proc:
    port = free_port()
    p = Proc(name, [PY, str(HERE / "floor.py"), str(port), f"http://127.0.0.1:{up}", o.loop], port, work, cpu=0)
    p.wait_port()
    return p


def _median(xs: list) -> float | None:
    return sorted(xs)[len(xs) // 2] if xs and None not in xs else None


def _per(total: float, n: int) -> float | None:
    return total * 1000 / n if n else None


def rounds(o: argparse.Namespace, work: Path, sides: list[tuple[str, Proc, str, bool]], fmt: str, path: str, end: str, n: int) -> dict[str, dict[str, list]]:
    """Sides (key, process, model prefix, plain too) taking turns, ``n`` rounds of ``LIMIT_SECONDS`` per test, the
    order turned round every round (a change in the machine's speed lands on every side of a round): req/s at 64
    connections with the proxy's CPU per plain request (the sides with ``plain``), then streams/s at 64 with its
    CPU per stream.  Each side's figures, one per round."""
    short = argparse.Namespace(**{**vars(o), "seconds": LIMIT_SECONDS})
    got: dict[str, dict[str, list]] = {k: {"rps": [], "plain_cpu": [], "streams": [], "cpu": [], "others": [], "errors": []} for k, *_ in sides}
    for i in range(n):
        order = sides if i % 2 == 0 else sides[::-1]
        for key, p, prefix, with_plain in order:
            if not with_plain:
                continue
            before = cpu_s(p.server_pid())
            c64 = plain(short, f"http://127.0.0.1:{p.port}", path, bodies(fmt, prefix + "plain"), 64, work)
            got[key]["plain_cpu"].append(_per(cpu_s(p.server_pid()) - before, c64["requests"]))
            got[key]["rps"].append(c64["rps"])
            got[key]["others"].append(c64["others_pct"])
            got[key]["errors"].append(c64["errors"])
        for key, p, prefix, _ in order:
            rate = loadgen(url=f"http://127.0.0.1:{p.port}", path=path, body=bodies(fmt, prefix + "fast", True), conns=64,
                           seconds=LIMIT_SECONDS, end=end, watch_pid=p.server_pid())
            got[key]["streams"].append(rate["rps"])
            got[key]["cpu"].append(_per(rate["watched_cpu_s"], rate["requests"]))
            got[key]["others"].append(rate["others_pct"])
            got[key]["errors"].append(rate["errors"])
    return got


def _ratio_runs(g: dict[str, list], base: dict[str, list]) -> dict[str, list[float]]:
    """Each round's ratio of ``g`` to ``base`` (the two ran seconds apart): their median is what a target reads,
    steadier than a ratio of the two sides' medians when the machine's speed drifts between rounds."""
    return {m: [a / b for a, b in zip(g[m], base[m]) if a and b] for m in ("rps", "plain_cpu", "streams", "cpu")}


def limits_cost(o: argparse.Namespace, work: Path, up: int) -> dict:
    """The OpenAI relay with and without rpm, tpm and budgets (client and group), in alternating rounds.

    Two llmproxy processes, the same but for the limits, take turns (``rounds``): ``LIMIT_ROUNDS`` rounds.
    Each side keeps its median, and each round's ratio is kept.
    """
    procs = {"without": start_llmproxy(o, work, up, "llmproxy-nolimits")[0], "with": start_llmproxy(o, work, up, "llmproxy-limits", limits=True)[0]}
    try:
        got = rounds(o, work, [(k, p, "oa/", True) for k, p in procs.items()], "openai", "/v1/chat/completions", "[DONE]", LIMIT_ROUNDS)
    finally:
        for p in procs.values():
            p.stop()
    out = {k: {"rps": _median(g["rps"]), "cpu_ms_per_stream": _median(g["cpu"]), "rps_runs": g["rps"], "cpu_runs": g["cpu"],
               "others_pct": max(g["others"]), "errors": sum(g["errors"])} for k, g in got.items()}
    out["ratio"] = {m: _median(v) for m, v in _ratio_runs(got["with"], got["without"]).items() if m != "streams"}
    return out


def paired(o: argparse.Namespace, work: Path, floor: Proc, procs: list[tuple[str, Proc, str]], fmt: str, path: str, end: str) -> dict:
    """The ratios the targets read, in alternating rounds (``rounds``): the floor and each llmproxy (key, process,
    model prefix), ``PAIRED_ROUNDS`` rounds; req/s at 64 for the relays only (a plain request through the
    translated path is not what its target is about).

    Run one after another, minutes apart, two tests on this kind of machine drift ±15% with its other
    load; taken in turns, seconds apart, a round's ratio sees the same machine on both sides, and the
    median of the rounds' ratios is what a target checks (the single-run table stays as it was measured).
    """
    got = rounds(o, work, [("floor", floor, "", True)] + [(k, p, prefix, k != "translated") for k, p, prefix in procs], fmt, path, end, PAIRED_ROUNDS)
    f = got["floor"]
    out: dict = {"rounds": PAIRED_ROUNDS, "seconds": LIMIT_SECONDS, "floor": {"runs": f}}
    for key, *_ in procs:
        g = got[key]
        ratios = _ratio_runs(g, f)
        out[key] = {"runs": g, "ratio_runs": ratios, "ratio": {m: _median(v) for m, v in ratios.items()},
                    "others_pct": max(g["others"] + f["others"]), "errors": sum(g["errors"])}
    return out


def slow_streams(o: argparse.Namespace, work: Path, up: int) -> dict:
    """``o.slow`` streams of SLOW_CHUNKS chunks SLOW_MS apart, all sent at once: direct, the floor and llmproxy.

    The load generator opens the connections first (in batches: llmproxy's listen backlog is
    aiohttp's 128), then sends every request at the same moment.  Per side: events/s delivered
    (content chunks received ÷ the time from the requests to the last byte), the added
    inter-chunk delay (gap between reads carrying events, less SLOW_MS), peak RSS, errors, and
    from the requests to the last answer the proxy's CPU time and how busy each CPU was (CPU 0:
    the proxy's; CPU 1: upstream + load generator).
    The load generator runs on uvloop here when it is installed: on asyncio, it and the upstream
    together could not take 40,000 events/s from one core, and the test measured CPU 1.  The direct
    call shows what the upstream and load generator add by themselves.
    """
    out: dict = {"streams": o.slow, "chunks": SLOW_CHUNKS, "gap_ms": SLOW_MS, "offered_events_per_s": round(o.slow * 1000 / SLOW_MS)}
    try:
        import uvloop  # noqa: F401

        fast = True
    except ImportError:
        fast = False
    out["load_loop"] = "uvloop" if fast else "asyncio"
    for name in ("direct", "floor", "llmproxy"):
        if name == "direct":
            p, url, prefix = None, f"http://127.0.0.1:{up}/v1", ""
        elif name == "floor":
            p = start_floor(o, work, up, "floor-slow")
            url, prefix = f"http://127.0.0.1:{p.port}/v1", ""
        else:
            p = start_llmproxy(o, work, up, "llmproxy-slow")[0]
            url, prefix = f"http://127.0.0.1:{p.port}/v1", "oa/"
        try:
            r = loadgen(url=url, path="/chat/completions", conns=o.slow, count=1, together=True, uvloop=fast, watch_pid=p.server_pid() if p else None,
                        body=bodies("openai", f"{prefix}c{SLOW_CHUNKS}g{SLOW_MS}", True), end="[DONE]", timeout=120, gap_ms=SLOW_MS, mark='"content"')
            r["peak_mib"] = round(p.peak_mib(), 1) if p else None
            out[name] = r
        finally:
            if p:
                p.stop()
    return out


def log_writer(n: int, rate: int, work: Path) -> dict:
    """RequestLog on its own: n rows queued at ``rate``/s, then flushed; and n rows at once."""
    from llmproxy.requestlog import RequestLog, new_row

    async def run(db: Path, rate: int | None) -> dict:
        rl = RequestLog(db)
        await rl.start()
        t0 = time.perf_counter()
        tick = 0.005
        per_tick = n if rate is None else max(1, int(rate * tick))
        sent = 0
        while sent < n:
            for _ in range(min(per_tick, n - sent)):
                row = new_row(f"r{sent:08d}", "openai", "chat")
                row.model, row.backend, row.status, row.prompt_tokens, row.completion_tokens = "bench", "oa", 200, 12, 9
                rl.put(row)
                sent += 1
            if rate is not None:
                await asyncio.sleep(max(0.0, t0 + sent / rate - time.perf_counter()))
        await rl.flush()
        took = time.perf_counter() - t0
        written, dropped = rl.written, rl.dropped
        await rl.close()
        stored = sqlite3.connect(db).execute("SELECT count(*) FROM requests").fetchone()[0]
        return {"rows": n, "seconds": round(took, 3), "rows_per_s": round(n / took), "written": written, "dropped": dropped, "stored": stored}

    return {"at_once": asyncio.run(run(work / "log-burst.db", None)), "paced": asyncio.run(run(work / "log-paced.db", rate))}


def usage_queries(n: int, work: Path) -> dict:
    """The usage API's queries (``llmproxy.report``, behind /admin/api/usage, /admin/api/requests and
    ``llmproxy stats``) on a log of ``n`` rows spread over 30 days: ms per query, each run once cold.

    The rows are written into a schema of version 6 (before the hourly rollup), then the rest of the
    migrations run, as on an upgrade: migration 7 builds the rollup from them (its time: ``rollup_s``)."""
    import random
    import sqlite3

    from llmproxy import report
    from llmproxy.requestlog import COLUMNS, migrate

    db = work / "usage.db"

    async def make() -> None:
        import aiosqlite

        async with aiosqlite.connect(db) as con:
            await migrate(con, upto=6)

    async def upgrade() -> None:
        import aiosqlite

        async with aiosqlite.connect(db) as con:
            await migrate(con)

    asyncio.run(make())
    rnd, now = random.Random(1), time.time()
    clients, users, models = [f"client-{i}" for i in range(8)], [f"user-{i}" for i in range(40)], [f"model-{i}" for i in range(12)]

    cols = ("id", "ts", "front", "endpoint", "client", "user_id", "model", "requested_model", "backend", "status", "stream",
            "first_byte_ms", "total_ms", "prompt_tokens", "completion_tokens", "cost_usd", "attempts")
    assert set(cols) <= set(COLUMNS)
    r = rnd.random

    def rows():  # noqa: ANN202
        for i in range(n):
            yield (f"r{i:09d}", now - r() * 2592000, "openai", "chat", clients[i % 8], users[i % 40], models[i % 12], "m", f"b{i % 5}",
                   200 if i % 50 else 502, 1, r() * 900, r() * 9000, 10 + i % 4000, 1 + i % 900, r() / 100, 1)

    t0 = time.perf_counter()
    con = sqlite3.connect(db)
    con.executemany(f"INSERT INTO requests ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows())
    con.commit()
    con.close()
    out: dict = {"rows": n, "fill_s": round(time.perf_counter() - t0, 1), "ms": {}}
    t0 = time.perf_counter()
    asyncio.run(upgrade())
    out["rollup_s"] = round(time.perf_counter() - t0, 1)
    con = sqlite3.connect(db)
    out["rollup_rows"] = con.execute("SELECT count(*) FROM usage_hourly").fetchone()[0]
    con.close()
    con = report.connect(db)
    try:
        for by in ("client", "user", "model", "day"):
            t = time.perf_counter()
            report.usage(con, by, now - 7 * 86400)
            out["ms"][f"usage by {by}, last 7 days"] = round((time.perf_counter() - t) * 1000, 1)
        t = time.perf_counter()
        report.recent(con, 100, client="client-3")
        out["ms"]["100 latest requests of one client"] = round((time.perf_counter() - t) * 1000, 1)
    finally:
        con.close()
    return out


def sections_alone(o: argparse.Namespace, only: set[str], work: Path, res: dict) -> None:
    """``--only log,usage``: the log writer and/or the usage API's queries alone (no upstream, no load), their targets printed."""
    if "log" in only:
        print(f"log writer, {o.log_rows:,} rows", file=sys.stderr, flush=True)
        res["log_writer"] = log_writer(o.log_rows, 20_000, work)
    if "usage" in only and o.usage_rows:
        print(f"usage API queries on a log of {o.usage_rows:,} rows", file=sys.stderr, flush=True)
        res["usage_queries"] = usage_queries(o.usage_rows, work)
    res["targets"] = [{"target": n, "met": ok, "measured": m} for n, ok, m in targets(res) if m != "not measured"]
    out = Path(o.out)
    out.mkdir(parents=True, exist_ok=True)
    dest = out / f"{time.strftime('%Y%m%d-%H%M%S')}-{res['commit']}-{'-'.join(sorted(only))}.json"
    dest.write_text(json.dumps(res, indent=1))
    print(f"llmproxy bench ({', '.join(sorted(only))} only) — commit {res['commit']}, {res['when']}, python {res['python']}\nTargets")
    for t in res["targets"]:
        print(f"  {'—' if t['met'] is None else '✓' if t['met'] else '✗'} {t['target']:<54} {t['measured']}")
    print(f"\nwritten {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
    shutil.rmtree(work, ignore_errors=True)


def soak(o: argparse.Namespace, work: Path, up: int) -> dict:
    p, _ = start_llmproxy(o, work, up, "llmproxy-soak")
    url = f"http://127.0.0.1:{p.port}"
    body = bodies("openai", "oa/plain")
    done, samples, errors, t0 = 0, [], 0, time.perf_counter()
    try:
        while done < o.soak:
            if o.wrk:
                r = wrk(url, "/v1/chat/completions", body, 64, 1, work)
            else:
                r = loadgen(url=url, path="/v1/chat/completions", body=body, conns=64, count=max(1, min(200, (o.soak - done) // 64)))
            done += r["requests"]
            errors += r["errors"]
            samples.append((done, round(p.rss_mib(), 2)))
        peak = p.peak_mib()
        status, raw = http_get(p.port, "/health", {"Authorization": f"Bearer {ADMIN_KEY}"})  # the details need the admin key
        health = json.loads(raw)["log"] if status == 200 else {}
    finally:
        p.stop()
    warm = next((s for s in samples if s[0] >= o.soak * 0.1), samples[0])[1]
    last = samples[-1][1]
    stored = sqlite3.connect(work / "llmproxy-soak" / "bench.db").execute("SELECT count(*) FROM requests").fetchone()[0]
    return {"requests": done, "errors": errors, "seconds": round(time.perf_counter() - t0, 1), "rss_warm_mib": warm, "rss_end_mib": last,
            "growth": round(last / warm - 1, 4), "peak_mib": round(peak, 1), "samples": samples, "log": health, "rows_stored": stored}


def http_get(port: int, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


# ------------------------------------------------------------------ the table


def commit() -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + ("+dirty" if git("status", "--porcelain", "--", "llmproxy", "bench") else "")


def fmt(v: float | None, d: int = 2) -> str:
    return "—" if v is None or v != v else f"{v:,.{d}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "—" if not a or not b or a != a or b != b else f"{a / b:.2f}×"


ROWS = [  # label, getter, decimals
    ("req/s @1 conn", lambda r: r["c1"]["rps"], 0),
    ("p50 ms @1", lambda r: r["c1"]["lat"]["p50"], 3),
    ("p99 ms @1", lambda r: r["c1"]["lat"]["p99"], 3),
    ("req/s @64 conns", lambda r: r["c64"]["rps"], 0),
    ("p50 ms @64", lambda r: r["c64"]["lat"]["p50"], 2),
    ("p99 ms @64", lambda r: r["c64"]["lat"]["p99"], 2),
    (f"stream first byte p50 ms @64 steady (median/{PACED_RUNS})", lambda r: r["paced"]["first"]["p50"], 2),
    ("stream first byte p99 ms @64 steady", lambda r: r["paced"]["first"]["p99"], 2),
    (f"stream first byte p50 ms @64 together (median/{PACED_RUNS})", lambda r: r["together"]["first"]["p50"], 2),
    ("stream total p50 ms @64", lambda r: r["paced"]["lat"]["p50"], 1),
    ("inter-chunk delay added ms", lambda r: r["paced"]["gap_added_ms"], 3),
    ("streams/s @64 (8 chunks, no gap)", lambda r: r["rate"]["rps"], 0),
    ("proxy CPU per stream ms·core (streams/s test)", lambda r: r["rate"].get("cpu_ms_per_stream"), 3),
    ("proxy busy % (streams/s test)", lambda r: r["rate"].get("busy_pct"), 0),
    ("peak RSS MiB", lambda r: r.get("peak_mib"), 1),
    ("other programs' CPU % of a core (worst test)", lambda r: max(r[k]["others_pct"] for k in TESTS), 0),
]
TESTS = ("c1", "c64", "paced", "together", "rate")
OTHERS_MAX = 10  # % of a core other programs may use during a test before its figures are called skewed


def table(res: dict) -> str:
    out = []
    for key, title in (("openai", "OpenAI client → OpenAI backend (relay)"), ("anthropic", "Anthropic client → Anthropic backend (relay)"),
                       ("translated", "OpenAI client → Anthropic backend (translated; floor and direct: OpenAI relay)")):
        lp = res["llmproxy"].get(key)
        base = "openai" if key == "translated" else key
        out.append(f"\n{title}")
        if lp is None or "skipped" in lp:
            out.append(f"  not measured: {lp['skipped'] if lp else 'no result'}")
            continue
        direct, floor = res["direct"][base], res["floor"][base]
        out.append(f"  {'':<48}{'direct':>10}{'floor':>10}{'llmproxy':>10}{'×floor':>9}{'×direct':>9}")
        for label, get, d in ROWS:
            vals = [get(x) for x in (direct, floor, lp)]
            out.append(f"  {label:<48}" + "".join(f"{fmt(v, d):>10}" for v in vals) + f"{ratio(vals[2], vals[1]):>9}{ratio(vals[2], vals[0]):>9}")
        added = [x["c1"]["lat"]["p50"] - direct["c1"]["lat"]["p50"] for x in (floor, lp)]
        out.append(f"  {'added p50 ms @1 (vs direct)':<48}{'':>10}{fmt(added[0], 3):>10}{fmt(added[1], 3):>10}{ratio(added[1], added[0]):>9}")
        errs = sum(x[k]["errors"] for x in (floor, lp) for k in TESTS)
        out.append(f"  errors (floor + llmproxy, all tests): {errs}")
    return "\n".join(out)


def cpu_ratio(lp: dict, floor: dict) -> tuple[float | None, str]:
    """llmproxy's CPU per stream over the floor's, in the streams/s test; and how it reads."""
    a, b = lp["rate"].get("cpu_ms_per_stream"), floor["rate"].get("cpu_ms_per_stream")
    if not a or not b:
        return None, "not measured"
    return a / b, f"{a / b:.2f}× ({a:.3f} vs {b:.3f} ms·core per stream)"


SLOW_ROWS: list = [  # label, getter (None: ended / errors; "connect": retries / overflows), decimals
    ("events/s delivered", lambda r: r.get("marks_per_s"), 0),
    ("added inter-chunk delay p50 ms", lambda r: r["gap_added"]["p50"], 1),
    ("added inter-chunk delay p99 ms", lambda r: r["gap_added"]["p99"], 1),
    ("added inter-chunk delay max ms", lambda r: r["gap_added"]["max"], 1),
    ("first byte p50 ms", lambda r: r["first"]["p50"], 1),
    ("first byte p99 ms", lambda r: r["first"]["p99"], 1),
    ("seconds, requests sent → last byte", lambda r: r.get("window_s"), 2),
    ("peak RSS MiB", lambda r: r["peak_mib"], 1),
    ("proxy busy % (its CPU time ÷ wall)", lambda r: r.get("watched_busy_pct"), 0),
    ("CPU 0 busy % (the proxy's core)", lambda r: r["cpu_busy_pct"][0] if r.get("cpu_busy_pct") else None, 0),
    ("CPU 1 busy % (upstream + load generator)", lambda r: r["cpu_busy_pct"][1] if len(r.get("cpu_busy_pct") or ()) > 1 else None, 0),
    ("streams ended / errors", None, 0),
    ("connect: retries / listen overflows", "connect", 0),
    ("other programs' CPU % of a core", lambda r: r["others_pct"], 0),
]


def slow_table(s: dict) -> str:
    out = [f"\n{s['streams']:,} slow streams, all sent at once: {s['chunks']} chunks {s['gap_ms']:g} ms apart "
           f"({1000 / s['gap_ms']:g} events/s each, {s['offered_events_per_s']:,} events/s offered); OpenAI relay; load generator on {s.get('load_loop')}",
           f"  {'':<48}{'direct':>10}{'floor':>10}{'llmproxy':>10}{'×floor':>9}"]
    sides = [s.get("direct"), s.get("floor"), s.get("llmproxy")]
    for label, get, d in SLOW_ROWS:
        if isinstance(get, str) or get is None:
            cells = ["—" if r is None else f"{r['requests']:,} / {r['errors']}" if get is None else f"{r['connect_retries']} / {fmt(r.get('listen_overflows'), 0)}" for r in sides]
            out.append(f"  {label:<48}" + "".join(f"{c:>10}" for c in cells))
            continue
        vals = [None if r is None else get(r) for r in sides]
        out.append(f"  {label:<48}" + "".join(f"{fmt(v, d):>10}" for v in vals) + f"{ratio(vals[2], vals[1]):>9}")
    return "\n".join(out)


def skewed(res: dict) -> list[str]:
    """The tests during which other programs used more than OTHERS_MAX % of a core."""
    out = []
    for side in ("direct", "floor", "llmproxy"):
        for path, r in res[side].items():
            out += [f"{side} {path} {k} ({r[k]['others_pct']:.0f}%)" for k in TESTS if k in r and r[k]["others_pct"] > OTHERS_MAX]
    out += [f"limits {k} ({v['others_pct']:.0f}%)" for k, v in (res.get("limits") or {}).items() if k != "ratio" and v["others_pct"] > OTHERS_MAX]
    out += [f"paired rounds {k} ({v['others_pct']:.0f}%)" for by_fmt in (res.get("paired") or {}).values()
            for k, v in by_fmt.items() if isinstance(v, dict) and "others_pct" in v and v["others_pct"] > OTHERS_MAX]
    slow = res.get("slow") or {}
    out += [f"slow streams {side} ({slow[side]['others_pct']:.0f}%)" for side in ("direct", "floor", "llmproxy")
            if side in slow and slow[side]["others_pct"] > OTHERS_MAX]
    return out


def _paired(res: dict, fmt: str, key: str) -> dict | None:
    """The alternating rounds' result for one llmproxy path, when they ran."""
    return (res.get("paired") or {}).get(fmt, {}).get(key)


def _rounds(pr: dict, m: str) -> str:
    """How a paired ratio was reached: the median of the rounds, each round's figure."""
    return f"median of {len(pr['ratio_runs'][m])} paired rounds: {', '.join(f'{r:.2f}' for r in pr['ratio_runs'][m])}"


def targets(res: dict) -> list[tuple[str, bool | None, str]]:
    t: list[tuple[str, bool | None, str]] = []
    d, f = res["direct"], res["floor"]
    for key in ("openai", "anthropic"):
        lp = res["llmproxy"].get(key)
        if not lp or "skipped" in lp:
            t.append((f"{key} relay", None, "not measured"))
            continue
        pr = _paired(res, key, key)
        x = lp["c64"]["rps"] / f[key]["c64"]["rps"]
        if pr and pr["ratio"]["rps"] is not None:
            y = pr["ratio"]["rps"]
            t.append((f"{key} relay req/s @64 ≥ 1.0× floor", y >= 1.0, f"{y:.2f}× ({_rounds(pr, 'rps')}; single test above: {x:.2f}×)"))
        else:
            t.append((f"{key} relay req/s @64 ≥ 1.0× floor", x >= 1.0, f"{x:.2f}×"))
        a = (lp["c1"]["lat"]["p50"] - d[key]["c1"]["lat"]["p50"]) / max(1e-9, f[key]["c1"]["lat"]["p50"] - d[key]["c1"]["lat"]["p50"])
        t.append((f"{key} relay added p50 @1 ≤ 1.3× floor's", a <= 1.3, f"{a:.2f}×"))
        x = lp["paced"]["first"]["p50"] / f[key]["paced"]["first"]["p50"]
        # Gated on the steady test.  The 64-at-once test is shown beside it, not gated: its waves settle
        # into one of two modes (~7.5 or ~11.5 ms for the floor, a mode holding for several waves),
        # whichever proxy is in the middle, so one run's median lands in either.
        y = lp["together"]["first"]["p50"] / f[key]["together"]["first"]["p50"]
        t.append((f"{key} relay stream first byte ≤ 1.2× floor", x <= 1.2, f"{x:.2f}× steady (64 at once, not gated: {y:.2f}×)"))
        c, m = cpu_ratio(lp, f[key])
        if pr and pr["ratio"]["cpu"] is not None:
            y = pr["ratio"]["cpu"]
            t.append((f"{key} relay proxy CPU per stream ≤ 1.2× floor's", y <= 1.2, f"{y:.2f}× ({_rounds(pr, 'cpu')}; single test above: {m})"))
        else:
            t.append((f"{key} relay proxy CPU per stream ≤ 1.2× floor's", None if c is None else c <= 1.2, m))
    tr = res["llmproxy"].get("translated")
    if tr and "skipped" not in tr:
        x = tr["rate"]["rps"] / f["openai"]["rate"]["rps"]
        pr = _paired(res, "openai", "translated")
        if pr and pr["ratio"]["streams"] is not None and pr["ratio"]["cpu"] is not None:
            y = pr["ratio"]["streams"]
            t.append(("translated streams/s ≥ 0.8× floor's relay", y >= 0.8, f"{y:.2f}× ({_rounds(pr, 'streams')}; single test above: {x:.2f}×)"))
            t.append(("translated proxy CPU per stream vs floor's relay", None, f"shown, not gated: {pr['ratio']['cpu']:.2f}× ({_rounds(pr, 'cpu')})"))
        else:
            t.append(("translated streams/s ≥ 0.8× floor's relay", x >= 0.8, f"{x:.2f}×"))
            t.append(("translated proxy CPU per stream vs floor's relay", None, "shown, not gated: " + cpu_ratio(tr, f["openai"])[1]))
    lc = res.get("limits")
    if lc:
        w, wo, r, c = lc["with"], lc["without"], lc["ratio"]["rps"], lc["ratio"]["cpu"]
        ok = None if r is None or c is None else r >= 0.95 and c <= 1.05 and w["errors"] == 0
        t.append(("openai relay with rpm, tpm, budgets on: within 5% of off", ok,
                  f"median of {LIMIT_ROUNDS} paired rounds: req/s @64 {fmt(r)}× (its CPU per request {fmt(lc['ratio'].get('plain_cpu'))}×), CPU per stream {fmt(c)}× "
                  f"(medians {w['rps']:,.0f} vs {wo['rps']:,.0f} req/s, {fmt(w['cpu_ms_per_stream'], 3)} vs {fmt(wo['cpu_ms_per_stream'], 3)} ms·core); {w['errors']} errors"))
    s = res.get("slow")
    if s and "llmproxy" in s:
        lp = s["llmproxy"]
        ok = lp["errors"] == 0 and lp["requests"] == s["streams"]
        t.append((f"{s['streams']:,} slow streams at {1000 / s['gap_ms']:g} events/s: 0 errors", ok,
                  f"{lp['errors']} errors ({lp['requests']:,} ended); {fmt(lp.get('marks_per_s'), 0)} events/s of {s['offered_events_per_s']:,}; "
                  f"added gap p99 {fmt(lp['gap_added']['p99'], 1)} ms; peak RSS {lp['peak_mib']:.1f} MiB"))
    lw = res.get("log_writer")
    if lw:
        ok = all(v["dropped"] == 0 and v["stored"] == v["rows"] for v in lw.values())
        t.append(("log writer ≥ 10,000 rows/s, none lost", ok and lw["at_once"]["rows_per_s"] >= 10000,
                  f"{lw['at_once']['rows_per_s']:,} rows/s at once; paced {lw['paced']['rows_per_s']:,}/s; lost {sum(v['rows'] - v['stored'] for v in lw.values())}"))
    uq = res.get("usage_queries")
    if uq:
        worst = max(uq["ms"].values())
        t.append((f"usage API on {uq['rows']:,} rows: each query < 1 s", worst < 1000,
                  "; ".join(f"{k} {v:,.0f} ms" for k, v in uq["ms"].items())
                  + (f" (hourly rollup of {uq['rollup_rows']:,} rows, built from the rows in {uq['rollup_s']:.1f} s)" if "rollup_s" in uq else "")))
    sk = res.get("soak")
    if sk:
        t.append((f"RSS flat (±5%) across a soak of {sk['requests']:,}", abs(sk["growth"]) <= 0.05 and sk["errors"] == 0,
                  f"{sk['rss_warm_mib']:.1f} → {sk['rss_end_mib']:.1f} MiB ({sk['growth'] * 100:+.1f}%), {sk['errors']} errors, log dropped {sk['log'].get('dropped')}"))
    st = res.get("startup_s")
    if st:
        t.append(("start-up to first served request < 1 s", max(st) < 1, f"{max(st):.3f} s (worst of {len(st)})"))
    return t


# ------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", 5)), help="length of each load test")
    ap.add_argument("--soak", type=int, default=int(os.environ.get("SOAK", 100_000)), help="requests in the RSS soak (0 skips)")
    ap.add_argument("--slow", type=int, default=2000, help=f"concurrent slow streams, {SLOW_CHUNKS} chunks {SLOW_MS} ms apart (0 skips)")
    ap.add_argument("--usage-rows", type=int, default=1_000_000, help="rows of the log the usage API's queries are timed on (0 skips)")
    ap.add_argument("--log-rows", type=int, default=100_000, help="rows for the log writer test")
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="event loop of the floor and llmproxy (uvloop: pip install uvloop first; not a dependency)")
    ap.add_argument("--no-wrk", dest="wrk", action="store_false", help="use the asyncio load generator even when wrk is installed")
    ap.add_argument("--only", help="comma list of: openai,anthropic,translated,limits (default all); or of log,usage: "
                                   "only the log writer and/or the usage API's queries, no load tests")
    ap.add_argument("--out", default=str(ROOT / "bench-results"))
    o = ap.parse_args()
    o.wrk = o.wrk and bool(shutil.which("wrk"))
    nofile = raise_nofile(o.slow)
    import llmproxy

    idle = machine_busy()
    if max(idle, default=0) > 10:
        print(f"WARNING: the CPUs are already busy before the bench ({', '.join(f'CPU {i} {b:.0f}%' for i, b in enumerate(idle))}): "
              "another program's load skews every figure", file=sys.stderr, flush=True)
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="llmproxy-bench-"))
    res: dict = {"commit": commit(), "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "loop": o.loop, "pinned": PINNED,
                 "plain_load": "wrk" if o.wrk else "asyncio loadgen", "stream_load": "asyncio loadgen", "cpus": os.cpu_count(),
                 "python": platform.python_version(), "seconds": o.seconds, "nofile": nofile, "busy_before_pct": idle, "llmproxy_from": str(Path(llmproxy.__file__).parent), "direct": {}, "floor": {}, "llmproxy": {}, "paired": {}, "startup_s": []}
    try:
        import aiohttp

        res["aiohttp"] = aiohttp.__version__
    except ImportError:
        pass
    only = set((o.only or "openai,anthropic,translated,limits").split(","))
    if only <= {"log", "usage"}:
        return sections_alone(o, only, work, res)
    ends = {"openai": "[DONE]", "anthropic": "message_stop"}
    paths = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
    up_port = free_port()
    up = Proc("upstream", [PY, str(HERE / "upstream.py"), str(up_port)], up_port, work, cpu=1)
    up.wait_port()
    upstream_urls = {"openai": f"http://127.0.0.1:{up_port}/v1", "anthropic": f"http://127.0.0.1:{up_port}"}
    say = lambda m: print(f"[{time.perf_counter() - t_start:6.1f} s] {m}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        for fmt_ in ("openai", "anthropic"):
            if not only & ({"openai", "translated"} if fmt_ == "openai" else {"anthropic"}):
                continue  # (nothing of this format asked for: no direct or floor runs either)
            say(f"direct {fmt_}")
            direct_path = paths[fmt_].removeprefix("/v1") if fmt_ == "openai" else paths[fmt_]
            res["direct"][fmt_] = suite(o, upstream_urls[fmt_], direct_path, fmt_, "", ends[fmt_], work)
            sides = [(res["direct"][fmt_], upstream_urls[fmt_], direct_path, "")]
            say(f"floor {fmt_}")
            running = [f := start_floor(o, work, up_port, f"floor-{fmt_}")]
            try:
                res["floor"][fmt_] = suite(o, f"http://127.0.0.1:{f.port}", paths[fmt_], fmt_, "", ends[fmt_], work, f)
                sides.append((res["floor"][fmt_], f"http://127.0.0.1:{f.port}", paths[fmt_], ""))
                measured = [(res["floor"][fmt_], f)]
                lp_sides: list[tuple[str, Proc, str]] = []  # (key, process, model prefix) of each llmproxy measured
                # the paths whose floor and direct call are this format's: the relay, and for OpenAI the translated one
                for key, prefix in (("openai", "oa/"), ("translated", "an/")) if fmt_ == "openai" else (("anthropic", "an/"),):
                    if key not in only:
                        continue
                    say(f"llmproxy {key}")
                    p, startup = start_llmproxy(o, work, up_port, f"llmproxy-{key}")
                    running.append(p)
                    res["startup_s"].append(round(startup, 3))
                    if key == "anthropic":
                        status, raw = post(p.port, "/v1/messages", bodies("anthropic", "an/plain"))
                        if status in (404, 405) and b"/v1/messages" not in raw and b"model" not in raw:
                            res["llmproxy"][key] = {"skipped": f"this llmproxy has no POST /v1/messages yet (answered {status})"}
                            continue
                    res["llmproxy"][key] = suite(o, f"http://127.0.0.1:{p.port}", paths[fmt_], fmt_, prefix, ends[fmt_], work, p)
                    sides.append((res["llmproxy"][key], f"http://127.0.0.1:{p.port}", paths[fmt_], prefix))
                    measured.append((res["llmproxy"][key], p))
                    lp_sides.append((key, p, prefix))
                say(f"stream first byte, {fmt_}: {', '.join(x.name for x in running)} and direct, in turn")
                first_byte(o, sides, fmt_, ends[fmt_])
                if lp_sides:
                    say(f"ratios to the floor, {fmt_}: floor and {', '.join(k for k, *_ in lp_sides)}, {PAIRED_ROUNDS} alternating rounds")
                    res["paired"][fmt_] = paired(o, work, f, lp_sides, fmt_, paths[fmt_], ends[fmt_])
                for r, proc in measured:
                    r["peak_mib"] = proc.peak_mib()
            finally:
                for proc in running:
                    proc.stop()
        if "limits" in only:
            say(f"limits on vs off, OpenAI relay, {LIMIT_ROUNDS} alternating rounds")
            res["limits"] = limits_cost(o, work, up_port)
        if o.slow:
            say(f"{o.slow:,} slow streams ({SLOW_CHUNKS} chunks {SLOW_MS} ms apart): direct, floor, llmproxy")
            res["slow"] = slow_streams(o, work, up_port)
        say(f"log writer, {o.log_rows:,} rows")
        res["log_writer"] = log_writer(o.log_rows, 20_000, work)
        if o.usage_rows:
            say(f"usage API queries on a log of {o.usage_rows:,} rows")
            res["usage_queries"] = usage_queries(o.usage_rows, work)
        if o.soak:
            say(f"soak, {o.soak:,} requests")
            res["soak"] = soak(o, work, up_port)
    finally:
        up.stop()
    res["targets"] = [{"target": n, "met": ok, "measured": m} for n, ok, m in targets(res)]
    res["skewed"] = skewed(res)
    res["took_s"] = round(time.perf_counter() - t_start, 1)
    out = Path(o.out)
    out.mkdir(parents=True, exist_ok=True)
    dest = out / f"{time.strftime('%Y%m%d-%H%M%S')}-{res['commit']}.json"
    dest.write_text(json.dumps(res, indent=1))
    print(f"llmproxy bench — commit {res['commit']}, {res['when']}, loop {o.loop}, python {res['python']}, aiohttp {res.get('aiohttp')}, "
          f"{'proxy pinned to CPU 0, upstream + load on CPU 1' if PINNED else 'not pinned'}; plain: {res['plain_load']}, streams: asyncio loadgen; {o.seconds:g} s per test;\n"
          f"llmproxy with access.clients set (a key on every request) and the request log on; CPUs busy before the start: {', '.join(f'{b:.0f}%' for b in idle)}")
    print(table(res))
    print(f"\n  start-up to first served request: {', '.join(f'{s:.3f}' for s in res['startup_s'])} s")
    if res.get("slow"):
        print(slow_table(res["slow"]))
    print("\nTargets")
    for n, ok, m in targets(res):
        print(f"  {'—' if ok is None else '✓' if ok else '✗'} {n:<54} {m}")
    if res["skewed"]:
        print(f"\n  ⚠ other programs used more than {OTHERS_MAX}% of a core during {len(res['skewed'])} tests, whose figures are skewed "
              f"(run again on a quiet machine): {', '.join(res['skewed'])}")
    print(f"\nwritten {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest} in {res['took_s']:.0f} s")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

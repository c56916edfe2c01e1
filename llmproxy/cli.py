"""llmproxy serve | check | stats | mock."""
from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
import time
from pathlib import Path

from . import __version__

DEFAULT_CONFIG = os.environ.get("LLMPROXY_CONFIG", "router.yaml")


def _setup_logging(level: str) -> None:
    from .console import setup

    setup(level)


def _more_files() -> None:
    """Raise the soft limit on open files to the hard one: each stream holds two sockets (client and
    upstream), and the usual soft limit of 1,024 would refuse connections at about 500 streams."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):  # not on this platform, or not allowed: keep what there is
        pass


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from . import console
    from .app import listening, log_notes, make_app
    from .collector import Collector
    from .config import ConfigError
    from .requestlog import NewerDatabase

    _setup_logging(args.log_level)
    log = logging.getLogger("llmproxy")
    _more_files()
    try:
        app = make_app(args.config, watch=args.watch)
    except ConfigError as e:
        print(f"llmproxy: {args.config}: {e}", file=sys.stderr)
        return 2
    from .state import STATE

    cfg = app[STATE].snap.config
    host, port = cfg.host, cfg.port
    if args.listen:
        host, _, p = args.listen.rpartition(":")
        host, port = host or "127.0.0.1", int(p)
    log_notes(cfg)
    log.info("llmproxy %s on http://%s:%d — %d models, %d backends, log %s", __version__, host, port, len(cfg.models), len(cfg.backends), cfg.log_path)
    # On SIGTERM llmproxy itself ends what still runs after limits.shutdown_grace, telling each client why
    # (app._grace); aiohttp's own limit, which closes connections without a word, is only a backstop behind it.
    # (aiohttp calls ``print`` once every socket listens: that is when systemd hears READY=1)
    collector = Collector()
    try:
        web.run_app(app, host=host, port=port, print=lambda *_: (collector.start(), listening(app)), shutdown_timeout=cfg.shutdown_grace + 10,
                    handler_cancellation=True, access_log=None)
    except NewerDatabase as e:
        print(f"llmproxy: {e}", file=sys.stderr)
        return 2
    finally:
        collector.stop()
        console.flush()  # lines still waiting for a write the closed loop will never make
    log.info("llmproxy stopped")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    """Validate the file as a reload would, then SIGHUP the running llmproxy (its pid file, or --pid)."""
    import signal

    from .service import pid_path

    cfg = _load(args.config, "invalid, nothing reloaded")
    if cfg is None:
        return 1
    pid, where = args.pid, "--pid"
    if pid is None:
        where = str(pid_path(cfg.log_path))
        try:
            pid = int(Path(where).read_text().strip())
        except (OSError, ValueError):
            print(f"{where}: no pid file; is llmproxy serve running with this config? (or give --pid)", file=sys.stderr)
            return 1
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"no process {pid} (from {where}): llmproxy is not running", file=sys.stderr)
        return 1
    except PermissionError:
        print(f"not allowed to signal process {pid} (from {where}): run as its user, or `systemctl reload llmproxy`", file=sys.stderr)
        return 1
    print(f"{cfg.path}: valid (sha256 {cfg.sha256[:12]}…); sent SIGHUP to llmproxy (pid {pid}); its log and /health say how the reload went")
    return 0


def _load(path: str, invalid: str = "invalid"):  # noqa: ANN202 - Config | None
    """The config, or None once the error is printed."""
    from .config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as e:
        print(f"{path}: {invalid}\n{e}", file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    from .errors import ProxyError
    from .resolve import Resolver

    cfg = _load(args.config)
    if cfg is None:
        return 1
    r = Resolver(cfg)
    print(f"{cfg.path}: valid (sha256 {cfg.sha256[:12]}…)")
    print(f"listen {cfg.host}:{cfg.port}; log {cfg.log_path}")
    print("models:")
    for name in cfg.model_names():
        try:
            res = r.resolve(name, default=False)
            routes = " | ".join(f"{t.backend.name} ({t.backend.api}) {t.upstream_model}" for t in res.targets)
            kind = "alias → " + res.name if name.lower() in cfg.aliases else (res.strategy if len(res.targets) > 1 else "")
            print(f"  {name:<28} → {routes}" + (f"   [{kind}]" if kind else ""))
        except ProxyError as e:
            print(f"  {name:<28} → unresolved: {e.message}")
    for rx, m in cfg.patterns:
        t = m.routes[0]
        print(f"  {m.name:<28} → {t.backend.name} ({t.backend.api}) {t.model or '*'}   [pattern]")
    passthrough = [b.name for b in cfg.backends.values() if b.passthrough]
    if passthrough:
        print(f"  <backend>/<model> for: {', '.join(passthrough)}")
    for b in cfg.backends.values():
        if b.discover:
            print(f"  + whatever {b.name} lists (discover: true, every {b.discover_interval:g} s; `llmproxy serve` lists it at start)")
    relayed = [b.name for b in cfg.backends.values() if b.responses == "relay"]
    if relayed:
        print(f"/v1/responses relayed to: {', '.join(relayed)} (responses: relay); translated for the others")
    print(f"default_model: {cfg.default_model or '(none: unknown models get 404)'}")
    if cfg.clients is None:
        print("access: off (no key asked; /health shows its details to anyone)")
    else:
        print(f"access: {len(cfg.clients)} client(s); /health details {'with access.admin_key' if cfg.admin_key else 'for nobody (no access.admin_key)'}")
    for note in cfg.pending:
        print(f"not yet active: {note}")
    for warning in (*cfg.warnings, *_lint(cfg)):
        print(f"warning: {warning}")
    if args.probe:
        return _probe(cfg, args.timeout)
    return 0


def _lint(cfg) -> list[str]:  # noqa: ANN001 - Config
    """What only `llmproxy check` warns about: an unused backend, a route without a price, an empty ${VAR}."""
    from .config import _ENV

    out = []
    used = {r.backend.name for m in (*cfg.models.values(), *(m for _, m in cfg.patterns)) for r in m.routes}
    for b in cfg.backends.values():
        if b.name not in used and not b.discover:
            how = f"only '{b.name}/<model>' reaches it" if b.passthrough else "nothing reaches it"
            out.append(f"backends.{b.name}: no model uses it ({how})")
    for m in cfg.models.values():
        unpriced = sorted({r.backend.name for r in m.routes if r.price is None and r.backend.api != "ollama"})
        if unpriced:
            out.append(f"models.{m.name}: no price for its route(s) on {', '.join(unpriced)}: their rows have no cost (add price:)")
    try:
        text = cfg.path.read_text()
    except OSError:
        text = ""
    for name in sorted({m.group(1) for m in _ENV.finditer(text) if m.group(2) is None and os.environ.get(m.group(1)) == ""}):
        out.append(f"environment variable {name} is set to an empty string (a header or key made of it is empty)")
    return out


def _probe(cfg, timeout: float) -> int:  # noqa: ANN001 - Config
    """Each backend's model list, at once, each within ``timeout``: reachable, auth failed or unreachable."""
    import asyncio

    from .balance import Balancer
    from .discover import fetch
    from .errors import ProxyError
    from .upstream import Upstream

    async def one(up: Upstream, bal: Balancer, b) -> tuple[bool, str]:  # noqa: ANN001 - Backend
        try:
            names = await asyncio.wait_for(fetch(up, b, bal.key_value(b, 0 if b.keys else None)), timeout)
        except asyncio.TimeoutError:
            return False, f"unreachable: no model list within {timeout:g} s"
        except ProxyError as e:
            if e.status in (401, 403):
                return False, f"auth failed: HTTP {e.status}: {e.message}"
            if e.code in ("upstream_unreachable", "upstream_timeout", "upstream_busy", "upstream_error"):
                return False, f"unreachable: {e.message}"
            return True, f"reachable, but its model list answered HTTP {e.status}: {e.message}"
        except Exception as e:  # noqa: BLE001 - a body that is not a model list
            return True, f"reachable, but its model list could not be read: {type(e).__name__}: {e}"
        return True, f"reachable: {len(names)} models listed"

    async def run() -> list[tuple[bool, str]]:
        up, bal = Upstream(), Balancer()
        bal.configure(cfg)
        await up.start()
        try:
            return await asyncio.gather(*(one(up, bal, b) for b in cfg.backends.values()))
        finally:
            await up.close()

    from .headers import redact, secrets_of

    print("probe:")
    results = asyncio.run(run())
    secrets = secrets_of(cfg)
    for b, (_, text) in zip(cfg.backends.values(), results):
        print(f"  {b.name:<20} {redact(text, secrets)}")
    return 0 if all(ok for ok, _ in results) else 1


def cmd_stats(args: argparse.Namespace) -> int:
    db = Path(args.db) if args.db else None
    if db is None:
        from .config import ConfigError, load_config

        try:
            db = load_config(args.config).log_path
        except ConfigError as e:
            print(f"{args.config}: {e}\n(or give the database with --db)", file=sys.stderr)
            return 1
    if not db.exists():
        print(f"{db}: no request log yet", file=sys.stderr)
        return 1
    if args.vacuum:
        return _vacuum(db)
    since = time.time() - _duration(args.since)
    if args.reloads:
        return _reloads(db, since, args.since)
    from . import report

    con = report.connect(db)
    try:
        groups = report.usage(con, args.by, since, local_days=True)
    finally:
        con.close()
    head = (args.by, "requests", "errors", "first byte p50", "latency p50", "prompt tok", "cached tok", "compl. tok", "cost USD")
    table = [head] + [
        (str(g["key"] or "-"), f"{g['requests']:,}", f"{g['errors']:,}", _ms(g["first_byte_ms_p50"]), _ms(g["total_ms_p50"]),
         f"{g['prompt_tokens']:,}", f"{g['cached_tokens']:,}", f"{g['completion_tokens']:,}", f"{g['cost_usd']:.4f}" if g["cost_usd"] is not None else "-")
        for g in groups
    ]
    if args.by == "user":  # who each id is (last column: a name may hold spaces)
        table = [table[0] + ("name",)] + [r + (_who(g),) for r, g in zip(table[1:], groups)]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for j, r in enumerate(table):
        print("  ".join(c.ljust(w) if i == 0 or i == len(head) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    if len(table) == 1:
        print(f"(no requests since {args.since} ago)")
    return 0


def _who(g: dict) -> str:
    """A user's name and email as `stats --by user` shows them: ``Ann <ann@home.lan>``."""
    return " ".join(x for x in (g.get("name"), f"<{g['email']}>" if g.get("email") else None) if x) or "-"


def _ms(v: float | None) -> str:
    return f"{v:.0f} ms" if v is not None else "-"


def _reloads(db: Path, since: float, ago: str) -> int:
    """`stats --reloads`: each config load since then, newest first: when, what caused it, the file's hash, ok or why not."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT ts, trigger, sha256, ok, error FROM reloads WHERE ts >= ? ORDER BY ts DESC", (since,)).fetchall()
    except sqlite3.OperationalError:
        print(f"{db}: no reloads recorded (written by an llmproxy older than this one)", file=sys.stderr)
        return 1
    finally:
        con.close()
    for ts, trigger, sha, ok, error in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
        print(f"{when}  {trigger:<7} {(sha or '-')[:12]:<12}  " + ("ok" if ok else "FAILED: " + (error or "").replace("\n", " | ")))
    if not rows:
        print(f"(no config loads since {ago} ago)")
    return 0


def _vacuum(db: Path) -> int:
    """`stats --vacuum`: give the space of deleted rows back to the disk (safe while llmproxy runs; it waits its turn)."""
    def size() -> int:
        return sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists())

    before = size()
    con = sqlite3.connect(db, timeout=60)
    try:
        con.execute("VACUUM")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.OperationalError as e:
        print(f"{db}: vacuum failed: {e}", file=sys.stderr)
        return 1
    finally:
        con.close()
    print(f"{db}: {before / 1e6:.1f} MB → {size() / 1e6:.1f} MB")
    return 0


def _duration(s: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        return float(s[:-1]) * units[s[-1]] if s[-1] in units else float(s) * 86400
    except (ValueError, IndexError):
        raise SystemExit(f"--since: expected a number with s, m, h, d or w (e.g. 7d), got {s!r}")


def cmd_mock(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .mock import make_mock_app

    _setup_logging("info")
    logging.getLogger("llmproxy").info("llmproxy mock upstream on http://%s:%d (%d chunks, %g ms apart)", args.host, args.port, args.chunks, args.delay_ms)
    web.run_app(make_mock_app(args.chunks, args.delay_ms / 1000), host=args.host, port=args.port, print=None, access_log=None)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llmproxy",
        description="A config-driven reverse proxy for LLM APIs: one process, one router.yaml.",
        epilog="environment: LLMPROXY_CONFIG (the default -c); HTTPS_PROXY, HTTP_PROXY, NO_PROXY (or lower case) send upstream "
               "calls through an http:// proxy, read at start (a backend's proxy: overrides them); SSL_CERT_FILE replaces "
               "the system's CA store (a backend's tls.ca adds to it).",
    )
    p.add_argument("--version", action="version", version=f"llmproxy {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("serve", help="run the proxy (the default command)")
    s.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="router.yaml to use (default: %(default)s, or $LLMPROXY_CONFIG)")
    s.add_argument("--listen", help="host:port, overriding listen: in the file")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="console log level (default: info)")
    s.add_argument("--watch", action="store_true", help="also reload when the config file changes on disk (as SIGHUP does)")
    s.set_defaults(func=cmd_serve)

    r = sub.add_parser("reload", help="validate router.yaml, then tell the running llmproxy to reload it (SIGHUP)")
    r.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="router.yaml to check (default: %(default)s); its log.path's folder holds the pid file")
    r.add_argument("--pid", type=int, help="signal this process instead of the one in the pid file")
    r.set_defaults(func=cmd_reload)

    c = sub.add_parser("check", help="validate router.yaml exactly as a reload would, and show what each name resolves to")
    c.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="router.yaml to check (default: %(default)s)")
    c.add_argument("--probe", action="store_true", help="also ask each backend for its model list: reachable, auth failed or unreachable (exit 1 unless all are reachable)")
    c.add_argument("--timeout", type=float, default=10.0, help="seconds per backend for --probe (default: %(default)s)")
    c.set_defaults(func=cmd_check)

    st = sub.add_parser("stats", help="usage, latency and cost from the request log",
                        description="Requests, errors, tokens and cost (exact) and median first-byte and total latency "
                                    "(from hourly histograms: within 9 %) from the request log, as /admin/api/usage has them.")
    st.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="router.yaml whose log.path to read (default: %(default)s)")
    st.add_argument("--db", help="read this SQLite file instead")
    st.add_argument("--since", default="7d", help="how far back: 30m, 24h, 7d, 4w (default: %(default)s)")
    st.add_argument("--by", default="model", choices=["model", "backend", "client", "group", "user", "tag", "day"],
                    help="group rows by: the model asked for (after aliases), backend, client, its access group, the end user "
                         "Open-WebUI forwarded, client tag, or day (local time) (default: %(default)s)")
    st.add_argument("--reloads", action="store_true", help="list the config loads instead: start and each reload, the file's sha256, ok or the error")
    st.add_argument("--vacuum", action="store_true", help="instead: give the space of deleted rows back to the disk (SQLite VACUUM)")
    st.set_defaults(func=cmd_stats)

    m = sub.add_parser("mock", help="run the built-in upstream emulator (OpenAI, Anthropic, Gemini and Ollama formats)")
    m.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    m.add_argument("--port", type=int, default=4010, help="port (default: %(default)s)")
    m.add_argument("--chunks", type=int, default=8, help="pieces per streamed answer (default: %(default)s)")
    m.add_argument("--delay-ms", type=float, default=0.0, help="pause between streamed pieces (default: %(default)s)")
    m.set_defaults(func=cmd_mock)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.command is None:
        args = p.parse_args(["serve", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)

"""Running as a service: systemd's notify protocol, the pid file ``llmproxy reload`` signals, ``serve --watch``.

The notify protocol is one datagram per message to ``$NOTIFY_SOCKET`` (a path, or an abstract
name when it starts with ``@``), ``KEY=value`` lines: no library needed.  The environment is read
once, at start; without ``$NOTIFY_SOCKET`` every message is a no-op.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger("llmproxy")


class Notifier:
    """Messages to systemd (``READY=1``, ``RELOADING=1``, ``STOPPING=1``, ``STATUS=``, ``WATCHDOG=1``)."""

    def __init__(self, env: dict[str, str] | os._Environ = os.environ) -> None:
        addr = env.get("NOTIFY_SOCKET") or ""
        self.addr: str | None = ("\0" + addr[1:]) if addr.startswith("@") else (addr or None)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        ok = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.watchdog: float | None = int(usec) / 1e6 if ok else None  # seconds systemd waits for a ping
        self._sock: socket.socket | None = None

    def send(self, *lines: str) -> None:
        if self.addr is None:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), self.addr)
        except OSError as e:  # systemd gone or the socket unwritable: the proxy runs on regardless
            log.debug("NOTIFY_SOCKET %s: %s", self.addr, e)

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def keepalive(notifier: Notifier, status: Callable[[], str], every: float = 30.0) -> None:
    """``WATCHDOG=1`` at half of ``$WATCHDOG_USEC`` (only while this loop runs), with a fresh ``STATUS=``."""
    interval = min(every, notifier.watchdog / 2) if notifier.watchdog else every
    while True:
        await asyncio.sleep(interval)
        if notifier.watchdog:
            notifier.send("WATCHDOG=1", "STATUS=" + status())
        else:
            notifier.send("STATUS=" + status())


def pid_path(log_path: Path) -> Path:
    """Where ``serve`` writes its pid and ``llmproxy reload`` looks: next to the request log (the state directory)."""
    return log_path.with_name(log_path.stem + ".pid")


def write_pid(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")


def remove_pid(path: Path) -> None:
    try:
        if path.read_text().strip() == str(os.getpid()):  # (not another instance's)
            path.unlink()
    except OSError:
        pass


def file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


async def watch(path: Path, current: Callable[[], str], reload: Callable[[], None], poll: float = 1.0, settle: float = 0.5) -> None:
    """``serve --watch``: call ``reload`` (the SIGHUP path) when ``path`` changes on disk.

    Polls mtime and size; a change is acted on once the file has stayed put for ``settle`` seconds
    (an editor writing in several steps) and its sha256 differs from the config in force, and from
    what was last tried (a broken file is reported once, not every second).
    """
    def stamp() -> tuple[int, int] | None:
        try:
            st = path.stat()
            return st.st_mtime_ns, st.st_size
        except OSError:
            return None

    seen, tried = stamp(), None
    while True:
        await asyncio.sleep(poll)
        now = stamp()
        if now == seen or now is None:
            continue
        await asyncio.sleep(settle)
        if stamp() != now:  # still being written: look again next round
            continue
        seen = now
        digest = file_digest(path)
        if digest is None or digest == current() or digest == tried:
            continue
        tried = digest
        log.info("%s changed on disk: reloading (--watch)", path.name)
        reload()

"""The console log: ``HH:MM:SS message`` lines, written in batches at most 20 times a second.

One write and flush per line cost more than the rest of a relayed request's logging; a batch keeps
the lines in order and reaches the screen (or journald) within 50 ms.  The hot path's
``→``/``←`` lines go through ``line()``, which skips ``logging``'s record machinery (a LogRecord,
caller lookup, filters: more than the line itself) but lands in the same ordered batch.

What comes from outside (a model name, a backend's error text, a request path) cannot break a line
or send terminal codes: ``line()`` and every argument of a ``logging`` call show control characters
as escapes (``\\n``, ``\\x1b``), so no one can forge a console line.

Under systemd (stderr is the journal: ``$JOURNAL_STREAM`` names it) each line starts with its syslog
priority instead of the time, ``<3>`` for an error, ``<4>`` a warning, ``<6>`` the rest: journald
stamps the time itself, ``journalctl -p warning -u llmproxy`` finds the warnings and errors, and it
shows them in colour.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import TextIO


# C0 and C1 control characters, DEL and the Unicode line/paragraph separators → their repr escapes.
_ESCAPES = {c: repr(chr(c))[1:-1] for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}


def _priority(level: int) -> str:
    """logging's level → the syslog priority journald reads at the start of a line."""
    return "<2>" if level >= logging.CRITICAL else "<3>" if level >= logging.ERROR else "<4>" if level >= logging.WARNING else "<6>" if level >= logging.INFO else "<7>"


def to_journal(stream: TextIO, env: dict[str, str] | os._Environ = os.environ) -> bool:
    """Whether ``stream`` is journald's: ``$JOURNAL_STREAM`` (``device:inode``, set by systemd) is this file.

    (Not its mere presence: a shell started from a unit inherits it with a terminal for stderr.)"""
    dev, _, ino = env.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError, TypeError):  # no file (a StringIO), or no such variable
        return False


def escape(text: str) -> str:
    """``text`` on one line, control characters shown as escapes (a scan only when it has any)."""
    return text if text.isprintable() else text.translate(_ESCAPES)


class ConsoleHandler(logging.Handler):
    """Formats each record at once, writes the pending lines together ``FLUSH_EVERY`` seconds after the first."""

    FLUSH_EVERY = 0.05

    def __init__(self, stream: TextIO | None = None, journal: bool | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.journal = to_journal(self.stream) if journal is None else journal  # priority prefixes, no time
        self._pending: list[str] = []
        self._scheduled = False
        self._second = -1
        self._stamp = ""

    def _stamped(self, created: float, msg: str, level: int = logging.INFO) -> str:
        if self.journal:  # every line of the message carries the priority (journald reads line by line)
            prio = _priority(level)
            return prio + msg.replace("\n", "\n" + prio) if "\n" in msg else prio + msg
        sec = int(created)
        if sec != self._second:  # the time prefix changes once a second
            self._second, self._stamp = sec, time.strftime("%H:%M:%S", time.localtime(sec))
        return f"{self._stamp} {msg}"

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if isinstance(args, tuple) and args:  # the fields are escaped; the message's own line breaks stay
            msg = str(record.msg) % tuple(escape(a) if isinstance(a, str) else a for a in args)
        else:
            msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + logging.Formatter().formatException(record.exc_info)
        return self._stamped(record.created, msg, record.levelno)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.add(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise into a request
            self.handleError(record)

    def add(self, text: str) -> None:
        """Queue one finished line for the next write."""
        self._pending.append(text)
        if self._scheduled:  # (a write is due: the loop is not asked again, a getpid call each time)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside the loop (start-up, shutdown): write now
            self.flush()
            return
        self._scheduled = True
        loop.call_later(self.FLUSH_EVERY, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._pending:
            lines, self._pending = self._pending, []
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # a closed or broken console must not stop the proxy
                pass


log = logging.getLogger("llmproxy")
_console: ConsoleHandler | None = None  # set by setup(): where line() writes
_level = logging.INFO


def line(level: int, msg: str) -> None:
    """One console line at ``level`` (control characters escaped), straight into the console's batch once
    ``setup()`` ran (through ``logging`` before)."""
    if not msg.isprintable():
        msg = msg.translate(_ESCAPES)
    if _console is None:
        log.log(level, "%s", msg)
    elif level >= _level:
        _console.add(_console._stamped(time.time(), msg, level))


def flush() -> None:
    """Write the pending lines now (before telling systemd a reload is done, so the journal reads in order)."""
    if _console is not None:
        _console.flush()


def setup(level: str = "info") -> None:
    """Send llmproxy's log to the console; aiohttp's access log stays off (the request log has it all)."""
    global _console, _level
    _console, _level = ConsoleHandler(), getattr(logging, level.upper())
    root = logging.getLogger()
    root.handlers[:] = [_console]
    root.setLevel(_level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

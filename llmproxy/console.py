"""The console log: ``HH:MM:SS message`` lines, written once per event-loop turn instead of per line.

One write and flush per line cost more than the rest of a relayed request's logging; batching the
lines of one loop turn keeps them in order and on screen within the same turn.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import TextIO


class ConsoleHandler(logging.Handler):
    """Formats each record at once, writes the pending lines together at the end of the loop turn."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self._pending: list[str] = []
        self._scheduled = False
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        sec = int(record.created)
        if sec != self._second:  # the time prefix changes once a second
            self._second, self._stamp = sec, time.strftime("%H:%M:%S", time.localtime(sec))
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + logging.Formatter().formatException(record.exc_info)
        return f"{self._stamp} {msg}"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._pending.append(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise into a request
            self.handleError(record)
            return
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside the loop (start-up, shutdown): write now
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._pending:
            lines, self._pending = self._pending, []
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # a closed or broken console must not stop the proxy
                pass


def setup(level: str = "info") -> None:
    """Send llmproxy's log to the console; aiohttp's access log stays off (the request log has it all)."""
    root = logging.getLogger()
    root.handlers[:] = [ConsoleHandler()]
    root.setLevel(getattr(logging, level.upper()))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

"""What ``/v1/responses`` leaves behind, kept in the request log's SQLite file (table ``responses``).

Two kinds of record, one table (created by ``requestlog``'s migrations):

- a translated response sent with ``store`` (the default): the conversation before it and the
  Response object, for ``GET /v1/responses/{id}`` and for ``previous_response_id``, which rebuilds
  the conversation for a backend that keeps no state;
- a relayed one (``responses: relay``): only which backend created the id, so that a follow-up
  goes back there whatever the strategy says.

Writes never make a request wait: ``put`` keeps the record in memory until one background task has
committed it, so a follow-up sent the moment an answer ended still finds it.  Records older than
``responses_keep_days`` are not found and are deleted every hour.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import aiosqlite
import orjson

log = logging.getLogger("llmproxy")

DAY = 86400.0
PURGE_EVERY = 3600.0  # seconds between two deletions of expired records


@dataclass(slots=True)
class Stored:
    """One response id llmproxy knows."""

    id: str
    created: float
    client: str | None  # the access.clients name that created it (None: access is off)
    backend: str
    relayed: bool = False  # the response lives upstream; only its backend is kept here
    input: list | None = None  # translated: the conversation's items before this answer (instructions excluded)
    response: dict | None = None  # translated: the Response object as it was answered


class ResponseStore:
    """One connection to the log's file, one writer task; ``keep_days`` is read from the config in force."""

    def __init__(self, path: Path, keep_days: Callable[[], float]) -> None:
        self.path = path
        self.keep_days = keep_days
        self.count = 0  # records kept (shown in /health)
        self._pending: dict[str, Stored] = {}  # put, not yet committed
        self._queue: asyncio.Queue[Stored] = asyncio.Queue()
        self._db: aiosqlite.Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Open the file (the request log has created the table) and start the writer and the hourly purge."""
        self._db = await aiosqlite.connect(self.path)
        await self._db.execute("PRAGMA busy_timeout = 5000")  # the request log writes to the same file
        await self._count()
        self._tasks = [asyncio.create_task(self._write(), name="responses-writer"),
                       asyncio.create_task(self._purge_hourly(), name="responses-purge")]

    async def close(self) -> None:
        if self._tasks:
            await self._queue.join()
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
        if self._db is not None:
            await self._db.close()
            self._db = None

    def put(self, rec: Stored) -> None:
        """Keep ``rec``; never waits (the writer commits it soon; ``get`` finds it meanwhile)."""
        self._pending[rec.id] = rec
        self._queue.put_nowait(rec)

    async def get(self, rid: str, client: str | None) -> Stored | None:
        """The record of ``rid`` if it exists, has not expired and belongs to ``client``; else None."""
        rec = self._pending.get(rid)
        if rec is None and self._db is not None:
            async with self._db.execute(
                "SELECT id, created, client, backend, relayed, input, response FROM responses WHERE id = ?", (rid,)
            ) as cur:
                row = await cur.fetchone()
            if row is not None:
                rec = Stored(row[0], row[1], row[2], row[3], bool(row[4]),
                             orjson.loads(row[5]) if row[5] else None, orjson.loads(row[6]) if row[6] else None)
        if rec is None or rec.client != client or rec.created < time.time() - self.keep_days() * DAY:
            return None
        return rec

    async def delete(self, rid: str) -> None:
        self._pending.pop(rid, None)
        if self._db is not None:
            await self._queue.join()  # a put still queued must not bring it back
            await self._db.execute("DELETE FROM responses WHERE id = ?", (rid,))
            await self._db.commit()
            await self._count()

    async def purge(self) -> int:
        """Delete the records older than ``responses_keep_days``; returns how many went."""
        assert self._db is not None
        cur = await self._db.execute("DELETE FROM responses WHERE created < ?", (time.time() - self.keep_days() * DAY,))
        await self._db.commit()
        await self._count()
        return cur.rowcount

    async def flush(self) -> None:
        """Return once every record put so far is committed."""
        await self._queue.join()

    async def _count(self) -> None:
        assert self._db is not None
        async with self._db.execute("SELECT count(*) FROM responses") as cur:
            (self.count,) = await cur.fetchone()

    async def _write(self) -> None:
        assert self._db is not None
        q = self._queue
        while True:
            recs = [await q.get()]
            while not q.empty():
                recs.append(q.get_nowait())
            try:
                await self._db.executemany(
                    "INSERT OR REPLACE INTO responses (id, created, client, backend, relayed, input, response) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(r.id, r.created, r.client, r.backend, int(r.relayed), _json(r.input), _json(r.response)) for r in recs])
                await self._db.commit()
                await self._count()
            except Exception:  # a disk error must not kill the writer; the records stay in memory until restart
                log.exception("responses store: writing %d records failed", len(recs))
            else:
                for r in recs:
                    if self._pending.get(r.id) is r:
                        del self._pending[r.id]
            finally:
                for _ in recs:
                    q.task_done()

    async def _purge_hourly(self) -> None:
        while True:
            try:
                gone = await self.purge()
                if gone:
                    log.info("responses store: %d expired responses deleted", gone)
            except Exception:
                log.exception("responses store: deleting expired responses failed")
            await asyncio.sleep(PURGE_EVERY)


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()

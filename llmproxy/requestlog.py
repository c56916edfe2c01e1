"""The request log: ``LogRow``, one background writer (batched, WAL), ordered migrations.

A request only ever calls ``RequestLog.put(row)``, which never waits: rows go to a bounded
queue and a single task writes them in batches.  A full queue is counted in ``dropped``
(shown in /health), never silently lost.  ``flush()`` waits until everything queued is on disk.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import dataclass, field, fields
from functools import lru_cache
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any, Awaitable, Callable, Union

import aiosqlite
import orjson

from . import rollup

log = logging.getLogger("llmproxy")


@dataclass(slots=True)
class LogRow:
    """One request, as stored; filled in as the request goes and written once in a ``finally:``."""

    id: str
    ts: float
    client_addr: str | None = None
    client: str | None = None
    tags: str | None = None
    front: str = "openai"
    endpoint: str = "chat"
    requested_model: str | None = None
    model: str | None = None
    backend: str | None = None
    upstream_model: str | None = None
    stream: int = 0
    status: int | None = None
    error_type: str | None = None
    error: str | None = None
    first_byte_ms: float | None = None
    total_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: float | None = None
    attempts: int = 0
    attempt_log: str | None = None
    note: str | None = None  # what a translation left out (e.g. a hosted tool no other backend can run)
    parent_id: str | None = None  # a designator's own call: the id of the request it chose a route for
    route_choice: str | None = None  # strategy: designator — which route was chosen, and how (or why the first)
    client_group: str | None = None  # the client's access group
    user_id: str | None = None  # the end user Open-WebUI forwarded (X-OpenWebUI-User-* or its signed JWT)
    user_name: str | None = None
    user_email: str | None = None
    chat_id: str | None = None  # X-OpenWebUI-Chat-Id
    t0: float = field(default=0.0, repr=False)  # monotonic start; not stored
    bodies: tuple[str | None, str | None, bool] | None = field(default=None, repr=False)  # log.bodies: (request, response, truncated), in table bodies

    def fail(self, status: int, error_type: str, message: str) -> None:
        self.status, self.error_type, self.error = status, error_type, message[:1000]

    def since_start(self) -> float:
        """Milliseconds since the request came in, as the row stores times."""
        return round((time.monotonic() - self.t0) * 1000, 2)


# sqlite3 binds int, float and str directly, but sends every other value, None included, through its adapter
# lookup, which ends in two attribute lookups when nothing is registered: 0.67 µs a NULL parameter, and a
# streamed chat's row leaves 12 of its 33 columns NULL.  An adapter registered for None is found at the first
# step (0.27 µs; None still binds as NULL): the writer thread, on the proxy's core, went from 15 to 11 µs a row.
sqlite3.register_adapter(type(None), {}.get)  # ({}.get(None) is None: a C call, cheaper than a Python function)

COLUMNS = tuple(f.name for f in fields(LogRow) if f.name not in ("t0", "bodies"))
_values = attrgetter(*COLUMNS)
_ROW_SQL = f"({', '.join('?' * len(COLUMNS))})"
# INSERTs carry 1, 2, 4 … 256 rows (256 × 33 parameters is within SQLite's 32,766): a batch of n
# rows is at most 9 statements, and only 9 distinct statements are ever prepared and cached.
_SIZES = tuple(1 << i for i in range(8, -1, -1))


@lru_cache(maxsize=len(_SIZES))
def _insert(n: int) -> str:
    """One INSERT of ``n`` rows.

    Few statements per batch, not executemany: sqlite3 releases the GIL around every statement
    step, and on a busy event loop each release hands the GIL over and back, which cost more than
    the inserts themselves.  Sizes are powers of two so that sqlite3's statement cache stays small
    (one statement per batch size grew the process by 40 MiB over a 100,000-request soak).
    """
    return f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES " + ", ".join([_ROW_SQL] * n)


def _parts(rows: list[LogRow]) -> list[tuple[str, list]]:
    """``rows`` as (INSERT, parameters) pairs of the sizes in ``_SIZES``."""
    out, i = [], 0
    for size in _SIZES:
        while len(rows) - i >= size:
            out.append((_insert(size), list(chain.from_iterable(map(_values, rows[i:i + size])))))
            i += size
    return out


def _m1(db_sql: list[str]) -> None:
    db_sql.append(
        """CREATE TABLE requests (
            id TEXT PRIMARY KEY, ts REAL NOT NULL, client_addr TEXT, client TEXT, tags TEXT,
            front TEXT NOT NULL, endpoint TEXT NOT NULL, requested_model TEXT, model TEXT,
            backend TEXT, upstream_model TEXT, stream INTEGER NOT NULL DEFAULT 0, status INTEGER,
            error_type TEXT, error TEXT, first_byte_ms REAL, total_ms REAL,
            prompt_tokens INTEGER, completion_tokens INTEGER, cached_tokens INTEGER,
            cache_write_tokens INTEGER, reasoning_tokens INTEGER, cost_usd REAL,
            attempts INTEGER NOT NULL DEFAULT 0, attempt_log TEXT)"""
    )
    db_sql.append("CREATE INDEX requests_ts ON requests (ts)")
    db_sql.append("CREATE INDEX requests_model ON requests (model, ts)")


def _m2(db_sql: list[str]) -> None:
    """What /v1/responses leaves behind (``store.py``): a translated response kept for GET and
    ``previous_response_id`` (``input``: the conversation before it, ``response``: the answer), or
    only the backend that created a relayed one (``relayed = 1``)."""
    db_sql.append(
        """CREATE TABLE responses (
            id TEXT PRIMARY KEY, created REAL NOT NULL, client TEXT, backend TEXT NOT NULL,
            relayed INTEGER NOT NULL DEFAULT 0, input TEXT, response TEXT)"""
    )
    db_sql.append("CREATE INDEX responses_created ON responses (created)")


def _m3(db_sql: list[str]) -> None:
    db_sql.append("ALTER TABLE requests ADD COLUMN note TEXT")


def _m4(db_sql: list[str]) -> None:
    """strategy: designator: a designator's own row names the request it chose for, which says what was chosen."""
    db_sql.append("ALTER TABLE requests ADD COLUMN parent_id TEXT")
    db_sql.append("ALTER TABLE requests ADD COLUMN route_choice TEXT")


def _m5(db_sql: list[str]) -> None:
    """Attribution (the client's group, Open-WebUI's end user and chat) and the indexes the usage API groups on."""
    for col in ("client_group", "user_id", "user_name", "user_email", "chat_id"):
        db_sql.append(f"ALTER TABLE requests ADD COLUMN {col} TEXT")
    for col in ("client", "client_group", "user_id", "backend"):
        db_sql.append(f"CREATE INDEX requests_{col} ON requests ({col}, ts)")


def _m6(db_sql: list[str]) -> None:
    """Every config load: at start and each reload attempt (``trigger``), the file's sha256, ok or the error."""
    db_sql.append("CREATE TABLE reloads (ts REAL NOT NULL, trigger TEXT NOT NULL, sha256 TEXT, ok INTEGER NOT NULL, error TEXT)")
    db_sql.append("CREATE INDEX reloads_ts ON reloads (ts)")


# A migration step: SQL, or (for what SQL alone cannot do) a coroutine function of the connection.
Step = Union[str, Callable[[aiosqlite.Connection], Awaitable[None]]]


async def build_rollup(db: aiosqlite.Connection, chunk: int = 50_000) -> None:
    """The hourly usage rollup (``rollup.py``) from the rows already in the log, as the writer would have kept it."""
    await db.execute("DELETE FROM usage_hourly")
    cur = await db.execute(f"SELECT {', '.join(rollup.FIELDS)} FROM requests ORDER BY ts")  # (an hour is done once passed: few UPSERTs meet a row)
    acc: rollup.Tally = {}
    while rows := await cur.fetchmany(chunk):
        rollup.tally(acc, rows)
        if len(acc) >= chunk:  # (bounded memory on a huge log: the UPSERT adds to what is there)
            await db.executemany(rollup.UPSERT, rollup.params(acc))
            acc.clear()
    await db.executemany(rollup.UPSERT, rollup.params(acc))


def _m7(db_sql: list[Step]) -> None:
    """The hourly usage rollup the usage API, ``llmproxy stats`` and budgets read (``rollup.py``), built from the rows there."""
    db_sql += [rollup.TABLE, rollup.INDEX, build_rollup]


def _m8(db_sql: list[Step]) -> None:
    """log.bodies: a request's and its response's bodies (capped, secrets taken out), deleted with the row."""
    db_sql.append("CREATE TABLE bodies (id TEXT PRIMARY KEY REFERENCES requests (id), request TEXT, response TEXT, truncated INTEGER NOT NULL DEFAULT 0)")
    db_sql.append("CREATE TRIGGER requests_bodies AFTER DELETE ON requests BEGIN DELETE FROM bodies WHERE id = old.id; END")


def _m9(db_sql: list[Step]) -> None:
    """Usage is read from the rollup now: the per-key indexes only the old GROUP BYs used go, and every row
    written costs four b-tree inserts fewer.  ``requests_client`` stays (``recent``'s client filter)."""
    for name in ("requests_model", "requests_client_group", "requests_user_id", "requests_backend"):
        db_sql.append(f"DROP INDEX IF EXISTS {name}")


USERS_UPSERT = ("INSERT INTO users (user_id, name, email, seen) VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
                "name = excluded.name, email = excluded.email, seen = excluded.seen WHERE excluded.seen >= users.seen")


def _users(rows: list[LogRow]) -> list[tuple]:
    """The end users a batch names, for ``USERS_UPSERT``: id, name, email and when (Open-WebUI's rows only)."""
    return [(r.user_id, r.user_name, r.user_email, r.ts) for r in rows if r.user_id is not None and (r.user_name or r.user_email)]


async def _build_users(db: aiosqlite.Connection) -> None:
    await db.execute("""INSERT OR REPLACE INTO users (user_id, name, email, seen)
                        SELECT user_id, user_name, user_email, max(ts) FROM requests
                        WHERE user_id IS NOT NULL AND (user_name IS NOT NULL OR user_email IS NOT NULL) GROUP BY user_id""")


def _m10(db_sql: list[Step]) -> None:
    """Who each forwarded user id is (the latest name and email seen): ``stats --by user`` and the usage API name
    them from this small table, kept by the writer, instead of a scan of every row."""
    db_sql.append("CREATE TABLE users (user_id TEXT PRIMARY KEY, name TEXT, email TEXT, seen REAL NOT NULL)")
    db_sql.append(_build_users)


# Ordered migrations: index i brings the schema to user_version i+1. Append, never edit.
MIGRATIONS: list[Callable[[list[Any]], None]] = [_m1, _m2, _m3, _m4, _m5, _m6, _m7, _m8, _m9, _m10]


class NewerDatabase(Exception):
    """The file's schema is newer than this llmproxy knows: written by a later release."""


async def migrate(db: aiosqlite.Connection, path: Path | str = "the request log", upto: int | None = None) -> int:
    """Apply the migrations the file has not seen (up to version ``upto``: all); returns the schema version.
    A newer file is refused, untouched."""
    await db.create_function(*rollup.FUNCTION, deterministic=True)
    (version,) = await (await db.execute("PRAGMA user_version")).fetchone()
    if version > len(MIGRATIONS):
        raise NewerDatabase(f"{path} has schema version {version}, written by a newer llmproxy; this one knows up to "
                            f"version {len(MIGRATIONS)}. Upgrade llmproxy, or point log.path at another file; "
                            "the file was not changed")
    upto = len(MIGRATIONS) if upto is None else upto
    for i in range(version, upto):
        stmts: list[Step] = []
        MIGRATIONS[i](stmts)
        for s in stmts:
            if isinstance(s, str):
                await db.execute(s)
            else:
                t = time.perf_counter()
                await s(db)
                log.info("request log: %s took %.1f s (schema version %d)", s.__name__, time.perf_counter() - t, i + 1)
        await db.execute(f"PRAGMA user_version = {i + 1}")
        await db.commit()
    return max(version, upto)


class RequestLog:
    """Bounded queue + one writer task; rows are written in batches of up to ``batch``."""

    def __init__(self, path: Path, maxsize: int = 100_000, batch: int = 2000, linger: float = 0.02) -> None:
        self.path = path
        self.queue: asyncio.Queue[LogRow] = asyncio.Queue(maxsize)
        self.batch = batch
        self.linger = linger  # seconds rows wait for company: at most 1/linger commits a second below ``batch`` rows
        self.written = 0
        self.dropped = 0
        self._db: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            await migrate(self._db, self.path)
        except NewerDatabase:
            await self._db.close()
            self._db = None
            raise
        self._task = asyncio.create_task(self._run(), name="requestlog-writer")

    async def record_reload(self, rec: dict) -> None:
        """One row in ``reloads`` (off the request path: a load or reload is rare)."""
        if self._db is None:
            return
        try:
            await self._db.execute("INSERT INTO reloads (ts, trigger, sha256, ok, error) VALUES (?, ?, ?, ?, ?)",
                                   (rec["ts"], rec["trigger"], rec["sha256"], int(rec["ok"]), rec["error"]))
            await self._db.commit()
        except Exception:  # a disk error must not stop a reload
            log.exception("request log: recording a reload failed")

    async def prune(self, before: float, batch: int = 500, pause: float = 0.05) -> int:
        """Delete the rows older than ``before`` (a time.time()), ``batch`` at a time, each its own short
        transaction with a pause after it, so the writer is never held up for long; returns how many."""
        if self._db is None:
            return 0
        deleted = 0
        while True:
            # (a row's bodies go with it, by the trigger of migration 8; the hourly rollup stays)
            cur = await self._db.execute("DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests WHERE ts < ? LIMIT ?)", (before, batch))
            await self._db.commit()
            deleted += cur.rowcount
            if cur.rowcount < batch:
                return deleted
            await asyncio.sleep(pause)

    def put(self, row: LogRow) -> None:
        """Queue a row; never blocks. A full queue counts the row as dropped."""
        try:
            self.queue.put_nowait(row)
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("request log queue full: row %s dropped (%d so far)", row.id, self.dropped)

    async def flush(self) -> None:
        """Return once every row queued so far is committed."""
        if self._task is not None and not self._task.done():
            await self.queue.join()

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _run(self) -> None:
        assert self._db is not None
        q = self.queue
        while True:
            rows = [await q.get()]
            if self.linger and q.qsize() < self.batch:
                # Let rows gather, even when some are already waiting: under load a writer that went
                # at once would commit a handful of rows at a time, and every commit costs locks,
                # WAL page writes and two GIL hand-overs to aiosqlite's thread.
                await asyncio.sleep(self.linger)
            while len(rows) < self.batch and not q.empty():
                rows.append(q.get_nowait())
            try:
                # the rows, their hours in the rollup and their bodies: one transaction
                for sql, params in _parts(rows):
                    await self._db.execute(sql, params)
                await self._db.executemany(rollup.UPSERT, rollup.params(rollup.tally({}, map(rollup.of_row, rows))))
                users = _users(rows)
                if users:
                    await self._db.executemany(USERS_UPSERT, users)
                kept = [(r.id, *r.bodies) for r in rows if r.bodies is not None]
                if kept:
                    await self._db.executemany("INSERT INTO bodies (id, request, response, truncated) VALUES (?, ?, ?, ?)", kept)
                await self._db.commit()
                self.written += len(rows)
            except Exception:  # a disk error must not kill the writer
                log.exception("request log: writing %d rows failed", len(rows))
                self.dropped += len(rows)
                try:
                    await self._db.rollback()  # none of the batch, rather than its rows without their rollup
                except Exception:
                    log.exception("request log: rollback failed")
            finally:
                for _ in rows:
                    q.task_done()


def new_row(request_id: str, front: str, endpoint: str) -> LogRow:
    return LogRow(id=request_id, ts=time.time(), front=front, endpoint=endpoint, t0=time.monotonic())


def attempt_json(attempts: list[dict]) -> str:
    return orjson.dumps(attempts).decode()

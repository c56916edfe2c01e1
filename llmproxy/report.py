"""What the log says: usage grouped by model, backend, client, group, user, tag or day, and recent rows.

Plain sqlite3 on a read-only connection (``llmproxy stats``, and the admin API through a thread).
Usage comes from the hourly rollup (``rollup.py``) for the whole hours of the range and from raw
rows (``requests_ts`` index) for the part-hour before them; its medians come from the rollup's
latency histograms (within 9 % of the exact ones).  ``recent`` walks the ``requests_ts`` index
newest first (``requests_client`` serves its client filter).
"""
from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from . import rollup
from .requestlog import COLUMNS

# by → (key expression, extra FROM, extra WHERE)
_TAGS = """json_each('["' || replace(replace(replace(tags, '\\', '\\\\'), '"', '\\"'), ',', '","') || '"]') AS t"""
KEYS: dict[str, tuple[str, str, str]] = {
    "model": ("model", "", ""),
    "backend": ("backend", "", ""),
    "client": ("client", "", ""),
    "group": ("client_group", "", ""),
    "user": ("user_id", "", ""),
    "tag": ("t.value", ", " + _TAGS, " AND tags IS NOT NULL"),
    "day": ("date(ts, 'unixepoch')", "", ""),
}


def connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def usage(con: sqlite3.Connection, by: str, since: float, *, local_days: bool = False) -> list[dict[str, Any]]:
    """One dict per key, most requests first: counts, tokens, cost and the medians of first-byte and total ms.

    Sums are exact: whole hours from the rollup, the part-hour before the first from raw rows (rows
    deleted by ``log.keep_days`` are missing from that part only).  Medians come from histograms:
    within one bucket (9 %) of the exact ones.  Local days in a zone whose offset is not whole hours,
    and a file without the rollup (read before a newer llmproxy migrated it), are read from raw rows
    alone (``usage_from_rows``: exact medians, slower).
    """
    if not rollup.present(con) or (by == "day" and local_days and not _whole_hours(since, time.time())):
        return usage_from_rows(con, by, since, local_days=local_days)
    groups: dict[Any, list] = {}  # key → [requests, errors, prompt, completion, cached, cost | None, {bucket: n}, {bucket: n}]
    keys = _keys(by, local_days)
    col = "tags" if by == "tag" else KEYS[by][0] if by != "day" else None
    for hour, value, n, errors, prompt, completion, cached, cost, fb, total in _rolled(con, since, col):
        for key in keys(hour, value):
            g = groups.get(key)
            if g is None:
                g = groups[key] = [0, 0, 0, 0, 0, None, {}, {}]
            _add(g, n, errors, prompt, completion, cached, cost)
            rollup.merge(g[6], fb)
            rollup.merge(g[7], total)
    out = [{"key": k, "requests": g[0], "errors": g[1], "prompt_tokens": g[2], "completion_tokens": g[3], "cached_tokens": g[4],
            "cost_usd": round(g[5], 10) if g[5] is not None else None,
            "first_byte_ms_p50": rollup.p50(g[6]), "total_ms_p50": rollup.p50(g[7])} for k, g in groups.items()]
    out.sort(key=lambda g: (-g["requests"], g["key"] is not None, g["key"] or ""))
    if by == "user":
        _names(con, out)
    return out


def _names(con: sqlite3.Connection, groups: Iterable[dict[str, Any]]) -> None:
    """``by=user``: each id's latest name and email (ids are Open-WebUI's UUIDs), from the ``users`` table."""
    try:
        known = {uid: (name, email) for uid, name, email in con.execute("SELECT user_id, name, email FROM users")}
    except sqlite3.OperationalError:  # a file from before migration 10
        known = {}
    for g in groups:
        g["name"], g["email"] = known.get(g["key"], (None, None))


def _add(g: list, n: int, errors: int, prompt: int, completion: int, cached: int, cost: float | None) -> None:
    """One rollup row's sums into a group's [requests, errors, prompt, completion, cached, cost | None, …]."""
    g[0] += n
    g[1] += errors
    g[2] += prompt
    g[3] += completion
    g[4] += cached
    if cost is not None:
        g[5] = cost if g[5] is None else g[5] + cost


def _rolled(con: sqlite3.Connection, since: float, col: str | None) -> Iterable[tuple]:
    """(hour, the value of ``col`` (a rollup key column; None: no column), requests, errors, prompt, completion,
    cached, cost, first-byte and total histograms) since ``since``: whole hours from the rollup, the part-hour
    before the first of them tallied from raw rows."""
    start = math.ceil(since / rollup.SPAN) * rollup.SPAN
    yield from con.execute(f"""SELECT hour, {col or 'NULL'}, requests, errors, prompt_tokens, completion_tokens, cached_tokens, cost_usd,
                                      first_byte_ms, total_ms FROM usage_hourly WHERE hour >= ?""", (start,))
    part = rollup.tally({}, con.execute(f"SELECT {', '.join(rollup.FIELDS)} FROM requests WHERE ts >= ? AND ts < ?", (since, start)))
    i = 1 + rollup.KEY.index(col) if col else None
    for k, a in part.items():
        yield (k[0], None if i is None else k[i], *a[:5], a[7], a[8], a[9])


def _keys(by: str, local_days: bool) -> Callable[[int, Any], Iterable[Any]]:
    """(hour, the key column's value) → the keys a rollup row counts under: one, several for tags, none for a row without tags."""
    if by == "tag":
        return lambda hour, tags: tags.split(",") if tags is not None else ()
    if by == "day":
        convert, days = time.localtime if local_days else time.gmtime, {}

        def day(hour: int, _: Any) -> tuple[str]:
            d = days.get(hour)
            if d is None:
                d = days[hour] = (time.strftime("%Y-%m-%d", convert(hour)),)
            return d
        return day
    return lambda hour, value: (value,)


def _whole_hours(since: float, now: float) -> bool:
    """The local zone's offset from UTC is whole hours over the range (so a UTC hour lies in one local day)."""
    return all(time.localtime(t).tm_gmtoff % 3600 == 0 for t in (since, now, (since + now) / 2))


def usage_from_rows(con: sqlite3.Connection, by: str, since: float, *, local_days: bool = False) -> list[dict[str, Any]]:
    """``usage`` from raw rows alone (exact medians; the time grows with the rows in the range)."""
    key, join, where = KEYS[by]
    if by == "day" and local_days:
        key = "date(ts, 'unixepoch', 'localtime')"
    rows = f"FROM requests{join} WHERE ts >= ?{where}"
    groups: dict[Any, dict[str, Any]] = {}
    for k, n, errors, prompt, completion, cached, cost in con.execute(
            f"""SELECT {key} AS k, count(*), coalesce(sum(status >= 400 OR status IS NULL), 0), coalesce(sum(prompt_tokens), 0),
                       coalesce(sum(completion_tokens), 0), coalesce(sum(cached_tokens), 0), sum(cost_usd)
                {rows} GROUP BY k ORDER BY count(*) DESC, k""", (since,)):
        groups[k] = {"key": k, "requests": n, "errors": errors, "prompt_tokens": prompt, "completion_tokens": completion,
                     "cached_tokens": cached, "cost_usd": round(cost, 10) if cost is not None else None,
                     "first_byte_ms_p50": None, "total_ms_p50": None}
    for col in ("first_byte_ms", "total_ms"):
        for k, p50 in con.execute(  # the median: the middle row (the mean of the two middle ones) of each key
                f"""SELECT k, avg(v) FROM (
                        SELECT k, v, row_number() OVER (PARTITION BY k ORDER BY v) AS i, count(*) OVER (PARTITION BY k) AS n
                        FROM (SELECT {key} AS k, {col} AS v {rows} AND {col} IS NOT NULL))
                    WHERE i IN ((n + 1) / 2, (n + 2) / 2) GROUP BY k""", (since,)):
            if k in groups:
                groups[k][col + "_p50"] = round(p50, 1)
    if by == "user":
        _names(con, groups.values())
    return list(groups.values())


def recent(con: sqlite3.Connection, limit: int, *, status: str | None = None, model: str | None = None,
           client: str | None = None) -> list[dict[str, Any]]:
    """The latest rows, newest first; ``status`` is a code or ``error`` (400 and above, or none)."""
    where, args = [], []
    if status:
        if status == "error":
            where.append("(status >= 400 OR status IS NULL)")
        else:
            where.append("status = ?")
            args.append(int(status))
    if model:
        where.append("(model = ? OR requested_model = ?)")
        args += [model, model]
    if client:
        where.append("client = ?")
        args.append(client)
    sql = f"SELECT {', '.join(COLUMNS)} FROM requests {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY ts DESC LIMIT ?"
    return [dict(zip(COLUMNS, r)) for r in con.execute(sql, (*args, limit))]


# split → column, for usage per day and split value (the dashboard's charts)
SPLITS: dict[str, str] = {"model": "model", "client": "client", "user": "user_id", "backend": "backend"}


def usage_split(con: sqlite3.Connection, split: str, since: float) -> list[dict[str, Any]]:
    """One dict per (UTC day, value of ``split``): counts, tokens and cost; days in order, most requests first within a day.
    From the rollup as ``usage`` is (exact sums): the admin API reads the file of the llmproxy serving it, which migrated it."""
    col = SPLITS[split]
    acc: dict[tuple, list] = {}
    day_of = _keys("day", False)  # hour → (its UTC day,)
    for hour, value, n, errors, prompt, completion, cached, cost, _, _ in _rolled(con, since, col):
        (day,) = day_of(hour, None)
        g = acc.get((day, value))
        if g is None:
            g = acc[(day, value)] = [0, 0, 0, 0, 0, None]
        _add(g, n, errors, prompt, completion, cached, cost)
    rows = [(d, v, *g) for (d, v), g in acc.items()]
    rows.sort(key=lambda r: (r[0], -r[2], r[1] is not None, r[1] or ""))
    return [{"key": day, "split": value, "requests": n, "errors": errors, "prompt_tokens": prompt, "completion_tokens": completion,
             "cached_tokens": cached, "cost_usd": round(cost, 10) if cost is not None else None}
            for day, value, n, errors, prompt, completion, cached, cost in rows]


def request(con: sqlite3.Connection, request_id: str) -> dict[str, Any] | None:
    """One row by id, or None."""
    row = con.execute(f"SELECT {', '.join(COLUMNS)} FROM requests WHERE id = ?", (request_id,)).fetchone()
    return dict(zip(COLUMNS, row)) if row else None


def reloads(con: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """The latest config loads (start and each reload attempt), newest first."""
    return [{"ts": ts, "trigger": trigger, "sha256": sha, "ok": bool(ok), "error": error}
            for ts, trigger, sha, ok, error in con.execute(
                "SELECT ts, trigger, sha256, ok, error FROM reloads ORDER BY ts DESC, rowid DESC LIMIT ?", (limit,))]


def bodies(con: sqlite3.Connection, request_id: str) -> dict[str, Any] | None:
    """A request's kept bodies (log.bodies): {"request", "response", "truncated"}; None when none were kept."""
    try:
        row = con.execute("SELECT request, response, truncated FROM bodies WHERE id = ?", (request_id,)).fetchone()
    except sqlite3.OperationalError:  # a file from before migration 8
        return None
    return None if row is None else {"request": row[0], "response": row[1], "truncated": bool(row[2])}

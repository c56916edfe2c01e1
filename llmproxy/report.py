"""What the log says: usage grouped by model, backend, client, group, user, tag or day, and recent rows.

Plain sqlite3 on a read-only connection (``llmproxy stats``, and the admin API through a thread).
Every query is bounded by ``ts >= since`` on the ``requests_ts`` index; the per-key indexes of
migration 4 serve the ``client`` / ``user`` / ``group`` / ``backend`` filters.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

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
    """One dict per key, most requests first: counts, tokens, cost and the medians of first-byte and total ms."""
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
    """One dict per (UTC day, value of ``split``): counts, tokens and cost; days in order, most requests first within a day."""
    col = SPLITS[split]
    return [{"key": day, "split": value, "requests": n, "errors": errors, "prompt_tokens": prompt, "completion_tokens": completion,
             "cached_tokens": cached, "cost_usd": round(cost, 10) if cost is not None else None}
            for day, value, n, errors, prompt, completion, cached, cost in con.execute(
                f"""SELECT date(ts, 'unixepoch') AS d, {col} AS s, count(*), coalesce(sum(status >= 400 OR status IS NULL), 0),
                           coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), coalesce(sum(cached_tokens), 0), sum(cost_usd)
                    FROM requests WHERE ts >= ? GROUP BY d, s ORDER BY d, count(*) DESC, s""", (since,))]


def request(con: sqlite3.Connection, request_id: str) -> dict[str, Any] | None:
    """One row by id, or None."""
    row = con.execute(f"SELECT {', '.join(COLUMNS)} FROM requests WHERE id = ?", (request_id,)).fetchone()
    return dict(zip(COLUMNS, row)) if row else None


def reloads(con: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """The latest config loads (start and each reload attempt), newest first."""
    return [{"ts": ts, "trigger": trigger, "sha256": sha, "ok": bool(ok), "error": error}
            for ts, trigger, sha, ok, error in con.execute(
                "SELECT ts, trigger, sha256, ok, error FROM reloads ORDER BY ts DESC, rowid DESC LIMIT ?", (limit,))]

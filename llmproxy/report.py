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
    if by == "user":  # ids are Open-WebUI's UUIDs: each user's latest name and email too (bare columns of the max(ts) row)
        for g in groups.values():
            g["name"] = g["email"] = None
        for k, name, email, _ in con.execute(
                f"""SELECT user_id, user_name, user_email, max(ts) {rows} AND user_id IS NOT NULL
                    AND (user_name IS NOT NULL OR user_email IS NOT NULL) GROUP BY user_id""", (since,)):
            if k in groups:
                groups[k]["name"], groups[k]["email"] = name, email
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

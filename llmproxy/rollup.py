"""The hourly usage rollup: one row per UTC hour and (client, group, tags, user, model, backend).

Each row holds the hour's requests, errors, tokens, cost and two latency histograms.  The log
writer adds each batch to it in the same transaction as the batch's rows (``tally`` in Python,
then one ``UPSERT`` per key), migration 7 builds it from the rows already there, and it is read
by ``report.usage`` (whole hours; the part-hour at the start of a range comes from raw rows) and
by ``quota.rebuild`` (budget spend per UTC day).  ``log.keep_days`` deletes raw rows, never these:
they are a few per hour, and a running budget period's spend must outlive its rows.

Latency (first byte, total) is kept as a histogram of fixed log buckets, ``STEPS`` to a doubling
from 1/128 ms up: bucket 0 holds [0, 1/128) ms, bucket b ≥ 1 holds [2^((b-1)/8 - 7), 2^(b/8 - 7)) ms,
each 2^(1/8) ≈ 9 % wide (1 ms is bucket 57, 1 s bucket 136, 1 h bucket 231).  A median read from it
(``p50``) lies in the bucket of the exact median, so within 9 % of it.
"""
from __future__ import annotations

import math
from operator import attrgetter
from typing import Any, Iterable

import orjson

SPAN = 3600  # seconds a rollup row covers (UTC hours: whole days in any zone of whole-hour offset)
STEPS = 8  # histogram buckets per doubling
LOW = 7  # doublings below 1 ms that have buckets of their own (below 2^-7 ms: bucket 0)
KEY = ("client", "client_group", "tags", "user_id", "model", "backend")
# what ``tally`` reads of a row, in this order (a LogRow's attributes, or a SELECT's columns)
FIELDS = ("ts", *KEY, "status", "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens",
          "reasoning_tokens", "cost_usd", "first_byte_ms", "total_ms")
of_row = attrgetter(*FIELDS)
FLOOR = 2.0 ** -LOW
SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens")

TABLE = f"""CREATE TABLE IF NOT EXISTS usage_hourly (
    hour INTEGER NOT NULL, k TEXT NOT NULL, {', '.join(f'{c} TEXT' for c in KEY)},
    {', '.join(f'{c} INTEGER NOT NULL' for c in SUMS)}, cost_usd REAL, first_byte_ms TEXT, total_ms TEXT)"""
INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS usage_hourly_key ON usage_hourly (hour, k)"
_COLS = ("hour", "k", *KEY, *SUMS, "cost_usd", "first_byte_ms", "total_ms")
# ``k`` is the key as JSON: SQLite's UNIQUE treats NULLs as distinct, so the key columns (which may be NULL) cannot be it.
UPSERT = (f"INSERT INTO usage_hourly ({', '.join(_COLS)}) VALUES ({', '.join('?' * len(_COLS))}) ON CONFLICT (hour, k) DO UPDATE SET "
          + ", ".join(f"{c} = {c} + excluded.{c}" for c in SUMS)
          + ", cost_usd = coalesce(cost_usd + excluded.cost_usd, cost_usd, excluded.cost_usd)"
          + ", first_byte_ms = llmproxy_hist_add(first_byte_ms, excluded.first_byte_ms), total_ms = llmproxy_hist_add(total_ms, excluded.total_ms)")

def present(con: Any) -> bool:
    """Whether a (sqlite3) connection's file has the rollup yet: one written before migration 7 has not."""
    return con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage_hourly'").fetchone() is not None


Tally = dict  # (hour, *KEY) → [requests, errors, prompt, completion, cached, cache_write, reasoning, cost | None, {bucket: n}, {bucket: n}]


def tally(acc: Tally, rows: Iterable[tuple], log2=math.log2) -> Tally:  # noqa: ANN001 - log2: a local name is faster
    """Add ``rows`` (tuples of ``FIELDS``) to ``acc``; returns it."""
    for ts, c, g, t, u, m, b, status, p, co, ca, cw, re, cost, fb, tot in rows:
        k = (int(ts // SPAN) * SPAN, c, g, t, u, m, b)
        a = acc.get(k)
        if a is None:
            a = acc[k] = [0, 0, 0, 0, 0, 0, 0, None, {}, {}]
        a[0] += 1
        if status is None or status >= 400:
            a[1] += 1
        if p:
            a[2] += p
        if co:
            a[3] += co
        if ca:
            a[4] += ca
        if cw:
            a[5] += cw
        if re:
            a[6] += re
        if cost is not None:
            a[7] = cost if a[7] is None else a[7] + cost
        if fb is not None:
            x = 0 if fb < FLOOR else 1 + int((log2(fb) + LOW) * STEPS)
            h = a[8]
            h[x] = h.get(x, 0) + 1
        if tot is not None:
            x = 0 if tot < FLOOR else 1 + int((log2(tot) + LOW) * STEPS)
            h = a[9]
            h[x] = h.get(x, 0) + 1
    return acc


def _hist(h: dict) -> str | None:
    return orjson.dumps(h, option=orjson.OPT_NON_STR_KEYS).decode() if h else None


def params(acc: Tally) -> list[tuple]:
    """``acc`` as the parameters of ``UPSERT``, one tuple a key."""
    return [(k[0], orjson.dumps(k[1:]).decode(), *k[1:], *a[:8], _hist(a[8]), _hist(a[9])) for k, a in acc.items()]


def hist_add(a: str | None, b: str | None) -> str | None:
    """Two histograms (JSON text) as one: the SQL function ``llmproxy_hist_add`` the UPSERT merges with."""
    if not a or not b:
        return a or b
    h = orjson.loads(a)
    for x, n in orjson.loads(b).items():
        h[x] = h.get(x, 0) + n
    return orjson.dumps(h).decode()


def merge(into: dict[str, int], h: str | dict | None) -> None:
    """Add a histogram (JSON text from the table, or a ``tally``'s dict) into ``into`` (keys as text)."""
    if not h:
        return
    if isinstance(h, str):
        for x, n in orjson.loads(h).items():
            into[x] = into.get(x, 0) + n
    else:
        for x, n in h.items():
            x = str(x)
            into[x] = into.get(x, 0) + n


def bounds(x: int) -> tuple[float, float]:
    """The [low, high) ms of bucket ``x``."""
    return (0.0, FLOOR) if x == 0 else (2 ** ((x - 1) / STEPS - LOW), 2 ** (x / STEPS - LOW))


def p50(h: dict[Any, int]) -> float | None:
    """The median of a histogram, as the exact one is defined (the middle value, or the mean of the
    two middle ones), each middle value placed within its bucket by its rank there (geometrically;
    linearly in bucket 0).  Within the exact median's bucket: within 9 % of it."""
    n = sum(h.values())
    if not n:
        return None
    items = sorted((int(x), c) for x, c in h.items() if c)

    def at(i: int) -> float:
        for x, c in items:
            if i < c:
                lo, hi = bounds(x)
                f = (i + 0.5) / c
                return lo + (hi - lo) * f if x == 0 else lo * (hi / lo) ** f
            i -= c
        raise AssertionError("rank beyond the histogram")

    return round((at((n - 1) // 2) + at(n // 2)) / 2, 1)


# The SQL function ``UPSERT`` needs, for ``create_function`` on the writing connection.
FUNCTION = ("llmproxy_hist_add", 2, hist_add)

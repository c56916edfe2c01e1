"""The hourly usage rollup: kept by the log writer, built by migration 7 on an upgrade, and the usage
it answers equal to the rows' (sums exactly, medians within their 9 % histogram bucket)."""
from __future__ import annotations

import asyncio
import random
import sqlite3
import time

import aiosqlite
import orjson
import pytest

from llmproxy import report, rollup
from llmproxy.requestlog import COLUMNS, MIGRATIONS, RequestLog, build_rollup, migrate, new_row

NOW = time.time()
BYS = ("model", "backend", "client", "group", "user", "tag", "day")


def random_rows(n: int, seed: int = 7, days: float = 3) -> list:
    rnd = random.Random(seed)
    pick = rnd.choice
    rows = []
    for i in range(n):
        r = new_row(f"r{i:06d}", "openai", "chat")
        r.ts = NOW - rnd.random() * days * 86400
        r.client = pick(["webui", "cron", None])
        r.client_group = pick(["family", None])
        r.tags = pick(["family,ui", "batch", None, "ui"])
        r.user_id = pick(["u-ann", "u-bob", "", None])
        r.model, r.backend = pick(["gpt", "claude", None]), pick(["oa", "an", None])
        r.status = pick([200, 200, 200, 429, 502, None])
        r.prompt_tokens, r.completion_tokens = pick([None, rnd.randrange(5000)]), pick([None, rnd.randrange(900)])
        r.cached_tokens, r.cache_write_tokens, r.reasoning_tokens = pick([None, 0, 64]), pick([None, 10]), pick([None, 7])
        r.cost_usd = pick([None, rnd.random() / 100])
        r.first_byte_ms = pick([None, rnd.random() * 900, rnd.random() * 0.5])
        r.total_ms = pick([None, rnd.random() * 90000])
        rows.append(r)
    return rows


async def write(db, rows) -> None:  # noqa: ANN001
    log = RequestLog(db, linger=0.001, batch=97)  # many small batches: the same (hour, key) is added to again and again
    await log.start()
    for r in rows:
        log.put(r)
        if r.id.endswith("3"):
            await asyncio.sleep(0)
    await log.close()
    assert log.written == len(rows) and log.dropped == 0


def same_usage(con: sqlite3.Connection, by: str, since: float, local_days: bool = False) -> None:
    got = {g["key"]: g for g in report.usage(con, by, since, local_days=local_days)}
    want = {g["key"]: g for g in report.usage_from_rows(con, by, since, local_days=local_days)}
    assert set(got) == set(want), by
    for k, w in want.items():
        g = got[k]
        for f in ("requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens"):
            assert g[f] == w[f], (by, k, f)
        assert g["cost_usd"] == (pytest.approx(w["cost_usd"], rel=1e-9) if w["cost_usd"] is not None else None)
        for f in ("first_byte_ms_p50", "total_ms_p50"):
            assert (g[f] is None) == (w[f] is None)
            if w[f] is not None:
                assert abs(g[f] - w[f]) <= 0.091 * w[f] + 0.1, (by, k, f, g[f], w[f])  # a bucket, and both rounded to 0.1 ms
    assert [g["requests"] for g in report.usage(con, by, since, local_days=local_days)] == sorted(
        (g["requests"] for g in got.values()), reverse=True)


async def test_usage_from_the_rollup_equals_the_rows(tmp_path):
    db = tmp_path / "log.db"
    await write(db, random_rows(3000))
    con = report.connect(db)
    try:
        (n,) = con.execute("SELECT count(*) FROM usage_hourly").fetchone()
        assert 0 < n < 3000
        for since in (NOW - 2.5 * 86400 - 1234.5, NOW - 1800, NOW - 30 * 86400, NOW + 60):  # part-hours at the start, and none
            for by in BYS:
                same_usage(con, by, since)
            for split, col in report.SPLITS.items():  # the dashboard's per-day charts, from the rollup too
                got = [(g["key"], g["split"], g["requests"], g["errors"], g["prompt_tokens"], g["completion_tokens"], g["cached_tokens"])
                       for g in report.usage_split(con, split, since)]
                want = con.execute(f"""SELECT date(ts, 'unixepoch') AS d, {col}, count(*), coalesce(sum(status >= 400 OR status IS NULL), 0),
                                              coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), coalesce(sum(cached_tokens), 0)
                                       FROM requests WHERE ts >= ? GROUP BY d, {col}""", (since,)).fetchall()
                assert sorted(got, key=repr) == sorted(want, key=repr), split
                assert [g[0] for g in got] == sorted(g[0] for g in got)  # days in order
    finally:
        con.close()


async def test_stats_local_days_whole_hour_zones_from_the_rollup_others_from_rows(tmp_path, monkeypatch):
    db = tmp_path / "log.db"
    await write(db, random_rows(1500, seed=3))
    con = report.connect(db)
    try:
        for tz in ("Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Adelaide"):
            monkeypatch.setenv("TZ", tz)
            time.tzset()
            same_usage(con, "day", NOW - 2 * 86400 - 77, local_days=True)
    finally:
        con.close()
        monkeypatch.delenv("TZ")
        time.tzset()


def table(db) -> dict:  # noqa: ANN001
    con = sqlite3.connect(db)
    out = {}
    for row in con.execute("SELECT * FROM usage_hourly"):
        hour, k, *rest = row
        *sums, cost, fb, total = rest[len(rollup.KEY):]
        out[(hour, k)] = (*rest[:len(rollup.KEY)], *sums, round(cost, 12) if cost is not None else None,
                          orjson.loads(fb) if fb else None, orjson.loads(total) if total else None)
    con.close()
    return out


async def test_the_writers_rollup_is_the_one_built_from_the_rows(tmp_path):
    db = tmp_path / "log.db"
    await write(db, random_rows(2000, seed=11))
    kept = table(db)
    async with aiosqlite.connect(db) as con:
        await migrate(con)  # (registers the SQL function the rebuild's UPSERT uses)
        await build_rollup(con, chunk=300)  # in pieces, as on a large log
        await con.commit()
    assert table(db) == kept


async def test_an_old_database_is_upgraded_and_its_rows_rolled_up(tmp_path):
    db = tmp_path / "old.db"
    async with aiosqlite.connect(db) as con:
        await migrate(con, upto=6)  # as an llmproxy before the rollup left it
    rows = random_rows(1200, seed=5)
    con = sqlite3.connect(db)
    con.executemany(f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                    [tuple(getattr(r, c) for c in COLUMNS) for r in rows])
    con.commit()
    assert con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'usage_hourly'").fetchone()[0] == 0
    con.close()
    log = RequestLog(db)
    await log.start()  # migrations 7 and 8
    more = random_rows(300, seed=6)
    for r in more:
        r.id = "new-" + r.id
        log.put(r)
    await log.close()
    con = report.connect(db)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        for by in BYS:
            same_usage(con, by, NOW - 4 * 86400)
        (n,) = con.execute("SELECT sum(requests) FROM usage_hourly").fetchone()
        assert n == 1500
    finally:
        con.close()


def test_median_of_a_histogram_is_within_its_bucket():
    rnd = random.Random(1)
    for n in (1, 2, 3, 10, 101, 1000):
        values = sorted(rnd.choice([rnd.random() * 10, rnd.random() * 5000, rnd.random() / 200]) for _ in range(n))
        acc = rollup.tally({}, [(NOW, *[None] * 6, 200, 0, 0, 0, 0, 0, None, v, None) for v in values])
        (a,) = acc.values()
        exact = (values[(n - 1) // 2] + values[n // 2]) / 2
        assert rollup.p50(a[8]) == pytest.approx(exact, rel=0.091, abs=0.06)
    assert rollup.p50({}) is None

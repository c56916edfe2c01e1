"""The request log writer on its own: every row stored once, in few and few kinds of statements."""
from __future__ import annotations

import asyncio
import sqlite3

from llmproxy.requestlog import COLUMNS, RequestLog, _parts, new_row


W = len(COLUMNS)


def test_batches_use_few_statements_of_few_sizes():
    kinds: set[str] = set()
    for n in range(1, 700):
        rows = [new_row(f"r{i}", "openai", "chat") for i in range(n)]
        parts = _parts(rows)
        assert len(parts) <= 12
        assert [p[i * W] for _, p in parts for i in range(len(p) // W)] == [r.id for r in rows]  # every row once, in order
        kinds |= {sql for sql, _ in parts}
    assert len(kinds) <= 9  # sqlite3 caches one prepared statement per kind: it must not grow with the batch sizes seen


async def test_rows_arriving_at_any_pace_are_all_stored(tmp_path):
    log = RequestLog(tmp_path / "log.db", linger=0.005)
    await log.start()
    sent = 0
    for burst in (1, 7, 300, 2, 513, 1):
        for _ in range(burst):
            row = new_row(f"r{sent:05d}", "openai", "chat")
            row.status = 200
            log.put(row)
            sent += 1
        await asyncio.sleep(0.01)
    await log.close()
    ids = [r[0] for r in sqlite3.connect(tmp_path / "log.db").execute("SELECT id FROM requests ORDER BY id")]
    assert ids == [f"r{i:05d}" for i in range(sent)] and log.written == sent and log.dropped == 0

"""The request log writer on its own: every row stored once, in few and few kinds of statements."""
from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys

import yaml

from conftest import openai_config
from llmproxy.requestlog import COLUMNS, MIGRATIONS, RequestLog, _parts, new_row


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


async def test_what_a_row_leaves_unset_is_stored_as_null(tmp_path):
    """(None goes through an adapter registered for speed: it must still bind as SQL NULL, not as text or 0.)"""
    log = RequestLog(tmp_path / "log.db", linger=0)
    await log.start()
    row = new_row("r1", "openai", "chat")
    row.status, row.prompt_tokens, row.cost_usd = 200, 12, 0.5
    log.put(row)
    await log.close()
    types = dict(zip(COLUMNS, sqlite3.connect(tmp_path / "log.db").execute(
        f"SELECT {', '.join(f'typeof({c})' for c in COLUMNS)} FROM requests").fetchone()))
    assert types["error"] == types["user_id"] == types["completion_tokens"] == "null"
    assert (types["status"], types["prompt_tokens"], types["cost_usd"], types["id"]) == ("integer", "integer", "real", "text")
    assert sum(t == "null" for t in types.values()) == sum(getattr(row, c) is None for c in COLUMNS)


def test_an_older_llmproxy_refuses_a_newer_database_untouched(tmp_path):
    db = tmp_path / "llmproxy.db"
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    con.close()
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(openai_config("http://127.0.0.1:9")))
    out = subprocess.run([sys.executable, "-m", "llmproxy", "serve", "-c", str(tmp_path / "router.yaml"), "--listen", "127.0.0.1:0"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert f"{db} has schema version {len(MIGRATIONS) + 1}, written by a newer llmproxy; this one knows up to version {len(MIGRATIONS)}" in out.stderr
    assert "Traceback" not in out.stderr
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
    assert con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0  # not migrated
    con.close()

"""log.keep_days: rows older than that are deleted, exactly those, in small batches; `stats --vacuum`."""
from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time

from conftest import Reply, fixture_bytes, openai_config
from llmproxy.requestlog import new_row


async def test_retention_deletes_exactly_the_old_rows(upstream, proxy):
    up = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/nonstream-text.json"))})
    p = await proxy(openai_config(up.url, log={"keep_days": 2}))
    assert p.state.snap.config.log_keep_days == 2
    now = time.time()
    for i, age_days in enumerate([9, 3, 2.01, 1.99, 0.5]):  # three older than 2 days, two younger
        row = new_row(f"old{i}", "openai", "chat")
        row.ts = now - age_days * 86400
        p.state.log.put(row)
    c = p.openai()
    await c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    await p.state.log.flush()

    deleted = await p.state.log.prune(now - 2 * 86400, batch=2)  # as the background task does, two rows a batch
    assert deleted == 3
    assert sorted(r["id"] for r in await p.rows() if r["id"].startswith("old")) == ["old3", "old4"]
    assert len(await p.rows()) == 3  # and the real request
    assert await p.state.log.prune(now - 2 * 86400) == 0

    db = str(p.state.snap.config.log_path)
    out = subprocess.run([sys.executable, "-m", "llmproxy", "stats", "--db", db, "--vacuum"], capture_output=True, text=True)
    assert out.returncode == 0 and " MB → " in out.stdout, out.stderr
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM requests").fetchone()[0] == 3
    con.close()


async def test_retention_runs_at_start_in_the_background(proxy):
    p = await proxy(openai_config("http://127.0.0.1:9"))  # keep everything: nothing deleted
    old = new_row("ancient", "openai", "chat")
    old.ts = time.time() - 400 * 86400
    p.state.log.put(old)
    await p.state.log.flush()
    assert [r["id"] for r in await p.rows()] == ["ancient"]

    p2 = await proxy(openai_config("http://127.0.0.1:9", log={"keep_days": 30}))  # same folder, same file: a restart
    for _ in range(100):
        if not await p2.rows():
            break
        await asyncio.sleep(0.02)
    assert await p2.rows() == []

"""Reload records: each config load a row in SQLite, the latest in /health, `llmproxy stats --reloads`."""
from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys

import aiohttp
import yaml

from conftest import openai_config
from llmproxy.app import reload


async def test_each_reload_attempt_is_recorded_latest_in_health_and_listed(upstream, proxy):
    cfg = openai_config("http://127.0.0.1:9")
    p = await proxy(cfg)
    p.path.write_text(yaml.safe_dump({**cfg, "aliases": {"fresh": "gpt"}}))
    assert await reload(p.app)
    good = hashlib.sha256(p.path.read_bytes()).hexdigest()
    bad_text = "backends:\n  up: {api: openai, url: 'http://x', headers: {Authorization: 'Bearer sk-upstream-secret-0123456789'}}\nmodels:\n  gpt: {backend: upp}\n"
    p.path.write_text(bad_text)
    assert not await reload(p.app)

    async with aiohttp.ClientSession() as s, s.get(p.url + "/health") as r:
        last = (await r.json())["config"]["last_reload"]
    assert last["ok"] is False and last["trigger"] == "reload"
    assert last["sha256"] == hashlib.sha256(bad_text.encode()).hexdigest()
    assert "backend 'upp' is not defined" in last["error"]

    con = sqlite3.connect(p.state.snap.config.log_path)
    rows = con.execute("SELECT trigger, sha256, ok, error FROM reloads ORDER BY ts").fetchall()
    con.close()
    assert [(t, ok) for t, _, ok, _ in rows] == [("start", 1), ("reload", 1), ("reload", 0)]
    assert rows[1][1] == good and rows[1][3] is None
    assert "sk-upstream-secret" not in str(rows)
    assert p.state.reloads == {"ok": 1, "failed": 1}

    out = subprocess.run([sys.executable, "-m", "llmproxy", "stats", "--db", str(p.state.snap.config.log_path), "--reloads"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == 3
    assert "reload  " in out[0] and "FAILED: models.gpt.backend: backend 'upp' is not defined" in out[0]
    assert f"reload  {good[:12]}  ok" in out[1] and "start" in out[2]

"""A real `llmproxy serve` subprocess: SIGHUP reload (good and bad files, a stream across it) and SIGTERM."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from conftest import Reply, fixture_bytes, openai_config

CHAT = {"model": "gpt", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, path: Path, cfg: dict) -> None:
        self.path, self.cfg = path, cfg
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.write(cfg)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmproxy", "serve", "-c", str(path), "--listen", f"127.0.0.1:{self.port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )

    def write(self, cfg: dict | str) -> None:
        self.path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))

    async def get(self, path: str) -> dict:
        async with aiohttp.ClientSession() as s:
            async with s.get(self.url + path) as r:
                return await r.json()

    async def ready(self) -> None:
        for _ in range(100):
            try:
                await self.get("/health")
                return
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
        raise AssertionError(self.proc.stdout.read().decode() if self.proc.poll() is not None else "no /health")

    def rows(self) -> list[tuple]:
        con = sqlite3.connect(self.path.parent / "llmproxy.db")
        try:
            return con.execute("SELECT requested_model, status FROM requests ORDER BY ts").fetchall()
        finally:
            con.close()


@pytest.fixture
async def served(tmp_path):
    started: list[Served] = []

    def start(cfg: dict) -> Served:
        s = Served(tmp_path / "router.yaml", cfg)
        started.append(s)
        return s

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
        s.proc.wait()
        s.proc.stdout.close()


async def stream_text(url: str, body: dict) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s:
        async with s.post(url + "/v1/chat/completions", json=body) as r:
            return r.status, await r.read()


def slow_stream() -> Reply:
    # 28 events, ~60 ms apart: about 1.7 s of streaming
    return Reply(fixture_bytes("openai/stream-text-usage.sse"), content_type="text/event-stream", split=300, gap=0.06)


async def test_sighup_reload_live_bad_file_kept_and_stream_survives(upstream, served):
    up = await upstream({"/v1/chat/completions": slow_stream()})
    cfg = openai_config(up.url)
    s = served(cfg)
    await s.ready()
    before = await s.get("/health")

    running = asyncio.create_task(stream_text(s.url, CHAT))
    await asyncio.sleep(0.3)  # the stream is under way
    s.write({**cfg, "aliases": {"fresh": "gpt"}})
    os.kill(s.proc.pid, signal.SIGHUP)
    for _ in range(100):
        health = await s.get("/health")
        if health["config"]["sha256"] != before["config"]["sha256"]:
            break
        await asyncio.sleep(0.05)
    assert health["status"] == "ok" and health["config"]["loaded_at"] > before["config"]["loaded_at"]
    models = [m["id"] for m in (await s.get("/v1/models"))["data"]]
    assert "fresh" in models  # live without a restart
    assert not running.done(), "the stream should still be running across the reload"
    status, body = await running
    assert status == 200 and body == fixture_bytes("openai/stream-text-usage.sse").replace(
        [e for e in fixture_bytes("openai/stream-text-usage.sse").split(b"\n\n") if b'"usage":{' in e][0] + b"\n\n", b""
    )

    # A bad file: the old config stays, /health says why.
    s.write("backends:\n  up: {api: openai, url: 'http://x'}\nmodels:\n  gpt: {backend: upp}\n")
    os.kill(s.proc.pid, signal.SIGHUP)
    for _ in range(100):
        health = await s.get("/health")
        if health["status"] != "ok":
            break
        await asyncio.sleep(0.05)
    assert health["status"] == "degraded"
    assert "models.gpt.backend: backend 'upp' is not defined in backends; did you mean 'up'?" in health["config"]["reload_error"]
    status, _ = await stream_text(s.url, {**CHAT, "model": "fresh"})
    assert status == 200  # still served by the last good config
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(10) == 0
    assert s.rows() == [("gpt", 200), ("fresh", 200)]


async def test_sigterm_lets_the_stream_finish_and_flushes_the_log(upstream, served):
    up = await upstream({"/v1/chat/completions": slow_stream()})
    s = served(openai_config(up.url))
    await s.ready()
    done_before = [await stream_text(s.url, {**CHAT, "stream": True}) for _ in range(3)]
    running = asyncio.create_task(stream_text(s.url, CHAT))
    await asyncio.sleep(0.3)
    s.proc.send_signal(signal.SIGTERM)
    status, body = await running
    assert status == 200 and body.endswith(b"data: [DONE]\n\n")
    assert await asyncio.to_thread(s.proc.wait, 10) == 0
    out = s.proc.stdout.read().decode()
    assert "→ up gpt-4o-mini (stream)" in out and "← up ✓ 200 first byte" in out
    assert len(done_before) == 3 and s.rows() == [("gpt", 200)] * 4
    with pytest.raises(aiohttp.ClientError):  # no longer accepting
        await s.get("/health")


async def test_sigterm_past_shutdown_grace_ends_requests_with_503_shutting_down(upstream, served):
    long = Reply(fixture_bytes("openai/stream-text-usage.sse"), content_type="text/event-stream", split=300, gap=0.3)  # ~8 s
    up = await upstream({"/v1/chat/completions": long})
    hung = await upstream({"/v1/chat/completions": Reply(hang_before=30)})
    cfg = openai_config(up.url, limits={"shutdown_grace": 1})
    cfg["backends"]["hung"] = {"api": "openai", "url": hung.url + "/v1"}
    cfg["models"]["slow"] = {"backend": "hung"}
    s = served(cfg)
    await s.ready()
    streaming = asyncio.create_task(stream_text(s.url, CHAT))  # its first bytes reach the client
    waiting = asyncio.create_task(stream_text(s.url, {**CHAT, "model": "slow"}))  # no byte yet
    while not (up.seen and hung.seen):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    s.proc.send_signal(signal.SIGTERM)
    status, body = await streaming
    events = [e for e in body.split(b"\n\n") if e]
    assert status == 200 and len(events) > 1 and events[0].startswith(b"data: {")
    assert events[-1].startswith(b'data: {"error"') and b'"code":"shutting_down"' in events[-1] and b"limits.shutdown_grace" in events[-1]
    status, body = await waiting
    assert status == 503 and b'"code":"shutting_down"' in body
    assert await asyncio.to_thread(s.proc.wait, 10) == 0
    out = s.proc.stdout.read().decode()
    assert "Traceback" not in out and "Unhandled" not in out, out
    assert sorted(s.rows()) == [("gpt", 503), ("slow", 503)]

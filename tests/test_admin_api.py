"""/admin/api/usage, /admin/api/requests, /admin/api/config behind the admin key; `llmproxy stats --by …` from the same queries."""
from __future__ import annotations

import subprocess
import sys
import time

import aiohttp
import openai
import pytest

from conftest import Reply, fixture_bytes, openai_config

KEY_A = "client-key-aaaaaaaa"
KEY_B = "client-key-bbbbbbbb"
ADMIN = "admin-key-0123456789"
UPSTREAM_SECRET = "sk-upstream-secret-0123456789"
MSGS = [{"role": "user", "content": "hi"}]


async def busy_proxy(upstream, proxy):  # noqa: ANN001, ANN201
    up = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/nonstream-text.json"))})
    cfg = openai_config(up.url, models={"gpt": {"backend": "up", "price": {"input": 1000, "output": 2000}}, "other": {"backend": "up"}},
                        aliases={"g": "gpt"})
    cfg["access"] = {"admin_key": ADMIN, "groups": {"family": {"rpm": 100}}, "clients": [
        {"name": "webui", "key": KEY_A, "group": "family", "tags": ["family", "ui"], "models": ["g*"]},
        {"name": "cron", "key": KEY_B, "tags": ["batch"]}]}
    p = await proxy(cfg)
    for uid in ("u-ann", "u-ann", "u-bob"):
        await p.openai(api_key=KEY_A, default_headers={"X-OpenWebUI-User-Id": uid}).chat.completions.create(model="g", messages=MSGS)
    with pytest.raises(openai.PermissionDeniedError):
        await p.openai(api_key=KEY_A).chat.completions.create(model="other", messages=MSGS)
    await p.openai(api_key=KEY_B).chat.completions.create(model="other", messages=MSGS)
    return p


async def get(p, path: str, key: str | None = ADMIN) -> tuple[int, dict]:  # noqa: ANN001
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as s, s.get(p.url + path, headers=headers) as r:
        return r.status, await r.json()


async def test_usage_sums_equal_the_rows(upstream, proxy):
    p = await busy_proxy(upstream, proxy)
    rows = await p.rows()
    for by, col in (("client", "client"), ("user", "user_id"), ("model", "model"), ("backend", "backend")):
        status, body = await get(p, f"/admin/api/usage?by={by}&since=1h")
        assert status == 200 and body["by"] == by and abs(body["since"] - (time.time() - 3600)) < 5
        got = {g["key"]: g for g in body["groups"]}
        assert set(got) == {r[col] for r in rows}
        for key, g in got.items():
            mine = [r for r in rows if r[col] == key]
            assert g["requests"] == len(mine) and g["errors"] == sum(r["status"] >= 400 for r in mine)
            assert g["prompt_tokens"] == sum(r["prompt_tokens"] or 0 for r in mine)
            assert g["completion_tokens"] == sum(r["completion_tokens"] or 0 for r in mine)
            assert g["cached_tokens"] == sum(r["cached_tokens"] or 0 for r in mine)
            costs = [r["cost_usd"] for r in mine if r["cost_usd"] is not None]
            assert g["cost_usd"] == (pytest.approx(sum(costs)) if costs else None)
            fb = sorted(r["first_byte_ms"] for r in mine if r["first_byte_ms"] is not None)
            if fb:
                mid = (fb[(len(fb) - 1) // 2] + fb[len(fb) // 2]) / 2
                assert g["first_byte_ms_p50"] == pytest.approx(mid, abs=0.06)
    _, body = await get(p, "/admin/api/usage?by=client")
    assert {g["key"]: (g["requests"], g["errors"]) for g in body["groups"]} == {"webui": (4, 1), "cron": (1, 0)}
    assert next(g for g in body["groups"] if g["key"] == "webui")["cost_usd"] == pytest.approx(3 * 0.152)
    _, body = await get(p, "/admin/api/usage?by=user")
    assert {g["key"]: g["requests"] for g in body["groups"]} == {"u-ann": 2, "u-bob": 1, None: 2}
    _, body = await get(p, "/admin/api/usage?by=tag&since=" + str(int(time.time() - 60)))
    assert {g["key"]: g["requests"] for g in body["groups"]} == {"family": 4, "ui": 4, "batch": 1}
    _, body = await get(p, "/admin/api/usage?by=day")
    assert [(g["key"], g["requests"]) for g in body["groups"]] == [(time.strftime("%Y-%m-%d", time.gmtime()), 5)]
    _, body = await get(p, "/admin/api/usage?by=model")  # the name after alias resolution
    assert {g["key"] for g in body["groups"]} == {"gpt", "other", None}
    status, body = await get(p, "/admin/api/usage?by=nothing")
    assert status == 400 and "by: expected one of" in body["error"]["message"]


async def test_requests_and_config_and_no_secret_anywhere(upstream, proxy):
    p = await busy_proxy(upstream, proxy)
    _, body = await get(p, "/admin/api/requests?limit=2")
    assert [r["client"] for r in body["requests"]] == ["cron", "webui"]
    _, body = await get(p, "/admin/api/requests?client=webui&status=403")
    assert [(r["requested_model"], r["status"]) for r in body["requests"]] == [("other", 403)]
    _, body = await get(p, "/admin/api/requests?model=gpt")
    assert len(body["requests"]) == 3 and body["requests"][0]["user_id"] == "u-bob"
    _, body = await get(p, "/admin/api/requests?status=error")
    assert [r["status"] for r in body["requests"]] == [403]
    status, body = await get(p, "/admin/api/config")
    assert status == 200 and body["config"]["access"]["admin_key"] == "***"
    assert [c["key"] for c in body["config"]["access"]["clients"]] == ["***", "***"]
    assert body["config"]["backends"]["up"]["headers"]["Authorization"] == "***"
    async with aiohttp.ClientSession() as s, s.get(p.url + "/admin/api/config", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
        text = await r.text()
    db = p.state.snap.config.log_path
    stored = db.read_bytes() + (db.with_name(db.name + "-wal").read_bytes() if db.with_name(db.name + "-wal").exists() else b"")
    for secret in (KEY_A, KEY_B, ADMIN, UPSTREAM_SECRET):
        assert secret not in text and secret.encode() not in stored


@pytest.mark.parametrize("key, status", [(KEY_A, 403), (KEY_B, 403), (None, 401), ("wrong-key-00000000", 401)])
async def test_admin_api_refuses_client_keys(upstream, proxy, key, status):
    p = await busy_proxy(upstream, proxy)
    for path in ("/admin/api/usage", "/admin/api/requests", "/admin/api/config"):
        got, body = await get(p, path, key)
        assert got == status and "admin_key" in body["error"]["message"]


async def test_stats_by_client_user_group_tag(upstream, proxy):
    p = await busy_proxy(upstream, proxy)
    await p.rows()
    db = str(p.state.snap.config.log_path)

    def stats(by: str) -> dict[str, list[str]]:
        out = subprocess.run([sys.executable, "-m", "llmproxy", "stats", "--db", db, "--by", by], capture_output=True, text=True, check=True).stdout
        return {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}

    client = stats("client")
    assert client["webui"][:2] == ["4", "1"] and client["webui"][-1] == "0.4560" and client["cron"][:2] == ["1", "0"]
    assert {k: v[0] for k, v in stats("user").items()} == {"u-ann": "2", "u-bob": "1", "-": "2"}
    assert {k: v[0] for k, v in stats("group").items()} == {"family": "4", "-": "1"}
    assert {k: v[0] for k, v in stats("tag").items()} == {"family": "4", "ui": "4", "batch": "1"}


async def test_usage_by_user_names_each_user(upstream, proxy):
    """Open-WebUI's user ids are UUIDs: usage by user also gives each one's latest name and email (from the rows), so
    the owner can tell who spent what without looking the ids up in Open-WebUI."""
    up = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/nonstream-text.json"))})
    cfg = openai_config(up.url, models={"gpt": {"backend": "up", "price": {"input": 1000, "output": 2000}}})
    cfg["access"] = {"admin_key": ADMIN, "clients": [{"name": "webui", "key": KEY_A}, {"name": "cron", "key": KEY_B}]}
    p = await proxy(cfg)
    ann = "181aa85e-bbb4-44de-8bce-670817b001ac"
    for uid, name, email in ((ann, "Ann", "ann@old.lan"), (ann, "Ann M%C3%BCller %26 Co", "ann@home.lan"), ("u-bob", None, None)):
        headers = {"X-OpenWebUI-User-Id": uid, **({"X-OpenWebUI-User-Name": name, "X-OpenWebUI-User-Email": email} if name else {})}
        await p.openai(api_key=KEY_A, default_headers=headers).chat.completions.create(model="gpt", messages=MSGS)
    await p.openai(api_key=KEY_B).chat.completions.create(model="gpt", messages=MSGS)
    await p.rows()
    _, body = await get(p, "/admin/api/usage?by=user")
    assert {g["key"]: (g["requests"], g["name"], g["email"]) for g in body["groups"]} == {
        ann: (2, "Ann Müller & Co", "ann@home.lan"), "u-bob": (1, None, None), None: (1, None, None)}
    _, body = await get(p, "/admin/api/usage?by=client")
    assert "name" not in body["groups"][0]
    out = subprocess.run([sys.executable, "-m", "llmproxy", "stats", "--db", str(p.state.snap.config.log_path), "--by", "user"],
                         capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0].split()[0] == "user" and lines[0].rstrip().endswith("name")
    assert lines[2].startswith(ann) and lines[2].rstrip().endswith("Ann Müller & Co <ann@home.lan>")

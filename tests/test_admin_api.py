"""/admin/api/usage, /admin/api/requests(/{id}), /admin/api/reloads, /admin/api/config behind the admin key; the dashboard's
files at /admin without it; `llmproxy stats --by …` from the same queries."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import aiohttp
import openai
import pytest
from yarl import URL

from llmproxy.app import reload

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


def assert_sums(g: dict, mine: list[dict]) -> None:
    """A usage group's counts, tokens and cost are those of its rows."""
    assert g["requests"] == len(mine) and g["errors"] == sum(r["status"] >= 400 for r in mine)
    assert g["prompt_tokens"] == sum(r["prompt_tokens"] or 0 for r in mine)
    assert g["completion_tokens"] == sum(r["completion_tokens"] or 0 for r in mine)
    assert g["cached_tokens"] == sum(r["cached_tokens"] or 0 for r in mine)
    costs = [r["cost_usd"] for r in mine if r["cost_usd"] is not None]
    assert g["cost_usd"] == (pytest.approx(sum(costs)) if costs else None)


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
            assert_sums(g, mine)
            fb = sorted(r["first_byte_ms"] for r in mine if r["first_byte_ms"] is not None)
            if fb:
                mid = (fb[(len(fb) - 1) // 2] + fb[len(fb) // 2]) / 2
                assert abs(g["first_byte_ms_p50"] - mid) <= 0.091 * mid + 0.06  # from histograms: within a bucket (9 %), rounded to 0.1
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


async def test_usage_split_by_day(upstream, proxy):
    p = await busy_proxy(upstream, proxy)
    rows = await p.rows()
    today = time.strftime("%Y-%m-%d", time.gmtime())
    for split, col in (("model", "model"), ("client", "client"), ("user", "user_id"), ("backend", "backend")):
        status, body = await get(p, f"/admin/api/usage?by=day&split={split}&since=30d")
        assert status == 200 and body["by"] == "day" and body["split"] == split
        got = {g["split"]: g for g in body["groups"]}
        assert {g["key"] for g in body["groups"]} == {today} and len(got) == len(body["groups"])
        assert set(got) == {r[col] for r in rows}
        for value, g in got.items():
            assert_sums(g, [r for r in rows if r[col] == value])
    _, body = await get(p, "/admin/api/usage?by=day&split=client")
    assert [(g["split"], g["requests"]) for g in body["groups"]] == [("webui", 4), ("cron", 1)]  # most requests first
    for bad in ("/admin/api/usage?by=model&split=client", "/admin/api/usage?by=day&split=tag"):
        status, body = await get(p, bad)
        assert status == 400 and "split: expected by=day" in body["error"]["message"]


async def test_one_request_and_reloads(upstream, proxy):
    p = await busy_proxy(upstream, proxy)
    rows = await p.rows()
    status, body = await get(p, f"/admin/api/requests/{rows[0]['id']}")
    assert status == 200 and body["request"] == {k: rows[0][k] for k in body["request"]} and body["bodies"] is None
    assert set(body["request"]) == set(rows[0]) and body["attempts"] == []
    status, body = await get(p, "/admin/api/requests/no-such-id")
    assert status == 404 and "no-such-id" in body["error"]["message"]
    # an attempt story: two keys, the first one refused upstream
    row = rows[-1]
    story = [{"backend": "up", "model": "gpt-4o-mini", "status": 429, "ms": 3.0, "key": 1, "error": "slow down"},
             {"backend": "up", "model": "gpt-4o-mini", "status": 200, "ms": 5.0, "key": 2}]
    con = sqlite3.connect(p.state.snap.config.log_path)
    con.execute("UPDATE requests SET attempt_log = ? WHERE id = ?", (json.dumps(story), row["id"]))
    con.commit()
    con.close()
    _, body = await get(p, f"/admin/api/requests/{row['id']}")
    assert body["attempts"] == story
    status, body = await get(p, "/admin/api/reloads")
    assert status == 200 and [(r["trigger"], r["ok"], r["error"]) for r in body["reloads"]] == [("start", True, None)]
    assert body["reloads"][0]["sha256"] == p.state.snap.config.sha256
    p.path.write_text(p.path.read_text() + "\nnot: [valid\n")
    assert not await reload(p.app)
    _, body = await get(p, "/admin/api/reloads?limit=1")
    assert len(body["reloads"]) == 1 and body["reloads"][0]["trigger"] == "reload" and body["reloads"][0]["ok"] is False
    assert body["reloads"][0]["error"]


@pytest.mark.parametrize("key, status", [(KEY_A, 403), (None, 401), ("wrong-key-00000000", 401), (ADMIN, 200)])
async def test_new_admin_endpoints_are_guarded(upstream, proxy, key, status):
    p = await busy_proxy(upstream, proxy)
    rows = await p.rows()
    for path in ("/admin/api/usage?by=day&split=model", f"/admin/api/requests/{rows[0]['id']}", "/admin/api/reloads"):
        got, body = await get(p, path, key)
        assert got == status, path
        if status != 200:
            assert "admin_key" in body["error"]["message"]


async def test_dashboard_files_without_a_key_and_nothing_else(upstream, proxy):
    p = await busy_proxy(upstream, proxy)
    async with aiohttp.ClientSession() as s:
        for path in ("/admin", "/admin/"):
            async with s.get(p.url + path) as r:  # the page holds no data: no key needed
                assert r.status == 200 and r.content_type == "text/html" and "/admin/static/app.js" in await r.text()
                assert r.headers["Cache-Control"] == "no-cache" and r.headers["X-Content-Type-Options"] == "nosniff"
        for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css"), ("index.html", "text/html")):
            async with s.get(p.url + "/admin/static/" + name) as r:
                assert r.status == 200 and r.content_type == ctype and r.charset == "utf-8"
                etag = r.headers["ETag"]
            async with s.get(p.url + "/admin/static/" + name, headers={"If-None-Match": etag}) as r:
                assert r.status == 304
        for path in ("/admin/static/../admin.py", "/admin/static/%2e%2e/admin.py", "/admin/static/..%2fadmin.py",
                     "/admin/static/%2e%2e%2f%2e%2e%2fsetup.cfg", "/admin/static/..%5cadmin.py", "/admin/static/.hidden",
                     "/admin/static/nothing.js", "/admin/static/%2fetc%2fpasswd", "/admin/static/admin.py",
                     "/admin/static/%00.js", "/admin/static/dashboard/app.js"):
            async with s.get(URL(p.url + path, encoded=True)) as r:  # sent as written, not normalised by the client
                body = await r.read()
                assert r.status == 404, path
                assert b"import" not in body and b"root:" not in body and b"[metadata]" not in body


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

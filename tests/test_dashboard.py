"""The dashboard at /admin in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright):
the admin key prompt, the charts and the recent requests of what was just sent, a request's attempts,
health, reloads, and one streamed answer from the playground.  Screenshots go to artifacts/ (git-ignored)."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from conftest import fixture_bytes, openai_config

try:
    from playwright.async_api import async_playwright
except ImportError:  # pragma: no cover - CI has it (the test extra)
    async_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ADMIN = "admin-key-0123456789"
KEY_UI, KEY_CRON = "client-key-webui-000", "client-key-cron-0000"

pytestmark = [
    pytest.mark.skipif(async_playwright is None, reason="the dashboard test needs the playwright package (pip install playwright; "
                                                         "it is in the test extra)"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="the dashboard test needs Debian's chromium at /usr/bin/chromium "
                                                     "(apt-get install chromium)"),
]


async def chat(request: web.Request) -> web.StreamResponse:
    """The fake upstream: a recorded stream (piece by piece) when asked to stream, a recorded answer otherwise."""
    body = orjson.loads(await request.read())
    if not body.get("stream"):
        return web.Response(body=fixture_bytes("openai/nonstream-text.json"), content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for event in fixture_bytes("openai/stream-text-usage.sse").split(b"\n\n"):
        if event.strip():
            await resp.write(event + b"\n\n")
            await asyncio.sleep(0.02)
    await resp.write_eof()
    return resp


async def test_dashboard_in_chromium(upstream, proxy):
    up = await upstream({"/v1/chat/completions": chat})
    cfg = openai_config(up.url, models={"gpt": {"backend": "up", "model": "gpt-4o-mini", "price": {"input": 1000, "output": 2000}},
                                        "llama": {"backend": "up", "model": "llama3.2"}})
    cfg["access"] = {"admin_key": ADMIN, "clients": [{"name": "webui", "key": KEY_UI}, {"name": "cron", "key": KEY_CRON}]}
    cfg.setdefault("log", {})["bodies"] = True  # the detail panel shows them
    p = await proxy(cfg)
    msgs = [{"role": "user", "content": "hi"}]
    for _ in range(3):
        await p.openai(api_key=KEY_UI).chat.completions.create(model="gpt", messages=msgs)
    for _ in range(2):
        await p.openai(api_key=KEY_CRON).chat.completions.create(model="llama", messages=msgs)
    sent = await p.rows()
    today = time.strftime("%Y-%m-%d", time.gmtime(sent[0]["ts"]))  # (the UTC day the charts put them on)
    ARTIFACTS.mkdir(exist_ok=True)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)  # the page keeps to its own CSP
            await page.goto(p.url + "/admin")
            # no key yet: the API said 401 and the page asks for the admin key
            await page.wait_for_selector("#key-dialog[open]", timeout=5000)
            await page.fill("#key-input", ADMIN)
            await page.click("#key-form button[type=submit]")

            # the charts: today's bars add up to what was sent, one series per model
            bars = "#chart-requests rect[data-day='%s']" % today
            await page.wait_for_function(f"""() => [...document.querySelectorAll("{bars}")]
                                              .reduce((a, r) => a + Number(r.dataset.value), 0) === 5""", timeout=5000)
            assert sorted(await page.eval_on_selector_all(bars, "rs => rs.map(r => r.dataset.split + '=' + r.dataset.value)")) == ["gpt=3", "llama=2"]
            assert await page.locator(f"#chart-tokens rect[data-day='{today}']").count() == 2
            assert await page.locator(f"#chart-cost rect[data-day='{today}']").count() == 1  # only gpt has a price
            await page.select_option("#split", "client")
            await page.wait_for_function(f"""() => [...document.querySelectorAll("{bars}")].map(r => r.dataset.split).sort().join() === "cron,webui" """,
                                         timeout=5000)

            # the recent requests, newest first
            rows = page.locator("#recent tbody tr")
            assert await rows.count() == 5
            assert [m.strip(" ⇣") for m in await page.locator("#recent tbody td.model").all_inner_texts()] == ["llama"] * 2 + ["gpt"] * 3
            await page.fill("#filters input[name=client]", "webui")
            await page.wait_for_function("() => document.querySelectorAll('#recent tbody tr').length === 3", timeout=5000)
            await page.click("#filters button[type=reset]")
            await page.wait_for_function("() => document.querySelectorAll('#recent tbody tr').length === 5", timeout=5000)

            # a request's story
            await rows.first.click()
            await page.wait_for_selector("#detail:not([hidden]) .attempts li", timeout=5000)
            detail = await page.inner_text("#detail")
            assert "llama3.2" in detail and "cron" in detail
            assert "Bodies" in detail and '"content": "hi"' in detail and "chat.completion" in detail  # the request's and the answer's
            await page.screenshot(path=str(ARTIFACTS / "dashboard-detail.png"))
            await page.click("#detail-close")

            # health, config, reloads
            await page.wait_for_selector("#backends [data-backend=up]", timeout=5000)
            assert "closed" in await page.inner_text("#backends [data-backend=up]")
            assert "start" in await page.inner_text("#reloads tbody")
            config = await page.text_content("#config-json")
            assert ADMIN not in config and KEY_UI not in config and "***" in config

            # the playground: a client key lists the models; the answer streams in; its row appears
            await page.fill("#client-key", KEY_UI)
            await page.dispatch_event("#client-key", "change")
            await page.wait_for_function("() => [...document.querySelectorAll('#play-model option')].map(o => o.value).includes('gpt')", timeout=5000)
            await page.select_option("#play-model", "gpt")
            await page.click("#send")
            await page.wait_for_function("() => document.querySelector('#play-status').textContent.startsWith('done')", timeout=10000)
            assert "2,869,461" in await page.inner_text("#answer")
            await page.wait_for_function("() => document.querySelectorAll('#recent tbody tr').length === 6", timeout=5000)
            assert "⇣" in await page.locator("#recent tbody td.model").first.inner_text()  # the streamed one, on top

            await page.evaluate("() => window.scrollTo(0, 0)")  # (a sticky header would be drawn where the page was scrolled to)
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            await page.set_viewport_size({"width": 390, "height": 844})
            await page.wait_for_timeout(300)  # the charts redraw at the new width
            await page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
            assert errors == []
        finally:
            await browser.close()
    print(f"screenshots: {ARTIFACTS / 'dashboard.png'}, {ARTIFACTS / 'dashboard-phone.png'}")

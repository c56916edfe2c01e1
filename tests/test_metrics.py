"""GET /metrics: Prometheus text format, read back with prometheus-client's own parser; counters moved by the requests sent."""
from __future__ import annotations

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import Reply, fixture_bytes, openai_config
from llmproxy.app import reload

CLIENT, ADMIN, SCRAPE = "sk-client-0123456789", "admin-key-0123456789", "scrape-key-0123456789"


async def scrape(url: str, key: str | None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics", headers=headers) as r:
        text = await r.text()
        if r.status != 200:
            return r.status, {}
        assert r.content_type == "text/plain"
    samples: dict = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            samples[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    return 200, samples


async def test_metrics_parsed_and_moved_by_the_requests_sent(upstream, proxy):
    up = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/stream-text-usage.sse"), content_type="text/event-stream")})
    down = await upstream({"/v1/chat/completions": Reply(b'{"error": {"message": "boom"}}', status=500)})
    cut = await upstream({"/v1/chat/completions": Reply(fixture_bytes("openai/stream-text-usage.sse"), content_type="text/event-stream",
                                                         split=[2000], gap=0.05, reset_after=1)})
    cfg = openai_config(up.url, models={"gpt": {"backend": "up", "model": "gpt-4o-mini", "price": {"input": 1000, "output": 2000}},
                                        "broken": {"backend": "down"}})
    cfg["backends"]["down"] = {"api": "openai", "url": down.url + "/v1"}
    cfg["backends"]["cut"] = {"api": "openai", "url": cut.url + "/v1"}
    cfg["models"]["cut"] = {"backend": "cut"}
    cfg["access"] = {"clients": [{"name": "me", "key": CLIENT}], "admin_key": ADMIN}
    cfg["metrics_key"] = SCRAPE
    p = await proxy(cfg)

    assert (await scrape(p.url, None))[0] == 401
    assert (await scrape(p.url, CLIENT))[0] == 401  # a client key opens nothing here
    assert (await scrape(p.url, ADMIN))[0] == 200
    _, before = await scrape(p.url, SCRAPE)
    assert not any(name == "llmproxy_requests_total" for name, _ in before)

    c = p.openai(api_key=CLIENT)
    for _ in range(2):
        stream = await c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}], stream=True,
                                                 stream_options={"include_usage": True})
        async for _ in stream:
            pass
    async with aiohttp.ClientSession() as s:
        async with s.post(p.url + "/v1/chat/completions", json={"model": "broken", "messages": [{"role": "user", "content": "hi"}]},
                          headers={"Authorization": f"Bearer {CLIENT}"}) as r:
            failed = r.status
        # a stream the backend drops after its first bytes: 200 to the client, the error in-band, and counted
        async with s.post(p.url + "/v1/chat/completions", json={"model": "cut", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
                          headers={"Authorization": f"Bearer {CLIENT}"}) as r:
            assert r.status == 200 and b'"error"' in await r.read()
    p.path.write_text(yaml.safe_dump(cfg))
    assert await reload(p.app)

    _, m = await scrape(p.url, SCRAPE)
    ok = (("backend", "up"), ("front", "openai"), ("model", "gpt"), ("status", "200"))
    assert m[("llmproxy_requests_total", ok)] == 2
    assert m[("llmproxy_requests_total", (("backend", "down"), ("front", "openai"), ("model", "broken"), ("status", str(failed))))] == 1
    assert m[("llmproxy_tokens_total", (("kind", "prompt"), ("model", "gpt")))] == 2 * 87
    assert m[("llmproxy_tokens_total", (("kind", "completion"), ("model", "gpt")))] == 2 * 26
    assert abs(m[("llmproxy_cost_usd_total", (("model", "gpt"),))] - 2 * (87 * 1000 + 26 * 2000) / 1e6) < 1e-9
    assert m[("llmproxy_first_byte_seconds_count", (("model", "gpt"),))] == 2
    assert m[("llmproxy_request_duration_seconds_count", (("model", "gpt"),))] == 2
    assert m[("llmproxy_request_duration_seconds_bucket", (("le", "+Inf"), ("model", "gpt")))] == 2
    assert m[("llmproxy_upstream_errors_total", (("backend", "down"), ("kind", "http_500")))] >= 1
    cut_kinds = {dict(labels)["kind"]: v for (name, labels), v in m.items() if name == "llmproxy_upstream_errors_total" and dict(labels)["backend"] == "cut"}
    assert sum(cut_kinds.values()) == 1, cut_kinds  # the in-stream error, by its kind
    assert m[("llmproxy_in_flight", ())] == 0
    assert m[("llmproxy_reloads_total", (("result", "ok"),))] == 1 and m[("llmproxy_reloads_total", (("result", "failed"),))] == 0
    assert m[("llmproxy_log_dropped_total", ())] == 0 and ("llmproxy_log_queue_depth", ()) in m
    assert ("llmproxy_cooling_down", (("what", "route"),)) in m
    rows = await p.rows()
    assert len(rows) == 4 and m[("llmproxy_log_written_total", ())] <= 4

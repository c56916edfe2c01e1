"""`llmproxy check`: warnings only it gives, and `--probe` asking each backend for its model list."""
from __future__ import annotations

import asyncio
import os
import sys

import orjson
import yaml

from conftest import Reply, openai_config
from test_lifecycle import free_port


async def check(tmp_path, cfg: dict | str, *args: str, env: dict | None = None) -> tuple[int, str]:
    path = tmp_path / "router.yaml"
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "llmproxy", "check", "-c", str(path), *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                env={**os.environ, **(env or {})})
    out, _ = await proc.communicate()
    return proc.returncode, out.decode()


async def test_check_warns_unused_backend_missing_price_empty_env(tmp_path):
    cfg = (
        "backends:\n"
        "  up: {api: openai, url: 'http://127.0.0.1:9/v1', headers: {Authorization: 'Bearer ${LLMPROXY_T_EMPTY}'}}\n"
        "  spare: {api: openai, url: 'http://127.0.0.1:9/v1'}\n"
        "  local: {api: ollama, url: 'http://127.0.0.1:9'}\n"
        "models:\n"
        "  gpt: {backend: up, model: gpt-4o-mini}\n"
        "  priced: {backend: up, price: {input: 1, output: 2}}\n"
        "  llama: {backend: local}\n"
    )
    code, out = await check(tmp_path, cfg, env={"LLMPROXY_T_EMPTY": ""})
    assert code == 0, out
    assert "warning: backends.spare: no model uses it" in out
    assert "warning: models.gpt: no price for its route(s) on up" in out
    assert "models.priced: no price" not in out and "models.llama: no price" not in out  # priced; local Ollama
    assert "warning: environment variable LLMPROXY_T_EMPTY is set to an empty string" in out


async def test_check_warns_open_listen_without_access(tmp_path):
    """Listening beyond loopback with no access: block is allowed (a trusted LAN) but said out loud; on loopback, or with access, not."""
    cfg = openai_config("http://127.0.0.1:9")
    said = "reaches beyond this machine and there is no access: block"
    for listen, access, warned in (("0.0.0.0:4000", None, True), ("192.168.1.5:4000", None, True), ("127.0.0.1:4000", None, False),
                                   ("[::1]:4000", None, False), ("0.0.0.0:4000", {"clients": [{"name": "me", "key": "sk-me-0123456789"}]}, False)):
        cfg["listen"] = listen
        cfg.pop("access", None)
        if access:
            cfg["access"] = access
        code, out = await check(tmp_path, cfg)
        assert code == 0, out
        assert (said in out) is warned, (listen, access, out)


async def test_check_probe_live_401_and_dead_backends(tmp_path, upstream):
    live = await upstream({"/v1/models": Reply(orjson.dumps({"object": "list", "data": [{"id": "a"}, {"id": "b"}]}))})
    denied = await upstream({"/v1/models": Reply(orjson.dumps({"error": {"message": "bad key", "type": "invalid_request_error"}}), status=401)})
    dead = f"http://127.0.0.1:{free_port()}"
    cfg = openai_config(live.url)
    cfg["backends"]["denied"] = {"api": "openai", "url": denied.url + "/v1", "headers": {"Authorization": "Bearer sk-wrong-0123456789abcdef"}}
    cfg["backends"]["dead"] = {"api": "openai", "url": dead + "/v1"}
    cfg["models"].update({"x": {"backend": "denied"}, "y": {"backend": "dead"}})

    code, out = await check(tmp_path, cfg, "--probe", "--timeout", "5")
    assert code == 1, out
    lines = {line.split()[0]: line for line in out.split("probe:\n", 1)[1].splitlines()}
    assert "reachable: 2 models listed" in lines["up"]
    assert "auth failed: HTTP 401" in lines["denied"]
    assert "unreachable:" in lines["dead"]
    assert "sk-wrong" not in out
    assert live.seen[0].headers["Authorization"] == "Bearer sk-upstream-secret-0123456789"

    del cfg["backends"]["denied"], cfg["backends"]["dead"], cfg["models"]["x"], cfg["models"]["y"]
    code, out = await check(tmp_path, cfg, "--probe")
    assert code == 0 and "reachable: 2 models listed" in out, out

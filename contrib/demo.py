"""`make demo`: start the built-in emulator and llmproxy, stream one chat through them, show the log row.

Everything runs on 127.0.0.1 on free ports and stops at the end; the log goes to a temporary folder.
"""
from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 15) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"process exited early with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def main() -> int:
    from openai import OpenAI

    tmp = Path(tempfile.mkdtemp(prefix="llmproxy-demo-"))
    mock_port, proxy_port = free_port(), free_port()
    env = {**os.environ, "DEMO_MOCK_PORT": str(mock_port), "DEMO_PROXY_PORT": str(proxy_port), "DEMO_LOG": str(tmp / "demo.db")}
    py = sys.executable
    print(f"• starting the upstream emulator: llmproxy mock --port {mock_port} --delay-ms 40")
    mock = subprocess.Popen([py, "-m", "llmproxy", "mock", "--port", str(mock_port), "--delay-ms", "40"], env=env, stderr=subprocess.DEVNULL)
    print(f"• starting llmproxy on contrib/demo.yaml (port {proxy_port})")
    console = open(tmp / "console.log", "w+")
    proxy = subprocess.Popen([py, "-m", "llmproxy", "serve", "-c", str(ROOT / "contrib" / "demo.yaml")], env=env, stderr=console)
    try:
        wait_http(f"http://127.0.0.1:{mock_port}/v1/models", mock)
        wait_http(f"http://127.0.0.1:{proxy_port}/health", proxy)
        client = OpenAI(base_url=f"http://127.0.0.1:{proxy_port}/v1", api_key="demo")
        print("• models:", ", ".join(m.id for m in client.models.list()))
        print("• streaming a chat with model 'demo' (an alias of mock-small):\n")
        stream = client.chat.completions.create(model="demo", stream=True, messages=[{"role": "user", "content": "Is llmproxy working?"}])
        for chunk in stream:
            for ch in chunk.choices:
                print(ch.delta.content or "", end="", flush=True)
        print("\n")
        time.sleep(0.3)
    finally:
        proxy.terminate()  # SIGTERM: llmproxy flushes its log and exits 0
        proxy.wait(10)
        mock.terminate()
        mock.wait(10)
    console.seek(0)
    print("• llmproxy's console log:")
    for line in console.read().splitlines():
        print("    " + line)
    con = sqlite3.connect(tmp / "demo.db")
    con.row_factory = sqlite3.Row
    print(f"• the request log ({tmp / 'demo.db'}), last row:")
    row = con.execute("SELECT * FROM requests ORDER BY ts DESC LIMIT 1").fetchone()
    for k in row.keys():
        if row[k] is not None:
            print(f"    {k:<18} {row[k]}")
    print(f"\n• llmproxy exited with {proxy.returncode}. Next: `make run` serves router.yaml on 127.0.0.1:4000.")
    return 0 if proxy.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

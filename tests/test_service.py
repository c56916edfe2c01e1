"""Running as a service: a real `llmproxy serve` talks systemd's notify protocol to a fake $NOTIFY_SOCKET,
writes the pid file `llmproxy reload` signals, and reloads on a change with --watch."""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import openai_config
from test_lifecycle import free_port


class FakeSystemd:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, addr: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + addr[1:] if addr.startswith("@") else addr)
        self.addr = addr
        self.got: list[dict[str, str]] = []

    def wait_for(self, key: str, timeout: float = 15) -> dict[str, str]:
        """Messages until one has ``key``; returns it (all are kept in ``got``)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            msg = dict(line.split("=", 1) for line in data.decode().split("\n"))
            self.got.append(msg)
            if key in msg:
                return msg
        raise AssertionError(f"no {key} from llmproxy; got {self.got}")

    def close(self) -> None:
        self.sock.close()


def start(tmp_path: Path, cfg: dict, env: dict[str, str], *args: str) -> tuple[subprocess.Popen, str]:
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(cfg))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmproxy", "serve", "-c", str(path), "--listen", f"127.0.0.1:{port}", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **env},
    )
    return proc, f"http://127.0.0.1:{port}"


def reloaded_and_stopped(fake: FakeSystemd, proc: subprocess.Popen) -> None:
    """systemd hears a good reload, then llmproxy stops cleanly on SIGTERM."""
    fake.wait_for("RELOADING")
    assert "reload FAILED" not in fake.wait_for("READY")["STATUS"]
    proc.send_signal(signal.SIGTERM)
    fake.wait_for("STOPPING")
    assert proc.wait(10) == 0


@pytest.fixture
def launch(tmp_path):
    """``fake, proc, url = launch(cfg, *serve_args, env=…, addr=…)``: a fake systemd and `llmproxy serve` told of it; READY=1 heard."""
    started: list[tuple[FakeSystemd, subprocess.Popen]] = []

    def go(cfg: dict, *args: str, env: dict | None = None, addr: str | None = None) -> tuple[FakeSystemd, subprocess.Popen, str]:
        fake = FakeSystemd(addr or "@llmproxy-test-" + secrets.token_hex(6))  # by default an abstract name, as systemd's own
        proc, url = start(tmp_path, cfg, {"NOTIFY_SOCKET": fake.addr, **(env or {})}, *args)
        started.append((fake, proc))
        return fake, proc, url

    yield go
    for fake, p in started:
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stdout.close()
        fake.close()


def test_notify_ready_reloading_ready_stopping_across_sighup_and_sigterm(tmp_path, launch):
    fake, proc, url = launch(openai_config("http://127.0.0.1:9"))
    ready = fake.wait_for("READY")
    assert ready["READY"] == "1" and "1 models, 0 requests served" in ready["STATUS"]
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=2):
        pass  # READY=1 came once it listens
    pid_file = tmp_path / "llmproxy.pid"
    assert pid_file.read_text().strip() == str(proc.pid)

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    proc.send_signal(signal.SIGHUP)
    reloading = fake.wait_for("RELOADING")
    assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) >= before
    again = fake.wait_for("READY")
    assert "reload FAILED" not in again["STATUS"]

    # a broken file: still RELOADING=1 then READY=1 (the old config runs on), and STATUS= says so
    (tmp_path / "router.yaml").write_text("backends: {}\n")
    proc.send_signal(signal.SIGHUP)
    fake.wait_for("RELOADING")
    assert "reload FAILED" in fake.wait_for("READY")["STATUS"]

    proc.send_signal(signal.SIGTERM)
    assert fake.wait_for("STOPPING")["STOPPING"] == "1"
    assert proc.wait(10) == 0
    assert not pid_file.exists()  # removed at exit
    assert "WATCHDOG" not in {k for m in fake.got for k in m}  # not asked for


def test_notify_watchdog_pings_at_half_the_interval(tmp_path, launch):
    fake, _, _ = launch(openai_config("http://127.0.0.1:9"), env={"WATCHDOG_USEC": "400000"}, addr=str(tmp_path / "notify.sock"))
    fake.wait_for("READY")
    t0 = time.monotonic()
    fake.wait_for("WATCHDOG")
    ping = fake.wait_for("WATCHDOG")
    assert ping["WATCHDOG"] == "1" and "models" in ping["STATUS"]
    assert time.monotonic() - t0 < 2


def test_reload_command_validates_then_signals_the_pid_file(tmp_path, launch):
    cfg = openai_config("http://127.0.0.1:9")
    fake, proc, _ = launch(cfg)
    fake.wait_for("READY")
    path = str(tmp_path / "router.yaml")
    llmproxy = [sys.executable, "-m", "llmproxy"]

    (tmp_path / "router.yaml").write_text("backends: {}\n")
    bad = subprocess.run([*llmproxy, "reload", "-c", path], capture_output=True, text=True)
    assert bad.returncode == 1 and "invalid, nothing reloaded" in bad.stderr  # nothing sent

    (tmp_path / "router.yaml").write_text(yaml.safe_dump({**cfg, "aliases": {"fresh": "gpt"}}))
    ok = subprocess.run([*llmproxy, "reload", "-c", path], capture_output=True, text=True)
    assert ok.returncode == 0 and f"sent SIGHUP to llmproxy (pid {proc.pid})" in ok.stdout
    reloaded_and_stopped(fake, proc)
    assert not any("RELOADING" in m for m in fake.got[:-3])  # the bad file was never signalled
    gone = subprocess.run([*llmproxy, "reload", "-c", path], capture_output=True, text=True)
    assert gone.returncode == 1 and "no pid file" in gone.stderr


def test_watch_reloads_on_a_change_on_disk(tmp_path, launch):
    cfg = openai_config("http://127.0.0.1:9")
    fake, proc, _ = launch(cfg, "--watch")
    fake.wait_for("READY")
    (tmp_path / "router.yaml").write_text(yaml.safe_dump({**cfg, "aliases": {"fresh": "gpt"}}))
    reloaded_and_stopped(fake, proc)
    out = proc.stdout.read().decode()
    assert "router.yaml changed on disk: reloading (--watch)" in out and "reloaded router.yaml" in out


def test_under_journald_lines_carry_their_priority_and_a_reload_error_is_written_before_ready(tmp_path):
    """stderr is the journal ($JOURNAL_STREAM names it): `<6>`/`<4>`/`<3>` in place of the time, one per
    line of a message; a failed reload's error reaches the journal before READY=1 (systemd's "Reloaded")."""
    fake = FakeSystemd("@llmproxy-test-" + secrets.token_hex(6))
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(openai_config("http://127.0.0.1:9")))
    journal = (tmp_path / "journal").open("w+b")
    st = os.fstat(journal.fileno())
    env = {**os.environ, "NOTIFY_SOCKET": fake.addr, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    proc = subprocess.Popen([sys.executable, "-m", "llmproxy", "serve", "-c", str(path), "--listen", f"127.0.0.1:{free_port()}"],
                            stdout=journal, stderr=journal, env=env)
    try:
        fake.wait_for("READY")
        path.write_text("backends: {}\n")
        proc.send_signal(signal.SIGHUP)
        fake.wait_for("RELOADING")
        assert "reload FAILED" in fake.wait_for("READY")["STATUS"]
        at_ready = (tmp_path / "journal").read_text().splitlines()  # what journald had when systemd said "Reloaded"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        journal.close()
        fake.close()
    assert at_ready[0].startswith("<6>llmproxy ") and " on http://127.0.0.1:" in at_ready[0]  # no HH:MM:SS: journald stamps
    failed = at_ready.index(f"<3>reload of {path} failed, keeping the running config:")
    assert at_ready[failed + 1].startswith("<3>") and len(at_ready) > failed + 1  # the error's own lines: <3> too
    assert (tmp_path / "journal").read_text().splitlines()[-1] == "<6>llmproxy stopped"


def test_journal_stream_is_only_the_file_it_names(tmp_path):
    from llmproxy import console

    with (tmp_path / "a").open("w") as a, (tmp_path / "b").open("w") as b:
        st = os.fstat(a.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert console.to_journal(a, env) and not console.to_journal(b, env)  # (a unit's shell on a terminal: not the journal)
        assert not console.to_journal(a, {}) and not console.to_journal(a, {"JOURNAL_STREAM": "x"})
    import io

    assert not console.to_journal(io.StringIO(), env)
    handler = console.ConsoleHandler(io.StringIO(), journal=True)
    import logging

    assert handler._stamped(0, "one\ntwo", logging.WARNING) == "<4>one\n<4>two"
    assert handler._stamped(0, "x", logging.DEBUG) == "<7>x" and handler._stamped(0, "x", logging.CRITICAL) == "<2>x"

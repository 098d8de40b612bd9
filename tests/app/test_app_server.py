"""``l2c-explorer`` serves the app quickly, safely, and says clearly what is wrong."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from l2c_explorer.app import server
from l2c_explorer.errors import InputError

COMMAND = [sys.executable, "-m", "l2c_explorer.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_command_serves_the_page_within_10_seconds(tmp_path):
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    started = time.monotonic()
    proc = subprocess.Popen([*COMMAND, "--no-browser", "--port", str(port), "--work-dir", str(tmp_path / "work")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        served = None
        while time.monotonic() - started < 20:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                    if r.status == 200 and "l2c-explorer" in r.read().decode("utf-8", "replace"):
                        served = time.monotonic() - started
                        break
            except OSError:
                time.sleep(0.1)
        assert served is not None, "the page was not served"
        assert served < 10.0, f"the page took {served:.1f} s to be served"
        # listening on this machine only
        with pytest.raises(OSError):
            with socket.create_connection((_non_loopback_address() or "203.0.113.1", port), timeout=0.5):
                pass
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert f"127.0.0.1:{port}" in out


def _non_loopback_address() -> str | None:
    """One of this machine's own non-loopback addresses, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent for UDP connect
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_bad_folder_argument_is_a_clear_error(tmp_path):
    out = subprocess.run([*COMMAND, "--no-browser", str(tmp_path / "missing"), "--work-dir", str(tmp_path / "w")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "Folder not found" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("127.0.0.2", True), ("0.0.0.0", False), ("192.168.1.5", False),
                                            ("example.org", False)])
def test_is_loopback(host, loopback):
    assert server.is_loopback(host) is loopback


def test_non_loopback_host_warns_and_never_shares(monkeypatch, tmp_path, capsys):
    import gradio as gr

    seen = {}

    def fake_launch(self, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt  # stop here: nothing is bound

    monkeypatch.setattr(gr.Blocks, "launch", fake_launch)
    with pytest.raises(KeyboardInterrupt):
        server.start(host="0.0.0.0", port=free_port(), work_dir=str(tmp_path / "w"), warm=False)
    assert "warning: listening on 0.0.0.0" in capsys.readouterr().err
    assert seen["share"] is False and seen["server_name"] == "0.0.0.0"
    served = [Path(p) for p in seen["allowed_paths"]]
    assert served and all((tmp_path / "w").resolve() in p.parents for p in served)

    seen.clear()
    with pytest.raises(KeyboardInterrupt):
        server.start(port=free_port(), work_dir=str(tmp_path / "w"), warm=False)
    assert "warning" not in capsys.readouterr().err and seen["server_name"] == "127.0.0.1"


def test_port_search_and_busy_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        assert server.find_free_port("127.0.0.1", start=busy, tries=5) != busy
        with pytest.raises(InputError, match="No free port"):
            server.find_free_port("127.0.0.1", start=busy, tries=1)

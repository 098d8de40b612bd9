"""``l2c-explorer`` serves the app quickly, safely, and says clearly what is wrong."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from app_helpers import wait_until

from l2c_explorer.app import server
from l2c_explorer.errors import InputError

COMMAND = [sys.executable, "-m", "l2c_explorer.cli"]


def read_lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)


@pytest.mark.slow
def test_command_serves_the_page_on_the_address_it_reports(tmp_path):
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    # Ctrl+C reaches the app even when this test runs where SIGINT is ignored (a background job inherits
    # that, and Python then installs no KeyboardInterrupt handler)
    proc = subprocess.Popen([*COMMAND, "--no-browser", "--work-dir", str(tmp_path / "work")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                            preexec_fn=_default_interrupt)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=read_lines, args=(proc.stdout, lines), daemon=True).start()
    out = []
    try:
        # the server binds a free port itself and says which; how fast it starts is a benchmark's business
        url = wait_until(lambda: _running_at(lines, out), timeout=600, what="the command to report its address")
        assert url.startswith("http://127.0.0.1:") and "?token=" in url  # the address carries this launch's secret
        with urllib.request.urlopen(url, timeout=150) as r:
            assert r.status == 200 and "l2c-explorer" in r.read().decode("utf-8", "replace")
        base = url.split("?", 1)[0]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base, timeout=150)  # without it: refused
        assert refused.value.code == 403
        assert not any("share=True" in line for line in out)  # no suggestion to publish the app
        port = urlsplit(url).port
        # listening on this machine only
        with pytest.raises(OSError):
            with socket.create_connection((_non_loopback_address() or "203.0.113.1", port), timeout=0.5):
                pass
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=150)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out[-5:]  # Ctrl+C stops it cleanly


@pytest.mark.slow
def test_command_stops_cleanly_when_terminated(tmp_path):
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([*COMMAND, "--no-browser", "--work-dir", str(tmp_path / "work")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=read_lines, args=(proc.stdout, lines), daemon=True).start()
    out = []
    try:
        wait_until(lambda: _running_at(lines, out), timeout=600, what="the command to report its address")
        proc.terminate()  # SIGTERM, as `kill` or a service manager sends it
        proc.wait(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out[-5:]


def _default_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _running_at(lines: queue.Queue, seen: list) -> str | None:
    while not lines.empty():
        seen.append(lines.get())
        if "is running at " in seen[-1]:
            return seen[-1].split("is running at ", 1)[1].split()[0]
    return None


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
                         capture_output=True, text=True, timeout=300)
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
        server.start(host="0.0.0.0", work_dir=str(tmp_path / "w"), warm=False)
    assert "warning: listening on 0.0.0.0" in capsys.readouterr().err
    assert seen["share"] is False and seen["server_name"] == "0.0.0.0"
    served = [Path(p) for p in seen["allowed_paths"]]
    assert served and all((tmp_path / "w").resolve() in p.parents for p in served)

    seen.clear()
    with pytest.raises(KeyboardInterrupt):
        server.start(work_dir=str(tmp_path / "w"), warm=False)
    assert "warning" not in capsys.readouterr().err and seen["server_name"] == "127.0.0.1"
    # every request goes through the access check (a middleware of the FastAPI app), with no Node server in front
    middleware = seen["app_kwargs"]["middleware"]
    assert [m.cls.__name__ for m in middleware] == ["AccessGuard"] and seen["ssr_mode"] is False
    assert seen["inbrowser"] is False and seen["quiet"] is True  # the address opened and printed is ours


def test_a_busy_port_is_a_clear_error_and_the_search_moves_past_it(tmp_path, monkeypatch):
    import gradio.http_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # a port this test holds for its whole length: nothing can race for it
        s.listen()
        busy = s.getsockname()[1]
        with pytest.raises(InputError, match=f"Cannot listen on 127.0.0.1: port {busy} is in use"):
            server.start(port=busy, work_dir=str(tmp_path / "w"), warm=False)
        monkeypatch.setattr(gradio.http_server, "INITIAL_PORT_VALUE", busy)  # Gradio's search starts there
        blocks, bench, url = server.start(work_dir=str(tmp_path / "w"), warm=False)
        try:
            assert url.startswith("http://127.0.0.1:") and urlsplit(url).port != busy
        finally:
            bench.close()
            blocks.close()
    with pytest.raises(InputError, match="--port must be a whole number from 1 to 65535"):
        server.start(port=0, work_dir=str(tmp_path / "w"), warm=False)


def test_no_token_opens_without_one_but_still_checks_the_host(tmp_path):
    started = server.start(work_dir=str(tmp_path / "w"), warm=False, token=False)
    try:
        assert started.token is None and "token" not in started.url
        with urllib.request.urlopen(started.url + "gradio_api/info", timeout=150) as r:
            assert r.status == 200
        request = urllib.request.Request(started.url + "gradio_api/info")
        request.add_unredirected_header("Host", f"evil.example.com:{urlsplit(started.url).port}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=150)
        assert refused.value.code == 403
    finally:
        started.bench.close()
        started.blocks.close()

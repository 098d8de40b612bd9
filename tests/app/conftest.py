"""Fixtures for the app's tests: one app served for the whole session, and clients to drive it."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from app_helpers import DEMO, close_client, need_demo_and_model

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def served_app(tmp_path_factory):
    """The app, launched once (on a free port, with its own working folder), closed at the end."""
    need_demo_and_model()
    from l2c_explorer.app import launch_app

    work = tmp_path_factory.mktemp("l2c-work")
    app = launch_app(work_dir=work)
    # Timings are asserted on a warmed-up app (a person reads the page for longer than the warm-up takes).
    assert app.wait_ready(timeout=900), "the app's warm-up did not finish"
    yield app
    app.close()


@pytest.fixture
def client(served_app):
    from gradio_client import Client

    c = Client(served_app.base_url, verbose=False, download_files=False, headers=served_app.headers)
    yield c
    close_client(c)


@pytest.fixture
def keble6(tmp_path) -> Path:
    """6 Keble characters (120 real images) in a folder of their own."""
    need_demo_and_model()
    dest = tmp_path / "keble6"
    for char_dir in sorted((DEMO / "omniglot_keble").iterdir())[:6]:
        shutil.copytree(char_dir, dest / char_dir.name)
    return dest


# -- browser tests ------------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's outcome on the test item, so fixtures can screenshot failures."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium package to run the browser tests)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    """A fresh tab (1400x1000); a screenshot and the console log go to tests/artifacts/ when the test fails."""
    from app_helpers import ARTIFACTS

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    log = []
    pg.on("console", lambda m: log.append(f"{m.type}: {m.text}"))
    pg.on("pageerror", lambda e: log.append(f"pageerror: {e}"))
    started = time.monotonic()
    for event in ("request", "requestfinished", "requestfailed"):
        pg.on(event, lambda r, e=event: log.append(f"{time.monotonic() - started:7.2f} {e} {r.method} {r.url}")
              if "gradio_api" in r.url else None)
    pg.set_default_timeout(120_000)  # generous: slow or busy machines
    yield pg
    failed = any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False) for w in ("setup", "call"))
    if failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = request.node.name.replace("/", "_")
        try:
            pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        except Exception:
            pass
        (ARTIFACTS / f"{name}.log.txt").write_text("\n".join(log), encoding="utf-8")
    context.close()

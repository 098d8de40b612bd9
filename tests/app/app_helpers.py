"""Helpers shared by the app's tests (imported by name: the tests folder is on sys.path)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo_data"
MODELS = REPO / "models"
ARTIFACTS = REPO / "tests" / "artifacts"


def need_demo_and_model() -> None:
    if not (DEMO / "omniglot_keble").is_dir():
        pytest.skip("demo_data/omniglot_keble is missing")
    if not (MODELS / "omniglot.safetensors").is_file():
        pytest.skip("the shipped models/omniglot.safetensors is missing")


def close_client(client) -> None:
    """Close a ``gradio_client.Client`` without waiting for it: its ``close()`` gives its heartbeat thread,
    held in a streaming request until the server's next heartbeat, a second to end, and then leaves it anyway."""
    threading.Thread(target=client.close, daemon=True).start()


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def box(page, selector: str) -> dict:
    """The bounding box of the first element ``selector`` matches (left, right, top, bottom; CSS pixels)."""
    return page.eval_on_selector(selector, "e => { const r = e.getBoundingClientRect();"
                                           " return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; }")


def overlap(a: dict, b: dict, tolerance: float = 0.5) -> bool:
    """Whether two boxes share more than a hairline (boxes that only touch do not overlap)."""
    return (a["left"] < b["right"] - tolerance and b["left"] < a["right"] - tolerance
            and a["top"] < b["bottom"] - tolerance and b["top"] < a["bottom"] - tolerance)


def lasso(page, plot_selector: str, margin: float) -> None:
    """Draw a lasso on a map (a loop ``margin`` of its size inside each edge), as a person drags the mouse;
    the map selects the points inside it."""
    plot = page.locator(plot_selector).bounding_box()
    far = 1 - margin
    page.mouse.move(plot["x"] + plot["width"] * margin, plot["y"] + plot["height"] * margin)
    page.mouse.down()
    for fx, fy in ((far, margin), (far, far), (margin, far), (margin, margin + 0.01)):
        page.mouse.move(plot["x"] + plot["width"] * fx, plot["y"] + plot["height"] * fy, steps=6)
    page.mouse.up()

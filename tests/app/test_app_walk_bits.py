"""Small things a new user met on the page (Chromium at 1400x1000), each as that person would meet it."""

from __future__ import annotations

import pytest
from app_helpers import DEMO

pytestmark = [pytest.mark.browser]


def fill(page, elem_id: str, value: str) -> None:
    page.locator(f"#{elem_id}").locator("textarea, input").first.fill(value)


def open_app(page, served_app, **query) -> None:
    page.goto(served_app.page_url(**query))
    page.wait_for_function("() => { const i = document.querySelector('#model input'); return i && i.value; }")


def shows(page, elem_id: str, words: str) -> None:
    page.wait_for_function("([id, words]) => document.getElementById(id)?.innerText.includes(words)",
                           arg=[elem_id, words], timeout=150_000)


def test_a_folder_without_sub_folders_takes_the_demos_tick_away(page, served_app, tmp_path):
    """After the sample folder (ticked for the person), a folder of three loose photos is no labelled folder."""
    three = tmp_path / "three"
    three.mkdir()
    for char_dir in sorted((DEMO / "omniglot_keble").iterdir())[:3]:
        first = sorted(char_dir.glob("*.png"))[0]
        (three / f"{char_dir.name}_{first.name}").write_bytes(first.read_bytes())
    box = page.locator("#labelled input[type=checkbox]")
    open_app(page, served_app)
    fill(page, "folder", str(DEMO / "omniglot_keble"))
    page.locator("#folder").locator("textarea, input").first.press("Enter")
    shows(page, "folder-report", "520 images")
    page.wait_for_function("() => document.querySelector('#labelled input[type=checkbox]').checked")
    fill(page, "folder", str(three))
    page.locator("#folder").locator("textarea, input").first.press("Enter")
    shows(page, "folder-report", "3 images")
    page.wait_for_function("() => !document.querySelector('#labelled input[type=checkbox]').checked")
    assert not box.is_checked()


def test_the_replace_button_goes_with_its_explanation(page, served_app, keble6, tmp_path):
    """Export twice into one folder: the red button comes with the line asking for it. Saving the model (or
    choosing another folder) replaces that line, and the button goes with it."""
    job = served_app.discover(keble6, wait=False, device="cpu", steps=20, self_training_steps=0, make_map=False)
    assert job.wait(600) and job.result is not None, job.error
    open_app(page, served_app, job=job.id)
    shows(page, "discover-results", "images")
    replace = page.locator("#discover-export-replace")
    out = tmp_path / "exported"
    page.locator("#discover-step-results").scroll_into_view_if_needed()
    fill(page, "discover-out", str(out))
    page.click("#discover-export")
    shows(page, "discover-export-md", "120 images")
    page.click("#discover-export")
    shows(page, "discover-export-md", "already holds")
    replace.wait_for(state="visible")

    page.click("#discover-save")
    shows(page, "discover-export-md", "Saved the clustering model")
    replace.wait_for(state="hidden")
    assert "already holds" not in page.inner_text("#discover-export-md")

    page.click("#discover-export")  # asks again; then another folder is typed instead
    shows(page, "discover-export-md", "already holds")
    replace.wait_for(state="visible")
    fill(page, "discover-out", str(tmp_path / "elsewhere"))
    replace.wait_for(state="hidden")
    page.wait_for_function("() => !document.getElementById('discover-export-md').innerText.includes('already holds')",
                           timeout=150_000)

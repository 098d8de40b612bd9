"""The app in a real browser (Debian's Chromium driven by Playwright), as a person uses it.

Each step also saves a screenshot: into ``tests/artifacts/steps/``, or into ``docs/screenshots/`` (the
README's pictures) when ``L2C_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from app_helpers import ARTIFACTS, DEMO, REPO, lasso

from l2c_explorer.options import DISCOVER

pytestmark = [pytest.mark.browser]

UPDATING_SCREENSHOTS = os.environ.get("L2C_UPDATE_SCREENSHOTS") == "1"
SHOTS = REPO / "docs" / "screenshots" if UPDATING_SCREENSHOTS else ARTIFACTS / "steps"


def shot(page, selector: str | None, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    if selector is None:
        page.screenshot(path=str(SHOTS / name))
    else:
        page.locator(selector).screenshot(path=str(SHOTS / name))


@pytest.fixture
def export_folder(tmp_path):
    """Where a walk exports (a function of the folder's name): the test's own temporary folder, or, when the
    README's pictures are retaken, a folder a person would choose, removed after the test (a folder of that name
    that was there before is never touched)."""
    if not UPDATING_SCREENSHOTS:
        yield lambda name: tmp_path / name
        return
    root = Path.home() / "l2c-explorer exports"
    if root.exists():
        pytest.fail(f"{root} already exists: move it away to retake the screenshots")
    yield lambda name: root / name
    shutil.rmtree(root, ignore_errors=True)


def fill(page, elem_id: str, value: str) -> None:
    page.locator(f"#{elem_id}").locator("textarea, input").first.fill(value)


def set_number(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def curve_points(page, series: str, panel: str = "discover") -> int:
    return int(page.eval_on_selector(f"#{panel}-curves [data-series={series}]", "e => e.dataset.points") or 0)


def map_state(page) -> dict:
    return page.eval_on_selector("#discover-map .l2c-map", "e => Object.assign({}, e.dataset)")


def point_position(page, index_in_trace: int = 0, trace: int = 0):
    """Screen position and image index of a point of the map (from plotly's own axes)."""
    return page.evaluate(
        """([k, t]) => { const gd = document.querySelector('#discover-map .l2c-map-plot');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
        const tr = gd._fullData[t];
        return {x: r.left + xa._offset + xa.l2p(tr.x[k]), y: r.top + ya._offset + ya.l2p(tr.y[k]),
                i: tr.customdata[k]}; }""",
        [index_in_trace, trace])


def box(page, selector: str) -> dict:
    return page.eval_on_selector(selector, "e => { const r = e.getBoundingClientRect();"
                                           " return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; }")


def overlap(a: dict, b: dict) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def open_app(page, served_app, **query) -> None:
    page.goto(served_app.page_url(**query))
    page.wait_for_function("() => { const i = document.querySelector('#model input'); return i && i.value; }")


def job_shown(page, panel: str = "discover") -> str:
    return page.eval_on_selector(f"#{panel}-progress [data-status]", "e => e.dataset.job")


def no_error_badges(page) -> None:
    """Gradio's red "Error" badges over outputs and fading error pop-ups never appear."""
    assert page.locator(".toast-body.error").count() == 0
    assert page.get_by_text("Error", exact=True).filter(visible=True).count() == 0


IN_VIEW = """(sel) => { const e = document.querySelector(sel); if (!e) return false; const r = e.getBoundingClientRect();
  return r.height > 0 && r.top >= -2 && r.bottom <= window.innerHeight + 2; }"""  # (sub-pixel positions)


def test_try_the_demo_scrolls_to_the_run_and_shows_what_k_was_chosen_from(page, served_app):
    open_app(page, served_app)
    assert "Computing on:" in page.inner_text("#device-badge")
    assert "never saw" in page.inner_text("#model-card")
    shot(page, "#step-model", "01-similarity-model.png")
    page.click("#try-demo")
    # the run comes into view at once (its Start button, progress and curves), not the folder box far above
    page.wait_for_function(IN_VIEW, arg="#discover-progress [data-status]", timeout=300_000)
    # and stays there with its Start button once the folder's sample above has changed the page's height
    page.wait_for_function(IN_VIEW, arg="#discover-start", timeout=60_000)
    assert page.eval_on_selector("#discover-curves", "e => e.getBoundingClientRect().top < window.innerHeight")
    # the demo uses the settings the help recommends
    assert page.input_value("#steps input[type=number]") == str(DISCOVER.defaults.steps) == "100"
    assert "100 is plenty" in page.inner_text("#steps")
    assert "omniglot_keble" in page.input_value("#folder textarea, #folder input")
    assert "520 images" in page.inner_text("#folder-report")
    assert "job=" in page.url and "token=" in page.url
    # as soon as K is chosen, the spectrum it was read from, with the chosen K marked, live
    spectrum = "#discover-curves [data-series=spectrum]"
    page.wait_for_function(f"() => Number(document.querySelector('{spectrum}')?.dataset.points) > 0",
                           timeout=300_000)
    k = page.eval_on_selector(spectrum, "e => e.dataset.k")
    assert f"K = {k}" in page.eval_on_selector(spectrum, "e => Array.from(e.querySelectorAll('text'))"
                                                         ".map(t => t.textContent).join(' ')")
    assert f"K = {k}" in page.inner_text("#discover-curves .l2c-spectrum-note")
    page.wait_for_function(
        "() => Number(document.querySelector('#discover-curves .l2c-curves')?.dataset.points) > 0", timeout=300_000)
    page.click("#discover-stop")
    page.wait_for_selector("#discover-progress [data-status=stopped], #discover-progress [data-status=done]",
                           timeout=300_000)
    job = served_app.workbench.job(job_shown(page))
    assert job.stop_requested is not None or job.status == "done"


def test_try_the_photo_demo_switches_to_the_photo_model_and_runs(page, served_app):
    """The photo demo: the shipped photos model on everyday photos, the run in view, the spectrum live."""
    if "photos" not in served_app.workbench.models():
        pytest.skip("the shipped photos model is not available")
    open_app(page, served_app)
    page.click("#try-photo-demo")
    page.wait_for_function(IN_VIEW, arg="#discover-progress [data-status]", timeout=300_000)
    assert page.input_value("#model input") == "photos"
    # the shipped photo model stands on the installed pretrained encoder, and its card says so
    page.wait_for_function("() => document.querySelector('#model-card')?.innerText.includes('efficientnet-lite2')",
                           timeout=60_000)
    assert "photos_everyday" in page.input_value("#folder textarea, #folder input")
    assert page.input_value("#steps input[type=number]") == str(DISCOVER.defaults.steps)
    spectrum = "#discover-curves [data-series=spectrum]"
    page.wait_for_function(f"() => Number(document.querySelector('{spectrum}')?.dataset.points) > 0",
                           timeout=600_000)
    page.wait_for_function("() => Number(document.querySelector('#discover-curves [data-series=loss]')"
                           "?.dataset.points) >= 2", timeout=600_000)
    shot(page, "#step-discover", "10-photo-demo-live.png")
    page.click("#discover-stop")  # Stop keeps what was learnt: the map of the photos follows
    page.wait_for_function("() => { const m = document.querySelector('#discover-map .l2c-map');"
                           " return m && m.dataset.ready === '1' && m.dataset.method === 'umap'; }", timeout=600_000)
    legend = page.eval_on_selector_all("#discover-map .legendtext", "es => es.map(e => e.textContent)")
    assert len(legend) >= 2, legend
    page.locator("#discover-map").scroll_into_view_if_needed()
    shot(page, "#discover-map", "11-photo-demo-map.png")


def test_problems_are_explained_next_to_the_input_and_never_cover_it(page, served_app, tmp_path):
    open_app(page, served_app)
    fill(page, "folder", str(tmp_path / "nowhere"))
    page.click("#check-folder")
    page.wait_for_selector("#folder-report .l2c-problem")
    assert "Folder not found" in page.inner_text("#folder-report")
    no_error_badges(page)
    # the folder box is not covered: it takes a click and new text at once
    page.click("#folder textarea, #folder input", timeout=10_000)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    fill(page, "folder", str(a_file))
    page.click("#check-folder")
    page.wait_for_function("() => document.querySelector('#folder-report').innerText.includes('Not a folder')")
    # an empty folder: a plain explanation, next to the folder box and under Start; no empty chart
    (tmp_path / "empty").mkdir()
    fill(page, "folder", str(tmp_path / "empty"))
    page.click("#discover-start")
    page.wait_for_selector("#discover-message .l2c-problem")
    assert "No images in" in page.inner_text("#discover-message")
    assert "No images in" in page.inner_text("#folder-report")
    assert page.locator("#discover-curves .main-svg").count() == 0
    assert page.locator("#discover-progress [data-status]").count() == 0  # no run was started
    no_error_badges(page)
    page.click("#folder textarea, #folder input", timeout=10_000)


def test_a_tiny_messy_folder_is_counted_right_and_sorted(page, served_app, tmp_path):
    folder = tmp_path / "messy"
    for char_dir, n in zip(sorted((DEMO / "omniglot_keble").iterdir())[:3], (4, 4, 3)):
        for f in sorted(char_dir.iterdir())[:n]:
            (folder / char_dir.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, folder / char_dir.name / f.name)
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    good = next(folder.rglob("*.png")).read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    open_app(page, served_app)
    fill(page, "folder", str(folder))
    page.click("#check-folder")
    page.wait_for_function("() => document.querySelector('#folder-report').innerText.includes('Found')")
    report = page.inner_text("#folder-report")
    assert "Found 11 images, 4 files skipped" in report, report
    assert "hard to estimate" in report  # so few images: the page says K is better given
    page.click("#discover-start")
    page.wait_for_function("() => document.querySelector('#discover-results').innerText.includes('found in')",
                           timeout=600_000)
    results = page.inner_text("#discover-results")
    assert "3 categories found in 11 images" in results, results
    assert "rough estimate" in results and "4 file(s) were skipped" in results


def test_discover_explore_rename_and_export(page, served_app, tmp_path, export_folder):
    target = DEMO / "omniglot_keble"
    before = snapshot(target)
    open_app(page, served_app)

    # 2 · the folder: count, sample thumbnails
    fill(page, "folder", str(target))
    page.click("#check-folder")
    page.wait_for_function("() => document.querySelector('#folder-report').innerText.includes('520 images')")
    page.wait_for_function("() => document.querySelectorAll('#folder-sample img').length >= 12")
    page.locator("#labelled input").check()
    shot(page, "#step-folder", "02-your-images.png")

    # 3 · discover: the live curve grows, the spectrum shows, time left is shown
    set_number(page, "steps", 1000)
    page.click("#discover-start")
    loss_points = "Number(document.querySelector('#discover-curves [data-series=loss]')?.dataset.points)"
    page.wait_for_function(f"() => {loss_points} >= 2", timeout=300_000)
    loss1 = curve_points(page, "loss")
    page.wait_for_function(f"() => {loss_points} > {loss1}", timeout=150_000)
    assert curve_points(page, "spectrum") > 0
    progress = page.inner_text("#discover-progress")
    assert "Learning to group" in progress and "left" in progress
    shot(page, "#step-discover", "03-find-categories-live.png")
    job_id = job_shown(page)

    # Start during a run asks first: "no" keeps the run, nothing is sent
    dialogs = []
    page.once("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    n_runs = len(served_app.workbench.registry.jobs(kind="discover"))
    page.click("#discover-start")
    page.wait_for_timeout(1500)  # a request, had one been sent, would have made a run by now
    assert dialogs and "still going" in dialogs[0]
    assert len(served_app.workbench.registry.jobs(kind="discover")) == n_runs and job_shown(page) == job_id

    # a reload reconnects, with the form as it was for this run
    page.reload()
    page.wait_for_function(f"() => document.querySelector('#discover-progress [data-job=\"{job_id}\"]')",
                           timeout=150_000)
    assert page.input_value("#steps input[type=number]") == "1000"
    page.click("#discover-stop")
    page.wait_for_selector("#discover-progress [data-status=stopped]", timeout=300_000)
    job = served_app.workbench.job(job_id)
    assert job.status == "stopped" and job.result is not None  # Stop keeps what was learnt

    # 4 · the UMAP map; plotly's toolbar does not cover the legend
    page.wait_for_function("() => { const m = document.querySelector('#discover-map .l2c-map');"
                           " return m && m.dataset.ready === '1' && m.dataset.method === 'umap'; }", timeout=600_000)
    assert map_state(page)["points"] == "520"
    page.locator("#discover-map").scroll_into_view_if_needed()
    page.hover("#discover-map .l2c-map-plot")  # the toolbar shows on hover
    toolbar = box(page, "#discover-map .modebar")
    entries = page.eval_on_selector_all("#discover-map .legend .traces", "es => es.slice(0, 4).map(e => {"
                                        " const r = e.getBoundingClientRect();"
                                        " return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; })")
    assert entries and not any(overlap(toolbar, entry) for entry in entries), (toolbar, entries)
    result = served_app.workbench.result(job_id)

    # hovering a point shows that image's thumbnail, with each fact on an unbroken line
    p = point_position(page)
    page.mouse.move(p["x"] + 25, p["y"] + 25)
    page.mouse.move(p["x"], p["y"], steps=4)
    page.wait_for_function("() => document.querySelector('#discover-map .l2c-hover').style.display === 'block'",
                           timeout=150_000)
    # Plotly shows the point nearest to the last pointer position it processed, within its hover distance
    # (20 px); on a busy machine it may still be showing a point the move passed on the way, so wait for the
    # pointer's last position to be processed
    shown_at = """(i) => { const gd = document.querySelector('#discover-map .l2c-map-plot');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
        for (const tr of gd._fullData) { const k = Array.from(tr.customdata).indexOf(i);
          if (k >= 0) return [r.left + xa._offset + xa.l2p(tr.x[k]), r.top + ya._offset + ya.l2p(tr.y[k])]; } }"""
    page.wait_for_function(f"""(p) => {{ const m = document.querySelector('#discover-map .l2c-map');
        const at = ({shown_at})(parseInt(m.dataset.hoverIndex));
        return at && Math.abs(at[0] - p.x) <= 20 && Math.abs(at[1] - p.y) <= 20; }}""", arg=p, timeout=30_000)
    page.wait_for_function("() => { const i = document.querySelector('#discover-map .l2c-hover img');"
                           " return i.complete && i.naturalWidth > 0; }", timeout=150_000)
    hovered = int(map_state(page)["hoverIndex"])
    src = page.get_attribute("#discover-map .l2c-hover img", "src")
    key = served_app.workbench.thumbs.key(target / result.paths[hovered])
    assert src.endswith(f"{key}.webp") and "gradio_api/file=" in src and str(target) not in src
    assert result.paths[hovered] in page.inner_text("#discover-map .l2c-hover-text")
    group_line = "#discover-map .l2c-hover-group"
    assert page.inner_text(group_line).startswith(result.names[result.labels[hovered]])
    # the card hides when the pointer leaves the point (a live redraw can do that too): show it again, then
    # check the group line while it is shown, in one go
    page.mouse.move(p["x"] + 1, p["y"])
    page.mouse.move(p["x"], p["y"])
    page.wait_for_function("() => { const card = document.querySelector('#discover-map .l2c-hover');"
                           " const e = card.querySelector('.l2c-hover-group');"
                           " return card.style.display === 'block' && e.scrollWidth <= e.clientWidth"
                           " && e.getClientRects().length === 1; }", timeout=60_000)
    assert page.inner_text("#discover-map .l2c-hover-confidence").startswith("confidence ")
    shot(page, "#discover-map", "04-explore-hover.png")

    # clicking a point isolates its group and shows its exemplars, captions whole
    page.mouse.click(p["x"], p["y"])
    page.wait_for_function("() => document.querySelector('#discover-map .l2c-map').dataset.isolated !== ''",
                           timeout=150_000)
    cluster = int(map_state(page)["isolated"])
    assert cluster in (int(result.labels[hovered]), int(result.labels[p["i"]]))
    assert int(map_state(page)["points"]) == int((result.labels == cluster).sum())
    picked = f"document.querySelector('#discover-cluster input').value.startsWith('cluster {cluster:02d} ')"
    page.wait_for_function(f"() => {picked}", timeout=150_000)
    page.wait_for_function("() => document.querySelectorAll('#discover-typical img').length > 0", timeout=75_000)
    assert page.locator("#discover-uncertain img").count() > 0
    captions = page.eval_on_selector_all(
        "#discover-typical .caption-label, #discover-uncertain .caption-label",
        "es => es.map(e => [e.textContent, e.scrollWidth <= e.clientWidth + 1 && e.scrollHeight <= e.clientHeight + 1])")
    assert captions and all(whole for _, whole in captions), captions

    # the group gets a name: on the page, on the map, in the CSV and as its exported folder
    fill(page, "discover-rename", "round ones")
    page.click("#discover-rename-btn")
    page.wait_for_function("() => document.querySelector('#discover-cluster input').value.startsWith('round ones')",
                           timeout=150_000)
    page.wait_for_function("() => Array.from(document.querySelectorAll('#discover-map .legendtext'))"
                           ".some(t => t.textContent.startsWith('round ones'))", timeout=150_000)
    assert result.names[cluster] == "round ones"
    shot(page, "#discover-cluster-box", "05-cluster-exemplars.png")
    page.click("#discover-map [data-action=all]")
    page.wait_for_function("() => document.querySelector('#discover-map .l2c-map').dataset.points === '520'")

    # lasso selection shows the selected images in a gallery
    lasso(page, "#discover-map .l2c-map-plot", 0.2)
    page.wait_for_function("() => document.querySelectorAll('#discover-selection img').length > 0", timeout=75_000)
    n_selected = int(map_state(page)["selected"])
    assert n_selected > 0 and f"{n_selected} image" in page.inner_text("#discover-selection-md")
    assert page.locator("#discover-selection img").count() == min(n_selected, 60)
    shot(page, "#discover-step-explore", "06-explore-selection.png")

    # 5 · results: metrics, export into per-group folders that sort; the target folder is untouched
    assert "ACC" in page.inner_text("#discover-results")
    out = export_folder("Aurek-Besh by group")
    fill(page, "discover-out", str(out))
    page.click("#discover-export")
    page.wait_for_function("() => document.querySelector('#discover-export-md').innerText.includes('520 images')",
                           timeout=150_000)
    exported = list(out.rglob("*.png"))
    folders = sorted({f.parent.name for f in exported})
    assert len(exported) == 520 and len(folders) == result.n_clusters
    assert "round_ones" in folders and all(f == "round_ones" or f[-2:].isdigit() and f[-3] == "_" for f in folders)
    with open(out / "assignments.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["name"] for r in rows if int(r["cluster"]) == cluster} == {"round ones"}
    assert snapshot(target) == before
    # a refused export replaces the line about the earlier one
    fill(page, "discover-out", str(target / "inside"))
    page.click("#discover-export")
    page.wait_for_selector("#discover-export-md .l2c-problem", timeout=150_000)
    assert "Copied" not in page.inner_text("#discover-export-md")
    # exporting again into the same folder asks first
    fill(page, "discover-out", str(out))
    page.click("#discover-export")
    page.wait_for_function("() => document.querySelector('#discover-export-md').innerText.includes('already holds')",
                           timeout=150_000)
    page.click("#discover-export-replace")
    page.wait_for_function("() => document.querySelector('#discover-export-md').innerText.includes('520 images')",
                           timeout=150_000)
    assert len(list(out.rglob("*.png"))) == 520 and snapshot(target) == before
    shot(page, "#discover-step-results", "07-results-export.png")

    # a reload reconnects to the run (its id is in the URL)
    assert f"job={job_id}" in page.url
    page.reload()
    page.wait_for_function("() => { const m = document.querySelector('#discover-map .l2c-map');"
                           " return m && m.dataset.ready === '1'; }", timeout=150_000)
    assert "ACC" in page.inner_text("#discover-results")
    assert job_shown(page) == job_id


def test_readable_names_from_a_names_file(page, served_app, wordnet_photos, tmp_path):
    """Folders named by WordNet ids with a words.txt beside them: the page speaks of bullfrogs, not n01641577."""
    target = wordnet_photos
    clusterer = served_app.discover(target, n_clusters=3, steps=20, labelled=True, self_training_steps=0,
                                    device="cpu", make_map=False)
    page.goto(served_app.explore(clusterer))
    page.wait_for_function("() => document.querySelector('#discover-map .l2c-map')?.dataset.ready === '1'",
                           timeout=300_000)
    page.click("#discover-map [data-colour=truth]")
    page.wait_for_function("() => document.querySelector('#discover-map .l2c-map').dataset.colour === 'truth'")
    legend = page.eval_on_selector_all("#discover-map .legendtext", "es => es.map(e => e.textContent)")
    assert len(legend) == 3 and not any(t.startswith("n0") for t in legend), legend
    table = page.inner_text("#discover-clusters")
    assert "main true category" in table and "n0" not in table


def test_browse_starts_beside_the_folder_with_its_neighbours_listed(page, served_app):
    open_app(page, served_app)
    page.click("#browse")  # the accordion's title
    page.wait_for_function("() => document.querySelector('#browse-at textarea, #browse-at input')?.value"
                           ".endsWith('demo_data')", timeout=150_000)
    page.click("#browse-list input")
    page.wait_for_selector("ul li.item", timeout=60_000)  # the drop-down's options
    options = page.locator("ul li.item").all_inner_texts()
    assert "omniglot_keble" in [o.strip(" ✓\n") for o in options], options
    page.keyboard.press("Escape")
    fill(page, "folder", str(DEMO / "digits_usps"))
    page.click("#browse")  # closed
    page.click("#browse")  # opened again: beside the folder in the box
    page.wait_for_function("() => document.querySelector('#browse-at textarea, #browse-at input')?.value"
                           ".endsWith('demo_data')", timeout=150_000)


def test_a_result_from_python_is_explored_on_the_page(page, served_app, keble6):
    """A clusterer fitted in Python opens on the page; the map draws every image once, whatever the colouring."""
    # a sharpened run (self-training on, a few steps: how the groups come out is not what is looked at here)
    clusterer = served_app.discover(keble6, steps=20, labelled=True, device="cpu", make_map=False,
                                    self_training_steps=5)
    url = served_app.explore(clusterer)
    page.goto(url)
    page.wait_for_function("() => document.querySelector('#discover-map .l2c-map')?.dataset.ready === '1'",
                           timeout=300_000)
    for colour in ("cluster", "confidence", "truth"):
        page.click(f"#discover-map [data-colour={colour}]")
        page.wait_for_function(f"() => document.querySelector('#discover-map .l2c-map').dataset.colour === '{colour}'")
        drawn = page.evaluate("""() => { const gd = document.querySelector('#discover-map .l2c-map-plot');
            return gd._fullData.filter(t => t.visible === true).flatMap(t => Array.from(t.customdata)); }""")
        assert sorted(drawn) == list(range(120)), colour
    payload = json.loads(page.evaluate("() => document.querySelector('#discover-map .l2c-map').l2c.state.raw"))
    assert payload["path"] == list(clusterer.paths_)
    assert payload["label"] == clusterer.labels_.tolist()


def test_train_a_similarity_model_with_live_loss_and_stop(page, served_app):
    open_app(page, served_app)
    page.get_by_text("Train a new similarity model from a labelled folder").click()
    fill(page, "spn-folder", str(DEMO / "omniglot_source"))
    fill(page, "spn-name", "browser-test-model")
    page.click("#spn-start")
    page.wait_for_function(
        "() => Number(document.querySelector('#spn-curves [data-series=loss]')?.dataset.points) >= 2", timeout=450_000)
    assert "Learning which images show the same category" in page.inner_text("#spn-progress")
    shot(page, "#step-model", "08-train-similarity-model.png")
    page.click("#spn-stop")
    page.wait_for_function("() => document.querySelector('#spn-result').innerText.includes('browser-test-model')",
                           timeout=300_000)
    assert page.input_value("#model input") == "browser-test-model"
    assert "stopped early" in page.inner_text("#model-card")


@pytest.mark.slow
def test_same_categories_new_domain_tab(page, served_app):
    if not served_app.workbench.adaptation_available():
        pytest.skip("l2c_explorer.adaptation.DomainAdapter is not available")
    open_app(page, served_app)
    page.get_by_role("tab", name="Same categories, new domain").click()
    fill(page, "adapt-source", str(DEMO / "digits_mnist"))
    fill(page, "adapt-target", str(DEMO / "digits_usps"))
    page.get_by_label("The target's sub-folder names").check()
    page.locator("#adapt-epochs input").fill("2")
    page.click("#adapt-start")
    # while the run is live, both curves are readable: each in its own chart, side by side, neither spilling over
    page.wait_for_function("() => Number(document.querySelector('#adapt-curves [data-series=training]')"
                           "?.dataset.points) >= 2", timeout=600_000)
    live = page.eval_on_selector("#adapt-progress [data-status]", "e => e.dataset.status")
    charts = {name: box(page, f"#adapt-curves [data-series={name}]") for name in ("similarity", "training")}
    drawn = {name: box(page, f"#adapt-curves [data-series={name}] .main-svg") for name in charts}
    assert curve_points(page, "similarity", "adapt") >= 2 and curve_points(page, "training", "adapt") >= 2
    assert not overlap(charts["similarity"], charts["training"]), charts
    for name in charts:
        assert charts[name]["left"] - 1 <= drawn[name]["left"] and drawn[name]["right"] <= charts[name]["right"] + 1
    assert live == "running"  # read while live (after a reload they were always fine)
    page.wait_for_function("() => document.querySelector('#adapt-map .l2c-map')?.dataset.method === 'umap'",
                           timeout=600_000)
    assert "right class" in page.inner_text("#adapt-results")
    legend = page.eval_on_selector_all("#adapt-map .legendtext", "es => es.map(e => e.textContent)")
    assert [t.split(" ")[0] for t in legend] == [str(d) for d in range(10)]
    shot(page, "#adapt-step-explore", "09-new-domain-explore.png")
    # a reload comes back to this tab and this run
    page.reload()
    page.wait_for_function("() => document.querySelector('#adapt-map .l2c-map')?.dataset.ready === '1'",
                           timeout=300_000)
    assert page.eval_on_selector("#adapt-map .l2c-map-plot", "e => e.offsetWidth") > 500
    assert page.input_value("#adapt-target textarea, #adapt-target input").endswith("digits_usps")
    assert page.input_value("#adapt-epochs input") == "2"


def test_teaching_in_front_of_an_audience(page, served_app, keble6, tmp_path):
    """The walk a presenter makes: answers, a named group, merge, split, relearn, undo, export, reload, another
    demo. Nothing shows an error, names and numbers stay with their groups, every answer holds, nothing is
    thrown away without asking, and every request of the page goes to the app itself."""
    from urllib.parse import urlsplit

    import numpy as np

    own = urlsplit(served_app.base_url).netloc
    elsewhere = []
    page.on("request", lambda r: elsewhere.append(r.url)
            if urlsplit(r.url).scheme in ("http", "https", "ws", "wss") and urlsplit(r.url).netloc != own else None)
    dialogs = []

    def on_dialog(d):
        dialogs.append((d.type, d.message))
        d.dismiss() if "Start a new run" in d.message else d.accept()

    page.on("dialog", on_dialog)
    # a few self-training steps: the relearning below takes as many as the run did (100 after a run without)
    job = served_app.discover(keble6, wait=False, labelled=True, device="cpu", steps=30, self_training_steps=5)
    assert job.wait(600) and job.result is not None, job.error
    truth = np.unique(np.asarray(job.result.truth), return_inverse=True)[1]
    page.goto(served_app.page_url(job=job.id))
    # an answer key pressed before any question is there does nothing: no red "Error" badges anywhere
    page.wait_for_selector("#discover-teach-same")
    assert page.is_disabled("#discover-teach-same button, button#discover-teach-same")
    page.locator("body").press("s")
    # the first question comes by itself when the run is shown: nothing to click first
    page.wait_for_selector("#discover-teach-question .l2c-question[data-a]", timeout=150_000)
    assert page.is_enabled("button#discover-teach-same")
    no_error_badges(page)
    page.wait_for_function("() => document.querySelector('#discover-map .l2c-map')?.dataset.ready === '1'",
                           timeout=300_000)
    labels_on_map = "() => JSON.parse(document.querySelector('#discover-map .l2c-map').l2c.state.raw).label"

    # a group gets a name; eight answers later it still has it (and its number)
    page.click("#discover-cluster input")
    page.get_by_role("option").nth(1).click()  # (the first shows every group)
    page.wait_for_function("() => document.querySelectorAll('#discover-typical img').length > 0", timeout=75_000)
    named = int(page.input_value("#discover-cluster input").split()[1])
    members = set(np.flatnonzero(job.result.labels == named).tolist())
    fill(page, "discover-rename", "hooks")
    page.click("#discover-rename-btn")
    page.wait_for_function("() => document.querySelector('#discover-cluster input').value.startsWith('hooks')",
                           timeout=150_000)
    page.locator("#discover-teach").scroll_into_view_if_needed()
    for n in range(1, 9):
        q = page.eval_on_selector("#discover-teach-question .l2c-question",
                                  "e => [Number(e.dataset.a), Number(e.dataset.b)]")
        same = bool(truth[q[0]] == truth[q[1]])
        if n % 2:
            page.locator("body").press("s" if same else "d")
        else:
            page.click("#discover-teach-same" if same else "#discover-teach-different")
        page.wait_for_function(f"() => document.querySelector('#discover-teach-status').innerText"
                               f".includes('with {n} answer')", timeout=150_000)
        status = page.inner_text("#discover-teach-status")
        assert "The groups agree with" in status and ("all" in status or n == 1), status
        assert "⚠️" not in status
    teacher = served_app.workbench.teacher(job.id)
    assert teacher.answers_held() == 8 and len(teacher.answers) == 8
    kept = np.flatnonzero(job.result.labels == named)
    if len(members & set(kept.tolist())) * 2 > len(members):  # most of its images stayed: same number and name
        assert job.result.names[named] == "hooks"
        assert any(c.startswith("hooks") for c in page.eval_on_selector_all(
            "#discover-map .legendtext", "es => es.map(e => e.textContent)"))
    no_error_badges(page)
    shot(page, "#discover-teach", "10-teach-it.png")

    # merge two groups: the status says which joined which; no group is renumbered
    before = set(job.result.labels.tolist())
    page.click("#discover-teach-groups input")
    page.get_by_role("option").nth(0).click()
    page.click("#discover-teach-groups input")
    page.get_by_role("option").nth(1).click()
    page.click("#discover-teach-merge")
    page.wait_for_function("() => document.querySelector('#discover-teach-status').innerText.includes('joined')",
                           timeout=150_000)
    after = set(job.result.labels.tolist())
    assert len(after) == len(before) - 1 and after < before
    assert page.evaluate(labels_on_map) == job.result.labels.tolist()

    # split: the halves are shown with their sizes; confirming says what happened. Splitting the group just
    # merged contradicts the merge: said in words beside the answers, nothing changes
    def split(option: int) -> str:
        page.click("#discover-teach-split-group input")
        page.get_by_role("option").nth(option).click()
        page.click("#discover-teach-propose-split")
        page.wait_for_function("() => document.querySelector('#discover-teach-status').innerText"
                               ".includes('Check the two halves')", timeout=150_000)
        assert page.is_visible("#discover-teach-confirm-split")
        page.click("#discover-teach-confirm-split")
        page.wait_for_function("() => { const t = document.querySelector('#discover-teach-status').innerText;"
                               " return ['became a new group', 'could not be separated', 'Contradictory']"
                               ".some(w => t.includes(w)); }", timeout=150_000)
        no_error_badges(page)
        return page.inner_text("#discover-teach-status")

    labels = job.result.labels.copy()
    assert "Contradictory" in split(0) and np.array_equal(job.result.labels, labels)  # largest first: the merged
    split(len(set(labels.tolist())) - 1)
    n_answers = len(teacher.answers)
    assert n_answers in (9, 10)

    # relearn, then undo: the undo asks first, since it would throw the relearning away
    page.locator("body").press("r")
    page.wait_for_function("() => document.querySelector('#discover-teach-status').innerText"
                           f".includes('Relearnt the features from {n_answers} answers')", timeout=300_000)
    assert teacher.clusterer.relearnings_ == [n_answers]
    # the relearning drew its own curves (the run's training curve is left as it was), and the button says how
    # long the next one takes here
    page.wait_for_function("() => Number(document.querySelector('#discover-curves [data-series=relearning]')"
                           "?.dataset.points) > 0", timeout=60_000)
    assert "about" in page.inner_text("#discover-teach-relearn")
    page.click("#discover-teach-undo")
    page.wait_for_function("() => document.querySelector('#discover-teach-status').innerText"
                           f".includes('with {n_answers - 1} answers')", timeout=150_000)
    assert any(kind == "confirm" and "relearning" in text for kind, text in dialogs), dialogs
    assert teacher.clusterer.relearnings_ == [] and len(teacher.answers) == n_answers - 1

    # export; reload: the same groups, names and answers
    out = tmp_path / "exported"
    fill(page, "discover-out", str(out))
    page.click("#discover-export")
    page.wait_for_function("() => document.querySelector('#discover-export-md').innerText.includes('120 images')",
                           timeout=150_000)
    assert (out / "answers.csv").is_file()
    labels = job.result.labels.tolist()
    page.reload()
    page.wait_for_function("() => document.querySelector('#discover-map .l2c-map')?.dataset.ready === '1'",
                           timeout=300_000)
    assert page.evaluate(labels_on_map) == labels

    # the other demo, over a taught run: asks first (dismissed here: nothing starts)
    page.click("#try-photo-demo")
    page.wait_for_timeout(1000)
    assert any(f"your {n_answers - 1} answers" in text for _, text in dialogs), dialogs
    assert job_shown(page) == job.id
    assert not elsewhere, elsewhere

    # the page's address without its key (a bookmark, a link shared): what to do, in plain words
    stranger = page.context.browser.new_context()
    try:
        bare = stranger.new_page()
        answer = bare.goto(served_app.base_url)
        assert answer.status == 403
        words = bare.inner_text("body")
        assert "terminal" in words and "l2c-explorer" in words and "Forbidden" not in words
        shot(bare, None, "12-page-without-its-key.png")
    finally:
        stranger.close()

    # a name typed but not saved: leaving the page asks first
    page.click("#discover-cluster input")
    page.get_by_role("option").nth(1).click()
    page.wait_for_function("() => !document.querySelector('#discover-rename textarea').disabled", timeout=75_000)
    leaving = ("() => { const e = new Event('beforeunload', {cancelable: true}); window.dispatchEvent(e);"
               " return e.defaultPrevented; }")  # what the browser asks the page before it leaves
    assert page.evaluate(leaving) is False
    fill(page, "discover-rename", "typed, not saved")
    assert page.evaluate(leaving) is True
    page.click("#discover-rename-btn")
    page.wait_for_function("() => document.querySelector('#discover-cluster input').value.startsWith('typed')",
                           timeout=150_000)
    assert page.evaluate(leaving) is False

"""The app in a real browser (Debian's Chromium driven by Playwright), as a person uses it.

Each step also saves a screenshot: into ``tests/artifacts/steps/``, or into ``docs/screenshots/`` (the
README's pictures) when ``L2C_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from app_helpers import ARTIFACTS, DEMO, REPO

pytestmark = [pytest.mark.browser]

SHOTS = REPO / "docs" / "screenshots" if os.environ.get("L2C_UPDATE_SCREENSHOTS") == "1" else ARTIFACTS / "steps"


def shot(page, selector: str | None, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    if selector is None:
        page.screenshot(path=str(SHOTS / name))
    else:
        page.locator(selector).screenshot(path=str(SHOTS / name))


def fill(page, elem_id: str, value: str) -> None:
    page.locator(f"#{elem_id}").locator("textarea, input").first.fill(value)


def set_number(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def curve_points(page, series: str) -> int:
    return int(page.eval_on_selector(f"#discover-curves [data-series={series}]", "e => e.dataset.points") or 0)


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


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def open_app(page, served_app, query: str = "") -> None:
    page.goto(served_app.url + query)
    page.wait_for_function("() => { const i = document.querySelector('#model input'); return i && i.value; }")


def test_try_the_demo_shows_live_points_and_stops(page, served_app):
    open_app(page, served_app)
    assert "Computing on:" in page.inner_text("#device-badge")
    assert "never saw" in page.inner_text("#model-card")
    shot(page, "#step-model", "01-similarity-model.png")
    page.click("#try-demo")
    # how soon the first point shows is measured by benchmarks; here: it shows, live
    page.wait_for_function(
        "() => Number(document.querySelector('#discover-curves .l2c-curves')?.dataset.points) > 0", timeout=300_000)
    assert "omniglot_keble" in page.input_value("#folder textarea, #folder input")
    assert "520 images" in page.inner_text("#folder-report")
    assert "job=" in page.url
    page.click("#discover-stop")
    page.wait_for_selector("#discover-progress [data-status=stopped]", timeout=300_000)
    job = served_app.workbench.job(page.eval_on_selector("#discover-progress [data-status]", "e => e.dataset.job"))
    assert job.status == "stopped" and job.stop_requested is not None


def test_discover_explore_and_export(page, served_app, tmp_path):
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

    # 3 · discover: both live curves grow, then Stop ends the run within 2 s and keeps the result
    set_number(page, "steps", 1000)
    page.click("#discover-start")
    loss_points = "Number(document.querySelector('#discover-curves [data-series=loss]')?.dataset.points)"
    page.wait_for_function(f"() => {loss_points} >= 2", timeout=300_000)
    loss1, k1 = curve_points(page, "loss"), curve_points(page, "k_estimated")
    page.wait_for_function(f"() => {loss_points} > {loss1}", timeout=150_000)
    assert curve_points(page, "loss") > loss1 and curve_points(page, "k_estimated") > k1
    progress = page.inner_text("#discover-progress")
    assert "Learning to group" in progress and "left" in progress
    shot(page, "#step-discover", "03-find-categories-live.png")
    job_id = page.eval_on_selector("#discover-progress [data-status]", "e => e.dataset.job")
    page.click("#discover-stop")
    page.wait_for_selector("#discover-progress [data-status=stopped]", timeout=300_000)
    job = served_app.workbench.job(job_id)
    assert job.status == "stopped" and job.result is not None  # Stop keeps what was learnt

    # 4 · the UMAP map
    page.wait_for_function("() => { const m = document.querySelector('#discover-map .l2c-map');"
                           " return m && m.dataset.ready === '1' && m.dataset.method === 'umap'; }", timeout=600_000)
    assert map_state(page)["points"] == "520"
    page.locator("#discover-map").scroll_into_view_if_needed()
    result = served_app.workbench.result(job_id)

    # hovering a point shows that image's thumbnail (a small file from the app's cache)
    p = point_position(page)
    page.mouse.move(p["x"] + 25, p["y"] + 25)
    page.mouse.move(p["x"], p["y"], steps=4)
    page.wait_for_function("() => document.querySelector('#discover-map .l2c-hover').style.display === 'block'",
                           timeout=150_000)
    page.wait_for_function("() => { const i = document.querySelector('#discover-map .l2c-hover img');"
                           " return i.complete && i.naturalWidth > 0; }", timeout=150_000)
    hovered = int(map_state(page)["hoverIndex"])
    # the card shows the image under the pointer (points may overlap: then any of them)
    at = page.evaluate("""(i) => { const gd = document.querySelector('#discover-map .l2c-map-plot');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
        for (const tr of gd._fullData) { const k = Array.from(tr.customdata).indexOf(i);
          if (k >= 0) return [r.left + xa._offset + xa.l2p(tr.x[k]), r.top + ya._offset + ya.l2p(tr.y[k])]; } }""",
                       hovered)
    assert abs(at[0] - p["x"]) < 12 and abs(at[1] - p["y"]) < 12
    src = page.get_attribute("#discover-map .l2c-hover img", "src")
    key = served_app.workbench.thumbs.key(target / result.paths[hovered])
    assert src.endswith(f"{key}.webp") and "gradio_api/file=" in src and str(target) not in src
    assert result.paths[hovered] in page.inner_text("#discover-map .l2c-hover-text")
    shot(page, "#discover-map", "04-explore-hover.png")

    # clicking a point isolates its group and shows its exemplars
    page.mouse.click(p["x"], p["y"])
    page.wait_for_function("() => document.querySelector('#discover-map .l2c-map').dataset.isolated !== ''",
                           timeout=150_000)
    cluster = int(map_state(page)["isolated"])
    assert cluster in (int(result.labels[hovered]), int(result.labels[p["i"]]))
    assert int(map_state(page)["points"]) == int((result.labels == cluster).sum())
    picked = f"document.querySelector('#discover-cluster input').value.startsWith('cluster {cluster} ')"
    page.wait_for_function(f"() => {picked}", timeout=150_000)
    page.wait_for_function("() => document.querySelectorAll('#discover-typical img').length > 0", timeout=75_000)
    assert page.locator("#discover-uncertain img").count() > 0
    shot(page, "#discover-cluster-box", "05-cluster-exemplars.png")
    page.click("#discover-map [data-action=all]")
    page.wait_for_function("() => document.querySelector('#discover-map .l2c-map').dataset.points === '520'")

    # lasso selection shows the selected images in a gallery
    box = page.locator("#discover-map .l2c-map-plot").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    for fx, fy in ((0.8, 0.2), (0.8, 0.8), (0.2, 0.8), (0.2, 0.21)):
        page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy, steps=6)
    page.mouse.up()
    page.wait_for_function("() => document.querySelectorAll('#discover-selection img').length > 0", timeout=75_000)
    n_selected = int(map_state(page)["selected"])
    assert n_selected > 0 and f"{n_selected} image" in page.inner_text("#discover-selection-md")
    assert page.locator("#discover-selection img").count() == min(n_selected, 60)
    shot(page, "#discover-step-explore", "06-explore-selection.png")

    # 5 · results: metrics, export into per-cluster folders; the target folder is untouched
    assert "ACC" in page.inner_text("#discover-results")
    out = tmp_path / "exported"
    fill(page, "discover-out", str(out))
    page.click("#discover-export")
    page.wait_for_function("() => document.querySelector('#discover-export-md').innerText.includes('520 images')",
                           timeout=150_000)
    exported = list(out.rglob("*.png"))
    assert len(exported) == 520 and (out / "assignments.csv").is_file()
    assert len({f.parent.name for f in exported}) == result.n_clusters
    assert snapshot(target) == before
    shot(page, "#discover-step-results", "07-results-export.png")

    # a reload reconnects to the run (its id is in the URL)
    assert f"job={job_id}" in page.url
    page.reload()
    page.wait_for_function("() => { const m = document.querySelector('#discover-map .l2c-map');"
                           " return m && m.dataset.ready === '1'; }", timeout=150_000)
    assert "ACC" in page.inner_text("#discover-results")
    assert page.eval_on_selector("#discover-progress [data-status]", "e => e.dataset.job") == job_id


def test_a_result_from_python_is_explored_on_the_page(page, served_app, keble6):
    """A clusterer fitted in Python opens on the page; the map draws every image once, whatever the colouring."""
    clusterer = served_app.discover(keble6, steps=20, labelled=True, device="cpu", make_map=False)
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
    page.wait_for_function("() => Number(document.querySelector('#adapt-curves [data-series=training]')"
                           "?.dataset.points) >= 2", timeout=600_000)
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

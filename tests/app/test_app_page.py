"""How the page looks and behaves around a finished run (Debian's Chromium driven by Playwright, 1400x1000):
nothing on it leads away from this computer, the wheel scrolls the page, groups have colours of their own,
captions sit under their pictures, and a question's images can be looked at closely."""

from __future__ import annotations

import shutil
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import pytest
from app_helpers import DEMO, box, lasso, need_demo_and_model, overlap

pytestmark = [pytest.mark.browser]

MAP = "#discover-map .l2c-map"
PLOT = "#discover-map .l2c-map-plot"

# every address the page's elements point to, resolved against the page, that is not on the app's own origin
FOREIGN_URLS = """() => {
  const attrs = [["a[href]", "href"], ["area[href]", "href"], ["form[action]", "action"], ["img[src]", "src"],
                 ["script[src]", "src"], ["link[href]", "href"], ["iframe[src]", "src"], ["source[src]", "src"],
                 ["video[src]", "src"], ["audio[src]", "src"], ["embed[src]", "src"], ["object[data]", "data"]];
  const out = [];
  for (const [sel, attr] of attrs) {
    for (const e of document.querySelectorAll(sel)) {
      const raw = e.getAttribute(attr);
      let url;
      try { url = new URL(raw, document.baseURI); } catch (err) { out.push(`${sel}: ${raw}`); continue; }
      if (["data:", "blob:", "about:"].includes(url.protocol)) continue;
      if (url.origin !== window.location.origin) out.push(`${sel}: ${raw}`);
    }
  }
  return out;
}"""


@pytest.fixture(scope="module")
def finished_run(served_app, tmp_path_factory):
    """A finished discovery of 6 Keble characters (120 images), with its map; (job, folder)."""
    need_demo_and_model()
    folder = tmp_path_factory.mktemp("page") / "keble6"
    for char_dir in sorted((DEMO / "omniglot_keble").iterdir())[:6]:
        shutil.copytree(char_dir, folder / char_dir.name)
    job = served_app.discover(folder, wait=False, labelled=True, device="cpu", steps=30, self_training_steps=0)
    assert job.wait(600) and job.result is not None, job.error
    return job, folder


def open_run(page, served_app, job) -> None:
    page.goto(served_app.page_url(job=job.id))
    page.wait_for_function(f"() => document.querySelector('{MAP}')?.dataset.ready === '1'", timeout=300_000)


def plot_centre(page) -> dict:
    """The map's centre, brought into the middle of the window."""
    page.eval_on_selector(PLOT, "e => e.scrollIntoView({block: 'center'})")
    b = box(page, PLOT)
    return {"x": (b["left"] + b["right"]) / 2, "y": (b["top"] + b["bottom"]) / 2}


def test_the_map_offers_only_local_actions_and_nothing_points_away(page, served_app, finished_run):
    """The page promises that nothing leaves this computer: no "Share chart" / cloud / Chart Studio action
    in the map's toolbar, no link, script, style or image from another host; and each group its own colour."""
    job, _ = finished_run
    open_run(page, served_app, job)
    centre = plot_centre(page)
    page.mouse.move(centre["x"], centre["y"])  # the toolbar shows on hover
    page.wait_for_selector("#discover-map .modebar-btn")
    buttons = page.eval_on_selector_all(
        "#discover-map .modebar-btn", "es => es.map(e => [e.dataset.title || '', e.dataset.attr || '',"
                                      " e.dataset.val || '', e.getAttribute('href') || ''])")
    said = [" ".join(b).lower() for b in buttons]
    assert not [s for s in said if any(w in s for w in ("share", "cloud", "edit", "chart studio", "plotly"))], buttons
    # the local actions stay: zoom (and reset by double-click or the toolbar), pan, box and lasso select
    for title in ("Zoom", "Pan", "Box Select", "Lasso Select", "Reset axes"):
        assert title in [b[0] for b in buttons], (title, buttons)
    assert page.locator("#discover-map .modebar a[href]").count() == 0  # no "Produced with Plotly" link
    assert page.evaluate(f"() => document.querySelector('{PLOT}')._context.doubleClick") == "reset+autosize"

    assert urlsplit(page.url).netloc == urlsplit(served_app.base_url).netloc
    assert page.evaluate(FOREIGN_URLS) == []

    # groups have different colours: the colour of a trace is that of its group in the run's palette
    traces = page.evaluate(f"""() => document.querySelector('{PLOT}')._fullData
        .filter(t => t.visible === true).map(t => [t.meta, t.marker.color])""")
    palette = page.evaluate(f"() => JSON.parse(document.querySelector('{MAP}').l2c.state.raw).colours")
    assert len(traces) == job.result.n_clusters >= 2
    assert len({colour for _, colour in traces}) == len(traces), traces
    assert all(colour == palette[k % len(palette)] for k, colour in traces), (traces, palette)


def test_the_wheel_over_the_map_scrolls_the_page(page, served_app, finished_run):
    """Scrolling with the pointer over the map scrolls the page; it does not zoom the map."""
    job, _ = finished_run
    open_run(page, served_app, job)
    centre = plot_centre(page)
    assert page.evaluate("(p) => !!document.elementFromPoint(p.x, p.y).closest('.l2c-map-plot')", centre)
    assert page.evaluate("() => document.scrollingElement.scrollHeight - window.innerHeight - window.scrollY") > 600
    before = page.evaluate("() => window.scrollY")
    x_range = page.evaluate(f"() => document.querySelector('{PLOT}')._fullLayout.xaxis.range.slice()")
    page.mouse.move(centre["x"], centre["y"])
    page.mouse.wheel(0, 600)
    page.wait_for_function(f"() => window.scrollY > {before}", timeout=20_000)
    assert page.evaluate(f"() => document.querySelector('{PLOT}')._fullLayout.xaxis.range.slice()") == x_range


def captions_under_pictures(page, elem_id: str) -> None:
    """In gallery ``elem_id``, each caption is under its picture, inside its tile, and the gallery's label is
    above the first row, not over its pictures."""
    page.locator(f"#{elem_id}").scroll_into_view_if_needed()
    label = box(page, f"#{elem_id} label[data-testid=block-label]")
    tiles = page.eval_on_selector_all(f"#{elem_id} .thumbnail-item", """es => es.slice(0, 6).map(e => {
        const b = x => { const r = x.getBoundingClientRect();
                         return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; };
        const img = e.querySelector('img'), cap = e.querySelector('.caption-label');
        return {img: b(img), caption: cap ? b(cap) : null, tile: b(e)}; })""")
    assert tiles, elem_id
    first_row = min(t["tile"]["top"] for t in tiles)
    for t in tiles:
        img, caption, tile = t["img"], t["caption"], t["tile"]
        assert caption is not None, (elem_id, t)
        assert not overlap(img, caption), (elem_id, t)
        assert caption["top"] >= img["bottom"] - 0.5, (elem_id, t)  # under it, not beside or above
        assert tile["top"] - 1 <= img["top"] and caption["bottom"] <= tile["bottom"] + 1, (elem_id, t)
        assert img["bottom"] - img["top"] > 0.4 * (tile["bottom"] - tile["top"]), (elem_id, t)  # still a picture
        if tile["top"] == first_row:
            assert not overlap(label, img), (elem_id, label, t)


def test_captions_and_labels_never_cover_the_pictures(page, served_app, finished_run):
    """The sample strip, the exemplar, selection and split galleries: captions under the pictures."""
    job, folder = finished_run
    open_run(page, served_app, job)
    # the sample strip of a folder
    page.locator("#folder").locator("textarea, input").first.fill(str(folder))
    page.click("#check-folder")
    page.wait_for_function("() => document.querySelectorAll('#folder-sample img').length >= 12", timeout=150_000)
    captions_under_pictures(page, "folder-sample")
    # a click on a point: its group's most typical and least certain images
    page.eval_on_selector(PLOT, "e => e.scrollIntoView({block: 'center'})")
    p = page.evaluate(f"""() => {{ const gd = document.querySelector('{PLOT}');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
        const tr = gd._fullData[0];
        return {{x: r.left + xa._offset + xa.l2p(tr.x[0]), y: r.top + ya._offset + ya.l2p(tr.y[0])}}; }}""")
    page.mouse.click(p["x"], p["y"])
    page.wait_for_function(f"() => document.querySelector('{MAP}').dataset.isolated !== ''", timeout=150_000)
    page.wait_for_function("() => document.querySelectorAll('#discover-typical img').length > 0", timeout=75_000)
    page.wait_for_function("() => document.querySelectorAll('#discover-uncertain img').length > 0", timeout=75_000)
    captions_under_pictures(page, "discover-typical")
    captions_under_pictures(page, "discover-uncertain")
    page.click("#discover-map [data-action=all]")
    page.wait_for_function(f"() => document.querySelector('{MAP}').dataset.points === '120'")
    # a lasso around the middle of the map: the selection gallery
    page.eval_on_selector(PLOT, "e => e.scrollIntoView({block: 'center'})")
    lasso(page, PLOT, 0.1)
    page.wait_for_function("() => document.querySelectorAll('#discover-selection img').length > 0", timeout=75_000)
    captions_under_pictures(page, "discover-selection")
    # the split the app proposes for a group (the teach panel's group lists are filled once it is used)
    page.locator("#discover-teach").scroll_into_view_if_needed()
    page.click("#discover-teach-ask")
    page.wait_for_selector("#discover-teach-question .l2c-question[data-a]", timeout=150_000)
    page.click("#discover-teach-split-group input")
    page.get_by_role("option").nth(0).click()
    page.click("#discover-teach-propose-split")
    for half in ("first", "second"):
        page.wait_for_function(f"() => document.querySelectorAll('#discover-teach-split-{half} img').length > 0",
                               timeout=150_000)
        captions_under_pictures(page, f"discover-teach-split-{half}")
    assert page.evaluate(FOREIGN_URLS) == []


def test_question_images_enlarge_and_keep_their_folder_to_themselves(page, served_app, finished_run):
    """A click on a question's image shows it large over the page, a second click closes it; the captions
    name the file, never the folder (which here is the answer)."""
    job, _ = finished_run
    open_run(page, served_app, job)
    page.locator("#discover-teach").scroll_into_view_if_needed()
    page.click("#discover-teach-ask")
    page.wait_for_selector("#discover-teach-question .l2c-question[data-a]", timeout=150_000)
    q = page.eval_on_selector("#discover-teach-question .l2c-question",
                              "e => [Number(e.dataset.a), Number(e.dataset.b)]")
    paths = [job.result.paths[i] for i in q]
    captions = page.eval_on_selector_all("#discover-teach-question figcaption", "es => es.map(e => e.textContent)")
    alts = page.eval_on_selector_all("#discover-teach-question img", "es => es.map(e => e.alt)")
    assert captions == alts == [PurePosixPath(p).name for p in paths]
    text = page.inner_text("#discover-teach-question")
    assert not any(PurePosixPath(p).parent.name in text for p in paths), (text, paths)

    image = "#discover-teach-question img"
    small = box(page, image)
    src = page.eval_on_selector(image, "e => e.src")
    page.click(image)
    page.wait_for_function(f"() => document.querySelector('{image}').getBoundingClientRect().width > 300",
                           timeout=20_000)
    large = box(page, image)
    assert large["right"] - large["left"] >= 2.5 * (small["right"] - small["left"])
    assert large["left"] >= 0 and large["top"] >= 0 and large["right"] <= 1400 and large["bottom"] <= 1000
    assert page.eval_on_selector(image, "e => e.src") == src
    assert urlsplit(src).netloc == urlsplit(served_app.base_url).netloc
    # it is on top: what the pointer finds at its centre is the image itself
    centre = {"x": (large["left"] + large["right"]) / 2, "y": (large["top"] + large["bottom"]) / 2}
    assert page.evaluate(f"(p) => document.elementFromPoint(p.x, p.y) === document.querySelector('{image}')", centre)
    page.mouse.click(20, 20)  # anywhere on the dimmed page closes it
    page.wait_for_function(f"() => document.querySelector('{image}').getBoundingClientRect().width < 140")
    assert page.eval_on_selector("#discover-teach-question details", "e => e.open") is False

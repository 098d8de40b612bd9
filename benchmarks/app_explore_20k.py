"""How interactive the explorer stays with 20,000 images (map, hover thumbnails, lasso, galleries).

Builds 20,000 small real image files and a synthetic clustering of them (30 groups in a 64-d feature
space, as a clusterer's ``embedding_`` would be), opens it in the app like a finished run, and drives
Debian's Chromium with Playwright to time what a person does:

* preparing the run's map: PCA preview, then UMAP (umap-learn), and the thumbnail files;
* the page: first drawing of the map, hovering points until their thumbnail shows, a lasso selection until
  its gallery shows, recolouring by confidence, isolating a group.

Usage::

    nice -n 10 .venv/bin/python benchmarks/app_explore_20k.py [--n 20000] [--out benchmarks/out]

Prints a table and writes ``app_explore_<n>.json``. Training is not part of this benchmark (see the core's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def make_images(folder: Path, n: int, k: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """n small PNG drawings in k sub-folders (one shape per group, jittered); returns paths and groups."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, k, size=n)
    paths = []
    for i, g in enumerate(groups):
        rel = f"group{g:02d}/img_{i:05d}.png"
        path = folder / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            img = Image.new("L", (48, 48), 255)
            d = ImageDraw.Draw(img)
            r = np.random.default_rng(g)
            pts = [tuple(int(v) for v in r.integers(4, 44, size=2) + rng.integers(-3, 4, size=2)) for _ in range(4)]
            d.line(pts, fill=0, width=3)
            img.save(path)
        paths.append(rel)
    return paths, groups


def synthetic_result(folder: Path, paths: list[str], groups: np.ndarray, k: int, run_dir: Path):
    from l2c_explorer.app.workbench import RunResult

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(k, 64)) * 3
    emb = centres[groups] + rng.normal(size=(len(groups), 64))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.where(rng.random(len(groups)) < 0.1, rng.integers(0, k, size=len(groups)), groups)
    confidence = rng.uniform(0.3, 1.0, size=len(groups))
    summary = {"n_images": len(paths), "k_estimated": k, "k_given": None, "seconds": 0.0, "device": "n/a"}
    return RunResult(kind="discover", estimator=None, run_dir=run_dir, summary=summary, labels=labels,
                     confidence=confidence, embedding=emb.astype(np.float32), paths=paths, root=folder, skipped=[],
                     names=[f"cluster {i}" for i in range(k)], n_clusters=k, truth=[f"group{g:02d}" for g in groups])


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--k", type=int, default=30)
    ap.add_argument("--data", default=None, help="where to write the images (default: a temporary folder)")
    ap.add_argument("--out", default="benchmarks/out")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from l2c_explorer.app import launch_app

    data = Path(args.data or tempfile.mkdtemp(prefix="l2c-20k-"))
    work = Path(tempfile.mkdtemp(prefix="l2c-20k-work-"))
    report: dict = {"n_images": args.n, "n_groups": args.k}
    report["make_images_s"], (paths, groups) = timed(lambda: make_images(data, args.n, args.k))

    app = launch_app(work_dir=work)
    app.wait_ready(600)
    bench = app.workbench
    result = synthetic_result(data, paths, groups, args.k, bench.workspace.run_dir("bench"))
    started = time.perf_counter()
    job = bench.open_result(result)
    while job.extra("map") is None:
        time.sleep(0.05)
    report["map_preview_s"] = time.perf_counter() - started
    while not job.extra("map_final"):
        time.sleep(0.2)
    report["map_umap_s"] = time.perf_counter() - started
    report["payload_mb"] = len(json.dumps(job.extra("map"), separators=(",", ":"))) / 1e6
    thumbs_job = bench.registry.latest(kind="thumbnails")
    thumbs_job.wait(1200)
    report["thumbnails_s"] = thumbs_job.finished_at - thumbs_job.started
    report["thumbnails_per_s"] = args.n / report["thumbnails_s"]
    report["thumbnail_bytes_mean"] = float(np.mean([bench.thumbs.file_of(k).stat().st_size
                                                    for k in job.extra("thumb_keys")[:500]]))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        t = time.perf_counter()
        page.goto(app.page_url(job=job.id))
        page.wait_for_function("() => document.querySelector('#discover-map .l2c-map')?.dataset.ready === '1'",
                               timeout=300_000)
        report["page_map_ready_s"] = time.perf_counter() - t
        page.locator("#discover-map").scroll_into_view_if_needed()
        # hover: from moving onto a point to its thumbnail being displayed
        hovers = []
        for k in range(0, 400, 20):
            pos = page.evaluate("""(k) => { const gd = document.querySelector('#discover-map .l2c-map-plot');
                const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
                const tr = gd._fullData[k % gd._fullData.length]; const j = Math.floor(k / 3) % tr.x.length;
                return [r.left + xa._offset + xa.l2p(tr.x[j]), r.top + ya._offset + ya.l2p(tr.y[j])]; }""", k)
            page.mouse.move(10, 10)
            page.wait_for_function("() => document.querySelector('#discover-map .l2c-hover').style.display !== 'block'")
            t = time.perf_counter()
            page.mouse.move(pos[0], pos[1])
            page.wait_for_function("() => { const c = document.querySelector('#discover-map .l2c-hover');"
                                   " const i = c.querySelector('img'); return c.style.display === 'block' &&"
                                   " i.complete && i.naturalWidth > 0; }", timeout=10_000)
            hovers.append(time.perf_counter() - t)
        report["hover_thumbnail_ms_median"] = 1000 * statistics.median(hovers)
        report["hover_thumbnail_ms_max"] = 1000 * max(hovers)
        # lasso: from releasing the mouse to the gallery showing
        box = page.locator("#discover-map .l2c-map-plot").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.35)
        page.mouse.down()
        for fx, fy in ((0.65, 0.35), (0.65, 0.65), (0.35, 0.65), (0.35, 0.36)):
            page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy, steps=5)
        t = time.perf_counter()
        page.mouse.up()
        page.wait_for_function("() => document.querySelectorAll('#discover-selection img').length > 0",
                               timeout=60_000)
        report["lasso_to_gallery_s"] = time.perf_counter() - t
        report["lasso_selected"] = int(page.eval_on_selector("#discover-map .l2c-map", "e => e.dataset.selected"))
        for name, action, check in (
            ("recolour_confidence_s", "#discover-map [data-colour=confidence]",
             "() => document.querySelector('#discover-map .l2c-map').dataset.colour === 'confidence'"),
            ("recolour_group_s", "#discover-map [data-colour=cluster]",
             "() => document.querySelector('#discover-map .l2c-map').dataset.colour === 'cluster'"),
        ):
            t = time.perf_counter()
            page.click(action)
            page.wait_for_function(check)
            report[name] = time.perf_counter() - t
        t = time.perf_counter()
        page.evaluate("() => document.querySelector('#discover-map .l2c-map').l2c.isolate(3)")
        report["isolate_group_s"] = time.perf_counter() - t
        browser.close()
    app.close()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"app_explore_{args.n}.json").write_text(json.dumps(report, indent=2))
    write_summary(report)
    width = max(map(len, report))
    for key, value in report.items():
        print(f"{key:<{width}}  {value:.3f}" if isinstance(value, float) else f"{key:<{width}}  {value}")


def write_summary(report: dict) -> None:
    """benchmarks/results/app_explore_20k.{json,md} and the one-line headline of the README (other sizes:
    app_explore_<n/1000>k.{json,md}, no headline)."""
    from common import RESULTS, machine_description, write_results

    machine = machine_description()
    rows = [
        ("UMAP map of all images (umap-learn), computed once and cached", f"{report['map_umap_s']:.0f} s"),
        ("quick PCA preview shown while UMAP runs", f"{report['map_preview_s']:.1f} s"),
        ("thumbnail cache, all images", f"{report['thumbnails_s']:.0f} s ({report['thumbnails_per_s']:.0f}/s, "
                                         f"{report['thumbnail_bytes_mean']:.0f} bytes each)"),
        ("map data sent to the page", f"{report['payload_mb']:.1f} MB"),
        ("page: map drawn", f"{report['page_map_ready_s']:.1f} s"),
        ("hover a point until its thumbnail shows (median, max)",
         f"{report['hover_thumbnail_ms_median']:.0f} ms, {report['hover_thumbnail_ms_max']:.0f} ms"),
        (f"lasso {report['lasso_selected']:,} points until the gallery shows", f"{report['lasso_to_gallery_s']:.2f} s"),
        ("recolour by confidence / by group", f"{report['recolour_confidence_s']:.2f} s / {report['recolour_group_s']:.2f} s"),
        ("isolate a group", f"{report['isolate_group_s']:.2f} s"),
    ]
    md = [f"Machine: {machine}; Debian Chromium driven by Playwright. {report['n_images']:,} images in "
          f"{report['n_groups']} groups.", "", "| what | time |", "|---|---|"]
    md += [f"| {a} | {b} |" for a, b in rows]
    name = f"app_explore_{report['n_images'] // 1000}k"
    write_results(name, {**report, "machine": machine}, "\n".join(md))
    if name != "app_explore_20k":
        return
    (RESULTS / "app_explore_20k.headline.md").write_text(
        f"App explorer with {report['n_images']:,} images: hovering a point shows its thumbnail in "
        f"{report['hover_thumbnail_ms_median']:.0f} ms (median); the UMAP map takes {report['map_umap_s']:.0f} s "
        f"once (a PCA preview shows after {report['map_preview_s']:.0f} s).\n")


if __name__ == "__main__":
    main()

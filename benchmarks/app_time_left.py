"""How far from the truth is the time left the app shows during a discovery, and during a relearning?

Each run is started through the app's engine (``Workbench.start_discovery``, exactly as the page starts
it) and its state is read four times a second, as the page reads it (``Job.snapshot``). After the run, the
true time left at each reading is known (the run's end minus the reading's time); the ratio of the
estimate shown to that truth is reported from 10% of the run onwards. The target: always within a factor
of 2 (ratio between 0.5 and 2), across the second round (sharpening and second pass) too.

The runs: the demo (520 Omniglot drawings, default settings), the same with 300 training steps, a small
folder (120 drawings), K given, no sharpening, the photo demo (500 photos, the photos model, default
settings; with the per-user cache as the app has it, and with nothing cached as a first run), and a
1,000-drawing folder from the Omniglot evaluation set when ``--data`` has it.

After the demo and the photo demo, three questions of the Teach panel are answered (from the folder names,
as a person would) and Relearn is pressed, as the page does (``Teacher.relearn``): the time left the page
shows during the relearning (``views.relearning_html``, from its latest report) is judged the same way, from
10% of the relearning onwards, and the estimate the page can show before Relearn is pressed
(``Teacher.relearn_estimate``) is compared with how long it took.

    python benchmarks/app_time_left.py [--data ../shared/data/omniglot/images_evaluation] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common import add_common_flags, machine_description, write_results
from datasets import OMNIGLOT_EVALUATION, ROOT, thousand_drawings

from l2c_explorer.app.workbench import Workbench

DEMO = ROOT / "demo_data" / "omniglot_keble"
PHOTOS = ROOT / "demo_data" / "photos_everyday"
ANSWERS = 3  # questions answered before Relearn is pressed
FROM = 0.10  # the estimate is judged from this share of the run onwards
FACTOR = 2.0


def folders(tmp: Path, data: Path | None) -> dict[str, Path]:
    small = tmp / "keble6"
    for char_dir in sorted(DEMO.iterdir())[:6]:
        shutil.copytree(char_dir, small / char_dir.name)
    out = {"demo": DEMO, "small": small}
    if PHOTOS.is_dir():
        out["photos"] = PHOTOS
    if data is not None and (data / "Kannada").is_dir():
        out["large"] = thousand_drawings(data, tmp / "omniglot1000")
    return out


SETTINGS = [  # (name, folder, options, model, relearn after it)
    ("demo (520 images, defaults)", "demo", {}, "omniglot", True),
    ("demo, 300 training steps", "demo", {"steps": 300}, "omniglot", False),
    ("120 images", "small", {}, "omniglot", False),
    ("demo, K given (26)", "demo", {"n_clusters": 26}, "omniglot", False),
    ("demo, no sharpening", "demo", {"self_training_steps": 0}, "omniglot", True),
    ("photo demo (500 photos, defaults)", "photos", {}, "photos", True),
    # a first run on the photos: the pretrained trunk's pass over every photo, and again in its relearning
    ("photo demo, nothing cached", "photos", {"cache": False}, "photos", True),
    ("1,000 images", "large", {}, "omniglot", False),
]


def measure(bench: Workbench, folder: Path, options: dict, model: str = "omniglot", every: float = 0.25) -> dict:
    """One run: the estimates shown, with when they were shown, and the run's length."""
    job = bench.start_discovery(folder, model=model, make_map=False, device="cpu", labelled=True, **options)
    readings = []
    while not job.finished:
        snap = job.snapshot()
        if snap.status == "running":
            left = snap.time_left if snap.time_left is not None else snap.eta
            readings.append({"t": snap.elapsed, "left": left, "stage": snap.stage})
        time.sleep(every)
    total = job.snapshot().elapsed
    if job.status != "done":
        raise SystemExit(f"the run ended as {job.status}: {job.error}")
    return {"seconds": total, "readings": readings, "timings": job.result.estimator.timings_, "job": job}


def measure_relearning(bench: Workbench, job, every: float = 0.25) -> dict:
    """A relearning after :data:`ANSWERS` answers (true to the folder names): the time left the page shows
    during it (as ``views.relearning_html`` shows it) and the estimate before it."""
    teacher = bench.teacher(job.id)
    truth = np.unique(np.asarray(job.result.truth), return_inverse=True)[1]
    for _ in range(ANSWERS):
        q = teacher.question()
        teacher.answer(q["a"], q["b"], bool(truth[q["a"]] == truth[q["b"]]))
    estimate = teacher.relearn_estimate()
    readings = []
    with ThreadPoolExecutor(1) as pool:  # Relearn pressed: the page reads its progress meanwhile
        started = time.perf_counter()
        relearning = pool.submit(teacher.relearn)
        while not relearning.done():
            p = teacher.progress
            if p is not None:
                readings.append({"t": time.perf_counter() - started, "left": p.time_left_now(), "stage": p.stage})
            time.sleep(every)
        total = time.perf_counter() - started
        relearning.result()  # raises what it raised
    return {"seconds": total, "readings": readings, "timings": {"relearn": teacher.clusterer.timings_["relearn"]},
            "estimate_before": estimate}


def judge(run: dict) -> dict:
    """Ratios estimate / truth from 10% of the run onwards (readings whose truth is under 0.5 s are left out:
    the page's last word then is "about 0 s" or "1 s", whatever the ratio)."""
    total = run["seconds"]
    ratios = []
    for r in run["readings"]:
        truth = total - r["t"]
        if r["t"] < FROM * total or truth < 0.5:
            continue
        ratios.append(float("inf") if r["left"] is None else r["left"] / truth)
    within = [1 / FACTOR <= x <= FACTOR for x in ratios]
    worst_high = max(ratios, default=float("nan"))
    worst_low = min(ratios, default=float("nan"))
    return {"n_readings": len(ratios), "within": sum(within) / len(within) if within else float("nan"),
            "lowest_ratio": worst_low, "highest_ratio": worst_high, "met": bool(within) and all(within)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, data=OMNIGLOT_EVALUATION, data_help="Omniglot alphabets; the 1,000-image folder is "
                     "made from their Kannada and Keble")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="names of the settings to run (default: all)")
    parser.add_argument("--name", default="app_time_left", help="results file stem (default app_time_left)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        found = folders(Path(tmp), Path(args.data) if args.data else None)
        bench = Workbench(Path(tmp) / "work")
        bench.warm_up()  # as the app does in the background before a first run
        try:
            for name, which, options, model, relearn in SETTINGS:
                if which not in found or (args.only and name not in args.only):
                    continue
                for repeat in range(args.repeats):
                    run = measure(bench, found[which], options, model)
                    verdict = judge(run)
                    rows.append({"setting": name, "repeat": repeat, "options": options, **verdict,
                                 "seconds": run["seconds"], "timings": run["timings"], "readings": run["readings"]})
                    print({k: v for k, v in rows[-1].items() if k != "readings"}, flush=True)
                    if relearn:
                        again = measure_relearning(bench, run["job"])
                        rows.append({"setting": f"{name}, relearning after {ANSWERS} answers", "repeat": repeat,
                                     "options": options, **judge(again), "seconds": again["seconds"],
                                     "estimate_before": again["estimate_before"], "timings": again["timings"],
                                     "readings": again["readings"]})
                        print({k: v for k, v in rows[-1].items() if k != "readings"}, flush=True)
        finally:
            bench.close()
    lines = [
        f"Time left shown during a discovery, started as the page starts it, and during a relearning after "
        f"{ANSWERS} answers, started as the page starts it ({machine_description()}); readings "
        f"4 times a second, judged from {FROM:.0%} of the run onwards (truth at least 0.5 s). Target: estimate / "
        f"truth always between {1 / FACTOR:g} and {FACTOR:g}.",
        "",
        "| run | seconds | readings | within a factor of 2 | lowest estimate / truth | highest | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['seconds']:.1f} | {r['n_readings']} | {r['within']:.0%} | "
                     f"{r['lowest_ratio']:.2f} | {r['highest_ratio']:.2f} | {'met' if r['met'] else 'not met'} |")
    before = [r for r in rows if r.get("estimate_before") is not None]
    if before:
        lines += ["", ("The estimate shown before Relearn is pressed (Teacher.relearn_estimate), against how long "
                       "the relearning took:"), "", "| relearning | estimate before (s) | took (s) | estimate / truth |",
                  "|---|---|---|---|"]
        lines += [f"| {r['setting']} | {r['estimate_before']:.1f} | {r['seconds']:.1f} | "
                  f"{r['estimate_before'] / r['seconds']:.2f} |" for r in before]
    load = [round(x, 2) for x in os.getloadavg()]
    shared = load[0] > (os.cpu_count() or 1)  # more than this benchmark's own work
    lines.insert(1, f"Load average (1, 5, 15 min) at the end: {load[0]}, {load[1]}, {load[2]} on {os.cpu_count()} cores"
                    + (" (the machine is shared: other work ran at the same time, so the pace changed during the runs)."
                       if shared else "."))
    lines.insert(1, "")
    write_results(args.name, {"machine": machine_description(), "load_average_at_end": load, "from": FROM,
                                    "factor": FACTOR, "runs": rows},
                  "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

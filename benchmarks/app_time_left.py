"""How far from the truth is the time left the app shows during a discovery?

Each run is started through the app's engine (``Workbench.start_discovery``, exactly as the page starts
it) and its state is read four times a second, as the page reads it (``Job.snapshot``). After the run, the
true time left at each reading is known (the run's end minus the reading's time); the ratio of the
estimate shown to that truth is reported from 10% of the run onwards. The target: always within a factor
of 2 (ratio between 0.5 and 2), across the second round (sharpening and second pass) too.

The runs: the demo (520 Omniglot drawings, default settings), the same with 300 training steps, a small
folder (120 drawings), K given, no sharpening, and a 1,000-drawing folder from the Omniglot evaluation set
when ``--data`` has it.

    python benchmarks/app_time_left.py [--data ../shared/data/omniglot/images_evaluation] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_description, write_results  # noqa: E402

from l2c_explorer.app.workbench import Workbench  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo_data" / "omniglot_keble"
FROM = 0.10  # the estimate is judged from this share of the run onwards
FACTOR = 2.0


def folders(tmp: Path, data: Path | None) -> dict[str, Path]:
    small = tmp / "keble6"
    for char_dir in sorted(DEMO.iterdir())[:6]:
        shutil.copytree(char_dir, small / char_dir.name)
    out = {"demo": DEMO, "small": small}
    if data is not None and (data / "Kannada").is_dir():
        large = tmp / "omniglot1000"
        chars = sorted((data / "Kannada").iterdir()) + sorted((data / "Keble").iterdir())[:9]
        for c in chars:
            shutil.copytree(c, large / f"{c.parent.name}_{c.name}")
        out["large"] = large
    return out


SETTINGS = [  # (name, folder, options)
    ("demo (520 images, defaults)", "demo", {}),
    ("demo, 300 training steps", "demo", {"steps": 300}),
    ("120 images", "small", {}),
    ("demo, K given (26)", "demo", {"n_clusters": 26}),
    ("demo, no sharpening", "demo", {"self_training_steps": 0}),
    ("1,000 images", "large", {}),
]


def measure(bench: Workbench, folder: Path, options: dict, every: float = 0.25) -> dict:
    """One run: the estimates shown, with when they were shown, and the run's length."""
    job = bench.start_discovery(folder, model="omniglot", make_map=False, device="cpu", **options)
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
    return {"seconds": total, "readings": readings, "timings": job.result.estimator.timings_}


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
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "omniglot" / "images_evaluation"))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="names of the settings to run (default: all)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        found = folders(Path(tmp), Path(args.data) if args.data else None)
        bench = Workbench(Path(tmp) / "work")
        bench.warm_up()  # as the app does in the background before a first run
        try:
            for name, which, options in SETTINGS:
                if which not in found or (args.only and name not in args.only):
                    continue
                for repeat in range(args.repeats):
                    run = measure(bench, found[which], options)
                    verdict = judge(run)
                    rows.append({"setting": name, "repeat": repeat, "options": options, **verdict,
                                 "seconds": run["seconds"], "timings": run["timings"], "readings": run["readings"]})
                    print({k: v for k, v in rows[-1].items() if k != "readings"}, flush=True)
        finally:
            bench.close()
    lines = [
        f"Time left shown during a discovery, started as the page starts it ({machine_description()}); readings "
        f"4 times a second, judged from {FROM:.0%} of the run onwards (truth at least 0.5 s). Target: estimate / "
        f"truth always between {1 / FACTOR:g} and {FACTOR:g}.",
        "",
        "| run | seconds | readings | within a factor of 2 | lowest estimate / truth | highest | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['seconds']:.1f} | {r['n_readings']} | {r['within']:.0%} | "
                     f"{r['lowest_ratio']:.2f} | {r['highest_ratio']:.2f} | {'met' if r['met'] else 'not met'} |")
    load = [round(x, 2) for x in os.getloadavg()]
    lines.insert(1, f"Load average (1, 5, 15 min) at the end: {load[0]}, {load[1]}, {load[2]} on {os.cpu_count()} cores.")
    lines.insert(1, "")
    write_results("app_time_left", {"machine": machine_description(), "load_average_at_end": load, "from": FROM,
                                    "factor": FACTOR, "runs": rows},
                  "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Digits domain-adaptation benchmark: USPS -> MNIST and MNIST -> USPS, every adaptation method side by side.

    python benchmarks/digits_da.py --data ../shared/data --seeds 3

Protocol
--------
* MNIST: the 10,000 images of the MNIST *test* set (the only MNIST split available offline here), 28 x 28.
* USPS: the 7,291 images of the USPS *training* split, 16 x 16.
* Both directions use these two sets: the source is fully labelled, the target's labels are used only to
  score. Accuracy is measured on the target images the method adapted to (transductive), as in the
  headline tables of SRDC.
* Every image goes through the package's own input path (:func:`l2c_explorer.data.images_from_arrays`):
  a 32 x 32 square, aspect ratio kept, so a USPS digit fills its frame while an MNIST digit keeps its
  4-pixel margin. That difference in scale and stroke is the domain shift.
* One run = one ``DomainAdapter(method, random_state=seed).fit(source, target)`` with the method's default
  hyper-parameters; its time includes everything (the similarity model of ccn+/ccn++ too), not reading.

Writes ``results/digits_da.json`` (every run and the aggregates) and ``results/digits_da.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "demo_data"))

from make_demo_data import read_idx  # noqa: E402  (the idx reader the demo folders are built with)

from l2c_explorer.adaptation import METHODS, DomainAdapter  # noqa: E402
from l2c_explorer.data import ImageSet, images_from_arrays  # noqa: E402

DIRECTIONS = {"usps-mnist": ("usps", "mnist"), "mnist-usps": ("mnist", "usps")}
NAMES = {"usps": "USPS", "mnist": "MNIST"}

# Published numbers on these tasks, for context only: other protocols, other networks, not run here.
# (method, USPS -> MNIST, MNIST -> USPS, reference)
ADDA = (
    "ADDA paper (Tzeng et al., CVPR 2017), Table 2: LeNet, 2,000 MNIST / 1,800 USPS training images, mean ± std "
    "over runs. Quoted from the READMEs of two PyTorch re-implementations (github.com/wogong/pytorch-adda for the "
    "source-only and ADDA rows); not checked against the paper's PDF"
)
CYCADA = (
    "CyCADA paper (Hoffman et al., ICML 2018), Table 1: full training sets, evaluated on the standard test sets. "
    "Quoted from a third-party summary of the paper; not checked against its PDF"
)
PUBLISHED = [
    ("Source only", "57.1 ± 1.7", "75.2 ± 1.6", ADDA),
    ("Gradient reversal (DANN)", "73.0 ± 2.0", "77.1 ± 1.8", ADDA),
    ("ADDA", "90.1 ± 0.8", "89.4 ± 0.2", ADDA),
    ("CoGAN", "89.1 ± 0.8", "91.2 ± 0.8", ADDA),
    ("Source only", "69.6", "82.2", CYCADA),
    ("CyCADA (pixel + feature)", "96.5", "95.6", CYCADA),
]


def load_digits(data: Path, size: int = 32, limit: int | None = None, seed: int = 0) -> dict[str, ImageSet]:
    """MNIST test and USPS train as labelled :class:`ImageSet` objects (``limit``: a seeded subset per set)."""
    mnist_x = read_idx(data / "mnist" / "t10k-images-idx3-ubyte.gz")
    mnist_y = read_idx(data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    usps = np.load(data / "usps" / "usps.npz")
    usps_x = np.clip(usps["x_train"] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    usps_y = usps["y_train"].astype(np.int64)
    sets = {}
    for name, x, y in (("mnist", mnist_x, mnist_y), ("usps", usps_x, usps_y)):
        idx = np.arange(len(x))
        if limit is not None and limit < len(x):
            idx = np.sort(np.random.default_rng(seed).permutation(len(x))[:limit])
        names = [f"{int(y[i])}/{name}_{i:05d}.png" for i in idx]
        sets[name] = images_from_arrays(x[idx], size=size, channels=1, labels=[str(int(v)) for v in y[idx]], names=names)
    return sets


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def run_one(method: str, seed: int, source: ImageSet, target: ImageSet, options: dict) -> dict:
    adapter = DomainAdapter(method, random_state=seed, **options)
    adapter.fit(source, target, labelled_target=True)
    scores = adapter.score()
    out = {
        "method": method,
        "seed": seed,
        "accuracy": scores["accuracy"],
        "mean_class_accuracy": scores["mean_class_accuracy"],
        "seconds": adapter.seconds_,
        "epochs": adapter.epochs_,
        "steps": adapter.steps_,
        "history": adapter.history_,
    }
    pairs = adapter.target_pair_scores()
    if pairs is not None:
        out["target_pair_scores"] = pairs
    return out


def aggregate(runs: list[dict]) -> dict:
    acc = np.array([r["accuracy"] for r in runs]) * 100
    sec = np.array([r["seconds"] for r in runs])
    return {
        "n_runs": len(runs),
        "accuracy_mean": float(acc.mean()),
        "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
        "accuracy_min": float(acc.min()),
        "accuracy_max": float(acc.max()),
        "seconds_mean": float(sec.mean()),
        "seconds_max": float(sec.max()),
    }


def markdown(result: dict) -> str:
    m = result["machine"]
    dirs = result["directions"]
    lines = [
        "## Digits domain adaptation (USPS <-> MNIST)",
        "",
        f"Target accuracy (%) over {result['seeds']} seed(s), mean ± standard deviation [min–max], and seconds per run "
        f"(mean, max). Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['torch_threads']} threads"
        f"{'; GPU ' + m['cuda'] if m['cuda'] else ', no GPU'}. Total wall time {result['wall_seconds'] / 60:.1f} min.",
        "",
        "| method | " + " | ".join(f"{NAMES[DIRECTIONS[d][0]]} → {NAMES[DIRECTIONS[d][1]]} acc. | s/run" for d in dirs) + " |",
        "|---|" + "---|---|" * len(dirs),
    ]
    for method in result["methods"]:
        cells = []
        for d in dirs:
            a = result["aggregates"].get(d, {}).get(method)
            if a is None:
                cells += ["–", "–"]
                continue
            cells.append(f"{a['accuracy_mean']:.1f} ± {a['accuracy_std']:.1f} [{a['accuracy_min']:.1f}–{a['accuracy_max']:.1f}]")
            cells.append(f"{a['seconds_mean']:.0f} ({a['seconds_max']:.0f})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Data: MNIST test ({result['sizes']['mnist']:,} images, the only MNIST split available offline) and USPS "
        f"train ({result['sizes']['usps']:,} images), both as 32 x 32 grayscale, in both directions; the source is "
        "fully labelled and the target's labels only score. Accuracy is on the target images adapted to "
        "(transductive). Defaults of `DomainAdapter` for every method"
        + (f", with {result['options']}" if result["options"] else "")
        + "; generated by `benchmarks/digits_da.py`.",
        "",
        "Published numbers on the same two tasks, for context (other protocols and networks, not run here):",
        "",
        "| method | USPS → MNIST | MNIST → USPS | reference |",
        "|---|---|---|---|",
    ]
    refs = []
    for method, u2m, m2u, ref in PUBLISHED:
        if ref not in refs:
            refs.append(ref)
        lines.append(f"| {method} | {u2m} | {m2u} | [{refs.index(ref) + 1}] |")
    lines.append("")
    lines += [f"[{i + 1}] {ref}." for i, ref in enumerate(refs)]
    lines += [
        "",
        "No USPS ↔ MNIST numbers to cite for CCN+/CCN++ or SRDC: the L2C paper's cross-domain experiments are "
        "Office-31 and SVHN → MNIST (not verified here) and the SRDC paper's are Office-31, ImageCLEF-DA and "
        "Office-Home with ResNet-50.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"), help="folder with mnist/ and usps/")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--directions", default=",".join(DIRECTIONS), help="usps-mnist, mnist-usps or both")
    parser.add_argument("--out", default=str(HERE / "results"), help="output folder (default benchmarks/results)")
    parser.add_argument("--name", default="digits_da", help="output file stem (default digits_da)")
    parser.add_argument("--limit", type=int, default=None, help="use a seeded subset of N images per set (quick checks)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a DomainAdapter parameter (value parsed as JSON), may be repeated")
    args = parser.parse_args(argv)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    directions = [d.strip() for d in args.directions.split(",") if d.strip()]
    for m in methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}")
    for d in directions:
        if d not in DIRECTIONS:
            parser.error(f"unknown direction {d!r}")
    options = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if "widths" in options:
        options["widths"] = tuple(options["widths"])

    started = time.perf_counter()
    sets = load_digits(Path(args.data), limit=args.limit)
    print(f"loaded MNIST {len(sets['mnist'])}, USPS {len(sets['usps'])} images in {time.perf_counter() - started:.1f} s", flush=True)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "digits domain adaptation",
        "machine": machine(),
        "seeds": args.seeds,
        "methods": methods,
        "directions": directions,
        "sizes": {k: len(v) for k, v in sets.items()},
        "options": options,
        "runs": {d: [] for d in directions},
        "aggregates": {d: {} for d in directions},
        "published": [{"method": m, "usps-mnist": a, "mnist-usps": b, "reference": r} for m, a, b, r in PUBLISHED],
    }
    for d in directions:
        src_name, tgt_name = DIRECTIONS[d]
        for method in methods:
            runs = []
            for seed in range(args.seeds):
                run = run_one(method, seed, sets[src_name], sets[tgt_name], options)
                runs.append(run)
                result["runs"][d].append(run)
                print(f"{d:11s} {method:12s} seed {seed}: accuracy {run['accuracy'] * 100:5.1f}%  "
                      f"{run['seconds']:6.1f} s", flush=True)
            result["aggregates"][d][method] = aggregate(runs)
            result["wall_seconds"] = time.perf_counter() - started
            (out_dir / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    result["wall_seconds"] = time.perf_counter() - started
    (out_dir / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    (out_dir / f"{args.name}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

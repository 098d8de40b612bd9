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

Writes ``results/digits_da.json`` (every run and the aggregates), ``results/digits_da.md`` (the table, with the
issue's targets checked and published numbers for context) and ``results/digits_da.headline.md`` (one line for the
README). ``--report-only`` rewrites the last two from the json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, add_common_flags, machine_description, write_results
from datasets import DATA, mnist_test, usps

from l2c_explorer.adaptation import METHODS, DomainAdapter
from l2c_explorer.data import ImageSet, images_from_arrays

# The targets: every adaptation method beats source-only; the best reaches 95% in both directions; one
# run of one method takes at most 3 minutes on 2 CPU cores.
TARGET_BEST_ACCURACY = 95.0
TARGET_SECONDS_PER_RUN = 180.0

DIRECTIONS = {"usps-mnist": ("usps", "mnist"), "mnist-usps": ("mnist", "usps")}
NAMES = {"usps": "USPS", "mnist": "MNIST"}

# Published numbers on these tasks, for context only: other protocols, other networks, not run here.
# (method, USPS -> MNIST, MNIST -> USPS, reference)
ADDA = (
    "ADDA paper (Tzeng et al., CVPR 2017, arXiv 1702.05464), Table 2: LeNet, 2,000 MNIST / 1,800 USPS training "
    "images, mean ± std over runs. The MNIST → USPS source-only and ADDA cells match the paper values quoted in the "
    "README of github.com/enpko47/pytorch_ADDA; the other cells are as recalled from the paper, not checked against "
    "its PDF"
)
CYCADA = (
    "CyCADA paper (Hoffman et al., ICML 2018, arXiv 1711.03213), Table 1: full training sets, evaluated on the "
    "standard test sets. The CyCADA cells match a third-party comparison table (a DASPOT repository README); the "
    "source-only cells are as recalled from the paper; not checked against its PDF"
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
    mnist_x, mnist_y = mnist_test(data)
    usps_x, usps_y = usps(data, ("train",))
    usps_y = usps_y.astype(np.int64)
    sets = {}
    for name, x, y in (("mnist", mnist_x, mnist_y), ("usps", usps_x, usps_y)):
        idx = np.arange(len(x))
        if limit is not None and limit < len(x):
            idx = np.sort(np.random.default_rng(seed).permutation(len(x))[:limit])
        names = [f"{int(y[i])}/{name}_{i:05d}.png" for i in idx]
        sets[name] = images_from_arrays(x[idx], size=size, channels=1, labels=[str(int(v)) for v in y[idx]], names=names)
    return sets


def machine(threads: int | None) -> dict:
    return {
        "description": machine_description(),
        "cores": os.cpu_count(),
        "load_average_at_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "torch_threads": torch.get_num_threads(),
    }


def run_one(method: str, seed: int, source: ImageSet, target: ImageSet, options: dict) -> dict:
    adapter = DomainAdapter(method, random_state=seed, **options)
    adapter.fit(source, target, labelled_target=True)
    scores = adapter.scores()
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
        f"Target accuracy (%) over {result['seeds']} seed(s), mean ± standard deviation [min–max], and seconds per run "
        f"(mean, max). Machine: {m['description']}; PyTorch used {m['torch_threads']} "
        f"thread{'s' if m['torch_threads'] > 1 else ''}; load average {m['load_average_at_start']} when the run started "
        f"(the machine was shared with other jobs, so the times are pessimistic). Total wall time "
        f"{result['wall_seconds'] / 60:.1f} min.",
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
    lines += ["", *target_status(result), ""]
    lines += [
        f"Data: MNIST test ({result['sizes']['mnist']:,} images, the only MNIST split available offline) and USPS "
        f"train ({result['sizes']['usps']:,} images), both as 32 x 32 grayscale, in both directions; the source is "
        "fully labelled and the target's labels only score. Accuracy is on the target images adapted to "
        "(transductive). Defaults of `DomainAdapter` for every method"
        + (f", with {result['options']}" if result["options"] else "")
        + f" ({schedule(result)}); generated by `benchmarks/digits_da.py`.",
        "",
        "Every adaptation method keeps separate batch-norm statistics for each domain and predicts the target with "
        "the target's own (as AdaBN does); source-only predicts it with the source's, as a network trained without "
        "the target must. Part of each method's gain over source-only comes from that alone. The time of a "
        "ccn+/ccn++ run includes learning its similarity model on the source.",
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
        "No USPS ↔ MNIST numbers to cite for CCN+/CCN++ or SRDC. The L2C paper's cross-domain experiments are "
        "Office-31 and SVHN → MNIST: a third-party summary credits CCN+/CCN++ with +6.2 points over source-only on "
        "Office-31 (average) and +37.1 points on SVHN → MNIST (not verified against the paper's tables). SRDC "
        "(ResNet-50) reports 90.8% on Office-31, against 81.1% for source-only and 82.6% for DANN in the same table "
        "(project page, tab3.png), also 90.9% on ImageCLEF-DA and 71.3% on Office-Home. Sources: "
        "docs/algorithms.md sections 2 and 3.8 of this project's shared documentation.",
    ]
    return "\n".join(lines) + "\n"


def schedule(result: dict) -> str:
    """The training length of the runs, e.g. '10 epochs, 600 steps of 64 + 64 images'."""
    runs = [r for rs in result["runs"].values() for r in rs]
    epochs = sorted({r["epochs"] for r in runs})
    steps = sorted({r["steps"] for r in runs})
    return (f"{'/'.join(map(str, epochs))} epochs, {'/'.join(map(str, steps))} steps of "
            f"{result['options'].get('batch_size', 64)} images per domain")


def target_status(result: dict) -> list[str]:
    """The issue's targets, checked on the aggregates (generated, never edited by hand)."""
    aggs = result["aggregates"]
    lines = ["Targets (checked on the numbers above):", ""]
    if "source-only" in result["methods"]:
        worse = [f"{m} in {d}" for d in result["directions"] for m in result["methods"]
                 if m != "source-only" and m in aggs[d] and "source-only" in aggs[d]
                 and aggs[d][m]["accuracy_mean"] <= aggs[d]["source-only"]["accuracy_mean"]]
        lines.append(f"* every adaptation method beats source-only (mean accuracy): "
                     f"{'**met**' if not worse else '**missed** (' + ', '.join(worse) + ')'}")
    for d in result["directions"]:
        if not aggs[d]:
            continue
        best = max(aggs[d], key=lambda m: aggs[d][m]["accuracy_mean"])
        acc = aggs[d][best]["accuracy_mean"]
        src, tgt = DIRECTIONS[d]
        lines.append(f"* best method reaches {TARGET_BEST_ACCURACY:.0f}% on {NAMES[src]} → {NAMES[tgt]}: {best}, "
                     f"{acc:.1f}%: {'**met**' if acc >= TARGET_BEST_ACCURACY else '**missed**'}")
    slowest = max((a["seconds_max"], m, d) for d in result["directions"] for m, a in aggs[d].items())
    lines.append(f"* one run of one method takes at most {TARGET_SECONDS_PER_RUN / 60:.0f} minutes: slowest run "
                 f"{slowest[0]:.0f} s ({slowest[1]}, {slowest[2]}): "
                 f"{'**met**' if slowest[0] <= TARGET_SECONDS_PER_RUN else '**missed**'}")
    return lines


def headline(result: dict) -> str:
    """One line for the README's results block (benchmarks/make_report.py)."""
    aggs = result["aggregates"]
    parts = []
    for d in result["directions"]:
        if not aggs[d]:
            continue
        best = max(aggs[d], key=lambda m: aggs[d][m]["accuracy_mean"])
        src, tgt = DIRECTIONS[d]
        text = f"{NAMES[src]} → {NAMES[tgt]} **{aggs[d][best]['accuracy_mean']:.1f}%** ({best}"
        if "source-only" in aggs[d] and best != "source-only":
            text += f"; source-only {aggs[d]['source-only']['accuracy_mean']:.1f}%"
        parts.append(text + ")")
    slowest = max(a["seconds_max"] for d in result["directions"] for a in aggs[d].values())
    return (f"Cross-domain digits, mean of {result['seeds']} seeds, best method: {', '.join(parts)}; every run at most "
            f"{slowest:.0f} s on {result['machine']['cores']} CPU cores.")


def write_outputs(result: dict, name: str, out_dir: Path | None) -> str:
    """Write the json, the markdown table and the one-line headline; return the markdown."""
    table = markdown(result)
    if out_dir is None:
        write_results(name, result, table)
        out_dir = RESULTS
    else:
        (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
        (out_dir / f"{name}.md").write_text(table)
    if any(result["aggregates"].values()):
        (out_dir / f"{name}.headline.md").write_text(headline(result) + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, data=DATA, data_help="folder with mnist/ and usps/", seeds=3, seeds_help="seeds 0..N-1")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--directions", default=",".join(DIRECTIONS), help="usps-mnist, mnist-usps or both")
    parser.add_argument("--out", default=None, help="output folder (default benchmarks/results)")
    parser.add_argument("--name", default="digits_da", help="output file stem (default digits_da)")
    parser.add_argument("--limit", type=int, default=None, help="use a seeded subset of N images per set (quick checks)")
    add_common_flags(parser, threads=None,
                     threads_help="PyTorch CPU threads (None: PyTorch's choice, one per core). On a machine shared "
                                  "with other jobs, 1 avoids threads spinning while they wait for each other")
    parser.add_argument("--report-only", action="store_true",
                        help="only rewrite the markdown and headline from the json of an earlier run (no training)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a DomainAdapter parameter (value parsed as JSON), may be repeated")
    args = parser.parse_args(argv)
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        result = json.loads(((out_dir or RESULTS) / f"{args.name}.json").read_text())
        print(write_outputs(result, args.name, out_dir))
        return 0

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

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    sets = load_digits(Path(args.data), limit=args.limit)
    print(f"loaded MNIST {len(sets['mnist'])}, USPS {len(sets['usps'])} images in {time.perf_counter() - started:.1f} s", flush=True)
    def save() -> str:
        """Write the results so far; return the markdown."""
        return write_outputs(result, args.name, out_dir)

    result = {
        "benchmark": "digits domain adaptation",
        "machine": machine(args.threads),
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
            save()
    result["wall_seconds"] = time.perf_counter() - started
    print(save())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

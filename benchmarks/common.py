"""Helpers shared by the benchmark scripts: machine description and result files."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_description(threads: int | None = None) -> str:
    """E.g. 'Intel Xeon ... , 2 cores, torch 2.14.1, CPU only'."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU used"
    cores = os.cpu_count()
    used = f", {threads} threads" if threads else ""
    return f"{cpu_model()}, {cores} cores{used}, {gpu}, torch {torch.__version__}, Python {platform.python_version()}"


def write_results(name: str, data: dict, markdown: str) -> None:
    """benchmarks/results/<name>.json (everything) and <name>.md (the table BENCHMARKS.md includes)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=float) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown.rstrip() + "\n")


def held_out_photo_folder(source: Path, dest: Path, *, per_class: int = 50, seed: int = 1) -> tuple[Path, list[str]]:
    """Symlinks to ``per_class`` seeded photos of each of the `photos` recipe's held-out source classes (the
    split its training makes, seed 0): the folder the photo recipe and its settings are chosen on."""
    import numpy as np

    from l2c_explorer.recipes import similarity_recipe
    from l2c_explorer.similarity import split_classes

    names = sorted(p.name for p in source.iterdir() if p.is_dir())
    _, held = split_classes(np.arange(len(names)), similarity_recipe("photos")["holdout"],
                            torch.Generator().manual_seed(0))
    rng = np.random.default_rng(seed)
    for c in (names[i] for i in held):
        (dest / c).mkdir(parents=True)
        for f in rng.choice(sorted((source / c).iterdir()), per_class, replace=False):
            (dest / c / f.name).symlink_to(f.resolve())
    return dest, [names[i] for i in held]

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

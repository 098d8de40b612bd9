"""Choose the eigengap rule's significance on validation alphabets, never on the evaluation alphabets.

Every 6th Omniglot background alphabet (5 of 30) is held out; a similarity model is trained with the
shipped recipe on the other 25, and the rule "K = the largest k whose eigengap is at least `s` times the
largest" is scored on the 5 held-out alphabets for several `s` (s = 1 is the classic largest-gap rule).
The chosen value is `l2c_explorer.graph.SIGNIFICANT_GAP`.

    python benchmarks/omniglot_k_rule.py                      # trains the 25-alphabet model (~10 min)
    python benchmarks/omniglot_k_rule.py --model FILE         # reuse a model trained on the 25

Writes benchmarks/results/omniglot_k_rule.{json,md}.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_description, write_results  # noqa: E402

from l2c_explorer.graph import SIGNIFICANT_GAP, eigengap_k, knn_graph, normalised_adjacency, top_eigenpairs  # noqa: E402
from l2c_explorer.similarity import load_similarity_model  # noqa: E402

CANDIDATES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def split(background: Path, work: Path) -> tuple[Path, Path]:
    train, valid = work / "train25", work / "valid5"
    for i, alphabet in enumerate(sorted(p for p in background.iterdir() if p.is_dir())):
        shutil.copytree(alphabet, (valid if i % 6 == 5 else train) / alphabet.name)
    return train, valid


def validation_setup(background: Path, work: Path, model: str | None) -> tuple[Path, str]:
    """Copy the split into ``work``; return the validation folder and a model trained on the 25 others.

    ``model``: a file already trained on the 25 training alphabets; None trains one with the shipped recipe.
    """
    train, valid = split(background, work)
    if model is None:
        stem = str(work / "train25")
        subprocess.run(["l2c-explorer", "train-similarity", str(train), "--recipe", "omniglot", "--out",
                        stem + "_model", "--name", "train25"], check=True)
        model = stem + "_model.safetensors"
    return valid, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--background", default="../shared/data/omniglot/images_background")
    parser.add_argument("--model", default=None, help="a model already trained on the 25 training alphabets")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--neighbors", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        valid, model_path = validation_setup(Path(args.background), Path(tmp), args.model)
        model = load_similarity_model(model_path)
        spectra = {}
        for alphabet in sorted(valid.iterdir()):
            data = model.prepare(str(alphabet), labelled=True)
            emb = model.embed(data.pixels)
            values, _ = top_eigenpairs(normalised_adjacency(knn_graph(emb, k=args.neighbors)), 102)
            spectra[alphabet.name] = (values, len(set(data.labels)))

    rows = {}
    for s in CANDIDATES:
        rows[s] = {name: eigengap_k(v, max_k=100, significance=s) - k for name, (v, k) in spectra.items()}
    names = list(spectra)
    lines = [
        f"Machine: {machine_description(args.threads)}. Validation alphabets (held out from the similarity "
        f"model's training, never used for evaluation): {', '.join(names)}.",
        "",
        "| significance s | mean abs K error | " + " | ".join(f"{n} (K={spectra[n][1]})" for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for s, errs in rows.items():
        lines.append(f"| {s}{' (used)' if s == SIGNIFICANT_GAP else ''} | {np.mean(np.abs(list(errs.values()))):.2f} | "
                     + " | ".join(f"{e:+d}" for e in errs.values()) + " |")
    write_results("omniglot_k_rule", {"errors": {str(s): e for s, e in rows.items()}, "used": SIGNIFICANT_GAP,
                                      "k_true": {n: k for n, (_, k) in spectra.items()}}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

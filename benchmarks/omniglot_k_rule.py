"""Choose the K-estimation rule by cross-validation on Omniglot's background alphabets, never on evaluation ones.

The 30 background alphabets are split into 6 folds (alphabet i, in name order, goes to fold i mod 6). For
each fold a similarity model is trained with the shipped recipe on the other 25 alphabets, and its 5
held-out alphabets serve for validation: 30 validation alphabets in all.

1. Spectra: each held-out alphabet is embedded with its fold's model, and the first-pass rule "K = the
   largest k whose eigengap is at least `s` times the largest" is scored on the spectra of several
   graphs of the embeddings (0/1 k-nearest-neighbour links, or self-tuning weights) for several `s`
   (s = 1 is the classic largest-gap rule). The chosen graph and `s` are
   `l2c_explorer.graph.K_GRAPH_NEIGHBOURS` and `SIGNIFICANT_GAP`.
2. Pipeline (`--pipeline`): whole discovery with K unknown (MCL, seed 0, self-training on) with the
   used K rules, with the 0/1 graph the diffusion features come from in the first pass, and with the
   self-tuning graph in the second pass too: ACC and K error.

    python benchmarks/omniglot_k_rule.py --models DIR --pipeline   # trains missing fold models into DIR
                                                                   # (DIR/fold<f>.safetensors, ~5-10 min each)

Writes benchmarks/results/omniglot_k_rule.{json,md}.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_description, write_results  # noqa: E402

from l2c_explorer.clustering import L2CClusterer  # noqa: E402
from l2c_explorer.graph import (  # noqa: E402
    K_GRAPH_NEIGHBOURS,
    K_GRAPH_SCALE_NEIGHBOUR,
    SIGNIFICANT_GAP,
    eigengap_k,
    knn_graph,
    normalised_adjacency,
    self_tuning_graph,
    self_tuning_spectrum,
    top_eigenpairs,
)
from l2c_explorer.options import DISCOVER  # noqa: E402
from l2c_explorer.similarity import load_similarity_model  # noqa: E402

CANDIDATES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
N_FOLDS = 6
VALIDATION_FOLD = 5  # the fold the single-split benchmarks (omniglot_self_training.py) hold out
USED_GRAPH = f"self-tuning, k={K_GRAPH_NEIGHBOURS}"
GRAPHS = {
    "0/1, k=10": lambda emb: knn_graph(emb, k=10),
    "0/1, k=20": lambda emb: knn_graph(emb, k=20),
    "self-tuning, k=10": lambda emb: self_tuning_graph(emb, k=10, scale_neighbour=K_GRAPH_SCALE_NEIGHBOUR),
    USED_GRAPH: lambda emb: self_tuning_graph(emb, k=K_GRAPH_NEIGHBOURS, scale_neighbour=K_GRAPH_SCALE_NEIGHBOUR),
    "self-tuning, k=30": lambda emb: self_tuning_graph(emb, k=30, scale_neighbour=K_GRAPH_SCALE_NEIGHBOUR),
}


def split(background: Path, work: Path, fold: int = VALIDATION_FOLD) -> tuple[Path, Path]:
    """Copy the background alphabets into ``work``/train25 and ``work``/valid5 (alphabet i -> fold i mod 6)."""
    train, valid = work / "train25", work / "valid5"
    for i, alphabet in enumerate(sorted(p for p in background.iterdir() if p.is_dir())):
        shutil.copytree(alphabet, (valid if i % N_FOLDS == fold else train) / alphabet.name)
    return train, valid


def validation_setup(background: Path, work: Path, model: str | None, fold: int = VALIDATION_FOLD) -> tuple[Path, str]:
    """Copy the split into ``work``; return the validation folder and a model trained on the 25 others.

    ``model``: a file already trained on the fold's 25 training alphabets; when None or missing, one is
    trained with the shipped recipe (and saved there when a path is given).
    """
    train, valid = split(background, work, fold)
    if model is None or not Path(model).exists():
        model = work / "train25_model.safetensors" if model is None else Path(model).with_suffix(".safetensors")
        train_fold_model(train, model, f"train25_fold{fold}")
    return valid, str(model)


def train_fold_model(train: Path, out: Path, name: str, *options: str) -> None:
    """Train the shipped `omniglot` recipe on ``train`` into ``out`` (a .safetensors path); ``options``: more
    `train-similarity` flags, which win over the recipe's."""
    subprocess.run(["l2c-explorer", "train-similarity", str(train), "--recipe", "omniglot", *options,
                    "--out", str(out.with_suffix("")), "--name", name], check=True)


class ZeroOneFirstPass(L2CClusterer):
    """Discovery whose first K estimate reads the 0/1 graph's spectrum (the rule before the self-tuning one)."""

    def _estimate_k(self, emb, graph_eigenvalues, pass_number):
        if pass_number > 1:
            return super()._estimate_k(emb, graph_eigenvalues, pass_number)
        max_k = min(self.max_clusters, len(emb) - 1)
        return eigengap_k(graph_eigenvalues, max_k=max_k, significance=SIGNIFICANT_GAP), graph_eigenvalues


class SelfTuningBothPasses(L2CClusterer):
    """Discovery whose second K estimate also reads the self-tuning graph (of the sharpened features)."""

    def _estimate_k(self, emb, graph_eigenvalues, pass_number):
        if pass_number == 1:
            return super()._estimate_k(emb, graph_eigenvalues, pass_number)
        max_k = min(self.max_clusters, len(emb) - 1)
        values = self_tuning_spectrum(emb, max_k + 1)
        return eigengap_k(values, max_k=max_k, significance=SIGNIFICANT_GAP), values


PIPELINES = {
    "used: self-tuning graph, then the sharpened 0/1 graph's largest gap": L2CClusterer,
    "0/1 graph, then the sharpened 0/1 graph's largest gap": ZeroOneFirstPass,
    "self-tuning graph in both passes": SelfTuningBothPasses,
}


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--background", default="../shared/data/omniglot/images_background")
    parser.add_argument("--models", default=None,
                        help="folder of fold models (fold<f>.safetensors); missing ones are trained into it")
    parser.add_argument("--folds", default=",".join(map(str, range(N_FOLDS))), help="comma-separated folds to run")
    parser.add_argument("--pipeline", action="store_true",
                        help="also run whole discoveries (K unknown) with each K rule")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    k_true: dict[str, int] = {}
    errors: dict[str, dict[str, dict[str, int]]] = {g: {str(s): {} for s in CANDIDATES} for g in GRAPHS}
    pipeline: dict[str, dict[str, dict]] = {label: {} for label in PIPELINES}
    for fold in (int(f) for f in args.folds.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            model_file = str(Path(args.models) / f"fold{fold}.safetensors") if args.models else None
            valid, model_file = validation_setup(Path(args.background), Path(tmp), model_file, fold)
            model = load_similarity_model(model_file)
            for alphabet in sorted(valid.iterdir()):
                name = alphabet.name
                data = model.prepare(str(alphabet), labelled=True)
                k_true[name] = len(data.class_names)
                emb = model.embed(data.pixels)
                for graph_name, build in GRAPHS.items():
                    values, _ = top_eigenpairs(normalised_adjacency(build(emb)), 101)
                    for s in CANDIDATES:
                        errors[graph_name][str(s)][name] = eigengap_k(values, max_k=DISCOVER.defaults.max_clusters, significance=s) - k_true[name]
                if args.pipeline:
                    for label, cls in PIPELINES.items():
                        t0 = time.perf_counter()
                        c = cls(similarity=model, random_state=0).fit(data)
                        pipeline[label][name] = {"acc": c.score(data.label_ids()),
                                                 "k_error": c.n_clusters_ - k_true[name],
                                                 "seconds": time.perf_counter() - t0}
                print(f"fold {fold} {name:45s} K={k_true[name]:3d} "
                      + " ".join(f"{g}: {errors[g][str(SIGNIFICANT_GAP)][name]:+d}" for g in GRAPHS)
                      + "".join(f" | {r[name]['k_error']:+d}, {100 * r[name]['acc']:.1f}%"
                                for r in pipeline.values() if name in r), flush=True)

    names = list(k_true)

    def summary(errs: dict[str, int]) -> list[str]:
        e = np.abs(list(errs.values()))
        return [f"{e.mean():.2f}", str(int((e >= 5).sum())), f"{int(e.max())}"]

    lines = [
        f"Machine: {machine_description(args.threads)}. {len(names)} validation alphabets (Omniglot background, "
        f"{N_FOLDS}-fold: each fold's 5 are held out from its similarity model's training; never the evaluation "
        f"alphabets); whole run {(time.perf_counter() - started) / 60:.1f} min.",
        "",
        "First-pass K from the spectrum of each graph of the similarity model's features "
        "(mean abs K error, alphabets off by 5 or more, largest error):",
        "",
    ]
    rows = []
    for graph_name, by_s in errors.items():
        for s, errs in by_s.items():
            used = " (used)" if graph_name == USED_GRAPH and float(s) == SIGNIFICANT_GAP else ""
            rows.append([f"{graph_name}{used}", s, *summary(errs)])
    lines += table(["graph", "significance s", "mean abs K error", "off by 5+", "largest"], rows)
    if args.pipeline:
        lines += ["", "Whole discovery, K unknown (MCL, self-training on, seed 0), by K rule of the first and the "
                  "second pass:", ""]
        lines += table(
            ["K rule", "ACC %", "mean abs K error", "off by 5+", "largest", "s per alphabet"],
            [[label, f"{100 * np.mean([r['acc'] for r in res.values()]):.1f}",
              *summary({n: r["k_error"] for n, r in res.items()}),
              f"{np.mean([r['seconds'] for r in res.values()]):.1f}"] for label, res in pipeline.items()],
        )
        lines += ["", "Per alphabet, K error of each whole discovery (in the order of the table above):", ""]
        rules = [f"rule {i + 1}" for i in range(len(PIPELINES))]
        lines += table(["alphabet", "K true", *rules],
                       [[n, str(k_true[n]), *(f"{res[n]['k_error']:+d}" for res in pipeline.values())] for n in names])
    record = {"k_true": k_true, "errors": errors, "pipeline": pipeline if args.pipeline else None,
              "used": {"graph": USED_GRAPH, "significance": SIGNIFICANT_GAP},
              "machine": machine_description(args.threads)}
    write_results("omniglot_k_rule", record, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

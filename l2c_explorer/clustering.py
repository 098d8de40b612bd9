"""Discovering categories: the clustering network (CCN) trained from transferred pair similarities.

``L2CClusterer(similarity="omniglot").fit(folder)`` does, in order:

1. read the images at the similarity model's input size (bad files are skipped and listed);
2. embed them with the similarity model, its batch-norm statistics re-estimated on this folder;
3. predict P(same category) for every pair (one matrix product) and turn it into pair targets;
4. train a clustering head with ``max_clusters`` (or ``n_clusters``) outputs on the pair targets with the
   MCL or KCL loss (all pairs at every step, as N x N matrix products);
5. count the clusters the data really uses (:mod:`.kestimate`), give the images of the others to their most
   probable remaining cluster, and report labels, confidences and the estimated K.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import __version__
from .data import ImageSet
from .device import describe_device, resolve_device
from .errors import InputError, StoppedError
from .kestimate import K_RULES, dominant_clusters, merge_into_dominant
from .losses import CLUSTERING_LOSSES
from .metrics import clustering_scores
from .model_io import MODEL_SUFFIX, read_model_file, save_model_file
from .nets import CosineClusterHead
from .progress import Callback, Reporter
from .similarity import SimilarityModel, load_similarity_model


# ---------------------------------------------------------------------------------------------------
# pure steps


def pair_targets(prob_same: torch.Tensor, *, threshold: float = 0.5) -> torch.Tensor:
    """Hard pair targets from P(same): +1 above ``threshold``, -1 below. Shape (n, n) -> (n, n)."""
    return torch.where(prob_same > threshold, 1.0, -1.0).to(prob_same.dtype)


def train_cluster_head(
    features: torch.Tensor,
    targets: torch.Tensor,
    *,
    n_clusters: int,
    loss: str = "mcl",
    steps: int = 300,
    lr: float = 0.05,
    temperature: float = 10.0,
    seed: int = 0,
    report=None,
    history: list | None = None,
    stop: threading.Event | None = None,
    k_rule: dict | None = None,
) -> tuple[CosineClusterHead, torch.Tensor]:
    """Fit a :class:`CosineClusterHead` on fixed unit features (n, d) to pair targets (n, n).

    Full-batch: every step uses all n^2 pairs (an n x n matrix product). Returns the head and its final
    cluster probabilities (n, k).
    """
    torch.manual_seed(seed)
    head = CosineClusterHead(dim=features.shape[1], n_clusters=n_clusters, temperature=temperature)
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        head.centres.copy_(torch.randn(n_clusters, features.shape[1], generator=g))
    head = head.to(features.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    loss_fn = CLUSTERING_LOSSES[loss]
    report_every = max(1, steps // 50)
    for step in range(steps):
        if stop is not None and stop.is_set():
            break
        probs = torch.softmax(head(features), dim=1)
        value = loss_fn(probs, targets)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        if history is not None and ((step + 1) % report_every == 0 or step + 1 == steps):
            labels = probs.detach().argmax(1).cpu().numpy()
            k_est = len(dominant_clusters(labels, **(k_rule or {})))
            history.append({"step": step + 1, "epoch": (step + 1) / report_every, "loss": float(value), "k_estimated": k_est})
            if report is not None:
                report("training", step + 1, steps, epoch=(step + 1) / report_every, loss=float(value), k_estimated=k_est)
    with torch.no_grad():
        probs = torch.softmax(head(features), dim=1)
    return head, probs


def cluster_centres(features: torch.Tensor, labels: np.ndarray, ids) -> torch.Tensor:
    """Unit mean feature of each cluster in ``ids``: (n, d) features, (n,) labels -> (len(ids), d)."""
    lab = torch.as_tensor(labels, device=features.device)
    return F.normalize(torch.stack([features[lab == int(k)].mean(0) for k in ids]), dim=1)


def finetune_ccn(
    model: SimilarityModel,
    pixels: torch.Tensor,
    targets: torch.Tensor,
    centres: torch.Tensor,
    *,
    loss: str = "mcl",
    steps: int = 200,
    batch_size: int = 128,
    lr_encoder: float = 1e-4,
    lr_head: float = 1e-2,
    jitter=None,
    temperature: float = 10.0,
    seed: int = 0,
    device: torch.device,
    report=None,
    history: list | None = None,
    stop: threading.Event | None = None,
    k_rule: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train the whole clustering network (encoder + cluster head) on augmented target images.

    The encoder starts from the similarity model's (batch norm adapted to the target) and the head from
    ``centres`` (k, d); each step clusters a random batch of augmented images against the pair targets of
    those images (rows/columns of ``targets``), so the network learns clusters that survive the jitter.

    Returns the final unit features (n, d) and cluster probabilities (n, k), computed without jitter.
    """
    from .augment import AffineJitter, augment_batch
    from .data import normalise, to_unit
    from .similarity import adapted_copy

    prep = model.preprocessing
    unit = to_unit(pixels, prep.invert)
    net = adapted_copy(model.net, normalise(unit, prep), device)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1
    head = CosineClusterHead(dim=centres.shape[1], n_clusters=centres.shape[0], temperature=temperature).to(device)
    with torch.no_grad():
        head.centres.copy_(centres)
    encoder_params = [p for n, p in net.named_parameters() if not n.startswith("head.")]
    optimizer = torch.optim.Adam(
        [{"params": encoder_params, "lr": lr_encoder}, {"params": head.parameters(), "lr": lr_head}]
    )
    loss_fn = CLUSTERING_LOSSES[loss]
    jitter = jitter or AffineJitter(rotation=5.0, scale=0.1, shift=0.05, shear=0.1)
    g = torch.Generator().manual_seed(seed)
    n = len(pixels)
    batch_size = min(batch_size, n)
    report_every = max(1, steps // 50)
    for step in range(steps):
        if stop is not None and stop.is_set():
            break
        idx = torch.randperm(n, generator=g)[:batch_size]
        x = normalise(augment_batch(unit[idx], jitter, generator=g), prep).to(device)
        net.train()
        probs = torch.softmax(head(net.embed(x)), dim=1)
        value = loss_fn(probs, targets[idx][:, idx])
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        if history is not None and ((step + 1) % report_every == 0 or step + 1 == steps):
            history.append({"step": step + 1, "stage": "finetune", "loss": float(value.detach())})
            if report is not None:
                report("training", step + 1, steps, loss=float(value.detach()))
    net.eval()
    with torch.no_grad():
        feats = torch.cat([net.embed(normalise(unit[i : i + 512], prep).to(device)) for i in range(0, n, 512)])
        probs = torch.softmax(head(feats), dim=1)
    return feats, probs


# ---------------------------------------------------------------------------------------------------
# estimator


class L2CClusterer:
    """Find the categories in unlabelled images with a transferred similarity model.

    Parameters
    ----------
    similarity : str, path or SimilarityModel
        The similarity model: a shipped name (``"omniglot"``), a model file, or a loaded model.
    n_clusters : int, optional
        The number of categories when known; otherwise it is estimated (at most ``max_clusters``).
    max_clusters : int
        Outputs of the clustering network when K is unknown.
    loss : {"mcl", "kcl"}
    epochs : int, optional
        Training length of the clustering head (default 300 full-batch steps).
    k_rule : {"uniform", "ratio"}
        How dominant clusters are counted (see :mod:`l2c_explorer.kestimate`).
    threshold : float
        P(same) above which a pair is a "same category" target.
    adapt_norm : bool
        Re-estimate the similarity model's batch-norm statistics on the target images.
    device : {"auto", "cpu", "cuda"}
    random_state : int

    Attributes
    ----------
    labels_ : ndarray of shape (n_images,)
        Cluster of each image, numbered 0..n_clusters_-1 by decreasing size.
    n_clusters_ : int
        Number of clusters found (the estimate of K when ``n_clusters`` is None).
    probabilities_ : ndarray of shape (n_images, n_clusters_)
        Each image's distribution over the final clusters.
    confidence_ : ndarray of shape (n_images,)
        Probability of the assigned cluster.
    embedding_ : ndarray of shape (n_images, d)
        Unit features of the images (for maps and exemplars).
    history_ : list of dict
        Per-epoch ``loss`` and ``k_estimated``.
    paths_, skipped_ : list
        Image paths (relative to the folder) and skipped files with reasons.
    """

    def __init__(
        self,
        similarity="omniglot",
        *,
        n_clusters: int | None = None,
        max_clusters: int = 100,
        loss: str = "mcl",
        epochs: int | None = None,
        k_rule: str = "uniform",
        threshold: float = 0.5,
        adapt_norm: bool = True,
        device: str = "auto",
        random_state: int = 0,
    ):
        self.similarity = similarity
        self.n_clusters = n_clusters
        self.max_clusters = max_clusters
        self.loss = loss
        self.epochs = epochs
        self.k_rule = k_rule
        self.threshold = threshold
        self.adapt_norm = adapt_norm
        self.device = device
        self.random_state = random_state

    # -- validation --------------------------------------------------------------------------------

    def _validate(self, n_images: int | None = None) -> None:
        if self.loss not in CLUSTERING_LOSSES:
            raise InputError(f"loss must be one of {', '.join(CLUSTERING_LOSSES)}, not {self.loss!r}.")
        if self.k_rule not in K_RULES:
            raise InputError(f"k_rule must be one of {', '.join(K_RULES)}, not {self.k_rule!r}.")
        if self.n_clusters is not None and self.n_clusters < 1:
            raise InputError(f"The number of clusters must be at least 1, not {self.n_clusters}.")
        if self.max_clusters < 2:
            raise InputError(f"max_clusters must be at least 2, not {self.max_clusters}.")
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"threshold must be between 0 and 1, not {self.threshold}.")
        if self.epochs is not None and self.epochs < 1:
            raise InputError(f"epochs must be at least 1, not {self.epochs}.")
        if n_images is not None:
            if n_images < 2:
                raise InputError(f"Clustering needs at least 2 images; found {n_images}.")
            if self.n_clusters is not None and self.n_clusters > n_images:
                raise InputError(
                    f"{self.n_clusters} clusters were asked for, but there are only {n_images} images."
                )

    # -- fit --------------------------------------------------------------------------------------------

    def fit(
        self,
        images,
        *,
        callback: Callback | None = None,
        stop: threading.Event | None = None,
        labelled: bool = False,
    ) -> L2CClusterer:
        """Cluster a folder, an :class:`ImageSet` or in-memory images; return ``self``.

        ``labelled=True`` also records each image's first-level subfolder as its true class, for
        :meth:`score` only: the labels are never used to cluster.
        """
        self._validate()
        report = Reporter(callback, stop)
        started = time.perf_counter()
        device = resolve_device(self.device)
        model = load_similarity_model(self.similarity)

        data = model.prepare(
            images,
            labelled=labelled,
            progress=lambda done, total: report("reading", done, total, message=f"Reading images {done}/{total}"),
        )
        self._validate(len(data))
        report("features", 0, len(data), message="Computing features")
        emb = model.embed(data.pixels, device=device, adapt_norm=self.adapt_norm)
        report("features", len(data), len(data), message="Features ready")
        prob_same = model.pair_probabilities(emb.to(device))
        targets = pair_targets(prob_same.to(device), threshold=self.threshold)

        k_out = self.n_clusters or min(self.max_clusters, len(data))
        self.history_: list[dict] = []
        rule = {"rule": self.k_rule}
        head, probs = train_cluster_head(
            emb.to(device),
            targets,
            n_clusters=k_out,
            loss=self.loss,
            steps=self.epochs or 300,
            seed=self.random_state,
            report=report,
            history=self.history_,
            stop=stop,
            k_rule=rule,
        )
        probs = probs.cpu().numpy()
        raw = probs.argmax(1)
        if self.n_clusters is None:
            keep = dominant_clusters(raw, **rule)
        else:
            ids, sizes = np.unique(raw, return_counts=True)
            keep = np.concatenate([ids[np.argsort(-sizes, kind="stable")], np.setdiff1d(np.arange(k_out), ids)])
        labels = merge_into_dominant(probs, keep)
        self._finish(data, emb.numpy(), probs, labels, keep, model, device, started, head)
        return self

    def _finish(self, data: ImageSet, emb, probs, labels, keep, model, device, started, head) -> None:
        # renumber clusters by decreasing size
        ids, sizes = np.unique(labels, return_counts=True)
        order = ids[np.argsort(-sizes, kind="stable")]
        remaining = [k for k in keep if k not in set(order.tolist())]
        order = np.concatenate([order, np.asarray(remaining, dtype=order.dtype)]) if self.n_clusters else order
        new_id = {int(k): i for i, k in enumerate(order)}
        self.labels_ = np.array([new_id[int(k)] for k in labels], dtype=np.int64)
        sub = probs[:, order]
        sub = sub / sub.sum(1, keepdims=True).clip(1e-12)
        self.probabilities_ = sub
        self.confidence_ = sub[np.arange(len(sub)), self.labels_]
        self.n_clusters_ = int(len(np.unique(self.labels_))) if self.n_clusters is None else int(self.n_clusters)
        self.embedding_ = emb
        self.paths_ = list(data.paths)
        self.skipped_ = list(data.skipped)
        self.root_ = data.root
        self.true_labels_ = data.labels
        self.similarity_model_ = model
        self.device_ = device
        self.seconds_ = time.perf_counter() - started
        self.head_state_ = {"centres": head.centres.detach().cpu()[torch.as_tensor(order)]}

    # -- results ------------------------------------------------------------------------------------

    def fit_predict(self, images, **kwargs) -> np.ndarray:
        return self.fit(images, **kwargs).labels_

    def score(self, y_true=None) -> dict:
        """ACC / NMI / ARI against ``y_true`` (default: the folder labels recorded with ``labelled=True``)."""
        if y_true is None:
            if self.true_labels_ is None:
                raise InputError("No ground truth: pass y_true, or fit with labelled=True (folder names).")
            y_true = self.true_labels_
        return clustering_scores(np.asarray(y_true), self.labels_)

    def summary(self, *, score: bool = False) -> dict:
        """Everything ``summary.json`` records about this run."""
        model = self.similarity_model_
        out = {
            "n_images": len(self.paths_),
            "n_skipped": len(self.skipped_),
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped_],
            "k_estimated": int(self.n_clusters_),
            "k_given": self.n_clusters,
            "k_max": int(self.n_clusters or self.max_clusters),
            "k_rule": self.k_rule,
            "loss": self.loss,
            "seconds": round(self.seconds_, 2),
            "device": describe_device(self.device_),
            "model": model.name,
            "model_file": model.source,
            "model_sha256": model.digest,
            "seed": self.random_state,
            "cluster_sizes": np.bincount(self.labels_).tolist(),
            "history": self.history_,
            "version": __version__,
            "target": str(self.root_) if self.root_ else None,
        }
        if score:
            m = self.score()
            out["metrics"] = {"acc": m["acc"], "nmi": m["nmi"], "ari": m["ari"], "k_true": m["k_true"]}
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Save the clustering head and the run settings (the similarity model is referenced by digest)."""
        path = Path(path)
        if path.suffix != MODEL_SUFFIX:
            path = path.with_name(path.name + MODEL_SUFFIX)
        config = {
            "similarity_model": self.similarity_model_.name,
            "similarity_sha256": self.similarity_model_.digest,
            "n_clusters": self.n_clusters_,
            "loss": self.loss,
            "seed": self.random_state,
            "version": __version__,
        }
        return save_model_file(path, self.head_state_, kind="clustering", config=config)

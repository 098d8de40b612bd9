"""The clustering network of the L2C paper, as a baseline that runs on the same similarity model.

Hsu, Lv & Kira (ICLR 2018) train a clustering network (CCN) with an over-provisioned output (K_max = 100
clusters when K is unknown) on *dense* pair targets: every pair of a mini-batch is "same" when the
similarity model's P(same) > 0.5 and "different" otherwise; K is then the number of *dominant* output
clusters, those that receive at least the uniform share ``n / K_max`` of the images. Here the network is
the paper's clustering head (Linear -> BatchNorm -> ReLU -> Linear) on the similarity model's unit
features rather than a convolutional network trained from pixels: the same objective and K rule on the
same similarity model, at a cost that lets a benchmark run it next to ours on every folder.
``L2CClusterer(method="paper")`` and ``discover --method paper`` run it.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn as nn

from .losses import CLUSTERING_LOSSES

# The authors' code: Adam at 1e-3, batches of 100, 150 epochs with the rate divided by 10 after 100.
PAPER_EPOCHS = 150
PAPER_BATCH = 100
PAPER_LR = 1e-3


class PaperClusterHead(nn.Module):
    """The paper's clustering head ("last"): (b, d) features -> (b, k) cluster logits."""

    def __init__(self, *, dim: int, n_clusters: int, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, n_clusters))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def dense_pair_targets(pair_probabilities: torch.Tensor) -> torch.Tensor:
    """The paper's targets from P(same) of every pair (m, m): +1 where P > 0.5, else -1 (no pair ignored)."""
    return torch.where(pair_probabilities > 0.5, 1.0, -1.0)


def dominant_outputs(labels: np.ndarray, n_outputs: int) -> np.ndarray:
    """The outputs that receive at least the uniform share ``n / n_outputs`` of the images (the most used one
    when none does): the paper's clusters when K is unknown."""
    sizes = np.bincount(np.asarray(labels), minlength=n_outputs)
    dominant = np.flatnonzero(sizes >= len(labels) / n_outputs)
    return dominant if len(dominant) else np.array([int(sizes.argmax())])


def dominant_clusters(labels: np.ndarray, n_outputs: int) -> int:
    """The paper's K estimate: how many outputs are dominant (:func:`dominant_outputs`)."""
    return len(dominant_outputs(labels, n_outputs))


def train_paper_ccn(
    embedding: torch.Tensor,
    pair_probability,
    *,
    n_outputs: int,
    loss: str = "kcl",
    epochs: int = PAPER_EPOCHS,
    batch_size: int = PAPER_BATCH,
    lr: float = PAPER_LR,
    seed: int = 0,
    report=None,
    history: list | None = None,
    stop: threading.Event | None = None,
) -> np.ndarray:
    """Train the paper's CCN on unit features (n, d); returns cluster probabilities (n, n_outputs).

    ``pair_probability(a, b)`` gives P(same) for two sets of unit features, (m, d) x (m, d) -> (m, m).
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    n = len(embedding)
    head = PaperClusterHead(dim=embedding.shape[1], n_clusters=n_outputs).to(embedding.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    loss_fn = CLUSTERING_LOSSES[loss]
    steps_per_epoch = max(1, -(-n // batch_size))
    total = epochs * steps_per_epoch
    step = 0
    for epoch in range(epochs):
        for group in optimizer.param_groups:  # MultiStepLR at 2/3 of the epochs, as the authors' 100 of 150
            group["lr"] = lr * (0.1 if epoch >= (2 * epochs) // 3 else 1.0)
        order = torch.randperm(n, generator=g).to(embedding.device)
        for start in range(0, n, batch_size):
            if stop is not None and stop.is_set():
                break
            index = order[start : start + batch_size]
            if len(index) < 2:
                continue
            batch = embedding[index]
            targets = dense_pair_targets(pair_probability(batch, batch)).to(batch.device)
            head.train()
            probs = torch.softmax(head(batch), dim=1)
            value = loss_fn(probs, targets)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            step += 1
            if report is not None and (step % steps_per_epoch == 0 or step == 1):
                k_used = int(torch.unique(probs.detach().argmax(1)).numel())
                if history is not None:
                    history.append({"step": step, "epoch": round(step / steps_per_epoch, 3),
                                    "loss": float(value.detach()), "k_estimated": k_used})
                report("training", step, total, epoch=step / steps_per_epoch, loss=float(value.detach()),
                       k_estimated=k_used, message=f"Training the paper's clustering network: epoch {epoch + 1}/{epochs}")
    head.eval()
    with torch.no_grad():
        return torch.cat([torch.softmax(head(embedding[i : i + 4096]), dim=1) for i in range(0, n, 4096)]).cpu().numpy()

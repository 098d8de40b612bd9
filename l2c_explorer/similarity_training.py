"""What a similarity training loop calls: one optimisation step, the training-only class centres, and the
pair metrics on held-out classes that a fit ends with.

Shared by :class:`~l2c_explorer.similarity_learner.SimilarityLearner` and self-training
(:mod:`l2c_explorer.selftrain`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .class_sampling import ClassBalancedSampler
from .losses import pair_bce_loss, prototype_loss
from .metrics import pair_scores
from .nets import SimilarityNet
from .similarity_model import SimilarityModel


class ClassCentres(nn.Module):
    """Training-only cosine classifier over the training classes (NormFace): ``scale * cos(e, w_c)``.

    Classifying each image among all training classes gives every step a signal about every class, where the
    pair loss only compares the batch's few classes; both shape the same unit embedding, so the cosine the
    pair head reads becomes the quantity the classifier separates. Not saved with the model.
    """

    def __init__(self, *, n_classes: int, dim: int, scale: float = 16.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, dim) * 0.01)
        self.scale = scale

    def forward(self, unit_emb: torch.Tensor) -> torch.Tensor:  # (b, d) -> (b, n_classes)
        return self.scale * unit_emb @ F.normalize(self.weight, dim=1).T


def train_one_step(
    net: SimilarityNet,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    proto_weight: float = 0.0,
    classes: torch.Tensor | None = None,
    centres: ClassCentres | None = None,
    class_weight: float = 0.0,
    label_smoothing: float = 0.0,
    mixed_precision: bool = False,
    encode=None,
) -> float:
    """One optimisation step on a batch ``x`` (b, C, S, S) with batch-local classes ``y`` (b,).

    With ``centres`` and ``classes`` (global class ids (b,)), a cosine-classifier cross-entropy weighted by
    ``class_weight`` is added. ``mixed_precision`` runs the encoder under bfloat16 autocast (float16 on
    CUDA would need loss scaling; bfloat16 does not); losses are computed in float32. ``encode`` replaces
    ``net.encoder`` (a frozen trunk's top, when ``x`` holds the trunk's features (b, f)).
    """
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=mixed_precision):
        features = (encode or net.encoder)(x)
    emb = F.normalize(features.float(), dim=1)  # (b, d), unit norm
    logits = net.head(emb)  # (b, b)
    same = y[:, None] == y[None, :]
    loss = pair_bce_loss(logits, same)
    if proto_weight:
        loss = loss + proto_weight * prototype_loss(emb, y)
    if class_weight and centres is not None and classes is not None:
        loss = loss + class_weight * F.cross_entropy(centres(emb), classes, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def holdout_pair_metrics(
    model: SimilarityModel,
    inputs: torch.Tensor,
    labels: np.ndarray,
    *,
    device: torch.device,
    **protocol,
) -> dict:
    """Pair precision/recall/F1/ROC-AUC/PR-AUC on classes never trained on.

    Protocol: batch-norm statistics re-estimated on the held-out images (as when clustering a new set),
    then class-balanced batches as in the authors' evaluation (:func:`embedding_pair_metrics`, which takes
    ``protocol``'s keywords).
    """
    return embedding_pair_metrics(model, model.embed_inputs(inputs, device=device), labels, **protocol)


@torch.no_grad()
def embedding_pair_metrics(
    model: SimilarityModel,
    emb: torch.Tensor,
    labels: np.ndarray,
    *,
    classes_per_batch: int = 20,
    images_per_class: int = 5,
    n_batches: int = 50,
    seed: int = 0,
) -> dict:
    """Pair scores of held-out images already embedded: unit embeddings (n, d), labels (n,).

    ``n_batches`` class-balanced batches of ``classes_per_batch`` x ``images_per_class`` images; every
    unordered pair of distinct images in a batch is scored (self-pairs excluded).
    """
    g = torch.Generator().manual_seed(seed)
    labels = np.unique(labels, return_inverse=True)[1]
    sampler = ClassBalancedSampler(labels, classes_per_batch=classes_per_batch, images_per_class=images_per_class, generator=g)
    probs, same = [], []
    for _ in range(n_batches):
        idx, y = sampler.sample()
        p = model.pair_probabilities(emb[idx]).numpy()
        iu = np.triu_indices(len(idx), k=1)
        probs.append(p[iu])
        same.append((y[:, None] == y[None, :]).numpy()[iu])
    scores = pair_scores(np.concatenate(probs), np.concatenate(same))
    scores["protocol"] = (
        f"{n_batches} batches of {sampler.classes_per_batch} held-out classes x {images_per_class} images, "
        "unordered pairs without self-pairs, threshold 0.5, batch-norm adapted to the held-out images"
    )
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items()}

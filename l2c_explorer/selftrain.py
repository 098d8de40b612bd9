"""Self-training: sharpen the similarity model on the target folder with its own confident clusters.

A similarity model learnt on other categories tells most of the new ones apart, but confuses look-alikes
it never had to separate. After a first clustering, the most confident members of each cluster are mostly
right, so they serve as pseudo-labels. Fine-tuning a copy of the model on them for a few steps, with the
same pair and prototype losses and the same augmentation it was trained with, pulls each category
together on *this* folder; the graph and the clustering are then computed again from the new features.

This is transductive: the fine-tuned copy serves this folder only and is never saved over the model.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import torch

from .augment import Augmentation, augment_batch, augmentation_from_dict
from .class_sampling import ClassBalancedSampler
from .data import normalise, to_unit
from .device import bf16_supported, place
from .nets import has_frozen_trunk
from .options import SELF_TRAINING_KEEP, SELF_TRAINING_STEPS  # tuned values, with how they were chosen
from .similarity_model import SimilarityModel, adapted_copy
from .similarity_training import train_one_step

# A step's batch: this many images of each of up to this many clusters (the pair loss needs several of
# each; 20 x 5 matches the similarity models' own training batches).
CLASSES_PER_BATCH = 20
IMAGES_PER_CLASS = 5


def batch_images(n_clusters: int) -> int:
    """Images in one self-training step's batch when the first clustering found ``n_clusters`` groups."""
    return min(CLASSES_PER_BATCH, max(n_clusters, 2)) * IMAGES_PER_CLASS


def confident_members(labels: np.ndarray, confidence: np.ndarray, keep: float) -> np.ndarray:
    """Mask of the images kept as pseudo-labelled examples: labels, confidence (n,) -> bool (n,).

    Per cluster, the share ``keep`` (0 < keep <= 1) of its members with the highest confidence, at least
    two; a cluster with a single member is left out (it offers no pair to learn from).
    """
    labels = np.asarray(labels)
    confidence = np.asarray(confidence)
    mask = np.zeros(len(labels), dtype=bool)
    # one sort by (cluster, confidence descending, index): each cluster's members, most confident first
    order = np.lexsort((np.arange(len(labels)), -confidence, labels))
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sizes = np.diff(np.r_[starts, len(labels)])
    n_keep = np.where(sizes < 2, 0, np.maximum(2, np.round(keep * sizes).astype(np.int64)))
    rank = np.arange(len(labels)) - np.repeat(starts, sizes)  # position inside its cluster
    mask[order[rank < np.repeat(n_keep, sizes)]] = True
    return mask


def _loss_reporter(progress):
    """``progress`` as ``report(step, total, loss)``: a callback that takes the loss (a third argument, or
    ``loss=``) gets it; one written for ``progress(step, total)`` is called as before."""
    if progress is None:
        return None
    try:
        signature = inspect.signature(progress)
    except (TypeError, ValueError):  # no signature to read (a builtin): called as before
        return lambda step, total, loss: progress(step, total)
    for args, kwargs, call in (((0, 0, 0.0), {}, lambda step, total, loss: progress(step, total, loss)),
                               ((0, 0), {"loss": 0.0}, lambda step, total, loss: progress(step, total, loss=loss))):
        try:
            signature.bind(*args, **kwargs)
        except TypeError:
            continue
        return call
    return lambda step, total, loss: progress(step, total)


def model_augmentation(model: SimilarityModel) -> Augmentation:
    """The augmentation the model was trained with (none when its card does not say)."""
    training = model.card.get("training", {})
    return augmentation_from_dict(training.get("augmentation") or training.get("jitter"))


def self_train(
    model: SimilarityModel,
    pixels,
    labels: np.ndarray,
    confidence: np.ndarray,
    *,
    steps: int = SELF_TRAINING_STEPS,
    keep: float = SELF_TRAINING_KEEP,
    lr: float = 1e-4,
    classes_per_batch: int = CLASSES_PER_BATCH,
    images_per_class: int = IMAGES_PER_CLASS,
    proto_weight: float = 1.0,
    device: torch.device = torch.device("cpu"),
    seed: int = 0,
    progress=None,
    should_stop=None,
    adapted: SimilarityModel | None = None,
) -> SimilarityModel | None:
    """A copy of ``model`` fine-tuned on the confident members of each cluster of these images.

    pixels (n, C, S, S) uint8 (a tensor, or a :class:`~l2c_explorer.store.PixelStore` whose rows are read
    as batches need them), labels and confidence (n,) from a first clustering. ``adapted``: ``model`` with
    the batch-norm statistics of these images already estimated (saves a pass over them). Returns None when
    fewer than two clusters have two confident members, or when ``should_stop()`` became true (nothing is
    kept from an interrupted fine-tuning). ``progress(step, steps, loss)`` is called after every step, with
    that step's training loss (pair and prototype losses on its batch); a callback of two arguments,
    ``progress(step, steps)``, is called without it.
    """
    keep_mask = confident_members(labels, confidence, keep)
    kept = np.flatnonzero(keep_mask)
    _, pseudo = np.unique(np.asarray(labels)[kept], return_inverse=True)
    if len(kept) == 0 or pseudo.max() < 1:
        return None
    progress = _loss_reporter(progress)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    sampler = ClassBalancedSampler(
        pseudo, classes_per_batch=classes_per_batch, images_per_class=images_per_class, generator=g
    )
    if has_frozen_trunk(model.net):
        return _self_train_top(model, pixels, kept, sampler, steps=steps, lr=lr, proto_weight=proto_weight,
                               device=device, progress=progress, should_stop=should_stop)
    prep = model.preprocessing
    take = (lambda idx: pixels[torch.as_tensor(idx)]) if isinstance(pixels, torch.Tensor) else pixels.take
    augmentation = model_augmentation(model)
    # as fast as the model was trained, where the hardware allows it
    mixed_precision = bool(model.card.get("training", {}).get("mixed_precision")) and bf16_supported(device)
    # Start from the model with batch-norm statistics of this folder, as the first clustering saw it.
    if adapted is not None:
        net = place(copy.deepcopy(adapted.net), device)
    else:
        net = adapted_copy(model.net, normalise(to_unit(pixels, prep.invert), prep), device)
    optimizer = torch.optim.Adam(net.encoder.parameters(), lr=lr)  # the pair head's calibration stays as learnt
    for step in range(1, steps + 1):
        if should_stop is not None and should_stop():
            return None
        idx, y = sampler.sample()
        unit = to_unit(take(kept[idx.numpy()]), prep.invert)
        x = normalise(augment_batch(unit, augmentation, generator=g), prep).to(device)
        net.train()
        loss = train_one_step(net, optimizer, x, y.to(device), proto_weight=proto_weight,
                              mixed_precision=mixed_precision)
        if progress is not None:
            progress(step, steps, loss)
    tuned = SimilarityModel(net.eval().cpu(), prep, dict(model.card))
    tuned.digest, tuned.source = model.digest, model.source
    return tuned


def _self_train_top(model: SimilarityModel, pixels, kept: np.ndarray, sampler: ClassBalancedSampler, *, steps: int,
                    lr: float, proto_weight: float, device: torch.device, progress, should_stop) -> SimilarityModel | None:
    """:func:`self_train` for a frozen pretrained trunk: only its top is fine-tuned, on the trunk's features.

    The features are computed once for the folder (and shared with the embedding passes), so a step costs a
    small matrix product instead of a pass of the trunk; there is no pixel augmentation to apply to them.
    """
    from .embedding import trunk_features

    features = trunk_features(model, pixels, device=device)[torch.from_numpy(kept)]
    net = copy.deepcopy(model.net).to(device)
    top = net.encoder
    optimizer = torch.optim.Adam([*top.hidden.parameters(), *top.project.parameters()], lr=lr)
    for step in range(1, steps + 1):
        if should_stop is not None and should_stop():
            return None
        idx, y = sampler.sample()
        net.train()
        loss = train_one_step(net, optimizer, features[idx].to(device), y.to(device), proto_weight=proto_weight,
                              encode=top.from_features)
        if progress is not None:
            progress(step, steps, loss)
    tuned = SimilarityModel(net.eval().cpu(), model.preprocessing, dict(model.card))
    tuned.digest, tuned.source = model.digest, model.source
    return tuned

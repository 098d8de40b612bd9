"""Learning a similarity model (SPN) from a labelled folder.

:class:`SimilarityLearner` trains one, scikit-learn style: ``SimilarityLearner(epochs=20).fit(folder)``
then ``.model_`` (a :class:`~l2c_explorer.similarity_model.SimilarityModel`), ``.history_``,
``.holdout_metrics_``.

Training uses class-balanced mini-batches (``classes_per_batch`` classes x ``images_per_class`` images) and
a binary cross-entropy over *every* pair in the batch (dense pair enumeration). Because the pair head is
``sigmoid(scale * cos + bias)`` of two embeddings, the whole pair matrix costs one ``b x d`` by ``d x b``
product on top of embedding each image once.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator

from . import __version__
from .augment import as_augmentation, augment_batch
from .class_sampling import ClassBalancedSampler, sample_per_class, split_classes, usable_classes
from .data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    as_image_set,
    channel_stats,
    light_background,
    model_input,
    normalise,
    to_unit,
)
from .device import bf16_supported, resolve_device
from .errors import InputError, StoppedError
from .model_fit import image_statistics
from .nets import BackboneEncoder, CosinePairHead, SimilarityNet, build_similarity_net
from .options import TRAIN_SIMILARITY
from .pretrained import (PRETRAINED, compute_trunk_features, compute_trunk_maps, is_pretrained,
                         pretrained_block_count, pretrained_input_size)
from .progress import Callback, Reporter
from .similarity_model import SimilarityModel
from .similarity_training import ClassCentres, embedding_pair_metrics, holdout_pair_metrics, train_one_step

# ---------------------------------------------------------------------------------------------------
# training


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    seconds: float
    holdout: dict = field(default_factory=dict)


def check_image_size(image_size: int, widths) -> None:
    """Refuse an input size the convolutional blocks ``widths`` (each halving the side) cannot take."""
    blocks = len(widths)
    if not blocks or image_size < 2**blocks or image_size % (2**blocks):
        raise InputError(
            f"image size must be a multiple of {2 ** blocks} (the network halves it {blocks} times), not {image_size}."
        )


class SimilarityLearner(BaseEstimator):
    """Learn a :class:`SimilarityModel` from a labelled folder (class = first-level subfolder).

    The defaults, allowed values and help of every parameter are declared in
    :data:`l2c_explorer.options.TRAIN_SIMILARITY`.

    Parameters
    ----------
    epochs : float
        Passes over the training images (one epoch = n_images / batch size batches).
    image_size : int
        Side of the square model input.
    channels : {1, 3}
    invert : {"auto", True, False}
        Flip intensities so the background is 0; "auto" does so when images have light borders.
    backbone : str
        The encoder: ``"conv"`` (a small VGG-style network, for symbols and digits), ``"resnet"`` (a small
        ResNet, for photos) or the name of a torchvision classification model (``"resnet18"``,
        ``"efficientnet_b0"``, ``"convnext_tiny"``, ...; see :func:`l2c_explorer.backbones.backbone_names`).
    backbone_weights : path, optional
        A state-dict file for a torchvision ``backbone`` (e.g. ImageNet weights downloaded elsewhere): read
        without unrestricted unpickling, checked against the architecture. Its images are then normalised
        with ImageNet's channel statistics, as those weights expect. Nothing is ever downloaded.
    widths : tuple of int
        Channels of the convolutional blocks (``"conv"``: each halves the side) or of the ResNet stages.
    blocks : tuple of int
        Residual blocks per stage (``"resnet"`` only).
    stem_stride : int
        1 or 2: the ResNet's first convolution halves the input side when 2 (``"resnet"`` only).
    embedding_dim : int
    classes_per_batch, images_per_class : int
        Class-balanced batch layout (C x M images, C*M*(C*M - 1) ordered pairs per batch).
    same_group : float
        Share of batches drawn inside one group of classes (only with ``class_depth`` > 1: e.g. the
        characters of one alphabet).
    quarter_turns : bool
        Also learn from copies rotated by 90, 180 and 270 degrees, each treated as a new class. Only
        sensible for images whose orientation is arbitrary (symbols), so off by default.
    augmentation : AffineJitter, PhotoAugment or mapping
        Random augmentation of every training batch (affine jitter for symbols; crops, flips and colour
        jitter for photos); a mapping with a ``kind`` (``"affine"`` or ``"photo"``) and its ranges works too.
    proto_weight : float
        Weight of the in-batch prototype loss added to the pair loss.
    class_weight : float
        Weight of a cosine-classifier cross-entropy over all training classes (0: pair losses only).
    label_smoothing : float
        Label smoothing of that cross-entropy.
    lr : float
        Peak learning rate (linear warm-up over ``warmup`` of the steps, then cosine decay to 0).
    weight_decay : float
        Decoupled weight decay (AdamW) of the encoder; 0 gives plain Adam.
    warmup : float
        Share of the steps spent warming the learning rate up from 0.
    mixed_precision : bool
        Run the encoder in bfloat16 (autocast) where the hardware supports it: about twice as fast on CPUs
        with AVX-512 BF16 and on recent GPUs; losses stay in float32.
    channels_last : bool
        Keep activations in channels-last memory order (faster convolutions on most CPUs).
    mirror_average : bool
        The model embeds an image as the average of its own and its mirror image's embedding (photos).
    holdout : float or int
        Classes kept out of training to measure pair precision/recall/F1/ROC-AUC: a share in [0, 0.9), or a
        number of classes (>= 1). Their names are recorded in the card, so settings can be chosen on them.
    class_depth : int
        How many folder levels name a class (2 for ``alphabet/character/``).
    device : {"auto", "cpu", "cuda"}
    random_state : int
    name : str, optional
        Name stored in the model card.

    Attributes
    ----------
    model_ : SimilarityModel
    history_ : list of EpochRecord
    holdout_metrics_ : dict
    n_classes_ : int
    """

    __init__ = TRAIN_SIMILARITY.estimator_init()

    # -- validation ---------------------------------------------------------------------------------

    def _validate(self) -> None:
        TRAIN_SIMILARITY.validate(self.get_params())
        if self.backbone == "conv":
            check_image_size(self.image_size, self.widths)
        elif self.backbone == "resnet":
            if len(self.blocks) != len(self.widths):
                raise InputError("A ResNet needs one block count per stage width.")
        elif is_pretrained(self.backbone):
            # any size and channels: read as colour at the input size pretrained_input_size() gives
            n_blocks = len(pretrained_block_count(self.backbone))
            if self.tuned_blocks > n_blocks:
                raise InputError(f"tuned_blocks is {self.tuned_blocks}, but {self.backbone} has {n_blocks} blocks.")
        else:
            from .backbones import check_backbone

            check_backbone(self.backbone, image_size=self.image_size)
        if (self.tuned_blocks or self.max_images_per_class) and not is_pretrained(self.backbone):
            raise InputError("tuned_blocks and max_images_per_class apply to a pretrained backbone "
                             "(--backbone efficientnet-lite0, ...).")
        if self.backbone_weights is not None and (self.backbone in ("conv", "resnet") or is_pretrained(self.backbone)):
            raise InputError("Backbone weights can only be loaded into a torchvision backbone (--backbone NAME); "
                             f"{self.backbone} brings its own." if is_pretrained(self.backbone) else
                             "Backbone weights can only be loaded into a torchvision backbone (--backbone NAME).")

    def _build_net(self) -> tuple[dict, SimilarityNet]:
        """The architecture record stored in the model file, and a freshly initialised network for it."""
        if self.backbone == "conv":
            arch = {"type": "conv-cosine", "in_channels": self.channels, "widths": list(self.widths),
                    "embedding_dim": self.embedding_dim, "input_size": self.image_size}
        elif self.backbone == "resnet":
            arch = {"type": "resnet-cosine", "in_channels": self.channels, "widths": list(self.widths),
                    "blocks": list(self.blocks), "stem_stride": self.stem_stride,
                    "embedding_dim": self.embedding_dim, "input_size": self.image_size}
        else:
            arch = {"type": "torchvision-cosine", "backbone": self.backbone, "in_channels": self.channels,
                    "embedding_dim": self.embedding_dim, "input_size": self.image_size}
        if self.backbone_weights is None:
            return arch, build_similarity_net(arch)
        from .backbones import torchvision_features

        backbone, feature_dim = torchvision_features(self.backbone, in_channels=self.channels,
                                                     weights=self.backbone_weights)
        encoder = BackboneEncoder(backbone=backbone, feature_dim=feature_dim, embedding_dim=self.embedding_dim)
        return arch, SimilarityNet(encoder=encoder, head=CosinePairHead())

    # -- fit ------------------------------------------------------------------------------------------

    def fit(self, images, *, callback: Callback | None = None, stop: threading.Event | None = None):
        """Train on a labelled folder (or a labelled :class:`ImageSet`) and return ``self``."""
        self._validate()
        report = Reporter(callback, stop)
        device = resolve_device(self.device)
        g = torch.Generator().manual_seed(self.random_state)
        torch.manual_seed(self.random_state)
        if is_pretrained(self.backbone):
            return self._fit_top(images, report, device, g)

        data = as_image_set(
            images,
            size=self.image_size,
            channels=self.channels,
            labelled=True,
            class_depth=self.class_depth,
            progress=lambda done, total: report("reading", done, total, message=f"Reading images {done}/{total}"),
            follow_links=self.follow_links,
        )
        labels, names, usable = usable_classes(data.labels)

        train_classes, holdout_classes = split_classes(usable, self.holdout, g)
        invert = light_background(data.pixels) if self.invert == "auto" else bool(self.invert)
        train_mask = np.isin(labels, train_classes)
        train_idx = np.flatnonzero(train_mask)
        if self.backbone_weights is not None:  # pretrained weights expect the statistics they were trained with
            mean, std = IMAGENET_MEAN[: self.channels], IMAGENET_STD[: self.channels]
        else:
            mean, std = channel_stats(data.pixels[torch.from_numpy(train_idx)], invert)
        prep = Preprocessing(size=self.image_size, channels=self.channels, invert=invert, mean=mean, std=std,
                             mirror_average=self.mirror_average)

        remap = {c: i for i, c in enumerate(train_classes)}
        train_labels = np.array([remap[c] for c in labels[train_idx]])
        groups = None
        if self.class_depth > 1:
            group_of = {i: names[c].split("/")[0] for c, i in remap.items()}
            gnames = sorted(set(group_of.values()))
            groups = np.array([gnames.index(group_of[i]) for i in range(len(train_classes))])
        sampler = ClassBalancedSampler(train_labels, classes_per_batch=self.classes_per_batch,
                                       images_per_class=self.images_per_class, groups=groups,
                                       same_group=self.same_group, generator=g)
        train_pixels = data.pixels[torch.from_numpy(train_idx)]  # uint8; converted batch by batch

        arch, net = self._build_net()
        net = net.to(device)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        net = net.to(memory_format=memory_format)
        centres = None
        if self.class_weight:
            centres = ClassCentres(n_classes=len(train_classes), dim=self.embedding_dim).to(device)
        # The two head scalars would barely move at the encoder's learning rate.
        groups_ = [{"params": net.encoder.parameters()}, {"params": net.head.parameters(), "lr": self.lr * 20,
                                                          "weight_decay": 0.0}]
        if centres is not None:
            groups_.append({"params": centres.parameters(), "weight_decay": 0.0})
        optimizer = (
            torch.optim.AdamW(groups_, lr=self.lr, weight_decay=self.weight_decay)
            if self.weight_decay
            else torch.optim.Adam(groups_, lr=self.lr)
        )
        base_lrs = [group["lr"] for group in optimizer.param_groups]
        mixed_precision = bool(self.mixed_precision) and bf16_supported(device)

        batch = sampler.classes_per_batch * self.images_per_class
        steps_per_epoch = max(1, len(train_idx) // batch)
        total_steps = max(1, int(round(self.epochs * steps_per_epoch)))
        warmup_steps = int(round(self.warmup * total_steps))
        augmentation = as_augmentation(self.augmentation)
        self.history_: list[EpochRecord] = []
        holdout_mask = np.isin(labels, holdout_classes)
        holdout_pixels = data.pixels[torch.from_numpy(holdout_mask)] if len(holdout_classes) else None
        holdout_labels = labels[holdout_mask] if len(holdout_classes) else None

        started = time.perf_counter()
        epoch_losses: list[float] = []
        stopped = False
        for step in range(total_steps):
            if report.should_stop():
                stopped = True
                break
            warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
            progress = step / total_steps
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * warm * 0.5 * (1.0 + math.cos(math.pi * progress))
            idx, y = sampler.sample()
            classes = torch.from_numpy(train_labels[idx.numpy()]).to(device)
            turns = None
            if self.quarter_turns:
                n_cls = int(y.max()) + 1
                cls_turn = torch.randint(4, (n_cls,), generator=g)
                turns = cls_turn[y]
                y = y * 4 + turns
            x = to_unit(train_pixels[idx], invert)
            x = augment_batch(x, augmentation, quarter_turns=turns, generator=g)
            x = normalise(x, prep).to(device).contiguous(memory_format=memory_format)
            net.train()
            loss = train_one_step(
                net, optimizer, x, y.to(device), proto_weight=self.proto_weight, classes=classes, centres=centres,
                class_weight=self.class_weight, label_smoothing=self.label_smoothing, mixed_precision=mixed_precision,
            )
            epoch_losses.append(loss)
            self._log_step(report, step, total_steps, steps_per_epoch, epoch_losses, started)
        if stopped and not self.history_ and step == 0:
            raise StoppedError("Training was stopped before the first step.")

        net = net.to(memory_format=torch.contiguous_format).eval()
        metrics = {}
        if holdout_pixels is not None and len(holdout_pixels) > 1:
            report("finishing", message="Measuring pair metrics on held-out classes")
            trained = SimilarityModel(net, prep, {})
            metrics = holdout_pair_metrics(trained, model_input(holdout_pixels, prep), holdout_labels, device=device,
                                           seed=self.random_state)
        seconds = time.perf_counter() - started
        card = self._card(
            arch=arch, root=data.root, n_images=len(train_idx), n_classes=len(train_classes),
            holdout_classes=[names[c] for c in holdout_classes], n_skipped=len(data.skipped),
            statistics=image_statistics(data.pixels[torch.from_numpy(train_idx)]), stopped=stopped, step=step,
            steps_per_epoch=steps_per_epoch, seconds=seconds, device=device, sampler=sampler, metrics=metrics,
            training={
                "mixed_precision": mixed_precision,
                "channels_last": bool(self.channels_last),
                "same_group": self.same_group,
                "quarter_turns": self.quarter_turns,
                "augmentation": augmentation.to_dict(),
                "backbone_weights": Path(self.backbone_weights).name if self.backbone_weights else None,
            },
        )
        self.model_ = SimilarityModel(net.cpu(), prep, card)
        self.holdout_metrics_ = metrics
        self.n_classes_ = int(len(train_classes))
        self.skipped_ = data.skipped
        return self


    def _card(self, *, arch: dict, root, n_images: int, n_classes: int, holdout_classes: list[str], n_skipped: int,
              statistics: dict, stopped: bool, step: int, steps_per_epoch: int, seconds: float, device, sampler,
              metrics: dict, training: dict) -> dict:
        """The model card of a finished fit; ``training``: what only this kind of training records."""
        return {
            "name": self.name or (Path(root).name if root else "similarity model"),
            "architecture": arch,
            "trained_on": {
                "folder": str(root) if root else None,
                "n_images": int(n_images),
                "n_classes": int(n_classes),
                "n_holdout_classes": len(holdout_classes),
                "holdout_classes": holdout_classes,
                "n_skipped": n_skipped,
                "class_depth": self.class_depth,
                "image_statistics": statistics,
            },
            "training": {
                "epochs": self.epochs if not stopped else round(step / steps_per_epoch, 2),
                "steps": step + 1 if not stopped else step,
                "stopped_early": stopped,
                "seconds": round(seconds, 1),
                "device": str(device),
                "seed": self.random_state,
                "classes_per_batch": sampler.classes_per_batch,
                "images_per_class": self.images_per_class,
                "proto_weight": self.proto_weight,
                "class_weight": self.class_weight,
                "label_smoothing": self.label_smoothing if self.class_weight else 0.0,
                "lr": self.lr,
                "weight_decay": self.weight_decay,
                "warmup": self.warmup,
                **training,
                "loss_history": [round(h.loss, 5) for h in self.history_],
            },
            "holdout_pair_metrics": metrics,
            "package_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def _log_step(self, report: Reporter, step: int, total_steps: int, steps_per_epoch: int, epoch_losses: list,
                  started: float) -> None:
        """Report the loss every 10 steps; at the end of an epoch record it in ``history_`` and start anew."""
        epoch = (step + 1) / steps_per_epoch
        if (step + 1) % 10 == 0 or step + 1 == total_steps:
            report("training", step + 1, total_steps, epoch=epoch, loss=float(np.mean(epoch_losses[-50:])),
                   message=f"Epoch {epoch:.1f}/{self.epochs}")
        if (step + 1) % steps_per_epoch == 0 or step + 1 == total_steps:
            self.history_.append(EpochRecord(epoch=len(self.history_) + 1, loss=float(np.mean(epoch_losses)),
                                             seconds=time.perf_counter() - started))
            epoch_losses.clear()

    # -- on a frozen pretrained trunk -----------------------------------------------------------------

    def _read_labelled(self, images, size: int, report, scratch: Path):
        """A labelled folder (or ImageSet) as a pixel store at the trunk's input size, read a chunk at a time."""
        from .store import folder_listing, from_image_set, read_folder

        reading = lambda done, total: report("reading", done, total, message=f"Reading images {done}/{total}")
        if isinstance(images, (str, os.PathLike)):
            listing = folder_listing(images, follow_links=self.follow_links)
            if self.max_images_per_class:
                listing = sample_per_class(listing, self.max_images_per_class, self.class_depth, self.random_state)
            return read_folder(images, scratch / "pixels.u8", size=size, channels=3, labelled=True,
                               class_depth=self.class_depth, progress=reading, should_stop=report.should_stop,
                               follow_links=self.follow_links, listing=listing)
        if self.max_images_per_class:
            raise InputError("max_images_per_class samples the files of a folder: give the folder's path.")
        return from_image_set(as_image_set(images, size=size, channels=3, labelled=True,
                                           class_depth=self.class_depth, progress=reading,
                                           follow_links=self.follow_links))

    def _fit_top(self, images, report: Reporter, device: torch.device, g: torch.Generator):
        """:meth:`fit` for a pretrained trunk: its features once (and of mirror images, as augmentation), then
        the top (and the pair head) trained on them with the same losses. The trunk never changes."""
        import tempfile

        net, prep, arch = self._top_net()
        size = prep.size
        probe = SimilarityModel(net, prep, {"architecture": arch})
        with tempfile.TemporaryDirectory(prefix="l2c-train-") as scratch:
            store = self._read_labelled(images, size, report, Path(scratch))
            labels, names, usable = usable_classes(store.labels)
            views = [lambda a, b: store.rows(a, b)]
            if self.augmentation.get("flip", 0):  # a mirror image shows the same thing: a second view
                views.append(lambda a, b: store.rows(a, b).flip(-1))
            features = []
            for v, rows in enumerate(views):
                what = "features" if v == 0 else "features of mirror images"
                # with tuned blocks: the activations before them, once per image and view
                cut = net.encoder.cut if self.tuned_blocks else None
                features.append(_trunk_pass(probe, rows, len(store), device, report, what, cut=cut))
            sample = np.random.default_rng(self.random_state).choice(len(store), min(len(store), 2000), replace=False)
            statistics = image_statistics(store.take(np.sort(sample)))
            root, skipped = store.root, list(store.skipped)
        return self._train_top(net, prep, arch, torch.stack(features), labels, names, usable, report, device, g,
                               root=root, skipped=skipped, statistics=statistics)

    def fit_features(self, features, labels, *, callback: Callback | None = None,
                     stop: threading.Event | None = None):
        """Train the top of a pretrained backbone on its features computed elsewhere; return ``self``.

        Parameters
        ----------
        features : Tensor of shape (n_views, n_images, 1280) or (n_images, 1280)
            The frozen trunk's pooled features (:func:`~l2c_explorer.pretrained.compute_trunk_features`) of
            labelled images at ``image_size``; extra views (mirror images) are drawn from at random.
        labels : sequence of str, shape (n_images,)
        """
        self._validate()
        if not is_pretrained(self.backbone):
            raise InputError("fit_features trains the top of a pretrained backbone (backbone='efficientnet-lite0', ...).")
        if self.tuned_blocks:
            raise InputError("fit_features trains a top on pooled features; tuned_blocks needs the images (fit).")
        report = Reporter(callback, stop)
        device = resolve_device(self.device)
        g = torch.Generator().manual_seed(self.random_state)
        torch.manual_seed(self.random_state)
        features = torch.as_tensor(features, dtype=torch.float32)
        features = features[None] if features.ndim == 2 else features
        ids, names, usable = usable_classes(list(labels))
        net, prep, arch = self._top_net()
        return self._train_top(net, prep, arch, features, ids, names, usable, report, device, g, root=None,
                               skipped=[], statistics={})

    def _top_net(self):
        """A fresh top on the pretrained trunk: (network, preprocessing, architecture record)."""
        size = pretrained_input_size(self.backbone, self.image_size)
        arch = {"type": "pretrained-cosine", "backbone": self.backbone,
                "backbone_sha256": PRETRAINED[self.backbone].sha256, "in_channels": 3, "hidden": self.hidden,
                "embedding_dim": self.embedding_dim, "input_size": size, "tuned_blocks": self.tuned_blocks}
        prep = Preprocessing(size=size, channels=3, invert=False, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                             mirror_average=False)
        return build_similarity_net(arch), prep, arch

    def _train_top(self, net, prep, arch, features, labels, names, usable, report, device, g, *, root, skipped,
                   statistics):
        """Train the top and the pair head on trunk features (views, n, f) of labelled images."""
        train_classes, holdout_classes = split_classes(usable, self.holdout, g)
        train_idx = np.flatnonzero(np.isin(labels, train_classes))
        remap = {c: i for i, c in enumerate(train_classes)}
        train_labels = np.array([remap[c] for c in labels[train_idx]])
        sampler = ClassBalancedSampler(train_labels, classes_per_batch=self.classes_per_batch,
                                       images_per_class=self.images_per_class, generator=g)
        encoder = net.encoder.to(device)
        net = net.to(device)
        top_params = [*encoder.hidden.parameters(), *encoder.project.parameters()]
        tuned = bool(encoder.tuned_blocks)
        if tuned:  # the trunk's last blocks learn too, from the activations before them (features holds those)
            tail = encoder.tail_parameters()
            for p in tail:
                p.requires_grad_(True)
            top_params += tail
        encode = encoder.from_maps if tuned else encoder.from_features
        mixed = tuned and self.mixed_precision and bf16_supported(device)
        centres = ClassCentres(n_classes=len(train_classes), dim=self.embedding_dim).to(device) if self.class_weight else None
        param_groups = [{"params": top_params},
                        {"params": net.head.parameters(), "lr": self.lr * 20, "weight_decay": 0.0}]
        if centres is not None:
            param_groups.append({"params": centres.parameters(), "weight_decay": 0.0})
        optimizer = (torch.optim.AdamW(param_groups, lr=self.lr, weight_decay=self.weight_decay) if self.weight_decay
                     else torch.optim.Adam(param_groups, lr=self.lr))
        base_lrs = [group["lr"] for group in optimizer.param_groups]
        batch = sampler.classes_per_batch * self.images_per_class
        steps_per_epoch = max(1, len(train_idx) // batch)
        total_steps = max(1, int(round(self.epochs * steps_per_epoch)))
        warmup_steps = int(round(self.warmup * total_steps))
        train_features = features[:, torch.from_numpy(train_idx)]  # (views, n_train, f)
        self.history_ = []
        started = time.perf_counter()
        epoch_losses: list[float] = []
        stopped = False
        step = 0
        for step in range(total_steps):
            if report.should_stop():
                stopped = True
                break
            warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * warm * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
            idx, y = sampler.sample()
            view = torch.randint(len(train_features), (len(idx),), generator=g)
            x = train_features[view, idx].to(device)
            if self.feature_dropout:
                x = F.dropout(x.float(), p=self.feature_dropout, training=True)
            classes = torch.from_numpy(train_labels[idx.numpy()]).to(device)
            net.train()
            loss = train_one_step(net, optimizer, x, y.to(device), proto_weight=self.proto_weight, classes=classes,
                                  centres=centres, class_weight=self.class_weight,
                                  label_smoothing=self.label_smoothing, mixed_precision=mixed, encode=encode)
            epoch_losses.append(loss)
            self._log_step(report, step, total_steps, steps_per_epoch, epoch_losses, started)
        if stopped and step == 0:
            raise StoppedError("Training was stopped before the first step.")
        net = net.cpu().eval()
        for p in net.encoder.trunk.parameters():
            p.requires_grad_(False)  # frozen again: later training (self-training) works on pooled features
        metrics = {}
        holdout = np.flatnonzero(np.isin(labels, holdout_classes))
        if len(holdout) > 1:
            report("finishing", message="Measuring pair metrics on held-out classes")
            model = SimilarityModel(net, prep, {})
            held = features[0, torch.from_numpy(holdout)]
            with torch.no_grad():
                emb = F.normalize(torch.cat([encode(held[i:i + 256]) for i in range(0, len(held), 256)]), dim=1)
            metrics = embedding_pair_metrics(model, emb, labels[holdout], seed=self.random_state)
            metrics["protocol"] = metrics["protocol"].replace("batch-norm adapted to the held-out images",
                                                              "frozen pretrained trunk")
        card = self._card(
            arch=arch, root=root, n_images=len(train_idx), n_classes=len(train_classes),
            holdout_classes=[names[c] for c in holdout_classes], n_skipped=len(skipped), statistics=statistics,
            stopped=stopped, step=step, steps_per_epoch=steps_per_epoch, seconds=time.perf_counter() - started,
            device=device, sampler=sampler, metrics=metrics,
            training={
                "views": int(len(features)),
                "feature_dropout": self.feature_dropout,
                "tuned_blocks": self.tuned_blocks,
                "max_images_per_class": self.max_images_per_class,
                "backbone": self.backbone,
                "backbone_package": PRETRAINED[self.backbone].requirement,
            },
        )
        self.model_ = SimilarityModel(net, prep, card)
        self.holdout_metrics_ = metrics
        self.n_classes_ = int(len(train_classes))
        self.skipped_ = skipped
        return self


def _trunk_pass(model: SimilarityModel, rows, n: int, device, report: Reporter, what: str,
                cut: int | None = None) -> torch.Tensor:
    """Pooled trunk features of ``n`` images, or with ``cut`` the activations after the first ``cut`` blocks."""
    progress = lambda done, total: report("features", done, total, message=f"Computing {what} {done}/{total}")
    if cut is not None:
        return compute_trunk_maps(model, rows, n, cut=cut, device=device, should_stop=report.should_stop,
                                  progress=progress)
    return compute_trunk_features(model, rows, n, device=device, should_stop=report.should_stop, progress=progress)

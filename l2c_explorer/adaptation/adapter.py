"""Same categories, new domain: :class:`DomainAdapter` predicts source classes for unlabelled target images.

``DomainAdapter(method="ccn+").fit(source_folder, target_folder)`` does, in order:

1. read both folders (bad files are skipped and listed); the source classes are its first-level subfolders;
2. choose each domain's input normalisation on its own images (inversion to a dark background, mean/std);
3. for ``ccn+``/``ccn++``, learn a pairwise similarity model on the source (a short
   :class:`~l2c_explorer.similarity.SimilarityLearner` run) and embed the target with it, its batch-norm
   statistics taken from the target;
4. train one network on mini-batches of both domains with the method's losses (below), each domain
   normalised by its own batch-norm statistics;
5. predict every target image's class with the target's statistics.

Methods (the loss of one step; ``ramp(p) = 2 / (1 + exp(-10 p)) - 1`` over training progress ``p``):

``source-only``
    cross-entropy on the source. The baseline: nothing is learnt from the target.
``dann``
    cross-entropy + a domain classifier on the hidden features behind a gradient reversal whose strength
    follows ``domain_weight * ramp(p)`` (Ganin & Lempitsky, 2015).
``ccn+``
    cross-entropy + ``cluster_weight`` x MCL (or KCL) over all pairs of the target batch, with pair
    targets from the similarity model learnt on the source (L2C, Hsu, Lv & Kira, ICLR 2018, section 4).
    The classifier's softmax is the clustering output, so target clusters are tied to source classes.
``ccn++``
    ``ccn+`` plus the ``dann`` branch.
``srdc``
    Structurally Regularized Deep Clustering (Tang, Chen & Jia, CVPR 2020). Target: cross-entropy of the
    classifier output and of Student-t soft assignments of the conv features (f1) and of the hidden
    features (f2) to learnable centres, each against its auxiliary distribution
    ``q_ik ∝ p_ik / (sum_i p_ik)^(1/2)``. Source: the same three heads with the true labels, each source
    image weighted by ``w_j = (1 + cos(f1_j, c_{y_j})) / 2`` to the target centroid of its class. At the
    start of every epoch the target features are clustered by K-means (5 Lloyd iterations, started from
    the source class centroids at the first epoch and from the predicted-class centroids afterwards)
    and the centres are re-initialised from them. Total: ``lambda (L_t,out + L_t,f1 + L_t,f2) + L_s,out +
    lambda (L_s,f1 + L_s,f2)`` with ``lambda = ramp(epoch / epochs)``.
    Paper versus the authors' code (the defaults follow the paper; each has an option for the code's way):

    * ``srdc_detach_q``: Q is a fixed target (the code lets gradients flow through it);
    * ``srdc_assignment``: "sum" normalisation of the Student-t kernel (the code: "softmax");
    * ``srdc_soft_select``: source weights on (the released recipe leaves them off: all weights 1);
    * ``srdc_column_sums``: the cluster sizes ``sum_i p_ik`` in Q over the whole target, "target" (measured on
      the pass over the target at the start of each epoch and kept current with a running average over the
      batches), or over the mini-batch, "batch", as the code does.

    ``srdc_centre_init``: "mean" re-initialises the centres at the mean of the target and source centroids
    (the code's default), "target" at the target centroids.

Implementation choices, for speed on a CPU: the source weights are computed from each source batch's own
(detached) features and the current target centroids instead of from an extra pass over the whole source;
the per-epoch K-means and the source centroids use a random subset of at most ``srdc_kmeans_sample``
images per domain; the similarity model's pair targets come from un-augmented target images embedded once.
Not offered: the code's mixing of Q with one-hot K-means labels (its default, beta = 1, uses Q alone after the
first epoch, and the target terms have weight 0 in the first epoch anyway).
"""

from __future__ import annotations

import copy
import math
import os
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator

from .. import __version__
from ..augment import AffineJitter, augment_batch
from ..data import ROOT_LABEL, ImageSet, Preprocessing, as_image_set, channel_stats, light_background, normalise, to_unit
from ..device import describe_device, resolve_device
from ..errors import InputError, StoppedError
from ..losses import CLUSTERING_LOSSES
from ..metrics import classification_scores, dense_pair_scores
from ..nets import ConvEncoder
from ..progress import Callback, Reporter
from ..similarity import SimilarityLearner, adapted_copy
from .functional import (
    ASSIGNMENT_NORMS,
    class_centroids,
    dann_ramp,
    domain_adversarial_loss,
    grad_reverse,
    hard_pair_targets,
    lloyd_kmeans,
    soft_cross_entropy,
    source_sample_weights,
    srdc_auxiliary_distribution,
    student_t_assignment,
)
from .nets import AdaptationNet, DomainClassifier, DomainNormStats

METHODS = ("source-only", "dann", "ccn+", "ccn++", "srdc")
# The same for every method, so that each gets the same number of steps; tuned on the digits benchmark
# (benchmarks/digits_da.py), where 6 epochs left the adaptation methods still improving.
DEFAULT_EPOCHS = {"source-only": 10, "dann": 10, "ccn+": 10, "ccn++": 10, "srdc": 10}
# Stronger than the core's default jitter: two domains often differ in the size, position and slant of the
# same content (USPS digits fill their frame, MNIST digits keep a margin), and augmentation that spans such
# differences is cheap adaptation for every method, the source-only baseline included.
DEFAULT_JITTER = AffineJitter(rotation=15.0, scale=0.3, shift=0.15, shear=0.3)
CENTRE_INITS = ("mean", "target")
COLUMN_SUMS = ("target", "batch")
SIZE_MOMENTUM = 0.9  # srdc_column_sums="target": running estimate of the target's cluster sizes, per step
USES_TARGET = {"dann", "ccn+", "ccn++", "srdc"}
USES_DOMAIN_CLASSIFIER = {"dann", "ccn++"}
USES_SIMILARITY = {"ccn+", "ccn++"}


class _BatchStream:
    """Endless mini-batches of indices: successive seeded random permutations of ``range(n)``."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.g = n, min(batch_size, n), generator
        self.order = torch.randperm(n, generator=generator)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > self.n:
            self.order = torch.randperm(self.n, generator=self.g)
            self.pos = 0
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx


class DomainAdapter(BaseEstimator):
    """Predict the classes of a labelled source folder in an unlabelled target folder of another look.

    Parameters
    ----------
    method : {"source-only", "dann", "ccn+", "ccn++", "srdc"}
        See the module documentation.
    epochs : int, optional
        Training epochs (default: 10). One epoch is ``max(n_source, n_target) / batch_size`` steps, within
        [``min_steps_per_epoch``, ``max_steps_per_epoch``].
    image_size : int
        Side of the square network input (a multiple of ``2 ** len(widths)``).
    channels : {1, 3}
    invert : {"auto", True, False}
        Flip intensities so the background is dark; "auto" decides for each domain from its own borders.
    widths : tuple of int
        Channels of the convolutional blocks (each halves the side).
    hidden_dim : int
        Size of the hidden features (f2; the embedding given to maps).
    batch_size : int
        Images per domain and step.
    lr, weight_decay : float
        Adam; the learning rate is annealed as ``lr / (1 + 10 p)^0.75`` (DANN's schedule).
    jitter : AffineJitter
        Random affine augmentation of both domains' training batches (and of the similarity model's).
    min_steps_per_epoch, max_steps_per_epoch : int
        Bounds on the steps of an epoch: small folders still get a useful amount of training, and a large
        one takes a bounded time (an epoch then covers part of the images; each is drawn in turn).
    cluster_loss : {"mcl", "kcl"}
        CCN+ clustering loss on target pairs.
    cluster_weight : float
        Weight of the clustering loss.
    similarity_steps : int
        Training steps of the similarity model learnt on the source (``ccn+``, ``ccn++``), whatever the
        folder's size.
    similarity_proto_weight : float
        Weight of the in-batch prototype loss added to the similarity model's pair loss (see
        :class:`~l2c_explorer.similarity.SimilarityLearner`); it sharpens the pair predictions on the target.
    domain_weight : float
        Final strength of the gradient reversal (``dann``, ``ccn++``).
    srdc_detach_q : bool
        Treat the auxiliary distribution as a constant target (paper) or not (authors' code).
    srdc_assignment : {"sum", "softmax"}
        Normalisation of the Student-t kernel (paper: "sum"; authors' code: "softmax").
    srdc_soft_select : bool
        Weight source images by their similarity to the target centroid of their class (paper) or not
        (the released recipe).
    srdc_column_sums : {"target", "batch"}
        Cluster sizes in the auxiliary distribution: over the whole target (paper: measured at the start of
        each epoch, then updated with every batch as a running average), or over each mini-batch (authors'
        code).
    srdc_centre_init : {"mean", "target"}
        Per-epoch re-initialisation of the learnable centres (see the module documentation).
    srdc_kmeans_iterations : int
    srdc_kmeans_sample : int
        At most this many images per domain feed the per-epoch K-means and source centroids.
    track_accuracy : bool
        With ``labelled_target=True`` only: also record the target accuracy after every epoch in
        ``history_`` (one extra pass over the target per epoch; the labels are never used to train).
    device : {"auto", "cpu", "cuda"}
    random_state : int

    Attributes
    ----------
    classes_ : list of str
        Source class names (first-level subfolders), the order of the outputs.
    labels_ : ndarray of shape (n_target,)
        Predicted class of each target image, an index into ``classes_``.
    probabilities_ : ndarray of shape (n_target, n_classes)
    confidence_ : ndarray of shape (n_target,)
        Probability of the predicted class.
    embedding_ : ndarray of shape (n_target, hidden_dim)
        Hidden features of the target images (for maps).
    paths_ : list of str
        Target image paths relative to ``root_``.
    root_ : Path or None
        The target folder.
    true_labels_ : list of str or None
        Target subfolder names, with ``labelled_target=True``.
    skipped_ : list of (str, str)
        Files that could not be used, source and target: the reason starts with the domain.
    history_ : list of dict
        Per epoch: ``epoch``, ``loss``, the separate loss terms, ``lr``, ``seconds`` (and ``target_accuracy``
        with ``track_accuracy``).
    seconds_ : float
    device_ : torch.device
    n_source_images_ : int
    similarity_metrics_ : dict
        ``ccn+``/``ccn++`` only: how the similarity model was trained.
    net_ : AdaptationNet
        The trained network (on the CPU, in eval mode), its batch norms holding the statistics the target was
        predicted with: ``net_(x)`` returns ``(f1, f2, logits)`` for target images normalised as in
        ``preprocessing_["target"]``.
    """

    def __init__(
        self,
        method: str = "ccn+",
        *,
        epochs: int | None = None,
        image_size: int = 32,
        channels: int = 1,
        invert="auto",
        widths: tuple[int, ...] = (16, 32, 64),
        hidden_dim: int = 128,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 5e-4,
        jitter: AffineJitter = DEFAULT_JITTER,
        min_steps_per_epoch: int = 50,
        max_steps_per_epoch: int = 60,
        cluster_loss: str = "mcl",
        cluster_weight: float = 1.0,
        similarity_steps: int = 200,
        similarity_proto_weight: float = 1.0,
        domain_weight: float = 1.0,
        srdc_detach_q: bool = True,
        srdc_assignment: str = "sum",
        srdc_soft_select: bool = True,
        srdc_column_sums: str = "target",
        srdc_centre_init: str = "mean",
        srdc_kmeans_iterations: int = 5,
        srdc_kmeans_sample: int = 3000,
        track_accuracy: bool = False,
        device: str = "auto",
        random_state: int = 0,
    ):
        self.method = method
        self.epochs = epochs
        self.image_size = image_size
        self.channels = channels
        self.invert = invert
        self.widths = widths
        self.hidden_dim = hidden_dim
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.jitter = jitter
        self.min_steps_per_epoch = min_steps_per_epoch
        self.max_steps_per_epoch = max_steps_per_epoch
        self.cluster_loss = cluster_loss
        self.cluster_weight = cluster_weight
        self.similarity_steps = similarity_steps
        self.similarity_proto_weight = similarity_proto_weight
        self.domain_weight = domain_weight
        self.srdc_detach_q = srdc_detach_q
        self.srdc_assignment = srdc_assignment
        self.srdc_soft_select = srdc_soft_select
        self.srdc_column_sums = srdc_column_sums
        self.srdc_centre_init = srdc_centre_init
        self.srdc_kmeans_iterations = srdc_kmeans_iterations
        self.srdc_kmeans_sample = srdc_kmeans_sample
        self.track_accuracy = track_accuracy
        self.device = device
        self.random_state = random_state

    # -- validation ---------------------------------------------------------------------------------

    def _validate(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"Unknown method {self.method!r}; choose one of {', '.join(METHODS)}.")
        if self.epochs is not None and (not isinstance(self.epochs, (int, np.integer)) or self.epochs < 1):
            raise InputError(f"epochs must be a positive whole number, not {self.epochs!r}.")
        if self.channels not in (1, 3):
            raise InputError(f"channels must be 1 or 3, not {self.channels}.")
        blocks = len(self.widths)
        if not blocks or self.image_size < 2**blocks or self.image_size % (2**blocks):
            raise InputError(
                f"image size must be a multiple of {2 ** blocks} (the network halves it {blocks} times), "
                f"not {self.image_size}."
            )
        if self.invert not in ("auto", True, False):
            raise InputError(f"invert must be 'auto', True or False, not {self.invert!r}.")
        if self.batch_size < 2:
            raise InputError(f"batch_size must be at least 2, not {self.batch_size}.")
        if not self.lr > 0 or self.weight_decay < 0:
            raise InputError("lr must be positive and weight_decay non-negative.")
        if not 1 <= self.min_steps_per_epoch <= self.max_steps_per_epoch:
            raise InputError(
                f"Steps per epoch must satisfy 1 <= min_steps_per_epoch ({self.min_steps_per_epoch}) <= "
                f"max_steps_per_epoch ({self.max_steps_per_epoch})."
            )
        if self.cluster_loss not in CLUSTERING_LOSSES:
            raise InputError(f"cluster_loss must be one of {', '.join(CLUSTERING_LOSSES)}, not {self.cluster_loss!r}.")
        if self.cluster_weight < 0 or self.domain_weight < 0:
            raise InputError("cluster_weight and domain_weight must be non-negative.")
        if self.similarity_steps < 1 or self.similarity_proto_weight < 0:
            raise InputError("similarity_steps must be at least 1 and similarity_proto_weight non-negative.")
        if self.srdc_assignment not in ASSIGNMENT_NORMS:
            raise InputError(f"srdc_assignment must be one of {', '.join(ASSIGNMENT_NORMS)}, not {self.srdc_assignment!r}.")
        if self.srdc_column_sums not in COLUMN_SUMS:
            raise InputError(f"srdc_column_sums must be one of {', '.join(COLUMN_SUMS)}, not {self.srdc_column_sums!r}.")
        if self.srdc_centre_init not in CENTRE_INITS:
            raise InputError(f"srdc_centre_init must be one of {', '.join(CENTRE_INITS)}, not {self.srdc_centre_init!r}.")
        if self.srdc_kmeans_iterations < 1 or self.srdc_kmeans_sample < 2:
            raise InputError("srdc_kmeans_iterations must be at least 1 and srdc_kmeans_sample at least 2.")

    # -- reading -------------------------------------------------------------------------------------

    def _read(self, source, target, report: Reporter, labelled_target: bool) -> tuple[ImageSet, ImageSet]:
        def reader(domain: str):
            return dict(
                progress=lambda done, total: report("reading", done, total, message=f"Reading {domain} images {done}/{total}"),
                should_stop=report.should_stop,
            )

        size, ch = self.image_size, self.channels
        # both folders exist before either is read (reading a large source first would only delay the error)
        for name, given in (("Source", source), ("Target", target)):
            if isinstance(given, (str, os.PathLike)):
                path = Path(given).expanduser()
                if not path.exists():
                    raise InputError(f"{name} folder: Folder not found: {path}")
                if not path.is_dir():
                    raise InputError(f"{name} folder: Not a folder: {path} (give the folder that contains the images).")
        try:
            src = as_image_set(source, size=size, channels=ch, labelled=True, **reader("source"))
        except InputError as exc:
            raise InputError(f"Source folder: {exc}") from None
        if src.labels is None:
            raise InputError("The source images need labels: give a folder with one subfolder of images per class.")
        loose = [i for i, name in enumerate(src.labels) if name == ROOT_LABEL]
        if loose:  # images lying directly in SOURCE_DIR have no class
            keep = [i for i in range(len(src)) if src.labels[i] != ROOT_LABEL]
            extra = [(src.paths[i], "not in a class subfolder") for i in loose]
            if not keep:
                raise InputError(
                    "The source folder has no class subfolders: put the images of each class in their own subfolder."
                )
            src = src.subset(keep)
            src.skipped = sorted(src.skipped + extra)
        if len(src.class_names) < 2:
            raise InputError(
                f"The source needs at least 2 classes (subfolders); found {len(src.class_names)}: "
                f"{', '.join(src.class_names)}."
            )
        try:
            tgt = as_image_set(target, size=size, channels=ch, labelled=labelled_target, **reader("target"))
        except InputError as exc:
            raise InputError(f"Target folder: {exc}") from None
        if len(tgt) < 2:
            raise InputError(f"The target needs at least 2 images; found {len(tgt)}.")
        if labelled_target:
            if tgt.labels is None:
                raise InputError("Scoring needs target labels: a target folder with one subfolder per class.")
            unknown = sorted(set(tgt.labels) - set(src.class_names))
            if unknown:
                names = ["(images directly in the target folder)" if u == ROOT_LABEL else repr(u) for u in unknown]
                shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
                raise InputError(
                    f"Cannot score: target subfolder(s) {shown} are not source classes "
                    f"(source classes: {', '.join(src.class_names[:20])}{' ...' if len(src.class_names) > 20 else ''}). "
                    "With scoring, the target's subfolders must be named like the source's."
                )
        return src, tgt

    def _preprocessing(self, images: ImageSet) -> Preprocessing:
        invert = light_background(images.pixels) if self.invert == "auto" else bool(self.invert)
        mean, std = channel_stats(to_unit(images.pixels, invert))
        return Preprocessing(size=self.image_size, channels=self.channels, invert=invert, mean=mean, std=std)

    # -- fit ----------------------------------------------------------------------------------------------

    def fit(
        self,
        source,
        target,
        *,
        callback: Callback | None = None,
        stop: threading.Event | None = None,
        labelled_target: bool = False,
    ) -> DomainAdapter:
        """Learn from a labelled ``source`` and an unlabelled ``target``; return ``self``.

        Parameters
        ----------
        source : path or ImageSet
            Labelled images: a folder with one subfolder per class (or a labelled :class:`ImageSet`).
        target : path or ImageSet
            Images of the same classes in another domain; only read.
        callback : callable(Progress), optional
            Stages ``"reading"``, ``"similarity"`` (``ccn+``/``ccn++``: learning pair similarity on the
            source), ``"training"`` (with ``loss`` and the loss terms) and ``"finishing"``.
        stop : threading.Event, optional
            When set, training ends after the current step and the predictions use what was learnt.
        labelled_target : bool
            Record the target's first-level subfolder names as ground truth for :meth:`score` (never used
            to train). They must be source class names.
        """
        self._validate()
        report = Reporter(callback, stop)
        started = time.perf_counter()
        device = resolve_device(self.device)
        torch.manual_seed(self.random_state)
        g = torch.Generator().manual_seed(self.random_state)

        src, tgt = self._read(source, target, report, labelled_target)
        if report.should_stop():
            raise StoppedError("Stopped while reading the images; nothing was learnt.")
        classes = src.class_names
        y_src = torch.from_numpy(src.label_ids())
        prep_s, prep_t = self._preprocessing(src), self._preprocessing(tgt)
        unit_s, unit_t = to_unit(src.pixels, prep_s.invert), to_unit(tgt.pixels, prep_t.invert)

        self.similarity_metrics_: dict = {}
        spn_emb = spn_head = None
        if self.method in USES_SIMILARITY:
            spn_emb, spn_head = self._learn_similarity(src, normalise(unit_t, prep_t), report, stop, device)

        net = AdaptationNet(
            encoder=ConvEncoder(
                in_channels=self.channels, widths=tuple(self.widths), embedding_dim=self.hidden_dim, input_size=self.image_size
            ),
            n_classes=len(classes),
        ).to(device)
        norms = DomainNormStats(net).to(device)
        trainer = _Trainer(self, net, norms, device, g, n_classes=len(classes))
        if self.method in USES_DOMAIN_CLASSIFIER:
            trainer.add_domain_classifier()
        if self.method == "srdc":
            trainer.add_srdc_centres()
        trainer.spn_emb, trainer.spn_head = spn_emb, spn_head

        eval_labels = None
        if labelled_target and self.track_accuracy:
            index = {name: i for i, name in enumerate(classes)}
            eval_labels = np.array([index[name] for name in tgt.labels])
        self.history_ = trainer.run(
            (unit_s, prep_s, y_src), (unit_t, prep_t), report=report, eval_labels=eval_labels
        )
        if trainer.steps_done == 0:
            raise StoppedError("Training was stopped before its first step; nothing was learnt.")

        report("finishing", message="Predicting the target classes")
        target_domain = "target" if self.method in USES_TARGET else "source"
        _, f2, logits = trainer.predict(normalise(unit_t, prep_t), target_domain)
        probs = torch.softmax(logits, dim=1).numpy()

        self.classes_ = list(classes)
        self.probabilities_ = probs
        self.labels_ = probs.argmax(axis=1).astype(np.int64)
        self.confidence_ = probs[np.arange(len(probs)), self.labels_]
        self.embedding_ = f2.numpy()
        self.paths_ = list(tgt.paths)
        self.root_ = tgt.root
        self.source_root_ = src.root
        self.true_labels_ = list(tgt.labels) if labelled_target else None
        self.source_skipped_ = list(src.skipped)
        self.target_skipped_ = list(tgt.skipped)
        self.skipped_ = [(p, f"source: {r}") for p, r in src.skipped] + [(p, f"target: {r}") for p, r in tgt.skipped]
        self.n_source_images_ = len(src)
        self.preprocessing_ = {"source": prep_s.to_dict(), "target": prep_t.to_dict()}
        self.epochs_ = trainer.n_epochs
        self.steps_ = trainer.steps_done
        self.stopped_early_ = trainer.steps_done < trainer.total_steps
        self.device_ = device
        with norms.use(target_domain):  # the copy keeps the statistics it predicts the target with
            self.net_ = copy.deepcopy(net).cpu().eval()
        self._spn_emb = None if spn_emb is None else spn_emb.cpu()
        self._spn_head = None if spn_head is None else spn_head.cpu()
        self.seconds_ = time.perf_counter() - started
        return self

    def _learn_similarity(self, src: ImageSet, target_inputs: torch.Tensor, report: Reporter, stop, device):
        """Train the pair-similarity model on the source; embed the target with target batch-norm statistics."""

        def relay(p) -> None:
            if p.stage == "training":
                report("similarity", p.step, p.total, message=f"Learning pair similarity on the source ({p.message})",
                       **p.metrics)

        n_classes = len(src.class_names)
        # about 100 images per batch, as in the L2C recipe, with at least 4 per class
        per_class = max(4, -(-100 // n_classes))
        steps_per_epoch = max(1, len(src) // (n_classes * per_class))
        learner = SimilarityLearner(
            epochs=self.similarity_steps / steps_per_epoch,
            image_size=self.image_size,
            channels=self.channels,
            invert=self.invert,
            widths=tuple(self.widths),
            classes_per_batch=n_classes,
            images_per_class=per_class,
            same_group=0.0,
            jitter=self.jitter,
            proto_weight=self.similarity_proto_weight,
            holdout=0.0,  # the target has the same classes: hold none out
            device=str(device),
            random_state=self.random_state,
            name="source similarity",
        )
        try:
            learner.fit(src, callback=relay, stop=stop)
        except InputError as exc:
            raise InputError(f"Cannot learn pair similarity on the source: {exc}") from None
        model = learner.model_
        net = adapted_copy(model.net, target_inputs, device)
        with torch.no_grad():
            emb = torch.cat([net.embed(target_inputs[i : i + 512].to(device)) for i in range(0, len(target_inputs), 512)])
        training = model.card["training"]
        self.similarity_metrics_ = {"epochs": training["epochs"], "steps": training["steps"], "seconds": training["seconds"]}
        return emb, net.head

    # -- results --------------------------------------------------------------------------------------

    def fit_predict(self, source, target, **kwargs) -> np.ndarray:
        return self.fit(source, target, **kwargs).labels_

    def predicted_classes(self) -> list[str]:
        """The predicted class name of every target image."""
        return [self.classes_[i] for i in self.labels_]

    def score(self, y_true=None) -> dict:
        """Target accuracy and per-class accuracy against ``y_true`` (class names; default: the folder names).

        Returns
        -------
        dict with ``accuracy``, ``per_class_accuracy`` {class: accuracy}, ``mean_class_accuracy`` and
        ``n_images``.
        """
        if y_true is None:
            if self.true_labels_ is None:
                raise InputError("No ground truth: pass y_true, or fit with labelled_target=True (target subfolder names).")
            y_true = self.true_labels_
        return classification_scores(np.asarray(y_true), np.asarray(self.predicted_classes()))

    def target_pair_scores(self, max_images: int = 2000) -> dict | None:
        """``ccn+``/``ccn++`` with a labelled target: quality of the similarity model's pair targets there.

        Pair precision/recall/F1/ROC-AUC over all pairs of up to ``max_images`` target images (seeded subset).
        """
        if self._spn_emb is None or self.true_labels_ is None:
            return None
        idx = np.random.default_rng(self.random_state).permutation(len(self.true_labels_))[:max_images]
        emb = self._spn_emb[torch.from_numpy(idx)]
        with torch.no_grad():
            prob = torch.sigmoid(self._spn_head(emb, emb)).numpy()
        scores = dense_pair_scores(prob, np.asarray(self.true_labels_)[idx])
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items()}

    def summary(self, *, score: bool = False) -> dict:
        """Everything ``summary.json`` records about this run."""
        counts = np.bincount(self.labels_, minlength=len(self.classes_))
        out = {
            "method": self.method,
            "n_images": len(self.paths_),
            "n_source_images": self.n_source_images_,
            "n_skipped": len(self.skipped_),
            "skipped": [{"domain": "source", "file": f, "reason": r} for f, r in self.source_skipped_]
            + [{"domain": "target", "file": f, "reason": r} for f, r in self.target_skipped_],
            "classes": list(self.classes_),
            "predicted_class_counts": {c: int(n) for c, n in zip(self.classes_, counts)},
            "seconds": round(self.seconds_, 2),
            "device": describe_device(self.device_),
            "seed": self.random_state,
            "epochs": self.epochs_,
            "steps": self.steps_,
            "stopped_early": self.stopped_early_,
            "parameters": self._json_params(),
            "preprocessing": self.preprocessing_,
            "history": self.history_,
            "version": __version__,
            "source": str(self.source_root_) if self.source_root_ else None,
            "target": str(self.root_) if self.root_ else None,
        }
        if self.similarity_metrics_:
            out["similarity_model"] = self.similarity_metrics_
        if score:
            m = self.score()
            out["metrics"] = m
            pairs = self.target_pair_scores()
            if pairs is not None:
                out["metrics"]["target_pair_scores"] = pairs
        return out

    def _json_params(self) -> dict:
        """Constructor parameters, JSON-able (for ``summary.json``)."""
        params = self.get_params(deep=False)
        params["jitter"] = self.jitter.to_dict()
        params["widths"] = list(self.widths)
        return params


# ---------------------------------------------------------------------------------------------------
# training


class _Trainer:
    """The training loop shared by every method; the method's terms are switched on by what is attached."""

    def __init__(self, opts: DomainAdapter, net: AdaptationNet, norms: DomainNormStats, device, g, *, n_classes: int):
        self.o, self.net, self.norms, self.device, self.g, self.k = opts, net, norms, device, g, n_classes
        self.discriminator: DomainClassifier | None = None
        self.centres: list[torch.nn.Parameter] = []
        self.spn_emb = self.spn_head = None
        self.steps_done = 0
        self.total_steps = 0
        self.n_epochs = 0

    def add_domain_classifier(self) -> None:
        self.discriminator = DomainClassifier(dim_in=self.net.hidden_dim).to(self.device)

    def add_srdc_centres(self) -> None:
        self.centres = [
            torch.nn.Parameter(torch.zeros(self.k, dim, device=self.device))
            for dim in (self.net.feature_dim, self.net.hidden_dim)
        ]

    # -- inference ----------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor, domain: str, batch_size: int = 512):
        """(f1, f2, logits) on the CPU for normalised inputs (n, C, S, S), with ``domain``'s statistics."""
        self.net.eval()
        outs = []
        with self.norms.use(domain):
            for i in range(0, len(inputs), batch_size):
                outs.append([t.cpu() for t in self.net(inputs[i : i + batch_size].to(self.device))])
        self.net.train()
        return tuple(torch.cat(parts) for parts in zip(*outs))

    # -- the loop ----------------------------------------------------------------------------------------

    def run(self, source, target, *, report: Reporter, eval_labels: np.ndarray | None) -> list[dict]:
        o, net = self.o, self.net
        unit_s, prep_s, y_s = source
        unit_t, prep_t = target
        n_s, n_t = len(unit_s), len(unit_t)
        uses_target = o.method in USES_TARGET
        wanted = math.ceil(max(n_s, n_t if uses_target else 0) / o.batch_size)
        steps_per_epoch = min(max(wanted, o.min_steps_per_epoch), o.max_steps_per_epoch)
        self.n_epochs = o.epochs or DEFAULT_EPOCHS[o.method]
        self.total_steps = total = steps_per_epoch * self.n_epochs

        params = list(net.parameters()) + self.centres
        if self.discriminator is not None:
            params += list(self.discriminator.parameters())
        optimizer = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        stream_s = _BatchStream(n_s, o.batch_size, self.g)
        stream_t = _BatchStream(n_t, o.batch_size, self.g)
        loss_fn = CLUSTERING_LOSSES[o.cluster_loss]
        history: list[dict] = []
        started = time.perf_counter()
        net.train()

        for epoch in range(self.n_epochs):
            if report.should_stop():
                break
            srdc_state = None
            if o.method == "srdc":
                srdc_state = self._srdc_epoch_start(epoch, unit_s, prep_s, y_s, unit_t, prep_t)
                for centre in self.centres:  # new centres: the optimiser's moments of the old ones do not apply
                    optimizer.state.pop(centre, None)
            sums: dict[str, float] = {}
            n_steps = 0
            for _ in range(steps_per_epoch):
                if report.should_stop():
                    break
                step = self.steps_done
                progress = step / total
                lr = o.lr / (1.0 + 10.0 * progress) ** 0.75
                for group in optimizer.param_groups:
                    group["lr"] = lr
                i_s = stream_s.next()
                xs = self._batch(unit_s[i_s], prep_s)
                ys = y_s[i_s].to(self.device)
                terms: dict[str, torch.Tensor] = {}
                with self.norms.use("source"):
                    f1_s, f2_s, logits_s = net(xs)
                if uses_target:
                    i_t = stream_t.next()
                    xt = self._batch(unit_t[i_t], prep_t)
                    with self.norms.use("target"):
                        f1_t, f2_t, logits_t = net(xt)
                if o.method == "srdc":
                    terms.update(self._srdc_terms(srdc_state, epoch, ys, f1_s, f2_s, logits_s, f1_t, f2_t, logits_t))
                else:
                    terms["source_ce"] = F.cross_entropy(logits_s, ys)
                if self.discriminator is not None:
                    coeff = o.domain_weight * dann_ramp(progress)
                    d_s = self.discriminator(grad_reverse(f2_s, coeff))
                    d_t = self.discriminator(grad_reverse(f2_t, coeff))
                    terms["domain"] = domain_adversarial_loss(d_s, d_t)
                if self.spn_emb is not None:
                    emb = self.spn_emb[i_t.to(self.spn_emb.device)]
                    with torch.no_grad():
                        pairs = hard_pair_targets(torch.sigmoid(self.spn_head(emb, emb)))
                    terms["cluster"] = o.cluster_weight * loss_fn(torch.softmax(logits_t, dim=1), pairs.to(self.device))
                loss = sum(terms.values())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                self.steps_done += 1
                n_steps += 1
                values = {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}
                for key, value in values.items():
                    sums[key] = sums.get(key, 0.0) + value
                if self.steps_done % 5 == 0 or self.steps_done == total:
                    report("training", self.steps_done, total, epoch=self.steps_done / steps_per_epoch,
                           message=f"Epoch {epoch + 1}/{self.n_epochs}", **values)
            if n_steps == 0:
                break
            record = {"epoch": epoch + 1, **{k: v / n_steps for k, v in sums.items()}, "lr": lr,
                      "steps": n_steps, "seconds": round(time.perf_counter() - started, 2)}
            if srdc_state is not None:
                record["lambda"] = srdc_state["lambda"]
                record["mean_source_weight"] = srdc_state["mean_weight"]
            if eval_labels is not None:
                domain = "target" if uses_target else "source"
                _, _, logits = self.predict(normalise(unit_t, prep_t), domain)
                record["target_accuracy"] = float((logits.argmax(1).numpy() == eval_labels).mean())
            history.append(record)
        return history

    def _batch(self, unit: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
        """Augment unit-range images (background 0) and normalise them for the network."""
        x = augment_batch(unit, self.o.jitter, generator=self.g)
        return normalise(x, prep).to(self.device)

    # -- SRDC ---------------------------------------------------------------------------------------

    def _sample(self, n: int) -> torch.Tensor:
        m = min(n, self.o.srdc_kmeans_sample)
        return torch.randperm(n, generator=self.g)[:m].sort().values

    @torch.no_grad()
    def _srdc_epoch_start(self, epoch, unit_s, prep_s, y_s, unit_t, prep_t) -> dict:
        """K-means on the target features, centre re-initialisation and the weight ``lambda`` of this epoch."""
        o = self.o
        i_s, i_t = self._sample(len(unit_s)), self._sample(len(unit_t))
        f1_s, f2_s, _ = self.predict(normalise(unit_s[i_s], prep_s), "source")
        f1_t, f2_t, logits_t = self.predict(normalise(unit_t[i_t], prep_t), "target")
        labels_s = y_s[i_s]
        pred_t = logits_t.argmax(1)
        state = {"lambda": dann_ramp(epoch / self.n_epochs), "target_centroids": [], "mean_weight": 1.0,
                 "column_sums": {"out": torch.softmax(logits_t, dim=1).mean(0).to(self.device)}}
        for level, (fs, ft, centre) in enumerate(zip((f1_s, f2_s), (f1_t, f2_t), self.centres)):
            c_s = class_centroids(fs, labels_s, self.k)
            # the first K-means starts from the source classes; later ones from the predicted target classes
            init = c_s if epoch == 0 else class_centroids(ft, pred_t, self.k, fallback=c_s)
            c_t, _ = lloyd_kmeans(ft, init, iterations=o.srdc_kmeans_iterations)
            centre.data.copy_((0.5 * (c_t + c_s) if o.srdc_centre_init == "mean" else c_t).to(self.device))
            state["target_centroids"].append(c_t.to(self.device))
            assign = student_t_assignment(ft.to(self.device), centre.data, normalise=o.srdc_assignment)
            state["column_sums"][f"f{level + 1}"] = assign.mean(0)
        if o.srdc_soft_select and epoch > 0:
            state["mean_weight"] = float(source_sample_weights(f1_s, labels_s, state["target_centroids"][0]).mean())
        return state

    def _srdc_terms(self, state, epoch, ys, f1_s, f2_s, logits_s, f1_t, f2_t, logits_t) -> dict:
        o = self.o
        lam = state["lambda"]
        onehot = F.one_hot(ys, self.k).to(logits_s.dtype)
        weights = None
        if o.srdc_soft_select and epoch > 0:
            # the paper's weights, computed from this batch's own features (no extra pass over the source)
            weights = source_sample_weights(f1_s.detach(), ys, state["target_centroids"][0])
        p_t = torch.softmax(logits_t, dim=1)
        assign_t = {name: student_t_assignment(ft, centre, normalise=o.srdc_assignment)
                    for name, ft, centre in (("f1", f1_t, self.centres[0]), ("f2", f2_t, self.centres[1]))}
        sums = {}
        if o.srdc_column_sums == "target":
            # cluster sizes over the whole target: the epoch-start pass, kept current with each batch (a fixed
            # estimate over a whole epoch over-corrects: the sizes of one epoch then flip in the next)
            for name, p in (("out", p_t), *assign_t.items()):
                est = state["column_sums"][name]
                est.mul_(SIZE_MOMENTUM).add_(p.detach().mean(0), alpha=1.0 - SIZE_MOMENTUM)
                sums[name] = est
        q_out = srdc_auxiliary_distribution(p_t, detach=o.srdc_detach_q, column_sums=sums.get("out"))
        terms = {
            "source_ce": _weighted_cross_entropy(logits_s, ys, weights),
            "target_out": lam * soft_cross_entropy(q_out, p_t),
        }
        for name, fs, ft, centre in (("f1", f1_s, f1_t, self.centres[0]), ("f2", f2_s, f2_t, self.centres[1])):
            a_t = assign_t[name]
            a_s = student_t_assignment(fs, centre, normalise=o.srdc_assignment)
            q_t = srdc_auxiliary_distribution(a_t, detach=o.srdc_detach_q, column_sums=sums.get(name))
            terms[f"target_{name}"] = lam * soft_cross_entropy(q_t, a_t)
            terms[f"source_{name}"] = lam * soft_cross_entropy(onehot, a_s, weights=weights)
        return terms


def _weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean over items of ``w_i * CE(logits_i, y_i)`` (plain cross-entropy without weights)."""
    per_item = F.cross_entropy(logits, labels, reduction="none")
    return (per_item * weights).mean() if weights is not None else per_item.mean()

"""Same categories, new domain: :class:`DomainAdapter` predicts source classes for unlabelled target images.

``DomainAdapter(method="ccn+").fit(source_folder, target_folder)`` does, in order:

1. read both folders (bad files are skipped and listed); the source classes are its first-level subfolders;
2. choose each domain's input normalisation on its own images (inversion to a dark background, mean/std);
3. for ``ccn+``/``ccn++``, learn a pairwise similarity model on the source (a short
   :class:`~l2c_explorer.similarity_learner.SimilarityLearner` run) and embed the target with it, its batch-norm
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
import os
import threading
import time

import numpy as np
import torch
from sklearn.base import BaseEstimator

from .. import __version__
from ..augment import as_augmentation
from ..data import ROOT_LABEL, ImageSet, Preprocessing, as_image_set, channel_stats, light_background, normalise, to_unit
from ..device import describe_device, resolve_device
from ..errors import InputError, StoppedError, check_folder
from ..metrics import classification_scores, dense_pair_scores
from ..nets import ConvEncoder
from ..options import ADAPT
from ..progress import Callback, Reporter
from ..similarity_learner import SimilarityLearner, check_image_size
from .nets import AdaptationNet, DomainNormStats
from .trainer import Trainer

USES_TARGET = {"dann", "ccn+", "ccn++", "srdc"}
USES_DOMAIN_CLASSIFIER = {"dann", "ccn++"}
USES_SIMILARITY = {"ccn+", "ccn++"}


class DomainAdapter(BaseEstimator):
    """Predict the classes of a labelled source folder in an unlabelled target folder of another look.

    The defaults, allowed values and help of every parameter are declared in
    :data:`l2c_explorer.options.ADAPT`.

    Parameters
    ----------
    method : {"source-only", "dann", "ccn+", "ccn++", "srdc"}
        See the module documentation.
    epochs : int
        Training epochs. One epoch is ``max(n_source, n_target) / batch_size`` steps, within
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
    jitter : AffineJitter or mapping
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
        :class:`~l2c_explorer.similarity_learner.SimilarityLearner`); it sharpens the pair predictions on the target.
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
    similarity_model_ : SimilarityModel or None
        ``ccn+``/``ccn++`` only: the similarity model learnt on the source, whose P(same) gave the pair targets.
    similarity_embedding_ : Tensor of shape (n_target, d) or None
        Its embedding of the target images (batch-norm statistics from the target).
    net_ : AdaptationNet
        The trained network (on the CPU, in eval mode), its batch norms holding the statistics the target was
        predicted with: ``net_(x)`` returns ``(f1, f2, logits)`` for target images normalised as in
        ``preprocessing_["target"]``.
    """

    __init__ = ADAPT.estimator_init(positional=("method",))

    # -- validation ---------------------------------------------------------------------------------

    def _validate(self) -> None:
        ADAPT.validate(self.get_params())
        check_image_size(self.image_size, self.widths)
        if self.min_steps_per_epoch > self.max_steps_per_epoch:
            raise InputError(
                f"min_steps_per_epoch ({self.min_steps_per_epoch}) must not exceed max_steps_per_epoch "
                f"({self.max_steps_per_epoch})."
            )

    # -- reading -------------------------------------------------------------------------------------

    def _read(self, source, target, report: Reporter, labelled_target: bool) -> tuple[ImageSet, ImageSet]:
        def reader(domain: str):
            return dict(
                progress=lambda done, total: report("reading", done, total, message=f"Reading {domain} images {done}/{total}"),
                should_stop=report.should_stop,
            )

        size, ch = self.image_size, self.channels
        # both folders exist before either is read (reading a large source first would only delay the error)
        for name, given in (("Source folder", source), ("Target folder", target)):
            if isinstance(given, (str, os.PathLike)):
                check_folder(given, what=name)
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

    def fit(self, source, target, *, callback: Callback | None = None, stop: threading.Event | None = None,
            labelled_target: bool = False) -> DomainAdapter:
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
        self.similarity_model_ = self.similarity_embedding_ = None
        if self.method in USES_SIMILARITY:
            self._learn_similarity(src, normalise(unit_t, prep_t), report, stop, device)

        net = AdaptationNet(
            encoder=ConvEncoder(
                in_channels=self.channels, widths=tuple(self.widths), embedding_dim=self.hidden_dim, input_size=self.image_size
            ),
            n_classes=len(classes),
        ).to(device)
        norms = DomainNormStats(net).to(device)
        trainer = Trainer(self, net, norms, device, g, n_classes=len(classes), uses_target=self.method in USES_TARGET)
        if self.method in USES_DOMAIN_CLASSIFIER:
            trainer.add_domain_classifier()
        if self.method == "srdc":
            trainer.add_srdc()
        if self.similarity_model_ is not None:
            trainer.add_pair_targets(self.similarity_model_, self.similarity_embedding_)

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
        self.seconds_ = time.perf_counter() - started
        return self

    def _learn_similarity(self, src: ImageSet, target_inputs: torch.Tensor, report: Reporter, stop, device) -> None:
        """Train the pair-similarity model on the source; embed the target with target batch-norm statistics.

        Sets ``similarity_model_``, ``similarity_embedding_`` (n_target, d) and ``similarity_metrics_``.
        """

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
            augmentation=self.jitter,
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
        self.similarity_model_ = model = learner.model_
        self.similarity_embedding_ = model.embed_inputs(target_inputs, device=device)
        training = model.card["training"]
        self.similarity_metrics_ = {"epochs": training["epochs"], "steps": training["steps"], "seconds": training["seconds"]}

    # -- results --------------------------------------------------------------------------------------

    def fit_predict(self, source, target, **kwargs) -> np.ndarray:
        return self.fit(source, target, **kwargs).labels_

    def predicted_classes(self) -> list[str]:
        """The predicted class name of every target image."""
        return [self.classes_[i] for i in self.labels_]

    def score(self, y_true=None) -> float:
        """Target accuracy against ``y_true`` (class names; default: the target's folder names)."""
        return self.scores(y_true)["accuracy"]

    def scores(self, y_true=None) -> dict:
        """Target accuracy and per-class accuracy against ``y_true`` (see :meth:`score`).

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
        if self.similarity_model_ is None or self.true_labels_ is None:
            return None
        idx = np.random.default_rng(self.random_state).permutation(len(self.true_labels_))[:max_images]
        prob = self.similarity_model_.pair_probabilities(self.similarity_embedding_[torch.from_numpy(idx)]).numpy()
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
            m = self.scores()
            out["metrics"] = m
            pairs = self.target_pair_scores()
            if pairs is not None:
                out["metrics"]["target_pair_scores"] = pairs
        return out

    def _json_params(self) -> dict:
        """Constructor parameters, JSON-able (for ``summary.json``)."""
        params = self.get_params(deep=False)
        params["jitter"] = as_augmentation(self.jitter).to_dict()
        params["widths"] = list(self.widths)
        return params

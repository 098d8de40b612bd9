"""The answers side of :class:`~l2c_explorer.clustering.L2CClusterer`: a person's answers about pairs of images,
what they change (:meth:`~AnswersMixin.refit`, :meth:`~AnswersMixin.relearn`) and what to ask next
(:meth:`~AnswersMixin.questions`).

A mixin of the estimator, apart because it is its own concern: it reads the fitted attributes a fit sets and
changes the clusters through the estimator's ``_adopt_pass`` and ``_set_clusters``, the places fitted attributes
are set. The steps are module-level functions: :func:`~l2c_explorer.corrections.corrected_labels`,
:func:`~l2c_explorer.discovery.sharpen`, :func:`~l2c_explorer.planning.relearn_stages`.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .ccn import clusters_from_labels
from .constraints import ConstraintSet, as_answers, read_constraints_csv
from .corrections import corrected_labels
from .device import resolve_device
from .discovery import reopen_images, sharpen
from .errors import InputError
from .planning import relearn_stages
from .progress import Callback, Reporter
from .sources import scratch_folder

# What a refit starts from (the clusters before the answers are applied, and what they came from): the key in
# the snapshot -> the attribute of L2CClusterer. The history is kept as a copy (the curves) and put back in place.
_REFIT_STATE = {"labels": "labels_", "probabilities": "probabilities_", "confidence": "confidence_",
                "n_clusters": "n_clusters_", "features": "diffusion_features_", "eigenvalues": "eigenvalues_",
                "k_eigengap": "k_eigengap_", "k_parts": "k_parts_", "head_state": "head_state_",
                "embedding": "embedding_", "graph": "graph_", "embedding_model": "embedding_model_",
                "prototypes": "prototypes_", "unlike_threshold": "unlike_threshold_"}


class AnswersMixin:
    """:meth:`refit`, :meth:`relearn` and :meth:`questions` of a fitted :class:`~l2c_explorer.clustering.L2CClusterer`.

    Its state: ``constraints_`` (the answers in effect) and ``_answers`` (an
    :class:`~l2c_explorer.corrections.AnswerHistory`: the clusterings a refit can start from).
    """

    def _snapshot(self) -> dict:
        """The clusters as they are now, as :meth:`_restore` puts them back."""
        return {key: getattr(self, attr) for key, attr in _REFIT_STATE.items()} | {"history": list(self.history_)}

    def _restore(self, state: dict) -> None:
        for key, attr in _REFIT_STATE.items():
            setattr(self, attr, state[key])
        self.history_[:] = state["history"]

    # -- answers ------------------------------------------------------------------------------------

    def constraint_set(self, constraints) -> ConstraintSet:
        """Answers as a :class:`~l2c_explorer.constraints.ConstraintSet` over this run's images.

        ``constraints``: a ``path_a,path_b,same`` CSV file (str or path), a ConstraintSet, or answers as
        :class:`~l2c_explorer.constraints.Answer` objects or ``(a, b, same)`` rows of image indices
        (``same`` 1/True or 0/False). Contradictory answers raise
        :class:`~l2c_explorer.constraints.ContradictionError`, naming the images by path.
        """
        check_is_fitted(self, "graph_")
        if self.graph_ is None:
            raise InputError("Answers about pairs need the graph method's clustering; this run used the paper's "
                             "pipeline (method='paper').")
        n = len(self.paths_)
        if isinstance(constraints, (str, os.PathLike)):
            answers = read_constraints_csv(constraints, self.paths_)
        elif isinstance(constraints, ConstraintSet):
            if constraints.n_images != n:
                raise InputError(f"These answers are about {constraints.n_images} images; this run has {n}.")
            answers = constraints.answers
        else:
            answers = as_answers(constraints, n)
        return ConstraintSet(n, answers, names=self.paths_)

    def refit(self, constraints, *, callback: Callback | None = None,
              stop: threading.Event | None = None) -> AnswersMixin:
        """Change this run's clusters as a person's answers about pairs of images say; return ``self``.

        Each answer is applied to the clusters as they were when it was given
        (:func:`~l2c_explorer.constraints.apply_answers`): "same" for the most typical images of two groups
        merges the groups, "same" for another image moves it (with the images chained to it by "same"
        answers) to the other's group, "different" inside a group splits the group, its other members
        following the group's own links. Nothing else moves, K changes only by those merges and splits
        (never re-estimated), and afterwards every answer holds, with its transitive consequences.

        The result depends only on this run, the answers and the relearnings done (:meth:`relearn`), not on
        earlier refits: answering one by one gives what the same answers in a file give, and refitting with
        fewer answers undoes (back to before a relearning that used an answer taken back). With no answers,
        the run's own clusters come back. ``constraints``: as :meth:`constraint_set` takes them.
        """
        cs = self.constraint_set(constraints)
        report = Reporter(callback, stop)
        started = time.perf_counter()
        if self.n_clusters is not None and cs.min_clusters() > self.n_clusters:
            raise InputError(f"The answers say that {cs.min_clusters()} images are all different categories, "
                             f"but K was given as {self.n_clusters}.")
        base = self._answers.start_for(cs.answers)
        self._restore(base)
        self.constraints_ = cs
        if len(cs) == 0:
            self.timings_["refit"] = 0.0
            return self
        report("graph", 0, 1, message="Applying the answers to the groups")
        labels = corrected_labels(self.graph_, self.embedding_, base["labels"], cs, self.n_clusters)
        self._set_clusters(clusters_from_labels(labels, base["features"]), self.embedding_)
        report("graph", 1, 1, message=f"Groups with the answers: {self.n_clusters_} clusters")
        self.stopped_ = False
        self.timings_["refit"] = round(time.perf_counter() - started, 3)
        return self

    def relearn(self, constraints=None, *, callback: Callback | None = None,
                stop: threading.Event | None = None) -> AnswersMixin:
        """Relearn the features and the clusters from the answers; return ``self``.

        :meth:`refit` moves images between groups; this teaches the similarity model what the answers mean for the
        rest of the folder. With the groups as the answers left them (``constraints``, applied first when given;
        else the answers of the last refit): self-train the run's embedding model on them for ``relearn_steps``
        steps, at most the run's own (:func:`~l2c_explorer.discovery.sharpen`, the images some answer is about
        always among the examples), compute the features and the similarity graph again, estimate K again from the
        sharpened graph (unless K was given), train the clustering network again, the answers among its pair targets
        with a strong weight (:func:`~l2c_explorer.ccn.answer_weights`), and apply every answer to the new clusters.
        A look-alike the answers separated in one place is then told apart everywhere.

        Needs the run's images (``root_``; they are read again, from the cache when there is one). Later
        refits start from the relearnt clusters; a refit without one of the answers used here goes back to
        before it. When stopped, nothing changes (``stopped_`` is set).
        """
        from .threads import limited_threads

        check_is_fitted(self, "graph_")
        if self.method != "graph" or self.graph_ is None:
            raise InputError("Only the graph method can relearn (the paper's baseline has no features to sharpen).")
        if self.root_ is None or not Path(self.root_).is_dir():
            raise InputError("Relearning needs the run's images again, but its folder is not available"
                             f"{f' ({self.root_})' if self.root_ else ''}.")
        if constraints is not None:
            self.refit(constraints)
        cs = self.constraints_
        if len(cs) == 0:
            raise InputError("Relearning learns from answers: answer some questions (or merge or split groups) first.")
        report = Reporter(callback, stop)
        report.plan(self._relearn_stages(), calibrated=True)  # every report carries the time left
        started = time.perf_counter()
        device = resolve_device(self.device)
        confidence = self.confidence_.astype(np.float64)
        confidence[cs.constrained_images()] = np.inf  # the person's answers are certain: always examples
        with limited_threads(self.n_jobs), scratch_folder() as scratch:
            source = reopen_images(self.root_, self.similarity_model_, self.embedding_model_, paths=self.paths_,
                                   labelled=self.true_labels_ is not None, follow_links=self.follow_links,
                                   cache=self.cache, scratch=scratch, device=device, report=report)
            sharpened = sharpen(
                self.embedding_model_, source, self.labels_.copy(), confidence, self._pass_options(),
                steps=self._relearn_steps(), device=device, report=report,
                adapted=self.embedding_model_, pass_label="relearn", message="Relearning from the answers",
                what="relearnt features", answers=cs.pair_matrix())
        if sharpened is None:
            self.stopped_ = True
            return self
        self.history_.extend(sharpened.result.history)
        self._adopt_pass(sharpened.result, sharpened.model)
        self._answers.add_relearning(cs.answers, self._snapshot())
        self.refit(cs)
        self.stopped_ = False
        self.timings_["relearn"] = round(time.perf_counter() - started, 3)
        self.stage_seconds_ = report.run_plan.measured()  # the next relearning is like this one
        return self

    def relearn_seconds(self) -> float | None:
        """About how many seconds :meth:`relearn` takes now, on this machine: its stages' priors scaled by the
        pace this run measured on each kind of stage (``stage_seconds_``, from the fit or the latest
        relearning), as its time left starts. None when this run cannot relearn (see :meth:`relearn`)."""
        if self.method != "graph" or getattr(self, "graph_", None) is None or getattr(self, "root_", None) is None:
            return None
        return sum(s.prior for s in self._relearn_stages())

    def _relearn_steps(self) -> int:
        """Self-training steps of a relearning: the ``relearn_steps`` setting, and no more than the run's own
        sharpening took (a run sharpened briefly, for speed, relearns as briefly)."""
        steps, run_steps = self.settings_["relearn_steps"], self.settings_["self_training_steps"]
        return min(steps, run_steps) if run_steps else steps

    def _relearn_stages(self) -> list:
        """The stages of a relearning with their priors (:func:`~l2c_explorer.planning.relearn_stages`)."""
        from .cache import resolve_cache_dir

        return relearn_stages(len(self.paths_), self.embedding_model_,
                              pixels_kept=resolve_cache_dir(self.cache) is not None, steps=self.steps,
                              relearn_steps=self._relearn_steps(), n_clusters=self.n_clusters_,
                              measured=getattr(self, "stage_seconds_", []))

    @property
    def relearnings_(self) -> list[int]:
        """How many answers each relearning still in effect learnt from (:meth:`relearn`), oldest first."""
        answers = getattr(self, "_answers", None)
        return [] if answers is None else answers.relearnings

    @property
    def k_before_answers_(self) -> int:
        """The number of clusters this run found, before any answer."""
        return int(self._answers.base["n_clusters"])

    def questions(self, n: int = 1, *, kinds: tuple[str, ...] = ("split", "merge", "member")) -> list:
        """The ``n`` most informative questions about the current clusters, best first
        (:func:`l2c_explorer.questions.next_questions`): pairs of images whose answer is not yet known."""
        from .questions import next_questions

        check_is_fitted(self, "graph_")
        if self.graph_ is None:
            raise InputError("Questions are chosen along the graph method's similarity graph; this run has none (the "
                             "paper's pipeline, or a run saved before the graph was kept with it).")
        scale, bias = self.pair_head_
        return next_questions(self.embedding_, self.graph_, self.labels_, self.probabilities_, self.constraints_,
                              scale=scale, bias=bias, n=n, kinds=kinds)

"""What the app does, without the page: start and read jobs, check folders, build maps, export.

:class:`Workbench` is shared by the Gradio page and the notebook API, and never imports gradio. It owns
the app's working folder (:class:`~l2c_explorer.app.folders.Workspace`): thumbnails, maps, per-run outputs and
user-trained models. Only sub-folders of that working folder are ever served to the browser.

Heavy modules (torch, the core estimators, umap) are imported inside methods, never at import time, so
the page can be served within seconds of the command.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import InputError, check_folder
from ..explore import ClusterSummary, cluster_summaries, map_2d, map_payload, selection_counts
from ..files import write_csv
from ..jobs import Job, JobRegistry, new_job_id
from ..names import group_names
from ..options import ADAPT, DISCOVER, TRAIN_SIMILARITY, RunSpec
from ..progress import Progress
from ..thumbnails import ThumbnailCache
from .folders import FolderReport, check_image_folder, count_classes, open_workspace
from .run_result import RunResult, run_result

logger = logging.getLogger(__name__)

GALLERY_LIMIT = 60


class _EitherSet:
    """Set when either of two events is (what ``get_many`` asks of its ``stop``)."""

    def __init__(self, *events: threading.Event):
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


# ---------------------------------------------------------------------------------------------------
# the workbench


class Workbench:
    """Everything the app can do, callable from a page, a notebook or a test.

    Parameters
    ----------
    work_dir : path, optional
        The app's working folder (default: :func:`default_work_dir`).
    models_dirs : list of path, optional
        Extra folders searched for similarity models, before the default ones.
    max_running : int
        Training jobs computing at the same time; later ones wait their turn.
    thumbnail_size : int
        Longest side of the thumbnails, in pixels.
    """

    def __init__(
        self,
        work_dir: str | os.PathLike | None = None,
        *,
        models_dirs: list[str | os.PathLike] | None = None,
        max_running: int = 1,
        thumbnail_size: int = 128,
    ):
        self.workspace = open_workspace(work_dir)
        self.extra_models_dirs = [Path(d).expanduser() for d in (models_dirs or [])]
        for d in self.extra_models_dirs:
            if not d.is_dir():
                raise InputError(f"Models folder not found: {d}")
        self.registry = JobRegistry(max_running=max_running)
        self.thumbs = ThumbnailCache(self.workspace.thumbnails, size=thumbnail_size)
        self._card_cache: dict[tuple[str, int], dict] = {}
        self._teach_lock = threading.Lock()

    # -- models -----------------------------------------------------------------------------------------

    def models_dirs(self) -> list[Path]:
        from ..similarity_model import default_models_dirs

        return [*self.extra_models_dirs, *default_models_dirs(), self.workspace.models]

    def models(self) -> dict[str, Path]:
        """Similarity model name -> file, from the user's folders, the shipped ``models/`` and the app's own."""
        from ..similarity_model import list_models

        return list_models(self.models_dirs())

    def model_card(self, name: str) -> dict:
        """The model card of a model found by name (or a file path)."""
        from ..similarity_model import SimilarityModel

        path = self.resolve_model(name)
        key = (str(path), path.stat().st_mtime_ns)
        if key not in self._card_cache:
            self._card_cache[key] = SimilarityModel.load(path).card
        return self._card_cache[key]

    def resolve_model(self, name: str) -> Path:
        """The file of a model given by name (looked up in :meth:`models_dirs`) or path."""
        from ..similarity_model import resolve_model_path

        return resolve_model_path(name, self.models_dirs())

    def default_model(self) -> str | None:
        models = self.models()
        if "omniglot" in models:
            return "omniglot"
        return next(iter(models), None)

    def warm_up(self) -> None:
        """Pay the one-off costs of a first run in advance: imports, the default model, torch's kernels.

        Runs a few steps of every stage on made-up data (nothing is written), so the first real run shows
        its first point within seconds. Meant for a background thread.
        """
        import numpy as np

        from ..clustering import L2CClusterer
        from ..similarity_model import load_similarity_model

        name = self.default_model()
        if name is not None:
            model = load_similarity_model(self.models()[name])
            rng = np.random.default_rng(0)
            images = [rng.integers(0, 256, (model.preprocessing.size,) * 2, dtype=np.uint8) for _ in range(32)]
            L2CClusterer(similarity=model, n_clusters=4, steps=3, self_training_steps=2).fit(images)

    @staticmethod
    def device_label(device: str = "auto") -> str:
        from ..device import describe_device, resolve_device

        return describe_device(resolve_device(device))

    # -- folders ----------------------------------------------------------------------------------------

    def check_folder(self, folder: str | os.PathLike, *, sample: int = 12) -> FolderReport:
        return check_image_folder(folder, self.thumbs, sample=sample)

    def model_advice(self, folder: str | os.PathLike, model: str | None) -> tuple[str | None, str]:
        """Whether the model suits the folder's images: (a better available model or None, a message or "")."""
        from ..data import find_images
        from ..similarity_model import load_similarity_model, model_fit_advice

        if not model:
            return None, ""
        files, _ = find_images(check_folder(folder))
        return model_fit_advice(load_similarity_model(self.resolve_model(model)), files, self.models_dirs())

    @staticmethod
    def require_images(folder: str | os.PathLike, *, what: str = "") -> Path:
        """The folder, resolved; an :class:`InputError` saying so plainly when it holds no image file."""
        from ..data import IMAGE_EXTENSIONS, find_images

        root = check_folder(folder, what=what)
        files, others = find_images(root)
        if not files:
            found = f" (only {len(others)} other file{'s' if len(others) != 1 else ''})" if others else ""
            kinds = ", ".join(sorted(e.lstrip(".").upper() for e in IMAGE_EXTENSIONS))
            raise InputError(f"{what + ': ' if what else ''}No images in {root}{found}: l2c-explorer looks for "
                             f"{kinds} files in the folder and all its sub-folders.")
        return root

    # -- jobs: discovery ----------------------------------------------------------------------------------

    def start_discovery(
        self,
        folder: str | os.PathLike,
        *,
        model: str = DISCOVER.defaults.similarity,
        labelled: bool = False,
        owner: str | None = None,
        make_map: bool = True,
        **options,
    ) -> Job:
        """Start finding the categories of ``folder`` in the background; returns the job at once.

        ``model`` is a similarity model's name (see :meth:`models`) or file; ``options`` are the clusterer's
        (:data:`~l2c_explorer.options.DISCOVER`; the defaults there for those not given). When it finishes
        (or is stopped after learning something), ``job.result`` is a :class:`RunResult` and a follow-up job
        prepares the map (``job.extra("map")``) and the cluster summaries.
        """
        root = self.require_images(folder)
        model_path = self.resolve_model(model)
        options = self._checked(DISCOVER, options, given_elsewhere=("similarity",))
        params = dict(folder=str(root), model=str(model), labelled=bool(labelled), **options)
        k_true = count_classes(root) if labelled else None
        if k_true:
            params["k_true"] = k_true
        job_id = new_job_id()

        def target(callback, stop):
            from ..clustering import L2CClusterer
            from ..results import write_discovery_results

            clusterer = L2CClusterer(similarity=str(model_path), **options)
            clusterer.fit(root, callback=callback, stop=stop, labelled=labelled)  # StoppedError if nothing learnt
            return self._written(job_id, clusterer, write_discovery_results, labelled, callback, stop)

        job = self.registry.submit("discover", target, owner=owner, params=params, job_id=job_id,
                                   on_done=self._follow_up if make_map else None)
        self._start_thumbnails(root, owner, run=job)
        return job

    def _written(self, job_id: str, fitted, write, score: bool, callback, stop) -> RunResult:
        """Write a fitted run's assignments and summary into its folder (``write``: the results writer of its
        kind); return it as the explorer sees it."""
        callback(Progress("finishing", message="Writing the results"))
        run_dir = self.workspace.run_dir(job_id)
        started = time.perf_counter()
        summary = write(fitted, run_dir, score=score)
        summary["stopped_early"] = stop.is_set()
        summary["writing_seconds"] = time.perf_counter() - started  # the prior of a relearning's own writing
        return run_result(fitted, run_dir, summary, stop.is_set())

    def _checked(self, spec: RunSpec, options: dict, *, given_elsewhere: tuple[str, ...] = ()) -> dict:
        """Every option of ``spec`` (the given ones, checked, and the defaults), before a run is queued."""
        for name in given_elsewhere:
            if name in options:
                raise InputError(f"{name!r} is not an option here; it has its own argument.")
        spec.validate(options)
        self.device_label(options.get("device", spec.defaults.device))  # "cuda" without a GPU: say so now
        filled = {**spec.default_dict(), **options}
        return {name: dict(value) if isinstance(value, Mapping) else value  # the jitter ranges as a plain dict
                for name, value in filled.items() if name not in given_elsewhere}

    # -- jobs: domain adaptation -------------------------------------------------------------------------

    @staticmethod
    def adaptation_available() -> bool:
        """Whether the package offers ``DomainAdapter`` (the "same categories, new domain" mode)."""
        try:
            from ..adaptation import DomainAdapter  # noqa: F401
        except Exception:
            return False
        return True

    def start_adaptation(
        self,
        source: str | os.PathLike,
        target_folder: str | os.PathLike,
        *,
        labelled: bool = False,
        owner: str | None = None,
        make_map: bool = True,
        **options,
    ) -> Job:
        """Start predicting the source folder's classes in the target folder; returns the job at once.

        ``options`` are the adapter's (:data:`~l2c_explorer.options.ADAPT`).
        """
        src = check_folder(source, what="Source folder")
        tgt = check_folder(target_folder, what="Target folder")
        if src == tgt:
            raise InputError("The labelled source folder and the target folder must be different folders.")
        if not self.adaptation_available():
            raise InputError("This installation does not include domain adaptation (l2c_explorer.adaptation).")
        options = self._checked(ADAPT, options)
        params = dict(source=str(src), folder=str(tgt), labelled=bool(labelled), **options)
        job_id = new_job_id()

        def target(callback, stop):
            from ..adaptation import DomainAdapter
            from ..results import write_adaptation_results

            adapter = DomainAdapter(**options)
            adapter.fit(src, tgt, callback=callback, stop=stop, labelled_target=labelled)  # likewise
            return self._written(job_id, adapter, write_adaptation_results, labelled, callback, stop)

        job = self.registry.submit("adapt", target, owner=owner, params=params, job_id=job_id,
                                   on_done=self._follow_up if make_map else None,
                                   partial_stages=("similarity", "training"))
        self._start_thumbnails(tgt, owner, run=job)
        return job

    # -- jobs: similarity model -----------------------------------------------------------------------------

    def start_similarity_training(
        self,
        folder: str | os.PathLike,
        *,
        name: str,
        recipe: str = "default",
        owner: str | None = None,
        **options,
    ) -> Job:
        """Start learning a similarity model from a labelled folder; it is saved in the app's models folder as
        ``name``. ``options`` are the learner's (:data:`~l2c_explorer.options.TRAIN_SIMILARITY`), over the
        named ``recipe``'s values (:mod:`l2c_explorer.recipes`; "pretrained-top" for photographs)."""
        from ..recipes import similarity_recipe
        from ..results import safe_folder_name

        root = check_folder(folder)
        clean = safe_folder_name(name)
        if not clean:
            raise InputError("Give the new model a name (letters, digits, '-' or '_').")
        options = self._checked(TRAIN_SIMILARITY, {**similarity_recipe(recipe), **options}, given_elsewhere=("name",))
        params = dict(folder=str(root), name=clean, **options)

        def target(callback, stop):
            from ..similarity_learner import SimilarityLearner

            learner = SimilarityLearner(name=clean, **options)
            learner.fit(root, callback=callback, stop=stop)
            path = learner.model_.save(self.workspace.models / clean)
            return {"name": clean, "path": path, "card": learner.model_.card, "learner": learner}

        return self.registry.submit("similarity", target, owner=owner, params=params)

    # -- results made elsewhere ------------------------------------------------------------------------------

    def open_result(self, fitted, *, owner: str | None = None) -> Job:
        """Explore a result made outside the app: a fitted clusterer or adapter, or a :class:`RunResult`.

        Returns a finished job whose map and summaries are being prepared, like a run started here (the
        page shows it at ``?job=<id>``).
        """
        job_id = new_job_id()
        run_dir = self.workspace.run_dir(job_id)
        if isinstance(fitted, RunResult):
            result = fitted
        elif hasattr(fitted, "classes_"):
            result = run_result(fitted, run_dir, fitted.summary(), False)
        elif hasattr(fitted, "n_clusters_"):
            from ..results import write_discovery_results

            score = getattr(fitted, "true_labels_", None) is not None
            result = run_result(fitted, run_dir, write_discovery_results(fitted, run_dir, score=score), False)
        else:
            raise InputError("Give a fitted L2CClusterer or DomainAdapter (call .fit first).")
        kind = "adapt" if result.kind == "adapt" else "discover"
        job = self.registry.submit(kind, lambda callback, stop: result, owner=owner, job_id=job_id, exclusive=False,
                                   params={"folder": str(result.root)}, on_done=self._follow_up)
        self._start_thumbnails(Path(result.root), owner)
        return job

    # -- follow-ups: thumbnails and the map -----------------------------------------------------------------

    def _start_thumbnails(self, root: Path, owner: str | None, run: Job | None = None) -> Job:
        """Thumbnails of every image of ``root``, in the background; they stop when ``run`` is stopped (a
        stopped run's map will not be drawn, and its folder may have been a mistake)."""
        for job in self.registry.jobs(kind="thumbnails"):
            if not job.finished and job.params.get("folder") == str(root):
                return job  # already being made

        def target(callback, stop):
            from ..data import find_images

            files, _ = find_images(root)
            ends = stop if run is None else _EitherSet(stop, run.stop_event)
            self.thumbs.get_many(files, workers=1, stop=ends,
                                 progress=lambda d, t: callback(Progress("thumbnails", d, t)))
            return len(files)

        return self.registry.submit("thumbnails", target, owner=owner, params={"folder": str(root)},
                                    exclusive=False, partial_stages=())

    def _follow_up(self, job: Job) -> None:
        """After a run with a result: cluster summaries at once, then a map job (PCA preview, then UMAP)."""
        result: RunResult | None = job.result
        if result is None:
            return
        try:
            keys = self.thumbs.keys([result.image_path(i) for i in range(len(result.paths))])
            summaries = cluster_summaries(result.embedding, result.labels, result.confidence, truth=result.truth)
        except Exception as exc:  # the results stay usable (export, CSV) without the explorer
            logger.exception("cannot prepare the explorer for job %s", job.id)
            job.publish(map_status=f"The map could not be prepared ({exc}).", map_final=True)
            return
        job.publish(clusters=summaries, thumb_keys=keys, map_status="Preparing the map")

        def target(callback, stop):
            self._publish_map(job, map_2d(result.embedding, method="pca"), "pca", preview=True)
            callback(Progress("map", message="Computing the UMAP map"))
            coords = map_2d(result.embedding, method="umap", cache_dir=self.workspace.maps,
                            random_state=int(job.params.get("random_state") or 0))
            self._publish_map(job, coords, "umap", preview=False)
            return coords

        def done(map_job: Job) -> None:
            if map_job.error:
                job.publish(map_status=f"The UMAP map could not be computed ({map_job.error}); showing PCA.",
                            map_final=True)

        self.registry.submit("map", target, owner=job.owner, params={"of": job.id}, exclusive=False,
                             partial_stages=(), on_done=done)

    def _publish_map(self, job: Job, coords: np.ndarray, method: str, *, preview: bool) -> None:
        result: RunResult = job.result
        payload = map_payload(
            coords, result.labels, result.confidence, paths=result.paths, thumbs=job.extra("thumb_keys"),
            truth=result.truth, class_names=result.names, method=method, preview=preview,
        )
        status = "Quick preview (PCA); the UMAP map is being computed" if preview else "UMAP map ready"
        job.publish(map=payload, coords=coords, map_method=method, map_status=status,
                    map_final=not preview or bool(job.extra("map_final")))

    # -- reading results --------------------------------------------------------------------------------

    def job(self, job_id: str | None, kind: str | None = None) -> Job:
        job = self.registry.get(job_id)
        if job is None or (kind is not None and job.kind != kind):
            raise InputError("No such run (it may have been forgotten after a restart); start a new one.")
        return job

    def result(self, job_id: str | None = None, *, kind: str | None = None) -> RunResult:
        """The :class:`RunResult` of a run (default: the most recent one with a result)."""
        if job_id:
            job = self.job(job_id)
        else:
            kinds = (kind,) if kind else ("discover", "adapt")
            done = [j for j in self.registry.jobs() if j.kind in kinds and j.result is not None]
            if not done:
                raise InputError("No finished run yet.")
            job = done[-1]
        if not isinstance(job.result, RunResult):
            raise InputError("This run has no result (yet): it is still running, was stopped early, or failed.")
        return job.result

    def teacher(self, job_id: str):
        """The :class:`~l2c_explorer.app.teaching.Teacher` of a finished discovery: answers that re-cluster it."""
        from .teaching import Teacher

        job = self.job(job_id, "discover")
        self.result(job_id)
        with self._teach_lock:
            teacher = job.extra("teacher")
            if teacher is None:
                teacher = Teacher(self, job)
                job.publish(teacher=teacher)
        return teacher

    def clusters(self, job_id: str) -> list[ClusterSummary]:
        self.result(job_id)
        return self.job(job_id).extra("clusters") or []

    def thumbnail(self, result: RunResult, i: int) -> Path | None:
        return self.thumbs.get(result.image_path(i))

    def gallery(self, result: RunResult, indices, *, limit: int = GALLERY_LIMIT,
                with_group: bool = True) -> list[tuple[str, str]]:
        """(thumbnail file, caption) for images by index, made now if needed; unreadable images left out.

        Captions read "group · confidence · path" (without the group for a one-group gallery): what matters
        comes first, since a gallery shortens long captions from the end.
        """
        items = []
        for i in list(indices)[:limit]:
            thumb = self.thumbnail(result, int(i))
            if thumb is not None:
                caption = f"{result.confidence[i]:.2f} · {result.paths[i]}"
                if with_group:
                    caption = f"{result.names[result.labels[i]]} · {caption}"
                items.append((str(thumb), caption))
        return items

    def selection(self, job_id: str, indices) -> dict:
        """A selection of images on the map: how many, from which clusters, and a gallery."""
        result = self.result(job_id)
        n = len(result.paths)
        clean = sorted({int(i) for i in indices if 0 <= int(i) < n})
        return {
            "indices": clean,
            "counts": [(result.names[c], k) for c, k in selection_counts(result.labels, clean)],
            "gallery": self.gallery(result, clean),
        }

    def write_selection_csv(self, job_id: str, indices) -> Path:
        """The selected images as a CSV file (in the run's folder), for download."""
        result = self.result(job_id)
        clean = sorted({int(i) for i in indices if 0 <= int(i) < len(result.paths)})
        rows = [[result.paths[i], int(result.labels[i]), result.names[result.labels[i]],
                 round(float(result.confidence[i]), 4)] for i in clean]
        return write_csv(result.run_dir / "selection.csv", ["path", "label", "name", "confidence"], rows)

    # -- writing results --------------------------------------------------------------------------------

    def export(self, job_id: str, out: str | os.PathLike, *, mode: str = "copy", overwrite: bool = False) -> dict:
        """Copy (or link) the images into ``out/<group name>/`` and write the results files there.

        The analysed folder is never written to; an output folder inside it is refused. A folder that
        already holds files is refused too (:class:`~l2c_explorer.errors.FolderNotEmptyError`) unless
        ``overwrite``: then an earlier export there is replaced.
        """
        from ..results import check_output_folder, export_cluster_folders

        result = self.result(job_id)
        if out is None or not str(out).strip():
            raise InputError("Choose an output folder for the export.")
        out_dir = check_output_folder(out, result.root)
        extra = [result.run_dir / f for f in ("assignments.csv", "summary.json", "answers.csv")
                 if (result.run_dir / f).exists()]
        counts = export_cluster_folders(result.root, result.paths, result.labels, out_dir, mode=mode,
                                        names=dict(enumerate(result.names)), overwrite=overwrite, extra_files=extra)
        return {"folder": out_dir, "counts": counts, "n_files": int(sum(counts.values()))}

    def rename_group(self, job_id: str, group: int, name: str) -> RunResult:
        """Give a group of a discovery its own name: shown on the page, used in exports and ``assignments.csv``.

        An empty name gives back the default one. Returns the result with its new names.
        """
        from ..results import write_discovery_results

        job = self.job(job_id)
        result = self.result(job_id)
        if result.kind != "discover":
            raise InputError("Only the groups of a discovery can be renamed (categories keep their names).")
        group = int(group)
        if not 0 <= group < len(result.names):
            raise InputError(f"There is no group {group} in this run.")
        name = " ".join(str(name or "").split())[:80] or group_names(len(result.names))[group]
        if any(other.lower() == name.lower() for i, other in enumerate(result.names) if i != group):
            raise InputError(f"Another group is already called {name!r}.")
        result.names[group] = name
        write_discovery_results(result.estimator, result.run_dir, score=result.metrics is not None,
                                names=list(result.names), numbers=result.numbers)
        if job.extra("coords") is not None:  # the map's legend and hover cards show the new name
            self._publish_map(job, job.extra("coords"), job.extra("map_method") or "umap",
                              preview=bool(job.extra("map", {}).get("preview")))
        return result
    def assign_images(self, job_id: str, folder: str | os.PathLike, *, device: str | None = None,
                      owner: str | None = None, timeout: float | None = None) -> dict:
        """Put the images of a new folder into the categories of a finished discovery, without clustering again.

        The run's fitted clusterer does the work (:meth:`~l2c_explorer.clustering.L2CClusterer.assign`); its
        ``assignments.csv`` (path, cluster, confidence, unlike_any) and ``summary.json`` go into a new
        sub-folder of the run's folder. Returns the summary, the CSV path, and galleries of the images that
        are unlike every category and of a sample of the others.
        """
        from ..data import check_folder

        result = self.result(job_id, kind="discover")
        clusterer = result.estimator
        if clusterer is None or not hasattr(clusterer, "embedding_model_"):
            from ..runs import load_run

            clusterer = load_run(result.run_dir)
        root = check_folder(folder)
        out_dir = result.run_dir / f"added-{new_job_id()[:8]}"

        def target(callback, stop):
            from ..results import check_output_folder, write_assignment_results

            started = time.perf_counter()
            assigned = clusterer.assign(root, device=device, callback=callback)
            out = check_output_folder(out_dir, root)
            summary = write_assignment_results(clusterer, assigned, out, run_dir=result.run_dir,
                                               seconds=time.perf_counter() - started, numbers=result.numbers)
            return {"summary": summary, "assigned": assigned, "folder": out}

        job = self.registry.submit("assign", target, owner=owner, params={"of": job_id, "folder": str(root)},
                                   partial_stages=())
        if not job.wait(timeout):
            raise InputError("Assigning the new images is taking long; it goes on in the background.")
        if job.result is None:
            raise InputError(job.error or "The new images could not be assigned.")
        done = job.result
        assigned = done["assigned"]
        flagged = [i for i, u in enumerate(assigned["unlike_any"]) if u]
        kept = [i for i, u in enumerate(assigned["unlike_any"]) if not u]

        def gallery(indices):
            items = []
            for i in indices[:GALLERY_LIMIT]:
                thumb = self.thumbs.get(root / assigned["paths"][i])
                label = int(assigned["labels"][i] if result.numbers is None else result.numbers[assigned["labels"][i]])
                name = result.names[label] if label < len(result.names) else f"cluster {label}"
                if thumb is not None:
                    items.append((str(thumb), f"{name} · {assigned['confidence'][i]:.2f} · {assigned['paths'][i]}"))
            return items

        return {"summary": done["summary"], "csv": done["folder"] / "assignments.csv", "folder": done["folder"],
                "unlike": gallery(flagged), "assigned": gallery(kept)}

    def save_model(self, job_id: str, out: str | os.PathLike | None = None) -> Path:
        """Save the trained clustering model (in the run's folder, or in ``out`` when given)."""
        result = self.result(job_id)
        if not hasattr(result.estimator, "save"):
            raise InputError("This kind of run cannot be saved as a model.")
        if out is not None and str(out).strip():
            from ..results import check_output_folder

            folder = check_output_folder(out, result.root)
        else:
            folder = result.run_dir
        return Path(result.estimator.save(folder / "clustering_model"))

    def close(self, wait: float = 2.0) -> None:
        """Stop every job (waiting up to ``wait`` seconds for them)."""
        self.registry.stop_all(wait=wait)

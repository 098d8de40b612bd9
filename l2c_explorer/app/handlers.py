"""What happens when the page is used: the event handlers, plain methods over a :class:`Workbench`.

Long runs live in worker threads owned by the workbench's job registry; a handler starts one, and the page
then only reads it with a :class:`gradio.Timer` (once a second). Problems with the user's input become a
message next to that input (:func:`views.problem`). The widgets are in :mod:`l2c_explorer.app.layout`; which handler
answers which event is set in :mod:`l2c_explorer.app.ui`.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from ..errors import FolderNotEmptyError, check_folder
from ..options import ASSIGN, DISCOVER
from . import views
from .folders import list_subfolders
from .layout import ExplorePanel, Page, RunPanel
from .problems import PROBLEMS, plain
from .teach_handlers import TeachHandlers
from .workbench import GALLERY_LIMIT, Workbench

STOP_GRACE = 1.5  # seconds a stage that cannot stop mid-way is given before the run is declared stopped
# "Try the demo" buttons: the shipped model and the sample folder (in demo_data/) of each. A demo runs with the
# default settings (those the help text recommends).
DEMOS = {"symbols": ("omniglot", "omniglot_keble"), "photos": ("photos", "photos_everyday")}


# The export line's request for a go-ahead, shown with the button it names (Handlers.export).
REPLACE_ASK = "Press 'Replace the earlier export in this folder' below to replace it, or choose another folder."

def _fail(exc: Exception):
    """A problem with a call of the API only (no widget shows its answer): an error for the client."""
    raise gr.Error(plain(exc), print_exception=False) from None


def _has_problem(shown) -> bool:
    """Whether a message slot shows a problem (see :func:`views.problem`) that a success should clear."""
    return isinstance(shown, str) and "l2c-problem" in shown


class Handlers(TeachHandlers):
    """The page's event handlers for ``bench``; ``page`` gives the widgets some handlers update by name.

    A problem with what the user gave is never raised (Gradio would put red "Error" badges over every
    output of the event and a pop-up that fades): it is shown next to the input that caused it
    (:func:`views.problem`), and it stays there until it is fixed.
    """

    def __init__(self, bench: Workbench, page: Page, *, thumb_prefix: str):
        self.bench = bench
        self.page = page
        self.thumb_prefix = thumb_prefix

    def on_load(self, request: gr.Request):
        """Fill the model list and the device badge; reconnect to the runs named in the URL, with the form as
        it was for them."""
        p = self.page
        models = self.bench.models()
        choice = self.bench.default_model()
        try:
            badge = views.device_badge_html(self.bench.device_label("auto"))
        except Exception as exc:  # a broken GPU driver must not break the page
            badge = f'<span class="l2c-badge cpu">Device: unknown ({views.esc(exc)})</span>'
        query = dict(request.query_params) if request is not None else {}
        out = {p.model: gr.update(choices=list(models), value=choice), p.card: self._card_text(choice), p.badge: badge}
        out.update(zip((p.browse_at, p.subfolders), self.browse(str(p.browse_start), problem_to=None)))
        for param, kind, run in (("job", "discover", p.run), ("train", "similarity", p.spn),
                                 ("adapt", "adapt", p.adapt_run)):
            job = self.bench.registry.get(query.get(param))
            if job is None or job.kind != kind:
                continue
            out.update({run.job: job.id, run.timer: gr.Timer(active=True), run.seen: {}})
            if kind == "discover":
                out.update(self._discover_form(job.params, models))
            elif kind == "adapt":
                out.update(self._adapt_form(job.params))
        if not self.bench.adaptation_available():
            out[p.adapt_intro] = ("**Not available in this installation**: the domain adaptation module "
                                  "(`l2c_explorer.adaptation`) is missing.")
        if self.bench.registry.get(query.get("adapt")) and not query.get("job"):  # a reloaded "new domain" run
            out[p.tabs] = gr.Tabs(selected="adapt")
        return out

    def _discover_form(self, params: dict, models) -> dict:
        """The discovery form as it was when the run started (a reload shows the run's own settings)."""
        p = self.page
        known = params.get("n_clusters") is not None
        form = {p.folder_tb: params.get("folder", gr.update()), p.labelled: bool(params.get("labelled")),
                p.k_mode: "known" if known else "estimate",
                p.k_value: gr.update(visible=known, **({"value": params["n_clusters"]} if known else {})),
                p.sharpen: params.get("self_training_steps") != 0}  # None: the model's own setting (on)
        for widget, name in ((p.max_k, "max_clusters"), (p.loss, "loss"), (p.steps, "steps"), (p.device, "device")):
            if name in params:
                form[widget] = params[name]
        if params.get("model") in models:
            form[p.model] = gr.update(choices=list(models), value=params["model"])
            form[p.card] = self._card_text(params["model"])
        return form

    def _adapt_form(self, params: dict) -> dict:
        p = self.page
        pairs = ((p.adapt_source, "source"), (p.adapt_target, "folder"), (p.adapt_method, "method"),
                 (p.adapt_labelled, "labelled"), (p.adapt_epochs, "epochs"), (p.adapt_device, "device"))
        return {widget: params[name] for widget, name in pairs if name in params}

    def _card_text(self, name: str | None) -> str:
        if not name:
            return ("No similarity model found. Train one below (open *Train a new similarity model*), or put a "
                    "`.safetensors` model file in a models folder (`--models-dir`).")
        try:
            return views.model_card_markdown(name, self.bench.model_card(name))
        except PROBLEMS as exc:
            return views.problem(f"This model cannot be used: {plain(exc)}")

    def refresh_models(self, current: str | None):
        models = self.bench.models()
        value = current if current in models else self.bench.default_model()
        return gr.update(choices=list(models), value=value), self._card_text(value)

    def show_card(self, name: str | None) -> str:
        return self._card_text(name)

    def fill_demo(self, kind: str = "symbols"):
        """The demo's settings: ``kind`` "symbols" (an unseen Omniglot alphabet) or "photos"; the shipped model,
        the sample folder, K estimated, the default training length."""
        p = self.page
        wanted, folder = DEMOS[kind]
        folder = p.demos.get(folder)
        if folder is None:
            return {p.run.message: views.problem("The sample folders (demo_data/) are not available in this "
                                                 "installation: give a folder of your own in step 2.")}
        models = self.bench.models()
        model = wanted if wanted in models else self.bench.default_model()
        if model is not None and model != wanted:
            gr.Warning(f"The shipped `{wanted}` model was not found; using another model.")
        if model is None:
            return {p.run.message: views.problem("No similarity model is available: train one first (step 1).")}
        return {p.model: gr.update(value=model), p.card: self._card_text(model), p.folder_tb: str(folder),
                p.labelled: True, p.k_mode: "estimate", p.k_value: gr.update(visible=False),
                p.steps: DISCOVER.defaults.steps, p.run.message: ""}

    # -- folders ----------------------------------------------------------------------------------------

    def check_folder(self, folder: str, model: str | None = None):
        """Count and sample the folder; when the chosen model does not suit its images, switch to one that does."""
        p = self.page
        try:
            report = self.bench.check_folder(folder)
            better, message = self.bench.model_advice(report.folder, model)
        except PROBLEMS as exc:
            return {p.folder_md: views.problem(plain(exc)), p.sample: None,
                    p.folder_skipped: gr.update(value=[], visible=False), p.fit_note: ""}
        skipped = [[f, why] for f, why in report.skipped[:500]]
        out = {p.folder_md: views.folder_markdown(report), p.sample: [(str(t), rel) for t, rel in report.sample],
               p.folder_skipped: gr.update(value=skipped, visible=bool(skipped)),
               p.labelled: self._labelled_box(report),
               p.folder_tb: str(report.folder), p.fit_note: views.fit_note_markdown(message)}
        if better is not None:
            out.update({p.model: gr.update(value=better), p.card: self._card_text(better),
                        p.fit_note: views.fit_note_markdown(f"{message} It has been chosen for you in step 1.")})
        return out

    def fit_note(self, folder: str, model: str | None) -> str:
        """The model-fit note after the user picked a model by hand (nothing is switched then)."""
        try:
            _, message = self.bench.model_advice(folder, model)
        except PROBLEMS:  # no usable folder yet: the folder step says why
            return ""
        return views.fit_note_markdown(message)

    def _labelled_box(self, report):
        """The "sub-folder names are the true categories" box for a folder just checked: ticked for a sample
        folder, unticked where the names cannot be categories (a tick left from the demo would score a folder
        against nothing), left as the person set it otherwise."""
        if not report.looks_labelled:
            return gr.update(value=False)
        return gr.update(value=True) if self._is_demo(report.folder) else gr.update()

    def _is_demo(self, folder: Path) -> bool:
        return any(Path(folder) == Path(p).resolve() for p in self.page.demos.values())

    def browse(self, folder: str, problem_to="browse_md"):
        """(where, its sub-folders, a message): the sub-folders of ``folder`` (a problem when it is not one)."""
        try:
            path = check_folder(folder or Path.home())
            found = (str(path), gr.update(choices=list_subfolders(path), value=None))
        except PROBLEMS as exc:
            message = views.problem(plain(exc))
            return (gr.update(), gr.update(), message) if problem_to else (gr.update(), gr.update())
        return (*found, "") if problem_to else found

    def browse_open(self, folder: str, at: str):
        """Opening "Browse this computer": look beside the folder in the box, when it is one."""
        target = Path(folder or "").expanduser()
        if str(folder or "").strip() and target.is_dir():
            return self.browse(str(target.resolve().parent))
        return self.browse(at)

    def browse_into(self, folder: str, name: str | None):
        if not name:
            return gr.update(), gr.update(), gr.update()
        return self.browse(str(Path(folder) / name))

    def browse_up(self, folder: str):
        return self.browse(str(Path(folder or Path.home()).expanduser().resolve().parent))

    # -- runs -------------------------------------------------------------------------------------------

    def _reset_outputs(self, run: RunPanel, e: ExplorePanel, job_id: str, progress: str, series) -> dict:
        out = {run.job: job_id, run.message: "", run.progress: progress, run.curves: views.curves_json([], series),
               run.timer: gr.Timer(active=True), run.seen: {}, e.map: "",
               e.results_md: "Results appear here when the run has finished.",
               e.cluster: gr.update(choices=[], value=None), e.clusters: None, e.typical: None, e.uncertain: None,
               e.selection_gallery: None,
               e.selection_md: "Select images on the map with the lasso or box tool (in the map's toolbar) to see "
                               "them here.",
               e.assignments: gr.update(value=None, interactive=False), e.cluster_md: ""}
        out.update(zip((e.export_md, e.replace_btn), self._export_said("")))
        if e.rename is not None:
            out.update({e.rename: gr.update(value="", interactive=False), e.rename_btn: gr.update(interactive=False)})
        return out

    def _replace(self, previous: str | None, started: str) -> None:
        """A new run in a tab replaces the tab's previous one (the page asked first): stop it if it still runs."""
        job = self.bench.registry.get(previous)
        if job is not None and job.id != started and not job.finished:
            job.stop(grace=STOP_GRACE)

    def start_discovery(self, folder, model, k_mode, k_value, max_k, loss, steps, device, labelled,
                        sharpen: bool = True, previous: str | None = None, folder_shown: str | None = None):
        p = self.page
        run = p.run
        if not model:
            return {run.message: views.problem("Choose a similarity model first (step 1).")}
        try:
            self.bench.require_images(folder)
        except PROBLEMS as exc:  # said next to the folder box, and where Start was pressed
            return {p.folder_md: views.problem(plain(exc)), run.message: views.problem(f"Cannot start: {plain(exc)}")}
        try:
            options = dict(max_clusters=int(max_k), loss=loss, device=device,
                           self_training_steps=DISCOVER.defaults.self_training_steps if sharpen else 0)
            if k_mode == "known":
                if k_value is None:
                    return {run.message: views.problem("Give the number of categories, or let the app estimate it.")}
                options["n_clusters"] = int(k_value)
            if steps:
                options["steps"] = int(steps)
        except (TypeError, ValueError):
            return {run.message: views.problem("The number of categories, the most categories and the training "
                                               "steps are whole numbers.")}
        try:
            job = self.bench.start_discovery(folder, model=model, labelled=bool(labelled), **options)
        except PROBLEMS as exc:
            return {run.message: views.problem(plain(exc))}
        self._replace(previous, job.id)
        out = self._reset_outputs(run, p.explore, job.id, views.progress_html(job.snapshot(), what="run"),
                                  views.DISCOVER_SERIES)
        if _has_problem(folder_shown):
            out[p.folder_md] = ""
        return out

    def start_adaptation(self, source, target, method, epochs, device, labelled, previous: str | None = None):
        run = self.page.adapt_run
        options = dict(method=method, device=device)
        if epochs:
            options["epochs"] = int(epochs)
        try:
            for folder, what in ((source, "Source folder"), (target, "Target folder")):
                self.bench.require_images(folder, what=what)
            job = self.bench.start_adaptation(source, target, labelled=bool(labelled), **options)
        except PROBLEMS as exc:
            return {run.message: views.problem(plain(exc))}
        self._replace(previous, job.id)
        return self._reset_outputs(run, self.page.adapt_explore, job.id,
                                   views.progress_html(job.snapshot(), what="run"), views.ADAPT_SERIES)

    def start_similarity(self, folder, name, epochs, class_depth, kind, device, previous: str | None = None):
        run = self.page.spn
        try:
            self.bench.require_images(folder)
            job = self.bench.start_similarity_training(folder, name=name, recipe=kind or "default",
                                                       epochs=float(epochs), class_depth=int(class_depth),
                                                       device=device)
        except PROBLEMS as exc:
            return {run.message: views.problem(plain(exc))}
        self._replace(previous, job.id)
        return {run.job: job.id, run.message: "", run.progress: views.progress_html(job.snapshot(), what="training"),
                run.curves: views.curves_json([], views.SIMILARITY_SERIES, x="epoch", x_title="epoch"),
                run.timer: gr.Timer(active=True), run.seen: {}, self.page.spn_result: ""}

    def stop_job(self, job_id: str):
        job = self.bench.registry.get(job_id)
        if job is None:
            return "<div class='l2c-progress'>Nothing is running.</div>"
        job.stop(grace=STOP_GRACE)
        job.wait(0.5)  # a training step ends within this: the answer usually already says "stopped"
        return views.progress_html(job.snapshot())

    def poll_similarity(self, job_id: str, seen: dict):
        job = self.bench.registry.get(job_id)
        if job is None:
            return {self.page.spn.timer: gr.Timer(active=False)}
        seen = dict(seen or {})
        snap = job.snapshot()
        out = {self.page.spn.progress: views.progress_html(snap, what="training")}
        if snap.version != seen.get("curves"):
            points, version = job.metrics.read()
            out[self.page.spn.curves] = views.curves_json(points, views.SIMILARITY_SERIES, x="epoch", x_title="epoch")
            seen["curves"] = version
        if job.finished:
            out[self.page.spn.timer] = gr.Timer(active=False)
            if job.result is not None and seen.get("result") != job.id:
                res = job.result
                seen["result"] = job.id
                out[self.page.spn_result] = (f"Saved as **{res['name']}** (`{res['path']}`); it is now selected in the "
                                        "list above.\n\n" + views.model_card_markdown(res["name"], res["card"]))
                out[self.page.model] = gr.update(choices=list(self.bench.models()), value=res["name"])
                out[self.page.card] = self._card_text(res["name"])
        out[self.page.spn.seen] = seen
        return out

    def poller(self, kind: str, run: RunPanel, e: ExplorePanel):
        series = views.DISCOVER_SERIES if kind == "discover" else views.ADAPT_SERIES

        def poll(job_id: str, seen: dict):
            job = self.bench.registry.get(job_id)
            if job is None:
                return {run.timer: gr.Timer(active=False),
                        run.progress: "<div class='l2c-progress'>This run is no longer known (the app was "
                                      "restarted?). Start a new one.</div>"}
            seen = dict(seen or {})
            snap = job.snapshot()
            out = {run.progress: views.progress_html(snap)}
            spectrum = job.extra("spectrum")
            drawn = (snap.version, id(spectrum))
            if list(drawn) != seen.get("curves"):  # new points, or the spectrum K was chosen from
                points, _ = job.metrics.read()
                out[run.curves] = views.curves_json(points, series, spectrum=spectrum,
                                                    k_true=job.params.get("k_true"))
                seen["curves"] = list(drawn)
            if job.finished:
                result = job.result
                # the groups as taught so far: a page reloaded during a relearning shows its groups when it ends
                teacher = job.extra("teacher")
                relearning = teacher is not None and (teacher.relearning or teacher.relearn_pending)
                drawn_result = f"{job.id}:{job.extra('teach_version', 0)}"
                if result is not None and seen.get("result") != drawn_result:
                    seen["result"] = drawn_result
                    out.update(self._result_outputs(result, e))
                if (result is not None and getattr(e, "teach", None) is not None and result.kind == "discover"
                        and job.extra("clusters") is not None and not relearning and seen.get("asked") != job.id):
                    seen["asked"] = job.id  # the first question, once the run is done: nothing to click first
                    out.update(self._first_question(job.id, e.teach))
                if result is not None and job.extras_version != seen.get("extras"):
                    seen["extras"] = job.extras_version
                    if job.extra("clusters") is not None and seen.get("clusters") != drawn_result:
                        seen["clusters"] = drawn_result
                        out.update(self._groups_outputs(job, result, e, kind))
                    payload = job.extra("map")
                    if payload is not None and seen.get("map") != id(payload):
                        seen["map"] = id(payload)
                        out[e.map] = self._map_json(payload)
                if relearning:
                    out[run.progress] = views.relearning_html(teacher.progress)
                elif result is None or job.extra("map_final"):
                    out[run.timer] = gr.Timer(active=False)
            out[run.seen] = seen
            return out

        return poll

    def _result_outputs(self, result, e: ExplorePanel) -> dict:
        out = {e.results_md: views.results_markdown(result),
               e.skipped: gr.update(value=[[f, r] for f, r in result.skipped[:1000]], visible=bool(result.skipped))}
        csv_path = result.run_dir / "assignments.csv"
        out[e.assignments] = gr.update(value=str(csv_path) if csv_path.exists() else None,
                                       interactive=csv_path.exists())
        if e.save_btn is not None:
            out[e.save_btn] = gr.update(interactive=True)
        return out

    def _groups_outputs(self, job, result, e: ExplorePanel, kind: str, selected=None) -> dict:
        """The table of groups and the group picker (``selected`` stays picked)."""
        clusters = job.extra("clusters") or []
        header = [("group" if kind == "discover" else "category"), "images", "mean confidence"]
        if result.truth is not None:
            header += ["main true category", "share of it"]
        return {e.clusters: gr.update(value=views.cluster_rows(clusters, result.names), headers=header),
                e.cluster: gr.update(choices=views.cluster_choices(clusters, result.names), value=selected)}

    def _map_json(self, payload: dict) -> str:
        return json.dumps({**payload, "thumb_prefix": self.thumb_prefix}, separators=(",", ":"))

    # -- explore ----------------------------------------------------------------------------------------

    def select_points(self, job_id: str, indices: list[int]) -> dict:
        """The images selected on the map: count per group, and (thumbnail, caption) pairs."""
        try:
            sel = self.bench.selection(job_id, indices)
        except PROBLEMS as exc:
            _fail(exc)
        return {"indices": sel["indices"], "counts": sel["counts"], "gallery": sel["gallery"]}

    def on_points_selected(self, job_id: str, evt: gr.EventData):
        indices = (evt._data or {}).get("indices", []) if isinstance(evt._data, dict) else []
        try:
            sel = self.bench.selection(job_id, indices)
        except PROBLEMS:
            return gr.update(), gr.update(), []
        return views.selection_markdown(sel, GALLERY_LIMIT), sel["gallery"], sel["indices"]

    def on_cluster_clicked(self, evt: gr.EventData):
        cluster = (evt._data or {}).get("cluster") if isinstance(evt._data, dict) else None
        return gr.update(value=None if cluster is None or int(cluster) < 0 else int(cluster))

    def show_cluster(self, job_id: str, cluster):
        """(words, most typical, least certain, the name box): one group of a finished run."""
        nothing = ("", None, None, gr.update(value="", interactive=False), gr.update(interactive=False))
        if cluster is None or cluster == "" or int(cluster) < 0:
            return nothing
        try:
            result = self.bench.result(job_id)
        except PROBLEMS as exc:
            return (views.problem(plain(exc)), *nothing[1:])
        summaries = {s.cluster: s for s in self.bench.clusters(job_id)}
        s = summaries.get(int(cluster))
        if s is None:
            return ("This group no longer exists.", *nothing[1:])
        return (views.cluster_markdown(s, result.names), self.bench.gallery(result, s.typical, with_group=False),
                self.bench.gallery(result, s.uncertain, with_group=False),
                gr.update(value=result.names[s.cluster], interactive=True), gr.update(interactive=True))

    def rename_group(self, kind: str, e: ExplorePanel):
        def rename(job_id: str, cluster, name: str):
            """Give the group picked its own name: on the page, in the CSV and in exported folder names."""
            if cluster is None or cluster == "" or int(cluster) < 0:
                return {e.cluster_md: views.problem("Pick a group first (click it on the map, or choose it above).")}
            try:
                result = self.bench.rename_group(job_id, int(cluster), name)
            except PROBLEMS as exc:
                return {e.cluster_md: views.problem(plain(exc))}
            job = self.bench.job(job_id)
            summaries = {s.cluster: s for s in self.bench.clusters(job_id)}
            out = self._groups_outputs(job, result, e, kind, selected=int(cluster))
            out.update({e.rename: result.names[int(cluster)],
                        e.cluster_md: views.cluster_markdown(summaries[int(cluster)], result.names),
                        **self._result_outputs(result, e)})
            if job.extra("map") is not None:
                out[e.map] = self._map_json(job.extra("map"))
            return out

        return rename

    def selection_csv(self, job_id: str, indices: list[int]):
        if not indices:
            return gr.update(), views.problem("Select some images on the map first.")
        try:
            path = self.bench.write_selection_csv(job_id, indices)
        except PROBLEMS as exc:
            return gr.update(), views.problem(plain(exc))
        return gr.update(value=str(path), visible=True), gr.update()

    @staticmethod
    def _export_said(message: str, *, replace: bool = False) -> tuple:
        """(the export line, the replace button): the button shows only beside the line that explains it, and
        goes with any other message written there (every event writing the line writes both)."""
        return message, gr.update(visible=replace)

    def export_folder_changed(self, shown: str | None) -> tuple:
        """Another output folder: the go-ahead to replace was for the earlier one, so the button and the line
        asking for it go (any other message stays)."""
        asks = isinstance(shown, str) and views.esc(REPLACE_ASK) in shown
        return self._export_said("") if asks else (gr.update(), gr.update(visible=False))

    def export(self, job_id: str, out_dir: str, mode: str, overwrite: bool = False):
        """(message, the replace button): export; a folder holding files needs a second, explicit go-ahead."""
        try:
            info = self.bench.export(job_id, out_dir, mode=mode, overwrite=overwrite)
        except FolderNotEmptyError as exc:
            return self._export_said(views.problem(f"{exc} {REPLACE_ASK}"), replace=True)
        except OSError as exc:
            return self._export_said(views.problem(f"The export failed: {plain(exc)}"))
        except PROBLEMS as exc:
            return self._export_said(views.problem(plain(exc)))
        verb = "Copied" if mode == "copy" else "Linked"
        return self._export_said(f"{verb} **{info['n_files']:,} images** into **{len(info['counts'])} folders** "
                                 f"under `{info['folder']}` (with `assignments.csv` and `summary.json`).")

    def replace_export(self, job_id: str, out_dir: str, mode: str):
        return self.export(job_id, out_dir, mode, overwrite=True)

    def add_images(self, job_id: str, folder: str, device: str = ASSIGN.defaults.device):
        """Assign a folder of new images to the finished run's groups (the workbench does the work)."""
        if not folder or not str(folder).strip():
            raise gr.Error("Type the folder of the new images first.", print_exception=False)
        try:
            done = self.bench.assign_images(job_id, folder, device=device)
        except PROBLEMS as exc:
            _fail(exc)
        return (views.added_markdown(done["summary"]), gr.update(value=str(done["csv"]), visible=True),
                done["unlike"], done["assigned"])

    def save_model(self, job_id: str, out_dir: str):
        """(the model file, the export line, the replace button): its message takes the export line's place."""
        try:
            path = self.bench.save_model(job_id, out_dir or None)
        except PROBLEMS as exc:
            return gr.update(), *self._export_said(views.problem(plain(exc)))
        saved = self._export_said(f"Saved the clustering model as `{path}`.")
        return gr.update(value=str(path), visible=True), *saved

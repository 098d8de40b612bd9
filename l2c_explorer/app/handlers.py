"""What happens when the page is used: the event handlers, plain methods over a :class:`Workbench`.

Long runs live in worker threads owned by the workbench's job registry; a handler starts one, and the page
then only reads it with a :class:`gradio.Timer` (once a second). Problems with the user's input become a
message on the page (:func:`_fail`). The widgets are in :mod:`l2c_explorer.app.layout`; which handler
answers which event is set in :mod:`l2c_explorer.app.ui`.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from ..errors import L2CError
from ..options import ASSIGN, DISCOVER
from . import views
from .layout import ExplorePanel, Page, RunPanel
from .workbench import GALLERY_LIMIT, Workbench, list_subfolders

STOP_GRACE = 1.5  # seconds a stage that cannot stop mid-way is given before the run is declared stopped
# "Try the demo" buttons: the shipped model and the sample folder (in demo_data/) of each
DEMOS = {"symbols": ("omniglot", "omniglot_keble"), "photos": ("photos", "photos_everyday")}
DEMO_STEPS = 300  # "Try the demo" trains the clustering network longer than the default: a finished-looking demo


def _fail(exc: Exception):
    """Show a problem with the user's input as a message on the page (and to API clients)."""
    raise gr.Error(str(exc), print_exception=False) from None


class Handlers:
    """The page's event handlers for ``bench``; ``page`` gives the widgets some handlers update by name."""

    def __init__(self, bench: Workbench, page: Page, *, thumb_prefix: str):
        self.bench = bench
        self.page = page
        self.thumb_prefix = thumb_prefix

    def on_load(self, request: gr.Request):
        """Fill the model list and the device badge; reconnect to the runs named in the URL."""
        models = self.bench.models()
        choice = self.bench.default_model()
        card = self._card_text(choice)
        try:
            badge = views.device_badge_html(self.bench.device_label("auto"))
        except Exception as exc:  # a broken GPU driver must not break the page
            badge = f'<span class="l2c-badge cpu">Device: unknown ({views.esc(exc)})</span>'
        query = dict(request.query_params) if request is not None else {}
        out = [gr.update(choices=list(models), value=choice), card, badge]
        folder_value, labelled_value = gr.update(), gr.update()
        adapt_form = [gr.update()] * 4
        for param, kind in (("job", "discover"), ("train", "similarity"), ("adapt", "adapt")):
            job = self.bench.registry.get(query.get(param))
            if job is not None and job.kind == kind:
                out += [job.id, gr.Timer(active=True), {}]
                if kind == "discover":  # show the form as it was for this run
                    folder_value = job.params.get("folder", gr.update())
                    labelled_value = job.params.get("labelled", gr.update())
                elif kind == "adapt":
                    adapt_form = [job.params.get(k, gr.update()) for k in ("source", "folder", "method", "labelled")]
            else:
                out += [gr.update(), gr.update(), gr.update()]
        intro = gr.update()
        if not self.bench.adaptation_available():
            intro = ("**Not available in this installation**: the domain adaptation module "
                     "(`l2c_explorer.adaptation`) is missing.")
        # a reloaded "new domain" run opens its tab
        tab = gr.Tabs(selected="adapt") if self.bench.registry.get(query.get("adapt")) and not query.get("job") \
            else gr.update()
        return [*out, folder_value, labelled_value, intro, tab, *adapt_form]

    def _card_text(self, name: str | None) -> str:
        if not name:
            return ("No similarity model found. Train one below (open *Train a new similarity model*), or put a "
                    "`.safetensors` model file in a models folder (`--models-dir`).")
        try:
            return views.model_card_markdown(name, self.bench.model_card(name))
        except L2CError as exc:
            return f"This model cannot be used: {exc}"

    def refresh_models(self, current: str | None):
        models = self.bench.models()
        value = current if current in models else self.bench.default_model()
        return gr.update(choices=list(models), value=value), self._card_text(value)

    def show_card(self, name: str | None) -> str:
        return self._card_text(name)

    def fill_demo(self, kind: str = "symbols"):
        """Fill the form for a demo run: ``kind`` "symbols" (an unseen Omniglot alphabet) or "photos"."""
        wanted, folder = DEMOS[kind]
        folder = self.page.demos.get(folder)
        if folder is None:
            raise gr.Error("The sample folders (demo_data/) are not available in this installation.")
        models = self.bench.models()
        model = wanted if wanted in models else self.bench.default_model()
        if model != wanted:
            gr.Warning(f"The shipped `{wanted}` model was not found; using another model.")
        if model is None:
            raise gr.Error("No similarity model is available; train one first.")
        return (gr.update(value=model), self._card_text(model), str(folder), True, "estimate",
                gr.update(visible=False), DEMO_STEPS)

    # -- folders ----------------------------------------------------------------------------------------

    def check_folder(self, folder: str, model: str | None = None):
        """Count and sample the folder; when the chosen model does not suit its images, switch to one that does."""
        try:
            report = self.bench.check_folder(folder)
            better, message = self.bench.model_advice(report.folder, model)
        except L2CError as exc:
            _fail(exc)
        skipped = [[f, why] for f, why in report.skipped[:500]]
        model_update, card = gr.update(), gr.update()
        if better is not None:
            model_update, card = gr.update(value=better), self._card_text(better)
            message = f"{message} It has been chosen for you in step 1."
        return (views.folder_markdown(report), [(str(p), rel) for p, rel in report.sample],
                gr.update(value=skipped, visible=bool(skipped)),
                gr.update(value=True) if report.looks_labelled and self._is_demo(report.folder) else gr.update(),
                str(report.folder), model_update, card, views.fit_note_markdown(message))

    def fit_note(self, folder: str, model: str | None) -> str:
        """The model-fit note after the user picked a model by hand (nothing is switched then)."""
        try:
            _, message = self.bench.model_advice(folder, model)
        except L2CError:  # no usable folder yet: the folder step says why
            return ""
        return views.fit_note_markdown(message)

    def _is_demo(self, folder: Path) -> bool:
        return any(Path(folder) == Path(p).resolve() for p in self.page.demos.values())

    def browse(self, folder: str):
        path = Path(folder or Path.home()).expanduser()
        if not path.is_dir():
            raise gr.Error(f"Not a folder: {path}", print_exception=False)
        path = path.resolve()
        return str(path), gr.update(choices=list_subfolders(path), value=None)

    def browse_into(self, folder: str, name: str | None):
        if not name:
            return gr.update(), gr.update()
        return self.browse(str(Path(folder) / name))

    def browse_up(self, folder: str):
        return self.browse(str(Path(folder or Path.home()).expanduser().resolve().parent))

    # -- runs -------------------------------------------------------------------------------------------

    def _reset_outputs(self, job_id: str, progress: str, series) -> list:
        return [job_id, progress, views.curves_json([], series), gr.Timer(active=True), {}, "",
                "Results appear here when the run has finished.", gr.update(choices=[], value=None),
                None, None, None, None,
                "Select images on the map with the lasso or box tool (in the map's toolbar) to see them here.",
                gr.update(value=None, interactive=False), ""]

    def _replace(self, previous: str | None) -> None:
        """A new run in a tab replaces the tab's previous one: stop it if it is still going."""
        job = self.bench.registry.get(previous)
        if job is not None and not job.finished:
            job.stop(grace=STOP_GRACE)

    def start_discovery(self, folder, model, k_mode, k_value, max_k, loss, steps, device, labelled,
                        sharpen: bool = True, previous: str | None = None):
        if not model:
            raise gr.Error("Choose a similarity model first (step 1).", print_exception=False)
        options = dict(max_clusters=int(max_k), loss=loss, device=device,
                       self_training_steps=DISCOVER.defaults.self_training_steps if sharpen else 0)
        if k_mode == "known":
            if k_value is None:
                raise gr.Error("Give the number of categories, or let the app estimate it.", print_exception=False)
            options["n_clusters"] = int(k_value)
        if steps:
            options["steps"] = int(steps)
        self._replace(previous)
        try:
            job = self.bench.start_discovery(folder, model=model, labelled=bool(labelled), **options)
        except L2CError as exc:
            _fail(exc)
        return self._reset_outputs(job.id, views.progress_html(job.snapshot(), what="run"),
                                   views.DISCOVER_SERIES)

    def start_adaptation(self, source, target, method, epochs, device, labelled, previous: str | None = None):
        options = dict(method=method, device=device)
        if epochs:
            options["epochs"] = int(epochs)
        self._replace(previous)
        try:
            job = self.bench.start_adaptation(source, target, labelled=bool(labelled), **options)
        except L2CError as exc:
            _fail(exc)
        return self._reset_outputs(job.id, views.progress_html(job.snapshot(), what="run"), views.ADAPT_SERIES)

    def start_similarity(self, folder, name, epochs, class_depth, device, previous: str | None = None):
        self._replace(previous)
        try:
            job = self.bench.start_similarity_training(folder, name=name, epochs=float(epochs),
                                                       class_depth=int(class_depth), device=device)
        except L2CError as exc:
            _fail(exc)
        return (job.id, views.progress_html(job.snapshot(), what="training"),
                views.curves_json([], views.SIMILARITY_SERIES, x="epoch", x_title="epoch"),
                gr.Timer(active=True), {}, "")

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
            if snap.version != seen.get("curves"):
                points, version = job.metrics.read()
                k_true = job.params.get("k_true")
                refs = {"k_estimated": (k_true, "true number of categories")} if k_true else None
                out[run.curves] = views.curves_json(points, series, references=refs)
                seen["curves"] = version
            if job.finished:
                result = job.result
                if result is not None and seen.get("result") != job.id:
                    seen["result"] = job.id
                    out[e.results_md] = views.results_markdown(result)
                    out[e.skipped] = gr.update(value=[[f, r] for f, r in result.skipped[:1000]],
                                               visible=bool(result.skipped))
                    csv_path = result.run_dir / "assignments.csv"
                    out[e.assignments] = gr.update(value=str(csv_path) if csv_path.exists() else None,
                                                   interactive=csv_path.exists())
                    if e.save_btn is not None:
                        out[e.save_btn] = gr.update(interactive=True)
                if result is not None and job.extras_version != seen.get("extras"):
                    seen["extras"] = job.extras_version
                    clusters = job.extra("clusters")
                    if clusters is not None and seen.get("clusters") != job.id:
                        seen["clusters"] = job.id
                        names = result.names
                        header = [("group" if kind == "discover" else "category"), "images", "mean confidence"]
                        if result.truth is not None:
                            header += ["main true category", "share of it"]
                        out[e.clusters] = gr.update(value=views.cluster_rows(clusters, names), headers=header)
                        out[e.cluster] = gr.update(choices=views.cluster_choices(clusters, names), value=None)
                    payload = job.extra("map")
                    if payload is not None and seen.get("map") != id(payload):
                        seen["map"] = id(payload)
                        out[e.map] = json.dumps({**payload, "thumb_prefix": self.thumb_prefix},
                                                separators=(",", ":"))
                if result is None or job.extra("map_final"):
                    out[run.timer] = gr.Timer(active=False)
            out[run.seen] = seen
            return out

        return poll

    # -- explore ----------------------------------------------------------------------------------------

    def select_points(self, job_id: str, indices: list[int]) -> dict:
        """The images selected on the map: count per group, and (thumbnail, caption) pairs."""
        try:
            sel = self.bench.selection(job_id, indices)
        except L2CError as exc:
            _fail(exc)
        return {"indices": sel["indices"], "counts": sel["counts"], "gallery": sel["gallery"]}

    def on_points_selected(self, job_id: str, evt: gr.EventData):
        indices = (evt._data or {}).get("indices", []) if isinstance(evt._data, dict) else []
        try:
            sel = self.bench.selection(job_id, indices)
        except L2CError:
            return gr.update(), gr.update(), []
        return views.selection_markdown(sel, GALLERY_LIMIT), sel["gallery"], sel["indices"]

    def on_cluster_clicked(self, evt: gr.EventData):
        cluster = (evt._data or {}).get("cluster") if isinstance(evt._data, dict) else None
        return gr.update(value=None if cluster is None or int(cluster) < 0 else int(cluster))

    def show_cluster(self, job_id: str, cluster):
        if cluster is None or cluster == "" or int(cluster) < 0:
            return "", None, None
        try:
            result = self.bench.result(job_id)
        except L2CError as exc:
            _fail(exc)
        summaries = {s.cluster: s for s in self.bench.clusters(job_id)}
        s = summaries.get(int(cluster))
        if s is None:
            return "This group no longer exists.", None, None
        return (views.cluster_markdown(s, result.names), self.bench.gallery(result, s.typical, with_group=False),
                self.bench.gallery(result, s.uncertain, with_group=False))

    def selection_csv(self, job_id: str, indices: list[int]):
        if not indices:
            raise gr.Error("Select some images on the map first.", print_exception=False)
        try:
            path = self.bench.write_selection_csv(job_id, indices)
        except L2CError as exc:
            _fail(exc)
        return gr.update(value=str(path), visible=True)

    def export(self, job_id: str, out_dir: str, mode: str) -> str:
        try:
            info = self.bench.export(job_id, out_dir, mode=mode)
        except L2CError as exc:
            _fail(exc)
        except OSError as exc:
            raise gr.Error(f"The export failed: {exc}", print_exception=False) from None
        verb = "Copied" if mode == "copy" else "Linked"
        return (f"{verb} **{info['n_files']:,} images** into **{len(info['counts'])} folders** under "
                f"`{info['folder']}` (with `assignments.csv` and `summary.json`).")

    def add_images(self, job_id: str, folder: str, device: str = ASSIGN.defaults.device):
        """Assign a folder of new images to the finished run's groups (the workbench does the work)."""
        if not folder or not str(folder).strip():
            raise gr.Error("Type the folder of the new images first.", print_exception=False)
        try:
            done = self.bench.assign_images(job_id, folder, device=device)
        except L2CError as exc:
            _fail(exc)
        return (views.added_markdown(done["summary"]), gr.update(value=str(done["csv"]), visible=True),
                done["unlike"], done["assigned"])

    def save_model(self, job_id: str, out_dir: str):
        try:
            path = self.bench.save_model(job_id, out_dir or None)
        except L2CError as exc:
            _fail(exc)
        return gr.update(value=str(path), visible=True), f"Saved the clustering model as `{path}`."

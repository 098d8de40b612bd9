"""The Gradio page: a thin layer of widgets over :class:`~l2c_explorer.app.workbench.Workbench`.

Long runs live in worker threads owned by the workbench's job registry; the page starts them, then only
reads them with a :class:`gradio.Timer` (once a second). The id of the tab's run is put in the page's URL
(``?job=...``), so a reload reconnects to it, and two tabs never share a run.

Every event that starts or reads a job has an explicit ``api_name`` so it can be driven by
``gradio_client`` (see ``tests/app``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import gradio as gr

from ..errors import L2CError
from . import views
from .workbench import (
    ADAPT_METHODS,
    GALLERY_LIMIT,
    SELF_TRAINING_STEPS,
    Workbench,
    demo_folders,
    list_subfolders,
)

PLOTLY_FILE = "plotly.min.js"
TICK_SECONDS = 1.0
STOP_GRACE = 1.5  # seconds a stage that cannot stop mid-way is given before the run is declared stopped


def asset(name: str) -> str:
    return resources.files("l2c_explorer.app").joinpath("assets", name).read_text(encoding="utf-8")


def install_static(bench: Workbench) -> Path:
    """Copy plotly.js (from the installed plotly package) into the app's static folder; return its path."""
    import plotly

    src = Path(plotly.__file__).parent / "package_data" / PLOTLY_FILE
    dest = bench.workspace.static / f"plotly-{plotly.__version__}.min.js"
    if not dest.exists() or dest.stat().st_size != src.stat().st_size:
        tmp = dest.with_suffix(".partial")
        tmp.write_bytes(src.read_bytes())
        tmp.replace(dest)
    return dest


def file_url(path: Path) -> str:
    """The page-relative URL Gradio serves a file of an allowed folder under."""
    return f"gradio_api/file={Path(path).as_posix()}"


def _fail(exc: Exception):
    """Show a problem with the user's input as a message on the page (and to API clients)."""
    raise gr.Error(str(exc), print_exception=False) from None


# ---------------------------------------------------------------------------------------------------
# reusable pieces


def curves_component(elem_id: str, head: str) -> gr.HTML:
    return gr.HTML(value="", html_template='<div class="l2c-curves" data-points="0"></div>',
                   js_on_load=asset("curves.js"), head=head, elem_id=elem_id, padding=False)


def map_component(elem_id: str, head: str, group_word: str = "group") -> gr.HTML:
    template = """
<div class="l2c-map" data-ready="0">
  <div class="l2c-map-toolbar">
    <span>Colour by:</span>
    <button data-colour="cluster" class="selected">{group}</button>
    <button data-colour="confidence">confidence</button>
    <button data-colour="truth" style="display:none">true category</button>
    <button data-action="all">show all {groups}</button>
    <span class="l2c-help">Hover a point to see its image · lasso or box tool: select images ·
      click a point or a legend entry: show only its {group} · scroll: zoom</span>
  </div>
  <div class="l2c-map-empty">The map appears here when a run has finished.</div>
  <div class="l2c-map-plot"></div>
  <div class="l2c-hover"><img alt="thumbnail"/><div class="l2c-hover-text"></div></div>
  <div class="l2c-map-info"></div>
</div>""".format(group=group_word, groups=group_word + "s" if group_word == "group" else "categories")
    return gr.HTML(value="", html_template=template, js_on_load=asset("map.js"), head=head, elem_id=elem_id,
                   padding=False)


@dataclass
class RunPanel:
    """Start/Stop, progress and live curves of one kind of run."""

    job: gr.Textbox
    start: gr.Button
    stop: gr.Button
    progress: gr.HTML
    curves: gr.HTML
    timer: gr.Timer
    seen: gr.State


def run_panel(prefix: str, head: str, start_label: str = "Start") -> RunPanel:
    with gr.Row():
        start = gr.Button(start_label, variant="primary", elem_id=f"{prefix}-start", scale=2)
        stop = gr.Button("Stop", variant="stop", elem_id=f"{prefix}-stop", scale=1)
    progress = gr.HTML(elem_id=f"{prefix}-progress")
    curves = curves_component(f"{prefix}-curves", head)
    job = gr.Textbox(visible=False, elem_id=f"{prefix}-job")
    return RunPanel(job=job, start=start, stop=stop, progress=progress, curves=curves,
                    timer=gr.Timer(TICK_SECONDS, active=False), seen=gr.State({}))


@dataclass
class ExplorePanel:
    """The map, the selection gallery, the cluster galleries and the results of one kind of run."""

    map: gr.HTML
    selection_md: gr.Markdown
    selection_gallery: gr.Gallery
    selection: gr.State
    selection_csv_btn: gr.Button
    selection_csv: gr.File
    cluster: gr.Dropdown
    cluster_md: gr.Markdown
    typical: gr.Gallery
    uncertain: gr.Gallery
    clusters: gr.Dataframe
    results_md: gr.Markdown
    skipped: gr.Dataframe
    assignments: gr.DownloadButton
    out_dir: gr.Textbox
    mode: gr.Radio
    export_btn: gr.Button
    export_md: gr.Markdown
    save_btn: gr.Button | None
    model_file: gr.File | None


def explore_panel(prefix: str, head: str, *, group_word: str, groups_word: str, savable: bool, explore_title: str,
                  explore_help: str, results_title: str) -> ExplorePanel:
    with gr.Column(elem_id=f"{prefix}-step-explore"):
        gr.Markdown(explore_title, elem_classes="l2c-step-title")
        gr.Markdown(explore_help, elem_classes="l2c-help")
        emap = map_component(f"{prefix}-map", head, group_word)
        with gr.Row(equal_height=False):
            with gr.Column(elem_id=f"{prefix}-selection-box"):
                selection_md = gr.Markdown(
                    "Select images on the map with the lasso or box tool (in the map's toolbar) to see them here.",
                    elem_id=f"{prefix}-selection-md")
                selection_gallery = gr.Gallery(label="Selected images", columns=6, height=330, object_fit="contain",
                                               elem_id=f"{prefix}-selection", show_label=True)
                with gr.Row():
                    selection_csv_btn = gr.Button("Save the selection as a CSV file", size="sm")
                    selection_csv = gr.File(label="Selection", visible=False, height=60)
            with gr.Column(elem_id=f"{prefix}-cluster-box"):
                cluster = gr.Dropdown(label=f"Look at one {group_word}", choices=[], value=None, interactive=True,
                                      elem_id=f"{prefix}-cluster", allow_custom_value=True)
                cluster_md = gr.Markdown()
                typical = gr.Gallery(label="Most typical", columns=8, height=170, object_fit="contain",
                                     elem_id=f"{prefix}-typical")
                uncertain = gr.Gallery(label="Least certain", columns=8, height=170, object_fit="contain",
                                       elem_id=f"{prefix}-uncertain")
        clusters = gr.Dataframe(headers=[group_word, "images", "mean confidence"],
                                label=f"All {groups_word} (largest first)", interactive=False, wrap=True,
                                max_height=260, elem_id=f"{prefix}-clusters")

    with gr.Column(elem_id=f"{prefix}-step-results"):
        gr.Markdown(results_title, elem_classes="l2c-step-title")
        results_md = gr.Markdown("Results appear here when a run has finished.", elem_id=f"{prefix}-results")
        skipped = gr.Dataframe(headers=["file", "why it was skipped"], label="Skipped files", visible=False,
                               interactive=False, max_height=200)
        with gr.Row():
            assignments = gr.DownloadButton("Download the assignments (CSV)", value=None, interactive=False,
                                            elem_id=f"{prefix}-download")
            save_btn = model_file = None
            if savable:
                save_btn = gr.Button("Save the trained clustering model", interactive=False,
                                     elem_id=f"{prefix}-save")
        if savable:
            model_file = gr.File(label="Clustering model", visible=False, elem_id=f"{prefix}-model-file", height=60)
        gr.Markdown(f"**Export the images into one folder per {group_word}.** Your image folder is never changed: "
                    "the images are copied (or linked) into the output folder you choose, with `assignments.csv` "
                    "and `summary.json`.", elem_classes="l2c-help")
        with gr.Row():
            out_dir = gr.Textbox(label="Output folder (created if needed; not inside your image folder)", scale=3,
                                 elem_id=f"{prefix}-out")
            mode = gr.Radio([("Copy the images", "copy"), ("Link to them (saves space)", "symlink")],
                            value="copy", label="How", scale=2)
            export_btn = gr.Button("Export", elem_id=f"{prefix}-export", scale=1)
        export_md = gr.Markdown(elem_id=f"{prefix}-export-md")
    return ExplorePanel(emap, selection_md, selection_gallery, gr.State([]), selection_csv_btn, selection_csv,
                        cluster, cluster_md, typical, uncertain, clusters, results_md, skipped, assignments,
                        out_dir, mode, export_btn, export_md, save_btn, model_file)


# JS run in the browser: put the run id in the URL (reload reconnects), and isolate a cluster on the map.
def _url_js(param: str) -> str:
    return (f"(id) => {{ const u = new URL(window.location.href); if (id) {{ u.searchParams.set('{param}', id); }}"
            f" else {{ u.searchParams.delete('{param}'); }} window.history.replaceState(null, '', u); return id; }}")


def _isolate_js(map_id: str) -> str:
    return (f"(job, c) => {{ const m = document.querySelector('#{map_id} .l2c-map');"
            " if (m && m.l2c) { m.l2c.isolate(c === null || c === undefined || Number(c) < 0 ? null : c); }"
            " return [job, c]; }")


# ---------------------------------------------------------------------------------------------------
# the page


class App:
    """Builds the page for a :class:`Workbench` and holds the event handlers (plain methods)."""

    def __init__(self, bench: Workbench, *, folder: str | None = None):
        self.bench = bench
        self.folder = folder
        self.plotly_url = file_url(install_static(bench))
        self.head = f'<script src="{self.plotly_url}"></script>'
        self.thumb_prefix = file_url(bench.workspace.thumbnails) + "/"
        self.demos = demo_folders()

    # -- building --------------------------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        with gr.Blocks(title="l2c-explorer", analytics_enabled=False) as demo:
            with gr.Row(equal_height=True):
                gr.Markdown(
                    "# l2c-explorer\n"
                    "Find the categories in a folder of images nobody has labelled. A *similarity model*, learnt "
                    "from labelled images of other categories, judges which of your images look like the same "
                    "kind of thing; the app then learns to sort them into groups and guesses how many groups "
                    "there are (Hsu, Lv & Kira, *Learning to cluster*, ICLR 2018).", scale=4)
                with gr.Column(scale=1, min_width=220):
                    self.demo_btn = gr.Button("▶ Try the demo", variant="primary", elem_id="try-demo")
                    gr.Markdown("Uses the shipped `omniglot` model on 520 handwritten characters.",
                                elem_classes="l2c-help")
            self.badge = gr.HTML(elem_id="device-badge")
            with gr.Tabs() as self.tabs:
                with gr.Tab("Find categories", id="discover"):
                    self._discover_tab()
                with gr.Tab("Same categories, new domain", id="adapt"):
                    self._adapt_tab()
            self._wire_load(demo)
        return demo

    def _discover_tab(self) -> None:
        demo_choices = [(f"{name}", str(path)) for name, path in self.demos.items()]
        # 1 · similarity model
        with gr.Column(elem_id="step-model"):
            gr.Markdown("## 1 · Similarity model", elem_classes="l2c-step-title")
            gr.Markdown("A similarity model looks at two images and says how likely they show the same kind of thing. "
                        "It learnt this from labelled images of *other* categories; the app transfers that skill to "
                        "your images. Pick one, or train your own below.", elem_classes="l2c-help")
            with gr.Row():
                self.model = gr.Dropdown(label="Similarity model", choices=[], value=None, scale=4, elem_id="model",
                                         allow_custom_value=True)  # the list is filled when the page loads
                self.refresh = gr.Button("Refresh the list", scale=1, size="sm")
            self.card = gr.Markdown(elem_id="model-card")
            with gr.Accordion("Train a new similarity model from a labelled folder", open=False):
                gr.Markdown("Give a folder with **one sub-folder per category** (the sub-folder names are the labels). "
                            "The new model learns which images belong together; later it can find categories it has "
                            "never seen, in images that look similar. A few epochs take a few minutes on a CPU.",
                            elem_classes="l2c-help")
                with gr.Row():
                    self.spn_folder = gr.Textbox(label="Labelled folder", scale=3, elem_id="spn-folder")
                    self.spn_demo = gr.Dropdown(label="…or a sample folder", choices=demo_choices, value=None,
                                                scale=2)
                with gr.Row():
                    self.spn_name = gr.Textbox(value="my-model", label="Name of the new model", elem_id="spn-name")
                    self.spn_epochs = gr.Slider(1, 50, value=5, step=1, label="Epochs (passes over the images)")
                    self.spn_depth = gr.Slider(1, 3, value=1, step=1, label="Folder levels that name a category",
                                               info="2 for ALPHABET/CHARACTER/ folders")
                self.spn = run_panel("spn", self.head, "Train the model")
                self.spn_result = gr.Markdown(elem_id="spn-result")

        # 2 · images
        with gr.Column(elem_id="step-folder"):
            gr.Markdown("## 2 · Your images", elem_classes="l2c-step-title")
            gr.Markdown("Type the path of a folder on this computer (all its sub-folders are searched), browse to it, "
                        "or pick a sample. The folder is only read, never changed.", elem_classes="l2c-help")
            with gr.Row():
                self.folder_tb = gr.Textbox(label="Folder of images", value=self.folder or "", scale=4,
                                            placeholder="/path/to/images", elem_id="folder")
                self.demo_dd = gr.Dropdown(label="…or a sample folder", choices=demo_choices, value=None, scale=2)
                self.check_btn = gr.Button("Check the folder", scale=1, elem_id="check-folder")
            with gr.Accordion("Browse this computer", open=False):
                with gr.Row():
                    self.browse_at = gr.Textbox(label="Looking in", value=str(Path.home()), scale=4)
                    self.up_btn = gr.Button("Up one level", scale=1, size="sm")
                    self.use_btn = gr.Button("Use this folder", scale=1, size="sm")
                self.subfolders = gr.Dropdown(label="Sub-folders (pick one to open it)", choices=[], value=None)
            self.folder_md = gr.Markdown(elem_id="folder-report")
            self.sample = gr.Gallery(label="A sample of the images", columns=12, height=140, object_fit="contain",
                                     elem_id="folder-sample")
            self.folder_skipped = gr.Dataframe(headers=["file", "why it is skipped"], label="Skipped files",
                                               visible=False, interactive=False, max_height=200)
            self.labelled = gr.Checkbox(label="The sub-folder names are the true categories (only used to score and "
                                              "colour the results, never to find them)", value=False,
                                        elem_id="labelled")

        # 3 · discover
        with gr.Column(elem_id="step-discover"):
            gr.Markdown("## 3 · Find the categories", elem_classes="l2c-step-title")
            gr.Markdown("The app trains a small grouping network on your images, guided by the similarity model. "
                        "The curves show it learning: the loss should go down, and the estimated number of "
                        "categories settles as it learns. With sharpening on, it then fine-tunes the similarity "
                        "model on the clearest groups and groups the images again: the curves continue with "
                        "that second round. You can stop at any time and keep what it has learnt.",
                        elem_classes="l2c-help")
            with gr.Row():
                self.k_mode = gr.Radio([("Let the app estimate it", "estimate"), ("I know it", "known")],
                                       value="estimate", label="Number of categories", elem_id="k-mode")
                self.k_value = gr.Number(value=10, precision=0, minimum=1, label="How many categories", visible=False)
                self.max_k = gr.Slider(2, 200, value=100, step=1, label="At most (when estimating)")
            with gr.Row():
                self.loss = gr.Radio([("MCL (recommended)", "mcl"), ("KCL", "kcl")], value="mcl", label="Training loss",
                                     info="Two ways of learning from pairs; MCL is usually better.")
                self.epochs = gr.Slider(10, 1000, value=100, step=10, label="Training length (steps)",
                                        info="100 is plenty for most folders; more refines the groups a little.",
                                        elem_id="epochs")
                self.device = gr.Dropdown([("Automatic (GPU if there is one)", "auto"), ("CPU", "cpu"),
                                           ("GPU (CUDA)", "cuda")], value="auto", label="Compute on")
            self.sharpen = gr.Checkbox(value=True, label="Sharpen the similarity model on these images, then group "
                                       "again (more accurate; about 10 seconds more on a CPU)", elem_id="sharpen")
            self.run = run_panel("discover", self.head, "Start")

        # 4 · explore, 5 · results
        self.explore = explore_panel(
            "discover", self.head, group_word="group", groups_word="groups", savable=True,
            explore_title="## 4 · Explore",
            explore_help="Each point is one image, placed so that images the model finds alike are close (a UMAP "
                         "map). Colours show the groups found.", results_title="## 5 · Results")
        self._wire_discover()

    def _adapt_tab(self) -> None:
        demo_choices = [(f"{name}", str(path)) for name, path in self.demos.items()]
        gr.Markdown("## Same categories, new domain", elem_classes="l2c-step-title")
        self.adapt_intro = gr.Markdown(
            "You have labelled images of some categories (the *source*, one sub-folder per category) and unlabelled "
            "images of the **same categories** that look different (the *target*: other scanner, other "
            "handwriting, other camera). The app learns from both and names each target image with a source "
            "category. Try it with the MNIST digits as source and the USPS digits as target.",
            elem_classes="l2c-help", elem_id="adapt-intro")
        with gr.Row():
            self.adapt_source = gr.Textbox(label="Labelled source folder", scale=3, elem_id="adapt-source")
            self.adapt_source_demo = gr.Dropdown(label="…or a sample", choices=demo_choices, value=None, scale=2)
        with gr.Row():
            self.adapt_target = gr.Textbox(label="Target folder (same categories, new look)", scale=3,
                                           elem_id="adapt-target")
            self.adapt_target_demo = gr.Dropdown(label="…or a sample", choices=demo_choices, value=None, scale=2)
        self.adapt_labelled = gr.Checkbox(label="The target's sub-folder names are the true categories (only used "
                                                "to score the result)", value=False)
        with gr.Row():
            self.adapt_method = gr.Dropdown(list(ADAPT_METHODS), value="ccn+", label="Method",
                                            info="ccn+ learns from pairs in both domains; source-only ignores the "
                                                 "target while training (a baseline).")
            self.adapt_epochs = gr.Number(value=0, precision=0, minimum=0, label="Epochs (0: the method's default)",
                                          elem_id="adapt-epochs")
            self.adapt_device = gr.Dropdown([("Automatic", "auto"), ("CPU", "cpu"), ("GPU (CUDA)", "cuda")],
                                            value="auto", label="Compute on")
        self.adapt_run = run_panel("adapt", self.head, "Start")
        self.adapt_explore = explore_panel(
            "adapt", self.head, group_word="category", groups_word="categories", savable=False,
            explore_title="### Explore the target images by predicted category",
            explore_help="Each point is one target image, placed so that images the network finds alike are close. "
                         "Colours show the predicted source category.", results_title="### Results")
        self._wire_adapt()

    # -- wiring ----------------------------------------------------------------------------------------

    def _wire_load(self, demo: gr.Blocks) -> None:
        outputs = [self.model, self.card, self.badge,
                   self.run.job, self.run.timer, self.run.seen,
                   self.spn.job, self.spn.timer, self.spn.seen,
                   self.adapt_run.job, self.adapt_run.timer, self.adapt_run.seen,
                   self.folder_tb, self.labelled, self.adapt_intro, self.tabs,
                   self.adapt_source, self.adapt_target, self.adapt_method, self.adapt_labelled]
        demo.load(self.on_load, inputs=None, outputs=outputs, api_name="restore", show_progress="hidden")
        if self.folder:
            demo.load(self.check_folder, inputs=[self.folder_tb],
                      outputs=[self.folder_md, self.sample, self.folder_skipped, self.labelled, self.folder_tb],
                      api_visibility="private", show_progress="hidden")
        self.demo_btn.click(
            self.fill_demo, outputs=[self.model, self.card, self.folder_tb, self.labelled, self.k_mode, self.k_value,
                                     self.epochs], api_name="fill_demo",
        ).success(
            self.check_folder, inputs=[self.folder_tb],
            outputs=[self.folder_md, self.sample, self.folder_skipped, self.labelled, self.folder_tb],
            api_visibility="private",
        ).success(
            self.start_discovery, inputs=self._discover_inputs(), outputs=self._discover_start_outputs(),
            api_visibility="private",
        ).success(None, js=_url_js("job"), inputs=[self.run.job])

    def _discover_inputs(self):
        return [self.folder_tb, self.model, self.k_mode, self.k_value, self.max_k, self.loss, self.epochs,
                self.device, self.labelled, self.sharpen, self.run.job]

    def _discover_start_outputs(self):
        e = self.explore
        return [self.run.job, self.run.progress, self.run.curves, self.run.timer, self.run.seen, e.map,
                e.results_md, e.cluster, e.clusters, e.typical, e.uncertain, e.selection_gallery, e.selection_md,
                e.assignments, e.export_md]

    def _wire_discover(self) -> None:
        self.refresh.click(self.refresh_models, inputs=[self.model], outputs=[self.model, self.card],
                           api_name="list_models")
        self.model.change(self.show_card, inputs=[self.model], outputs=[self.card], api_name="model_card",
                          show_progress="hidden")
        # folder
        folder_outputs = [self.folder_md, self.sample, self.folder_skipped, self.labelled, self.folder_tb]
        self.check_btn.click(self.check_folder, inputs=[self.folder_tb], outputs=folder_outputs,
                             api_name="check_folder")
        self.folder_tb.submit(self.check_folder, inputs=[self.folder_tb], outputs=folder_outputs,
                              api_visibility="private")
        self.demo_dd.input(lambda p: p, inputs=[self.demo_dd], outputs=[self.folder_tb],
                           api_visibility="private").then(
            self.check_folder, inputs=[self.folder_tb], outputs=folder_outputs, api_visibility="private")
        self.browse_at.submit(self.browse, inputs=[self.browse_at], outputs=[self.browse_at, self.subfolders],
                              api_name="browse")
        self.subfolders.input(self.browse_into, inputs=[self.browse_at, self.subfolders],
                              outputs=[self.browse_at, self.subfolders], api_visibility="private")
        self.up_btn.click(self.browse_up, inputs=[self.browse_at], outputs=[self.browse_at, self.subfolders],
                          api_visibility="private")
        self.use_btn.click(lambda p: p, inputs=[self.browse_at], outputs=[self.folder_tb],
                           api_visibility="private").then(
            self.check_folder, inputs=[self.folder_tb], outputs=folder_outputs, api_visibility="private")
        self.k_mode.change(lambda m: gr.update(visible=m == "known"), inputs=[self.k_mode], outputs=[self.k_value],
                           api_visibility="private", show_progress="hidden")
        # similarity training
        self.spn_demo.input(lambda p: (p, 1), inputs=[self.spn_demo], outputs=[self.spn_folder, self.spn_depth],
                            api_visibility="private")
        self.spn.start.click(
            self.start_similarity, inputs=[self.spn_folder, self.spn_name, self.spn_epochs, self.spn_depth,
                                           self.device, self.spn.job],
            outputs=[self.spn.job, self.spn.progress, self.spn.curves, self.spn.timer, self.spn.seen,
                     self.spn_result],
            api_name="start_similarity", concurrency_limit=None,
        ).success(None, js=_url_js("train"), inputs=[self.spn.job])
        self.spn.stop.click(self.stop_job, inputs=[self.spn.job], outputs=[self.spn.progress],
                            api_name="stop_similarity", concurrency_limit=None)
        self.spn.timer.tick(self.poll_similarity, inputs=[self.spn.job, self.spn.seen],
                            outputs=[self.spn.progress, self.spn.curves, self.spn.timer, self.spn.seen,
                                     self.spn_result, self.model, self.card],
                            api_name="poll_similarity", concurrency_limit=None, show_progress="hidden")
        # discovery
        self.run.start.click(self.start_discovery, inputs=self._discover_inputs(),
                             outputs=self._discover_start_outputs(), api_name="start_discovery",
                             concurrency_limit=None).success(None, js=_url_js("job"), inputs=[self.run.job])
        self.run.stop.click(self.stop_job, inputs=[self.run.job], outputs=[self.run.progress],
                            api_name="stop_discovery", concurrency_limit=None)
        self._wire_explore(self.run, self.explore, "discover")

    def _wire_adapt(self) -> None:
        self.adapt_source_demo.input(lambda p: p, inputs=[self.adapt_source_demo], outputs=[self.adapt_source],
                                     api_visibility="private")
        self.adapt_target_demo.input(lambda p: p, inputs=[self.adapt_target_demo], outputs=[self.adapt_target],
                                     api_visibility="private")
        e = self.adapt_explore
        self.adapt_run.start.click(
            self.start_adaptation,
            inputs=[self.adapt_source, self.adapt_target, self.adapt_method, self.adapt_epochs, self.adapt_device,
                    self.adapt_labelled, self.adapt_run.job],
            outputs=[self.adapt_run.job, self.adapt_run.progress, self.adapt_run.curves, self.adapt_run.timer,
                     self.adapt_run.seen, e.map, e.results_md, e.cluster, e.clusters, e.typical, e.uncertain,
                     e.selection_gallery, e.selection_md, e.assignments, e.export_md],
            api_name="start_adaptation", concurrency_limit=None,
        ).success(None, js=_url_js("adapt"), inputs=[self.adapt_run.job])
        self.adapt_run.stop.click(self.stop_job, inputs=[self.adapt_run.job], outputs=[self.adapt_run.progress],
                                  api_name="stop_adaptation", concurrency_limit=None)
        self._wire_explore(self.adapt_run, e, "adapt")

    def _wire_explore(self, run: RunPanel, e: ExplorePanel, kind: str) -> None:
        poll_outputs = [run.progress, run.curves, run.timer, run.seen, e.map, e.results_md, e.skipped, e.cluster,
                        e.clusters, e.assignments]
        if e.save_btn is not None:
            poll_outputs.append(e.save_btn)
        run.timer.tick(self._poller(kind, run, e), inputs=[run.job, run.seen], outputs=poll_outputs,
                       api_name=f"poll_{'discovery' if kind == 'discover' else 'adaptation'}",
                       concurrency_limit=None, show_progress="hidden")
        # selection on the map (lasso / box), and its client-callable twin
        e.map.points_selected(self.on_points_selected, inputs=[run.job],
                              outputs=[e.selection_md, e.selection_gallery, e.selection],
                              api_visibility="private", concurrency_limit=None, show_progress="hidden")
        e.map.cluster_clicked(self.on_cluster_clicked, inputs=None, outputs=[e.cluster],
                              api_visibility="private", show_progress="hidden")
        e.cluster.change(self.show_cluster, inputs=[run.job, e.cluster], outputs=[e.cluster_md, e.typical,
                                                                                   e.uncertain],
                         js=_isolate_js(f"{kind}-map"), api_name=f"show_cluster_{kind}", concurrency_limit=None,
                         show_progress="hidden")
        e.selection_csv_btn.click(self.selection_csv, inputs=[run.job, e.selection], outputs=[e.selection_csv],
                                  api_visibility="private")
        e.export_btn.click(self.export, inputs=[run.job, e.out_dir, e.mode], outputs=[e.export_md],
                           api_name=f"export_{kind}")
        if e.save_btn is not None:
            e.save_btn.click(self.save_model, inputs=[run.job, e.out_dir], outputs=[e.model_file, e.export_md],
                             api_name=f"save_model_{kind}")
        gr.api(self.select_points, api_name=f"select_points_{kind}")

    # -- handlers: page ---------------------------------------------------------------------------------

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

    def fill_demo(self):
        model = self.bench.default_model()
        folder = self.demos.get("omniglot_keble")
        if folder is None:
            raise gr.Error("The sample folders (demo_data/) are not available in this installation.")
        if "omniglot" not in self.bench.models():
            gr.Warning("The shipped `omniglot` model was not found; using another model.")
        if model is None:
            raise gr.Error("No similarity model is available; train one first.")
        return (gr.update(value=model), self._card_text(model), str(folder), True, "estimate",
                gr.update(visible=False), 300)

    # -- handlers: folders ------------------------------------------------------------------------------

    def check_folder(self, folder: str):
        try:
            report = self.bench.check_folder(folder)
        except L2CError as exc:
            _fail(exc)
        skipped = [[f, why] for f, why in report.skipped[:500]]
        return (views.folder_markdown(report), [(str(p), rel) for p, rel in report.sample],
                gr.update(value=skipped, visible=bool(skipped)),
                gr.update(value=True) if report.looks_labelled and self._is_demo(report.folder) else gr.update(),
                str(report.folder))

    def _is_demo(self, folder: Path) -> bool:
        return any(Path(folder) == Path(p).resolve() for p in self.demos.values())

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

    # -- handlers: runs ----------------------------------------------------------------------------------

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

    def start_discovery(self, folder, model, k_mode, k_value, max_k, loss, epochs, device, labelled,
                        sharpen: bool = True, previous: str | None = None):
        if not model:
            raise gr.Error("Choose a similarity model first (step 1).", print_exception=False)
        n_clusters = None
        if k_mode == "known":
            if k_value is None or int(k_value) < 1:
                raise gr.Error("Give the number of categories (1 or more), or let the app estimate it.",
                               print_exception=False)
            n_clusters = int(k_value)
        self._replace(previous)
        try:
            job = self.bench.start_discovery(folder, model=model, n_clusters=n_clusters, max_clusters=int(max_k),
                                             loss=loss, epochs=int(epochs) if epochs else None, device=device,
                                             labelled=bool(labelled),
                                             self_training_steps=SELF_TRAINING_STEPS if sharpen else 0)
        except L2CError as exc:
            _fail(exc)
        return self._reset_outputs(job.id, views.progress_html(job.snapshot(), what="run"),
                                   views.DISCOVER_SERIES)

    def start_adaptation(self, source, target, method, epochs, device, labelled, previous: str | None = None):
        self._replace(previous)
        try:
            job = self.bench.start_adaptation(source, target, method=method,
                                              epochs=int(epochs) if epochs else None, device=device,
                                              labelled=bool(labelled))
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
            return {self.spn.timer: gr.Timer(active=False)}
        seen = dict(seen or {})
        snap = job.snapshot()
        out = {self.spn.progress: views.progress_html(snap, what="training")}
        if snap.version != seen.get("curves"):
            points, version = job.metrics.read()
            out[self.spn.curves] = views.curves_json(points, views.SIMILARITY_SERIES, x="epoch", x_title="epoch")
            seen["curves"] = version
        if job.finished:
            out[self.spn.timer] = gr.Timer(active=False)
            if job.result is not None and seen.get("result") != job.id:
                res = job.result
                seen["result"] = job.id
                out[self.spn_result] = (f"Saved as **{res['name']}** (`{res['path']}`); it is now selected in the "
                                        "list above.\n\n" + views.model_card_markdown(res["name"], res["card"]))
                out[self.model] = gr.update(choices=list(self.bench.models()), value=res["name"])
                out[self.card] = self._card_text(res["name"])
        out[self.spn.seen] = seen
        return out

    def _poller(self, kind: str, run: RunPanel, e: ExplorePanel):
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

    # -- handlers: explore --------------------------------------------------------------------------------

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

    def save_model(self, job_id: str, out_dir: str):
        try:
            path = self.bench.save_model(job_id, out_dir or None)
        except L2CError as exc:
            _fail(exc)
        return gr.update(value=str(path), visible=True), f"Saved the clustering model as `{path}`."


def build_app(bench: Workbench, *, folder: str | None = None) -> tuple[gr.Blocks, App]:
    """The page for ``bench`` and the object holding its handlers."""
    app = App(bench, folder=folder)
    return app.build(), app


def launch_options(bench: Workbench) -> dict:
    """Keyword arguments for ``Blocks.launch`` that every entry point shares (security included)."""
    served = [str(p) for p in bench.workspace.served_dirs()]
    return dict(
        share=False,
        allowed_paths=served,
        css=asset("app.css"),
        theme=gr.themes.Soft(),
        footer_links=["api"],
    )

"""The page's layout: every widget, where it sits and what it first shows; no event handling here.

:class:`Page` builds the widgets inside the caller's ``gr.Blocks``; :mod:`l2c_explorer.app.handlers` holds
what happens when they are used, and :mod:`l2c_explorer.app.ui` connects the two. Every widget that sets
an option of a run is made from that option's spec (:mod:`l2c_explorer.options`): its label, first value,
choices and range, so the page offers exactly what the estimators accept.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import gradio as gr

from ..options import ADAPT, ASSIGN, DISCOVER, TRAIN_SIMILARITY, RunSpec, Whole
from ..recipes import PRETRAINED_TOP

TICK_SECONDS = 1.0
# the words of the explore and results steps of each kind of run
DISCOVER_RESULTS = dict(
    group_word="group", groups_word="groups", savable=True, explore_title="## 4 · Explore",
    explore_help="Each point is one image, placed so that images the model finds alike are close (a UMAP map). "
                 "Colours show the groups found.", results_title="## 5 · Results")
ADAPT_RESULTS = dict(
    group_word="category", groups_word="categories", savable=False,
    explore_title="### Explore the target images by predicted category",
    explore_help="Each point is one target image, placed so that images the network finds alike are close. "
                 "Colours show the predicted source category.", results_title="### Results")

# What the Train tab learns from a labelled folder: (label, recipe of l2c_explorer.recipes)
SIMILARITY_KINDS = [
    ("Drawings, symbols, digits: a small network trained from scratch", "default"),
    ("Photographs: a top on the ImageNet-pretrained EfficientNet-Lite0 (installed with l2c-explorer; its features "
     "are computed once, then a few minutes of training on a CPU)", PRETRAINED_TOP),
]


def asset(name: str) -> str:
    return resources.files("l2c_explorer.app").joinpath("assets", name).read_text(encoding="utf-8")


def option_widget(kind: type, spec: RunSpec, name: str, **layout) -> gr.components.Component:
    """A widget of ``kind`` (gr.Slider, gr.Radio, ...) for option ``name`` of ``spec``, as its spec describes it."""
    option = spec[name]
    w = option.widget
    args = dict(label=w.label, value=w.first_value(option), **layout)
    if w.info:
        args["info"] = w.info
    if kind in (gr.Radio, gr.Dropdown) and option.allowed is not None:
        args["choices"] = w.choices(option)
    if kind in (gr.Slider, gr.Number):
        args.update(minimum=w.minimum, maximum=w.maximum)
    if kind is gr.Slider:
        args["step"] = w.step
    if kind is gr.Number and isinstance(option.allowed, Whole):
        args["precision"] = 0
    return kind(**{k: v for k, v in args.items() if v is not None or k == "value"})


def browse_start(folder: str | None, demos: dict[str, Path]) -> Path:
    """Where "Browse this computer" first looks: beside the folder opened, else among the sample folders."""
    if folder:
        return Path(folder).parent
    if demos:
        return Path(next(iter(demos.values()))).parent
    return Path.home()


# ---------------------------------------------------------------------------------------------------
# reusable pieces


def curves_component(elem_id: str, head: str) -> gr.HTML:
    template = ('<div class="l2c-curves" data-points="0"></div>'
                '<div class="l2c-curves-empty">The curves appear here as soon as the run has something to show.</div>'
                '<div class="l2c-spectrum-note"></div>')
    return gr.HTML(value="", html_template=template, js_on_load=asset("curves.js"), head=head, elem_id=elem_id,
                   padding=False)


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
      click a point or a legend entry: show only its {group} · zoom tool: zoom, double-click: zoom out</span>
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
    message: gr.HTML  # a problem with the run's settings, under its Start button
    progress: gr.HTML
    curves: gr.HTML
    timer: gr.Timer
    seen: gr.State


def run_panel(prefix: str, head: str, start_label: str = "Start") -> RunPanel:
    with gr.Row():
        start = gr.Button(start_label, variant="primary", elem_id=f"{prefix}-start", scale=2)
        stop = gr.Button("Stop", variant="stop", elem_id=f"{prefix}-stop", scale=1)
    message = gr.HTML(elem_id=f"{prefix}-message")
    progress = gr.HTML(elem_id=f"{prefix}-progress")
    curves = curves_component(f"{prefix}-curves", head)
    job = gr.Textbox(visible=False, elem_id=f"{prefix}-job")
    return RunPanel(job=job, start=start, stop=stop, message=message, progress=progress, curves=curves,
                    timer=gr.Timer(TICK_SECONDS, active=False), seen=gr.State({}))


@dataclass
class TeachPanel:
    """Teach it: questions with Same / Different / Skip, merge, split, "not here", the answers and Undo."""

    ask: gr.Button
    question: gr.HTML
    current: gr.State
    same: gr.Button
    different: gr.Button
    skip: gr.Button
    groups: gr.Dropdown
    merge: gr.Button
    split_group: gr.Dropdown
    propose_split: gr.Button
    split_first: gr.Gallery
    split_second: gr.Gallery
    confirm_split: gr.Button
    not_here: gr.Button
    status: gr.Markdown
    answers: gr.Dataframe
    undo: gr.Button
    relearn: gr.Button
    stop_relearn: gr.Button


def teach_panel(prefix: str) -> TeachPanel:
    """The "Teach it" panel of the explore step (the discover tab only)."""
    with gr.Column(elem_id=f"{prefix}-teach", elem_classes="l2c-teach"):
        gr.Markdown("### Teach it", elem_classes="l2c-step-title")
        gr.Markdown(
            "Correct the groups and the app learns from it at once: answer its questions about two images "
            "(keys **S** same, **D** different, **K** skip, **U** undo), say that two groups are one category, "
            "that a group is two, or that images selected on the map do not belong in their group. Every "
            "answer is about a pair of images; they are saved with the run (`answers.csv`) and exported with "
            "it, and `l2c-explorer discover --constraints answers.csv` gives the same groups. After a few "
            "answers, **Relearn** (key **R**) teaches the model what they mean, so that images "
            "nobody asked about are regrouped too (`--relearn` on the command line); Stop relearning leaves the "
            "groups as they were.",
            elem_classes="l2c-help")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                # the answer buttons wait for a question (an answer to nothing would only be an error)
                ask = gr.Button("Ask me a question", variant="primary", elem_id=f"{prefix}-teach-ask")
                question = gr.HTML(
                    "<div class='l2c-question'>The first question appears here when a run has finished.</div>",
                    elem_id=f"{prefix}-teach-question", js_on_load=asset("teach.js"))
                with gr.Row():
                    same = gr.Button("Same category (S)", variant="primary", elem_id=f"{prefix}-teach-same",
                                     interactive=False)
                    different = gr.Button("Different (D)", variant="stop", elem_id=f"{prefix}-teach-different",
                                          interactive=False)
                    skip = gr.Button("Skip (K)", elem_id=f"{prefix}-teach-skip", interactive=False)
            with gr.Column(scale=2):
                groups = gr.Dropdown(label="Two groups that are one category", choices=[], multiselect=True,
                                     max_choices=2, elem_id=f"{prefix}-teach-groups")
                merge = gr.Button("One category: merge them", elem_id=f"{prefix}-teach-merge", size="sm")
                split_group = gr.Dropdown(label="A group that is two categories", choices=[], value=None,
                                          elem_id=f"{prefix}-teach-split-group")
                propose_split = gr.Button("Split it…", elem_id=f"{prefix}-teach-propose-split", size="sm")
                not_here = gr.Button("The selected images do not belong in their group",
                                     elem_id=f"{prefix}-teach-not-here", size="sm")
        with gr.Row(visible=True):
            split_first = gr.Gallery(label="The split the app proposes: one half", columns=8, height=120,
                                     object_fit="contain", visible=False, elem_id=f"{prefix}-teach-split-first")
            split_second = gr.Gallery(label="the other half", columns=8, height=120, object_fit="contain",
                                      visible=False, elem_id=f"{prefix}-teach-split-second")
        confirm_split = gr.Button("Confirm: these are two categories", visible=False,
                                  elem_id=f"{prefix}-teach-confirm-split", size="sm")
        status = gr.Markdown(elem_id=f"{prefix}-teach-status")
        with gr.Row():
            answers = gr.Dataframe(headers=["#", "how", "image", "other image", "answer"], label="Answers given",
                                   interactive=False, wrap=True, max_height=220, elem_id=f"{prefix}-teach-answers",
                                   scale=5)
            with gr.Column(scale=1, min_width=160):
                relearn = gr.Button("Relearn from the answers (R)", variant="primary",
                                    elem_id=f"{prefix}-teach-relearn", size="sm")
                stop_relearn = gr.Button("Stop relearning", elem_id=f"{prefix}-teach-stop-relearn", size="sm")
                undo = gr.Button("Undo (U)", elem_id=f"{prefix}-teach-undo", size="sm")
    return TeachPanel(ask, question, gr.State(None), same, different, skip, groups, merge, split_group, propose_split,
                      split_first, split_second, confirm_split, not_here, status, answers, undo, relearn,
                      stop_relearn)


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
    rename: gr.Textbox | None  # discoveries only: the groups found may be given names
    rename_btn: gr.Button | None
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
    replace_btn: gr.Button  # shown when the output folder holds an earlier export: the go-ahead to replace it
    export_md: gr.Markdown
    save_btn: gr.Button | None
    model_file: gr.File | None
    teach: TeachPanel | None = None


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
                selection_gallery = gr.Gallery(label="Selected images", columns=5, height=360, object_fit="contain",
                                               elem_id=f"{prefix}-selection", show_label=True,
                                               elem_classes="l2c-gallery")
                with gr.Row():
                    selection_csv_btn = gr.Button("Save the selection as a CSV file", size="sm")
                    selection_csv = gr.File(label="Selection", visible=False, height=60)
            with gr.Column(elem_id=f"{prefix}-cluster-box"):
                cluster = gr.Dropdown(label=f"Look at one {group_word}", choices=[], value=None, interactive=True,
                                      elem_id=f"{prefix}-cluster", allow_custom_value=True)
                rename = rename_btn = None
                if savable:  # the groups of a discovery have no names yet; categories keep theirs
                    with gr.Row(equal_height=False):
                        rename = gr.Textbox(label=f"Name this {group_word}", scale=3, elem_id=f"{prefix}-rename",
                                            placeholder="e.g. the name of what it shows", interactive=False)
                        rename_btn = gr.Button("Rename", scale=1, size="sm", interactive=False,
                                               elem_id=f"{prefix}-rename-btn")
                cluster_md = gr.Markdown(elem_id=f"{prefix}-cluster-md")
                typical = gr.Gallery(label="Most typical", columns=4, height=300, object_fit="contain",
                                     elem_id=f"{prefix}-typical", elem_classes="l2c-gallery")
                uncertain = gr.Gallery(label="Least certain", columns=4, height=300, object_fit="contain",
                                       elem_id=f"{prefix}-uncertain", elem_classes="l2c-gallery")
        clusters = gr.Dataframe(headers=[group_word, "images", "mean confidence"],
                                label=f"All {groups_word} (largest first)", interactive=False, wrap=True,
                                max_height=260, elem_id=f"{prefix}-clusters")
        teach = teach_panel(prefix) if savable else None

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
                                 placeholder=f"a new folder, e.g. ~/Pictures/by-{group_word}", elem_id=f"{prefix}-out")
            mode = gr.Radio([("Copy the images", "copy"), ("Link to them (saves space)", "symlink")],
                            value="copy", label="How", scale=2)
            export_btn = gr.Button("Export", elem_id=f"{prefix}-export", scale=1)
        export_md = gr.Markdown(elem_id=f"{prefix}-export-md")
        replace_btn = gr.Button("Replace the earlier export in this folder", variant="stop", visible=False,
                                elem_id=f"{prefix}-export-replace")
    return ExplorePanel(emap, selection_md, selection_gallery, gr.State([]), selection_csv_btn, selection_csv,
                        cluster, rename, rename_btn, cluster_md, typical, uncertain, clusters, results_md, skipped,
                        assignments, out_dir, mode, export_btn, replace_btn, export_md, save_btn, model_file,
                        teach)


class Page:
    """Every widget of the page, built in the order it is shown (call inside a ``gr.Blocks``).

    ``widgets`` maps (run, option) to the widget that sets that option, e.g. ``("discover", "steps")``.
    """

    def __init__(self, *, folder: str | None, demos: dict[str, Path], head: str):
        self.folder = folder
        self.demos = demos
        self.browse_start = browse_start(folder, demos)
        self.head = head
        self.widgets: dict[tuple[str, str], gr.components.Component] = {}
        self._build()

    def _widget(self, kind: type, spec: RunSpec, name: str, **layout):
        widget = option_widget(kind, spec, name, **layout)
        self.widgets[(spec.name, name)] = widget
        return widget

    def _build(self) -> None:
        with gr.Row(equal_height=True):
            gr.Markdown(
                "# l2c-explorer\n"
                "Find the categories in a folder of images nobody has labelled. A *similarity model*, learnt "
                "from labelled images of other categories, judges which of your images look like the same "
                "kind of thing; the app then learns to sort them into groups and guesses how many groups "
                "there are (Hsu, Lv & Kira, *Learning to cluster*, ICLR 2018).", scale=4)
            with gr.Column(scale=1, min_width=220):
                self.demo_btn = gr.Button("▶ Try the demo: handwritten symbols", variant="primary", elem_id="try-demo")
                self.photo_demo_btn = gr.Button("▶ Try the demo: photos", variant="primary", elem_id="try-photo-demo")
                gr.Markdown("Each uses a shipped similarity model on categories it was never trained on: 520 "
                            "drawings of 26 characters, or 500 photos of 10 everyday things.", elem_classes="l2c-help")
        self.badge = gr.HTML(elem_id="device-badge")
        with gr.Tabs() as self.tabs:
            with gr.Tab("Find categories", id="discover"):
                self._discover_tab()
            with gr.Tab("Same categories, new domain", id="adapt"):
                self._adapt_tab()

    def _discover_tab(self) -> None:
        demo_choices = [(f"{name}", str(path)) for name, path in self.demos.items()]
        # 1 · similarity model
        with gr.Column(elem_id="step-model"):
            gr.Markdown("## 1 · Similarity model", elem_classes="l2c-step-title")
            gr.Markdown("A similarity model looks at two images and says how likely they show the same kind of thing. "
                        "It learnt this from labelled images of *other* categories; the app transfers that skill to "
                        "your images. Pick one, or train your own below.", elem_classes="l2c-help")
            with gr.Row():
                self.model = self._widget(gr.Dropdown, DISCOVER, "similarity", choices=[], scale=4, elem_id="model",
                                          allow_custom_value=True)
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
                self.spn_kind = gr.Radio(choices=SIMILARITY_KINDS, value="default", label="Kind of images",
                                         elem_id="spn-kind")
                with gr.Row():
                    self.spn_name = self._widget(gr.Textbox, TRAIN_SIMILARITY, "name", elem_id="spn-name")
                    self.spn_epochs = self._widget(gr.Slider, TRAIN_SIMILARITY, "epochs", elem_id="spn-epochs")
                    self.spn_depth = self._widget(gr.Slider, TRAIN_SIMILARITY, "class_depth", elem_id="spn-depth")
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
            with gr.Accordion("Browse this computer", open=False, elem_id="browse") as self.browse_box:
                with gr.Row():
                    self.browse_at = gr.Textbox(label="Looking in", value=str(self.browse_start), scale=4,
                                                elem_id="browse-at")
                    self.up_btn = gr.Button("Up one level", scale=1, size="sm")
                    self.use_btn = gr.Button("Use this folder", scale=1, size="sm", elem_id="browse-use")
                self.subfolders = gr.Dropdown(label="Sub-folders (pick one to open it)", choices=[], value=None,
                                              elem_id="browse-list")
                self.browse_md = gr.HTML(elem_id="browse-message")
            self.folder_md = gr.Markdown(elem_id="folder-report")
            self.fit_note = gr.Markdown(elem_id="model-fit")
            self.sample = gr.Gallery(label="A sample of the images", columns=12, height=140, object_fit="contain",
                                     elem_id="folder-sample", elem_classes="l2c-gallery")
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
                self.k_value = self._widget(gr.Number, DISCOVER, "n_clusters", visible=False, elem_id="k-value")
                self.max_k = self._widget(gr.Slider, DISCOVER, "max_clusters", elem_id="max-k")
            with gr.Row():
                self.loss = self._widget(gr.Radio, DISCOVER, "loss", elem_id="loss")
                self.steps = self._widget(gr.Slider, DISCOVER, "steps", elem_id="steps")
                self.device = self._widget(gr.Dropdown, DISCOVER, "device", elem_id="device")
                self.widgets[(TRAIN_SIMILARITY.name, "device")] = self.device  # training a model uses it too
                self.widgets[(ASSIGN.name, "device")] = self.device  # and adding images to a finished run
            self.sharpen = self._widget(gr.Checkbox, DISCOVER, "self_training_steps", elem_id="sharpen")
            self.run = run_panel("discover", self.head, "Start")

        self.explore = explore_panel("discover", self.head, **DISCOVER_RESULTS)  # 4 · explore, 5 · results
        with gr.Column(elem_id="step-add"):
            gr.Markdown("### Add new images to these groups", elem_classes="l2c-step-title")
            gr.Markdown("New images of the same kind? Put them into the groups found above without starting over: "
                        "each goes to the group of the images it looks most alike, and images unlike every group "
                        "are set apart. The new folder is only read.", elem_classes="l2c-help")
            with gr.Row():
                self.add_folder = gr.Textbox(label="Folder of new images", scale=4, elem_id="add-folder")
                self.add_btn = gr.Button("Add images", scale=1, elem_id="add-images")
            self.add_md = gr.Markdown(elem_id="add-md")
            self.add_csv = gr.File(label="Their assignments (CSV)", visible=False, height=60)
            self.add_unlike = gr.Gallery(label="Unlike every group", columns=8, height=170, object_fit="contain",
                                         elem_id="add-unlike")
            self.add_assigned = gr.Gallery(label="Put into a group", columns=8, height=170, object_fit="contain",
                                           elem_id="add-assigned")

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
            self.adapt_method = self._widget(gr.Dropdown, ADAPT, "method", elem_id="adapt-method")
            self.adapt_epochs = self._widget(gr.Number, ADAPT, "epochs", elem_id="adapt-epochs")
            self.adapt_device = self._widget(gr.Dropdown, ADAPT, "device", elem_id="adapt-device")
        self.adapt_run = run_panel("adapt", self.head, "Start")
        self.adapt_explore = explore_panel("adapt", self.head, **ADAPT_RESULTS)

"""The Gradio page: the layout (:mod:`.layout`) wired to its event handlers (:mod:`.handlers`).

The page is a thin layer of widgets over :class:`~l2c_explorer.app.workbench.Workbench`. The id of a tab's
run is put in the page's URL (``?job=...``), so a reload reconnects to it, and two tabs never share a run.
Every event that starts or reads a job has an explicit ``api_name`` so it can be driven by
``gradio_client`` (see ``tests/app``).
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ..files import write_bytes
from .handlers import Handlers
from .layout import ExplorePanel, Page, RunPanel, asset
from .workbench import Workbench, demo_folders

PLOTLY_FILE = "plotly.min.js"
# Events the page needs but the API does not offer. Their own name keeps Gradio from naming them after their
# handler: a private event wired before a public one with the same handler would otherwise take its name and
# rename the public endpoint (/check_folder -> /check_folder_1). Gradio numbers the repeats (private_1, ...).
PRIVATE = {"api_visibility": "private", "api_name": "private"}


def install_static(bench: Workbench) -> Path:
    """Copy plotly.js (from the installed plotly package) into the app's static folder; return its path."""
    import plotly

    src = Path(plotly.__file__).parent / "package_data" / PLOTLY_FILE
    dest = bench.workspace.static / f"plotly-{plotly.__version__}.min.js"
    if not dest.exists() or dest.stat().st_size != src.stat().st_size:
        write_bytes(dest, src.read_bytes())
    return dest


def file_url(path: Path) -> str:
    """The page-relative URL Gradio serves a file of an allowed folder under."""
    return f"gradio_api/file={Path(path).as_posix()}"


# JS run in the browser: put the run id in the URL (reload reconnects), and isolate a cluster on the map.
def _url_js(param: str) -> str:
    return (f"(id) => {{ const u = new URL(window.location.href); if (id) {{ u.searchParams.set('{param}', id); }}"
            f" else {{ u.searchParams.delete('{param}'); }} window.history.replaceState(null, '', u); return id; }}")


def _isolate_js(map_id: str) -> str:
    return (f"(job, c) => {{ const m = document.querySelector('#{map_id} .l2c-map');"
            " if (m && m.l2c) { m.l2c.isolate(c === null || c === undefined || Number(c) < 0 ? null : c); }"
            " return [job, c]; }")


class Wiring:
    """Connects each widget's events to a handler (call inside the page's ``gr.Blocks``)."""

    def __init__(self, demo: gr.Blocks, page: Page, handlers: Handlers):
        self.page, self.handlers = page, handlers
        self.wire_load(demo)
        self.wire_discover()
        self.wire_adapt()

    def folder_inputs(self) -> list:
        p = self.page
        return [p.folder_tb, p.model]

    def folder_outputs(self) -> list:
        p = self.page
        return [p.folder_md, p.sample, p.folder_skipped, p.labelled, p.folder_tb, p.model, p.card, p.fit_note]

    def discover_inputs(self) -> list:
        p = self.page
        return [p.folder_tb, p.model, p.k_mode, p.k_value, p.max_k, p.loss, p.steps, p.device, p.labelled, p.sharpen,
                p.run.job]

    def start_outputs(self, run: RunPanel, e: ExplorePanel) -> list:
        return [run.job, run.progress, run.curves, run.timer, run.seen, e.map, e.results_md, e.cluster, e.clusters,
                e.typical, e.uncertain, e.selection_gallery, e.selection_md, e.assignments, e.export_md]

    def wire_load(self, demo: gr.Blocks) -> None:
        p, h = self.page, self.handlers
        outputs = [p.model, p.card, p.badge,
                   p.run.job, p.run.timer, p.run.seen,
                   p.spn.job, p.spn.timer, p.spn.seen,
                   p.adapt_run.job, p.adapt_run.timer, p.adapt_run.seen,
                   p.folder_tb, p.labelled, p.adapt_intro, p.tabs,
                   p.adapt_source, p.adapt_target, p.adapt_method, p.adapt_labelled]
        demo.load(h.on_load, inputs=None, outputs=outputs, api_name="restore", show_progress="hidden")
        if p.folder:
            demo.load(h.check_folder, inputs=self.folder_inputs(), outputs=self.folder_outputs(),
                      **PRIVATE, show_progress="hidden")
        for button, kind, api_name in ((p.demo_btn, "symbols", "fill_demo"), (p.photo_demo_btn, "photos",
                                                                              "fill_photo_demo")):
            button.click(
                lambda kind=kind: h.fill_demo(kind),
                outputs=[p.model, p.card, p.folder_tb, p.labelled, p.k_mode, p.k_value, p.steps], api_name=api_name,
            ).success(
                h.check_folder, inputs=self.folder_inputs(), outputs=self.folder_outputs(), **PRIVATE,
            ).success(
                h.start_discovery, inputs=self.discover_inputs(), outputs=self.start_outputs(p.run, p.explore),
                **PRIVATE,
            ).success(None, js=_url_js("job"), inputs=[p.run.job])

    def wire_discover(self) -> None:
        p, h = self.page, self.handlers
        p.refresh.click(h.refresh_models, inputs=[p.model], outputs=[p.model, p.card], api_name="list_models")
        p.model.change(h.show_card, inputs=[p.model], outputs=[p.card], api_name="model_card", show_progress="hidden")
        p.model.input(h.fit_note, inputs=[p.folder_tb, p.model], outputs=[p.fit_note], api_name="model_fit",
                      show_progress="hidden")
        # folder
        folder_outputs = self.folder_outputs()
        folder_inputs = self.folder_inputs()
        p.check_btn.click(h.check_folder, inputs=folder_inputs, outputs=folder_outputs, api_name="check_folder")
        p.folder_tb.submit(h.check_folder, inputs=folder_inputs, outputs=folder_outputs, **PRIVATE)
        p.demo_dd.input(lambda path: path, inputs=[p.demo_dd], outputs=[p.folder_tb], **PRIVATE).then(
            h.check_folder, inputs=folder_inputs, outputs=folder_outputs, **PRIVATE)
        p.browse_at.submit(h.browse, inputs=[p.browse_at], outputs=[p.browse_at, p.subfolders], api_name="browse")
        p.subfolders.input(h.browse_into, inputs=[p.browse_at, p.subfolders], outputs=[p.browse_at, p.subfolders],
                           **PRIVATE)
        p.up_btn.click(h.browse_up, inputs=[p.browse_at], outputs=[p.browse_at, p.subfolders],
                       **PRIVATE)
        p.use_btn.click(lambda path: path, inputs=[p.browse_at], outputs=[p.folder_tb], **PRIVATE).then(
            h.check_folder, inputs=folder_inputs, outputs=folder_outputs, **PRIVATE)
        p.k_mode.change(lambda mode: gr.update(visible=mode == "known"), inputs=[p.k_mode], outputs=[p.k_value],
                        **PRIVATE, show_progress="hidden")
        # similarity training
        p.spn_demo.input(lambda path: (path, 1), inputs=[p.spn_demo], outputs=[p.spn_folder, p.spn_depth],
                         **PRIVATE)
        p.spn.start.click(
            h.start_similarity, inputs=[p.spn_folder, p.spn_name, p.spn_epochs, p.spn_depth, p.device, p.spn.job],
            outputs=[p.spn.job, p.spn.progress, p.spn.curves, p.spn.timer, p.spn.seen, p.spn_result],
            api_name="start_similarity", concurrency_limit=None,
        ).success(None, js=_url_js("train"), inputs=[p.spn.job])
        p.spn.stop.click(h.stop_job, inputs=[p.spn.job], outputs=[p.spn.progress], api_name="stop_similarity",
                         concurrency_limit=None)
        p.spn.timer.tick(h.poll_similarity, inputs=[p.spn.job, p.spn.seen],
                         outputs=[p.spn.progress, p.spn.curves, p.spn.timer, p.spn.seen, p.spn_result, p.model, p.card],
                         api_name="poll_similarity", concurrency_limit=None, show_progress="hidden")
        # discovery
        p.run.start.click(
            h.start_discovery, inputs=self.discover_inputs(), outputs=self.start_outputs(p.run, p.explore),
            api_name="start_discovery", concurrency_limit=None,
        ).success(None, js=_url_js("job"), inputs=[p.run.job])
        p.run.stop.click(h.stop_job, inputs=[p.run.job], outputs=[p.run.progress], api_name="stop_discovery",
                         concurrency_limit=None)
        self.wire_explore(p.run, p.explore, "discover")
        p.add_btn.click(h.add_images, inputs=[p.run.job, p.add_folder, p.device],
                        outputs=[p.add_md, p.add_csv, p.add_unlike, p.add_assigned], api_name="add_images")

    def wire_adapt(self) -> None:
        p, h = self.page, self.handlers
        p.adapt_source_demo.input(lambda path: path, inputs=[p.adapt_source_demo], outputs=[p.adapt_source],
                                  **PRIVATE)
        p.adapt_target_demo.input(lambda path: path, inputs=[p.adapt_target_demo], outputs=[p.adapt_target],
                                  **PRIVATE)
        p.adapt_run.start.click(
            h.start_adaptation,
            inputs=[p.adapt_source, p.adapt_target, p.adapt_method, p.adapt_epochs, p.adapt_device, p.adapt_labelled,
                    p.adapt_run.job],
            outputs=self.start_outputs(p.adapt_run, p.adapt_explore), api_name="start_adaptation",
            concurrency_limit=None,
        ).success(None, js=_url_js("adapt"), inputs=[p.adapt_run.job])
        p.adapt_run.stop.click(h.stop_job, inputs=[p.adapt_run.job], outputs=[p.adapt_run.progress],
                               api_name="stop_adaptation", concurrency_limit=None)
        self.wire_explore(p.adapt_run, p.adapt_explore, "adapt")

    def wire_explore(self, run: RunPanel, e: ExplorePanel, kind: str) -> None:
        h = self.handlers
        poll_outputs = [run.progress, run.curves, run.timer, run.seen, e.map, e.results_md, e.skipped, e.cluster,
                        e.clusters, e.assignments]
        if e.save_btn is not None:
            poll_outputs.append(e.save_btn)
        run.timer.tick(h.poller(kind, run, e), inputs=[run.job, run.seen], outputs=poll_outputs,
                       api_name=f"poll_{'discovery' if kind == 'discover' else 'adaptation'}",
                       concurrency_limit=None, show_progress="hidden")
        # selection on the map (lasso / box), and its client-callable twin
        e.map.points_selected(h.on_points_selected, inputs=[run.job],
                              outputs=[e.selection_md, e.selection_gallery, e.selection],
                              **PRIVATE, concurrency_limit=None, show_progress="hidden")
        e.map.cluster_clicked(h.on_cluster_clicked, inputs=None, outputs=[e.cluster],
                              **PRIVATE, show_progress="hidden")
        e.cluster.change(h.show_cluster, inputs=[run.job, e.cluster], outputs=[e.cluster_md, e.typical, e.uncertain],
                         js=_isolate_js(f"{kind}-map"), api_name=f"show_cluster_{kind}", concurrency_limit=None,
                         show_progress="hidden")
        e.selection_csv_btn.click(h.selection_csv, inputs=[run.job, e.selection], outputs=[e.selection_csv],
                                  **PRIVATE)
        e.export_btn.click(h.export, inputs=[run.job, e.out_dir, e.mode], outputs=[e.export_md],
                           api_name=f"export_{kind}")
        if e.save_btn is not None:
            e.save_btn.click(h.save_model, inputs=[run.job, e.out_dir], outputs=[e.model_file, e.export_md],
                             api_name=f"save_model_{kind}")
        gr.api(h.select_points, api_name=f"select_points_{kind}")


def build_app(bench: Workbench, *, folder: str | None = None) -> tuple[gr.Blocks, Handlers]:
    """The page for ``bench`` and the object holding its handlers."""
    head = f'<script src="{file_url(install_static(bench))}"></script>'
    with gr.Blocks(title="l2c-explorer", analytics_enabled=False) as demo:
        page = Page(folder=folder, demos=demo_folders(), head=head)
        handlers = Handlers(bench, page, thumb_prefix=file_url(bench.workspace.thumbnails) + "/")
        Wiring(demo, page, handlers)
    demo.l2c_page = page
    return demo, handlers


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

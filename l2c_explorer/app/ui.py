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
from .access import Access, AccessGuard, same_origin_only
from .folders import demo_folders
from .handlers import Handlers
from .layout import ExplorePanel, Page, RunPanel, asset
from .workbench import Workbench

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


def _confirm_js(progress_id: str, what: str, taught: str | None = None) -> str:
    """Before an event that starts a run: while this tab's run is going (or, with ``taught``, when its groups
    hold a person's answers), ask before discarding it.

    Throwing cancels the event (Gradio then sends nothing to the server); the arguments go on unchanged.
    """
    ask_taught = ""
    if taught is not None:  # the marker the teach panel writes (TeachHandlers._teach_marker)
        ask_taught = (" const t = document.querySelector('#discover-teach-question .l2c-taught');"
                      " const n = t ? Number(t.dataset.answers) : 0;"
                      f" if (!busy && n > 0 && !window.confirm({taught!r}.replace('{{n}}', n)))"
                      " { throw new Error('l2c-explorer: start cancelled'); }")
    return (f"(...args) => {{ const s = document.querySelector('#{progress_id} [data-status]');"
            " const busy = s && ['queued', 'running', 'stopping'].includes(s.dataset.status);"
            f" if (busy && !window.confirm({what!r})) {{ throw new Error('l2c-explorer: start cancelled'); }}"
            f"{ask_taught}"
            " return args.length === 1 ? args[0] : args; }")


DISCARD_RUN = "A run is still going. Stop it and start a new one? What it has learnt so far is discarded."
DISCARD_TAUGHT = ("The groups on this page hold your {n} answers. Start a new run? This run and its answers stay "
                  "saved in its folder, but this page will show the new run.")
DISCARD_TRAINING = "A model is still being trained. Stop it and start again? The unfinished model is discarded."
# Undo takes back the last answer, and with it a relearning that learnt from it: ask before throwing that away.
_UNDO_JS = ("(...args) => { const t = document.querySelector('#discover-teach-question .l2c-taught');"
            " const s = t ? t.dataset.undoRelearning : '';"
            " if (s && !window.confirm(`Undo takes back your last answer and the relearning that learnt from it (it"
            " took ${s} s). Undo both?`)) { throw new Error('l2c-explorer: undo cancelled'); }"
            " return args.length === 1 ? args[0] : args; }")


def _scroll_js(elem_id: str) -> str:
    """Bring a run's Start button to the top of the window, so its progress and curves are in view."""
    return (f"() => {{ const e = document.getElementById('{elem_id}');"
            " if (e) { e.scrollIntoView({block: 'start'}); } }")


class Wiring:
    """Connects each widget's events to a handler (call inside the page's ``gr.Blocks``).

    Events answer quickly and show their own results, so Gradio's loading overlay is hidden
    (``show_progress="hidden"``): it would cover the inputs an event reads while it runs.
    """

    def __init__(self, demo: gr.Blocks, page: Page, handlers: Handlers):
        self.page, self.handlers = page, handlers
        # events with an API name first: an unnamed event takes its function's name, and a later explicit
        # name would get a suffix
        self.wire_discover()
        self.wire_adapt()
        self.wire_load(demo)

    def folder_inputs(self) -> list:
        p = self.page
        return [p.folder_tb, p.model]

    def folder_outputs(self) -> list:
        p = self.page
        return [p.folder_md, p.sample, p.folder_skipped, p.labelled, p.folder_tb, p.model, p.card, p.fit_note]

    def discover_inputs(self) -> list:
        p = self.page
        return [p.folder_tb, p.model, p.k_mode, p.k_value, p.max_k, p.loss, p.steps, p.device, p.labelled, p.sharpen,
                p.run.job, p.folder_md]

    def start_outputs(self, run: RunPanel, e: ExplorePanel) -> list:
        outputs = [run.job, run.message, run.progress, run.curves, run.timer, run.seen, e.map, e.results_md, e.cluster,
                   e.clusters, e.typical, e.uncertain, e.selection_gallery, e.selection_md, e.assignments,
                   e.export_md, e.replace_btn, e.cluster_md]
        if e.rename is not None:
            outputs += [e.rename, e.rename_btn]
        return outputs

    def discover_outputs(self) -> list:
        """A discovery's start also writes next to the folder box (a problem there, or clearing an old one)."""
        return [*self.start_outputs(self.page.run, self.page.explore), self.page.folder_md]

    def wire_load(self, demo: gr.Blocks) -> None:
        p, h = self.page, self.handlers
        outputs = [p.model, p.card, p.badge, p.browse_at, p.subfolders,
                   p.run.job, p.run.timer, p.run.seen,
                   p.spn.job, p.spn.timer, p.spn.seen,
                   p.adapt_run.job, p.adapt_run.timer, p.adapt_run.seen,
                   p.folder_tb, p.labelled, p.k_mode, p.k_value, p.max_k, p.loss, p.steps, p.device, p.sharpen,
                   p.adapt_intro, p.tabs,
                   p.adapt_source, p.adapt_target, p.adapt_method, p.adapt_labelled, p.adapt_epochs, p.adapt_device]
        demo.load(h.on_load, inputs=None, outputs=outputs, api_name="restore", show_progress="hidden")
        if p.folder:
            demo.load(h.check_folder, inputs=self.folder_inputs(), outputs=self.folder_outputs(),
                      **PRIVATE, show_progress="hidden")
        for button, kind, api_name in ((p.demo_btn, "symbols", "fill_demo"),
                                       (p.photo_demo_btn, "photos", "fill_photo_demo")):
            button.click(
                lambda kind=kind: h.fill_demo(kind),
                outputs=[p.model, p.card, p.folder_tb, p.labelled, p.k_mode, p.k_value, p.steps, p.run.message],
                js=_confirm_js("discover-progress", DISCARD_RUN, DISCARD_TAUGHT), api_name=api_name, show_progress="hidden",
            ).success(
                None, js=_scroll_js("discover-start"),
            ).success(
                h.check_folder, inputs=self.folder_inputs(), outputs=self.folder_outputs(), **PRIVATE,
                show_progress="hidden",
            ).success(
                h.start_discovery, inputs=self.discover_inputs(), outputs=self.discover_outputs(),
                **PRIVATE, show_progress="hidden",
            ).success(None, js=_url_js("job"), inputs=[p.run.job]
            ).success(None, js=_scroll_js("discover-start"))  # again: the folder's sample has moved the page

    def wire_discover(self) -> None:
        p, h = self.page, self.handlers
        quiet = dict(show_progress="hidden")
        p.refresh.click(h.refresh_models, inputs=[p.model], outputs=[p.model, p.card], api_name="list_models", **quiet)
        p.model.change(h.show_card, inputs=[p.model], outputs=[p.card], api_name="model_card", **quiet)
        p.model.input(h.fit_note, inputs=[p.folder_tb, p.model], outputs=[p.fit_note], api_name="model_fit", **quiet)
        # folder
        folder_outputs = self.folder_outputs()
        folder_inputs = self.folder_inputs()
        p.check_btn.click(h.check_folder, inputs=folder_inputs, outputs=folder_outputs, api_name="check_folder",
                          **quiet)
        p.folder_tb.submit(h.check_folder, inputs=folder_inputs, outputs=folder_outputs, **PRIVATE, **quiet)
        p.demo_dd.input(lambda path: path, inputs=[p.demo_dd], outputs=[p.folder_tb], **PRIVATE,
                        **quiet).then(h.check_folder, inputs=folder_inputs, outputs=folder_outputs, **PRIVATE, **quiet)
        browse_outputs = [p.browse_at, p.subfolders, p.browse_md]
        p.browse_box.expand(h.browse_open, inputs=[p.folder_tb, p.browse_at], outputs=browse_outputs,
                            **PRIVATE, **quiet)
        p.browse_at.submit(h.browse, inputs=[p.browse_at], outputs=browse_outputs, api_name="browse", **quiet)
        p.subfolders.input(h.browse_into, inputs=[p.browse_at, p.subfolders], outputs=browse_outputs,
                           **PRIVATE, **quiet)
        p.up_btn.click(h.browse_up, inputs=[p.browse_at], outputs=browse_outputs, **PRIVATE, **quiet)
        p.use_btn.click(lambda path: path, inputs=[p.browse_at], outputs=[p.folder_tb], **PRIVATE,
                        **quiet).then(h.check_folder, inputs=folder_inputs, outputs=folder_outputs, **PRIVATE, **quiet)
        p.k_mode.change(lambda mode: gr.update(visible=mode == "known"), inputs=[p.k_mode], outputs=[p.k_value],
                        **PRIVATE, **quiet)
        # similarity training
        p.spn_demo.input(lambda path: (path, 1), inputs=[p.spn_demo], outputs=[p.spn_folder, p.spn_depth],
                         **PRIVATE, **quiet)
        p.spn.start.click(
            h.start_similarity, inputs=[p.spn_folder, p.spn_name, p.spn_epochs, p.spn_depth, p.spn_kind, p.device,
                                        p.spn.job],
            outputs=[p.spn.job, p.spn.message, p.spn.progress, p.spn.curves, p.spn.timer, p.spn.seen, p.spn_result],
            js=_confirm_js("spn-progress", DISCARD_TRAINING), api_name="start_similarity", concurrency_limit=None,
            **quiet,
        ).success(None, js=_url_js("train"), inputs=[p.spn.job])
        p.spn.stop.click(h.stop_job, inputs=[p.spn.job], outputs=[p.spn.progress], api_name="stop_similarity",
                         concurrency_limit=None, **quiet)
        p.spn.timer.tick(h.poll_similarity, inputs=[p.spn.job, p.spn.seen],
                         outputs=[p.spn.progress, p.spn.curves, p.spn.timer, p.spn.seen, p.spn_result, p.model, p.card],
                         api_name="poll_similarity", concurrency_limit=None, **quiet)
        # discovery
        p.run.start.click(
            h.start_discovery, inputs=self.discover_inputs(), outputs=self.discover_outputs(),
            js=_confirm_js("discover-progress", DISCARD_RUN, DISCARD_TAUGHT), api_name="start_discovery", concurrency_limit=None,
            **quiet,
        ).success(None, js=_url_js("job"), inputs=[p.run.job])
        p.run.stop.click(h.stop_job, inputs=[p.run.job], outputs=[p.run.progress], api_name="stop_discovery",
                         concurrency_limit=None, **quiet)
        self.wire_explore(p.run, p.explore, "discover")
        p.add_btn.click(h.add_images, inputs=[p.run.job, p.add_folder, p.device],
                        outputs=[p.add_md, p.add_csv, p.add_unlike, p.add_assigned], api_name="add_images")

    def wire_adapt(self) -> None:
        p, h = self.page, self.handlers
        quiet = dict(show_progress="hidden")
        p.adapt_source_demo.input(lambda path: path, inputs=[p.adapt_source_demo], outputs=[p.adapt_source],
                                  **PRIVATE, **quiet)
        p.adapt_target_demo.input(lambda path: path, inputs=[p.adapt_target_demo], outputs=[p.adapt_target],
                                  **PRIVATE, **quiet)
        p.adapt_run.start.click(
            h.start_adaptation,
            inputs=[p.adapt_source, p.adapt_target, p.adapt_method, p.adapt_epochs, p.adapt_device, p.adapt_labelled,
                    p.adapt_run.job],
            outputs=self.start_outputs(p.adapt_run, p.adapt_explore), js=_confirm_js("adapt-progress", DISCARD_RUN),
            api_name="start_adaptation", concurrency_limit=None, **quiet,
        ).success(None, js=_url_js("adapt"), inputs=[p.adapt_run.job])
        p.adapt_run.stop.click(h.stop_job, inputs=[p.adapt_run.job], outputs=[p.adapt_run.progress],
                               api_name="stop_adaptation", concurrency_limit=None, **quiet)
        self.wire_explore(p.adapt_run, p.adapt_explore, "adapt")

    def wire_explore(self, run: RunPanel, e: ExplorePanel, kind: str) -> None:
        h = self.handlers
        quiet = dict(show_progress="hidden")
        poll_outputs = [run.progress, run.curves, run.timer, run.seen, e.map, e.results_md, e.skipped, e.cluster,
                        e.clusters, e.assignments]
        if e.save_btn is not None:
            poll_outputs.append(e.save_btn)
        if e.teach is not None:  # the first question appears when the run is done
            t = e.teach
            poll_outputs += [t.question, t.current, t.same, t.different, t.skip, t.ask, t.status, t.groups,
                             t.split_group, t.relearn]
        run.timer.tick(h.poller(kind, run, e), inputs=[run.job, run.seen], outputs=poll_outputs,
                       api_name=f"poll_{'discovery' if kind == 'discover' else 'adaptation'}",
                       concurrency_limit=None, **quiet)
        # selection on the map (lasso / box), and its client-callable twin
        e.map.points_selected(h.on_points_selected, inputs=[run.job],
                              outputs=[e.selection_md, e.selection_gallery, e.selection],
                              **PRIVATE, concurrency_limit=None, **quiet)
        e.map.cluster_clicked(h.on_cluster_clicked, inputs=None, outputs=[e.cluster],
                              **PRIVATE, **quiet)
        cluster_outputs = [e.cluster_md, e.typical, e.uncertain]
        if e.rename is not None:
            show = h.show_cluster
            cluster_outputs += [e.rename, e.rename_btn]
        else:
            def show(job_id, cluster):
                return h.show_cluster(job_id, cluster)[:3]
        e.cluster.change(show, inputs=[run.job, e.cluster], outputs=cluster_outputs,
                         js=_isolate_js(f"{kind}-map"), api_name=f"show_cluster_{kind}", concurrency_limit=None,
                         **quiet)
        if e.rename is not None:
            renamed = [e.clusters, e.cluster, e.rename, e.cluster_md, e.map, e.results_md, e.skipped, e.assignments]
            if e.save_btn is not None:
                renamed.append(e.save_btn)
            for trigger in (e.rename_btn.click, e.rename.submit):
                trigger(h.rename_group(kind, e), inputs=[run.job, e.cluster, e.rename], outputs=renamed,
                        api_name=f"rename_group_{kind}" if trigger == e.rename_btn.click else "private",
                        api_visibility="public" if trigger == e.rename_btn.click else "private", **quiet)
        e.selection_csv_btn.click(h.selection_csv, inputs=[run.job, e.selection],
                                  outputs=[e.selection_csv, e.selection_md], **PRIVATE, **quiet)
        e.export_btn.click(h.export, inputs=[run.job, e.out_dir, e.mode], outputs=[e.export_md, e.replace_btn],
                           api_name=f"export_{kind}", show_progress="minimal")
        e.replace_btn.click(h.replace_export, inputs=[run.job, e.out_dir, e.mode], outputs=[e.export_md, e.replace_btn],
                            api_name=f"replace_export_{kind}", show_progress="minimal")
        # a go-ahead is for one folder only: another folder takes the button and its explanation away
        e.out_dir.change(h.export_folder_changed, inputs=[e.export_md], outputs=[e.export_md, e.replace_btn],
                         **PRIVATE, **quiet)
        if e.save_btn is not None:
            e.save_btn.click(h.save_model, inputs=[run.job, e.out_dir],
                             outputs=[e.model_file, e.export_md, e.replace_btn], api_name=f"save_model_{kind}", **quiet)
        gr.api(h.select_points, api_name=f"select_points_{kind}")
        if e.teach is not None:
            self.wire_teach(run, e)

    def wire_teach(self, run: RunPanel, e: ExplorePanel) -> None:
        h, t = self.handlers, e.teach
        outputs = h.teach_outputs()
        t.ask.click(h.teach_ask, inputs=[run.job], outputs=outputs, api_name="teach_ask")
        for button, fn, name in ((t.same, h.teach_same, "teach_same"), (t.different, h.teach_different,
                                 "teach_different"), (t.skip, h.teach_skip, "teach_skip")):
            button.click(fn, inputs=[run.job, t.current], outputs=outputs, api_name=name)
        t.merge.click(h.teach_merge, inputs=[run.job, t.groups], outputs=outputs, api_name="teach_merge")
        t.propose_split.click(h.teach_propose_split, inputs=[run.job, t.split_group],
                              outputs=[t.split_first, t.split_second, t.confirm_split, t.status],
                              api_name="teach_propose_split")
        t.confirm_split.click(h.teach_split, inputs=[run.job, t.split_group], outputs=outputs, api_name="teach_split")
        t.not_here.click(h.teach_not_here, inputs=[run.job, e.selection], outputs=outputs, api_name="teach_not_here")
        t.undo.click(h.teach_undo, inputs=[run.job], outputs=outputs, api_name="teach_undo", js=_UNDO_JS)
        # the page follows a relearning as it follows a run (curves, time left), then shows its groups
        t.relearn.click(h.teach_relearn_follow, inputs=[run.job], outputs=[run.timer], **PRIVATE,
                        show_progress="hidden", concurrency_limit=None)
        t.relearn.click(h.teach_relearn, inputs=[run.job], outputs=outputs, api_name="teach_relearn")
        # its own queue: a relearning under way must not hold it up
        t.stop_relearn.click(h.teach_stop_relearn, inputs=[run.job], outputs=[t.status], api_name="teach_stop_relearn",
                             concurrency_limit=None)


def build_app(bench: Workbench, *, folder: str | None = None) -> tuple[gr.Blocks, Handlers]:
    """The page for ``bench`` and the object holding its handlers."""
    head = f'<script src="{file_url(install_static(bench))}"></script>'
    with gr.Blocks(title="l2c-explorer", analytics_enabled=False) as demo:
        page = Page(folder=folder, demos=demo_folders(), head=head)
        handlers = Handlers(bench, page, thumb_prefix=file_url(bench.workspace.thumbnails) + "/")
        Wiring(demo, page, handlers)
    demo.l2c_page = page
    return demo, handlers


def launch_options(bench: Workbench, access: Access) -> dict:
    """Keyword arguments for ``Blocks.launch`` that every entry point shares (security included).

    ``access`` decides which requests reach the app (:mod:`l2c_explorer.app.access`): its middleware is
    given to the FastAPI app Gradio creates (``app_kwargs``), so it sees every request, files included.
    """
    from gradio.route_utils import CustomCORSMiddleware
    from starlette.middleware import Middleware

    served = [str(p) for p in bench.workspace.served_dirs()]
    return dict(
        share=False,
        # a value Gradio cannot take for its component (text for a number, sent through the API) is refused
        # before any handler runs: its message, not a bare "Error" (handlers word their own problems)
        show_error=True,
        ssr_mode=False,  # no Node server in front of the app: every request goes through the access check
        allowed_paths=served,
        app_kwargs={"middleware": [Middleware(AccessGuard, access=access)],
                    "lifespan": same_origin_only(CustomCORSMiddleware)},  # no CORS: only the app's page may ask
        css=asset("app.css"),
        theme=gr.themes.Soft(),
        footer_links=["api"],
    )

"""The interactive app, for the command line and for notebooks.

In a notebook::

    from l2c_explorer import show
    app = show("path/to/images")          # the app, inline
    clusterer = app.discover("path/to/images", steps=100)   # or run from Python, same jobs
    app.result().to_frame()               # the latest run's assignments as a DataFrame
    app.close()

``app.url`` is the page's address with this launch's secret token (:mod:`l2c_explorer.app.access`); other
programs talking to the app (e.g. ``gradio_client``) send ``app.headers``.

Importing this package is cheap: gradio is only imported when an app is launched.
"""

from __future__ import annotations

import os

from ..options import APP

__all__ = ["ExplorerApp", "launch_app", "show"]


class ExplorerApp:
    """A running app: its address, its runs, and their results as Python objects.

    Create one with :func:`launch_app` or :func:`show`.

    Attributes
    ----------
    url : str
        The page's address, with the token when there is one: what to open in a browser.
    base_url : str
        Where the app is served, without the token.
    token : str or None
        This launch's secret (None when started without one).
    workbench : Workbench
        The engine behind the page (jobs, thumbnails, maps, exports).
    blocks : gradio.Blocks
    """

    def __init__(self, blocks, workbench, base_url: str, token: str | None = None, height: int = 1000):
        self.blocks = blocks
        self.workbench = workbench
        self.base_url = base_url
        self.token = token
        self.height = height

    @property
    def url(self) -> str:
        return self.page_url()

    def page_url(self, **query) -> str:
        """The page's address with ``query`` parameters, e.g. ``page_url(job=job.id)`` shows that run."""
        from .server import page_url

        return page_url(self.base_url, self.token, **query)

    @property
    def headers(self) -> dict[str, str]:
        """What another program sends with each request to be let in (``gradio_client.Client(..., headers=)``)."""
        return {"Authorization": f"token {self.token}"} if self.token else {}

    # -- runs from Python --------------------------------------------------------------------------------

    def discover(self, folder, *, wait: bool = True, timeout: float | None = None, **options):
        """Find the categories of ``folder`` (options as :meth:`Workbench.start_discovery`).

        With ``wait`` (default) returns the fitted :class:`~l2c_explorer.clustering.L2CClusterer`; otherwise
        the :class:`~l2c_explorer.jobs.Job`, which the page can also show (``page_url(job=job.id)``).
        """
        job = self.workbench.start_discovery(folder, **options)
        if not wait:
            return job
        return self._wait(job, timeout).estimator

    def adapt(self, source, target, *, wait: bool = True, timeout: float | None = None, **options):
        """Predict the source folder's classes in ``target`` (see :meth:`Workbench.start_adaptation`)."""
        job = self.workbench.start_adaptation(source, target, **options)
        if not wait:
            return job
        return self._wait(job, timeout).estimator

    def explore(self, fitted) -> str:
        """Show a fitted clusterer (or adapter) made elsewhere in the app; returns the page's address for it."""
        job = self.workbench.open_result(fitted)
        return self.page_url(**{"job" if job.kind == "discover" else "adapt": job.id})

    def _wait(self, job, timeout):
        from ..errors import L2CError

        if not job.wait(timeout):
            raise TimeoutError(f"The run {job.id} did not finish within {timeout} s (it keeps running).")
        if job.result is None:
            raise L2CError(job.error or f"The run ended without a result ({job.status}).")
        return job.result

    def result(self, job_id: str | None = None):
        """A finished run (default: the latest, started here or on the page) as a ``RunResult``.

        ``.estimator`` is the fitted object, ``.to_frame()`` a DataFrame of the assignments, ``.summary`` the
        run's summary, ``.labels`` / ``.confidence`` / ``.paths`` arrays.
        """
        return self.workbench.result(job_id)

    def jobs(self):
        """Every run the app knows, oldest first."""
        return self.workbench.registry.jobs()

    # -- lifecycle ----------------------------------------------------------------------------------------

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the background warm-up (imports, first tiny run, UMAP compilation) has finished.

        The page works before that; a first run just starts a few seconds slower. False on timeout.
        """
        thread = getattr(self.blocks, "l2c_warm_up", None)
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def close(self) -> None:
        """Stop the runs and the server."""
        self.workbench.close(wait=2.0)
        self.blocks.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"ExplorerApp(url={self.base_url!r})"


def launch_app(
    folder: str | os.PathLike | None = APP.defaults.folder,
    *,
    host: str = APP.defaults.host,
    port: int | None = APP.defaults.port,
    models_dirs: list[str] | None = APP.defaults.models_dirs,
    work_dir: str | os.PathLike | None = APP.defaults.work_dir,
    token: bool = APP.defaults.token,
    open_browser: bool = False,  # a notebook shows the app inline
    inline: bool = False,
    height: int = 1000,
) -> ExplorerApp:
    """Start the app in the background (this process keeps running) and return an :class:`ExplorerApp`."""
    from .server import start

    started = start(
        None if folder is None else str(folder),
        host=host,
        port=port,
        open_browser=open_browser,
        models_dirs=models_dirs,
        work_dir=None if work_dir is None else str(work_dir),
        token=token,
        inline=inline,
        height=height,
    )
    return ExplorerApp(started.blocks, started.bench, started.base_url, started.token, height=height)


def show(folder: str | os.PathLike | None = None, *, height: int = 1000, **options) -> ExplorerApp:
    """Show the app inline in a notebook (one line), and return it to get the results back in Python."""
    return launch_app(folder, inline=True, height=height, **options)

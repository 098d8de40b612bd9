"""Serving the app: ``l2c-explorer`` (the command) and the notebook helpers both end up here.

The page is served before anything slow is imported: torch, the core estimators and umap are imported
by a background thread after the server is up (:func:`warm_up`), so the first run starts sooner.

Without a port, Gradio's own search finds one (7860 or the next free one): it binds each candidate for
real and moves on when another program took it first, so two apps started at once cannot race for the
same port. The address it got is returned (and printed by the command).
"""

from __future__ import annotations

import html
import ipaddress
import logging
import os
import sys
import threading
import warnings
import webbrowser
from dataclasses import dataclass
from urllib.parse import urlencode

from ..errors import InputError, check_folder
from ..options import APP
from .access import TOKEN_PARAM

logger = logging.getLogger(__name__)
_DEFAULTS = APP.defaults


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warm_up(bench=None, include_map: bool = True) -> threading.Thread:
    """Import the heavy modules, run a first tiny job and compile UMAP, in a background thread."""

    def work():
        try:
            import l2c_explorer.clustering  # noqa: F401  (torch and the core)
            import l2c_explorer.similarity_learner  # noqa: F401

            if bench is not None:
                bench.warm_up()
            if include_map:
                from ..explore import warm_up as warm_map

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    warm_map()
        except Exception:  # only an optimisation: the real call reports any problem
            logger.debug("warm-up failed", exc_info=True)

    thread = threading.Thread(target=work, name="l2c-warm-up", daemon=True)
    thread.start()
    return thread


def start(
    folder: str | None = _DEFAULTS.folder,
    *,
    host: str = _DEFAULTS.host,
    port: int | None = _DEFAULTS.port,
    open_browser: bool = False,
    models_dirs: list[str] | None = _DEFAULTS.models_dirs,
    work_dir: str | None = _DEFAULTS.work_dir,
    token: bool = _DEFAULTS.token,
    inline: bool | None = None,
    height: int = 1000,
    warm: bool = True,
    max_running: int = 1,
) -> Started:
    """Build and launch the app without blocking; returns a :class:`Started`.

    ``open_browser`` is off here (notebooks show the app inline); the command turns it on (:func:`serve`).
    Listens on ``host`` (127.0.0.1 unless told otherwise; a warning is printed for any other address),
    never creates a public share link, and serves only the app's own thumbnail, script and output
    folders, never the user's files. Every request must name the app by an address it was started on
    and, unless ``token`` is False, carry this launch's token (:mod:`l2c_explorer.app.access`).
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if port is not None:
        APP["port"].check(port, called="--port")
    if not is_loopback(host):
        message = (f"l2c-explorer: warning: listening on {host}, not only on this machine: anyone who can reach "
                   "this address" + (" and has the address with its token" if token else "") + " can use the app "
                   "as you: browse folder names, see thumbnails of the folders opened, start runs and export images "
                   "into folders you can write to.")
        print(message, file=sys.stderr)
        logger.warning(message)
    if folder is not None:
        folder = str(check_folder(folder))
    from .access import Access, new_token
    from .ui import build_app, launch_options
    from .workbench import Workbench

    bench = Workbench(work_dir, models_dirs=models_dirs, max_running=max_running)
    blocks, _ = build_app(bench, folder=folder)
    blocks.queue(default_concurrency_limit=4)
    access = Access(host, new_token() if token else None)
    try:
        _, base_url, _ = blocks.launch(
            server_name=host,
            server_port=port,  # None: Gradio's own search from 7860
            inbrowser=False,  # Gradio would open the address without its token
            prevent_thread_lock=True,
            inline=False,  # likewise: shown below, with the token
            quiet=True,  # our own line says where the app is (and Gradio's would suggest a public link)
            **launch_options(bench, access),
        )
    except OSError:
        why = f"port {port} is in use or not allowed" if port is not None else "no free port from 7860 on"
        raise InputError(f"Cannot listen on {host}: {why}; choose another port with --port.") from None
    access.armed = True  # Gradio's launch has checked its server: from now on every request needs the token
    started = Started(blocks, bench, base_url, access.token)
    if open_browser:
        webbrowser.open(started.url)
    if inline or (inline is None and _in_notebook()):
        _show_inline(started.url, height)
    blocks.l2c_workbench = bench
    blocks.l2c_warm_up = warm_up(bench) if warm else None
    return started


@dataclass
class Started:
    """A launched app: its page, engine, address and token (None when started with ``--no-token``)."""

    blocks: object
    bench: object
    base_url: str
    token: str | None

    @property
    def url(self) -> str:
        """The address to open: with the token, when there is one."""
        return page_url(self.base_url, self.token)

    def __iter__(self):  # blocks, bench, url = start(...)
        return iter((self.blocks, self.bench, self.url))


def page_url(base_url: str, token: str | None, **query) -> str:
    """The page's address with ``query`` (e.g. ``job=...``) and the token."""
    params = {**({TOKEN_PARAM: token} if token else {}), **{k: v for k, v in query.items() if v is not None}}
    return base_url + ("?" + urlencode(params) if params else "")


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _show_inline(url: str, height: int) -> None:
    """The app in a notebook cell (an iframe of its address, token included)."""
    try:
        from IPython.display import HTML, display
    except ImportError:
        return
    display(HTML(f'<div><iframe src="{html.escape(url, quote=True)}" width="100%" height="{int(height)}" '
                 'allow="clipboard-read; clipboard-write" frameborder="0" allowfullscreen></iframe></div>'))


def serve(
    folder: str | None = _DEFAULTS.folder,
    host: str = _DEFAULTS.host,
    port: int | None = _DEFAULTS.port,
    open_browser: bool = _DEFAULTS.open_browser,
    models_dirs: list[str] | None = _DEFAULTS.models_dirs,
    work_dir: str | None = _DEFAULTS.work_dir,
    token: bool = _DEFAULTS.token,
    n_jobs: int | None = _DEFAULTS.n_jobs,
) -> None:
    """Run the app until interrupted (the ``l2c-explorer`` command); ``n_jobs``: CPU threads of its runs
    (default: as set for the process, :mod:`l2c_explorer.threads`)."""
    if n_jobs is not None:
        from ..threads import set_threads

        set_threads(n_jobs)
    started = start(folder, host=host, port=port, open_browser=open_browser, models_dirs=models_dirs,
                    work_dir=work_dir, token=token, inline=False)
    print(f"l2c-explorer is running at {started.url}  (press Ctrl+C to stop)", flush=True)
    _stop_on_terminate()
    try:
        started.blocks.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        started.bench.close(wait=2.0)
        started.blocks.close()


def _stop_on_terminate() -> None:
    """Stop as on Ctrl+C when asked to terminate (``kill``, a service manager): runs are stopped and the
    server closed, instead of dying mid-write."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)

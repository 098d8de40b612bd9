"""Serving the app: ``l2c-explorer`` (the command) and the notebook helpers both end up here.

The page is served before anything slow is imported: torch, the core estimators and umap are imported
by a background thread after the server is up (:func:`warm_up`), so the first run starts sooner.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
import threading
import warnings

from ..errors import InputError, check_folder

logger = logging.getLogger(__name__)

DEFAULT_PORT = 7860
PORT_RANGE = 100


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def find_free_port(host: str = "127.0.0.1", start: int = DEFAULT_PORT, tries: int = PORT_RANGE) -> int:
    """The first port from ``start`` on which ``host`` can listen."""
    for port in range(start, start + tries):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise InputError(f"No free port between {start} and {start + tries - 1}; choose one with --port.")


def warm_up(bench=None, include_map: bool = True) -> threading.Thread:
    """Import the heavy modules, run a first tiny job and compile UMAP, in a background thread."""

    def work():
        try:
            import l2c_explorer.clustering  # noqa: F401  (torch and the core)
            import l2c_explorer.similarity  # noqa: F401

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
    folder: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    open_browser: bool = False,
    models_dirs: list[str] | None = None,
    work_dir: str | None = None,
    inline: bool | None = None,
    height: int = 1000,
    quiet: bool = False,
    warm: bool = True,
    max_running: int = 1,
):
    """Build and launch the app without blocking; returns ``(blocks, workbench, url)``.

    Listens on ``host`` (127.0.0.1 unless told otherwise; a warning is printed for any other address),
    never creates a public share link, and serves only the app's own thumbnail, script and output
    folders, never the user's files.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if not is_loopback(host):
        message = (f"l2c-explorer: warning: listening on {host}, not only on this machine: anyone who can reach "
                   "this address can use the app as you: browse folder names, see thumbnails of the folders "
                   "opened, start runs and export images into folders you can write to.")
        print(message, file=sys.stderr)
        logger.warning(message)
    if folder is not None:
        folder = str(check_folder(folder))
    from .ui import build_app, launch_options
    from .workbench import Workbench

    bench = Workbench(work_dir, models_dirs=models_dirs, max_running=max_running)
    blocks, _ = build_app(bench, folder=folder)
    if port is None:
        port = find_free_port(host if is_loopback(host) else "0.0.0.0")
    blocks.queue(default_concurrency_limit=4)
    try:
        _, url, _ = blocks.launch(
            server_name=host,
            server_port=int(port),
            inbrowser=open_browser,
            prevent_thread_lock=True,
            inline=inline,
            height=height,
            quiet=quiet,
            **launch_options(bench),
        )
    except OSError as exc:
        raise InputError(f"Cannot listen on {host}:{port} ({exc}); choose another port with --port.") from None
    blocks.l2c_workbench = bench
    blocks.l2c_warm_up = warm_up(bench) if warm else None
    return blocks, bench, url


def serve(
    folder: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    open_browser: bool = True,
    models_dirs: list[str] | None = None,
    work_dir: str | None = None,
) -> None:
    """Run the app until interrupted (the ``l2c-explorer`` command)."""
    blocks, bench, url = start(folder, host=host, port=port, open_browser=open_browser, models_dirs=models_dirs,
                               work_dir=work_dir, inline=False)
    print(f"l2c-explorer is running at {url}  (press Ctrl+C to stop)", flush=True)
    try:
        blocks.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        bench.close(wait=2.0)
        blocks.close()

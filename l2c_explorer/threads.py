"""How many threads the computation uses: never more than the cores this process may run on.

PyTorch (OpenMP), the BLAS under numpy/scipy and scikit-learn, and numba (umap, pynndescent) each start a
pool of threads as large as the machine by default, and their OpenMP threads spin while they wait for each
other. When another process holds one of the cores, every parallel step then waits for the thread that was
pushed off its core: the same run becomes several times slower. The rules here:

* the default is the number of *physical* cores in this process's CPU affinity (``os.sched_getaffinity``:
  what a container or ``taskset`` allows, not what the machine has), hyper-threads not counted;
* :func:`set_threads` applies one number to torch, to every BLAS/OpenMP pool (threadpoolctl) and to
  numba when it is loaded;
* :func:`configure_environment`, called by the command line before the heavy imports, sets the same
  number in the environment variables the libraries read when they start, and asks OpenMP threads to
  sleep instead of spinning while they wait (``OMP_WAIT_POLICY=PASSIVE``) unless told otherwise.

``benchmarks/threads.py`` measures a discovery run alone and beside a CPU hog, with and without these rules.
"""

from __future__ import annotations

import contextlib
import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def available_cores() -> int:
    """Logical CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (logical CPUs when the topology is unknown)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return available_cores()
    cores = set()
    for cpu in cpus:
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology"
        try:
            with open(f"{base}/core_id") as f:
                core = f.read().strip()
            with open(f"{base}/physical_package_id") as f:
                package = f.read().strip()
        except OSError:
            return len(cpus)
        cores.add((package, core))
    return max(1, len(cores))


def default_threads() -> int:
    """``$L2C_THREADS`` when set, else the physical cores available to this process."""
    env = os.environ.get("L2C_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    return physical_cores()


def configure_environment(threads: int | None = None) -> int:
    """Set the libraries' thread variables before they are imported (a command line's first step).

    Variables already set by the user are kept. Returns the thread count.
    """
    n = int(threads or default_threads())
    for name in THREAD_VARIABLES:
        if threads is not None or name not in os.environ:
            os.environ[name] = str(n)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return n


def current_threads() -> int:
    import torch

    return torch.get_num_threads()


def set_threads(threads: int | None = None) -> int:
    """Use ``threads`` (default :func:`default_threads`) in torch, BLAS/OpenMP pools and numba; returns it."""
    import torch

    n = max(1, int(threads or default_threads()))
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except Exception:  # threadpoolctl missing or a pool it cannot set: torch's setting still holds
        pass
    import sys

    if "numba" in sys.modules:
        try:
            import numba

            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        except Exception:
            pass
    return n


@contextlib.contextmanager
def limited_threads(threads: int | None):
    """Run a block with ``threads`` threads (None: leave the current setting), restoring it afterwards."""
    if threads is None:
        yield current_threads()
        return
    import torch

    before = torch.get_num_threads()
    try:
        yield set_threads(threads)
    finally:
        set_threads(before)

"""Nearest-neighbour search at scale: exact blockwise search, the IVF search, pynndescent and faiss.

The 20 nearest neighbours of every image (what one pass of discovery searches) among the similarity model's
embeddings of the 100k scale set (benchmarks/datasets.py) without its Omniglot evaluation alphabets
(93,828 images: background characters, digits, photos), on random subsets of 5,000 to 93,828. Recall is the
share of the exact 20 nearest found (on 2,000 sampled images). Times are wall-clock and CPU seconds of this
process; pynndescent's first call in a process includes compiling its numba kernels, reported apart. Memory
is the peak resident memory above the resident memory before the call (the kernel's high-water mark VmHWM,
reset through /proc/self/clear_refs; where that is refused, RSS sampled every 5 ms by psutil), the result
and any index included.

faiss (faiss-cpu==1.15.1, a dependency of the package except on macOS, where the package searches with its
own IVF instead; without it, or with ``--no-faiss``, its rows are left out) is measured on the same unit
embeddings by inner product, with ``faiss.omp_set_num_threads`` set to ``--threads`` (and to each of
``--also-threads``): IVF-Flat
(``IndexIVFFlat``, sqrt(n) lists trained like ours: spherical k-means, 10 iterations on max(40 lists, 20,000)
images; each row counts training and adding once, then its own search) and HNSW (``IndexHNSWFlat``, M=32,
efConstruction 40; each row counts the build once, then the search at its efSearch). Each search asks for 21
neighbours and drops the image itself. ``--also-threads 1`` measures our IVF and faiss's rows again on one thread
(rows marked -t1): on a machine whose cores other jobs share, the steadiest comparison.

    python benchmarks/knn_search.py [--threads 2] [--sizes 5000 10000 20000 50000 93828] [--also-threads 1]
    python benchmarks/knn_search.py --rewrite      # the .md again from the .json, nothing measured

Writes benchmarks/results/knn_search.{json,md}; EXACT_LIMIT and IVF_PROBES in l2c_explorer/neighbours.py
were chosen from it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, add_common_flags, machine_description, write_results
from datasets import build_set

from l2c_explorer.neighbours import exact_neighbours, ivf_neighbours

K = 20


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _can_reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _status_kb("VmHWM")
        return True
    except (OSError, KeyError):
        return False


PEAK_BY_HWM = _can_reset_peak()
MEMORY_METHOD = ("VmHWM reset through /proc/self/clear_refs" if PEAK_BY_HWM
                 else "RSS sampled every 5 ms (psutil)")


def _release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the system (glibc), so that the resident memory a
    measurement starts from holds no memory freed by an earlier one (which the next could reuse unseen)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak resident memory (MB) above the resident memory when it was entered."""

    def __enter__(self):
        if PEAK_BY_HWM:
            self.base = _status_kb("VmRSS")
            Path("/proc/self/clear_refs").write_text("5")
        else:
            import psutil

            proc, self._stop = psutil.Process(), threading.Event()
            self.base, self._peak = proc.memory_info().rss // 1024, 0

            def sample():
                while not self._stop.is_set():
                    self._peak = max(self._peak, proc.memory_info().rss // 1024)
                    time.sleep(0.005)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if PEAK_BY_HWM:
            peak = _status_kb("VmHWM")
        else:
            self._stop.set()
            self._thread.join()
            peak = self._peak
        self.mb = max(0, peak - self.base) / 1024
        return False


def resident_mb() -> float:
    try:
        return _status_kb("VmRSS") / 1024
    except (OSError, KeyError):
        import psutil

        return psutil.Process().memory_info().rss / 2**20


def timed(fn):
    """fn(), wall seconds, CPU seconds (all threads of this process), peak extra memory in MB."""
    _release_freed_memory()
    with PeakMemory() as mem:
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return out, wall, cpu, mem.mb


def embeddings(scratch: Path | None) -> np.ndarray:
    from l2c_explorer.embedding import embed_folder

    folder = build_set("100k", scratch)
    cached = folder.parent / "knn_search_embeddings.npy"
    if cached.exists():
        return np.load(cached, allow_pickle=False)
    embedded = embed_folder(folder, "omniglot", follow_links=True)
    keep = [i for i, p in enumerate(embedded.paths) if not p.startswith("omniglot-eval/")]
    emb = embedded.embeddings[keep]
    np.save(cached, emb)
    return emb


def recall(found: np.ndarray, truth: np.ndarray, rows: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(found[i], truth[i])) / truth.shape[1] for i in rows]))


def without_self(indices: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` of each row of k + 1 neighbours other than the row's own image (or the last one dropped,
    where the image itself was not found)."""
    drop = indices == np.arange(len(indices))[:, None]
    drop[~drop.any(1), -1] = True
    return indices[~drop].reshape(len(indices), -1)[:, :k]


def faiss_install() -> dict | None:
    """faiss's version and installed size (its package and bundled libraries), or None without it."""
    try:
        import faiss
    except ImportError:
        return None
    package = Path(faiss.__file__).resolve().parent
    size = 0
    for part in (package, package.parent / "faiss_cpu.libs"):
        for root, _, files in os.walk(part):
            size += sum(os.path.getsize(Path(root) / f) for f in files if not (Path(root) / f).is_symlink())
    return {"version": faiss.__version__, "installed_mb": size / 2**20, "compile_options": faiss.get_compile_options()}


def faiss_rows(x: np.ndarray, truth: np.ndarray, sample: np.ndarray, *, threads: int, probes: list[int],
               ef_searches: list[int], suffix: str) -> dict:
    """faiss IVF-Flat at each of ``probes`` and HNSW at each of ``ef_searches`` (build or training counted in each
    row, once)."""
    import faiss

    faiss.omp_set_num_threads(threads)
    n, d = x.shape
    out = {}
    n_lists = max(1, round(np.sqrt(n)))

    def ivf_build():
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, n_lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical, index.cp.niter = True, 10
        index.cp.max_points_per_centroid = int(np.ceil(max(40 * n_lists, 20_000) / n_lists))  # our sample size
        index.train(x)
        index.add(x)
        return index

    def hnsw_build():
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 40
        index.add(x)
        return index

    for kind, build, settings in (("ivf", ivf_build, probes), ("hnsw-ef", hnsw_build, ef_searches)):
        if not settings:
            continue
        _release_freed_memory()
        before = resident_mb()
        index, b_wall, b_cpu, b_mb = timed(build)
        for s in settings:
            if kind == "ivf":
                index.nprobe = s
            else:
                index.hnsw.efSearch = s
            _release_freed_memory()
            held = resident_mb() - before  # the index, kept during the search
            (_, found), wall, cpu, mb = timed(partial(index.search, x, K + 1))
            out[f"faiss-{kind}{s}{suffix}"] = {
                "wall_s": b_wall + wall, "cpu_s": b_cpu + cpu, "mb": max(b_mb, held + mb),
                "build_wall_s": b_wall, "build_cpu_s": b_cpu, "build_mb": b_mb,
                "recall": recall(without_self(found, K), truth, sample)}
        index = None  # freed before the next index is built
    return out


def nndescent(x: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    import pynndescent

    return pynndescent.NNDescent(x, n_neighbors=K + 1, metric="cosine", random_state=0, n_jobs=threads).neighbor_graph


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_flags(ap, threads=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000, 50000, 93828])
    ap.add_argument("--probes", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--scratch", default=None)
    ap.add_argument("--no-nndescent", action="store_true")
    ap.add_argument("--no-faiss", action="store_true", help="leave faiss out (it is left out anyway when missing)")
    ap.add_argument("--also-threads", type=int, nargs="*", default=[],
                    help="thread counts at which the IVF rows (ours and faiss's) are measured again (marked -tN)")
    ap.add_argument("--ef-search", type=int, nargs="+", default=[64, 128], help="HNSW efSearch values")
    ap.add_argument("--rewrite", action="store_true",
                    help="only write benchmarks/results/knn_search.md again from knn_search.json (nothing measured)")
    args = ap.parse_args()
    if args.rewrite:
        data = json.loads((RESULTS / "knn_search.json").read_text())
        md, data["conclusions"] = report(data)
        write_results("knn_search", data, md)
        print(md)
        return
    torch.set_num_threads(args.threads)
    install = None if args.no_faiss else faiss_install()
    if install is None and not args.no_faiss:
        print("faiss is not installed (pip install faiss-cpu==1.15.1): its rows are left out", flush=True)
    thread_counts = [args.threads] + [t for t in args.also_threads if t != args.threads]
    emb = torch.nn.functional.normalize(torch.from_numpy(embeddings(Path(args.scratch) if args.scratch else None)), dim=1)
    rng = np.random.default_rng(0)
    rows_out, compile_s = [], None
    for n in args.sizes:
        n = min(n, len(emb))
        x = emb[torch.from_numpy(np.sort(rng.choice(len(emb), n, replace=False)))]
        sample = rng.choice(n, min(2000, n), replace=False)
        row = {"n": n, "load": os.getloadavg()[0]}
        exact, wall, cpu, mb = timed(partial(exact_neighbours, x, K))
        truth = exact.indices.numpy()
        row["exact"] = {"wall_s": wall, "cpu_s": cpu, "mb": mb}
        for t in thread_counts:
            suffix = "" if t == args.threads else f"-t{t}"
            torch.set_num_threads(t)
            for probes in args.probes:
                found, wall, cpu, mb = timed(partial(ivf_neighbours, x, K, n_probe=probes))
                row[f"ivf{probes}{suffix}"] = {"wall_s": wall, "cpu_s": cpu, "mb": mb,
                                               "recall": recall(found.indices.numpy(), truth, sample)}
                del found
            torch.set_num_threads(args.threads)
            if not args.no_nndescent and t == args.threads:
                if compile_s is None:  # the first call compiles the kernels: time it on a small problem
                    _, compile_s, _, _ = timed(partial(nndescent, x[:2000].numpy(), args.threads))
                graph, wall, cpu, mb = timed(partial(nndescent, x.numpy(), args.threads))
                row["nndescent"] = {"wall_s": wall, "cpu_s": cpu, "mb": mb,
                                    "recall": recall(graph[0][:, 1:], truth, sample)}
                del graph
            if install is not None:
                row.update(faiss_rows(np.ascontiguousarray(x.numpy(), dtype=np.float32), truth, sample, threads=t,
                                      probes=args.probes, ef_searches=args.ef_search, suffix=suffix))
        row["load_after"] = os.getloadavg()[0]
        rows_out.append(row)
        print(row, flush=True)

    data = {"rows": rows_out, "nndescent_first_call_s": compile_s, "machine": machine_description(args.threads),
            "threads": thread_counts, "probes": args.probes, "memory": MEMORY_METHOD, "faiss": install}
    md, data["conclusions"] = report(data)
    write_results("knn_search", data, md)
    print(md)


def report(data: dict) -> tuple[str, list[str]]:
    """The markdown table of a run's results and its conclusion lines."""
    rows, threads = data["rows"], data["threads"]
    methods = [m for m in rows[0] if isinstance(rows[0][m], dict)]
    loads = [r[key] for r in rows for key in ("load", "load_after")]
    md = [(f"Machine: {data['machine']}; load average (1 min) during the runs {min(loads):.1f}-{max(loads):.1f} "
           "(other jobs shared the cores: CPU seconds are the steadier measure). Embeddings of the 100k scale set "
           "without the Omniglot evaluation alphabets. Peak MB: resident memory above that before the call "
           f"({data['memory']}), the result and any index included."), ""]
    install = data.get("faiss")
    if install is not None:
        md += [(f"faiss-cpu {install['version']} ({install['compile_options'].strip()}), "
                f"{install['installed_mb']:.0f} MB installed (its package and bundled libraries: OpenBLAS, libgomp, "
                f"libgfortran). Rows marked -t1: 1 thread (torch or faiss); the others {threads[0]}."), ""]
    md += ["| images | method | wall s | CPU s | peak MB | recall | of which build / training (wall s, CPU s) |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        for m in methods:
            c = r[m]
            rec = f"{c['recall']:.3f}" if "recall" in c else "1 (exact)"
            build = f"{c['build_wall_s']:.1f}, {c['build_cpu_s']:.1f}" if "build_wall_s" in c else ""
            md.append(f"| {r['n']:,} | {m} | {c['wall_s']:.1f} | {c['cpu_s']:.1f} | {c['mb']:.0f} | {rec} | {build} |")
    md += ["", ("ivfN: this package's inverted-file search probing N of sqrt(n) lists (its k-means counted); "
                "faiss-ivfN: faiss IndexIVFFlat, the same lists and probes; faiss-hnsw-efN: IndexHNSWFlat, M=32, "
                "efSearch N. Recall: share of the exact 20 nearest found, on 2,000 sampled images.")]
    if data.get("nndescent_first_call_s") is not None:
        md.append("pynndescent's first call in a process (2,000 points, numba compilation included): "
                  f"{data['nndescent_first_call_s']:.1f} s.")
    conclusions = []
    if install is not None:
        probes = data["probes"]
        ours = 16 if 16 in probes else probes[0]
        conclusions = [line for i, t in enumerate(threads)
                       for line in compare(rows, probes, ours, t, "" if i == 0 else f"-t{t}")]
        md += ["", "**Same lists and probes, faiss against ours.**", ""] + [f"- {line}" for line in conclusions]
    return "\n".join(md), conclusions


def compare(rows: list[dict], probes: list[int], ours: int, threads: int, suffix: str) -> list[str]:
    """Lines comparing faiss-ivfN with ivfN at ``threads`` threads (the rows ending in ``suffix``): per size, recall
    and CPU seconds at each probe count, and the methods at least as accurate as ivf``ours`` for no more CPU time;
    then, over the sizes from 20,000, how often faiss-ivf``ours`` matched ivf``ours``."""
    lines, counts = [], {"recall at least as high": 0, "CPU time no more": 0, "wall time no more": 0,
                         "peak memory no more": 0}
    threads_text = f"{threads} thread{'s' if threads > 1 else ''}"
    big = [r for r in rows if r["n"] >= 20_000]
    for r in rows:
        same = {m: c for m, c in r.items() if isinstance(c, dict) and "recall" in c
                and (m.endswith(suffix) if suffix else "-t" not in m)}
        pairs = []
        for p in probes:
            f, o = same[f"faiss-ivf{p}{suffix}"], same[f"ivf{p}{suffix}"]
            pairs.append(f"{p} probes: recall {f['recall']:.3f} vs {o['recall']:.3f}, "
                         f"CPU {f['cpu_s']:.1f} vs {o['cpu_s']:.1f} s")
        base = same[f"ivf{ours}{suffix}"]
        better = [m for m, c in same.items() if m != f"ivf{ours}{suffix}"
                  and c["recall"] >= base["recall"] and c["cpu_s"] <= base["cpu_s"]]
        lines.append(f"{threads_text}, {r['n']:,} images: {'; '.join(pairs)}. At least as accurate as "
                     f"ivf{ours}{suffix} for no more CPU time: {', '.join(better) or 'none'}.")
        if r["n"] >= 20_000:
            f, o = same[f"faiss-ivf{ours}{suffix}"], same[f"ivf{ours}{suffix}"]
            for key, ok in (("recall at least as high", f["recall"] >= o["recall"]),
                            ("CPU time no more", f["cpu_s"] <= o["cpu_s"]),
                            ("wall time no more", f["wall_s"] <= o["wall_s"]),
                            ("peak memory no more", f["mb"] <= o["mb"])):
                counts[key] += ok
    if big:
        sizes = ", ".join(f"{r['n']:,}" for r in big)
        lines.append(f"{threads_text}, faiss-ivf{ours}{suffix} against ivf{ours}{suffix} at {sizes} images: "
                     + ", ".join(f"{key} {c} of {len(big)}" for key, c in counts.items()) + ".")
    return lines


if __name__ == "__main__":
    main()

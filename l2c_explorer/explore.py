"""Exploring a clustering: a 2-D map of the images, per-cluster exemplars, and the data a page draws.

Pure functions, numpy in and numpy (or JSON-ready dicts) out. ``umap`` is imported only when a UMAP map is
actually computed: importing it costs many seconds, so nothing on an application's start-up path may
call it (see :func:`warm_up` to pay that cost in the background).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .files import atomic_path

MAP_METHODS = ("umap", "pca")


# ---------------------------------------------------------------------------------------------------
# 2-D maps


def pca_2d(features: np.ndarray) -> np.ndarray:
    """The first two principal components of ``features`` (n, d) -> (n, 2), float32.

    Fast and deterministic (signs fixed so the largest loading is positive); a preview while UMAP runs.
    """
    x = np.asarray(features, dtype=np.float64)
    n = len(x)
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    x = x - x.mean(0, keepdims=True)
    if n == 1 or not np.any(x):
        return np.zeros((n, 2), dtype=np.float32)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(1)])
    out = x @ (comps * signs[:, None]).T
    if out.shape[1] < 2:
        out = np.hstack([out, np.zeros((n, 2 - out.shape[1]))])
    return out.astype(np.float32)


def umap_2d(
    features: np.ndarray,
    *,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    random_state: int | None = 0,
) -> np.ndarray:
    """A UMAP layout of ``features`` (n, d) -> (n, 2), float32 (falls back to PCA below 5 images)."""
    x = np.asarray(features, dtype=np.float32)
    n = len(x)
    if n < 5:
        return pca_2d(x)
    import umap  # slow import: only here

    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=int(max(2, min(n_neighbors, n - 1))),
        min_dist=min_dist,
        random_state=random_state,
        n_jobs=1 if random_state is not None else -1,
        init="spectral" if n > 20 else "random",
    )
    return np.asarray(reducer.fit_transform(x), dtype=np.float32)


def map_2d(
    features: np.ndarray,
    *,
    method: str = "umap",
    cache_dir: str | os.PathLike | None = None,
    random_state: int | None = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
) -> np.ndarray:
    """A 2-D map of the images, cached on disk by the features' content and the options.

    Parameters
    ----------
    features : ndarray of shape (n_images, d)
    method : {"umap", "pca"}
    cache_dir : path, optional
        Folder for cached maps (``map-<hash>.npy``); nothing is cached without it.
    """
    if method not in MAP_METHODS:
        raise ValueError(f"method must be one of {', '.join(MAP_METHODS)}, not {method!r}")
    x = np.ascontiguousarray(features, dtype=np.float32)
    cached = None
    if cache_dir is not None:
        h = hashlib.sha1(x.tobytes())
        h.update(json.dumps([method, x.shape, random_state, n_neighbors, min_dist]).encode())
        cached = Path(cache_dir) / f"map-{h.hexdigest()[:24]}.npy"
        if cached.exists():
            try:
                coords = np.load(cached)
                if coords.shape == (len(x), 2):
                    return coords
            except (OSError, ValueError):
                pass  # a damaged cache file is recomputed
    if method == "pca":
        coords = pca_2d(x)
    else:
        coords = umap_2d(x, n_neighbors=n_neighbors, min_dist=min_dist, random_state=random_state)
    if cached is not None:
        with atomic_path(cached) as tmp:
            np.save(tmp, coords)
    return coords


def warm_up() -> None:
    """Import umap and compile its kernels on a tiny problem, so the first real map comes sooner."""
    rng = np.random.default_rng(0)
    umap_2d(rng.normal(size=(40, 8)).astype(np.float32), n_neighbors=5)


# ---------------------------------------------------------------------------------------------------
# clusters


@dataclass
class ClusterSummary:
    """One cluster, as a person reviews it.

    Attributes
    ----------
    cluster : int
    size : int
    mean_confidence : float
    typical : list of int
        Indices of its most typical images (closest to the cluster's mean feature direction).
    uncertain : list of int
        Indices of its least certain images (lowest confidence first).
    top_label, purity : str or None, float or None
        With ground truth: the most common true label in the cluster and its share.
    """

    cluster: int
    size: int
    mean_confidence: float
    typical: list[int] = field(default_factory=list)
    uncertain: list[int] = field(default_factory=list)
    top_label: str | None = None
    purity: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def cluster_summaries(
    features: np.ndarray,
    labels: np.ndarray,
    confidence: np.ndarray,
    *,
    truth: list | np.ndarray | None = None,
    n_typical: int = 8,
    n_uncertain: int = 8,
) -> list[ClusterSummary]:
    """Size, confidence and exemplars of every cluster, largest first.

    Parameters
    ----------
    features : ndarray of shape (n_images, d)
        Image features (unit vectors, as the clusterer's ``embedding_``).
    labels : ndarray of shape (n_images,)
    confidence : ndarray of shape (n_images,)
    truth : sequence of shape (n_images,), optional
        True labels, to report each cluster's main label and purity.
    """
    x = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    confidence = np.asarray(confidence, dtype=np.float64)
    truth_arr = None if truth is None else np.asarray(truth, dtype=object)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        centre = x[idx].mean(0)
        norm = np.linalg.norm(centre)
        sims = x[idx] @ (centre / norm) if norm > 0 else np.zeros(len(idx))
        typical = idx[np.argsort(-sims, kind="stable")[:n_typical]]
        uncertain = idx[np.argsort(confidence[idx], kind="stable")[:n_uncertain]]
        summary = ClusterSummary(
            cluster=int(c),
            size=int(len(idx)),
            mean_confidence=round(float(confidence[idx].mean()), 4),
            typical=typical.tolist(),
            uncertain=uncertain.tolist(),
        )
        if truth_arr is not None:
            names, counts = np.unique(truth_arr[idx].astype(str), return_counts=True)
            best = int(np.argmax(counts))
            summary.top_label = str(names[best])
            summary.purity = round(float(counts[best] / len(idx)), 4)
        out.append(summary)
    out.sort(key=lambda s: (-s.size, s.cluster))
    return out


def selection_counts(labels: np.ndarray, indices) -> list[tuple[int, int]]:
    """(cluster, count) of a selection of image indices, most frequent first."""
    sel = np.asarray(labels)[np.asarray(list(indices), dtype=np.int64)] if len(indices) else np.array([], dtype=int)
    ids, counts = np.unique(sel, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return [(int(ids[i]), int(counts[i])) for i in order]


# ---------------------------------------------------------------------------------------------------
# what a page draws

# The colour of group k is GROUP_COLOURS[k % len(GROUP_COLOURS)], on the map and wherever else a group is
# drawn. Every pair differs clearly (CIE76 delta-E above 20 in CIELAB), not only neighbours: groups 1 and 11
# must not both look orange. Built once by a greedy farthest-point walk in CIELAB over an sRGB grid (lightness
# 35-78 and chroma 25-80: visible on white, not grey), starting from the usual first five plotting colours.
GROUP_COLOURS: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#645028", "#00d7cd", "#d2c300",
    "#ff379b", "#ffaaaf", "#b4c382", "#913250", "#056964", "#ff78fa", "#d29150", "#0078ff",
    "#c3b9eb", "#697800", "#1ecdff", "#960096", "#006428", "#913c19", "#00d791", "#f587c8",
    "#ff697d", "#5f4b73", "#96cd28", "#5f3cbe", "#55a57d", "#faaf1e", "#82a0ff", "#1950aa",
    "#aa6e64", "#ff7d55", "#a5056e", "#5aaab4", "#b47da0", "#beaa41", "#be0050", "#b478ff",
    "#e1b996", "#8cd273", "#876400", "#e1a5ff", "#697d46", "#b95f00", "#823778", "#c355b4",
)


def map_payload(
    coords: np.ndarray,
    labels: np.ndarray,
    confidence: np.ndarray,
    *,
    paths: list[str],
    thumbs: list[str | None],
    truth: list | None = None,
    class_names: list[str] | None = None,
    method: str = "umap",
    preview: bool = False,
) -> dict:
    """The compact, JSON-ready description of a map that the page's scatter plot draws.

    Columns are parallel lists (one entry per image, in the clusterer's order). Coordinates are
    scaled to [-1, 1] and rounded, and thumbnails are given by cache key, which keeps 20,000 images
    around a megabyte of JSON.

    Parameters
    ----------
    coords : ndarray of shape (n_images, 2)
    labels, confidence : ndarray of shape (n_images,)
    paths : list of str
        Image paths relative to the analysed folder (shown on hover).
    thumbs : list of str or None
        Thumbnail cache keys (None: no thumbnail).
    truth : list of str, optional
        True labels (folder names), for colouring by ground truth.
    class_names : list of str, optional
        Names of the label values (e.g. a domain adapter's classes); default "cluster <i>".

    The payload also carries the group colours (:data:`GROUP_COLOURS`), so the page has no palette of its own.
    """
    coords = np.asarray(coords, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    n = len(labels)
    if coords.shape != (n, 2) or len(confidence) != n or len(paths) != n or len(thumbs) != n:
        raise ValueError("coords, labels, confidence, paths and thumbs must describe the same images")
    if n:
        lo, hi = coords.min(0), coords.max(0)
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        coords = (coords - lo) / span * 2.0 - 1.0
    n_labels = int(labels.max()) + 1 if n else 0
    names = list(class_names) if class_names is not None else [f"cluster {i}" for i in range(n_labels)]
    payload = {
        "n": n,
        "method": method,
        "preview": bool(preview),
        "x": np.round(coords[:, 0], 4).tolist() if n else [],
        "y": np.round(coords[:, 1], 4).tolist() if n else [],
        "label": labels.tolist(),
        "names": names,
        "confidence": np.round(np.asarray(confidence, dtype=np.float64), 3).tolist(),
        "path": list(paths),
        "thumb": [t or "" for t in thumbs],
        "colours": list(GROUP_COLOURS),  # the page colours label (or true category) k with colours[k % len]
    }
    if truth is not None:
        truth_names = sorted({str(t) for t in truth})
        index = {name: i for i, name in enumerate(truth_names)}
        payload["truth"] = [index[str(t)] for t in truth]
        payload["truth_names"] = truth_names
    return payload

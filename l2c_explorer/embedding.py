"""Images -> unit embeddings, a chunk at a time, on this machine or on a Dask cluster.

Everything discovery does after this step works on the (n, d) embeddings, so it is the one stage whose
cost grows with the pixels, and the one that is embarrassingly parallel:

* :func:`adapt_model` re-estimates the similarity model's batch-norm statistics on the folder (on a seeded
  random sample of at most :data:`NORM_SAMPLE` images; on all of them below that, as before);
* :func:`embed_store` embeds a :class:`~l2c_explorer.store.PixelStore` chunk by chunk;
* :func:`embed_folder` does both for a folder and returns :class:`EmbeddedImages`; with a Dask
  ``client`` (``pip install l2c-explorer[distributed]``) the chunks of files are read and embedded by the
  cluster's workers, each with the same adapted model, and only the embeddings come back.
  ``L2CClusterer().fit_embeddings(embed_folder(folder, client=client))`` then clusters them here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import ImageReadError, class_of, read_image
from .device import resolve_device
from .errors import InputError, StoppedError
from .nets import has_frozen_trunk
from .pretrained import compute_trunk_features
from .similarity_model import SimilarityModel, inference_copy, load_similarity_model, norm_statistics_copy
from .store import PixelStore, paths_digest

# Batch-norm statistics are averaged over at most this many images (a seeded random sample of larger
# folders). Below it every image is used, in order, exactly as before; above, the statistics of 10,000
# images already vary by well under a percent between samples.
NORM_SAMPLE = 10_000
BATCH = 512


def sample_indices(n: int, sample: int = NORM_SAMPLE, seed: int = 0) -> np.ndarray:
    """All of 0..n-1 when n <= sample, else a sorted seeded random sample of ``sample`` of them."""
    if n <= sample:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))


def adapt_model(
    model: SimilarityModel,
    pixels_of: Callable[[np.ndarray], torch.Tensor],
    n: int,
    *,
    device: torch.device,
    sample: int = NORM_SAMPLE,
    seed: int = 0,
    batch_size: int = BATCH,
) -> SimilarityModel:
    """A copy of ``model`` with batch-norm statistics of these images (``pixels_of(indices)`` gives uint8 pixels)."""
    index = sample_indices(n, sample, seed)
    batches = (model.inputs(pixels_of(index[s : s + batch_size])) for s in range(0, len(index), batch_size))
    net = norm_statistics_copy(model.net, batches, device)
    adapted = SimilarityModel(net.cpu().eval(), model.preprocessing, dict(model.card))
    adapted.digest, adapted.source = model.digest, model.source
    return adapted


def trunk_key(model: SimilarityModel) -> str:
    """Names the features of a model's frozen trunk: the same for every model on that trunk, tuned tail and
    input."""
    arch = model.card["architecture"]
    from .pretrained import PRETRAINED

    key = f"trunk-{arch['backbone']}-{PRETRAINED[arch['backbone']].sha256[:12]}-{model.preprocessing.size}"
    tail = model.net.encoder.tail_digest()  # a model that tuned the trunk's last blocks has features of its own
    return f"{key}-{tail[:12]}" if tail else key


def trunk_features(
    model: SimilarityModel,
    pixels,
    *,
    device: torch.device,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Pooled features (n, f) of the frozen trunk of ``model`` for every image of ``pixels``.

    ``pixels`` is a :class:`~l2c_explorer.store.PixelStore` or a uint8 tensor (n, C, S, S). A store's features
    are computed once per trunk: kept on the store (the first pass, self-training and the second pass of a
    run share them) and in its folder's cache (a later run, or a relearning, reads them back).
    """
    if isinstance(pixels, torch.Tensor):
        return compute_trunk_features(model, lambda a, b: pixels[a:b], len(pixels), device=device,
                                      progress=progress, should_stop=should_stop)
    key = trunk_key(model)
    if key in pixels.features:
        if progress is not None:
            progress(len(pixels), len(pixels))
        return pixels.features[key]
    digest = np.frombuffer(paths_digest(list(pixels.paths)), np.uint8)
    cached = pixels.cache.load(key, ("features", "paths_digest")) if pixels.cache is not None else None
    if cached is not None and len(cached["features"]) == len(pixels) and np.array_equal(cached["paths_digest"], digest):
        features = torch.from_numpy(cached["features"].astype(np.float32))
        if progress is not None:
            progress(len(pixels), len(pixels))
    else:
        features = compute_trunk_features(model, pixels.rows, len(pixels), device=device, progress=progress,
                                          should_stop=should_stop)
        if pixels.cache is not None:
            pixels.cache.save(key, features=features.numpy(), paths_digest=digest)
    pixels.features[key] = features
    return features


@torch.no_grad()
def embed_store(
    model: SimilarityModel,
    store: PixelStore,
    *,
    device: torch.device,
    batch_size: int = BATCH,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Unit embeddings (n, d) of a store's images with ``model`` as it is (no statistics re-estimated)."""
    if has_frozen_trunk(model.net):  # the trunk's features once, then only the trained top
        features = trunk_features(model, store, device=device, progress=progress, should_stop=should_stop)
        return torch.nn.functional.normalize(model.net.encoder.from_features(features), dim=1)
    net = inference_copy(model.net, device)
    out = []
    for start, pixels in store.chunks(max(batch_size, 2048)):
        for s in range(0, len(pixels), batch_size):
            if should_stop is not None and should_stop():
                raise StoppedError("Stopped while computing features; nothing was learnt.")
            out.append(net.embed(model.inputs(pixels[s : s + batch_size]).to(device)).cpu())
        if progress is not None:
            progress(start + len(pixels), len(store))
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------------
# whole folders, here or on a cluster


@dataclass
class EmbeddedImages:
    """The unit embeddings of a folder's images and where they came from.

    Attributes
    ----------
    embeddings : ndarray of shape (n_images, d), float32
    paths : list of str
        Relative to ``root``, in the order of the rows.
    model : SimilarityModel
        The similarity model with the batch-norm statistics the embeddings were computed with.
    root : Path or None
    labels : list of str or None
    skipped : list of (str, str)
    """

    embeddings: np.ndarray
    paths: list[str]
    model: SimilarityModel
    root: Path | None = None
    labels: list[str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _read_pixels(files: list[Path], size: int, channels: int) -> tuple[np.ndarray, list[int], list[str]]:
    """Decoded pixels of the readable ``files``, their positions, and a reason for each other file."""
    arrays, ok, reasons = [], [], []
    for i, f in enumerate(files):
        try:
            arrays.append(read_image(f, size=size, channels=channels))
            ok.append(i)
            reasons.append("")
        except ImageReadError as exc:
            reasons.append(str(exc))
    shape = (0, channels, size, size)
    return (np.stack(arrays) if arrays else np.zeros(shape, np.uint8)), ok, reasons


def embed_files(files: list[str], state: dict, config: dict) -> tuple[np.ndarray, list[int], list[str]]:
    """Read and embed one chunk of image files (run by a cluster worker): (embeddings, kept positions, reasons).

    ``state`` and ``config`` describe the adapted model (its weights and its architecture / preprocessing), so
    the worker needs the package but no model file.
    """
    from .data import Preprocessing
    from .nets import build_similarity_net

    torch.set_num_threads(int(config.get("threads", 1)))
    device = torch.device(config.get("device", "cpu"))
    net = build_similarity_net(config["architecture"])
    net.load_state_dict(state)
    dim = net.encoder.project.out_features
    net = inference_copy(net, device)
    prep = Preprocessing.from_dict(config["preprocessing"])
    model = SimilarityModel(net.eval(), prep, {})
    pixels, ok, reasons = _read_pixels([Path(f) for f in files], prep.size, prep.channels)
    with torch.no_grad():
        if has_frozen_trunk(net):  # as on this machine: the trunk's features (in bfloat16 where fast), then the top
            features = compute_trunk_features(model, lambda a, b: torch.from_numpy(pixels[a:b]), len(pixels),
                                              device=device)
            emb = [torch.nn.functional.normalize(net.encoder.from_features(features), dim=1)] if len(pixels) else []
        else:
            emb = [net.embed(model.inputs(torch.from_numpy(pixels[s : s + BATCH])).to(device)).cpu()
                   for s in range(0, len(pixels), BATCH)]
    out = torch.cat(emb).numpy() if emb else np.zeros((0, dim), np.float32)
    return out, ok, reasons


def embed_folder(
    folder: str | os.PathLike,
    model="omniglot",
    *,
    client=None,
    adapt_norm: bool = True,
    labelled: bool = False,
    chunk: int = 2048,
    worker_threads: int = 1,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    device: str | torch.device = "auto",
    follow_links: bool = False,
) -> EmbeddedImages:
    """Embed every image of ``folder`` with a similarity model, here or on a Dask cluster.

    Parameters
    ----------
    folder : path
        Searched recursively, only read (links that lead outside it only with ``follow_links``). With a
        ``client`` every worker must see it at the same path.
    model : str, path or SimilarityModel
    client : dask.distributed.Client, optional
        Chunks of ``chunk`` files are read and embedded by the cluster's workers (each with
        ``worker_threads`` torch threads); without it, here, a chunk at a time.
    adapt_norm : bool
        Re-estimate the batch-norm statistics on the folder first (on a random sample of at most
        :data:`NORM_SAMPLE` images, read here); the workers then all use the same adapted model.
    device : {"auto", "cpu", "cuda"}
        Where the statistics and, without a client, the embeddings are computed; cluster workers use their CPUs.

    Returns
    -------
    EmbeddedImages
    """
    from .store import folder_listing

    model = load_similarity_model(model)
    prep = model.preprocessing
    root, files, ignored, _ = folder_listing(folder, follow_links=follow_links)
    if not files:
        raise InputError(f"No images found in {root}.")
    device = torch.device("cpu") if client is not None else resolve_device(device)
    if adapt_norm:
        def pixels_of(index: np.ndarray) -> torch.Tensor:
            arrays = []
            for i in index.tolist():
                try:
                    arrays.append(read_image(files[i], size=prep.size, channels=prep.channels))
                except ImageReadError:
                    continue
            return torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros((0, prep.channels, prep.size, prep.size), dtype=torch.uint8)

        model = adapt_model(model, pixels_of, len(files), device=device, seed=seed)
    names = [str(f) for f in files]
    if client is None:
        state = {k: v.cpu() for k, v in model.net.state_dict().items()}
        config = {"architecture": model.card["architecture"], "preprocessing": prep.to_dict(),
                  "threads": torch.get_num_threads(), "device": str(device)}
        embeddings, ok, reasons = [], [], []
        for start in range(0, len(names), chunk):
            emb, kept, why = embed_files(names[start : start + chunk], state, config)
            embeddings.append(emb)
            ok += [start + i for i in kept]
            reasons += why
            if progress is not None:
                progress(min(start + chunk, len(names)), len(names))
        embeddings = np.concatenate(embeddings)
    else:
        embeddings, ok, reasons = embed_on_cluster(client, model, names, chunk=chunk, worker_threads=worker_threads)
    rel = [f.relative_to(root).as_posix() for f in files]
    paths = [rel[i] for i in ok]
    skipped = list(ignored) + [(rel[i], r) for i, r in enumerate(reasons) if r]
    if not paths:
        raise InputError(f"None of the {len(files)} image files in {root} could be read.")
    return EmbeddedImages(
        embeddings=np.asarray(embeddings, dtype=np.float32),
        paths=paths,
        model=model,
        root=root,
        labels=[class_of(p) for p in paths] if labelled else None,
        skipped=sorted(skipped),
    )


def embed_on_cluster(
    client, model: SimilarityModel, files: list[str], *, chunk: int = 2048, worker_threads: int = 1
) -> tuple[np.ndarray, list[int], list[str]]:
    """Embed image ``files`` (paths every worker can read) with ``model`` on a Dask cluster, as it is.

    Returns the embeddings (m, d) of the readable files, their positions in ``files`` and a reason for every
    file ("" when it was read).
    """
    state = client.scatter({k: v.cpu() for k, v in model.net.state_dict().items()}, broadcast=True)
    config = {"architecture": model.card["architecture"], "preprocessing": model.preprocessing.to_dict(),
              "threads": int(worker_threads)}
    chunks = [files[s : s + chunk] for s in range(0, len(files), chunk)]
    futures = client.map(embed_files, chunks, state=state, config=config, pure=False)
    embeddings, ok, reasons = [], [], []
    for start, (emb, kept, why) in zip(range(0, len(files), chunk), client.gather(futures)):
        embeddings.append(np.asarray(emb, dtype=np.float32))
        ok += [start + i for i in kept]
        reasons += list(why)
    return np.concatenate(embeddings), ok, reasons

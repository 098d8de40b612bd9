"""One-file model storage that never executes code when read.

A model file is a safetensors file: a JSON header (tensor names, dtypes, shapes, and a string-to-string
metadata map) followed by raw tensor bytes. Reading it parses JSON and copies bytes; nothing is
unpickled. Our metadata holds:

``format``
    ``"l2c-explorer"``; any other file is refused as foreign.
``kind``
    what the file holds (``"similarity"``, ``"clustering"``, ``"adaptation"``).
``config``
    JSON: the architecture and its hyper-parameters, preprocessing, training summary, metrics, version.
``sha256``
    digest of the config and every tensor's name, dtype, shape and bytes, checked on load, so a file
    altered after saving (or cut short) is refused rather than silently misbehaving.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .errors import ModelFileError
from .files import write_bytes

FORMAT = "l2c-explorer"
FORMAT_VERSION = "1"
MODEL_SUFFIX = ".safetensors"


def model_file_path(path) -> Path:
    """Where a model asked to be saved at ``path`` goes: ``.safetensors`` is added only when the name has no
    suffix (``my_model`` -> ``my_model.safetensors``; ``my_model.pt`` stays as given, safetensors inside)."""
    path = Path(path)
    return path.with_name(path.name + MODEL_SUFFIX) if path.suffix == "" else path


def content_digest(tensors: dict[str, torch.Tensor], config_json: str) -> str:
    """sha256 over the config text and each tensor (sorted by name): name, dtype, shape and bytes."""
    h = hashlib.sha256()
    h.update(config_json.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode("utf-8"))
        h.update(str(t.dtype).encode("ascii"))
        h.update(str(tuple(t.shape)).encode("ascii"))
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_model_file(path: str | os.PathLike, tensors: dict[str, torch.Tensor], *, kind: str, config: dict) -> Path:
    """Write ``tensors`` and ``config`` to ``path`` (atomically: a temporary file then a rename)."""
    path = Path(path)
    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    config_json = json.dumps(config, sort_keys=True)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config_json,
        "sha256": content_digest(tensors, config_json),
    }
    return write_bytes(path, save(tensors, metadata=metadata))  # an ordinary file: mode 0o666 less the umask


def read_model_file(path: str | os.PathLike, *, kind: str) -> tuple[dict[str, torch.Tensor], dict, str]:
    """Read and verify a model file.

    Returns
    -------
    tensors : dict of name -> Tensor (on the CPU)
    config : dict
    digest : str
        The verified sha256, which identifies the model in run records.

    Raises
    ------
    ModelFileError
        If the file is missing, not a safetensors file, cut short, not one of ours, of another kind, or
        its contents do not match the digest recorded when it was saved.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"Model file not found: {path}")
    if not path.is_file():
        raise ModelFileError(f"Not a model file: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(
            f"{path.name} is not a readable l2c-explorer model file (not safetensors, or truncated): {exc}"
        ) from None
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path.name} was not written by l2c-explorer; refusing to use it.")
    if metadata.get("kind") != kind:
        raise ModelFileError(f"{path.name} holds a {metadata.get('kind')!r} model, not a {kind!r} model.")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path.name} uses model format version {metadata.get('format_version')!r}; this l2c-explorer reads "
            f"version {FORMAT_VERSION}."
        )
    config_json = metadata.get("config", "")
    digest = content_digest(tensors, config_json)
    if digest != metadata.get("sha256"):
        raise ModelFileError(f"{path.name} has been modified or damaged since it was saved (checksum mismatch).")
    try:
        config = json.loads(config_json)
    except json.JSONDecodeError:
        raise ModelFileError(f"{path.name} has an unreadable configuration block.") from None
    return tensors, config, digest

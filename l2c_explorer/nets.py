"""Network building blocks: small composable modules with keyword-only constructors.

Shapes: ``b`` batch, ``c`` channels, ``s`` input side, ``d`` embedding size, ``k`` clusters.

The similarity network (the SPN) is siamese: one encoder embeds every image once, and the pair head
scores all ``b x b`` pairs with one matrix product. That is the same kind of pairwise classifier as the
authors' concatenation MLP, but its cost grows with ``b`` for the network and ``b^2`` only for a dot
product, instead of ``b^2`` rows through a 2048 x 4096 layer.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------------
# encoders


class ConvBlock(nn.Module):
    """conv 3x3 -> batch norm -> ReLU -> 2x2 max pool: halves the side."""

    def __init__(self, *, dim_in: int, dim_out: int):
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size=3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(dim_out)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, c, s, s) -> (b, c', s/2, s/2)
        return self.pool(F.relu(self.norm(self.conv(x)), inplace=True))


class ConvEncoder(nn.Module):
    """A VGG-style stack of :class:`ConvBlock` followed by a linear projection to ``embedding_dim``."""

    def __init__(self, *, in_channels: int, widths: tuple[int, ...], embedding_dim: int, input_size: int):
        super().__init__()
        assert input_size % (2 ** len(widths)) == 0, "input_size must be divisible by 2 ** len(widths)"
        dims = (in_channels, *widths)
        self.blocks = nn.Sequential(*[ConvBlock(dim_in=a, dim_out=b) for a, b in zip(dims[:-1], dims[1:])])
        side = input_size // (2 ** len(widths))
        self.feature_dim = widths[-1] * side * side
        self.project = nn.Linear(self.feature_dim, embedding_dim)
        self.embedding_dim = embedding_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (b, c, s, s) -> (b, feature_dim)
        return self.blocks(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, c, s, s) -> (b, d)
        return self.project(self.features(x))


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a shortcut (He et al.); ``stride`` 2 halves the side."""

    def __init__(self, *, dim_in: int, dim_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(dim_in, dim_out, kernel_size=3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(dim_out)
        self.conv2 = nn.Conv2d(dim_out, dim_out, kernel_size=3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(dim_out)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and dim_in == dim_out
            else nn.Sequential(nn.Conv2d(dim_in, dim_out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(dim_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, c, s, s) -> (b, c', s / stride, s / stride)
        y = F.relu(self.norm1(self.conv1(x)), inplace=True)
        return F.relu(self.norm2(self.conv2(y)) + self.shortcut(x), inplace=True)


class ResNetEncoder(nn.Module):
    """A small ResNet for small photos: a 3x3 stem, stages of :class:`ResidualBlock`, global average pooling
    and a linear projection to ``embedding_dim``.

    Each stage after the first halves the side; ``stem_stride`` 2 halves it once more at the input, which
    lets a 64-pixel input cost what a 32-pixel one does while the stem still sees every pixel.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        widths: tuple[int, ...],
        blocks: tuple[int, ...],
        embedding_dim: int,
        stem_stride: int = 1,
    ):
        super().__init__()
        assert len(widths) == len(blocks), "one block count per stage"
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], kernel_size=3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        layers, dim = [], widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks)):
            for i in range(count):
                layers.append(ResidualBlock(dim_in=dim, dim_out=width, stride=2 if stage > 0 and i == 0 else 1))
                dim = width
        self.stages = nn.Sequential(*layers)
        self.feature_dim = dim
        self.project = nn.Linear(dim, embedding_dim)
        self.embedding_dim = embedding_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (b, c, s, s) -> (b, feature_dim)
        return self.stages(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, c, s, s) -> (b, d)
        return self.project(self.features(x))


class BackboneEncoder(nn.Module):
    """Any feature extractor ``(b, c, s, s) -> (b, feature_dim)`` followed by a projection to ``embedding_dim``
    (a torchvision classification model with its classifier removed, see :mod:`l2c_explorer.backbones`)."""

    def __init__(self, *, backbone: nn.Module, feature_dim: int, embedding_dim: int):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.project = nn.Linear(feature_dim, embedding_dim)
        self.embedding_dim = embedding_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, c, s, s) -> (b, d)
        return self.project(self.features(x))


class PretrainedEncoder(nn.Module):
    """A pretrained trunk (:mod:`l2c_explorer.pretrained`) and a small trained top.

    The trunk's weights come from an installed package and are not stored in model files, except those of its
    last ``tuned_blocks`` blocks (and head convolution) when a similarity model was trained with them
    (:meth:`from_maps`); once trained, the whole trunk is frozen, so everything that trains later,
    self-training included, works on its pooled features: they are computed once per image (:meth:`features`)
    and the top (:meth:`from_features`) is all that runs again.
    """

    frozen_trunk = True

    def __init__(self, *, trunk: nn.Module, feature_dim: int, hidden: int, embedding_dim: int, tuned_blocks: int = 0):
        super().__init__()
        self.trunk = trunk
        self.feature_dim = feature_dim
        self.tuned_blocks = tuned_blocks
        self.cut = len(trunk._blocks) - tuned_blocks  # the first block whose weights the model file holds
        # hidden 0: a linear projection of the pooled features; else one ReLU layer of that width first
        self.hidden = (nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(inplace=True)) if hidden
                       else nn.Identity())
        self.project = nn.Linear(hidden or feature_dim, embedding_dim)
        if not hidden and embedding_dim == feature_dim:  # start from the pretrained features themselves
            with torch.no_grad():
                self.project.weight.copy_(torch.eye(feature_dim))
                self.project.bias.zero_()
        self.embedding_dim = embedding_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, s, s) -> (b, feature_dim)
        return self.trunk(x)

    def from_features(self, features: torch.Tensor) -> torch.Tensor:  # (b, feature_dim) -> (b, d)
        return self.project(self.hidden(features.float()))

    def from_maps(self, maps: torch.Tensor) -> torch.Tensor:  # (b, c, s', s') after block `cut` -> (b, d)
        return self.from_features(self.trunk.forward_from(maps.float(), self.cut))

    def stored_trunk_keys(self) -> tuple[str, ...]:
        """Prefixes of the trunk's parameter names that model files hold (the tuned tail; none when frozen)."""
        return tuple(f"encoder.trunk.{p}" for p in self.trunk.tail_prefixes(self.tuned_blocks))

    def tail_digest(self) -> str:
        """sha256 of the tuned tail's weights ('' when the trunk is the package's as it is)."""
        if not self.tuned_blocks:
            return ""
        import hashlib

        digest = hashlib.sha256()
        for p in self.tail_parameters():
            digest.update(p.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()

    def tail_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.trunk.named_parameters()
                if any(name.startswith(prefix) for prefix in self.trunk.tail_prefixes(self.tuned_blocks))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, s, s) -> (b, d)
        return self.from_features(self.features(x))


def package_supplied(net: nn.Module, key: str) -> bool:
    """Whether a state-dict entry of ``net`` comes from an installed package, not from the model file: the
    frozen part of a pretrained trunk."""
    if not (has_frozen_trunk(net) and key.startswith("encoder.trunk.")):
        return False
    return not key.startswith(net.encoder.stored_trunk_keys())  # () when frozen whole: no prefix matches


def has_frozen_trunk(net: nn.Module) -> bool:
    """Whether a similarity network's encoder is a frozen trunk and a trained top (:class:`PretrainedEncoder`)."""
    return bool(getattr(getattr(net, "encoder", None), "frozen_trunk", False))


# ---------------------------------------------------------------------------------------------------
# pair heads


class CosinePairHead(nn.Module):
    """P(same class) = sigmoid(scale * cos(e_i, e_j) + bias) for every pair, via one matrix product."""

    def __init__(self, *, init_scale: float = 10.0, init_bias: float = -5.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))

    def forward(self, unit_a: torch.Tensor, unit_b: torch.Tensor | None = None) -> torch.Tensor:
        """Unit embeddings (n, d) and (m, d) -> pair logits (n, m)."""
        unit_b = unit_a if unit_b is None else unit_b
        return self.scale * (unit_a @ unit_b.T) + self.bias


class SimilarityNet(nn.Module):
    """Siamese pairwise classifier: an encoder, L2 normalisation and a :class:`CosinePairHead`."""

    def __init__(self, *, encoder: ConvEncoder, head: CosinePairHead):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # (b, c, s, s) -> (b, d), unit norm
        return F.normalize(self.encoder(x), dim=1)

    def pair_logits(self, x: torch.Tensor) -> torch.Tensor:  # (b, c, s, s) -> (b, b)
        return self.head(self.embed(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pair_logits(x)


def build_encoder(arch: dict) -> nn.Module:
    """Rebuild an encoder from the hyper-parameters stored in a model file (weights are loaded separately).

    ``type`` is ``"conv-cosine"`` (:class:`ConvEncoder`, symbols), ``"resnet-cosine"`` (:class:`ResNetEncoder`,
    photos), ``"torchvision-cosine"`` (a torchvision classification model, :class:`BackboneEncoder`) or
    ``"pretrained-cosine"`` (an installed pretrained trunk and a trained top, :class:`PretrainedEncoder`).
    """
    kind = arch.get("type")
    if kind == "conv-cosine":
        return ConvEncoder(
            in_channels=int(arch["in_channels"]),
            widths=tuple(int(w) for w in arch["widths"]),
            embedding_dim=int(arch["embedding_dim"]),
            input_size=int(arch["input_size"]),
        )
    if kind == "resnet-cosine":
        return ResNetEncoder(
            in_channels=int(arch["in_channels"]),
            widths=tuple(int(w) for w in arch["widths"]),
            blocks=tuple(int(b) for b in arch["blocks"]),
            embedding_dim=int(arch["embedding_dim"]),
            stem_stride=int(arch.get("stem_stride", 1)),
        )
    if kind == "torchvision-cosine":
        from .backbones import torchvision_features

        backbone, feature_dim = torchvision_features(str(arch["backbone"]), in_channels=int(arch["in_channels"]))
        return BackboneEncoder(backbone=backbone, feature_dim=feature_dim, embedding_dim=int(arch["embedding_dim"]))
    if kind == "pretrained-cosine":
        from .pretrained import FEATURE_DIM, pretrained_trunk

        return PretrainedEncoder(trunk=pretrained_trunk(str(arch["backbone"])), feature_dim=FEATURE_DIM,
                                 hidden=int(arch["hidden"]), embedding_dim=int(arch["embedding_dim"]),
                                 tuned_blocks=int(arch.get("tuned_blocks", 0)))
    raise ValueError(f"unknown similarity architecture {kind!r}")


def build_similarity_net(arch: dict) -> SimilarityNet:
    """Rebuild a :class:`SimilarityNet` from the hyper-parameters stored in a model file."""
    return SimilarityNet(encoder=build_encoder(arch), head=CosinePairHead())


# ---------------------------------------------------------------------------------------------------
# clustering head


class CosineClusterHead(nn.Module):
    """Cluster logits from unit features: ``temperature * cos(feature, centre_k)`` for ``k`` learnt centres."""

    def __init__(self, *, dim: int, n_clusters: int, temperature: float = 10.0):
        super().__init__()
        self.centres = nn.Parameter(torch.randn(n_clusters, dim) * 0.01)
        self.temperature = temperature

    def forward(self, unit_features: torch.Tensor) -> torch.Tensor:  # (b, d) -> (b, k)
        return self.temperature * unit_features @ F.normalize(self.centres, dim=1).T


# ---------------------------------------------------------------------------------------------------
# the authors' formulation, kept as the reference the speed benchmark compares against


class ConcatPairMLP(nn.Module):
    """The L2C paper's pair head: concatenate the two feature vectors of every ordered pair and classify.

    (b, f) features -> (b * b, 2) logits, pair row ``i * b + j`` = (x_j, x_i) as in the authors' code.
    """

    def __init__(self, *, feature_dim: int = 1024, hidden: int = 4096):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * feature_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2)
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        b = feats.shape[0]
        left = feats.repeat(b, 1)  # row i*b + j -> x_j
        right = feats.repeat_interleave(b, dim=0)  # row i*b + j -> x_i
        return self.net(torch.cat([left, right], dim=1))


def vggs_encoder(*, in_channels: int = 1) -> nn.Module:
    """The authors' VGGS backbone: four blocks of 64-128-256-256 channels, 32x32 -> 1024 features."""
    dims = (in_channels, 64, 128, 256, 256)
    return nn.Sequential(*[ConvBlock(dim_in=a, dim_out=b) for a, b in zip(dims[:-1], dims[1:])], nn.Flatten())


# The largest network of our own kinds a model file may describe (the shipped ones: 0.3 M and 1.3 M weights),
# and the largest input size: the description is checked before anything is allocated, so a crafted file is
# refused, not built (a few numbers in its config could otherwise ask for gigabytes).
MAX_WEIGHTS = 100_000_000
MAX_INPUT_SIZE = 512


def check_net_size(arch: dict) -> None:
    """Raise ValueError when ``arch`` (a model file's architecture) describes a network larger than the limits.

    The network is built on PyTorch's ``meta`` device (shapes only, no memory) to count its weights. Encoders
    of other packages (torchvision, pretrained trunks) have the sizes their names give, and are not counted.
    """
    if not isinstance(arch, dict):
        raise ValueError("the architecture is not a table of settings")
    size = arch.get("input_size", 0)
    if not isinstance(size, int) or not 0 <= size <= MAX_INPUT_SIZE:
        raise ValueError(f"input size {size!r} is not a whole number from 1 to {MAX_INPUT_SIZE}")
    if arch.get("type") not in ("conv-cosine", "resnet-cosine"):
        return
    for key in ("widths", "blocks"):
        values = arch.get(key, [])
        if not isinstance(values, list) or len(values) > 64 or not all(isinstance(v, int) and 0 < v <= 65536
                                                                        for v in values):
            raise ValueError(f"{key} {str(values)[:60]} are not a few whole numbers of sensible size")
    try:
        with torch.device("meta"):
            net = build_similarity_net(arch)
    except (AssertionError, ArithmeticError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"its architecture cannot be built ({exc})") from None
    n = sum(t.numel() for t in (*net.parameters(), *net.buffers()))
    if n > MAX_WEIGHTS:
        raise ValueError(f"it describes a network of {n:,} weights, more than the {MAX_WEIGHTS:,} allowed")

"""Batched, seeded image augmentation on tensors (no per-image Python loop).

Two kinds, each a small frozen dataclass stored in the model card (``to_dict`` / :func:`augmentation_from_dict`):

* :class:`AffineJitter` for symbols and digits: small rotations, zooms, shifts and shears of a dark
  (inverted) canvas;
* :class:`PhotoAugment` for photographs: a random resized crop, a horizontal flip and colour jitter, never
  quarter turns (a photo has an up).

All geometric work is one random affine map per image, applied to the whole batch with a single
``affine_grid`` + ``grid_sample``: at 32-64 pixels this costs far less than the network step it feeds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AffineJitter:
    """Ranges of the random affine map (uniform in each range).

    The ranges each kind of training uses by default are options (``augmentation`` and ``jitter`` in
    :mod:`l2c_explorer.options`) and recipes.

    Attributes
    ----------
    rotation : float
        Maximum rotation, in degrees.
    scale : float
        Maximum relative zoom: the scale is drawn from [1 - scale, 1 + scale].
    shift : float
        Maximum translation, as a fraction of the half-width (grid units).
    shear : float
        Maximum horizontal shear factor.
    """

    rotation: float
    scale: float
    shift: float
    shear: float

    def to_dict(self) -> dict:
        return {"kind": "affine", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> AffineJitter:
        return cls(**{k: float(v) for k, v in d.items() if k != "kind"})

    def apply(self, images: torch.Tensor, *, generator=None, quarter_turns: torch.Tensor | None = None) -> torch.Tensor:
        """Random affine jitter of unit-range (inverted) images (n, C, H, W) -> same shape."""
        theta = random_affine_matrices(images.shape[0], self, quarter_turns=quarter_turns, generator=generator)
        return apply_affine(images, theta)


NO_JITTER = AffineJitter(0.0, 0.0, 0.0, 0.0)


def random_affine_matrices(
    n: int,
    jitter: AffineJitter,
    *,
    quarter_turns: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw ``n`` affine maps as a tensor of shape (n, 2, 3), in ``affine_grid`` convention.

    ``quarter_turns`` (shape (n,), integers) adds an exact multiple of 90 degrees per image.
    """

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    angle = uniform(-jitter.rotation, jitter.rotation) * (math.pi / 180.0)
    if quarter_turns is not None:
        angle = angle + quarter_turns.float() * (math.pi / 2)
    zoom = uniform(1.0 - jitter.scale, 1.0 + jitter.scale)
    shear = uniform(-jitter.shear, jitter.shear)
    tx, ty = uniform(-jitter.shift, jitter.shift), uniform(-jitter.shift, jitter.shift)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # grid = A @ [x, y, 1]: A samples the input, so dividing by the zoom magnifies the output.
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos / zoom
    theta[:, 0, 1] = (-sin + shear * cos) / zoom
    theta[:, 1, 0] = sin / zoom
    theta[:, 1, 1] = (cos + shear * sin) / zoom
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    return theta


def apply_affine(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp images of shape (n, C, H, W) by per-image maps of shape (n, 2, 3); outside pixels become 0."""
    grid = F.affine_grid(theta.to(images.dtype).to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass(frozen=True)
class PhotoAugment:
    """Photo augmentation: random resized crop, horizontal flip and colour jitter (uniform in each range).

    The photo recipe's values are in :mod:`l2c_explorer.recipes`.

    Attributes
    ----------
    min_area : float
        Smallest share of the image a crop keeps (the crop's area is drawn from [min_area, 1]).
    aspect : float
        Largest aspect-ratio change of a crop (drawn log-uniformly from [1/aspect, aspect]).
    flip : float
        Probability of a left-right mirror.
    brightness, contrast, saturation : float
        Each factor is drawn from [1 - value, 1 + value].
    """

    min_area: float
    aspect: float
    flip: float
    brightness: float
    contrast: float
    saturation: float

    def to_dict(self) -> dict:
        return {"kind": "photo", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> PhotoAugment:
        return cls(**{k: float(v) for k, v in d.items() if k != "kind"})

    def apply(self, images: torch.Tensor, *, generator=None, quarter_turns: torch.Tensor | None = None) -> torch.Tensor:
        """Unit-range RGB or grayscale images (n, C, H, W) -> augmented images of the same shape."""
        if quarter_turns is not None:
            raise ValueError("Photo augmentation does not use quarter turns: a photograph has an up.")
        n = images.shape[0]

        def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
            return low + (high - low) * torch.rand(n, *shape, generator=generator)

        area = uniform(self.min_area, 1.0)
        ratio = torch.exp(uniform(-math.log(self.aspect), math.log(self.aspect)))
        width, height = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
        mirror = torch.where(torch.rand(n, generator=generator) < self.flip, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = width * mirror
        theta[:, 1, 1] = height
        theta[:, 0, 2] = uniform(-1.0, 1.0) * (1.0 - width)  # the crop stays inside the image
        theta[:, 1, 2] = uniform(-1.0, 1.0) * (1.0 - height)
        grid = F.affine_grid(theta.to(images.dtype).to(images.device), list(images.shape), align_corners=False)
        x = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return colour_jitter(x, self, generator=generator)


def colour_jitter(images: torch.Tensor, augment: PhotoAugment, *, generator=None) -> torch.Tensor:
    """Random brightness, contrast and saturation of unit-range images (n, C, H, W), clipped to [0, 1]."""
    n = images.shape[0]

    def factor(spread: float) -> torch.Tensor:
        return (1.0 + spread * (2.0 * torch.rand(n, 1, 1, 1, generator=generator) - 1.0)).to(images)

    x = images * factor(augment.brightness)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor(augment.contrast) + mean
    if x.shape[1] == 3:
        gray = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:])
        x = (x - gray) * factor(augment.saturation) + gray
    return x.clamp(0.0, 1.0)


Augmentation = AffineJitter | PhotoAugment


def augmentation_from_dict(d) -> Augmentation:
    """The augmentation a mapping describes: a ``kind`` (``"affine"``, the default, or ``"photo"``) and its
    ranges, as model cards, options and recipes record it; no augmentation for an empty record."""
    if not d:
        return NO_JITTER
    if d.get("kind", "affine") == "photo":
        return PhotoAugment.from_dict(d)
    return AffineJitter.from_dict(d)


def as_augmentation(value) -> Augmentation:
    """An augmentation from itself or from its mapping (see :func:`augmentation_from_dict`)."""
    return value if isinstance(value, (AffineJitter, PhotoAugment)) else augmentation_from_dict(value)


def augment_batch(
    images: torch.Tensor,
    augmentation: Augmentation,
    *,
    quarter_turns: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Augment unit-range images, shape (n, C, H, W) -> same shape (see :class:`AffineJitter`, :class:`PhotoAugment`)."""
    return augmentation.apply(images, generator=generator, quarter_turns=quarter_turns)

"""Batched, seeded image augmentation on tensors (no per-image Python loop).

All geometric jitter is one random affine map per image, applied to the whole batch with a single
``affine_grid`` + ``grid_sample``: at 32 x 32 this costs far less than the network step it feeds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AffineJitter:
    """Ranges of the random affine map (uniform in each range).

    The ranges each kind of training uses by default are options (``jitter`` in
    :mod:`l2c_explorer.options`).

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
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AffineJitter:
        return cls(**{k: float(v) for k, v in d.items()})

    def scaled(self, factor: float) -> AffineJitter:
        return AffineJitter(self.rotation * factor, self.scale * factor, self.shift * factor, self.shear * factor)


NO_JITTER = AffineJitter(0.0, 0.0, 0.0, 0.0)


def as_jitter(value) -> AffineJitter:
    """An :class:`AffineJitter` from itself or from a mapping of its four ranges (as options and recipes give them)."""
    return value if isinstance(value, AffineJitter) else AffineJitter(**value)


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


def augment_batch(
    images: torch.Tensor,
    jitter: AffineJitter,
    *,
    quarter_turns: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random affine jitter of unit-range (inverted) images, shape (n, C, H, W) -> same shape."""
    theta = random_affine_matrices(images.shape[0], jitter, quarter_turns=quarter_turns, generator=generator)
    return apply_affine(images, theta)

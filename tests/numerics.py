"""Comparing floating-point results portably: tolerances from the dtype and the size of the computation.

The rule (also in tests/README.md): a value that accumulates ``n_terms`` rounded operations in a dtype of
machine epsilon ``eps`` (float32: 2**-23, float64: 2**-52) is compared with

    |actual - expected| <= n_terms * eps * scale

where ``scale`` is the magnitude of the terms summed (the sum of their absolute values; 1 for the cosine of
two unit vectors), times any amplification by later steps, stated where it is used. This is the
worst-case bound of recursive summation (Higham: |fl(sum) - sum| <= (n-1) u sum|x_i|, u = eps / 2) for
each of the two results compared, so it holds whatever order the sums are done in: another BLAS kernel,
SIMD width or number of threads (the suite runs once with the default thread count and once with
OMP_NUM_THREADS=1). A typical error is nearer sqrt(n_terms) * eps, so the bound has margin, yet it stays
far below any difference that would mean a real error.

Exact comparisons stay exact where the code promises them (seeded runs twice in one process, integer
results); neighbour searches tolerate ties closer than the tolerance (:func:`assert_neighbours`).
"""

from __future__ import annotations

import numpy as np
import torch


def tolerance(n_terms: int, dtype=np.float32, scale: float = 1.0) -> float:
    """The largest difference two roundings of the same computation may show (see the module's rule)."""
    return float(max(n_terms, 1) * np.finfo(np.dtype(dtype)).eps * scale)


def assert_close(actual, expected, *, n_terms: int, dtype=np.float32, scale: float = 1.0, plus: float = 0.0) -> None:
    """``actual`` equals ``expected`` up to :func:`tolerance` (arrays, tensors or numbers).

    ``plus``: a known difference of method rather than of rounding (e.g. an epsilon added inside a log),
    bounded and stated by the caller, added to the tolerance.
    """
    a, e = _as_float64(actual), _as_float64(expected)
    assert a.shape == e.shape, f"shapes differ: {a.shape} vs {e.shape}"
    tol = tolerance(n_terms, dtype, scale) + plus
    worst = float(np.max(np.abs(a - e))) if a.size else 0.0
    assert worst <= tol, (f"differ by up to {worst:.3g}, more than {tol:.3g} ({n_terms} terms of "
                          f"{np.dtype(dtype).name} at scale {scale:g})")


def assert_neighbours(embedding, indices, cosines, k: int, *, n_terms: int | None = None) -> None:
    """``indices`` (n, k) are each row's ``k`` nearest other rows of unit ``embedding`` (n, d) by cosine,
    nearest first, with ``cosines`` their float32 cosines; ties closer than the tolerance may go either way.
    """
    x = _as_float64(embedding)
    indices, cosines = np.asarray(indices), _as_float64(cosines)
    n, d = x.shape
    tol = tolerance(n_terms or d)
    exact = x @ x.T
    np.fill_diagonal(exact, -np.inf)
    assert indices.shape == (n, k) and not np.any(indices == np.arange(n)[:, None]), "self or wrong shape"
    assert all(len(set(row)) == k for row in indices.tolist()), "a neighbour listed twice"
    assert np.all(np.abs(np.take_along_axis(exact, indices, 1) - cosines) <= tol), "cosines off"
    assert np.all(cosines[:, :-1] >= cosines[:, 1:]), "not nearest first"
    kth = -np.sort(-exact, axis=1)[:, k - 1]  # the k-th largest exact cosine of each row
    assert np.all(np.take_along_axis(exact, indices, 1) >= kth[:, None] - 2 * tol), "a farther image was chosen"


def clear_neighbours(embedding, k: int, *, n_terms: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Masks (n, n) of the pairs that are surely among / surely not among each row's ``k`` nearest.

    Pairs whose cosine is within the tolerance of a row's k-th largest cosine are in neither mask (a near-tie
    may go either way on another machine).
    """
    x = _as_float64(embedding)
    exact = x @ x.T
    np.fill_diagonal(exact, -np.inf)
    tol = tolerance(n_terms or x.shape[1])
    ordered = -np.sort(-exact, axis=1)
    kth, next_one = ordered[:, k - 1 : k], ordered[:, k : k + 1]
    surely_in = exact > next_one + 2 * tol
    surely_out = exact < kth - 2 * tol
    return surely_in, surely_out


def fan_ins(net: torch.nn.Module) -> int:
    """The terms a network's output accumulates: the fan-ins of its convolutions and linear layers, added up."""
    return sum(m.weight[0].numel() for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))


def _as_float64(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)

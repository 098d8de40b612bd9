"""A large graph's spectrum without its eigenvectors: Chebyshev moments and low-pass filtered random signals.

Discovery needs two things from the normalised similarity graph ``M = D^-1/2 A D^-1/2`` (eigenvalues in
[-1, 1]): its largest eigenvalues, whose gaps count the categories, and the diffusion features (the top
eigenvectors weighted by their eigenvalues). Computed exactly, hundreds of eigenvectors of a graph of tens of
thousands of images cost O(n m^2) and minutes. Both have linear-cost estimates that only multiply ``M``
with a few dozen vectors:

* :func:`chebyshev_moments` and :func:`estimated_eigenvalues`: the kernel polynomial method (Weisse et al.,
  Rev. Mod. Phys. 2006). The trace of each Chebyshev polynomial ``T_j(M)`` is estimated from random +-1
  probes (Hutchinson); with Jackson damping these moments give the number of eigenvalues above any
  ``lambda``, whose inverse is the sorted spectrum, smoothed by about pi / (2 * degree) and counted to
  about sqrt(2 k / probes) eigenvalues near the k-th.
* :func:`lowpass_features`: compressive spectral clustering (Tremblay et al., ICML 2016). Random Gaussian
  signals filtered by a polynomial approximation of ``h(M)``, with ``h(lambda) = lambda^t`` above the
  ``m``-th eigenvalue and 0 below, have rows whose inner products approximate those of the diffusion
  features (a random projection of them, Johnson-Lindenstrauss), in ``dim`` dimensions whatever ``m``.

The graph's rows are put in reverse Cuthill-McKee order first, so the sparse products read memory in
order (1.7x faster on a 100,000-image graph).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

# Chebyshev degree and random probes of the spectrum estimate; low-pass degree and dimension of the features.
# Set during development on Omniglot background characters and checked by benchmarks/spectrum_settings.py
# (500 background characters, 10,000 drawings, K from exact against estimated eigenvalues, three probe
# seeds). Every setting tried (degree 300-1000, 48-128 probes) reads K up to 9% under the exact spectrum's;
# none is closer on both graphs than degree 300 with 48 probes (worst errors 33 and 22), which costs a
# third to a fifth of the others. The feature settings were not retuned; benchmarks/scale.py compares exact
# and estimated discovery at 10k-25k images.
KPM_DEGREE = 300
KPM_PROBES = 48
FILTER_DEGREE = 100
FEATURE_DIM = 256


def _operator(matrix: sp.spmatrix) -> tuple[torch.Tensor, np.ndarray]:
    """``matrix`` as a float32 torch CSR tensor in reverse Cuthill-McKee order, and that order."""
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    m = sp.csr_matrix(matrix, dtype=np.float32)
    order = reverse_cuthill_mckee(m, symmetric_mode=True).astype(np.int64)
    m = m[order][:, order].tocsr()
    m.sort_indices()
    tensor = torch.sparse_csr_tensor(
        torch.from_numpy(m.indptr.astype(np.int64)),
        torch.from_numpy(m.indices.astype(np.int64)),
        torch.from_numpy(m.data),
        size=m.shape,
    )
    return tensor, order


def jackson(n_moments: int) -> np.ndarray:
    """Jackson damping factors g_0..g_{N-1}: a positive, smoothing kernel for a truncated Chebyshev series."""
    j = np.arange(n_moments)
    a = np.pi / (n_moments + 1)
    return ((n_moments - j + 1) * np.cos(a * j) + np.sin(a * j) / np.tan(a)) / (n_moments + 1)


def chebyshev_moments(
    matrix: sp.spmatrix, *, degree: int = KPM_DEGREE, n_probes: int = KPM_PROBES, seed: int = 0
) -> np.ndarray:
    """Estimated traces ``tr T_j(M)`` for j = 0..2*degree+1 of a symmetric matrix with spectrum in [-1, 1].

    ``degree`` products of ``M`` with ``n_probes`` random +-1 vectors; the doubling relations
    ``T_2j = 2 T_j^2 - 1`` and ``T_2j+1 = 2 T_j+1 T_j - T_1`` give twice as many moments.
    """
    op, _ = _operator(matrix)
    n = op.shape[0]
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(0, 2, (n, n_probes), generator=g).float().mul_(2).sub_(1)
    mu = np.zeros(2 * degree + 2)

    def dot(a: torch.Tensor, b: torch.Tensor) -> float:
        # float32 products summed in float64: the sum runs over n * n_probes terms
        return float(torch.sum(a * b, dtype=torch.float64)) / n_probes

    previous, current = w, op @ w
    mu[0], mu[1] = dot(w, w), dot(current, w)
    for j in range(1, degree + 1):
        mu[2 * j] = 2.0 * dot(current, current) - mu[0]
        following = 2.0 * (op @ current) - previous
        mu[2 * j + 1] = 2.0 * dot(following, current) - mu[1]
        previous, current = current, following
    return mu


def counting_function(moments: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """Estimated number of eigenvalues >= each of ``lambdas`` (Jackson-damped Chebyshev series of the step)."""
    n_moments = len(moments)
    j = np.arange(1, n_moments)
    theta = np.arccos(np.clip(np.asarray(lambdas, dtype=np.float64), -1.0, 1.0))
    damped = jackson(n_moments) * moments
    out = np.empty(len(theta))
    for s in range(0, len(theta), 4096):  # (4096, n_moments) at a time
        th = theta[s : s + 4096, None]
        coefficients = 2.0 / np.pi * np.sin(j * th) / j
        out[s : s + 4096] = th[:, 0] / np.pi * damped[0] + coefficients @ damped[1:]
    return out


def estimated_eigenvalues(moments: np.ndarray, n_values: int, *, grid: int = 40_001) -> np.ndarray:
    """The ``n_values`` largest eigenvalues (descending) read from the counting function of ``moments``.

    The k-th is the largest ``lambda`` with at least k - 1/2 eigenvalues above it (on a grid of ``grid``
    points in cos-angle, which is finest near 1 where the categories' eigenvalues lie).
    """
    theta = np.linspace(0.0, np.pi, grid)
    lambdas = np.cos(theta)  # 1 .. -1, decreasing
    counts = np.maximum.accumulate(counting_function(moments, lambdas))  # non-decreasing as lambda falls
    ranks = np.arange(1, n_values + 1) - 0.5
    first = np.searchsorted(counts, ranks, side="left")  # first grid point with count >= rank
    return lambdas[np.minimum(first, grid - 1)]


def lowpass_coefficients(cutoff: float, diffusion_time: float, degree: int) -> np.ndarray:
    """Jackson-damped Chebyshev coefficients of h(x) = max(x, 0)^t for x >= cutoff, 0 below."""
    n_nodes = 4 * (degree + 1)
    theta = np.pi * (np.arange(n_nodes) + 0.5) / n_nodes  # Chebyshev-Gauss nodes
    x = np.cos(theta)
    h = np.where(x >= cutoff, np.clip(x, 0.0, None) ** diffusion_time, 0.0)
    j = np.arange(degree + 1)
    c = 2.0 / n_nodes * (np.cos(np.outer(j, theta)) @ h)
    c[0] /= 2.0
    return c * jackson(degree + 1)


def lowpass_features(
    matrix: sp.spmatrix,
    cutoff: float,
    *,
    diffusion_time: float = 1.0,
    dim: int = FEATURE_DIM,
    degree: int = FILTER_DEGREE,
    seed: int = 0,
) -> np.ndarray:
    """Unit features (n, dim): ``dim`` Gaussian signals filtered by h(M) (see :func:`lowpass_coefficients`).

    Their inner products approximate those of the diffusion features of the eigenvectors with eigenvalue
    above ``cutoff``, so they can replace them for k-means and the clustering network.
    """
    op, order = _operator(matrix)
    n = op.shape[0]
    g = torch.Generator().manual_seed(seed)
    signals = torch.randn(n, dim, generator=g)
    c = lowpass_coefficients(cutoff, diffusion_time, degree)
    previous, current = signals, op @ signals
    out = c[0] * previous + c[1] * current
    for j in range(2, degree + 1):
        previous, current = current, 2.0 * (op @ current) - previous
        out.add_(current, alpha=float(c[j]))
    out = torch.nn.functional.normalize(out, dim=1)
    features = np.empty((n, dim), dtype=np.float32)
    features[order] = out.numpy()
    return features

"""Estimated spectra (kernel polynomial method) and low-pass filtered features, against exact ones."""

import numpy as np
import scipy.sparse as sp
import torch

from l2c_explorer.graph import (
    diffusion_features,
    eigengap_k,
    knn_graph,
    normalised_adjacency,
    stochastic_spectrum,
    top_eigenpairs,
    top_eigenvalues,
)
from l2c_explorer.spectrum import (
    chebyshev_moments,
    counting_function,
    estimated_eigenvalues,
    jackson,
    lowpass_coefficients,
    lowpass_features,
)


def blob_graph(k: int = 12, per: int = 25, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(k, 24, generator=g), dim=1)
    x = torch.nn.functional.normalize(centres.repeat_interleave(per, 0) + 0.05 * torch.randn(k * per, 24, generator=g), dim=1)
    return knn_graph(x, k=8), np.repeat(np.arange(k), per)


def test_moments_of_a_known_spectrum():
    # a diagonal matrix: tr T_j(M) = sum_i cos(j arccos d_i), estimated exactly by +-1 probes
    d = np.linspace(-0.9, 0.95, 50)
    mu = chebyshev_moments(sp.diags(d), degree=10, n_probes=4)
    exact = np.array([np.cos(j * np.arccos(d)).sum() for j in range(22)])
    assert np.allclose(mu, exact, atol=1e-3)


def test_counting_function_and_eigenvalues_of_a_known_spectrum():
    d = np.r_[np.full(5, 0.97), np.linspace(-0.5, 0.3, 95)]  # five near 1, a wide gap, the rest
    mu = chebyshev_moments(sp.diags(d), degree=200, n_probes=4)
    counts = counting_function(mu, np.array([0.99, 0.6, -0.99]))
    assert abs(counts[0]) < 0.5 and abs(counts[1] - 5) < 0.5 and abs(counts[2] - 100) < 0.5
    values = estimated_eigenvalues(mu, 8)
    assert np.all(np.diff(values) <= 0) and np.allclose(values[:5], 0.97, atol=0.02)
    assert eigengap_k(values, max_k=7) == 5


def test_jackson_damping_starts_at_one_and_decays():
    g = jackson(50)
    assert abs(g[0] - 1) < 1e-12 and np.all(np.diff(g) <= 1e-12) and g[-1] < 0.01


def test_lowpass_coefficients_approximate_the_filter():
    c = lowpass_coefficients(cutoff=0.5, diffusion_time=1.0, degree=200)
    x = np.array([-0.5, 0.2, 0.7, 0.95])
    values = np.polynomial.chebyshev.chebval(x, c)
    assert np.allclose(values, [0.0, 0.0, 0.7, 0.95], atol=0.03)


def test_estimated_k_of_a_blob_graph_matches_the_exact_spectrum():
    graph, _ = blob_graph()
    matrix = normalised_adjacency(graph)
    exact, _ = top_eigenpairs(matrix, 30)
    estimate = top_eigenvalues(matrix, 30, method="stochastic")
    assert eigengap_k(estimate, max_k=29) == eigengap_k(exact, max_k=29) == 12
    assert np.allclose(estimate[:12], exact[:12], atol=0.02)


def test_lowpass_features_keep_the_groups_apart():
    graph, labels = blob_graph()
    features, values = diffusion_features(graph, n_components=12, diffusion_time=1.0, method="stochastic", n_values=20)
    assert features.shape == (len(labels), 256) and len(values) == 20
    assert np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    cos = features @ features.T
    same = labels[:, None] == labels[None, :]
    assert cos[same].mean() > 0.8 and cos[~same].mean() < 0.2
    direct = lowpass_features(normalised_adjacency(graph), 0.5, dim=16, degree=50, seed=3)
    assert direct.shape == (len(labels), 16)


def test_the_auto_rule_keeps_small_or_cheap_problems_exact():
    assert not stochastic_spectrum(900, 1001)  # dense solver
    assert not stochastic_spectrum(6000, 101)  # Lanczos with few eigenpairs
    assert stochastic_spectrum(6000, 310) and stochastic_spectrum(100_000, 101)
    assert stochastic_spectrum(10, 5, "stochastic") and not stochastic_spectrum(10**6, 10**3, "exact")

"""Unit tests of the domain-adaptation loss terms (pure functions), each against a brute-force formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from numerics import assert_close

from l2c_explorer.adaptation.functional import (
    EPS,
    class_centroids,
    dann_ramp,
    domain_adversarial_loss,
    grad_reverse,
    hard_pair_targets,
    lloyd_kmeans,
    soft_cross_entropy,
    source_sample_weights,
    srdc_auxiliary_distribution,
    student_t_assignment,
)
from l2c_explorer.adaptation.nets import AdaptationNet, DomainNormStats
from l2c_explorer.metrics import classification_scores
from l2c_explorer.nets import ConvEncoder

pytestmark = pytest.mark.numerical  # .ci/run runs these again on one thread


def random_probs(n: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, k, generator=g) * 2, dim=1)


# -- gradient reversal and DANN ----------------------------------------------------------------------


@pytest.mark.parametrize("coeff", [1.0, 0.3, 0.0])
def test_gradient_reversal_is_identity_forward_and_flips_and_scales_the_gradient(coeff):
    x = torch.randn(5, 3, requires_grad=True)
    w = torch.randn(5, 3)
    y = grad_reverse(x, coeff)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -coeff * w)


def test_gradient_reversal_only_reverses_what_flows_through_it():
    """A discriminator behind the reversal still descends its own loss; the features ascend it."""
    feats = torch.randn(8, 4, requires_grad=True)
    disc = nn.Linear(4, 1)
    loss = disc(grad_reverse(feats, 1.0)).sum()
    loss.backward()
    plain = torch.autograd.grad(disc(feats).sum(), feats)[0]
    assert torch.allclose(feats.grad, -plain)
    assert torch.allclose(disc.weight.grad, feats.detach().sum(0, keepdim=True))


def test_dann_ramp_schedule():
    assert dann_ramp(0.0) == 0.0
    assert dann_ramp(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert dann_ramp(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    values = [dann_ramp(p) for p in np.linspace(0, 1, 11)]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert dann_ramp(-1.0) == 0.0 and dann_ramp(2.0) == dann_ramp(1.0)


def test_domain_adversarial_loss_values_and_direction():
    zeros = torch.zeros(4)
    assert float(domain_adversarial_loss(zeros, zeros)) == pytest.approx(math.log(2))
    s = torch.zeros(3, requires_grad=True)
    t = torch.zeros(5, requires_grad=True)
    domain_adversarial_loss(s, t).backward()
    assert (s.grad < 0).all() and (t.grad > 0).all()  # descending it pushes source up, target down
    # each domain counts half, whatever the batch sizes
    big = domain_adversarial_loss(torch.full((100,), 3.0), torch.full((2,), -3.0))
    assert float(big) == pytest.approx(F.softplus(torch.tensor(-3.0)).item())


# -- CCN+ --------------------------------------------------------------------------------------------------


def test_hard_pair_targets_threshold_every_pair():
    prob = torch.tensor([[0.9, 0.2, 0.5], [0.2, 0.8, 0.51], [0.5, 0.51, 1.0]])
    expected = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, 1.0], [-1.0, 1.0, 1.0]])
    assert torch.equal(hard_pair_targets(prob), expected)
    assert torch.equal(hard_pair_targets(prob, threshold=0.85), torch.tensor([[1.0, -1, -1], [-1, -1, -1], [-1, -1, 1]]))


# -- SRDC ----------------------------------------------------------------------------------------------


def test_auxiliary_distribution_matches_the_closed_form():
    p = random_probs(7, 4)
    q = srdc_auxiliary_distribution(p)
    n, k = p.shape
    exact = p.double()  # the closed form in float64, from the same float32 probabilities
    expected = torch.zeros_like(exact)
    for i in range(n):
        for c in range(k):
            expected[i, c] = exact[i, c] / math.sqrt(sum(exact[j, c] for j in range(n)))
        expected[i] /= expected[i].sum()
    assert_close(q, expected, n_terms=n + k)  # column sums of n, then rows normalised over k
    assert_close(q.sum(1), torch.ones(n), n_terms=2 * k)


def test_auxiliary_distribution_balances_cluster_sizes():
    # balanced columns: Q equals P; an over-used cluster is down-weighted
    p = torch.tensor([[0.7, 0.3], [0.3, 0.7]])
    assert_close(srdc_auxiliary_distribution(p), p, n_terms=4)
    p = torch.tensor([[0.6, 0.4], [0.6, 0.4], [0.6, 0.4], [0.5, 0.5]])
    q = srdc_auxiliary_distribution(p)
    assert (q[:, 0] < p[:, 0]).all()
    # given column sums replace the batch's own
    q2 = srdc_auxiliary_distribution(p, column_sums=torch.tensor([1.0, 1.0]))
    assert_close(q2, p, n_terms=4)


def test_auxiliary_distribution_detach_option():
    logits = torch.randn(6, 3, requires_grad=True)
    p = torch.softmax(logits, 1)
    assert not srdc_auxiliary_distribution(p).requires_grad  # paper: a fixed target
    q = srdc_auxiliary_distribution(p, detach=False)  # authors' code: gradients flow through Q
    q[:, 0].sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("alpha", [1.0, 2.5])
def test_student_t_assignment_matches_brute_force(alpha):
    g = torch.Generator().manual_seed(1)
    f = torch.randn(6, 5, generator=g)
    mu = torch.randn(3, 5, generator=g)
    a = student_t_assignment(f, mu, alpha=alpha)
    kernel = torch.zeros(6, 3, dtype=torch.float64)
    largest = 0.0
    for i in range(6):
        for k in range(3):
            d2 = float(((f[i].double() - mu[k].double()) ** 2).sum())
            largest = max(largest, d2)
            kernel[i, k] = (1 + d2 / alpha) ** (-(alpha + 1) / 2)
    # float32 squared distances over 5 dimensions (errors grow with their size); 3 kernels normalised
    assert_close(a, kernel / kernel.sum(1, keepdim=True), n_terms=5 + 3, scale=largest)
    soft = student_t_assignment(f, mu, alpha=alpha, normalise="softmax")
    assert_close(soft, torch.softmax(kernel, 1), n_terms=5 + 3, scale=largest)
    # the nearest centre gets the largest share
    assert torch.equal(a.argmax(1), torch.cdist(f, mu).argmin(1))
    with pytest.raises(ValueError):
        student_t_assignment(f, mu, normalise="max")


def test_softmax_assignment_is_flatter_than_sum_normalisation():
    f = torch.tensor([[0.0, 0.0]])
    mu = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    s = student_t_assignment(f, mu)
    m = student_t_assignment(f, mu, normalise="softmax")
    assert s[0, 0] > 0.95 and 0.5 < m[0, 0] < 0.75


def test_soft_cross_entropy_with_one_hot_is_cross_entropy_and_weights_scale_items():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 3, 1, 1, 2])
    p = torch.softmax(logits, 1)
    onehot = F.one_hot(y, 4).float()
    guard = EPS / float(p[torch.arange(5), y].min())  # log(p + EPS) instead of log(p), at most this apart
    scale = float(logits.abs().max())  # softmax over 4 logits of this size, then its log
    assert_close(soft_cross_entropy(onehot, p), F.cross_entropy(logits, y), n_terms=4 + 5, scale=scale, plus=guard)
    w = torch.tensor([1.0, 0.0, 0.5, 1.0, 2.0])
    per = F.cross_entropy(logits, y, reduction="none")
    assert_close(soft_cross_entropy(onehot, p, weights=w), (per * w).mean(), n_terms=4 + 5, scale=2 * scale,
                 plus=2 * guard)  # weights up to 2


def test_source_sample_weights():
    centroids = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    feats = torch.tensor([[2.0, 0.0], [-3.0, 0.0], [0.0, 5.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])  # aligned, opposite, aligned, orthogonal to own class centroid
    w = source_sample_weights(feats, labels, centroids)
    assert_close(w, torch.tensor([1.0, 0.0, 1.0, 0.5]), n_terms=3 * 2)  # a dot product and two norms of 2
    g = torch.Generator().manual_seed(0)
    feats, centroids = torch.randn(20, 6, generator=g), torch.randn(3, 6, generator=g)
    labels = torch.randint(3, (20,), generator=g)
    expected = [(1 + F.cosine_similarity(feats[j], centroids[labels[j]], dim=0)) / 2 for j in range(20)]
    assert_close(source_sample_weights(feats, labels, centroids), torch.stack(expected), n_terms=3 * 6)


def test_class_centroids_and_fallback():
    f = torch.tensor([[0.0, 0.0], [2.0, 2.0], [4.0, 0.0]])
    y = torch.tensor([0, 0, 2])
    c = class_centroids(f, y, 3)
    assert torch.allclose(c, torch.tensor([[1.0, 1.0], [0.0, 0.0], [4.0, 0.0]]))
    fb = torch.full((3, 2), 9.0)
    assert torch.allclose(class_centroids(f, y, 3, fallback=fb)[1], torch.tensor([9.0, 9.0]))


def test_lloyd_kmeans_keeps_the_meaning_of_its_initial_centres():
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = torch.arange(3).repeat_interleave(50)
    x = means[truth] + torch.randn(150, 2, generator=g)
    init = means + 3.0  # rough guesses, in class order
    centres, labels = lloyd_kmeans(x, init, iterations=5)
    assert torch.equal(labels, truth)
    assert torch.allclose(centres, means, atol=0.5)
    # a centre far from every point keeps its position instead of becoming NaN
    init = torch.cat([means, torch.tensor([[100.0, 100.0]])])
    centres, labels = lloyd_kmeans(x, init, iterations=3)
    assert torch.equal(centres[3], init[3]) and not torch.isnan(centres).any()


# -- per-domain batch norm and metrics --------------------------------------------------------------------


def test_domain_norm_stats_keep_each_domain_separate():
    net = AdaptationNet(encoder=ConvEncoder(in_channels=1, widths=(4, 8), embedding_dim=6, input_size=8), n_classes=3)
    norms = DomainNormStats(net)
    net.train()
    with norms.use("source"):
        net(torch.randn(16, 1, 8, 8) + 5.0)
    source_mean = norms.stats["source"][0][0].clone()
    assert float(norms.stats["target"][0][0].abs().sum()) == 0.0  # target untouched
    with norms.use("target"):
        net(torch.randn(16, 1, 8, 8) - 5.0)
    assert torch.equal(norms.stats["source"][0][0], source_mean)
    assert not torch.allclose(norms.stats["target"][0][0], source_mean)
    # outside a block the network's own buffers are back
    assert float(net.encoder.blocks[0].norm.running_mean.abs().sum()) == 0.0


def test_classification_scores():
    y_true = np.array(["a", "a", "b", "b", "b", "c"])
    y_pred = np.array(["a", "b", "b", "b", "a", "a"])
    s = classification_scores(y_true, y_pred)
    assert s["accuracy"] == pytest.approx(3 / 6)
    assert s["per_class_accuracy"] == {"a": 0.5, "b": pytest.approx(2 / 3), "c": 0.0}
    assert s["mean_class_accuracy"] == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    with pytest.raises(ValueError):
        classification_scores(y_true, y_pred[:3])

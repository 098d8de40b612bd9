"""The clustering losses against a brute-force loop over every ordered pair."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close

from l2c_explorer.losses import EPS, kcl_loss, mcl_loss, pair_bce_loss, prototype_loss

pytestmark = pytest.mark.numerical  # .ci/run runs these again on one thread


def brute_mcl(p, s, include_self=True):
    total, count = 0.0, 0
    n = p.shape[0]
    for i in range(n):
        for j in range(n):
            if s[i, j] == 0 or (i == j and not include_self):
                continue
            pij = float(p[i] @ p[j])
            total += -math.log(pij + EPS) if s[i, j] > 0 else -math.log(1 - pij + EPS)
            count += 1
    return total / max(count, 1)


def brute_kcl(p, s, margin=2.0):
    total, count = 0.0, 0
    n, k = p.shape
    for i in range(n):
        for j in range(n):
            if s[i, j] == 0:
                continue
            kl = sum(float(p[j, c] + EPS) * (math.log(float(p[j, c]) + EPS) - math.log(float(p[i, c]) + EPS)) for c in range(k))
            total += kl if s[i, j] > 0 else max(0.0, margin - kl)
            count += 1
    return total / max(count, 1)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(7, 4, generator=g) * 2, dim=1)
    s = torch.randint(-1, 2, (7, 7), generator=g).float()
    s = torch.where(torch.eye(7, dtype=torch.bool), 1.0, s)
    return p.double(), s.double()


def test_mcl_matches_brute_force(batch):
    p, s = batch
    assert mcl_loss(p, s).item() == pytest.approx(brute_mcl(p, s), rel=1e-9)
    assert mcl_loss(p, s, include_self=False).item() == pytest.approx(brute_mcl(p, s, include_self=False), rel=1e-9)


def test_kcl_matches_brute_force(batch):
    p, s = batch
    assert kcl_loss(p, s).item() == pytest.approx(brute_kcl(p, s), rel=1e-9)


def test_unknown_pairs_add_neither_value_nor_gradient(batch):
    p, s = batch
    p = p.clone().requires_grad_(True)
    s_known = s.clone()
    s_known[0, :] = 0
    s_known[:, 0] = 0
    loss = mcl_loss(p, s_known)
    loss.backward()
    assert torch.all(p.grad[0] == 0)  # row 0 takes part in no pair
    # the value is the mean over known pairs only: no constant from the masked ones
    assert loss.item() == pytest.approx(brute_mcl(p.detach(), s_known), rel=1e-9)


def test_kcl_target_side_is_detached():
    p = torch.softmax(torch.tensor([[2.0, 0.0], [0.0, 2.0]], dtype=torch.float64), 1).requires_grad_(True)
    s = torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)  # only the pair (0 predicted, 1 target)
    kcl_loss(p, s).backward()
    assert torch.all(p.grad[1] == 0) and torch.any(p.grad[0] != 0)


def test_mcl_gradient_flows_through_both_members():
    p = torch.softmax(torch.tensor([[2.0, 0.0], [0.0, 2.0]], dtype=torch.float64), 1).requires_grad_(True)
    s = torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    mcl_loss(p, s).backward()
    assert torch.all(p.grad[0] != 0) and torch.all(p.grad[1] != 0)


def test_mcl_is_lowest_for_the_right_partition():
    s = torch.tensor([[1, 1, -1], [1, 1, -1], [-1, -1, 1]], dtype=torch.float64)
    right = torch.tensor([[1, 0], [1, 0], [0, 1]], dtype=torch.float64) * 0.98 + 0.01
    wrong = torch.tensor([[1, 0], [0, 1], [0, 1]], dtype=torch.float64) * 0.98 + 0.01
    assert mcl_loss(right, s) < mcl_loss(wrong, s)
    assert kcl_loss(right, s) < kcl_loss(wrong, s)


def test_mcl_handles_saturated_probabilities():
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float32, requires_grad=True)
    s = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    loss = mcl_loss(p, s)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(p.grad))


def test_pair_bce_excludes_the_diagonal_by_default():
    logits = torch.tensor([[-50.0, 3.0], [3.0, -50.0]])
    same = torch.tensor([[True, True], [True, True]])
    assert pair_bce_loss(logits, same).item() == pytest.approx(torch.nn.functional.softplus(torch.tensor(-3.0)).item())
    assert pair_bce_loss(logits, same, include_self=True).item() > 10


def test_prototype_loss_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    emb = F.normalize(torch.randn(12, 5, generator=g), dim=1)
    y = torch.arange(4).repeat_interleave(3)
    exact = emb.double()  # the brute force in float64, from the same float32 embeddings
    logits = torch.zeros(12, 4, dtype=torch.float64)
    smallest_sum = np.inf
    for i in range(12):
        for c in range(4):
            others = [j for j in range(12) if y[j] == c and j != i]
            v = exact[others].sum(0)
            smallest_sum = min(smallest_sum, float(v.norm()))
            logits[i, c] = 10 * (exact[i] @ v) / v.norm()
    # float32 sums of 12 images x 5 dimensions; cosines divided by |sum| and scaled by the temperature 10
    assert_close(prototype_loss(emb, y), F.cross_entropy(logits, y), n_terms=12 * 5, scale=10 / smallest_sum)

"""Class sampling for training: class-balanced batches and hold-out splits."""

import numpy as np
import pytest
import torch

from l2c_explorer.class_sampling import ClassBalancedSampler, split_classes

pytestmark = pytest.mark.numerical  # .ci/run runs these again on one thread


def test_sampler_draws_balanced_batches_without_repeats():
    labels = np.repeat(np.arange(30), 7)
    sampler = ClassBalancedSampler(labels, classes_per_batch=20, images_per_class=5,
                                   generator=torch.Generator().manual_seed(0))
    idx, y = sampler.sample()
    assert len(idx) == 100 and len(set(idx.tolist())) == 100
    assert np.bincount(y.numpy()).tolist() == [5] * 20
    # batch-local ids agree with the true labels
    true = labels[idx.numpy()]
    assert all(len(set(true[y.numpy() == c])) == 1 for c in range(20))


def test_sampler_same_group_batches_stay_in_one_group():
    labels = np.repeat(np.arange(12), 4)
    groups = np.repeat(np.arange(3), 4)  # 3 groups of 4 classes
    sampler = ClassBalancedSampler(labels, classes_per_batch=4, images_per_class=2, groups=groups,
                                   same_group=1.0, generator=torch.Generator().manual_seed(0))
    for _ in range(10):
        idx, _ = sampler.sample()
        assert len(set(groups[labels[idx.numpy()]])) == 1


def test_split_classes_is_disjoint_and_seeded():
    classes = np.arange(50)
    a_train, a_hold = split_classes(classes, 0.1, torch.Generator().manual_seed(1))
    b_train, b_hold = split_classes(classes, 0.1, torch.Generator().manual_seed(1))
    assert len(a_hold) == 5 and not set(a_train) & set(a_hold)
    assert a_hold.tolist() == b_hold.tolist()
    assert len(split_classes(np.arange(3), 0.5, torch.Generator())[1]) == 0  # too few classes to hold out
    assert len(split_classes(classes, 12, torch.Generator())[1]) == 12  # a number of classes

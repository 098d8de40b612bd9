"""Group numbers carried across refits (l2c_explorer.numbering)."""

from __future__ import annotations

import numpy as np
import pytest

from l2c_explorer.numbering import carry_numbers


def shown_labels(numbers, labels):
    return np.asarray(numbers)[np.asarray(labels)]


def test_the_same_groups_in_another_order_keep_their_numbers():
    shown = np.array([0, 0, 1, 1, 2, 2, 2])
    labels = np.array([2, 2, 0, 0, 1, 1, 1])  # a refit numbers the same groups differently
    numbers, nxt = carry_numbers(shown, labels, next_number=3)
    assert shown_labels(numbers, labels).tolist() == shown.tolist()
    assert nxt == 3


def test_a_merge_keeps_the_number_of_the_larger_part_and_retires_the_other():
    shown = np.array([0, 0, 0, 5, 5, 7, 7, 7, 7])
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1])  # groups 5 and 7 merged
    numbers, nxt = carry_numbers(shown, labels, next_number=8)
    assert numbers.tolist() == [0, 7] and nxt == 8
    # a tie goes to the lower number
    numbers, _ = carry_numbers(np.array([3, 3, 4, 4]), np.array([0, 0, 0, 0]), next_number=5)
    assert numbers.tolist() == [3]


def test_a_split_keeps_the_number_on_the_larger_half_and_never_reuses_a_retired_number():
    shown = np.array([0, 0, 0, 0, 0, 1, 1])
    labels = np.array([0, 0, 0, 2, 2, 1, 1])
    numbers, nxt = carry_numbers(shown, labels, next_number=4)  # 2 and 3 were shown once and retired
    assert numbers.tolist() == [0, 1, 4] and nxt == 5
    # an even split: neither half holds most of the group, both get new numbers, the larger first
    numbers, nxt = carry_numbers(np.array([0, 0, 0, 0, 1]), np.array([0, 0, 1, 1, 2]), next_number=2)
    assert sorted(numbers.tolist()) == [1, 2, 3] and numbers[2] == 1 and nxt == 4


def test_a_group_that_lost_most_of_its_images_gives_up_its_number():
    shown = np.array([0] * 6 + [1] * 4)
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1])  # 4 of group 0's 6 images joined group 1
    numbers, _ = carry_numbers(shown, labels, next_number=2)
    # the large cluster holds most of both groups (4 of 6, 4 of 4): a tie, the lower number; the two images
    # left behind are a new group
    assert numbers.tolist() == [2, 0]


def test_numbers_are_distinct_on_random_refits():
    rng = np.random.default_rng(0)
    shown = rng.integers(0, 30, 500)
    for _ in range(20):
        labels = np.unique(rng.integers(0, 25, 500), return_inverse=True)[1]
        numbers, nxt = carry_numbers(shown, labels, next_number=int(shown.max()) + 1)
        assert len(set(numbers.tolist())) == len(numbers) and numbers.min() >= 0 and nxt > numbers.max()
        shown = numbers[labels]


def test_bad_input_is_refused_in_words():
    with pytest.raises(ValueError, match="must match"):
        carry_numbers(np.zeros(3, int), np.zeros(4, int), next_number=1)
    with pytest.raises(ValueError, match="next_number"):
        carry_numbers(np.array([0, 5]), np.array([0, 1]), next_number=5)

"""Self-training the similarity model on pseudo-labels of real Omniglot drawings."""

import numpy as np
import pytest
import torch

from l2c_explorer.augment import NO_JITTER, AffineJitter, PhotoAugment
from l2c_explorer.selftrain import confident_members, model_augmentation, self_train
from l2c_explorer.similarity_model import load_similarity_model


def test_confident_members_keeps_the_most_confident_share_of_each_cluster():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2])
    confidence = np.array([0.9, 0.2, 0.8, 0.1, 0.5, 0.6, 0.7, 0.95, 0.3, 0.4, 1.0])
    mask = confident_members(labels, confidence, keep=0.5)
    assert np.flatnonzero(mask).tolist() == [0, 2, 5, 6, 7]  # 2 of 4, 3 of 6, the singleton left out


def test_confident_members_keeps_at_least_two():
    labels = np.array([0, 0, 0, 1, 1, 1])
    mask = confident_members(labels, np.linspace(0, 1, 6), keep=0.1)
    assert mask.sum() == 4 and mask[[1, 2, 4, 5]].all()


def test_the_augmentation_comes_from_the_model_card():
    model = load_similarity_model("omniglot")
    jitter = model_augmentation(model)
    assert isinstance(jitter, AffineJitter)
    assert jitter.rotation == model.card["training"]["augmentation"]["rotation"] > 0
    # a model card from before photo augmentation calls it "jitter"
    model.card = {"training": {"jitter": {"rotation": 7.0, "scale": 0.1, "shift": 0.1, "shear": 0.1}}}
    assert model_augmentation(model) == AffineJitter(rotation=7.0, scale=0.1, shift=0.1, shear=0.1)
    photo = PhotoAugment(min_area=0.5, aspect=1.2, flip=0.5, brightness=0.1, contrast=0.1, saturation=0.1)
    model.card = {"training": {"augmentation": photo.to_dict()}}
    assert model_augmentation(model) == photo
    model.card = {}
    assert model_augmentation(model) == NO_JITTER


@pytest.fixture(scope="module")
def drawings(demo_keble):
    model = load_similarity_model("omniglot")
    data = model.prepare(demo_keble, labelled=True)
    return model, data.pixels, data.label_ids()


def separation(model, pixels, labels) -> float:
    """Mean cosine within categories minus mean cosine between them."""
    emb = model.embed(pixels, device="cpu")
    cos = (emb @ emb.T).numpy()
    same = labels[:, None] == labels[None, :]
    off_diag = ~np.eye(len(labels), dtype=bool)
    return float(cos[same & off_diag].mean() - cos[~same].mean())


@pytest.mark.numerical  # a margin on cosines (.ci/run runs it again on one thread); the others compare exactly
def test_self_training_pulls_pseudo_labelled_categories_together(drawings):
    model, pixels, labels = drawings
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    ticks = []
    tuned = self_train(model, pixels, labels, np.ones(len(labels)), steps=30, keep=1.0, lr=3e-4, seed=0,
                       progress=lambda step, total: ticks.append((step, total)))
    assert ticks[0] == (1, 30) and ticks[-1] == (30, 30)
    assert separation(tuned, pixels, labels) > separation(model, pixels, labels) + 0.02
    for k, v in model.net.state_dict().items():  # the loaded model itself is untouched
        assert torch.equal(v, before[k]), k
    assert tuned.digest == model.digest and tuned.card["name"] == model.card["name"]


def test_self_training_is_seeded(drawings):
    model, pixels, labels = drawings
    a = self_train(model, pixels, labels, np.ones(len(labels)), steps=3, seed=1)
    b = self_train(model, pixels, labels, np.ones(len(labels)), steps=3, seed=1)
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(va, vb), k


def test_nothing_to_learn_from_a_single_cluster_or_after_a_stop(drawings):
    model, pixels, labels = drawings
    one_cluster = np.zeros(len(labels), dtype=np.int64)
    assert self_train(model, pixels, one_cluster, np.ones(len(labels)), steps=5) is None
    assert self_train(model, pixels, labels, np.ones(len(labels)), steps=5, should_stop=lambda: True) is None


def test_each_step_reports_its_loss(drawings):
    """The sharpening draws its own curve: every step's training loss reaches a callback that takes it, by
    position or as ``loss=``; a callback of (step, total) is called as before (the first test above)."""
    model, pixels, labels = drawings
    by_position, by_name = [], []
    self_train(model, pixels, labels, np.ones(len(labels)), steps=3, seed=1,
               progress=lambda step, total, loss: by_position.append((step, total, loss)))
    self_train(model, pixels, labels, np.ones(len(labels)), steps=3, seed=1,
               progress=lambda step, total, *, loss=None: by_name.append((step, total, loss)))
    assert [(s, t) for s, t, _ in by_position] == [(1, 3), (2, 3), (3, 3)]
    assert all(isinstance(x, float) and np.isfinite(x) and x > 0 for _, _, x in by_position)
    assert by_name == by_position  # seeded: the same steps, the same losses

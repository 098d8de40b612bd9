"""Similarity training pieces: batch sampling, the prototype loss, hold-out splits and a short real fit."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close, fan_ins

from l2c_explorer.errors import InputError
from l2c_explorer.similarity import (
    ClassBalancedSampler,
    SimilarityLearner,
    load_similarity_model,
    prototype_loss,
    split_classes,
)

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


def test_split_classes_is_disjoint_and_seeded():
    classes = np.arange(50)
    a_train, a_hold = split_classes(classes, 0.1, torch.Generator().manual_seed(1))
    b_train, b_hold = split_classes(classes, 0.1, torch.Generator().manual_seed(1))
    assert len(a_hold) == 5 and not set(a_train) & set(a_hold)
    assert a_hold.tolist() == b_hold.tolist()
    assert len(split_classes(np.arange(3), 0.5, torch.Generator())[1]) == 0  # too few classes to hold out
    assert len(split_classes(classes, 12, torch.Generator())[1]) == 12  # a number of classes


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"image_size": 30}, {"channels": 2}, {"images_per_class": 1},
                                    {"holdout": 0.95}, {"holdout": 2.5}, {"invert": "maybe"},
                                    {"backbone": "resnet19"}, {"backbone": "resnet", "blocks": (1, 1)},
                                    {"backbone_weights": "w.pth"}, {"warmup": 1.0}])
def test_bad_parameters_are_explained(kwargs, keble_subset):
    with pytest.raises(InputError):
        SimilarityLearner(**kwargs).fit(keble_subset)


def test_short_fit_learns_something_and_is_deterministic(keble_subset):
    def fit():
        return SimilarityLearner(epochs=4, holdout=0.34, classes_per_batch=4, images_per_class=5, random_state=0,
                                 device="cpu").fit(keble_subset)

    a, b = fit(), fit()
    assert a.n_classes_ == 4 and a.model_.card["trained_on"]["n_holdout_classes"] == 2
    assert a.holdout_metrics_["roc_auc"] > 0.6  # measured 0.84 after these 4 short epochs: a margin of 0.24
    assert a.history_[-1].loss < a.history_[0].loss
    for (_, ta), (_, tb) in zip(a.model_.net.state_dict().items(), b.model_.net.state_dict().items()):
        assert torch.equal(ta, tb)


def test_stop_flag_ends_training_early(keble_subset):
    import threading

    stop = threading.Event()
    seen = []

    def callback(progress):
        seen.append(progress)
        if progress.stage == "training" and progress.step >= 10:
            stop.set()

    learner = SimilarityLearner(epochs=50, holdout=0.0, classes_per_batch=4, images_per_class=5, device="cpu")
    learner.fit(keble_subset, callback=callback, stop=stop)
    assert learner.model_.card["training"]["stopped_early"]
    assert learner.model_.card["training"]["steps"] <= 11
    assert any(p.stage == "training" and "loss" in p.metrics for p in seen)


def test_unlabelled_folder_is_refused(tmp_path, demo_keble):
    import shutil

    flat = tmp_path / "flat"
    flat.mkdir()
    for img in sorted((demo_keble / "character01").glob("*.png"))[:5]:
        shutil.copy(img, flat)
    with pytest.raises(InputError, match="at least 2 classes"):
        SimilarityLearner(epochs=1).fit(flat)


def test_a_torchvision_backbone_with_weights_from_a_file(tmp_path, demo_photos):
    import torchvision

    from l2c_explorer.similarity import SimilarityModel

    torch.manual_seed(0)
    weights = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.get_model("mobilenet_v3_small", weights=None).state_dict(), weights)
    learner = SimilarityLearner(backbone="mobilenet_v3_small", backbone_weights=str(weights), image_size=32, channels=3,
                                invert=False, epochs=0.3, holdout=2, classes_per_batch=4, images_per_class=4,
                                device="cpu").fit(demo_photos)
    model = learner.model_
    assert model.card["architecture"] == {"type": "torchvision-cosine", "backbone": "mobilenet_v3_small",
                                          "in_channels": 3, "embedding_dim": 128, "input_size": 32}
    assert model.preprocessing.mean == (0.485, 0.456, 0.406)  # the statistics ImageNet weights expect
    assert model.card["training"]["backbone_weights"] == "mobilenet.pth"
    path = model.save(tmp_path / "mobile")
    again = SimilarityModel.load(path)  # rebuilt without the weights file: they are in the model file
    pixels = model.prepare(demo_photos).pixels[:8]
    assert torch.equal(model.embed(pixels, device="cpu"), again.embed(pixels, device="cpu"))


def test_weights_that_do_not_fit_the_backbone_are_refused(tmp_path, demo_photos):
    import torchvision

    from l2c_explorer.errors import ModelFileError

    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.get_model("resnet18", weights=None).state_dict(), weights)
    with pytest.raises(ModelFileError, match="does not hold mobilenet_v3_small weights"):
        SimilarityLearner(backbone="mobilenet_v3_small", backbone_weights=str(weights), channels=3,
                          epochs=0.1).fit(demo_photos)


# the photo model trained from scratch, kept as the photo benchmark's baseline (the shipped one's encoder is
# pretrained and already folded: tests/test_pretrained.py)
PREVIOUS_PHOTOS = Path(__file__).resolve().parents[1] / "benchmarks" / "models" / "photos-scratch.safetensors"


@pytest.mark.numerical
@pytest.mark.parametrize("encoder", ["omniglot", "photos-scratch", "mobilenet_v3_small"])
def test_the_inference_copy_folds_batch_norm_and_embeds_the_same(encoder):
    from l2c_explorer.backbones import torchvision_features
    from l2c_explorer.nets import BackboneEncoder, CosinePairHead, SimilarityNet
    from l2c_explorer.similarity import inference_copy

    torch.manual_seed(0)
    if encoder in ("omniglot", "photos-scratch"):  # the shipped symbol model; the previous photo model
        model = load_similarity_model(encoder if encoder == "omniglot" else PREVIOUS_PHOTOS)
        net, shape = model.net, (model.preprocessing.channels, model.preprocessing.size, model.preprocessing.size)
    else:  # a torchvision backbone, with batch-norm statistics that are not the identity
        features, dim = torchvision_features(encoder, in_channels=3)
        net = SimilarityNet(encoder=BackboneEncoder(backbone=features, feature_dim=dim, embedding_dim=32),
                            head=CosinePairHead())
        with torch.no_grad():
            net.train()
            net.embed(torch.randn(8, 3, 64, 64))
        shape = (3, 64, 64)
    net.eval()
    x = torch.randn(6, *shape)
    norms_before = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    with torch.no_grad():
        expected = net.embed(x)
        fast = inference_copy(net, torch.device("cpu"))
        got = fast.embed(x)
    assert norms_before > 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())  # folded away
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == norms_before  # the original is kept
    # the folded weights and the summation order round differently, layer after layer
    assert_close(got, expected, n_terms=fan_ins(net))

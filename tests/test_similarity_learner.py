"""Learning a similarity model: parameter checks, a short real fit, stopping, backbones with weights."""

import pytest
import torch

from l2c_explorer.errors import InputError
from l2c_explorer.similarity_learner import SimilarityLearner


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"image_size": 30}, {"channels": 2}, {"images_per_class": 1},
                                    {"holdout": 0.95}, {"holdout": 2.5}, {"invert": "maybe"},
                                    {"backbone": "resnet19"}, {"backbone": "resnet", "blocks": (1, 1)},
                                    {"backbone_weights": "w.pth"}, {"warmup": 1.0}])
def test_bad_parameters_are_explained(kwargs, keble_subset):
    with pytest.raises(InputError):
        SimilarityLearner(**kwargs).fit(keble_subset)


@pytest.mark.numerical  # a ROC-AUC margin (.ci/run runs it again on one thread); the others compare exactly
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

    from l2c_explorer.similarity_model import SimilarityModel

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


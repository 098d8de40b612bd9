"""torchvision backbones: building, loading a user's state-dict file safely, and refusing bad files."""

from __future__ import annotations

import pickle

import pytest
import torch
import torchvision

from l2c_explorer.backbones import backbone_names, check_backbone, classifier_name, read_state_dict, torchvision_features
from l2c_explorer.errors import InputError, ModelFileError

SMALL = "mobilenet_v3_small"  # 2.5 M parameters: a real torchvision model whose state dict is only ~10 MB


@pytest.fixture(scope="module")
def small_state_dict() -> dict:
    torch.manual_seed(0)
    return torchvision.models.get_model(SMALL, weights=None).state_dict()


def test_the_list_holds_the_usual_classification_models_and_not_the_unusable_ones():
    names = backbone_names()
    for name in ("resnet18", "resnet50", "efficientnet_b0", "convnext_tiny", "vit_b_16", SMALL):
        assert name in names
    assert "googlenet" not in names and "squeezenet1_0" not in names


def test_unknown_names_and_wrong_input_sizes_are_refused_with_a_hint():
    with pytest.raises(InputError, match="Unknown backbone 'resnet19'.*resnet18"):
        check_backbone("resnet19")
    with pytest.raises(InputError, match="224"):
        check_backbone("vit_b_16", image_size=64)
    check_backbone("vit_b_16", image_size=224)


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "convnext_tiny", "vit_b_16", SMALL])
def test_the_classifier_is_the_last_linear_layer(name):
    model = torchvision.models.get_model(name, weights=None)
    head = classifier_name(model)
    assert model.get_submodule(head).out_features == 1000


def test_features_come_without_the_classifier_and_take_grayscale_too():
    net, dim = torchvision_features(SMALL, in_channels=1)
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, 64, 64))
    assert out.shape == (2, dim) and dim == 1024


def test_weights_from_a_pth_file_are_loaded_exactly(tmp_path, small_state_dict):
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in small_state_dict.items()}}, path)  # a wrapped checkpoint
    net, _ = torchvision_features(SMALL, weights=path)
    loaded = net.state_dict()
    for key, value in loaded.items():
        assert torch.equal(value, small_state_dict[key]), key


def test_weights_from_a_safetensors_file_are_loaded(tmp_path, small_state_dict):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in small_state_dict.items()}, str(path))
    net, _ = torchvision_features(SMALL, weights=path)
    key = next(iter(small_state_dict))
    assert torch.equal(net.state_dict()[key], small_state_dict[key])


def test_weights_of_another_architecture_are_refused_clearly(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.get_model("resnet18", weights=None).state_dict(), path)
    with pytest.raises(ModelFileError, match=f"does not hold {SMALL} weights"):
        torchvision_features(SMALL, weights=path)


def test_corrupt_truncated_and_missing_files_are_refused(tmp_path, small_state_dict):
    good = tmp_path / "good.pth"
    torch.save(small_state_dict, good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a weights file at all")
    for path in (cut, junk):
        with pytest.raises(ModelFileError, match="not a readable weights file"):
            read_state_dict(path)
    with pytest.raises(ModelFileError, match="not found"):
        read_state_dict(tmp_path / "missing.pth")
    not_a_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(ModelFileError, match="not a state dict"):
        read_state_dict(not_a_dict)


class _Payload:
    """An object whose unpickling would run code: writes a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_file_that_would_run_code_when_unpickled_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv.weight": _Payload(str(marker))}, f)
    with pytest.raises(ModelFileError, match="refusing to load it|not a readable weights file"):
        read_state_dict(path)
    assert not marker.exists()


def test_a_torch_file_with_a_foreign_class_is_refused_by_name(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil_torch.pth"
    torch.save({"conv.weight": _Payload(str(marker))}, path)  # the usual torch.save zip format
    with pytest.raises(ModelFileError, match="holds Python objects besides tensors"):
        read_state_dict(path)
    assert not marker.exists()

"""Model files: round trip, and refusal of foreign, truncated and tampered files without executing them."""

import json
import pickle

import pytest
import torch
from numerics import assert_close, fan_ins
from safetensors.torch import save_file

from l2c_explorer.data import Preprocessing
from l2c_explorer.errors import ModelFileError
from l2c_explorer.model_io import read_model_file, save_model_file
from l2c_explorer.nets import build_similarity_net
from l2c_explorer.similarity_model import SimilarityModel, load_similarity_model, resolve_model_path

ARCH = {"type": "conv-cosine", "in_channels": 1, "widths": [8, 8], "embedding_dim": 16, "input_size": 8}


@pytest.fixture
def small_model():
    torch.manual_seed(0)
    net = build_similarity_net(ARCH)
    prep = Preprocessing(size=8, channels=1, invert=True, mean=(0.1,), std=(0.3,))
    return SimilarityModel(net, prep, {"name": "tiny", "architecture": ARCH, "trained_on": {"n_classes": 3}})


@pytest.mark.numerical
def test_round_trip_keeps_weights_preprocessing_and_card(tmp_path, small_model):
    path = small_model.save(tmp_path / "tiny")
    assert path.name == "tiny.safetensors"
    loaded = SimilarityModel.load(path)
    for (k, a), (k2, b) in zip(small_model.net.state_dict().items(), loaded.net.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert loaded.preprocessing == small_model.preprocessing
    assert loaded.card["trained_on"] == {"n_classes": 3}
    assert len(loaded.digest) == 64
    x = torch.randint(0, 255, (4, 1, 8, 8), dtype=torch.uint8)
    assert_close(small_model.embed(x, adapt_norm=False), loaded.embed(x, adapt_norm=False), n_terms=fan_ins(loaded.net))


def test_truncated_file_is_refused(tmp_path, small_model):
    path = small_model.save(tmp_path / "m")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated|not a readable"):
        SimilarityModel.load(path)


def test_tampered_weights_are_refused(tmp_path, small_model):
    path = small_model.save(tmp_path / "m")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # flip bits inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="modified or damaged"):
        SimilarityModel.load(path)


def test_tampered_config_is_refused(tmp_path, small_model):
    path = small_model.save(tmp_path / "m")
    data = path.read_bytes()
    tampered = data.replace(b'\\"invert\\": true', b'\\"invert\\": fals')
    assert tampered != data
    path.write_bytes(tampered)
    with pytest.raises(ModelFileError):
        SimilarityModel.load(path)


def test_foreign_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match="not written by l2c-explorer"):
        SimilarityModel.load(path)


class Boom:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['BOOM_FILE'], 'w').write('executed')",))


def test_pickle_payload_is_refused_and_never_executed(tmp_path, monkeypatch):
    marker = tmp_path / "executed.txt"
    monkeypatch.setenv("BOOM_FILE", str(marker))
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"w": Boom()}))
    with pytest.raises(ModelFileError):
        SimilarityModel.load(path)
    torch_file = tmp_path / "evil.pt"
    torch.save({"w": Boom()}, torch_file)
    with pytest.raises(ModelFileError):
        load_similarity_model(torch_file)
    assert not marker.exists()


def test_wrong_kind_is_refused(tmp_path):
    path = save_model_file(tmp_path / "c.safetensors", {"centres": torch.zeros(2, 2)}, kind="clustering", config={})
    with pytest.raises(ModelFileError, match="clustering"):
        read_model_file(path, kind="similarity")


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_similarity_model(tmp_path / "nope.safetensors")
    with pytest.raises(ModelFileError, match="No model named"):
        resolve_model_path("no-such-model", dirs=[tmp_path])


def test_lookup_by_name_in_a_models_folder(tmp_path, small_model):
    small_model.save(tmp_path / "mine")
    assert resolve_model_path("mine", dirs=[tmp_path]) == tmp_path / "mine.safetensors"


def test_config_is_plain_json(tmp_path, small_model):
    path = small_model.save(tmp_path / "m")
    _, config, _ = read_model_file(path, kind="similarity")
    assert json.loads(json.dumps(config)) == config


def test_model_file_path_adds_the_suffix_only_when_there_is_none(tmp_path):
    from l2c_explorer.model_io import model_file_path

    assert model_file_path(tmp_path / "m") == tmp_path / "m.safetensors"
    assert model_file_path(tmp_path / "m.pt") == tmp_path / "m.pt"
    assert model_file_path(tmp_path / "m.safetensors") == tmp_path / "m.safetensors"


def test_a_config_asking_for_a_huge_network_is_refused_before_it_is_built(tmp_path, small_model, monkeypatch):
    """A valid file (checksum and all) whose architecture asks for 136 M weights (545 MB) and holds none: refused
    from its description, nothing allocated (building it would be the first allocation)."""
    import l2c_explorer.similarity_model as similarity_model

    path = small_model.save(tmp_path / "ok.safetensors")
    _, config, _ = read_model_file(path, kind="similarity")
    built = []
    monkeypatch.setattr(similarity_model, "build_similarity_net", lambda arch: built.append(arch))
    cases = {"more than the 100,000,000": {"widths": [32, 64, 128, 2048], "embedding_dim": 16384,
                                                   "input_size": 32},
             "input size": {"input_size": 1 << 20},
             "widths": {"widths": [32, 64, 128, 10**9]}}
    for why, change in cases.items():
        crafted = {**config, "architecture": {**config["architecture"], **change}}
        save_model_file(tmp_path / "crafted.safetensors", {}, kind="similarity", config=crafted)
        with pytest.raises(ModelFileError, match=why):
            SimilarityModel.load(tmp_path / "crafted.safetensors")
    assert built == []

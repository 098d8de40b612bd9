"""The similarity model at inference: the copy of its network that embeds (batch norm folded away)."""

from pathlib import Path

import pytest
import torch
from numerics import assert_close, fan_ins

from l2c_explorer.similarity_model import load_similarity_model

pytestmark = pytest.mark.numerical  # .ci/run runs these again on one thread


# the photo model trained from scratch, kept as the photo benchmark's baseline (the shipped one's encoder is
# pretrained and already folded: tests/test_pretrained.py)
PREVIOUS_PHOTOS = Path(__file__).resolve().parents[1] / "benchmarks" / "models" / "photos-scratch.safetensors"


@pytest.mark.numerical
@pytest.mark.parametrize("encoder", ["omniglot", "photos-scratch", "mobilenet_v3_small"])
def test_the_inference_copy_folds_batch_norm_and_embeds_the_same(encoder):
    from l2c_explorer.backbones import torchvision_features
    from l2c_explorer.nets import BackboneEncoder, CosinePairHead, SimilarityNet
    from l2c_explorer.similarity_model import inference_copy

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

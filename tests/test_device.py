import copy

import pytest
import torch
from numerics import assert_close, fan_ins

from l2c_explorer.device import place, resolve_device
from l2c_explorer.errors import InputError
from l2c_explorer.similarity_model import SimilarityModel, load_similarity_model


@pytest.mark.numerical
@pytest.mark.parametrize("name", ["omniglot", "photos"])
def test_placing_a_model_on_the_cpu_keeps_its_embeddings(name, tmp_path):
    model = load_similarity_model(name)
    prep = model.preprocessing
    g = torch.Generator().manual_seed(0)
    x = model.inputs(torch.randint(0, 256, (16, prep.channels, prep.size, prep.size), dtype=torch.uint8, generator=g))
    with torch.no_grad():
        before = model.net.eval().embed(x)
        placed = place(copy.deepcopy(model.net), torch.device("cpu")).eval()
        after = placed.embed(x)
    convs = [m.weight for m in placed.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    # another summation order, layer after layer
    assert_close(after, before, n_terms=fan_ins(model.net))
    # a placed network is saved and read back like any other
    saved = SimilarityModel(placed, prep, dict(model.card)).save(tmp_path / "placed")
    with torch.no_grad():
        assert_close(load_similarity_model(saved).net.eval().embed(x), before, n_terms=fan_ins(model.net))


def test_unknown_devices_get_a_clear_message():
    with pytest.raises(InputError, match="Unknown device"):
        resolve_device("tpu")
    assert resolve_device("cpu") == torch.device("cpu")

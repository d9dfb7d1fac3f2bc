import json

import pytest
import torch

from landscape.core import models
from landscape.core.errors import LandscapeError

SPECS = [
    {"name": "mlp", "args": {"in_dim": 64, "out_dim": 10, "widths": [16, 16], "activation": "gelu"}},
    {"name": "cnn", "args": {"channels": [4, 8], "batchnorm": True}},
    {"name": "cnn", "args": {"channels": [4, 8], "batchnorm": False}},
    {"name": "resnet", "args": {"channels": 4, "blocks": 2, "skip": True}},
    {"name": "resnet", "args": {"channels": 4, "blocks": 2, "skip": False}},
]


@pytest.mark.parametrize("spec", SPECS)
def test_spec_rebuilds_the_same_model(spec):
    m = models.build(json.dumps(spec), seed=5)
    again = models.build(models.spec_of(m), seed=5)
    sa, sb = m.state_dict(), again.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.randn(3, 64)
    assert torch.equal(m(x), again(x)) and m(x).shape == (3, 10)
    assert not m.training


def test_cnn_accepts_flat_and_image_inputs():
    m = models.build(SPECS[1], seed=0)
    x = torch.randn(4, 64)
    assert torch.allclose(m(x), m(x.view(4, 1, 8, 8)))


def test_skip_switch_changes_the_function_not_the_parameters():
    a = models.build(SPECS[3], seed=0)
    b = models.build(SPECS[4], seed=0)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
    x = torch.randn(4, 64)
    assert not torch.allclose(a(x), b(x))


def test_bad_specs_name_the_problem():
    with pytest.raises(LandscapeError, match="unknown model"):
        models.build({"name": "vit"})
    with pytest.raises(LandscapeError, match="bad arguments"):
        models.build({"name": "mlp", "args": {"depth_of_field": 3}})
    with pytest.raises(LandscapeError, match="activation"):
        models.build({"name": "mlp", "args": {"activation": "swishy"}})
    with pytest.raises(LandscapeError, match="not valid JSON"):
        models.build("{name: mlp")


def test_output_size_and_wrong_input_shape():
    m = models.build(SPECS[0])
    assert models.output_size(m, (64,)) == 10
    with pytest.raises(LandscapeError, match="does not accept inputs of shape"):
        models.output_size(m, (2,))

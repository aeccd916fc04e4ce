"""Model specs rebuild architectures as data, and refuse anything outside the allow-list."""

from __future__ import annotations

import pytest
import torch

from labclient import spec
from labtrainers import mnist_cnn, mnist_mlp


@pytest.mark.parametrize("module, input_shape", [(mnist_mlp, (1, 28, 28)), (mnist_cnn, (1, 28, 28)), (mnist_cnn, (1, 8, 8))])
def test_round_trip(module, input_shape):
    model = module.build_model(module.Config(), input_shape, 10)
    described = spec.describe(model, input_shape, 10)
    rebuilt = spec.build(described)
    rebuilt.load_state_dict(model.state_dict())
    sample = torch.rand(4, *input_shape)
    assert torch.equal(model.eval()(sample), rebuilt.eval()(sample))


def test_refuses_unknown_layers():
    described = {"format": spec.SPEC_FORMAT, "layers": [{"type": "os.system", "command": "touch /tmp/x"}]}
    with pytest.raises(spec.SpecError, match="unsupported type"):
        spec.build(described)


def test_refuses_non_numeric_arguments():
    described = {"format": spec.SPEC_FORMAT, "layers": [{"type": "Linear", "in_features": "__import__('os')", "out_features": 2}]}
    with pytest.raises(spec.SpecError, match="non-numeric"):
        spec.build(described)


def test_custom_modules_cannot_be_described():
    class Mine(torch.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(spec.SpecError, match="cannot be described"):
        spec.describe(Mine(), (1,), 1)

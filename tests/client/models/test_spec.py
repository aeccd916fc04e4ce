"""Model specs rebuild architectures as data, and refuse anything outside the allow-list."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from labclient.models import spec
from labtrainers import mnist_cnn, mnist_mlp


@pytest.mark.parametrize(
    "module, input_shape", [(mnist_mlp, (1, 28, 28)), (mnist_cnn, (1, 28, 28)), (mnist_cnn, (1, 8, 8))]
)
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
    described = {
        "format": spec.SPEC_FORMAT,
        "layers": [{"type": "Linear", "in_features": "__import__('os')", "out_features": 2}],
    }
    with pytest.raises(spec.SpecError, match="non-numeric"):
        spec.build(described)


def test_custom_modules_cannot_be_described():
    class Mine(torch.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(spec.SpecError, match="cannot be described"):
        spec.describe(Mine(), (1,), 1)


# --- state_shapes: the arithmetic that checks a spec before anything is built ---------------------------
SMALL = st.integers(min_value=1, max_value=6)


def _linear(inputs, outputs, bias):
    return {"type": "Linear", "in_features": inputs, "out_features": outputs, "bias": bias}


def _conv(inputs, outputs, kernel, stride, padding, bias):
    return {
        "type": "Conv2d",
        "in_channels": inputs,
        "out_channels": outputs,
        "kernel_size": kernel,
        "stride": stride,
        "padding": padding,
        "bias": bias,
    }


def _pool(kind, kernel, stride):
    return {"type": kind, "kernel_size": kernel, **({"stride": stride} if stride else {})}


NORMS = st.sampled_from(["BatchNorm1d", "BatchNorm2d"])
KERNEL = st.one_of(st.integers(1, 3), st.lists(st.integers(1, 3), min_size=2, max_size=2))
PLAIN = [{"type": kind} for kind in ("Flatten", "ReLU", "Sigmoid", "Tanh", "GELU", "Identity")]
PLAIN.append({"type": "Dropout", "p": 0.5})
LAYER = st.one_of(
    st.builds(_linear, SMALL, SMALL, st.booleans()),
    st.builds(_conv, st.integers(1, 2), SMALL, KERNEL, st.integers(1, 2), st.integers(0, 1), st.booleans()),
    st.builds(_pool, st.sampled_from(["MaxPool2d", "AvgPool2d"]), st.integers(1, 3), st.integers(0, 2)),
    st.builds(lambda kind, n: {"type": kind, "num_features": n}, NORMS, SMALL),
    st.sampled_from(PLAIN),
)
IMAGE = st.tuples(st.integers(1, 2), st.integers(1, 7), st.integers(1, 7))
INPUT = st.one_of(st.tuples(SMALL).map(list), IMAGE.map(list))


@settings(max_examples=300, deadline=None)
@given(INPUT, st.lists(LAYER, min_size=1, max_size=5))
def test_state_shapes_agree_with_torch(input_shape, layers):
    """The arithmetic accepts exactly the specs torch can build and run, with torch's parameter shapes:
    fetch refuses what it refuses, so it must never refuse a model that works."""
    described = {"format": spec.SPEC_FORMAT, "input_shape": input_shape, "num_classes": 2, "layers": layers}
    outputs, torch_error = [], None
    try:  # torch alone, without the spec module's checks, layer by layer
        modules = [
            getattr(torch.nn, layer["type"])(**{k: v for k, v in layer.items() if k != "type"}) for layer in layers
        ]
        model = torch.nn.Sequential(*modules)
        value = torch.zeros(3, *input_shape)
        with torch.no_grad():
            for layer in model.eval():
                value = layer(value)
                outputs.append(tuple(value.shape[1:]))
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        torch_error = err
    try:
        shapes, flow = spec.state_shapes(described), spec.output_shapes(described)
    except spec.SpecError as err:
        assert torch_error is not None, f"refused a spec torch runs: {err}"
        return
    assert torch_error is None, f"accepted a spec torch cannot run: {torch_error}"
    assert shapes == {name: tuple(value.shape) for name, value in model.state_dict().items()}
    assert flow == outputs


def test_state_shapes_refuse_huge_activations_and_bad_arguments():
    conv = {"format": spec.SPEC_FORMAT, "input_shape": [1, 28, 28], "layers": [_conv(1, 100_000, 1, 1, 0, True)]}
    with pytest.raises(spec.SpecError, match="values per sample"):
        spec.state_shapes(conv)
    linear = {"format": spec.SPEC_FORMAT, "layers": [{"type": "Linear", "in_features": 32768.0, "out_features": 4}]}
    with pytest.raises(spec.SpecError, match="not a positive whole number"):
        spec.state_shapes(linear)
    huge = {"format": spec.SPEC_FORMAT, "layers": [_linear(32768, 32768, True)] * 10}
    assert spec.state_shapes(huge)["9.weight"] == (32768, 32768)  # computed, never allocated

"""Model specs: an architecture as plain JSON data, so a model can be rebuilt without its author's code.

Format (`labspec/1`):
    {"format": "labspec/1", "input_shape": [1, 28, 28], "num_classes": 10,
     "layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 784, "out_features": 30, "bias": true},
                {"type": "Sigmoid"}, ...]}
Layers form an `nn.Sequential`, so parameter names are `<index>.weight` and `<index>.bias`.
Only the layer types in `LAYERS` are accepted; anything else is refused, never imported.
"""

from __future__ import annotations

from typing import Any

from labclient.errors import LabError

SPEC_FORMAT = "labspec/1"

# layer type -> constructor arguments recorded in the spec (values must be JSON numbers, bools or lists)
LAYERS: dict[str, tuple[str, ...]] = {
    "Flatten": (),
    "Linear": ("in_features", "out_features", "bias"),
    "Conv2d": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "bias"),
    "MaxPool2d": ("kernel_size", "stride"),
    "AvgPool2d": ("kernel_size", "stride"),
    "ReLU": (),
    "Sigmoid": (),
    "Tanh": (),
    "GELU": (),
    "LeakyReLU": ("negative_slope",),
    "Dropout": ("p",),
    "BatchNorm1d": ("num_features",),
    "BatchNorm2d": ("num_features",),
    "Identity": (),
}


class SpecError(LabError):
    pass


def describe(model, input_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    """The spec of an `nn.Sequential` made of allowed layers; raises SpecError for anything else."""
    import torch.nn as nn

    if not isinstance(model, nn.Sequential):
        raise SpecError(
            f"a {type(model).__name__} cannot be described as a spec",
            "build the model as nn.Sequential of standard layers so others can load it without your code",
        )
    layers = []
    for index, module in enumerate(model):
        kind = type(module).__name__
        if kind not in LAYERS or type(module) is not getattr(nn, kind):
            raise SpecError(f"layer {index} ({kind}) is not a supported layer type", f"use one of {', '.join(LAYERS)}")
        layers.append({"type": kind, **{arg: _layer_arg(module, arg) for arg in LAYERS[kind]}})
    return {"format": SPEC_FORMAT, "input_shape": list(input_shape), "num_classes": num_classes, "layers": layers}


def _layer_arg(module, arg: str):
    if arg == "bias":
        return module.bias is not None
    value = getattr(module, arg)
    return list(value) if isinstance(value, tuple) else value


def build(spec: dict[str, Any]):
    """Rebuild the `nn.Sequential` a spec describes; validates every field before constructing anything."""
    import torch.nn as nn

    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise SpecError(f"model spec is not in {SPEC_FORMAT} format", "re-export it with labclient")
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        raise SpecError("model spec has no layers")
    modules = []
    for index, layer in enumerate(layers):
        kind = layer.get("type") if isinstance(layer, dict) else None
        if kind not in LAYERS:
            raise SpecError(f"model spec layer {index} has unsupported type {kind!r}", f"allowed: {', '.join(LAYERS)}")
        kwargs = {arg: layer[arg] for arg in LAYERS[kind] if arg in layer}
        for arg, value in kwargs.items():
            if not _is_plain(value):
                raise SpecError(f"model spec layer {index} has a non-numeric {arg}")
        modules.append(getattr(nn, kind)(**kwargs))
    return nn.Sequential(*modules)


def _is_plain(value) -> bool:
    if isinstance(value, list):
        return all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in value)
    return isinstance(value, (int, float, bool))

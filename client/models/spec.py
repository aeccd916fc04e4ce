"""Model specs: an architecture as plain JSON data, so a model can be rebuilt without its author's code.

Format (`labspec/1`):
    {"format": "labspec/1", "input_shape": [1, 28, 28], "num_classes": 10,
     "layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 784, "out_features": 30, "bias": true},
                {"type": "Sigmoid"}, ...]}
Layers form an `nn.Sequential`, so parameter names are `<index>.weight` and `<index>.bias`.
Only the layer types in `LAYERS` are accepted; anything else is refused, never imported.
`layered_spec` writes the spec of a fully connected network from its layer sizes (784-30-10), and `cost_of`
tells the cost a model was trained with.

`state_shapes` computes the shape of every parameter and buffer, and of every layer's output for one sample,
by arithmetic alone: a spec is checked against the tensors of its weights file before any layer is built,
so a few hundred bytes of JSON cannot make the client allocate gigabytes.
"""

from __future__ import annotations

from typing import Any

from labclient.errors import SpecError

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


_COUNTS = ("in_features", "out_features", "in_channels", "out_channels", "num_features")
MAX_ACTIVATION_ELEMENTS = 1 << 22  # per sample, for any layer's input or output: MNIST models need thousands

# torch's defaults for the arguments a spec may leave out (None: required)
_DEFAULTS = {
    "Linear": {"in_features": None, "out_features": None, "bias": True},
    "Conv2d": {"in_channels": None, "out_channels": None, "kernel_size": None, "stride": 1, "padding": 0, "bias": True},
    "MaxPool2d": {"kernel_size": None, "stride": None},
    "AvgPool2d": {"kernel_size": None, "stride": None},
    "BatchNorm1d": {"num_features": None},
    "BatchNorm2d": {"num_features": None},
}


# activation names as pickled textbook networks and `--arch 784-100-10:relu` give them -> layer type
ACTIVATIONS = {"sigmoid": "Sigmoid", "relu": "ReLU", "tanh": "Tanh"}


def layered_spec(
    sizes: list[int],
    hidden: str = "sigmoid",
    output: str | None = "sigmoid",
    input_shape: list[int] | None = None,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """The spec of a fully connected network: `sizes` [784, 30, 10] is 784 inputs, 30 hidden neurons and 10
    outputs. `hidden` and `output` name activations (ACTIVATIONS); output None leaves logits, for cross-entropy."""
    layers: list[dict[str, Any]] = [{"type": "Flatten"}]
    for inputs, outputs in zip(sizes, sizes[1:]):
        layers += [
            {"type": "Linear", "in_features": inputs, "out_features": outputs, "bias": True},
            {"type": ACTIVATIONS[hidden]},
        ]
    layers.pop()  # the output layer's activation is its own
    if output is not None:
        layers.append({"type": ACTIVATIONS[output]})
    return {
        "format": SPEC_FORMAT,
        "input_shape": input_shape or input_shape_for(sizes[0]),
        "num_classes": num_classes or sizes[-1],
        "layers": layers,
    }


def input_shape_for(features: int) -> list[int]:
    """The image shape a flat input size stands for: 784 is MNIST's 1x28x28, 64 the 1x8x8 digits."""
    side = int(round(features**0.5))
    return [1, side, side] if side * side == features and features in (64, 784) else [features]


def cost_of(spec: dict[str, Any], config: dict | None = None, params: dict | None = None) -> str:
    """The cost a model was trained with, as its run config ({"config": {"cost": ...}}) or its params record it.
    Without a record it is read off the output layer: sigmoid outputs are the textbook network's quadratic cost,
    anything else is taken as logits for cross-entropy."""
    recorded = ((config or {}).get("config") or {}).get("cost") or (params or {}).get("cost")
    if recorded:
        return str(recorded)
    layers = spec.get("layers") or [{}]
    return "quadratic" if layers[-1].get("type") == "Sigmoid" else "cross_entropy"


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
    """Rebuild the `nn.Sequential` a spec describes; validates every field before constructing anything.

    The spec alone does not bound the model's size: to load weights, use labclient.models.loading.build_model,
    which checks the spec against the file's tensors first."""
    import torch.nn as nn

    state_shapes(spec)  # every layer's arguments and shapes, before any module exists
    modules = []
    for layer in spec["layers"]:
        kind = layer["type"]
        modules.append(getattr(nn, kind)(**{arg: layer[arg] for arg in LAYERS[kind] if arg in layer}))
    return nn.Sequential(*modules)


def _is_plain(value) -> bool:
    if isinstance(value, list):
        return all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in value)
    return isinstance(value, (int, float, bool))


def state_shapes(spec: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shape of each parameter and buffer of the model a spec describes, in `state_dict` order, without
    building it. Also checks each layer against the output of the one before (from `input_shape`, when the
    spec gives it) and that no layer's input or output holds more than MAX_ACTIVATION_ELEMENTS per sample."""
    return _analyse(spec)[0]


def output_shapes(spec: dict[str, Any]) -> list[tuple[int, ...]]:
    """One sample's shape after each layer, by arithmetic; empty when the spec gives no input_shape."""
    return _analyse(spec)[1]


def _analyse(spec: dict[str, Any]) -> tuple[dict[str, tuple[int, ...]], list[tuple[int, ...]]]:
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise SpecError(f"model spec is not in {SPEC_FORMAT} format", "re-export it with labclient")
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        raise SpecError("model spec has no layers")
    flowing = _input_shape(spec.get("input_shape"))
    shapes: dict[str, tuple[int, ...]] = {}
    outputs: list[tuple[int, ...]] = []
    for index, layer in enumerate(layers):
        kind = layer.get("type") if isinstance(layer, dict) else None
        if kind not in LAYERS:
            raise SpecError(f"model spec layer {index} has unsupported type {kind!r}", f"allowed: {', '.join(LAYERS)}")
        args = _layer_args(index, kind, layer)
        shapes.update({f"{index}.{name}": shape for name, shape in _parameters(kind, args).items()})
        if flowing is not None:
            flowing = _output(index, kind, args, flowing)
            _check_size(f"the output of layer {index} ({kind})", flowing)
            outputs.append(flowing)
    return shapes, outputs


def _input_shape(value) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(_is_count(dim) for dim in value):
        raise SpecError(f"model spec input_shape {value!r} is not a list of positive whole numbers")
    _check_size("input_shape", tuple(value))
    return tuple(value)


def _check_size(what: str, shape: tuple[int, ...]) -> None:
    elements = 1
    for dim in shape:
        elements *= dim
    if elements > MAX_ACTIVATION_ELEMENTS:
        raise SpecError(
            f"{what} holds {elements:,} values per sample, more than the {MAX_ACTIVATION_ELEMENTS:,} allowed"
        )


def _layer_args(index: int, kind: str, layer: dict) -> dict[str, Any]:
    # exactly what build() passes to torch: the recorded arguments of LAYERS, over torch's defaults
    args = dict(_DEFAULTS.get(kind, {}))
    for arg in LAYERS[kind]:
        if arg in layer:
            if not _is_plain(layer[arg]):
                raise SpecError(f"model spec layer {index} has a non-numeric {arg}")
            args[arg] = layer[arg]
    for arg, value in args.items():
        if value is None and not (arg == "stride" and kind.endswith("Pool2d")):
            raise SpecError(f"model spec layer {index} ({kind}) needs {arg}")
        if arg in _COUNTS and not _is_count(value):
            raise SpecError(f"model spec layer {index} ({kind}) has {arg} {value!r}, not a positive whole number")
        if arg in ("kernel_size", "stride", "padding") and value is not None:
            args[arg] = _pair(index, kind, arg, value, minimum=0 if arg == "padding" else 1)
    return args


def _pair(index: int, kind: str, arg: str, value, minimum: int) -> tuple[int, int]:
    pair = tuple(value) if isinstance(value, list) else (value, value)
    if len(pair) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= minimum for n in pair):
        raise SpecError(
            f"model spec layer {index} ({kind}) has {arg} {value!r}, not one or two whole numbers >= {minimum}"
        )
    return pair


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _parameters(kind: str, args: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    if kind == "Linear":
        weight = (args["out_features"], args["in_features"])
        return {"weight": weight, "bias": (args["out_features"],)} if args["bias"] else {"weight": weight}
    if kind == "Conv2d":
        weight = (args["out_channels"], args["in_channels"], *args["kernel_size"])
        return {"weight": weight, "bias": (args["out_channels"],)} if args["bias"] else {"weight": weight}
    if kind in ("BatchNorm1d", "BatchNorm2d"):
        features = (args["num_features"],)
        return {
            "weight": features,
            "bias": features,
            "running_mean": features,
            "running_var": features,
            "num_batches_tracked": (),
        }
    return {}


def _output(index: int, kind: str, args: dict[str, Any], shape: tuple[int, ...]) -> tuple[int, ...]:
    """One sample's shape after the layer, as torch computes it for a batch of such samples."""

    def refuse(expected: str):
        return SpecError(
            f"model spec layer {index} ({kind}) expects {expected} but gets inputs of shape {list(shape)}",
            "check the spec's layer sizes",
        )

    if kind == "Flatten":
        elements = 1
        for dim in shape:
            elements *= dim
        return (elements,)
    if kind == "Linear":
        if not shape or shape[-1] != args["in_features"]:
            raise refuse(f"{args['in_features']} input features")
        return (*shape[:-1], args["out_features"])
    if kind == "Conv2d" or kind == "BatchNorm2d":
        channels = args.get("in_channels", args.get("num_features"))
        if len(shape) != 3 or shape[0] != channels:
            raise refuse(f"{channels} channels of 2-d images")
        if kind == "BatchNorm2d":
            return shape
        return (args["out_channels"], *_window(shape[1:], args["kernel_size"], args["stride"], args["padding"], refuse))
    if kind == "BatchNorm1d":
        if len(shape) not in (1, 2) or shape[0] != args["num_features"]:
            raise refuse(f"{args['num_features']} features")
        return shape
    if kind in ("MaxPool2d", "AvgPool2d"):
        if len(shape) not in (2, 3):
            raise refuse("2-d images")
        stride = args["stride"] or args["kernel_size"]  # torch's default stride for pooling is the kernel size
        return (*shape[:-2], *_window(shape[-2:], args["kernel_size"], stride, (0, 0), refuse))
    return shape  # activations, Dropout, Identity


def _window(size: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int], refuse):
    out = tuple((length + 2 * pad - k) // step + 1 for length, k, step, pad in zip(size, kernel, stride, padding))
    if min(out) < 1:
        raise refuse(f"images of at least {kernel[0] - 2 * padding[0]}x{kernel[1] - 2 * padding[1]}")
    return out

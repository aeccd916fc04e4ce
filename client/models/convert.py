"""What `labclient push` uploads: weights trained elsewhere, converted to safetensors plus a labspec/1 spec,
with the parameters that can be read off the file (layer sizes, parameter count, file size, dtype).

`--arch` is a labspec/1 JSON file, inline JSON, or sizes like `784-30-10` (the textbook network: sigmoid
neurons everywhere, quadratic cost) or `784-100-10:relu` (ReLU hidden layers, linear outputs, cross-entropy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labclient.errors import ArchitectureError, ConfigError
from labclient.files import sha256_file
from labclient.models import loading
from labclient.models.compute import measure
from labclient.models.spec import ACTIVATIONS, SPEC_FORMAT, cost_of, layered_spec
from labserver.tags import DATASET_TAG, KIND_TAG, SOURCE_FORMAT_TAG, TRAINER_TAG

DATASET_BY_SHAPE = {(1, 28, 28): "mnist", (1, 8, 8): "digits"}


@dataclass
class Prepared:
    state: dict
    spec: dict
    config: dict
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str] = field(default_factory=dict)

    def note(self, run_name: str, text: str | None) -> str:
        params = self.params
        lines = [
            f"### {run_name}: weights uploaded with `labclient push`",
            "",
            f"From `{params['source_file']}` ({params['source_format']}, {params['source_file_bytes']:,} bytes, "
            f"{params['dtype']}),"
            f" {params['parameters']:,} parameters, layers {params['layer_sizes']}, cost `{params['cost']}`, for "
            f"`{params['dataset']}`.",
        ]
        if text:
            lines += ["", text.strip()]
        return "\n".join(lines)


def prepare(path: Path, arch: str | None, dataset: str | None) -> Prepared:
    if not path.is_file():
        raise ConfigError(f"{path} does not exist or is not a file", "give the path of a weights file")
    weights = loading.read_weights(path)
    spec = parse_arch(arch) if arch else weights.spec
    if spec is None:
        raise ArchitectureError(
            f"cannot tell the architecture of {path.name}: it holds bare tensors",
            "pass --arch spec.json (a labspec/1 file) or --arch 784-30-10",
        )
    model = loading.build_model(spec, weights.tensors)
    input_shape = tuple(int(dim) for dim in spec.get("input_shape") or [])
    num_classes = int(spec.get("num_classes") or _last_width(spec))
    dataset = dataset or DATASET_BY_SHAPE.get(input_shape, "unknown")
    # a pickled textbook network names its cost; safetensors record it in their config
    cost = weights.network.cost if weights.network is not None else cost_of(spec, weights.config)
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    dtypes = sorted({str(tensor.dtype).replace("torch.", "") for tensor in state.values()})
    if not input_shape:
        raise ArchitectureError("the spec has no input_shape", "add input_shape, e.g. [1, 28, 28]")
    figures = measure(model, input_shape)
    params = {
        "trainer": "push",
        "source_file": path.name,
        "source_format": weights.format,
        "source_sha256": sha256_file(path),
        "source_file_bytes": path.stat().st_size,
        "layer_sizes": _layer_sizes(spec),
        "parameters": figures.parameters,
        "dtype": ",".join(dtypes),
        "cost": cost,
        "dataset": dataset,
        "dataset_input_shape": "x".join(map(str, input_shape)),
        "dataset_num_classes": num_classes,
    }
    if weights.network is not None:
        params.update({"activation": weights.network.activation, "sizes": weights.network.sizes})
        if weights.network.source_class:
            params["source_class"] = weights.network.source_class
    config = {
        "trainer": "push",
        "config": {"cost": cost, **({"activation": params["activation"]} if "activation" in params else {})},
        "dataset": {
            "dataset": dataset,
            "dataset_input_shape": params["dataset_input_shape"],
            "dataset_num_classes": num_classes,
        },
        "source": {key: params[key] for key in ("source_file", "source_format", "source_sha256", "source_file_bytes")},
    }
    metrics = {
        "compute_parameters": figures.parameters,
        "compute_macs_per_sample": figures.macs_per_sample,
        "compute_flops_per_sample": figures.flops_per_sample,
        "compute_bytes_per_parameter": figures.bytes_per_parameter,
        "weights_expected_bytes": figures.weights_bytes,
    }
    tags = {KIND_TAG: "push", TRAINER_TAG: "push", DATASET_TAG: dataset, SOURCE_FORMAT_TAG: weights.format}
    return Prepared(state, spec, config, params, metrics, tags)


def parse_arch(arch: str) -> dict:
    text = arch.strip()
    if text.startswith("{"):
        return _check_spec(_json(text, "--arch"))
    path = Path(text).expanduser()
    if path.suffix.lower() == ".json" or path.is_file():
        try:
            return _check_spec(_json(path.read_text(encoding="utf-8"), str(path)))
        except OSError as err:
            raise ConfigError(
                f"--arch file {path} cannot be read ({err.strerror or err})", "give a labspec/1 JSON file"
            ) from None
    return sizes_spec(text)


def sizes_spec(text: str) -> dict:
    """`784-30-10` (textbook: sigmoid everywhere) or `784-100-10:relu` (hidden ReLU, linear outputs)."""
    sizes_text, _, activation = text.partition(":")
    try:
        sizes = [int(part) for part in sizes_text.split("-")]
    except ValueError:
        sizes = []
    activation = activation.lower() or "sigmoid"
    if len(sizes) < 2 or min(sizes) < 1 or activation not in ACTIVATIONS:
        raise ConfigError(
            f"--arch {text!r} is neither a spec file, JSON, nor sizes like 784-30-10", "see 'Model spec' in the README"
        )
    return layered_spec(sizes, activation, "sigmoid" if activation == "sigmoid" else None)  # logits for cross-entropy


def _json(text: str, where: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{where} is not valid JSON ({err.msg} at line {err.lineno})", "see 'Model spec' in the README"
        ) from None
    return value


def _check_spec(spec: Any) -> dict:
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT or not spec.get("input_shape"):
        raise ConfigError(
            f"--arch must be a {SPEC_FORMAT} spec with format, input_shape, num_classes and layers",
            "see 'Model spec' in the README",
        )
    return spec


def _layer_sizes(spec: dict) -> list[int]:
    linear = [layer for layer in spec["layers"] if layer.get("type") == "Linear"]
    if not linear:
        return []
    return [int(linear[0]["in_features"])] + [int(layer["out_features"]) for layer in linear]


def _last_width(spec: dict) -> int:
    sizes = _layer_sizes(spec)
    if not sizes:
        raise ArchitectureError("the spec gives no num_classes and has no Linear layer to read it from")
    return sizes[-1]

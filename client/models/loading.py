"""Reading weights from other teams without running their code.

Formats, told apart by their first bytes; a file whose name claims another format is refused (a pickle
named model.safetensors would otherwise reach the unpickler under a safe-looking name):
- safetensors: the header is checked against the file size before any tensor is read, so a header that
  claims huge tensors, or a truncated file, is refused without allocating anything;
- PyTorch `.pt`/`.pth` (zip format): every entry must be stored uncompressed, as torch.save writes them, so
  a zip bomb is refused before inflating; then `torch.load(weights_only=True)`;
- pickles of plain parameters (`sizes`, `weights`, `biases` of a textbook numpy network, or a dict of
  arrays) through labclient.models.safe_pickle's allow-list.
`inspect_weights` validates without importing torch (fetch uses it); `read_weights` returns tensors. Both
refuse tensors that share or repeat data, or hold more bytes than the file (labclient.models.fitting), and
`build_model` checks the spec against the tensors by arithmetic before it builds anything.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labclient.errors import ArchitectureError, UnsafePickle, WeightsFormatError
from labclient.models import fitting, safe_pickle
from labclient.models.spec import ACTIVATIONS, SpecError, build, layered_spec

MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit
MAX_PICKLE_BYTES = 2 * 1024**3
MAX_TORCH_PICKLE_BYTES = 64 * 1024 * 1024
SAFETENSORS_ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
FORMAT_NAMES = {"safetensors": "safetensors", "torch": "a PyTorch zip file", "pickle": "a pickle"}
SUFFIX_FORMATS = {
    ".safetensors": "safetensors",
    ".pt": "torch",
    ".pth": "torch",
    ".bin": "torch",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".p": "pickle",
}
WEIGHT_SUFFIXES = tuple(SUFFIX_FORMATS)
NUMPY_COSTS = {"QuadraticCost": "quadratic", "CrossEntropyCost": "binary_cross_entropy"}
_UNSUPPORTED_GLOBAL = re.compile(r"(?:[Uu]nsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)")  # torch 2.x wordings


@dataclass
class NumpyNetwork:
    """A textbook network: weights[i] is (sizes[i+1], sizes[i]), biases[i] is (sizes[i+1], 1)."""

    sizes: list[int]
    weights: list[Any]
    biases: list[Any]
    activation: str = "sigmoid"
    cost: str = "quadratic"
    source_class: str | None = None

    def spec(self, input_shape: list[int] | None = None, num_classes: int | None = None) -> dict:
        # the textbook output layer is sigmoid whatever the hidden neurons are
        return layered_spec(self.sizes, self.activation, "sigmoid", input_shape, num_classes)

    def state(self) -> dict[str, Any]:
        state = {}
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            state[f"{1 + 2 * index}.weight"] = weight
            state[f"{1 + 2 * index}.bias"] = bias.reshape(-1)
        return state


@dataclass
class Weights:
    format: str
    tensors: dict[str, Any]  # name -> numpy array (inspect) or torch tensor (read)
    metadata: dict[str, Any] = field(default_factory=dict)  # safetensors metadata, JSON values decoded
    network: NumpyNetwork | None = None

    @property
    def spec(self) -> dict | None:
        if isinstance(self.metadata.get("spec"), dict):
            return self.metadata["spec"]
        return self.network.spec() if self.network else None

    @property
    def config(self) -> dict | None:
        return self.metadata.get("config") if isinstance(self.metadata.get("config"), dict) else None


def detect_format(path: Path) -> str:
    """The format of a weights file, told by its first bytes; refused when its name claims another format."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(14)
    actual = _sniff(head, path.stat().st_size)
    declared = SUFFIX_FORMATS.get(path.suffix.lower())
    if actual and declared and actual != declared:
        magic = int.from_bytes(head[4:14], "little")  # pickle protocol 2, then LONG1 of 10 bytes: torch's legacy format
        legacy = head[:4] == b"\x80\x02\x8a\x0a" and magic == safe_pickle.TORCH_LEGACY_MAGIC
        if declared == "torch" and legacy:
            raise WeightsFormatError(
                f"{path.name} is in PyTorch's pre-1.6 serialization format",
                "re-save it with torch.save (zip format) or as safetensors",
            )
        raise WeightsFormatError(
            f"{path.name} is named as {FORMAT_NAMES[declared]} but is really {FORMAT_NAMES[actual]}",
            "a weights file's name must say what it holds; do not load a file that hides its format",
        )
    if actual or declared:
        return actual or declared  # declared only: a truncated file of a known kind; its reader says what is wrong
    raise WeightsFormatError(
        f"{path.name} is not safetensors, a PyTorch file or a pickle",
        "export the weights with safetensors or torch.save",
    )


def _sniff(head: bytes, size: int) -> str | None:
    if head[:4] == b"PK\x03\x04":
        return "torch"
    # before the pickle test: a header length of 640 starts with the bytes 0x80 0x02, like a pickle
    if len(head) >= 9 and head[8:9] == b"{" and 8 + struct.unpack("<Q", head[:8])[0] <= size:
        return "safetensors"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    return None


def _format(path: Path, recorded: str | None) -> str:
    actual = detect_format(path)
    if recorded and recorded != actual:
        raise WeightsFormatError(
            f"{path.name} was recorded as {FORMAT_NAMES.get(recorded, recorded)} but is really {FORMAT_NAMES[actual]}",
            "fetch it again with --force",
        )
    return actual


def inspect_weights(path: Path, fmt: str | None = None) -> Weights:
    """Validate a weights file and describe its tensors; never imports torch for safetensors or pickles."""
    path = Path(path)
    fmt = _format(path, fmt)
    if fmt == "safetensors":
        header, metadata = _safetensors_header(path)
        return Weights(fmt, {name: (info["dtype"], info["shape"]) for name, info in header.items()}, metadata)
    if fmt == "pickle":
        return _read_pickle(path)
    return read_weights(path, fmt)


def read_weights(path: Path, fmt: str | None = None) -> Weights:
    """The tensors of a weights file as torch tensors, with its metadata."""
    import torch

    path = Path(path)
    fmt = _format(path, fmt)
    if fmt == "safetensors":
        from safetensors.torch import load_file

        _, metadata = _safetensors_header(path)  # offsets checked: no tensor overlaps another or passes the end
        return Weights(fmt, load_file(str(path)), metadata)
    if fmt == "torch":
        tensors = _read_torch(path)
        fitting.check_spans(path.name, fitting.torch_spans(path.name, tensors), path.stat().st_size)
        return Weights(fmt, tensors)
    weights = _read_pickle(path)
    # native byte order and a private copy: torch cannot wrap big-endian or read-only arrays
    weights.tensors = {
        name: torch.from_numpy(value.astype(value.dtype.newbyteorder("="))) for name, value in weights.tensors.items()
    }
    return weights


# --- safetensors -------------------------------------------------------------------------------
def _safetensors_header(path: Path) -> tuple[dict, dict]:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise WeightsFormatError(
                f"{path.name} is truncated: {size} bytes, not even a safetensors header", "download or export it again"
            )
        length = struct.unpack("<Q", prefix)[0]
        if length > MAX_HEADER_BYTES or 8 + length > size:
            raise WeightsFormatError(
                f"{path.name}: the safetensors header claims {length:,} bytes but the file has {size:,}",
                "the file is truncated or hostile; do not use it",
            )
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise WeightsFormatError(f"{path.name}: the safetensors header is not JSON ({err})") from None
    if not isinstance(header, dict):
        raise WeightsFormatError(f"{path.name}: the safetensors header is not a JSON object")
    metadata = _decode_metadata(header.pop("__metadata__", None) or {})
    data_bytes = size - 8 - length
    for name, info in header.items():
        _check_tensor_entry(path.name, name, info, data_bytes)
    ranges = {name: info["data_offsets"] for name, info in header.items()}
    spans = [fitting.Span(name, begin, end, end - begin) for name, (begin, end) in ranges.items()]
    fitting.check_spans(path.name, spans, data_bytes)
    return header, metadata


def _check_tensor_entry(file_name: str, name: str, info: Any, data_bytes: int) -> None:
    try:
        itemsize = SAFETENSORS_ITEMSIZE[info["dtype"]]
        shape = [int(dim) for dim in info["shape"]]
        begin, end = (int(offset) for offset in info["data_offsets"])
        info["data_offsets"] = [begin, end]
    except (TypeError, KeyError, ValueError):
        raise WeightsFormatError(f"{file_name}: tensor {name!r} has a malformed header entry") from None
    count = 1
    for dim in shape:
        if dim < 0:
            raise WeightsFormatError(f"{file_name}: tensor {name!r} has a negative dimension")
        count *= dim
    if not 0 <= begin <= end <= data_bytes or end - begin != count * itemsize:
        raise WeightsFormatError(
            f"{file_name}: tensor {name!r} claims {count * itemsize:,} bytes at {begin:,}-{end:,} but the file holds "
            f"{data_bytes:,} bytes of data",
            "the file is truncated or hostile; do not use it",
        )


def _decode_metadata(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {}
    decoded = {}
    for key, value in raw.items():
        try:
            decoded[key] = json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value
        except json.JSONDecodeError:
            decoded[key] = value
    return decoded


# --- PyTorch -------------------------------------------------------------------------------------
def _check_torch_zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        raise WeightsFormatError(
            f"{path.name} is not a readable PyTorch zip file ({err})", "the file may be truncated; export it again"
        ) from None
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED or entry.file_size != entry.compress_size:
            raise WeightsFormatError(
                f"{path.name}: entry {entry.filename} is compressed ({entry.compress_size:,} -> {entry.file_size:,} "
                "bytes); torch.save never compresses (a zip bomb?)",
                "re-save it with torch.save or as safetensors",
            )
        if entry.filename.endswith("data.pkl") and entry.file_size > MAX_TORCH_PICKLE_BYTES:
            raise WeightsFormatError(
                f"{path.name}: its pickled structure is {entry.file_size:,} bytes, too large for a state dict"
            )
    if not any(entry.filename.endswith("data.pkl") for entry in entries):
        raise WeightsFormatError(f"{path.name} is a zip file but not a PyTorch checkpoint", "export it with torch.save")


def _read_torch(path: Path) -> dict:
    import pickle

    import torch

    _check_torch_zip(path)
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        match = _UNSUPPORTED_GLOBAL.search(str(err))
        raise UnsafePickle(match.group(1) if match else "a global outside torch's weights-only allow-list") from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        raise WeightsFormatError(
            f"{path.name} cannot be read by torch.load ({' '.join(str(err).split())[:200]})", "export it again"
        ) from None
    return _state_dict_of(loaded, path.name)


def _state_dict_of(loaded: Any, file_name: str) -> dict:
    import torch

    if isinstance(loaded, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
        tensors = {str(name): value for name, value in loaded.items() if isinstance(value, torch.Tensor)}
        if tensors:
            return tensors
    raise WeightsFormatError(f"{file_name} holds no state dict of tensors", "save model.state_dict() with torch.save")


# --- pickles -------------------------------------------------------------------------------------
def _read_pickle(path: Path) -> Weights:
    import numpy as np

    size = path.stat().st_size
    if size > MAX_PICKLE_BYTES:
        raise WeightsFormatError(
            f"{path.name} is {size:,} bytes, too large for a pickle of parameters", "export it as safetensors"
        )
    value = safe_pickle.load(path.read_bytes())
    fields = safe_pickle.fields(value)
    if fields is not None and "weights" in fields and "biases" in fields:
        network = numpy_network(fields, safe_pickle.global_name(value))
        weights = Weights("pickle", network.state(), {}, network)
    elif fields is not None and fields and all(isinstance(item, np.ndarray) for item in fields.values()):
        weights = Weights("pickle", {str(name): item for name, item in fields.items()})
    else:
        weights = None
    if weights is not None:  # one array named many times is aliasing; read_weights would copy it each time
        fitting.check_spans(path.name, fitting.numpy_spans(weights.tensors), size)
        return weights
    raise WeightsFormatError(
        f"{path.name} holds neither a network with sizes/weights/biases nor a dict of arrays",
        "pickle a dict like {'sizes': [...], 'weights': [...], 'biases': [...]}",
    )


def numpy_network(fields: dict, source_class: str | None = None) -> NumpyNetwork:
    import numpy as np

    weights, biases = list(fields["weights"] or []), list(fields["biases"] or [])
    if not weights or len(weights) != len(biases) or not all(isinstance(item, np.ndarray) for item in weights + biases):
        raise ArchitectureError("weights and biases must be equally long, non-empty lists of numpy arrays")
    sizes = [int(weights[0].shape[-1])] + [int(weight.shape[0]) for weight in weights]
    claimed = fields.get("sizes")
    if claimed is not None and [int(size) for size in claimed] != sizes:
        raise ArchitectureError(f"sizes {list(claimed)} do not match the weight shapes, which say {sizes}")
    for index, (weight, bias) in enumerate(zip(weights, biases)):
        if weight.shape != (sizes[index + 1], sizes[index]) or bias.size != sizes[index + 1]:
            raise ArchitectureError(
                f"layer {index}: weights {weight.shape} and biases {bias.shape} do not fit sizes {sizes}",
                "weights[i] must be (sizes[i+1], sizes[i]) and biases[i] (sizes[i+1], 1), as in the textbook",
            )
    activation = str(fields.get("activation", "sigmoid")).lower()
    if activation not in ACTIVATIONS:
        raise ArchitectureError(f"unknown activation {activation!r}", f"use one of {', '.join(ACTIVATIONS)}")
    cost_field = fields.get("cost")
    cost_name = safe_pickle.class_name(cost_field) or (cost_field if isinstance(cost_field, str) else "QuadraticCost")
    cost = NUMPY_COSTS.get(
        cost_name, cost_name if cost_name in ("quadratic", "cross_entropy", "binary_cross_entropy") else "quadratic"
    )
    return NumpyNetwork(sizes, weights, biases, activation, cost, source_class)


# --- models --------------------------------------------------------------------------------------
def build_model(spec: dict, tensors: dict):
    """Rebuild the model a spec describes and load the tensors; names matched, else by position and shape.
    The spec is checked against the tensors first, by arithmetic: nothing is allocated for a spec that does
    not fit them, so the model is never larger than the (already bounded) tensors."""
    sources = fitting.fit_tensors(spec, tensors)
    try:
        model = build(spec)
    except (SpecError, TypeError, ValueError, RuntimeError) as err:
        raise ArchitectureError(
            f"the model spec cannot be built: {err}", "check the spec (see 'Model spec' in the README)"
        ) from None
    state = {name: tensors[source] for name, source in sources.items()}
    built = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    if built != fitting.tensor_shapes(state):
        raise ArchitectureError(
            "the model built from the spec differs from the shapes computed from it",
            "report this as a bug in labclient",
        )
    floating = [value.dtype for value in state.values() if value.is_floating_point()]
    if floating:
        model = model.to(floating[0])  # float64 numpy networks stay float64, so predictions match theirs exactly
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)

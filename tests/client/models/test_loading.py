"""Loading other teams' weights never runs their code: real malicious pickles, hostile and broken files."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import struct
import subprocess
import time
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from labclient.errors import ArchitectureError, UnsafePickle, WeightsFormatError
from labclient.models import loading, safe_pickle
from tests.client.exchange_support import Evil


class Network:
    """The textbook network class; pickled by reference, never imported by the loader."""

    def __init__(self, sizes):
        rng = np.random.default_rng(0)
        self.num_layers = len(sizes)
        self.sizes = sizes
        self.biases = [rng.standard_normal((y, 1)) for y in sizes[1:]]
        self.weights = [rng.standard_normal((y, x)) for x, y in zip(sizes[:-1], sizes[1:])]


class CallsPopen:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (subprocess.Popen, (["touch", str(self.target)],))


class CallsEval:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (eval, (f"open({str(self.target)!r}, 'w').close()",))


class CallsExec:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (exec, (f"open({str(self.target)!r}, 'w').close()",))


def _payloads(target):
    network = Network([4, 3, 2])
    network.weights.append(Evil(f"touch {target}"))  # hidden inside an allowed container of an allowed object
    return {
        "os.system": (Evil(f"touch {target}"), "system"),
        "subprocess.Popen": (CallsPopen(target), "subprocess.Popen"),
        "builtins.eval": (CallsEval(target), "builtins.eval"),
        "builtins.exec": (CallsExec(target), "builtins.exec"),
        "nested in a dict": (
            {"sizes": [2, 2], "weights": [np.ones((2, 2)), Evil(f"touch {target}")], "biases": []},
            "system",
        ),
        "nested in a Network": (network, "system"),
    }


def test_the_payloads_are_real(tmp_path):
    """Positive control: plain pickle does run each payload, so the refusals below mean something."""
    for index, name in enumerate(_payloads("unused")):
        target = tmp_path / f"control-{index}"
        with contextlib.suppress(Exception):
            pickle.loads(pickle.dumps(_payloads(target)[name][0]))
        for _ in range(100):  # Popen's `touch` runs in a child process
            if target.exists():
                break
            time.sleep(0.02)
        assert target.exists(), name


@pytest.mark.parametrize("name", list(_payloads("x")))
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_malicious_pickles_are_refused_and_nothing_runs(tmp_path, name, protocol):
    target = tmp_path / "pwned"
    payload, named = _payloads(target)[name]
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(UnsafePickle) as caught:
        loading.inspect_weights(path)
    assert named in caught.value.one_line() and "nothing of it was run" in caught.value.one_line()
    assert not target.exists()


def test_malicious_torch_file_is_refused_by_name(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save({"0.weight": torch.ones(2, 2), "hook": Evil(f"touch {target}")}, path)
    with pytest.raises(UnsafePickle, match="system"):
        loading.read_weights(path)
    assert not target.exists()


@pytest.mark.parametrize("protocol", range(0, 6))
def test_textbook_network_object_loads_without_its_class(protocol, tmp_path):
    original = Network([784, 30, 10])
    path = tmp_path / "net.pkl"
    path.write_bytes(pickle.dumps(original, protocol=protocol))
    weights = loading.inspect_weights(path)
    network = weights.network
    assert network.sizes == [784, 30, 10] and network.source_class.endswith("Network")
    assert np.array_equal(weights.tensors["1.weight"], original.weights[0])
    assert np.array_equal(weights.tensors["3.bias"], original.biases[1].ravel())
    assert [layer["type"] for layer in weights.spec["layers"]] == ["Flatten", "Linear", "Sigmoid", "Linear", "Sigmoid"]
    assert weights.spec["input_shape"] == [1, 28, 28]


class CrossEntropyCost:
    """network2.py's cost class: the pickle refers to it by name."""


def test_network2_cost_class_is_read_by_name(tmp_path):
    network = Network([4, 3, 2])
    network.cost = CrossEntropyCost
    path = tmp_path / "net.pkl"
    path.write_bytes(pickle.dumps(network))
    assert loading.inspect_weights(path).network.cost == "binary_cross_entropy"


def test_dict_pickle_and_shapes_are_checked(tmp_path):
    path = tmp_path / "net.pkl"
    good = {"sizes": [3, 2], "weights": [np.ones((2, 3))], "biases": [np.zeros((2, 1))]}
    path.write_bytes(pickle.dumps(good))
    assert loading.inspect_weights(path).network.sizes == [3, 2]
    path.write_bytes(pickle.dumps({**good, "sizes": [3, 4]}))
    with pytest.raises(ArchitectureError, match="do not match"):
        loading.inspect_weights(path)
    path.write_bytes(pickle.dumps({**good, "biases": [np.zeros((5, 1))]}))
    with pytest.raises(ArchitectureError, match="do not fit"):
        loading.inspect_weights(path)


def test_object_arrays_and_direct_array_calls_are_refused(tmp_path):
    path = tmp_path / "objects.pkl"
    path.write_bytes(pickle.dumps({"weights": [np.array([1, "x"], dtype=object)], "biases": []}))
    with pytest.raises(UnsafePickle, match="object array"):
        loading.inspect_weights(path)
    # REDUCE numpy.ndarray((10**12,)): a terabyte request made by a tiny file
    bomb = b"\x80\x04cnumpy\nndarray\n\x8a\x06\x00\x10\xa5\xd4\xe8\x00\x85\x85R."
    path.write_bytes(bomb)
    with pytest.raises(UnsafePickle, match="numpy.ndarray"):
        loading.inspect_weights(path)


def test_reconstruct_memory_bomb_is_refused():
    bomb = (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        b"\x8a\x06\x00\x10\xa5\xd4\xe8\x00\x85U\x01b\x87R."
    )
    with pytest.raises(WeightsFormatError, match="larger than the file"):
        safe_pickle.load(bomb)


def test_truncated_pickle_is_a_clear_error(tmp_path):
    path = tmp_path / "net.pkl"
    path.write_bytes(pickle.dumps({"sizes": [3, 2], "weights": [np.ones((2, 3))], "biases": [np.zeros((2, 1))]})[:-20])
    with pytest.raises(WeightsFormatError, match="cannot be read"):
        loading.inspect_weights(path)


def _safetensors(path, header: dict, data: bytes = b"") -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def test_safetensors_header_claiming_huge_tensors(tmp_path):
    path = tmp_path / "huge.safetensors"
    _safetensors(
        path, {"w": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 40_000_000_000]}}, b"\0" * 16
    )
    with pytest.raises(WeightsFormatError, match="claims 40,000,000,000 bytes"):
        loading.read_weights(path)


def test_safetensors_header_longer_than_the_file(tmp_path):
    path = tmp_path / "liar.safetensors"
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(WeightsFormatError, match="header claims"):
        loading.inspect_weights(path)


def test_truncated_safetensors(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(64, 64)}, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(WeightsFormatError, match="the file holds"):
        loading.read_weights(path)


def test_safetensors_whose_header_length_looks_like_a_pickle(tmp_path):
    """A 640-byte header starts with 0x80 0x02, a pickle's protocol-2 opcode."""
    path = tmp_path / "model.safetensors"
    metadata = {"pad": "x" * 4096}
    for pad in range(0, 700):
        metadata["pad"] = "x" * pad
        save_file({"w": torch.ones(2)}, str(path), metadata=metadata)
        if path.read_bytes()[:2] == b"\x80\x02":
            break
    assert path.read_bytes()[:2] == b"\x80\x02"
    assert loading.detect_format(path) == "safetensors"
    assert torch.equal(loading.read_weights(path).tensors["w"], torch.ones(2))


def test_zip_bomb_in_a_pt_file_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\0" * (64 << 20))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(WeightsFormatError, match="compressed"):
        loading.read_weights(path)


def test_truncated_pt_file(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(100, 100)}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsFormatError):
        loading.read_weights(path)


def test_state_dict_checkpoint_loads(tmp_path):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "model_state_dict": model.state_dict()}, path)
    weights = loading.read_weights(path)
    assert weights.format == "torch" and set(weights.tensors) == {"1.weight", "1.bias"}


def test_own_names_are_matched_by_position():
    spec = {
        "format": "labspec/1",
        "input_shape": [4],
        "num_classes": 2,
        "layers": [
            {"type": "Linear", "in_features": 4, "out_features": 3},
            {"type": "ReLU"},
            {"type": "Linear", "in_features": 3, "out_features": 2},
        ],
    }
    tensors = {
        "fc2.bias": torch.ones(2),
        "fc1.bias": torch.zeros(3),
        "fc2.weight": torch.ones(2, 3),
        "fc1.weight": torch.ones(3, 4),
    }
    model = loading.build_model(spec, tensors)
    assert torch.equal(model[2].bias, torch.ones(2)) and torch.equal(model[0].bias, torch.zeros(3))
    with pytest.raises(ArchitectureError, match="do not fit"):
        loading.build_model(spec, {"x": torch.ones(5)})


def test_unknown_format(tmp_path):
    path = tmp_path / "weights.txt"
    path.write_text("hello")
    with pytest.raises(WeightsFormatError, match="not safetensors"):
        loading.inspect_weights(path)


def test_inspect_does_not_import_torch(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(2)}, str(path))
    net = tmp_path / "net.pkl"
    net.write_bytes(pickle.dumps({"sizes": [2, 1], "weights": [np.ones((1, 2))], "biases": [np.zeros((1, 1))]}))
    code = (
        "import sys\nfrom labclient.models.loading import inspect_weights\n"
        f"inspect_weights({str(path)!r}); inspect_weights({str(net)!r})\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"

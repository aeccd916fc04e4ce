"""Loading another team's weights, attacked: issue 11, findings 1 (memory corruption from a pickle) and 7
(memory exhaustion from tiny files), replayed against real processes.

Team mallory uploads hostile weights to a real store (the embedded SQLite store, through labclient's own
run API); the victim's `labclient fetch`, `compare` and `push`, and `inspect_weights` / `read_weights` in a
fresh interpreter, must refuse each file with exactly one `error:` line. A crash shows as the child's exit
status (134 or 139 before the fix), so every loader runs in a child, and every child runs with its address
space capped (3 GiB; 2 GiB for the wide model): an allocation the checks should have prevented fails loudly
instead of succeeding. The attacker's files are built in hostile_files.py; pickle_fuzz.py is the fuzzer.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from . import hostile_files

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
LIMIT = 3 << 30  # a labclient child needs about 1 GiB of address space; one of the 4 GiB layers cannot fit
CRASHES = {134, 139, -6, -11}  # SIGABRT (free(): corrupted unsorted chunks) and SIGSEGV, as status or signal
LABCLIENT = str(Path(sys.executable).parent / "labclient")
_LIMITED = (
    "import os, resource, sys; resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]),) * 2); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)
_LOADER = """
import sys
from labclient.models import loading
from labclient.errors import LabError
try:
    weights = getattr(loading, sys.argv[1])(sys.argv[2])
except LabError as err:
    sys.exit(f"error: {err.one_line()}")
print("loaded", len(weights.tensors), "tensors")
"""
# digits through one padded 1x1 convolution: 90 x 104 x 104 = 973,440 values per sample, from 1.1k parameters
WIDE_SPEC = {
    "format": "labspec/1",
    "input_shape": [1, 8, 8],
    "num_classes": 10,
    "layers": [
        {"type": "Conv2d", "in_channels": 1, "out_channels": 90, "kernel_size": 1, "padding": 48},
        {"type": "MaxPool2d", "kernel_size": 104},
        {"type": "Flatten"},
        {"type": "Linear", "in_features": 90, "out_features": 10},
    ],
}
WIDE_VALUES = 90 * 104 * 104
HUGE_SPEC = {  # 10 x Linear(32768, 32768): 4 GiB of float32 per layer, in well under a kilobyte
    "format": "labspec/1",
    "input_shape": [32768],
    "num_classes": 10,
    "layers": [{"type": "Linear", "in_features": 32768, "out_features": 32768, "bias": False} for _ in range(10)],
}


def limited(*argv: str, timeout: float = 240, limit: int = LIMIT) -> subprocess.CompletedProcess:
    """Run a command in a child capped at `limit` bytes of address space; it inherits this test's LAB_* settings."""
    return subprocess.run(
        [sys.executable, "-c", _LIMITED, str(limit), *argv], capture_output=True, text=True, timeout=timeout
    )


def in_child(function: str, path: Path) -> subprocess.CompletedProcess:
    return limited(sys.executable, "-c", _LOADER, function, str(path))


def refused(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """A non-zero exit that is no crash, exactly one `error:` line from a typed error, and no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode > 0 and result.returncode not in CRASHES, (
        f"exit status {result.returncode}:\n{output[-3000:]}"
    )
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output[-3000:]
    assert "Traceback" not in output and "LAB_DEBUG" not in errors[0], output[-3000:]  # LAB_DEBUG: an untyped error
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


# --- the hostile files ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "disguised").mkdir()
    made = {
        "oob.pkl": hostile_files.out_of_bounds_array(),
        "disguised/model.safetensors": hostile_files.out_of_bounds_array(),  # the format is told by content
        "aliased.pkl": hostile_files.aliased_arrays(100_000, 1 << 17),  # 100,000 names for one 1 MiB array
        "classes.pkl": hostile_files.many_classes(200_000),
    }
    for name, content in made.items():
        (folder / name).write_bytes(content)
    hostile_files.small_safetensors(folder / "small.safetensors")
    hostile_files.stride_zero_views(folder / "views.pt")
    hostile_files.overlapping_safetensors(folder / "overlap.safetensors")
    (folder / "huge-spec.json").write_text(json.dumps(HUGE_SPEC))
    (folder / "good.pkl").write_bytes(pickle.dumps(_textbook(0)))
    assert (folder / "aliased.pkl").stat().st_size < 4 << 20 and (folder / "views.pt").stat().st_size < 4096
    return {path.relative_to(folder).as_posix(): path for path in folder.rglob("*") if path.is_file()}


def _textbook(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"sizes": [64, 10], "weights": [rng.standard_normal((10, 64))], "biases": [rng.standard_normal((10, 1))]}


# --- the store: two honest runs of red, and mallory's uploads ----------------------------------------------
@dataclass
class Store:
    home: Path
    runs: dict[str, str]  # attack -> mallory's run name


def _upload(run_files: dict[str, Path], folder: Path, weights_tag: bool) -> str:
    """A mallory run holding these files under model/; with weights_tag, the tags labclient sets for weights."""
    import labclient

    folder.mkdir()
    with labclient.start_run(team="mallory") as run:
        for name, source in run_files.items():
            local = folder / name
            local.write_bytes(source.read_bytes())
            run.log_artifact(local, "model")
        if weights_tag:
            data = (folder / "model.safetensors").read_bytes()
            run.set_tags(
                {
                    "lab.weights.sha256": hashlib.sha256(data).hexdigest(),
                    "lab.weights.bytes": len(data),
                    "lab.weights.format": "safetensors",
                }
            )
    return run.name


@pytest.fixture(scope="module")
def store_home(tmp_path_factory, files) -> Store:
    from labclient.config import reset_settings
    from labclient.exchange.push import push

    root = tmp_path_factory.mktemp("store")
    home = root / "store"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {
            "LAB_HOME": home,
            "LAB_CACHE_DIR": root / "cache",
            "LAB_CONFIG": root / "config.toml",
        }.items():
            patch.setenv(key, str(value))
        patch.delenv("LAB_TRACKING_URI", raising=False)
        reset_settings()
        for seed in (1, 2):
            (root / f"red-{seed}.pkl").write_bytes(pickle.dumps(_textbook(seed)))
            push(root / f"red-{seed}.pkl", "red", dataset="digits")
        spec = root / "spec" / "spec.json"
        spec.parent.mkdir()
        spec.write_text(json.dumps(HUGE_SPEC))
        uploads = {
            "disguised pickle": ({"model.safetensors": files["disguised/model.safetensors"]}, True),
            "out-of-bounds dtype": ({"weights.pkl": files["oob.pkl"]}, False),
            "spec larger than weights": ({"model.safetensors": files["small.safetensors"], "spec.json": spec}, True),
            "stride-0 views": ({"weights.pt": files["views.pt"], "spec.json": spec}, False),
            "aliased arrays": ({"weights.pkl": files["aliased.pkl"]}, False),
            "overlapping safetensors": ({"model.safetensors": files["overlap.safetensors"]}, True),
        }
        runs = {
            attack: _upload(run_files, root / f"upload-{index}", tagged)
            for index, (attack, (run_files, tagged)) in enumerate(uploads.items())
        }
        wide = root / "wide" / "wide.safetensors"
        wide.parent.mkdir()
        save_file(
            {
                "0.weight": torch.randn(90, 1, 1, 1),
                "0.bias": torch.randn(90),
                "3.weight": torch.randn(10, 90),
                "3.bias": torch.randn(10),
            },
            str(wide),
        )
        (root / "wide" / "spec.json").write_text(json.dumps(WIDE_SPEC))
        runs["wide activations"] = push(wide, "mallory", arch=str(root / "wide" / "spec.json"), dataset="digits").name
        reset_settings()
    return Store(home, runs)


@pytest.fixture
def store(store_home, isolated_lab, monkeypatch) -> Store:
    """This test's children read the shared store; the cache stays this test's own."""
    from labclient.config import reset_settings

    monkeypatch.setenv("LAB_HOME", str(store_home.home))
    reset_settings()
    return store_home


def _cached_runs(isolated_lab) -> list[Path]:
    snapshots = isolated_lab / "cache" / "models" / "snapshots"
    return list(snapshots.iterdir()) if snapshots.is_dir() else []


# what the one error line says for each attack, wherever it is refused
ATTACKS = {
    "disguised pickle": "model.safetensors is named as safetensors but is really a pickle",
    "out-of-bounds dtype": "numpy dtype 'V8'",
    "spec larger than weights": "shape mismatch 0.weight (4, 16) vs (32768, 32768)",
    "stride-0 views": "repeats its own data",
    "aliased arrays": "share their data (aliased tensors)",
    "overlapping safetensors": "tensors 'a' and 'b' share their data",
}


def test_honest_runs_fetch_and_compare_under_the_same_limit(store):
    """Positive control: the memory cap itself refuses nothing a real comparison needs."""
    result = limited(LABCLIENT, "compare", "red/run-1", "red/run-2", "--json")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert json.loads(result.stdout)["evaluation"]["samples"] > 0


@pytest.mark.parametrize("attack", ATTACKS)
def test_fetch_refuses_and_caches_nothing(store, isolated_lab, attack):
    refused(limited(LABCLIENT, "fetch", store.runs[attack]), ATTACKS[attack])
    assert not _cached_runs(isolated_lab)


@pytest.mark.parametrize(
    "attack", ["out-of-bounds dtype", "spec larger than weights", "stride-0 views", "aliased arrays"]
)
def test_compare_refuses(store, attack):
    refused(limited(LABCLIENT, "compare", store.runs[attack], "red/run-1"), ATTACKS[attack])


def test_compare_bounds_the_activations_of_a_tiny_wide_model(store):
    """A 4.5 kB model whose one layer outputs a million values per sample: compare runs it in slices that fit its
    activation budget, well inside 2 GiB; its batch of 1000 (all 360 held-out digits) asked for 1.4 GB at once."""
    from labclient.compare.evaluate import ACTIVATION_BUDGET

    result = limited(LABCLIENT, "compare", store.runs["wide activations"], "red/run-1", "--json", limit=2 << 30)
    assert result.returncode == 0, f"exit status {result.returncode}:\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    assert report["compute"]["a"]["latency_batch_size"] == ACTIVATION_BUDGET // WIDE_VALUES
    assert report["compute"]["b"]["latency_batch_size"] == 256 and report["evaluation"]["samples"] > 300


@pytest.mark.parametrize(
    "name, arch, fragment",
    [
        ("oob.pkl", None, ATTACKS["out-of-bounds dtype"]),
        ("disguised/model.safetensors", None, ATTACKS["disguised pickle"]),
        ("small.safetensors", "huge-spec.json", ATTACKS["spec larger than weights"]),
        ("views.pt", "huge-spec.json", ATTACKS["stride-0 views"]),
        ("aliased.pkl", None, ATTACKS["aliased arrays"]),
    ],
)
def test_push_refuses_and_makes_no_run(store, files, name, arch, fragment):
    from mlflow.tracking import MlflowClient

    options = ["--arch", str(files[arch])] if arch else []
    refused(limited(LABCLIENT, "push", str(files[name]), "--team", "victim", *options), fragment)
    assert MlflowClient(f"sqlite:///{store.home / 'mlflow.db'}").get_experiment_by_name("victim") is None


@pytest.mark.parametrize("function", ["inspect_weights", "read_weights"])
@pytest.mark.parametrize(
    "name, fragment",
    [
        ("oob.pkl", ATTACKS["out-of-bounds dtype"]),
        ("disguised/model.safetensors", ATTACKS["disguised pickle"]),
        ("aliased.pkl", ATTACKS["aliased arrays"]),
        ("views.pt", ATTACKS["stride-0 views"]),
        ("overlap.safetensors", ATTACKS["overlapping safetensors"]),
        ("classes.pkl", "names more than 64 classes outside the allow-list"),
    ],
)
def test_loaders_refuse_in_a_fresh_interpreter(files, function, name, fragment):
    refused(in_child(function, files[name]), fragment)


def test_a_plain_dtype_with_a_structured_state_is_refused(tmp_path):
    """numpy's own spelling is refused by its code ('V8'); this one reaches the BUILD of the dtype's state."""
    path = tmp_path / "weights.pkl"
    path.write_bytes(hostile_files.out_of_bounds_array(code="f8"))
    refused(in_child("read_weights", path), "structured or altered numpy dtype")


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("weights.pkl", "torch", "weights.pkl is named as a pickle but is really a PyTorch zip file"),
        ("model.pt", "safetensors", "model.pt is named as a PyTorch zip file but is really safetensors"),
        ("model.safetensors", "pickle", "model.safetensors is named as safetensors but is really a pickle"),
    ],
)
def test_a_name_that_hides_the_format_is_refused(tmp_path, name, content, fragment):
    path = tmp_path / name
    if content == "torch":
        torch.save({"w": torch.ones(2)}, path)
    elif content == "safetensors":
        save_file({"w": torch.ones(2)}, str(path))
    else:
        path.write_bytes(pickle.dumps(_textbook(0)))
    for function in ("inspect_weights", "read_weights"):
        refused(in_child(function, path), fragment)


_UNCHANGED = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from loader_state import changed, snapshot
from labclient.models import loading
from labclient.errors import LabError

before = snapshot()
for path in sys.argv[3:]:
    try:
        loading.inspect_weights(path)
    except LabError:
        continue
    sys.exit(f"{path} was not refused")
assert not changed(before), f"refused pickles changed the loader: {changed(before)}"
good = loading.inspect_weights(sys.argv[2])
expected = np.random.default_rng(0).standard_normal((10, 64))
assert np.array_equal(good.tensors["1.weight"], expected) and good.network.sizes == [64, 10]
print("unchanged")
"""


def test_refused_pickles_leave_the_loader_as_it_was(files, tmp_path):
    """BUILD on an allow-listed class or function, with slots (setattr) or a dict (its __dict__): each file is
    refused, the loader's classes and functions are what they were, and a good file still loads correctly."""
    ordered_dict = hostile_files.glob("collections", "OrderedDict")
    attacks = [
        ("numpy", "ndarray", "__init__", ordered_dict, True),  # what replaced _ArrayType.__init__
        ("numpy", "dtype", "__defaults__", hostile_files.tup(), True),
        ("_codecs", "encode", "__kwdefaults__", pickle.EMPTY_DICT, True),
        ("copyreg", "_reconstructor", "lab_global", hostile_files.text("x"), False),
        ("numpy.core.numeric", "_frombuffer", "__wrapped__", ordered_dict, False),
        ("numpy.core.multiarray", "_reconstruct", "__init__", ordered_dict, True),
        ("builtins", "complex", "__defaults__", hostile_files.tup(hostile_files.integer(1)), True),
    ]
    paths = []
    for index, attack in enumerate(attacks):
        paths.append(tmp_path / f"attack-{index}.pkl")
        paths[-1].write_bytes(hostile_files.build_on(*attack))
    result = limited(sys.executable, "-c", _UNCHANGED, str(HERE), str(files["good.pkl"]), *map(str, paths))
    assert result.returncode == 0 and "unchanged" in result.stdout, (
        f"exit {result.returncode}:\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
    )


def test_fuzzed_pickles_never_crash_the_loader_or_yield_other_types(tmp_path):
    """Random opcode streams over the allow-list (see pickle_fuzz.py), in a child: it must exit 0."""
    seed = random.randrange(1 << 32)
    last = tmp_path / "last-stream.hex"
    result = subprocess.run(
        [sys.executable, str(HERE / "pickle_fuzz.py"), "500", str(seed), str(last)],
        capture_output=True,
        text=True,
        timeout=280,
    )
    stream = last.read_text() if last.exists() else "(none)"
    assert result.returncode == 0, (
        f"exit status {result.returncode} with seed {seed}; the last stream loaded (hex): {stream}\n"
        f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
    )

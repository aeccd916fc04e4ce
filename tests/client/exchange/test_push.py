"""`labclient push`: weights trained elsewhere become runs that fetch and compare like any other."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from labclient.exchange import fetch as exchange
from labclient.training.data import load_dataset, load_mnist
from tests.client.exchange_support import Evil, one_line_error, run_of

# every test reads the runs that the session's exchange_lab fixture trains (tests/client/conftest.py)
pytestmark = pytest.mark.slow


class Network:
    """The textbook numpy network (Nielsen, chapter 1), trained with mini-batch SGD on the quadratic cost."""

    def __init__(self, sizes, seed=0):
        rng = np.random.default_rng(seed)
        self.num_layers = len(sizes)
        self.sizes = sizes
        self.biases = [rng.standard_normal((y, 1)) for y in sizes[1:]]
        self.weights = [rng.standard_normal((y, x)) for x, y in zip(sizes[:-1], sizes[1:])]

    def feedforward(self, a):
        for b, w in zip(self.biases, self.weights):
            a = sigmoid(w @ a + b)
        return a

    def sgd(self, x, y, epochs, mini_batch_size, eta):
        targets = np.eye(self.sizes[-1])[y].T
        for _ in range(epochs):
            for start in range(0, x.shape[1], mini_batch_size):
                self._update(x[:, start : start + mini_batch_size], targets[:, start : start + mini_batch_size], eta)

    def _update(self, x, y, eta):
        activations, zs = [x], []
        for b, w in zip(self.biases, self.weights):
            zs.append(w @ activations[-1] + b)
            activations.append(sigmoid(zs[-1]))
        delta = (activations[-1] - y) * sigmoid(zs[-1]) * (1 - sigmoid(zs[-1]))
        for layer in range(1, self.num_layers):
            if layer > 1:
                delta = (self.weights[-layer + 1].T @ delta) * sigmoid(zs[-layer]) * (1 - sigmoid(zs[-layer]))
            self.weights[-layer] -= eta / x.shape[1] * delta @ activations[-layer - 1].T
            self.biases[-layer] -= eta / x.shape[1] * delta.sum(axis=1, keepdims=True)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture(scope="module")
def mnist(mnist_dir, tmp_path_factory):
    return load_mnist(mnist_dir, tmp_path_factory.mktemp("mnist-cache"))


@pytest.fixture(scope="module")
def textbook_net(mnist):
    net = Network([784, 30, 10])
    net.sgd(
        mnist.train_x.reshape(len(mnist.train_y), 784).T.astype(np.float64),
        mnist.train_y,
        epochs=1,
        mini_batch_size=10,
        eta=3.0,
    )
    return net


def _no_runs(uri: str, team: str) -> bool:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(team)
    return experiment is None or not client.search_runs([experiment.experiment_id])


def test_pushed_numpy_pickle_predicts_like_numpy(cli, lab, tmp_path, mnist, textbook_net):
    path = tmp_path / "network.pkl"
    path.write_bytes(pickle.dumps(textbook_net))
    result = cli("push", str(path), "--team", "numpy-lab", "--note", "trained in the numpy lab, eta 3.0")
    assert result.exit_code == 0, result.output
    assert "pushed" in result.output and "numpy-lab/run-1" in result.output

    run = run_of(lab.uri, "numpy-lab/run-1")
    params = run.data.params
    assert params["layer_sizes"] == "[784, 30, 10]" and params["sizes"] == "[784, 30, 10]"
    assert params["parameters"] == str(784 * 30 + 30 + 30 * 10 + 10)
    assert params["dtype"] == "float64" and params["source_format"] == "pickle" and params["cost"] == "quadratic"
    assert params["source_file_bytes"] == str(path.stat().st_size) and params["dataset"] == "mnist"
    assert params["source_class"].endswith("Network")
    assert run.data.tags["lab.kind"] == "push" and "eta 3.0" in run.data.tags["mlflow.note.content"]
    assert run.data.metrics["compute_macs_per_sample"] == 784 * 30 + 30 * 10

    model = exchange.fetch("numpy-lab/run-1").load_model()
    assert [type(layer).__name__ for layer in model.module] == ["Flatten", "Linear", "Sigmoid", "Linear", "Sigmoid"]
    images = mnist.test_x.reshape(len(mnist.test_y), 784).astype(np.float64)
    expected = textbook_net.feedforward(images.T).T
    with torch.no_grad():
        outputs = model.module(torch.from_numpy(mnist.test_x).double()).numpy()
    np.testing.assert_allclose(outputs, expected, rtol=1e-12, atol=1e-12)
    assert np.array_equal(outputs.argmax(1), expected.argmax(1))
    assert model.cost == "quadratic"


def test_pushed_network_is_compared_correctly(cli, lab, tmp_path, mnist, mnist_dir, textbook_net):
    path = tmp_path / "network.pkl"
    path.write_bytes(
        pickle.dumps({"sizes": textbook_net.sizes, "weights": textbook_net.weights, "biases": textbook_net.biases})
    )
    assert cli("push", str(path), "--team", "numpy-dict").exit_code == 0
    result = cli("compare", "numpy-dict/run-1", "green/run-1", "--json", "--data-dir", str(mnist_dir))
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    outputs = textbook_net.feedforward(mnist.test_x.reshape(len(mnist.test_y), 784).T.astype(np.float64))
    accuracy = float(np.mean(outputs.argmax(0) == mnist.test_y))
    cost = float(np.mean(0.5 * np.sum((outputs - np.eye(10)[mnist.test_y].T) ** 2, axis=0)))
    measured = report["evaluation"]["a"]
    assert measured["accuracy"] == pytest.approx(accuracy, abs=1e-12) and measured["cost"] == pytest.approx(
        cost, rel=1e-9
    )
    assert measured["cost_function"] == "quadratic" and measured["claimed_accuracy"] is None
    assert report["evaluation"]["samples"] == 2000 and report["compute"]["a"]["bytes_per_parameter"] == 8


def test_pt_state_dict_with_arch(cli, lab, tmp_path):
    torch.manual_seed(0)
    source = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 20), torch.nn.ReLU(), torch.nn.Linear(20, 10))
    named = {
        "fc1.weight": source[1].weight,
        "fc1.bias": source[1].bias,
        "fc2.weight": source[3].weight,
        "fc2.bias": source[3].bias,
    }
    path = tmp_path / "mine.pt"
    torch.save({"model_state_dict": named, "epoch": 5}, path)
    one_line_error(cli("push", str(path), "--team", "pt-team"), "cannot tell the architecture", "--arch")
    assert _no_runs(lab.uri, "pt-team")
    result = cli("push", str(path), "--team", "pt-team", "--arch", "64-20-10:relu")
    assert result.exit_code == 0, result.output
    params = run_of(lab.uri, "pt-team/run-1").data.params
    assert params["dataset"] == "digits" and params["cost"] == "cross_entropy" and params["source_format"] == "torch"
    model = exchange.fetch("pt-team/run-1").load_model().module
    test_x = torch.from_numpy(load_dataset("digits", None, None).test_x)
    with torch.no_grad():
        assert torch.equal(model(test_x), source(test_x))


def test_safetensors_from_a_run_needs_no_arch(cli, lab, tmp_path):
    fetched = exchange.fetch("red/run-2")
    result = cli("push", str(fetched.entry.weights_path), "--team", "re-upload")
    assert result.exit_code == 0, result.output
    params = run_of(lab.uri, "re-upload/run-1").data.params
    assert params["cost"] == "quadratic" and params["layer_sizes"] == "[64, 30, 10]" and params["dataset"] == "digits"


def test_malicious_pickle_is_refused_and_no_run_is_made(cli, lab, tmp_path):
    target = tmp_path / "PWNED"
    path = tmp_path / "network.pkl"
    path.write_bytes(pickle.dumps({"sizes": [2, 2], "weights": [np.eye(2), Evil(f"touch {target}")], "biases": []}))
    one_line_error(cli("push", str(path), "--team", "evil-push"), "posix.system", "nothing of it was run")
    assert not target.exists() and _no_runs(lab.uri, "evil-push")


@pytest.mark.parametrize(
    "arch, fragments",
    [
        ("64-30-10", ["do not fit", "--arch"]),
        ("64-x-10", ["neither a spec file"]),
        ('{"format": "labspec/1"', ["not valid JSON"]),
        ('{"format": "other"}', ["labspec/1"]),
    ],
)
def test_bad_arch_is_one_line_and_makes_no_run(cli, lab, tmp_path, arch, fragments):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.ones(3, 4)}, path)
    one_line_error(cli("push", str(path), "--team", "bad-arch", "--arch", arch), *fragments)
    assert _no_runs(lab.uri, "bad-arch")


def test_missing_file_and_team(cli, lab, tmp_path):
    one_line_error(cli("push", str(tmp_path / "nope.pkl"), "--team", "x"), "does not exist")
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps({"sizes": [2, 1], "weights": [np.ones((1, 2))], "biases": [np.zeros((1, 1))]}))
    one_line_error(cli("push", str(path)), "no team")

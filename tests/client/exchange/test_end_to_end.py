"""Model exchange end to end against a real labserver: red and blue train, blue fetches and compares."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from labclient.exchange.cache import store_key
from labclient.models import spec
from labclient.training.data import load_mnist

pytestmark = pytest.mark.slow


def _artifact_downloads(server) -> int:
    return sum("GET /api/2.0/mlflow-artifacts/artifacts/" in line for line in server.log.read_text().splitlines())


@pytest.fixture
def two_runs(cli, lab_server, as_team, mnist_dir):
    as_team(lab_server, "red")
    red = cli("train", "--trainer", "mnist-mlp", "--epochs", "1", "--data-dir", str(mnist_dir))
    assert red.exit_code == 0, red.output
    as_team(lab_server, "blue")
    blue = cli("train", "--trainer", "logreg", "--epochs", "1", "--data-dir", str(mnist_dir))
    assert blue.exit_code == 0, blue.output
    return [re.search(r"(red|blue)/run-\d+", result.output).group(0) for result in (red, blue)]


def test_fetch_compare_and_tamper_detection(cli, lab_server, isolated_lab, mnist_dir, two_runs, tmp_path):
    red_name, blue_name = two_runs
    fetched = cli("fetch", red_name)
    assert fetched.exit_code == 0, fetched.output

    client = MlflowClient(lab_server.url)
    experiment = client.get_experiment_by_name("red")
    red_run = client.search_runs([experiment.experiment_id], f"attributes.run_name = '{red_name}'")[0]
    models = isolated_lab / "cache" / "models"
    digest = red_run.data.tags["lab.weights.sha256"]
    blob = models / "blobs" / digest
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest
    team, number = red_name.split("/")
    assert (models / "refs" / store_key(lab_server.url) / team / number).read_text().strip() == red_run.info.run_id
    snapshot_weights = models / "snapshots" / red_run.info.run_id / "model" / "model.safetensors"
    assert snapshot_weights.read_bytes() == blob.read_bytes()

    # a second fetch is a cache hit: no artifact is downloaded again
    before = _artifact_downloads(lab_server)
    assert cli("fetch", red_name).exit_code == 0
    assert _artifact_downloads(lab_server) == before

    # compare against an accuracy recomputed here, from the fetched weights alone
    report = cli("compare", red_name, blue_name, "--json", "--data-dir", str(mnist_dir))
    assert report.exit_code == 0, report.output
    result = json.loads(report.output)
    model = spec.build(json.loads((models / "snapshots" / red_run.info.run_id / "model" / "spec.json").read_text()))
    model.load_state_dict(load_file(str(snapshot_weights)))
    data = load_mnist(mnist_dir, tmp_path)
    with torch.no_grad():
        predictions = model(torch.from_numpy(data.test_x)).argmax(1).numpy()
    assert result["evaluation"]["a"]["accuracy"] == pytest.approx(float(np.mean(predictions == data.test_y)), abs=1e-9)
    assert result["evaluation"]["a"]["claimed_accuracy"] == pytest.approx(
        red_run.data.metrics["test_accuracy"], abs=1e-6
    )
    assert 0.0 <= result["evaluation"]["mcnemar_p"] <= 1.0

    # a blob changed on disk is caught, and a forced fetch repairs it
    blob.write_bytes(blob.read_bytes()[:-8] + b"tampered")
    broken = cli("compare", red_name, blue_name, "--json", "--data-dir", str(mnist_dir))
    assert broken.exit_code != 0 and "Traceback" not in broken.output
    assert "--force" in broken.output or "fetch" in broken.output
    assert cli("fetch", red_name, "--force").exit_code == 0
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest


def test_a_team_pushes_only_as_itself(cli, lab_server, as_team, tmp_path):
    import pickle

    rng = np.random.default_rng(0)
    network = {
        "sizes": [64, 8, 10],
        "weights": [rng.normal(size=(8, 64)), rng.normal(size=(10, 8))],
        "biases": [rng.normal(size=(8, 1)), rng.normal(size=(10, 1))],
    }
    path = tmp_path / "network.pkl"
    path.write_bytes(pickle.dumps(network))
    as_team(lab_server, "blue")
    refused = cli("push", str(path), "--team", "red", "--dataset", "digits")
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert "blue" in refused.output and "red" in refused.output
    pushed = cli("push", str(path), "--team", "blue", "--dataset", "digits", "--note", "typed in from the book")
    assert pushed.exit_code == 0, pushed.output
    assert re.search(r"blue/run-\d+", pushed.output)

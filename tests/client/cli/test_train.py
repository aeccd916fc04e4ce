"""`labclient train` end to end on the embedded store, read back with MLflow's own client."""

from __future__ import annotations

import json
import math

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from labclient.models import spec

pytestmark = pytest.mark.slow


def _only_run(uri: str, team: str = "blue"):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(team)
    runs = client.search_runs([experiment.experiment_id])
    return client, runs


def test_mnist_mlp_trains_and_logs_everything(cli, mnist_dir, embedded_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")  # a sample or more in a few seconds
    result = cli(
        "train", "--team", "blue", "--epochs", "2", "--data-dir", str(mnist_dir), "--seed", "3", "--note", "first try"
    )
    assert result.exit_code == 0, result.output
    assert "blue/run-1" in result.output

    client, runs = _only_run(embedded_uri)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == "blue/run-1" and run.info.status == "FINISHED"
    params = run.data.params
    assert params["epochs"] == "2" and params["seed"] == "3"
    assert float(params["lr"]) == 3.0 and params["batch_size"] == "10"
    assert params["hidden"] == "[30]" and params["activation"] == "sigmoid" and params["cost"] == "quadratic"
    assert params["optimizer"] == "sgd" and params["trainer"] == "mnist-mlp"
    assert (
        params["dataset"] == "mnist"
        and params["dataset_train_size"] == "8000"
        and params["dataset_test_size"] == "2000"
    )
    assert len(params["dataset_fingerprint"]) == 16

    # per step: 8000 / 10 = 800 steps per epoch; per epoch: one point each
    assert len(client.get_metric_history(run.info.run_id, "step_train_cost")) == 1600
    for key in ("epoch_train_cost", "epoch_test_cost", "epoch_test_accuracy", "epoch_time_s", "epoch_samples_per_s"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 2, key
    metrics = run.data.metrics
    assert metrics["test_accuracy"] >= 0.85
    # the data as MLflow run inputs: the Dataset column, with the fingerprint as digest and how the run used it
    used = {
        item.dataset.name: (item.dataset.digest, {t.key: t.value for t in item.tags}["mlflow.data.context"])
        for item in run.inputs.dataset_inputs
    }
    fingerprint = run.data.params["dataset_fingerprint"]
    assert used == {"mnist-train": (fingerprint, "training"), "mnist-test": (fingerprint, "evaluation")}
    # system metrics, sampled during training (MLflow's switch is unset: on for `labclient train`)
    assert metrics["system/cpu_utilization_percentage"] >= 0 and metrics["system/system_memory_usage_megabytes"] > 0
    assert metrics["compute_parameters"] == 784 * 30 + 30 + 30 * 10 + 10
    assert metrics["compute_macs_per_sample"] == 784 * 30 + 30 * 10
    assert metrics["weights_file_bytes"] > metrics["weights_expected_bytes"] == 4 * metrics["compute_parameters"]

    tags = run.data.tags
    for key in (
        "lab.hw.cpu.model",
        "lab.hw.cpu.cores",
        "lab.hw.memory_gb",
        "lab.hw.torch",
        "lab.hw.python",
        "lab.hw.os",
        "lab.hw.mlflow",
    ):
        assert tags.get(key), key
    assert tags["lab.hw.device"] == "cpu" and tags["lab.team"] == "blue" and tags["lab.run_number"] == "1"
    # the description is the drafted dev-diary entry, with the team's --note inside it (see diary/test_diary.py)
    assert tags["mlflow.note.content"].startswith("# blue/run-1: mnist-mlp on mnist")
    assert "## Our note\n\nfirst try\n" in tags["mlflow.note.content"]

    # the weights load into a model rebuilt from the spec alone, and reproduce the logged accuracy
    folder = client.download_artifacts(run.info.run_id, "model", str(tmp_path))
    model_spec = json.loads(open(f"{folder}/spec.json").read())
    model = spec.build(model_spec)
    model.load_state_dict(load_file(f"{folder}/model.safetensors"))
    from labclient.training.data import load_mnist

    data = load_mnist(mnist_dir, tmp_path)
    with torch.no_grad():
        predicted = model(torch.from_numpy(data.test_x)).argmax(1).numpy()
    assert math.isclose((predicted == data.test_y).mean(), metrics["test_accuracy"], abs_tol=1e-6)
    assert json.loads(open(f"{folder}/config.json").read())["config"]["epochs"] == 2
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"model", "plots", "environment.json", "manifest.json"} <= artifacts

    # mlflow's fluent API sees the same run
    frame = mlflow.search_runs(experiment_names=["blue"], tracking_uri=embedded_uri) if _fluent_takes_uri() else None
    if frame is not None:
        assert list(frame["tags.mlflow.runName"]) == ["blue/run-1"]


def _fluent_takes_uri() -> bool:
    import inspect

    return "tracking_uri" in inspect.signature(mlflow.search_runs).parameters


@pytest.mark.parametrize("trainer", ["mnist-mlp", "mnist-cnn", "logreg"])
def test_dry_run_every_trainer_logs_nothing(cli, mnist_dir, isolated_lab, trainer):
    result = cli("train", "--team", "blue", "--trainer", trainer, "--data-dir", str(mnist_dir), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output
    assert not (isolated_lab / "data" / "mlflow.db").exists()


def test_run_numbers_increment_per_team(cli, embedded_uri):
    names = []
    for team in ("blue", "blue", "red", "blue"):
        result = cli("train", "--team", team, "--trainer", "logreg", "--dataset", "digits", "--epochs", "1")
        assert result.exit_code == 0, result.output
    client = MlflowClient(embedded_uri)
    for team in ("blue", "red"):
        experiment = client.get_experiment_by_name(team)
        names += sorted(run.info.run_name for run in client.search_runs([experiment.experiment_id]))
    assert names == ["blue/run-1", "blue/run-2", "blue/run-3", "red/run-1"]


def test_python_api_logs_through_the_recorder(embedded_uri, tmp_path):
    import numpy as np

    import labclient

    weights = {"0.weight": np.ones((3, 4), dtype=np.float32), "0.bias": np.zeros(3, dtype=np.float32)}
    with labclient.start_run(team="green", note="numpy network typed in from the book") as run:
        run.log_params({"eta": 3.0, "sizes": [4, 3]})
        for step in range(5):
            run.log_metrics({"cost": 1.0 / (step + 1)}, step=step)
        run.log_weights(weights)
        run_id = run.id
    client = MlflowClient(embedded_uri)
    logged = client.get_run(run_id)
    assert logged.info.status == "FINISHED" and logged.info.run_name == "green/run-1"
    assert logged.data.params == {"eta": "3.0", "sizes": "[4, 3]"}
    assert [m.value for m in client.get_metric_history(run_id, "cost")] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    path = client.download_artifacts(run_id, "model/model.safetensors", str(tmp_path))
    assert np.array_equal(load_file(path)["0.weight"].numpy(), weights["0.weight"])
    assert logged.data.tags["mlflow.note.content"] == "numpy network typed in from the book"


def test_python_api_marks_failed_runs(embedded_uri):
    import labclient

    with pytest.raises(RuntimeError):
        with labclient.start_run(team="green") as run:
            run_id = run.id
            raise RuntimeError("my loop broke")
    assert MlflowClient(embedded_uri).get_run(run_id).info.status == "FAILED"


def test_custom_trainer_file(cli, tmp_path, embedded_uri):
    trainer = tmp_path / "tiny.py"
    trainer.write_text(
        "import torch.nn as nn\n"
        "from labtrainers.defaults import TrainConfig\n"
        "class Config(TrainConfig):\n"
        "    width: int = 16\n"
        "def build_model(config, input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, config.width), nn.ReLU(), nn.Linear(config.width, "
        "num_classes))\n"
    )
    result = cli(
        "train",
        "--team",
        "blue",
        "--trainer",
        str(trainer),
        "--dataset",
        "digits",
        "--epochs",
        "2",
        "--param",
        "width=24",
        "--lr",
        "0.2",
    )
    assert result.exit_code == 0, result.output
    run = MlflowClient(embedded_uri).search_runs(
        [MlflowClient(embedded_uri).get_experiment_by_name("blue").experiment_id]
    )[0]
    assert run.data.params["width"] == "24"
    assert run.data.metrics["compute_parameters"] == 64 * 24 + 24 + 24 * 10 + 10

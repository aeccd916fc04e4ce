"""The leaderboard: each team's best finished run with weights, from the whole store, as rows and as JSON."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import labclient
from labserver.leaderboard import UnknownMetric, leaderboard_rows, lower_is_better, metric_key

pytestmark = pytest.mark.usefixtures("migrated_store")

WEIGHTS = {"0.weight": np.zeros((2, 3), dtype=np.float32), "0.bias": np.zeros(2, dtype=np.float32)}


def _run(team, accuracy, cost, *, weights=True, fail=False, device="cpu", parameters=8):
    """A run as `train` logs it, made with the Python API in milliseconds instead of training."""
    metrics = {
        "test_accuracy": accuracy,
        "test_cost": cost,
        "compute_parameters": parameters,
        "compute_macs_per_sample": 6,
        "training_time_s": 1.5,
    }
    try:
        with labclient.start_run(
            team=team, tags={"lab.device": device, "lab.trainer": "logreg", "lab.dataset": "digits"}
        ) as run:
            run.set_tags({"lab.hw.device": device, **({"lab.hw.gpu.name": "NVIDIA H100"} if device == "cuda" else {})})
            run.log_metrics({key: value for key, value in metrics.items() if value is not None})
            if weights:
                run.log_weights(WEIGHTS)
            if fail:
                raise RuntimeError("diverged")
            return run.name
    except RuntimeError:
        return None


@pytest.fixture
def lab():
    _run("blue", 0.80, 0.70)  # blue/run-1
    _run("blue", 0.91, 0.35, device="cuda", parameters=23860)  # blue/run-2: blue's best
    _run("red", 0.88, 0.30)  # red/run-1: red's best accuracy and lowest cost
    _run("red", 0.99, 0.01, fail=True)  # red/run-2 failed: never ranks
    _run("green", 0.95, 0.20, weights=False)  # no weights: nothing another team could fetch
    _run("blue", 0.93, None, weights=True)  # no held-out cost: ranks by accuracy, not by cost


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_each_teams_best_run_by_accuracy(lab, embedded_uri):
    rows = leaderboard_rows(MlflowClient(embedded_uri))
    assert [(row["rank"], row["team"], row["run"]) for row in rows] == [
        (1, "blue", "blue/run-3"),
        (2, "red", "red/run-1"),
    ]
    red = rows[1]
    assert red["test_accuracy"] == pytest.approx(0.88) and red["test_cost"] == pytest.approx(0.30)
    assert red["parameters"] == 8 and red["macs_per_sample"] == 6 and red["training_time_s"] == pytest.approx(1.5)
    assert red["device"] == "cpu" and red["trainer"] == "logreg" and red["dataset"] == "digits"
    trained = dt.datetime.fromisoformat(red["trained_at"])
    assert trained.tzinfo is not None and abs(dt.datetime.now(dt.timezone.utc) - trained) < dt.timedelta(minutes=10)


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_cost_ranks_lowest_first(lab, embedded_uri):
    rows = leaderboard_rows(MlflowClient(embedded_uri), metric="cost")
    assert [(row["team"], row["run"], row["metric"]) for row in rows] == [
        ("red", "red/run-1", "test_cost"),
        ("blue", "blue/run-2", "test_cost"),
    ]
    assert rows[1]["device"] == "cuda (NVIDIA H100)" and rows[1]["parameters"] == 23860


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_by_run_ranks_every_counted_run(lab, embedded_uri):
    rows = leaderboard_rows(MlflowClient(embedded_uri), by="run")
    assert [row["run"] for row in rows] == ["blue/run-3", "blue/run-2", "red/run-1", "blue/run-1"]
    assert [row["run"] for row in leaderboard_rows(MlflowClient(embedded_uri), by="run", limit=2)] == [
        "blue/run-3",
        "blue/run-2",
    ]


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_cli_table_and_json(lab, cli, embedded_uri):
    table = cli("leaderboard")
    assert table.exit_code == 0, table.output
    lines = [line for line in table.output.splitlines() if "/run-" in line]
    assert [line.split()[1:3] for line in lines] == [["blue", "blue/run-3"], ["red", "red/run-1"]]
    assert "0.9300" in lines[0] and "0.3000" in lines[1]

    as_json = cli("leaderboard", "--json")
    assert as_json.exit_code == 0
    rows = json.loads(as_json.output)
    expected = leaderboard_rows(MlflowClient(embedded_uri))
    assert [row["run_id"] for row in rows] == [row["run_id"] for row in expected]
    assert rows[0]["url"].endswith(f"/runs/{rows[0]['run_id']}?workflowType=machine_learning")
    assert set(rows[0]) >= {
        "team",
        "run",
        "test_accuracy",
        "test_cost",
        "parameters",
        "macs_per_sample",
        "training_time_s",
        "device",
        "trained_at",
    }


@pytest.mark.slow
def test_a_real_training_run_ranks_with_its_figures(cli, embedded_uri):
    result = cli("train", "--team", "blue", "--trainer", "logreg", "--dataset", "digits", "--epochs", "1")
    assert result.exit_code == 0, result.output
    (row,) = leaderboard_rows(MlflowClient(embedded_uri))
    run = MlflowClient(embedded_uri).get_run(row["run_id"])
    assert row["run"] == "blue/run-1" and row["test_accuracy"] == run.data.metrics["test_accuracy"]
    assert row["parameters"] == 650 and row["macs_per_sample"] == 640 and row["device"] == "cpu"


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_unknown_metric_is_one_line_with_suggestions(lab, cli):
    result = cli("leaderboard", "--metric", "acuracy")
    assert result.exit_code == 2
    assert (
        result.output.startswith("error: no finished run logs a metric named 'acuracy'")
        and "test_accuracy" in result.output
    )
    assert cli("leaderboard", "--metric", "test accuracy; drop").output.startswith(
        "error: 'test accuracy; drop' is not a metric name"
    )


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_teams_left_out_are_named_with_the_reason(lab, cli, embedded_uri):
    from labserver.leaderboard import left_out

    client = MlflowClient(embedded_uri)
    client.create_experiment("purple")  # a team that has not finished a run yet
    reasons = {item["team"]: item["reason"] for item in left_out(client)}
    assert set(reasons) == {"green", "purple"}  # blue and red rank; Default is no team
    assert reasons["green"].startswith("1 finished run(s), none with weights another team can fetch")
    assert reasons["purple"] == "no finished run yet"
    assert left_out(client, metric="cost")[0]["team"] == "green"
    table = cli("leaderboard")
    assert "not on the board: green: 1 finished run(s), none with weights" in table.output
    assert "not on the board: purple: no finished run yet" in table.output


def test_an_empty_store_says_so(cli):
    result = cli("leaderboard")
    assert result.exit_code == 0 and "no finished runs with weights yet" in result.output


def test_metric_names():
    assert (
        metric_key("accuracy") == "test_accuracy"
        and metric_key("cost") == "test_cost"
        and metric_key(None) == "test_accuracy"
    )
    assert lower_is_better("test_cost") and lower_is_better("training_time_s") and not lower_is_better("test_accuracy")
    with pytest.raises(UnknownMetric):
        metric_key("a'b")

"""System metrics: MLflow's monitors sampled in the training process, logged through the journal as `system/*`."""

from __future__ import annotations

import time

import pytest
from mlflow.tracking import MlflowClient

from labclient.tracking import system_metrics
from labclient.tracking.run import create_run


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [(None, True, True), (None, False, False), ("false", True, False), ("0", True, False), ("true", False, True)],
)
def test_mlflows_own_switch_decides(monkeypatch, value, default, expected):
    if value is None:
        monkeypatch.delenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", value)
    assert system_metrics.wanted(default) is expected


def test_the_sampling_interval_is_mlflows_variable(monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    assert system_metrics.interval() == 0.5
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "soon")
    assert system_metrics.interval() == system_metrics.DEFAULT_INTERVAL_S


@pytest.mark.slow  # a run on a store: a sender process starts
def test_samples_reach_the_store_as_system_metrics(embedded_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")
    with create_run("blue") as run, system_metrics.SystemSampler(run) as sampler:
        deadline = time.monotonic() + 30
        while sampler.steps < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not run.pending
    client = MlflowClient(embedded_uri)
    history = client.get_metric_history(run.id, "system/cpu_utilization_percentage")
    assert len(history) >= 3 and [point.step for point in history] == list(range(len(history)))
    assert all(0 <= point.value <= 100 for point in history)
    logged = client.get_run(run.id).data.metrics
    assert logged["system/system_memory_usage_megabytes"] > 0

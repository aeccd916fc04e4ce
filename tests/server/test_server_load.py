"""Many teams logging at the same moment: MLflow's log_batch takes two pooled connections, so without
labserver's request gate 15 concurrent batches exhaust SQLAlchemy's pool and every request waits for
the pool's 30 s timeout, then fails."""

from __future__ import annotations

import threading

import pytest
import requests

pytestmark = pytest.mark.slow

CONCURRENT = 40  # uvicorn serves Flask from 40 threads: all of them busy at once
POINTS = 1000


def _post(server, path, body, timeout=120):
    return requests.post(server.url + path, json=body, auth=server.auth("red"), timeout=timeout)


def test_forty_concurrent_batches_all_succeed(lab_server):
    experiment = requests.get(
        lab_server.url + "/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "red"},
        auth=lab_server.auth("red"),
        timeout=30,
    ).json()["experiment"]["experiment_id"]
    run_ids = [
        _post(
            lab_server, "/api/2.0/mlflow/runs/create", {"experiment_id": experiment, "run_name": f"red/load-{i}"}
        ).json()["run"]["info"]["run_id"]
        for i in range(CONCURRENT)
    ]
    start, answers = threading.Barrier(CONCURRENT), {}

    def log_batch(run_id):
        metrics = [{"key": "cost", "value": 1 / (step + 1), "timestamp": 1, "step": step} for step in range(POINTS)]
        start.wait()
        answers[run_id] = _post(
            lab_server, "/api/2.0/mlflow/runs/log-batch", {"run_id": run_id, "metrics": metrics}
        ).status_code

    threads = [threading.Thread(target=log_batch, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers.values()) == [200] * CONCURRENT, answers
    history = requests.get(
        lab_server.url + "/api/2.0/mlflow/metrics/get-history",
        auth=lab_server.auth("red"),
        params={"run_id": run_ids[-1], "metric_key": "cost", "max_results": 5000},
        timeout=30,
    ).json()
    assert len(history["metrics"]) == POINTS


def test_the_gate_leaves_one_connection_spare():
    from labserver.app import store_request_limit

    assert store_request_limit() == 5 + 10 - 1  # SQLAlchemy's QueuePool: 5 connections and 10 more on demand

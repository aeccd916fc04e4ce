"""The shared deployment: labserver on the real PostgreSQL with artifacts in an S3 server."""

from __future__ import annotations

import hashlib
import threading

import pytest
import requests
from mlflow.tracking import MlflowClient

from labserver.routes import REGISTER_RUN

pytestmark = pytest.mark.slow


def test_weights_land_in_the_bucket(cli, lab_server_pg_s3, as_team, s3):
    as_team(lab_server_pg_s3, "red")
    result = cli("train", "--trainer", "logreg", "--dataset", "digits", "--epochs", "1")
    assert result.exit_code == 0, result.output
    client = MlflowClient(lab_server_pg_s3.url)
    run = client.search_runs([client.get_experiment_by_name("red").experiment_id], max_results=1)[0]
    keys = {item["Key"]: item["Size"] for item in s3.client().list_objects_v2(Bucket=s3.bucket)["Contents"]}
    weights_key = next(key for key in keys if key.endswith(f"{run.info.run_id}/artifacts/model/model.safetensors"))
    assert keys[weights_key] == int(run.data.tags["lab.weights.bytes"])
    body = s3.client().get_object(Bucket=s3.bucket, Key=weights_key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == run.data.tags["lab.weights.sha256"]


def test_twenty_concurrent_starts_get_distinct_gap_free_numbers(lab_server_pg_s3, as_team):
    import labclient

    lab_server_pg_s3.add_team("swarm")
    as_team(lab_server_pg_s3, "swarm")
    barrier = threading.Barrier(20)
    runs, errors = [], []

    def start():
        try:
            barrier.wait(timeout=60)
            runs.append(labclient.create_run("swarm"))
        except Exception as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=start) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    for run in runs:
        run.finish()
    assert not errors, errors
    assert sorted(run.number for run in runs) == list(range(1, 21))
    client = MlflowClient(lab_server_pg_s3.url)
    names = [
        r.info.run_name
        for r in client.search_runs([client.get_experiment_by_name("swarm").experiment_id], max_results=100)
    ]
    assert sorted(names) == sorted(f"swarm/run-{n}" for n in range(1, 21))


def test_direct_registrations_under_load(lab_server_pg_s3):
    """100 runs registered by 20 concurrent clients, each run twice (a retry whose first answer was lost)."""
    lab_server_pg_s3.add_team("load")
    auth = lab_server_pg_s3.auth("load")
    experiment_id = requests.get(
        lab_server_pg_s3.url + "/api/2.0/mlflow/experiments/get-by-name",
        auth=auth,
        timeout=60,
        params={"experiment_name": "load"},
    ).json()["experiment"]["experiment_id"]
    run_ids = [
        requests.post(
            lab_server_pg_s3.url + "/api/2.0/mlflow/runs/create",
            json={"experiment_id": experiment_id},
            auth=auth,
            timeout=60,
        ).json()["run"]["info"]["run_id"]
        for _ in range(100)
    ]
    numbers: dict[str, set] = {run_id: set() for run_id in run_ids}
    barrier = threading.Barrier(20)

    def register(chunk):
        barrier.wait(timeout=60)
        for run_id in chunk + chunk:
            response = requests.post(
                lab_server_pg_s3.url + REGISTER_RUN, json={"run_id": run_id}, auth=auth, timeout=60
            )
            numbers[run_id].add(response.json()["number"])

    threads = [threading.Thread(target=register, args=(run_ids[index::20],)) for index in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert all(len(given) == 1 for given in numbers.values())
    assert sorted(next(iter(given)) for given in numbers.values()) == list(range(1, 101))
    run = requests.get(
        lab_server_pg_s3.url + "/api/2.0/mlflow/runs/get", params={"run_id": run_ids[0]}, auth=auth, timeout=60
    ).json()["run"]
    tags = {tag["key"]: tag["value"] for tag in run["data"]["tags"]}
    assert run["info"]["run_name"] == f"load/run-{next(iter(numbers[run_ids[0]]))}" and tags["lab.team"] == "load"

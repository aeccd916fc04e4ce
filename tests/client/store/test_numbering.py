"""Run numbers: given once per run by the store's lab table, unique and gap-free per team, even when trainings
start at the same moment or a registration is repeated."""

from __future__ import annotations

import subprocess
import sys
import uuid
from concurrent.futures import ProcessPoolExecutor

import pytest
from mlflow.tracking import MlflowClient

from labclient.config import get_settings
from labclient.store.client import prepare_database
from labclient.store.target import resolve_target


def _register_many(arguments):
    from labserver.store import LabStore

    uri, run_ids = arguments
    return [LabStore(uri).register_run(run_id, "blue") for run_id in run_ids]


def _store(embedded_uri):
    prepare_database(resolve_target(get_settings()))
    from labserver.store import LabStore

    return LabStore(embedded_uri)


def test_concurrent_registrations_are_distinct_and_gap_free(embedded_uri):
    store = _store(embedded_uri)
    batches = [[uuid.uuid4().hex for _ in range(10)] for _ in range(6)]
    with ProcessPoolExecutor(max_workers=6) as pool:
        numbers = [n for chunk in pool.map(_register_many, [(embedded_uri, batch) for batch in batches]) for n in chunk]
    assert sorted(numbers) == list(range(1, 61))
    assert store.register_run(uuid.uuid4().hex, "blue") == 61
    assert store.register_run(uuid.uuid4().hex, "red") == 1


def test_registering_a_run_again_returns_its_number_and_leaves_no_gap(embedded_uri):
    store = _store(embedded_uri)
    run_id = uuid.uuid4().hex
    with ProcessPoolExecutor(max_workers=4) as pool:  # a retry racing the original whose answer was lost
        numbers = list(pool.map(_register_many, [(embedded_uri, [run_id])] * 4))
    assert numbers == [[1]] * 4
    assert store.number_of(run_id) == 1 and store.run_id_of("blue", 1) == run_id
    assert store.register_run(uuid.uuid4().hex, "blue") == 2


@pytest.mark.slow
def test_two_trainings_started_at_once_get_different_numbers(isolated_lab, embedded_uri):
    command = [
        sys.executable,
        "-m",
        "labclient.cli.main",
        "train",
        "--team",
        "blue",
        "--trainer",
        "logreg",
        "--dataset",
        "digits",
        "--epochs",
        "1",
    ]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)
    ]
    outputs = [process.communicate(timeout=240)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    client = MlflowClient(embedded_uri)
    runs = client.search_runs([client.get_experiment_by_name("blue").experiment_id])
    assert sorted(run.info.run_name for run in runs) == ["blue/run-1", "blue/run-2"]
    assert sorted(run.data.tags["lab.run_number"] for run in runs) == ["1", "2"]
    assert {run.data.tags["lab.team"] for run in runs} == {"blue"}

"""Run numbers: unique and gap-free per team, even when trainings start at the same moment."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest
from mlflow.tracking import MlflowClient

from labclient.config import get_settings
from labclient.tracking import allocate_run_number, prepare_database, resolve_target


def _allocate_many(uri_and_count):
    from labserver.store import LabStore

    uri, count = uri_and_count
    return [LabStore(uri).allocate_run_number("blue") for _ in range(count)]


def test_concurrent_allocations_are_distinct_and_gap_free(embedded_uri):
    target = resolve_target(get_settings())
    prepare_database(target)
    with ProcessPoolExecutor(max_workers=6) as pool:
        numbers = [n for chunk in pool.map(_allocate_many, [(embedded_uri, 10)] * 6) for n in chunk]
    assert sorted(numbers) == list(range(1, 61))
    assert allocate_run_number(target, "blue") == 61
    assert allocate_run_number(target, "red") == 1


@pytest.mark.slow
def test_two_trainings_started_at_once_get_different_numbers(isolated_lab, embedded_uri):
    command = [sys.executable, "-m", "labclient.cli", "train", "--team", "blue", "--trainer", "logreg", "--dataset", "digits", "--epochs", "1"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=240)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    client = MlflowClient(embedded_uri)
    runs = client.search_runs([client.get_experiment_by_name("blue").experiment_id])
    assert sorted(run.info.run_name for run in runs) == ["blue/run-1", "blue/run-2"]

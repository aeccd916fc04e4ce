"""Datasets reach MLflow as run inputs: the run page's Datasets, the runs table's Dataset column and filter."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from labclient.tracking.run import create_run
from tests.faults.fault_support import point_at

pytestmark = pytest.mark.slow  # runs on a store: a sender process starts


def _inputs(uri: str) -> dict[str, tuple[str, str, str]]:
    with create_run("blue") as run:
        run.log_dataset("mnist-train", "0123456789abcdef", "/data/mnist", "training", profile={"num_rows": 8000})
        run.log_dataset("mnist-test", "0123456789abcdef", "/data/mnist", "evaluation")
        run.log_dataset("mnist-train", "0123456789abcdef", "/data/mnist", "training")  # the same input again
    assert not run.pending
    inputs = MlflowClient(uri).get_run(run.id).inputs.dataset_inputs
    found = {}
    for item in inputs:
        context = {tag.key: tag.value for tag in item.tags}["mlflow.data.context"]
        found[item.dataset.name] = (item.dataset.digest, item.dataset.source, context)
    assert len(inputs) == 2  # logged twice, stored once
    return found


EXPECTED = {
    "mnist-train": ("0123456789abcdef", "/data/mnist", "training"),
    "mnist-test": ("0123456789abcdef", "/data/mnist", "evaluation"),
}


def test_datasets_on_the_embedded_store(embedded_uri):
    assert _inputs(embedded_uri) == EXPECTED


def test_datasets_through_a_labserver(lab_server, monkeypatch):
    point_at(monkeypatch, lab_server.url, "blue", lab_server.tokens["blue"])
    assert _inputs(lab_server.url) == EXPECTED

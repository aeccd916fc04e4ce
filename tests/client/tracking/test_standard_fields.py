"""MLflow's standard run fields: "Created by" is the team, "Source" the file that logged the run, with its commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from labclient.files import git_commit
from labclient.tracking.run import create_run, standard_tags
from tests.faults.fault_support import point_at

pytestmark = pytest.mark.slow  # runs on a store: a sender process starts

HERE = Path(__file__).resolve()


def _head() -> str | None:
    result = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def _logged_tags(uri: str) -> dict[str, str]:
    with create_run("blue", source=str(HERE)) as run:
        run.log_metric("cost", 0.5, 0)
    assert not run.pending
    return MlflowClient(uri).get_run(run.id).data.tags


def test_the_embedded_store_gets_user_source_and_commit(embedded_uri):
    tags = _logged_tags(embedded_uri)
    assert tags["mlflow.user"] == "blue" and tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.source.name"] == str(HERE)
    assert tags.get("mlflow.source.git.commit") == _head()  # a git checkout here, as in CI


def test_a_labserver_keeps_them_too(lab_server, monkeypatch):
    point_at(monkeypatch, lab_server.url, "blue", lab_server.tokens["blue"])
    tags = _logged_tags(lab_server.url)
    assert (tags["mlflow.user"], tags["mlflow.source.name"]) == ("blue", str(HERE))


def test_outside_git_and_without_a_script(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    assert git_commit(tmp_path) is None
    assert standard_tags("red", str(script)) == {
        "mlflow.user": "red",
        "mlflow.source.name": str(script),
        "mlflow.source.type": "LOCAL",
    }
    assert standard_tags("red", "<interactive>")["mlflow.source.name"] == "<interactive>"

"""labserver's process: refuses an outdated schema, shuts down cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from bench.servers import BIN
from labserver.db import migrate
from tests.servers import LabServer

pytestmark = pytest.mark.slow


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_sigterm_stops_every_process(tmp_path):
    server = LabServer(
        home=tmp_path,
        db_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifacts=str(tmp_path / "artifacts"),
        env={"LAB_SERVER_ADMIN_TOKEN": "lab_admin_test_token_0123"},
    ).start()
    process = server.process
    os.kill(process.pid, signal.SIGTERM)  # only the launcher: it must pass the signal on
    assert process.wait(timeout=30) is not None
    deadline = time.monotonic() + 15
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = _group_alive(process.pid)
    server.stop()
    assert not alive, "uvicorn workers outlived SIGTERM"


def test_outdated_schema_is_refused_with_the_command_to_fix_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade_all(uri, with_auth=True)
    migrate.downgrade_lab(uri, "base")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    env["LAB_SERVER_HOME"] = str(tmp_path)
    result = subprocess.run(
        [str(BIN / "labserver"), "--backend-store-uri", uri, "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "out of date (lab)" in result.stderr and "labserver db upgrade" in result.stderr
    assert "Traceback" not in result.stderr

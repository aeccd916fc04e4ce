"""Disclosure and deception: secrets stay readable only by their owner, and text one team wrote cannot take over
another team's terminal (escape codes, rich markup that makes links, bidirectional overrides)."""

from __future__ import annotations

import os
import pty
import select
import stat
import subprocess

import numpy as np
import pytest
import requests

from bench.servers import BIN
from labclient.safe_text import markup, one_line, printable
from tests.servers import LabServer, run_labserver

HOSTILE = (
    "[link=http://evil.example]red[/link] \x1b]0;pwned\x07\x1b[2J\u202eevil\x1b]8;;http://evil.example\x07x\x1b]8;;\x07"
)
FORBIDDEN_BYTES = (b"\x1b]0;pwned", b"\x1b]8;;http://evil.example", b"\x1b[2J", "\u202e".encode())


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_the_auth_config_holding_the_database_password_is_private(tmp_path):
    (tmp_path / "basic_auth.ini").write_text("old")
    os.chmod(tmp_path / "basic_auth.ini", 0o644)
    server = LabServer(home=tmp_path, db_uri=f"sqlite:///{tmp_path / 'db.sqlite'}", artifacts=str(tmp_path / "a"))
    run_labserver(server, "db", "upgrade")
    path = tmp_path / "basic_auth.ini"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and "database_uri" in path.read_text()


def test_printable_text_keeps_what_a_reader_should_see():
    assert printable("Ölçek 日本 ✓\n\tok") == "Ölçek 日本 ✓\n\tok"
    assert printable("a\x1b[2Jb\x07") == "a\\x1b[2Jb\\x07"
    assert printable("\u202eevil") == "\\u202eevil"
    assert one_line("two\nlines\r\n") == "two lines"
    assert markup("[link=http://evil.example]red[/link]") == "\\[link=http://evil.example]red\\[/link]"


def _in_a_terminal(server, team, home, *args) -> bytes:
    """Run labclient with a pseudo-terminal as its stdout and stderr, as a student's shell would; returns its bytes."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LAB_", "MLFLOW_"))}
    env.update(
        server.client_env(team),
        LAB_HOME=str(home / "data"),
        LAB_CACHE_DIR=str(home / "cache"),
        LAB_CONFIG=str(home / "config.toml"),
        TERM="xterm-256color",
        COLUMNS="200",
        LINES="50",
    )
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(BIN / "labclient"), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process exited
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    process.wait(timeout=60)
    return output


@pytest.mark.slow
def test_text_a_team_wrote_cannot_take_over_a_terminal(hostile_server, tmp_path):
    """mallory writes escape codes, a rich link and a right-to-left override into its run's device tag, dev-diary
    entry and param values; red lists, reads, fetches and ranks them in a real terminal."""
    import labclient

    server = hostile_server
    from labclient.config import reset_settings

    saved = {key: os.environ.get(key) for key in ("LAB_TRACKING_URI", "LAB_TEAM", "LAB_TOKEN")}
    os.environ.update(server.client_env("mallory"))
    reset_settings()
    try:
        with labclient.start_run(team="mallory", note=HOSTILE) as run:
            run.set_tags({"lab.hw.device": HOSTILE, "lab.trainer": HOSTILE})
            run.log_params({"lr": HOSTILE, "optimizer": HOSTILE})
            run.log_metrics({"test_accuracy": 0.5, "test_cost": 0.4})
            run.log_weights(
                {"0.weight": np.ones((10, 64), dtype=np.float32), "0.bias": np.zeros(10, dtype=np.float32)},
                spec={
                    "format": "labspec/1",
                    "input_shape": [1, 8, 8],
                    "num_classes": 10,
                    "layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 64, "out_features": 10}],
                },
            )
        name = run.name
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        reset_settings()
    requests.post(
        server.url + "/api/2.0/mlflow/runs/set-tag",
        auth=server.auth("mallory"),
        timeout=30,
        json={"run_id": run.id, "key": "mlflow.note.content", "value": HOSTILE + "\n\n" + HOSTILE},
    )
    outputs = {
        args: _in_a_terminal(server, "red", tmp_path, *args)
        for args in (
            ("leaderboard",),
            ("leaderboard", "--by", "run"),
            ("diary", "list"),
            ("diary", name),
            ("fetch", name),
            ("fetch", "mallory/run-999999"),
        )
    }
    for args, output in outputs.items():
        for forbidden in FORBIDDEN_BYTES:
            assert forbidden not in output, (args, forbidden, output[:2000])
        assert b"Traceback" not in output, (args, output[-2000:])
    assert b"\\x1b]0;pwned" in outputs[("leaderboard",)]  # shown, as its code, rather than obeyed
    assert b"[link=http://evil.example]" in outputs[("diary", "list")]  # markup shown as the text it is

"""The README's commands are the ones CI runs, and the first one works as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n\s*```", setup)


def test_readme_opens_with_exactly_two_setup_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert all("pip install torch==2.13.0" in command for command in commands)


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    test_command = readme_commands()[1].strip()
    assert test_command in [line.strip() for line in ci]
    assert "|| true" not in "\n".join(ci)


@pytest.mark.slow
def test_first_command_trains_as_written(tmp_path):
    """Runs the README's first command after its install step, in a fresh HOME with no configuration."""
    command = readme_commands()[0].split("&&", 1)[1].strip()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LAB_", "XDG_", "MLFLOW_"))}
    env.update(HOME=str(tmp_path), PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    result = subprocess.run(command, shell=True, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "blue/run-1" in result.stdout
    assert (tmp_path / ".local" / "share" / "labclient" / "mlflow.db").is_file()

"""The `fetch` command as a user sees it: what it prints, how fast a cache hit is, and what it imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.client.exchange_support import one_line_error, run_of

# every test reads the runs that the session's exchange_lab fixture trains (tests/client/conftest.py)
pytestmark = pytest.mark.slow


def test_fetch_prints_what_where_and_how_to_compare(cli, lab):
    result = cli("fetch", "red/latest")
    assert result.exit_code == 0, result.output
    run = run_of(lab.uri, "red/run-2")
    out = result.output
    assert f"red/run-2 ({run.info.run_id}): downloaded and verified" in out
    assert "model/model.safetensors" in out and run.data.tags["lab.weights.sha256"][:16] in out
    assert (
        "2,260 parameters (safetensors)" in out
        and f"claimed held-out accuracy {run.data.metrics['test_accuracy']:.4f}" in out
    )
    assert "cached at " in out and "labclient compare red/run-2" in out
    assert "already cached" in cli("fetch", "red/run-2").output


def test_cache_hit_imports_neither_torch_nor_mlflow(cli, lab):
    assert cli("fetch", "red/run-1").exit_code == 0
    code = (
        "import sys, time\nfrom labclient.cli.main import main\nstarted = time.perf_counter()\n"
        "try:\n    main(['fetch', 'red/run-1'])\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "print('seconds', time.perf_counter() - started)\nprint('loaded', sorted({'torch', 'mlflow'} & "
        "set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "already cached" in result.stdout and "loaded []" in result.stdout


def test_unknown_commands_and_arguments(cli, lab, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(cli("fetch", ""), "is not a run reference")
    assert cli("compare", "a/run-1", "b/run-1", "c/run-1").exit_code == 2
    one_line_error(cli("cache", "rm"), "nothing to remove")
    one_line_error(cli("compare", "red/run-1", "blue/run-1", "--report", "out.pdf"), "must end in .md or .html")
    assert not list(tmp_path.iterdir())  # refused before any work

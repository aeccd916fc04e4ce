"""The benchmark runner works end to end at tiny sizes. Timings are reported by the benchmarks, never asserted here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RAN = {
    "overhead": "1. Tracking overhead",
    "throughput": "2. Trainer throughput",
    "logging": "3. Logging latency",
    "cli": "6. CLI start-up",
}
OTHERS = {"exchange": "4. Exchange", "server-load": "5. Server load", "slow-server": "7. Slow server"}
UNITS = {"×": 1.0, "µs": 1e-6, "ms": 1e-3, "s": 1.0}


def block(text: str, name: str) -> str:
    match = re.search(rf"<!-- bench:{name} -->\n(.*?)<!-- /bench:{name} -->", text, re.S)
    assert match, f"no block for {name}"
    return match.group(1)


def figure_medians(text: str) -> dict[str, float]:
    """The median column of a block's figure table, as numbers in base units (ratios, seconds)."""
    table = re.search(r"<!-- targets -->\n(.*?)<!-- /targets -->", text, re.S)
    assert table, "no figure table"
    medians = {}
    for line in table.group(1).strip().splitlines()[2:]:
        label, median = [cell.strip() for cell in line.strip("|").split("|")][:2]
        number, unit = re.fullmatch(r"([\d,.]+)\s*(×|µs|ms|s)", median).groups()
        medians[label] = float(number.replace(",", "")) * UNITS[unit]
    return medians


@pytest.mark.slow
def test_smoke_run_reports_every_section_with_numeric_figures(tmp_path, mnist_dir):
    output = tmp_path / "RESULTS.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output", str(output), "--data-dir", str(mnist_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    text = output.read_text()
    for heading in ("# Benchmark results", "## Machine", "## Method", "## Targets"):
        assert heading in text
    assert re.search(r"\| CPU \| .+, \d+ cores", text)
    for name, title in RAN.items():
        section = block(text, name)
        assert f"## {title}" in section
        medians = figure_medians(section)
        assert medians and all(value > 0 for value in medians.values()), (name, medians)
    assert any(label.startswith("training time, tracked / plain") for label in figure_medians(block(text, "overhead")))
    assert "`labclient --help` median (seconds)" in figure_medians(block(text, "cli"))
    for name, title in OTHERS.items():  # figures in points and points/s, so only their presence and verdicts
        section = block(text, name)
        assert f"## {title}" in section and "<!-- targets -->" in section and "FAILED" not in section
    # lost points are counted on the server after every run finished; none may be missing
    for name in ("server-load", "slow-server"):
        lost = re.findall(r"^\| (?:lost points|points lost)[^|]*\| ([^|]+) \|", block(text, name), re.M)
        assert lost and all(cell.strip() == "0 points" for cell in lost), (name, lost)
    # the summary lists each figure that has a target, with a verdict
    summary = text.split("## Targets", 1)[1].split("<!-- bench:", 1)[0]
    assert re.search(
        r"\| 2 \| ours / in-memory loop, batch 128 \| [\d.]+× \| >= 0\.950× \| \*\*(yes|NO)\*\* \|", summary
    )


def test_a_partial_run_replaces_only_its_own_blocks(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    from bench import __main__ as runner
    from bench.common import Figure, Section, stats
    from bench.registry import BENCHMARKS

    output = tmp_path / "RESULTS.md"
    args = runner.parse_args(["--smoke", "--output", str(output)])
    first = {b.NAME: (Section(b.NUMBER, b.TITLE, figures=[Figure("old", stats([1.5]))]), True) for b in BENCHMARKS}
    runner._write(args, BENCHMARKS, first, 1.0, (0.0, 0.0))
    args = runner.parse_args(["cli", "--smoke", "--output", str(output)])
    runner._write(
        args,
        BENCHMARKS,
        {"cli": (Section(6, "CLI start-up", figures=[Figure("new", stats([0.5]))]), True)},
        1.0,
        (0.0, 0.0),
    )
    text = output.read_text()
    assert figure_medians(block(text, "cli")) == {"new": 0.5}
    assert figure_medians(block(text, "throughput")) == {"old": 1.5}
    assert "sections 6;" in text

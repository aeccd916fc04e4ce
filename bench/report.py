"""bench/RESULTS.md: the machine, the method, a summary of targets, and one block per benchmark.

Blocks sit between `<!-- bench:NAME -->` markers, so running a few benchmarks replaces only their
blocks and keeps the others (each block says when and how it was measured).
"""

from __future__ import annotations

import os
import platform
import re
from importlib import metadata
from pathlib import Path

from bench.common import REPO, table

METHOD = """\
- Every benchmark runs its baseline and ours in the same run, alternating which goes first; each
  figure is the **median** of several repetitions, with the **min** and **max**.
- A ratio is ours / baseline, computed per repetition (the pair ran back to back) and then summarised.
  For times, below 1× means ours is faster; for throughput (samples/s), above 1× means ours is faster.
- The machine is shared with other engineers' test runs; the load average is shown so a noisy run is visible.
  Trainers use one torch thread by default (`--torch-threads`): with torch's default of one thread per
  core, any other busy process on the 2 cores stalls its OpenMP pool (measured at load 5-6: 1,000-7,000
  samples/s at batch 10 with 2 threads against 26,000-56,000 with 1), which buries every ratio in noise.
- Run `python -m bench` (full), `python -m bench --quick`, or a few: `python -m bench throughput logging`."""


def machine() -> list[tuple[str, str]]:
    import torch

    from labclient.files import git_commit
    from labclient.training import hardware

    memory = hardware.total_memory_bytes()
    gpu = hardware.gpu_facts("cuda")
    commit = git_commit(REPO) or "unknown"
    return [
        ("CPU", f"{hardware.cpu_model()}, {os.cpu_count()} cores"),
        ("torch threads", f"{torch.get_num_threads()} intra-op thread(s) for every trainer (`--torch-threads`)"),
        ("memory", f"{memory / 2**30:.1f} GiB" if memory else "unknown"),
        ("GPU", f"{gpu['gpu.name']} ({gpu['gpu.memory_gb']} GB), not used by these benchmarks" if gpu else "none"),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        (
            "packages",
            ", ".join(f"{name} {_version(name)}" for name in ("torch", "mlflow", "numpy", "sqlalchemy", "psycopg")),
        ),
        ("repo commit", commit[:12] + (" (with uncommitted changes)" if _dirty() else "")),
    ]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _dirty() -> bool:
    from labclient.training.hardware import _run

    return bool(_run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"]))


def block(name: str, stamp: str, markdown: str) -> str:
    return f"<!-- bench:{name} -->\n{markdown.rstrip()}\n\n_{stamp}_\n<!-- /bench:{name} -->"


def previous_blocks(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    pattern = re.compile(r"<!-- bench:([\w-]+) -->\n.*?<!-- /bench:\1 -->", re.S)
    return {match.group(1): match.group(0) for match in pattern.finditer(path.read_text(encoding="utf-8"))}


def target_rows(blocks: list[str]) -> list[str]:
    """The target table rows of every block, in report order, prefixed with the section number."""
    rows = []
    for text in blocks:
        number = re.search(r"^## (\d+)\.", text, re.M)
        targets = re.search(r"<!-- targets -->\n(.*?)<!-- /targets -->", text, re.S)
        if not (number and targets):
            continue
        for line in targets.group(1).splitlines()[2:]:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if cells[-2]:  # only figures with a target
                rows.append(f"| {number.group(1)} | {cells[0]} | {cells[1]} | {cells[-2]} | {cells[-1]} |")
    return rows


def findings() -> str:
    """bench/FINDINGS.md: the hand-written, dated analysis of missed targets, carried into every report."""
    path = REPO / "bench" / "FINDINGS.md"
    return path.read_text(encoding="utf-8").strip() if path.is_file() else ""


def render(header: str, machine_rows: list[tuple[str, str]], blocks: list[str], analysis: str = "") -> str:
    summary = target_rows(blocks)
    parts = [
        "# Benchmark results",
        "",
        header,
        "",
        "## Machine",
        "",
        table(["", ""], machine_rows),
        "",
        "## Method",
        "",
        METHOD,
        "",
        "## Targets",
        "",
        table(["#", "comparison", "median", "target", "met"], []) + "\n" + "\n".join(summary)
        if summary
        else "No targets measured yet.",
        "",
        *([analysis, ""] if analysis else []),
        *[part for text in blocks for part in (text, "")],
    ]
    return "\n".join(parts).rstrip() + "\n"

"""Benchmark 6: CLI start-up, `labclient` commands that need no torch against `mlflow --help`, as subprocesses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Context, Figure, Section, Target, fmt_spread, paired_ratios, stats, table

NUMBER = 6
NAME = "cli"
TITLE = "CLI start-up"
NEEDS_SERVER = False

REPS = {"smoke": 1, "quick": 3, "full": 10}
BIN = Path(sys.executable).parent
BASELINE = ("mlflow", "--help")
# each command, and the labclient command it needs to exist
CANDIDATES = [
    (("labclient", "--help"), None),
    (("labclient", "train", "--help"), "train"),
    (("labclient", "fetch", "--help"), "fetch"),
    (("labclient", "diary", "list"), "diary"),
]


def run(ctx: Context) -> Section:
    available = labclient_commands()
    commands = [command for command, needs in CANDIDATES if needs is None or needs in available]
    missing = [command for command, needs in CANDIDATES if needs is not None and needs not in available]
    if ctx.profile == "smoke":  # it opens the store and imports MLflow: seconds, not what a smoke run checks
        commands = [command for command in commands if command[1:] != ("diary", "list")]
    exit_codes: dict[tuple[str, ...], int] = {}
    variants = {command: _timer(command, exit_codes) for command in [*commands, BASELINE]}
    times = ctx.alternate(variants, ctx.sizes(REPS), warmup=ctx.profile == "full")
    figures = [
        Figure(
            "`labclient --help` median (seconds)",
            stats(times[CANDIDATES[0][0]]),
            unit="s",
            target=Target("<", 0.3, "s"),
        )
    ]
    figures += [
        Figure(f"`{' '.join(command)}` / `mlflow --help`", paired_ratios(times[command], times[BASELINE]))
        for command in commands
    ]
    rows = [
        [f"`{' '.join(command)}`", fmt_spread(stats(times[command])), exit_codes[command]]
        for command in [*commands, BASELINE]
    ]
    notes = [
        f"Wall time of each command as a subprocess, {ctx.sizes(REPS)} runs each"
        + (" after one warm-up run" if ctx.profile == "full" else "")
        + ", in rotating order; "
        "run with an empty lab configuration (no server, so `diary list` reads the embedded store).",
    ]
    notes += [
        f"`{' '.join(command)}` skipped: `labclient {command[1]}` does not exist yet in this checkout."
        for command in missing
    ]
    return Section(NUMBER, TITLE, body=table(["command", "wall time", "exit code"], rows), figures=figures, notes=notes)


def labclient_commands() -> set[str]:
    """The command names `labclient --help` lists."""
    output = subprocess.run([str(BIN / "labclient"), "--help"], capture_output=True, text=True, check=True).stdout
    listing = output.split("Commands:", 1)[1] if "Commands:" in output else ""
    return set(re.findall(r"^\s{2}([a-z][\w-]*)", listing, re.M))


def _timer(command: tuple[str, ...], exit_codes: dict):
    argv = [str(BIN / command[0]), *command[1:]]

    def once() -> float:
        started = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, env=os.environ.copy(), timeout=120)
        elapsed = time.perf_counter() - started
        exit_codes[command] = result.returncode
        return elapsed

    return once

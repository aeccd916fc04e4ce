"""Benchmark 1: tracking overhead. The same mnist-mlp training, untracked plain loop vs `labclient train`
with a cost point logged every step, against a real tracking server on loopback (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    REPO, Context, Figure, Section, Target, fmt_overhead, fmt_spread, paired_ratios, stats, table,
)

NUMBER = 1
NAME = "overhead"
TITLE = "Tracking overhead"
NEEDS_SERVER = True
BIN = Path(sys.executable).parent

TARGETS = {128: 1.03, 10: 1.10}


@dataclass(frozen=True)
class Sizes:
    reps: int
    epochs: dict[int, int]
    wall_reps: int  # `labclient train` processes per backend and batch size, for the wall-time comparison
    wall_batches: tuple[int, ...]


SIZES = {
    "smoke": Sizes(reps=1, epochs={10: 1, 128: 1}, wall_reps=0, wall_batches=()),
    "quick": Sizes(reps=3, epochs={10: 1, 128: 4}, wall_reps=1, wall_batches=(128,)),
    "full": Sizes(reps=5, epochs={10: 3, 128: 10}, wall_reps=3, wall_batches=(10, 128)),
}
BATCH_SIZES = (10, 128)


def run(ctx: Context) -> Section:
    sizes = ctx.sizes(SIZES)
    training: dict[tuple[str, int], dict[str, list[float]]] = {}
    walls: dict[tuple[str, int], dict[str, list[float]]] = {}
    for backend in ctx.backends():
        server = ctx.server(backend)
        for batch in BATCH_SIZES:
            training[backend, batch] = _training_times(ctx, server, batch, sizes)
        for batch in sizes.wall_batches:
            walls[backend, batch] = _wall_times(ctx, server, batch, sizes)
    figures = [
        Figure(f"training time, tracked / plain, {backend}, batch {batch}", paired_ratios(t["tracked"], t["plain"]),
               target=Target("<=", TARGETS[batch]))
        for (backend, batch), t in training.items()
    ]
    figures += [
        Figure(f"wall time of the whole process, `labclient train` / plain script, {backend}, batch {batch}",
               paired_ratios(w["tracked"], w["plain"]))
        for (backend, batch), w in walls.items()
    ]
    return Section(NUMBER, TITLE, body=_body(training, walls), figures=figures, notes=_notes(ctx, sizes))


def _training_times(ctx: Context, server, batch: int, sizes: Sizes) -> dict[str, list[float]]:
    """Seconds in the training epochs: the plain loop's own timer, and labclient's `training_time_s`."""
    import torch

    from bench import baselines
    from labclient.reporting import Reporter
    from labclient.training import TrainOptions, train

    dataset = ctx.dataset()
    x, y = torch.from_numpy(dataset.train_x), torch.from_numpy(dataset.train_y)
    epochs = sizes.epochs[batch]
    options = TrainOptions(
        team=server.team, trainer="mnist-mlp", dataset=ctx.dataset_name, data_dir=ctx.data_dir, device="cpu",
        overrides={"batch_size": batch, "epochs": epochs}, tracking_uri=server.url,
    )

    def tracked() -> tuple[float, float | None]:
        cpu_before = server.cpu_seconds()
        with server.as_team():
            seconds = train(options, reporter=Reporter(quiet=True)).seconds
        return seconds, None if cpu_before is None else server.cpu_seconds() - cpu_before

    times = ctx.alternate({"plain": lambda: baselines.in_memory_loop(x, y, batch, epochs), "tracked": tracked}, sizes.reps)
    return {"plain": times["plain"], "tracked": [t for t, _ in times["tracked"]],
            "server_cpu": [cpu for _, cpu in times["tracked"] if cpu is not None]}


def _wall_times(ctx: Context, server, batch: int, sizes: Sizes) -> dict[str, list[float]]:
    """Whole processes, start to exit: what the user waits for, imports and uploads included."""
    epochs = str(sizes.epochs[batch])
    data = ["--dataset", ctx.dataset_name, "--data-dir", str(ctx.data_dir), "--batch-size", str(batch), "--epochs", epochs]
    plain = [sys.executable, "-m", "bench.baselines", *data]
    tracked = [str(BIN / "labclient"), "train", "--device", "cpu", *data]
    env = {**os.environ, **server.client_env()}
    return ctx.alternate({"plain": lambda: _process_seconds(plain, env), "tracked": lambda: _process_seconds(tracked, env)},
                     sizes.wall_reps, warmup=False)


def _process_seconds(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return elapsed


def _body(training: dict, walls: dict) -> str:
    rows = []
    for (backend, batch), t in training.items():
        overhead = fmt_overhead(paired_ratios(t["tracked"], t["plain"]).median)
        server_cpu = fmt_spread(stats(t["server_cpu"])) if t["server_cpu"] else "n/a"
        rows.append([backend, batch, "training epochs", fmt_spread(stats(t["plain"])), fmt_spread(stats(t["tracked"])), overhead, server_cpu])
    for (backend, batch), w in walls.items():
        overhead = fmt_overhead(paired_ratios(w["tracked"], w["plain"]).median)
        rows.append([backend, batch, "whole process", fmt_spread(stats(w["plain"])), fmt_spread(stats(w["tracked"])), overhead, ""])
    headers = ["server store", "batch", "timed", "plain, untracked", "`labclient train`, tracked", "overhead (median)",
               "server CPU per tracked run"]
    return table(headers, rows)


def _notes(ctx: Context, sizes: Sizes) -> list[str]:
    dataset = ctx.dataset()
    steps = {batch: -(-len(dataset.train_y) // batch) for batch in BATCH_SIZES}
    return [
        f"Data: {dataset.name}, {len(dataset.train_y):,} training images; mnist-mlp (inputs-30-10, sigmoid, quadratic cost, SGD eta 3.0) "
        f"on the CPU; {sizes.epochs[10]} epoch(s) at batch 10 ({steps[10]:,} logged steps each), {sizes.epochs[128]} at batch 128 "
        f"({steps[128]} each).",
        "Plain: bench/baselines.py's in-memory loop, no tracking. Tracked: `labclient.training.train` (what `labclient train` "
        "calls) logging `step_train_cost` every step plus params, tags, per-epoch metrics, weights and plots, to the server.",
        "Training time: the seconds in the training epochs (plain: the loop's timer; tracked: its logged `training_time_s`), "
        f"{sizes.reps} repetitions after a warm-up, in rotating order. The server runs on the same 2 cores, so its work counts.",
        f"Whole process: `python -m bench.baselines` (import, load, train, evaluate) against a `labclient train` process "
        f"(import, run start, train, evaluate, upload weights and plots, finish), {sizes.wall_reps} run(s) each"
        + (f", at batch {' and '.join(map(str, sizes.wall_batches))}." if sizes.wall_reps else ": not run in this profile."),
        "The tracked runs log in as a team with its token, as after `labclient login`. Server CPU: user + system time of "
        "the server's processes during the whole tracked `train()` call (setup, epochs, evaluation, uploads, finish).",
    ]

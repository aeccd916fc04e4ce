"""Benchmark 1: tracking overhead. The same mnist-mlp training, untracked plain loop vs `labclient train`
with a cost point logged every step, against a real labserver on loopback (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import REPO, Context, Figure, Section, Target, fmt_overhead, fmt_spread, paired_ratios, stats, table

NUMBER = 1
NAME = "overhead"
TITLE = "Tracking overhead"
NEEDS_SERVER = True
BIN = Path(sys.executable).parent

TARGETS = {128: 1.03, 10: 1.10}
BATCH_SIZES = (10, 128)


@dataclass(frozen=True)
class Sizes:
    reps: int
    epochs: dict[int, int]
    wall_reps: int  # `labclient train` processes per store and batch size, for the wall-time comparison
    wall_batches: tuple[int, ...]
    wall_backends: tuple[str, ...]


SIZES = {
    "smoke": Sizes(reps=1, epochs={10: 2, 128: 2}, wall_reps=0, wall_batches=(), wall_backends=()),
    "quick": Sizes(reps=3, epochs={10: 2, 128: 10}, wall_reps=1, wall_batches=(128,), wall_backends=("sqlite",)),
    "full": Sizes(
        reps=5, epochs={10: 5, 128: 30}, wall_reps=2, wall_batches=(10, 128), wall_backends=("sqlite", "postgresql")
    ),
}


@dataclass
class Runs:
    """Per repetition: each epoch's seconds, plain and tracked, and the server's CPU seconds per tracked run."""

    plain: list[list[float]]
    tracked: list[list[float]]
    untracked: list[list[float]]  # our own loop with no run: tracked / untracked is the tracking alone
    server_cpu: list[float]

    def ratio(self, first_epoch: int = 0, baseline: str = "plain"):
        return paired_ratios(
            [sum(t[first_epoch:]) for t in self.tracked], [sum(p[first_epoch:]) for p in getattr(self, baseline)]
        )


def run(ctx: Context) -> Section:
    sizes = ctx.sizes(SIZES)
    runs: dict[tuple[str, int], Runs] = {}
    walls: dict[tuple[str, int], dict[str, list[float]]] = {}
    for backend in ctx.backends():
        server = ctx.server(backend)
        for batch in BATCH_SIZES:
            runs[backend, batch] = _training_runs(ctx, server, batch, sizes, warmup=batch == BATCH_SIZES[0])
        for batch in sizes.wall_batches if backend in sizes.wall_backends else ():
            walls[backend, batch] = _wall_times(ctx, server, batch, sizes)
    figures = [
        Figure(
            f"training time, tracked / plain, {backend}, batch {batch}", r.ratio(), target=Target("<=", TARGETS[batch])
        )
        for (backend, batch), r in runs.items()
    ]
    figures += [
        Figure(f"same, epochs after the first, {backend}, batch {batch}", r.ratio(1))
        for (backend, batch), r in runs.items()
    ]
    figures += [
        Figure(f"tracking alone: tracked / our loop untracked, {backend}, batch {batch}", r.ratio(baseline="untracked"))
        for (backend, batch), r in runs.items()
    ]
    figures += [
        Figure(
            f"whole process, `labclient train` / plain script, {backend}, batch {batch}",
            paired_ratios(w["tracked"], w["plain"]),
        )
        for (backend, batch), w in walls.items()
    ]
    return Section(NUMBER, TITLE, body=_body(runs, walls), figures=figures, notes=_notes(ctx, sizes))


def _training_runs(ctx: Context, server, batch: int, sizes: Sizes, warmup: bool) -> Runs:
    """Epoch seconds: the plain loop's own timer, and what labclient logs as `epoch_time_s`."""
    import torch

    from bench import baselines
    from bench.throughput import untracked_training
    from labclient.training.loop import TrainOptions, train
    from labclient.training.progress import Reporter

    dataset = ctx.dataset()
    x, y = torch.from_numpy(dataset.train_x), torch.from_numpy(dataset.train_y)
    epochs = sizes.epochs[batch]
    options = TrainOptions(
        team=server.team,
        trainer="mnist-mlp",
        dataset=ctx.dataset_name,
        data_dir=ctx.data_dir,
        device="cpu",
        overrides={"batch_size": batch, "epochs": epochs},
        tracking_uri=server.url,
    )

    def tracked() -> tuple[list[float], float | None]:
        cpu_before = server.cpu_seconds()
        with server.as_team():
            history = train(options, reporter=Reporter(quiet=True)).history
        return [
            row["epoch_time_s"] for row in history
        ], None if cpu_before is None else server.cpu_seconds() - cpu_before

    def plain() -> list[float]:
        return baselines.train_in_memory(x, y, batch, epochs)[0]

    def untracked() -> list[float]:
        return [row["epoch_time_s"] for row in untracked_training(dataset, batch, epochs).history]

    if not warmup:
        plain()  # a new batch size warms its own allocations; a tracked run's first-time costs are paid once per server
    times = ctx.alternate({"plain": plain, "untracked": untracked, "tracked": tracked}, sizes.reps, warmup=warmup)
    return Runs(
        times["plain"],
        [t for t, _ in times["tracked"]],
        times["untracked"],
        [cpu for _, cpu in times["tracked"] if cpu is not None],
    )


def _wall_times(ctx: Context, server, batch: int, sizes: Sizes) -> dict[str, list[float]]:
    """Whole processes, start to exit: what the user waits for, imports and uploads included."""
    epochs = str(sizes.epochs[batch])
    data = [
        "--dataset",
        ctx.dataset_name,
        "--data-dir",
        str(ctx.data_dir),
        "--batch-size",
        str(batch),
        "--epochs",
        epochs,
    ]
    plain = [sys.executable, "-m", "bench.baselines", *data]
    tracked = [str(BIN / "labclient"), "train", "--device", "cpu", *data]
    env = {**os.environ, **server.client_env()}
    variants = {"plain": lambda: _process_seconds(plain, env), "tracked": lambda: _process_seconds(tracked, env)}
    return ctx.alternate(variants, sizes.wall_reps, warmup=False)


def _process_seconds(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return elapsed


def _body(runs: dict[tuple[str, int], Runs], walls: dict) -> str:
    rows = []
    for (backend, batch), r in runs.items():
        plain, tracked = stats([sum(p) for p in r.plain]), stats([sum(t) for t in r.tracked])
        server_cpu = fmt_spread(stats(r.server_cpu)) if r.server_cpu else "n/a"
        rows.append(
            [
                backend,
                batch,
                "training epochs",
                fmt_spread(plain),
                fmt_spread(tracked),
                fmt_overhead(r.ratio().median),
                fmt_overhead(r.ratio(1).median),
                server_cpu,
            ]
        )
    for (backend, batch), w in walls.items():
        overhead = fmt_overhead(paired_ratios(w["tracked"], w["plain"]).median)
        rows.append(
            [
                backend,
                batch,
                "whole process",
                fmt_spread(stats(w["plain"])),
                fmt_spread(stats(w["tracked"])),
                overhead,
                "",
                "",
            ]
        )
    headers = [
        "server store",
        "batch",
        "timed",
        "plain, untracked",
        "`labclient train`, tracked",
        "overhead",
        "overhead after epoch 1",
        "server CPU per tracked run",
    ]
    return table(headers, rows)


def _notes(ctx: Context, sizes: Sizes) -> list[str]:
    dataset = ctx.dataset()
    steps = {batch: -(-len(dataset.train_y) // batch) for batch in BATCH_SIZES}
    wall = (
        f"{sizes.wall_reps} run(s) each, batch {' and '.join(map(str, sizes.wall_batches))}, on "
        f"{' and '.join(sizes.wall_backends)}"
        if sizes.wall_reps
        else "not run in this profile"
    )
    return [
        f"Data: {dataset.name}, {len(dataset.train_y):,} training images. mnist-mlp (inputs-30-10, sigmoid, quadratic "
        "cost, "
        f"SGD eta 3.0) on the CPU: {sizes.epochs[10]} epochs at batch 10 ({steps[10]:,} logged steps each), "
        f"{sizes.epochs[128]} at batch 128 ({steps[128]} each).",
        "Plain: bench/baselines.py's in-memory loop, no tracking. Tracked: `labclient.training.loop.train` (what "
        "`labclient train` "
        "calls) logging `step_train_cost` every step, plus params, tags, per-epoch metrics, weights, plots and the "
        "diary "
        "entry, to the server, logged in as a team with its token (as after `labclient login`). Untracked: the same "
        "training code as tracked (`labclient.training.loop`'s session) with no run, so 'tracking alone' is what "
        "journalling "
        "and sending cost. Ours computes the quadratic cost with one fused kernel (`F.mse_loss`), the plain loop "
        "with the textbook's five operations; both are the same C = 1/2 ||y - a||^2 averaged over the batch.",
        "Training time: the seconds in the training epochs (plain: the loop's timer; tracked: the `epoch_time_s` it "
        "logs), "
        f"{sizes.reps} repetitions in rotating order, after one warm-up run of each (for the tracked run once per "
        "server: "
        "its first-time costs are imports and the server's caches). 'After epoch 1' leaves out the first epoch, "
        "during which the run's setup (params, tags, environment.json) is also being sent.",
        "The server runs on the same 2 cores, so its work competes with training. Server CPU: user + system time of "
        "the server's processes (on PostgreSQL with the database's backend processes) during the whole tracked "
        "`train()` call (setup, epochs, evaluation, uploads, finish).",
        "Whole process: `python -m bench.baselines` (import, load, train, evaluate) against a `labclient train` "
        "process "
        f"(import, run start, train, evaluate, upload weights and plots, finish): {wall}.",
    ]

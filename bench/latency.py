"""Benchmark 3: logging latency through our client (the recorder behind `Run.log_metric`) against MLflow's
client called directly (synchronous `log_metric` and `log_batch`, and MLflow's async logging), on a real
tracking server on loopback."""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass

from bench.common import Context, Figure, Section, Stats, fmt_seconds, fmt_spread, paired_ratios, stats, table

NUMBER = 3
NAME = "logging"
TITLE = "Logging latency"
NEEDS_SERVER = True

BATCH = 1000


@dataclass(frozen=True)
class Sizes:
    points: int  # single-point calls per variant
    batches: int  # batches of 1,000 points per variant
    sync_batches: int  # batches of 1,000 synchronous log_metric calls (1,000 requests each)


SIZES = {
    "smoke": Sizes(points=20, batches=2, sync_batches=0),
    "quick": Sizes(points=100, batches=10, sync_batches=0),
    "full": Sizes(points=1000, batches=30, sync_batches=3),
}


def run(ctx: Context) -> Section:
    from mlflow.tracking import MlflowClient

    from labclient.tracking.run import create_run

    sizes = ctx.sizes(SIZES)
    server = ctx.server("sqlite")
    # both clients authenticate as the same team, with HTTP basic auth
    os.environ.update(MLFLOW_TRACKING_USERNAME=server.team, MLFLOW_TRACKING_PASSWORD=server.token)
    with server.as_team():
        ours = create_run(server.team, tracking_uri=server.url)
    client = MlflowClient(server.url)
    theirs = client.create_run(ours.experiment_id, run_name="mlflow-client").info.run_id
    try:
        calls = _Calls(ours, client, theirs, server)
        single = ctx.alternate(calls.single_point_variants(), sizes.points)
        batches = ctx.alternate(calls.batch_variants(), sizes.batches)
        slow = (
            ctx.alternate({"sync": calls.mlflow_log_metric_1000}, sizes.sync_batches, warmup=False)
            if sizes.sync_batches
            else {}
        )
    finally:
        ours.finish()
        client.set_terminated(theirs)
    return _section(sizes, single, batches, slow)


class _Calls:
    """Each variant logs fresh points (own key, increasing steps) and returns (returned_s, on_server_s); a batch
    variant also returns the CPU seconds it cost this process (all threads) and the server's processes."""

    def __init__(self, ours, client, run_id: str, server):
        self.ours, self.client, self.run_id, self.server = ours, client, run_id, server
        self.steps = itertools.count()

    def _cpu(self) -> tuple[float, float]:
        return time.process_time(), self.server.cpu_seconds() or 0.0

    def _cpu_since(self, before: tuple[float, float]) -> tuple[float, float]:
        now = self._cpu()
        return now[0] - before[0], now[1] - before[1]

    def single_point_variants(self) -> dict:
        return {"ours": self.ours_point, "mlflow sync": self.mlflow_point, "mlflow async": self.mlflow_async_point}

    def batch_variants(self) -> dict:
        return {
            "ours": self.ours_batch,
            "mlflow log_batch": self.mlflow_batch,
            "mlflow async log_batch": self.mlflow_async_batch,
        }

    def ours_point(self) -> tuple[float, float]:
        started = time.perf_counter()
        self.ours.log_metric("ours_point", 0.5, next(self.steps))
        returned = time.perf_counter()
        self.ours.recorder.flush()
        return returned - started, time.perf_counter() - started

    def mlflow_point(self) -> tuple[float, float]:
        started = time.perf_counter()
        self.client.log_metric(self.run_id, "sync_point", 0.5, step=next(self.steps))
        elapsed = time.perf_counter() - started
        return elapsed, elapsed

    def mlflow_async_point(self) -> tuple[float, float]:
        started = time.perf_counter()
        operation = self.client.log_metric(self.run_id, "async_point", 0.5, step=next(self.steps), synchronous=False)
        returned = time.perf_counter()
        operation.wait()
        return returned - started, time.perf_counter() - started

    def ours_batch(self) -> tuple:
        first, cpu = next(self.steps) * BATCH, self._cpu()
        started = time.perf_counter()
        for step in range(first, first + BATCH):
            self.ours.log_metric("ours_batch", 0.5, step)
        returned = time.perf_counter()
        self.ours.recorder.flush()
        return returned - started, time.perf_counter() - started, *self._cpu_since(cpu)

    def _metrics(self, key: str) -> list:
        from mlflow.entities import Metric

        first, now = next(self.steps) * BATCH, int(time.time() * 1000)
        return [Metric(key, 0.5, now, step) for step in range(first, first + BATCH)]

    def mlflow_batch(self) -> tuple:
        cpu = self._cpu()
        started = time.perf_counter()
        self.client.log_batch(self.run_id, metrics=self._metrics("sync_batch"))
        elapsed = time.perf_counter() - started
        return elapsed, elapsed, *self._cpu_since(cpu)

    def mlflow_async_batch(self) -> tuple:
        cpu = self._cpu()
        started = time.perf_counter()
        operation = self.client.log_batch(self.run_id, metrics=self._metrics("async_batch"), synchronous=False)
        returned = time.perf_counter()
        operation.wait()
        return returned - started, time.perf_counter() - started, *self._cpu_since(cpu)

    def mlflow_log_metric_1000(self) -> tuple:
        first, cpu = next(self.steps) * BATCH, self._cpu()
        started = time.perf_counter()
        for step in range(first, first + BATCH):
            self.client.log_metric(self.run_id, "sync_each", 0.5, step=step)
        elapsed = time.perf_counter() - started
        return elapsed, elapsed, *self._cpu_since(cpu)


LABELS = {
    "ours": "ours: `run.log_metric`",
    "mlflow sync": "MLflow `log_metric` (synchronous)",
    "mlflow async": "MLflow `log_metric(synchronous=False)`",
}
BATCH_LABELS = {
    "ours": "ours: 1,000 × `run.log_metric`",
    "mlflow log_batch": "MLflow `log_batch` of 1,000 (synchronous)",
    "mlflow async log_batch": "MLflow `log_batch(synchronous=False)` of 1,000",
    "sync": "MLflow 1,000 × `log_metric` (synchronous)",
}


def _split(samples: list[tuple]) -> tuple[Stats, Stats]:
    return stats([s[0] for s in samples]), stats([s[1] for s in samples])


def _rows(results: dict, labels: dict, per_point: int) -> list[list[str]]:
    rows = []
    for name, samples in results.items():
        returned, landed = _split(samples)
        for what, measured in (("call returns", returned), ("on the server", landed)):
            if what == "on the server" and returned.samples == landed.samples:
                continue  # a synchronous call returns when the point is stored
            cells = [
                fmt_seconds(v) for v in (measured.median, measured.percentile(0.99), measured.minimum, measured.maximum)
            ]
            rows.append(
                [
                    labels[name],
                    what + (" (synchronous)" if returned.samples == landed.samples else ""),
                    *cells,
                    fmt_seconds(measured.median / per_point),
                    measured.n,
                ]
            )
    return rows


def _cpu_cell(samples: list[tuple], index: int) -> str:
    measured = stats([sample[index] for sample in samples])
    return f"{fmt_spread(measured)}; {fmt_seconds(measured.median / BATCH)} per point"


def _section(sizes: Sizes, single: dict, batches: dict, slow: dict) -> Section:
    headers = ["client call", "until", "median", "p99", "min", "max", "median per point", "n"]
    cpu_rows = [
        [BATCH_LABELS[name], _cpu_cell(samples, 2), _cpu_cell(samples, 3)]
        for name, samples in {**batches, **slow}.items()
    ]
    body = "\n\n".join(
        [
            "**One point per call**",
            table(headers, _rows(single, LABELS, 1)),
            f"**A batch of {BATCH:,} points**",
            table(headers, _rows({**batches, **slow}, BATCH_LABELS, BATCH)),
            f"**CPU time per batch of {BATCH:,} points** (median (min – max); median per point), until the points are "
            "on the server",
            table(["client call", "client process CPU (all its threads)", "server CPU (all its processes)"], cpu_rows),
        ]
    )

    def ratio(results: dict, ours_index: int, baseline: str, baseline_index: int):
        return paired_ratios([s[ours_index] for s in results["ours"]], [s[baseline_index] for s in results[baseline]])

    figures = [
        Figure(
            "batch of 1,000, until the call returns: ours / MLflow `log_batch`",
            ratio(batches, 0, "mlflow log_batch", 0),
        ),
        Figure(
            "batch of 1,000, until the call returns: ours / MLflow async `log_batch`",
            ratio(batches, 0, "mlflow async log_batch", 0),
        ),
        Figure(
            "batch of 1,000, until on the server: ours / MLflow `log_batch`", ratio(batches, 1, "mlflow log_batch", 1)
        ),
        Figure(
            "batch of 1,000, until on the server: ours / MLflow async `log_batch`",
            ratio(batches, 1, "mlflow async log_batch", 1),
        ),
        Figure("one point, until the call returns: ours / MLflow `log_metric`", ratio(single, 0, "mlflow sync", 0)),
        Figure(
            "one point, until the call returns: ours / MLflow async `log_metric`", ratio(single, 0, "mlflow async", 0)
        ),
        Figure(
            "one point, until on the server (ours with `flush()`): ours / MLflow `log_metric`",
            ratio(single, 1, "mlflow sync", 1),
        ),
    ]
    notes = [
        f"Against labserver on SQLite, both clients logged in as the same team. {sizes.points:,} single points and "
        f"{sizes.batches} batches per client call, after a warm-up, calls of the variants interleaved in rotating "
        "order; "
        "ratios are medians of per-repetition ratios (below 1× = ours faster).",
        "p99 is the nearest-rank 99th percentile; with fewer than 100 samples it is the maximum.",
        "Ours: `Run.log_metric` returns once the point is in the run's recorder (client/recorder.py: today its journal "
        "on local disk); the run's sender process ships it in batches. 'On the server' for ours is the time until "
        "`run.recorder.flush()` returns, i.e. the server has acknowledged everything logged before it. "
        "MLflow async: until `RunOperations.wait()` returns.",
    ]
    if not slow:
        notes.append("1,000 synchronous `log_metric` calls (1,000 requests) run only in the full profile.")
    return Section(NUMBER, TITLE, body=body, figures=figures, notes=notes)

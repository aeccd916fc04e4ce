"""Benchmark 5: server load (issue 7 §5, issue 6 fault test 5). N simulated teams, each a real team with its
own token and run, log metric batches in a closed loop through labclient's recorder (journal, sender, HTTP)
to one labserver, on SQLite and PostgreSQL; the points on the server are counted afterwards with MLflow's client."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from dataclasses import dataclass

from bench.common import Context, Figure, Section, Target, fmt_seconds, stats, table

NUMBER = 5
NAME = "server-load"
TITLE = "Server load"
NEEDS_SERVER = True
METRIC = "load_value"
DRAIN_TIMEOUT_S = 120


@dataclass(frozen=True)
class Sizes:
    teams: tuple[int, ...]
    seconds: float
    batch: int  # points logged before each flush (one closed-loop round trip)
    processesteams: int  # teams in the `--workers 2` comparison; 0: not run


SIZES = {
    "smoke": Sizes(teams=(1, 3), seconds=1.0, batch=100, processesteams=0),
    "quick": Sizes(teams=(1, 10, 30), seconds=3.0, batch=100, processesteams=30),
    "full": Sizes(teams=(1, 10, 30), seconds=10.0, batch=100, processesteams=30),
}


@dataclass
class Outcome:
    store: str
    workers: int
    teams: int
    seconds: float
    logged: int
    on_server: int
    errors: int
    round_trips: list[float]  # per flush: log a batch, wait for the server's acknowledgement
    requests: list[float]  # per HTTP request of the sender

    @property
    def points_per_s(self) -> float:
        return self.on_server / self.seconds

    @property
    def lost(self) -> int:
        return self.logged - self.on_server


def run(ctx: Context) -> Section:
    from bench.servers import start_server

    sizes = ctx.sizes(SIZES)
    outcomes: list[Outcome] = []
    most = max(sizes.teams + (sizes.processesteams,))
    names = tuple(f"load{i:02d}" for i in range(most))
    configs = [(backend, 1) for backend in ctx.backends()]
    if sizes.processesteams:
        configs.append((ctx.backends()[-1], 2))  # PostgreSQL when there is one: SQLite serialises writers anyway
    for backend, workers in configs:
        home = ctx.workdir / f"load-{backend}-{workers}"
        with start_server(backend, home, ctx.postgres, workers=workers, teams=names) as server:
            counts = sizes.teams if workers == 1 else (sizes.processesteams,)
            for n in counts:
                outcomes.append(_load(server, n, sizes, workers))
    figures = [
        Figure(f"points/s, {o.teams} teams, {o.store}, {o.workers} worker(s)", stats([o.points_per_s]), unit="points/s")
        for o in outcomes
    ]
    figures += [
        Figure(
            f"lost points, {o.teams} teams, {o.store}, {o.workers} worker(s)",
            stats([o.lost]),
            unit="points",
            target=Target("<=", 0, "points"),
        )
        for o in outcomes
    ]
    return Section(NUMBER, TITLE, body=_body(outcomes), figures=figures, notes=_notes(sizes, outcomes))


def _load(server, teams: int, sizes: Sizes, workers: int) -> Outcome:
    """Teams spread over at most 3 worker processes (the GIL), each team a thread with its own run."""
    assignments = [[] for _ in range(min(teams, 3))]
    for index, name in enumerate(sorted(server.tokens)[:teams]):  # the load teams only: `bench` is not in tokens
        assignments[index % len(assignments)].append((name, server.tokens[name]))
    spawn = multiprocessing.get_context("spawn")
    ready, results_queue = spawn.Barrier(len(assignments)), spawn.Queue()
    processes = [
        spawn.Process(target=_worker, args=(server.url, chunk, sizes.seconds, sizes.batch, ready, results_queue))
        for chunk in assignments
    ]
    for process in processes:
        process.start()
    try:
        chunks = [results_queue.get(timeout=DRAIN_TIMEOUT_S + 120) for _ in processes]
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    failed = [chunk for chunk in chunks if isinstance(chunk, str)]
    if failed:
        raise RuntimeError(f"a load worker failed: {failed[0]}")
    results = [row for chunk in chunks for row in chunk]
    on_server = _metric_count(server, [row["run_id"] for row in results], METRIC)
    return Outcome(
        server.backend,
        workers,
        teams,
        sizes.seconds,
        sum(r["logged"] for r in results),
        on_server,
        sum(r["errors"] for r in results),
        [s for r in results for s in r["round_trips"]],
        [s for r in results for s in r["requests"]],
    )


def _worker(url: str, teams: list[tuple[str, str]], seconds: float, batch: int, ready, results_queue) -> None:
    try:
        results_queue.put(_drive_teams(url, teams, seconds, batch, ready))
    except BaseException as err:  # the parent must hear of it, not wait for results that never come
        ready.abort()
        results_queue.put(f"{type(err).__name__}: {err}")
        raise


def _drive_teams(url: str, teams: list[tuple[str, str]], seconds: float, batch: int, ready) -> list[dict]:
    """In a worker process: one thread per team, all starting once every process has bound its runs."""
    from labclient.config import Settings
    from labclient.tracking.run import create_run

    home = os.environ["LAB_HOME"]
    runs = [
        create_run(
            team,
            settings=Settings(
                home=f"{home}/{team}", tracking_uri=url, team=team, token=token, drain_timeout=DRAIN_TIMEOUT_S
            ),
        )
        for team, token in teams
    ]
    results: list[dict] = [{} for _ in runs]
    ready.wait(120)
    start_at = time.monotonic()
    threads = [
        threading.Thread(target=_closed_loop, args=(run, start_at, seconds, batch, results[i]))
        for i, run in enumerate(runs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for run, result in zip(runs, results):
        drained = run.finish()
        recorded = run.recorder.stats()
        result.update(
            run_id=run.id,
            requests=recorded["request_seconds"],
            errors=result["errors"] + recorded["failures"] + recorded["refused"] + (0 if drained else 1),
        )
    return results


def _closed_loop(run, start_at: float, seconds: float, batch: int, result: dict) -> None:
    time.sleep(max(0.0, start_at - time.monotonic()))
    deadline, step, round_trips, errors = time.monotonic() + seconds, 0, [], 0
    while time.monotonic() < deadline:
        began = time.perf_counter()
        for _ in range(batch):
            run.log_metric(METRIC, float(step % 997), step)
            step += 1
        try:
            run.recorder.flush(60)
        except Exception:  # counted, not fatal: the journal keeps the points and finish() drains them
            errors += 1
        round_trips.append(time.perf_counter() - began)
    result.update(logged=step, round_trips=round_trips, errors=errors)


def _metric_count(server, run_ids: list[str], key: str) -> int:
    """Points of metric `key` stored in these runs, read with MLflow's client as the server's team."""
    from mlflow.tracking import MlflowClient

    with server.as_team():
        os.environ.update(MLFLOW_TRACKING_USERNAME=server.team, MLFLOW_TRACKING_PASSWORD=server.token)
        try:
            client = MlflowClient(server.url)
            return sum(len(client.get_metric_history(run_id, key)) for run_id in run_ids)
        finally:
            os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
            os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)


def _body(outcomes: list[Outcome]) -> str:
    rows = []
    for o in outcomes:
        trips, requests = stats(o.round_trips or [0.0]), stats(o.requests or [0.0])
        rows.append(
            [
                o.store,
                o.workers,
                o.teams,
                f"{o.points_per_s:,.0f}",
                fmt_seconds(trips.median),
                fmt_seconds(trips.percentile(0.99)),
                fmt_seconds(requests.median),
                fmt_seconds(requests.percentile(0.99)),
                len(o.requests),
                o.errors,
                f"{o.logged:,}",
                f"{o.on_server:,}",
                o.lost,
            ]
        )
    headers = [
        "store",
        "server workers",
        "teams",
        "points/s",
        "batch round trip p50",
        "p99",
        "HTTP request p50",
        "p99",
        "requests",
        "errors",
        "points logged",
        "points on server",
        "lost",
    ]
    scaling = _scaling(outcomes)
    return table(headers, rows) + (f"\n\n{scaling}" if scaling else "")


def _scaling(outcomes: list[Outcome]) -> str:
    two = [o for o in outcomes if o.workers == 2]
    if not two:
        return ""
    one = next((o for o in outcomes if o.workers == 1 and o.store == two[0].store and o.teams == two[0].teams), None)
    if one is None:
        return ""
    return (
        f"`--workers 2` vs 1, {two[0].teams} teams on {two[0].store}: {two[0].points_per_s / one.points_per_s:.2f}× "
        "the "
        "points/s (the clients and both server workers share the same 2 cores)."
    )


def _notes(sizes: Sizes, outcomes: list[Outcome]) -> list[str]:
    lost = sum(o.lost for o in outcomes)
    return [
        f"Each simulated team is a real team (`labserver team add`, its own token) with its own run, made by "
        f"`labclient.tracking.run.create_run`; it logs {sizes.batch} points of one metric through the run's recorder "
        "(journal, "
        f"sender process, HTTP `log-batch`) and then waits for the server's acknowledgement (`recorder.flush`), in a "
        f"closed loop for {sizes.seconds:g} s. Teams are threads spread over up to 3 worker processes, and each run "
        "has its own sender process, as every run does.",
        "Points/s: points on the server divided by the load time. Batch round trip: log + flush; HTTP request: each "
        "request of the sender (`recorder.stats()['request_seconds']`). Errors: failed flushes, failed or refused "
        "requests, and runs not drained at finish.",
        f"Lost points: points logged minus points in the runs' metric history read back with MLflow's client after "
        f"every run finished: {lost} in all (target 0).",
    ]

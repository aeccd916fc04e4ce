"""The leaderboard: each team's best model on held-out data, as plain rows.

`labclient leaderboard` prints them; labserver's web page renders the same rows. Only finished runs
that uploaded weights count (a model another team can fetch), the rule `TEAM/best` also follows.
Everything goes through MlflowClient calls, so it reads the embedded store and a labserver alike.

A row's team is the experiment its run lives in, never a tag a team wrote (labclient/refs.py). Teams write
their own metrics and timestamps, so any value may be NaN, infinite or absurd: such a value never ranks and is
shown blank, and no value of one team can break the board for the others.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import sys
from typing import Any

from labserver.errors import BadRequest
from labserver.names import display_name, identity, is_valid_team
from labserver.search import iter_runs
from labserver.tags import DATASET_TAG, DEVICE_TAG, TRAINER_TAG, WEIGHTS_TAG, hardware_tag

DEFAULT_METRIC = "test_accuracy"
METRIC_ALIASES = {"accuracy": "test_accuracy", "cost": "test_cost", "loss": "test_cost", "time": "training_time_s"}
_LOWER_IS_BETTER = ("cost", "loss", "error", "time", "bytes", "flops", "macs", "parameters")
_METRIC_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")
_FINISHED = "attributes.status = 'FINISHED'"
_LOOKED_AT = 500  # runs read per team to say why it is left out: enough to tell, bounded for a busy store
# what every run of `labclient train` logs: an empty board for one of these is just empty, never a typo
PLATFORM_METRICS = ("test_accuracy", "test_cost", "train_accuracy", "train_cost", "training_time_s", "samples_per_s")


class UnknownMetric(BadRequest):
    pass


def metric_key(metric: str | None) -> str:
    """The metric's MLflow name: `accuracy` and `cost` are short for the held-out test_accuracy and test_cost."""
    name = METRIC_ALIASES.get((metric or DEFAULT_METRIC).strip(), (metric or DEFAULT_METRIC).strip())
    if not _METRIC_NAME.match(name):
        raise UnknownMetric(
            f"{metric!r} is not a metric name", "use letters, digits, '_', '-' or '.', e.g. test_accuracy"
        )
    return name


def lower_is_better(metric: str) -> bool:
    return any(word in metric.lower() for word in _LOWER_IS_BETTER)


def leaderboard_rows(
    client, *, metric: str = DEFAULT_METRIC, by: str = "team", limit: int | None = None, target=None
) -> list[dict[str, Any]]:
    """Ranked rows of plain values. by="team": each team's best run; by="run": the best runs of all teams.

    `target` (a labclient.store.target.Target) adds each run's URL in the MLflow UI.
    """
    metric = metric_key(metric)
    if by not in ("team", "run"):
        raise BadRequest(f"cannot rank by {by!r}", "use --by team or --by run")
    experiments = {
        experiment.experiment_id: experiment.name
        for experiment in client.search_experiments()
        if is_valid_team(experiment.name)
    }
    order = [f"metrics.`{metric}` {'ASC' if lower_is_better(metric) else 'DESC'}", "attributes.start_time DESC"]
    if by == "team":
        runs = [best for experiment_id in experiments if (best := _best_run(client, [experiment_id], order, metric))]
        runs.sort(key=lambda run: run.data.metrics[metric], reverse=not lower_is_better(metric))
    else:
        runs = _ranked_runs(client, list(experiments), order, metric, limit or 20)
    if not runs and experiments and metric not in PLATFORM_METRICS:
        _check_metric_exists(client, list(experiments), metric)
    rows = [_row(rank, run, metric, experiments, target) for rank, run in enumerate(runs, start=1)]
    return rows[:limit] if limit else rows


def left_out(client, *, metric: str = DEFAULT_METRIC, ranked: list[dict] | None = None) -> list[dict[str, str]]:
    """Every team without a row on the board by team, with the reason: a team that logs with plain MLflow, or has
    not finished a run yet, is named rather than silently missing. `ranked`: the board's rows, if already read."""
    metric = metric_key(metric)
    rows = ranked if ranked is not None else leaderboard_rows(client, metric=metric, by="team")
    on_board = {row["team"] for row in rows}
    reasons = []
    for experiment in client.search_experiments():
        team = experiment.name
        if not is_valid_team(team) or team in on_board:
            continue
        reasons.append({"team": team, "reason": _why_left_out(client, experiment.experiment_id, metric)})
    return sorted(reasons, key=lambda item: item["team"])


def _why_left_out(client, experiment_id: str, metric: str) -> str:
    finished = with_weights = with_metric = 0
    for run in iter_runs(client, [experiment_id], _FINISHED, page_size=100):
        finished += 1
        weights = WEIGHTS_TAG in run.data.tags
        with_weights += weights
        with_metric += weights and metric in run.data.metrics
        if finished >= _LOOKED_AT:
            break
    if not finished:
        return "no finished run yet"
    if not with_weights:
        return (
            f"{finished} finished run(s), none with weights another team can fetch (labclient's "
            "model/model.safetensors): log them with `labclient train`, `push` or `run.log_weights`"
        )
    if not with_metric:
        return f"no finished run with weights logs {metric}"
    return f"the {metric} values of its runs are not finite numbers"


def _counts(run, metric: str) -> bool:
    return (
        run.info.status == "FINISHED"
        and WEIGHTS_TAG in run.data.tags
        and _finite(run.data.metrics.get(metric)) is not None  # NaN and infinities never rank
    )


def _best_run(client, experiment_ids: list[str], order: list[str], metric: str):
    # runs without the metric sort last, so the first run that counts is the best one
    return next((run for run in iter_runs(client, experiment_ids, _FINISHED, order) if _counts(run, metric)), None)


def _ranked_runs(client, experiment_ids: list[str], order: list[str], metric: str, limit: int) -> list:
    ranked = []
    for run in iter_runs(client, experiment_ids, _FINISHED, order):
        if _counts(run, metric):
            ranked.append(run)
            if len(ranked) >= limit:
                break
    return ranked


def _check_metric_exists(client, experiment_ids: list[str], metric: str) -> None:
    """No run ranks: an unknown metric name is a mistake worth saying; an empty store is not."""
    latest = next(
        iter(
            client.search_runs(
                experiment_ids,
                filter_string="attributes.status = 'FINISHED'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
        ),
        None,
    )
    if latest is None or metric in latest.data.metrics:
        return
    known = sorted(key for key in latest.data.metrics if not key.startswith(("epoch_", "step_")))
    raise UnknownMetric(
        f"no finished run logs a metric named {metric!r}",
        f"try one of: {', '.join(known[:12])}" if known else "train a model first",
    )


def _row(rank: int, run, metric: str, experiments: dict[str, str], target) -> dict[str, Any]:
    metrics, tags = run.data.metrics, run.data.tags
    team, number = identity(None, run, experiments)
    row = {
        "rank": rank,
        "team": team,
        "run": display_name(team, number, run.info.run_id),
        "metric": metric,
        "value": _finite(metrics.get(metric)),
        "test_accuracy": _finite(metrics.get("test_accuracy")),
        "test_cost": _finite(metrics.get("test_cost")),
        "parameters": _integer(metrics.get("compute_parameters")),
        "macs_per_sample": _integer(metrics.get("compute_macs_per_sample")),
        "training_time_s": _finite(metrics.get("training_time_s")),
        "device": _device(tags),
        "trainer": tags.get(TRAINER_TAG) or run.data.params.get("trainer"),
        "dataset": tags.get(DATASET_TAG) or run.data.params.get("dataset"),
        "trained_at": _timestamp(run.info.start_time),
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
    }
    if target is not None:
        row["url"] = target.run_url(run.info.experiment_id, run.info.run_id)
    return row


def _finite(value) -> float | None:
    """A metric as a number that can rank, or None. MLflow's SQL store keeps an infinity as the largest float."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and abs(value) < sys.float_info.max else None


def _integer(value) -> int | None:
    value = _finite(value)
    return int(value) if value is not None and abs(value) < 1e18 else None


def _timestamp(milliseconds) -> str | None:
    """ISO time of a run's start; None for a start time no calendar holds (a team chose it)."""
    try:
        return dt.datetime.fromtimestamp(int(milliseconds) / 1000, tz=dt.timezone.utc).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _device(tags: dict) -> str:
    device = tags.get(hardware_tag("device")) or tags.get(DEVICE_TAG) or "unknown"
    gpu = tags.get(hardware_tag("gpu.name"))
    return f"{device} ({gpu})" if gpu and device in ("cuda", "mps") else device

"""`labclient train`: resolve trainer, data and device, then train, logging everything through one Run."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from labclient.config import get_settings
from labclient.errors import ConfigError, TrainerNotFound, TrainingDiverged
from labclient.models import compute
from labclient.store.target import resolve_target, validate_team
from labclient.training import hardware
from labclient.training.data import Dataset, load_dataset
from labserver.tags import DATASET_TAG, DEVICE_TAG, KIND_TAG, TRAINER_TAG

STEP_FLUSH_EVERY = 50  # read step costs off the device in groups: one sync per group, not per step
DRY_RUN_BATCHES = 2


@dataclass
class TrainOptions:
    team: str | None = None
    trainer: str = "mnist-mlp"
    dataset: str = "mnist"
    data_dir: Path | None = None
    device: str = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
    dry_run: bool = False
    tracking_uri: str | None = None
    offline: bool | None = None  # None: LAB_OFFLINE / the config file decide


@dataclass
class TrainResult:
    trainer: str
    dataset: str
    device: str
    epochs: int
    test_accuracy: float
    test_cost: float
    train_cost: float
    seconds: float
    samples_per_s: float
    figures: compute.ComputeFigures
    weights_file_bytes: int | None = None
    run_name: str | None = None
    run_id: str | None = None
    url: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    pending: bool = False  # not (yet) all on the tracking store: it waits in `journal` for `labclient sync`
    offline: bool = False
    journal: Path | None = None
    problem: str | None = None  # why it is pending, when the sender said: the store's answer or silence


def load_trainer(name: str):
    from labtrainers import BUILTIN

    if name in BUILTIN:
        module = importlib.import_module(BUILTIN[name])
    elif name.endswith(".py"):
        module = _load_trainer_file(Path(name))
    else:
        raise TrainerNotFound(f"unknown trainer {name!r}", f"use one of {', '.join(BUILTIN)} or a path to a .py file")
    missing = [attr for attr in ("Config", "build_model") if not hasattr(module, attr)]
    if missing:
        raise TrainerNotFound(
            f"trainer {name} does not define {', '.join(missing)}", "see 'Writing a trainer' in the README"
        )
    return module


def _load_trainer_file(path: Path):
    if not path.is_file():
        raise TrainerNotFound(f"trainer file {path} does not exist", "check the path given to --trainer")
    spec = importlib.util.spec_from_file_location(f"labtrainer_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the team's own code, on the team's own machine
    return module


def build_config(trainer, overrides: dict[str, Any]):
    try:
        return trainer.Config(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as err:
        first = err.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-") if first.get("loc") else "config"
        raise ConfigError(f"invalid {option}: {first['msg'].lower()}", "see `labclient train --help`") from None


def train(options: TrainOptions, reporter=None) -> TrainResult:
    import torch

    from labclient.training.progress import Reporter

    reporter = reporter or Reporter()
    settings = get_settings()
    team = validate_team(options.team or settings.team)
    trainer = load_trainer(options.trainer)
    config = build_config(trainer, options.overrides)
    sender = None if options.dry_run else _early_sender(settings, options)
    try:
        device = hardware.resolve_device(options.device)
        reporter.info(f"device: {device}" + (" (picked by --device auto)" if options.device == "auto" else ""))
        dataset = load_dataset(
            options.dataset, options.data_dir or settings.data_dir, settings.cache_dir, settings.mnist_mirrors
        )
        torch.manual_seed(config.seed)
        model = trainer.build_model(config, dataset.input_shape, dataset.num_classes).to(device)
        figures = compute.measure(model, dataset.input_shape)
        tensors = _to_tensors(dataset, device, config.batch_size if options.dry_run else None)
        session = _Session(options, trainer, config, dataset, model, figures, device, tensors, reporter)
        if options.dry_run:
            return session.run(None)
        from labclient.tracking.run import create_run

        run = create_run(
            team,
            tracking_uri=options.tracking_uri,
            tags=_run_tags(options, dataset, device),
            offline=options.offline,
            allow_offline=True,
            sender=sender,
            on_notice=reporter.warn,
            source=getattr(trainer, "__file__", None),
        )
    except BaseException:
        if sender is not None:
            sender.release()  # the run never started: kept for the next one
        raise
    _announce(run, reporter)
    from labclient.tracking import system_metrics

    sampler = system_metrics.SystemSampler(run) if system_metrics.wanted(default=True) else contextlib.nullcontext()
    with run, sampler:  # the sampler stops first; the run ends FINISHED, FAILED, or KILLED on Ctrl-C
        result = session.run(run)
    result.run_name, result.run_id, result.url = run.name, run.id, run.url
    result.pending, result.offline, result.journal = run.pending, run.offline, run.journal_path
    result.problem = run.recorder.problem if run.pending else None
    # the store's refusals and a sender that stopped were printed when they happened (create_run's on_notice)
    if run.pending and run.recorder.problem:
        reporter.warn(f"not sent yet: {run.recorder.problem}")
    return result


def _early_sender(settings, options: TrainOptions):
    """The run's sender process, started before the data is loaded so that its own start-up (imports, and
    for a local store its schema check: about 2 s) overlaps that work; None for an offline run."""
    if settings.offline if options.offline is None else options.offline:
        return None
    from labclient.tracking.recorder import SenderProcess

    return SenderProcess.get(resolve_target(settings, options.tracking_uri))


def _announce(run, reporter) -> None:
    if run.offline:
        reporter.info(
            f"run {run.name} started offline: it is journalled in {run.journal_path}, `labclient sync` publishes it"
        )
    elif run.unreachable:
        reporter.warn(
            f"{run.unreachable}; training goes on: the run is journalled as {run.name} and sent when the server "
            "answers (or later by `labclient sync`)"
        )
    else:
        reporter.info(f"run {run.name} started")


def _to_tensors(dataset: Dataset, device: str, dry_run_batch: int | None):
    import torch

    arrays = (dataset.train_x, dataset.train_y, dataset.test_x, dataset.test_y)
    if dry_run_batch:
        keep = dry_run_batch * DRY_RUN_BATCHES
        arrays = (arrays[0][:keep], arrays[1][:keep], arrays[2][:256], arrays[3][:256])
    return tuple(torch.from_numpy(array).to(device) for array in arrays)


def _run_tags(options: TrainOptions, dataset: Dataset, device: str) -> dict[str, str]:
    return {KIND_TAG: "train", TRAINER_TAG: options.trainer, DATASET_TAG: dataset.name, DEVICE_TAG: device}


class _Session:
    """One training: the epochs, then the final evaluation, weights, plots and summary."""

    def __init__(self, options, trainer, config, dataset, model, figures, device, tensors, reporter):
        self.options, self.trainer, self.config, self.dataset = options, trainer, config, dataset
        self.model, self.figures, self.device, self.reporter = model, figures, device, reporter
        self.train_x, self.train_y, self.test_x, self.test_y = tensors
        self.step_costs: list[float] = []
        self.history: list[dict[str, float]] = []
        self.held_out = None  # the final evaluation: its predictions feed the confusion-matrix plots

    def _api(self, name: str):
        from labtrainers import defaults

        return getattr(self.trainer, name, getattr(defaults, name))

    def run(self, run) -> TrainResult:
        import torch

        if run is not None:
            self._log_setup(run)
        optimizer = self._api("make_optimizer")(self.model, self.config)
        generator = torch.Generator().manual_seed(self.config.seed)
        epochs = 1 if self.options.dry_run else self.config.epochs
        steps_per_epoch = -(-len(self.train_y) // self.config.batch_size)
        self.reporter.start(total_steps=steps_per_epoch * epochs)
        seconds = 0.0
        try:
            for epoch in range(1, epochs + 1):
                seconds += self._epoch(run, optimizer, generator, epoch)
        finally:
            self.reporter.stop()
        return self._finish(run, seconds, epochs)

    def _epoch(self, run, optimizer, generator, epoch: int) -> float:
        steps = _StepLog(run, self.config.log_every, len(self.step_costs), self.reporter)
        started = time.perf_counter()
        self._api("train_one_epoch")(
            self.model, optimizer, self.train_x, self.train_y, self.config, generator, steps.add
        )
        steps.flush()
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        self.step_costs.extend(steps.values)
        held_out = self._api("evaluate")(self.model, self.test_x, self.test_y, self.config)
        row = {
            "epoch_train_cost": sum(steps.values) / max(len(steps.values), 1),
            "epoch_test_cost": held_out.cost,
            "epoch_test_accuracy": held_out.accuracy,
            "epoch_time_s": elapsed,
            "epoch_samples_per_s": len(self.train_y) / elapsed,
        }
        _check_finite(row["epoch_test_cost"])
        self.history.append(row)
        if run is not None:
            run.log_metrics(row, step=epoch)
        self.reporter.epoch(epoch, row)
        return elapsed

    def _finish(self, run, seconds: float, epochs: int) -> TrainResult:
        evaluate = self._api("evaluate")
        held_out = self.held_out = evaluate(self.model, self.test_x, self.test_y, self.config)
        on_train = evaluate(self.model, self.train_x, self.train_y, self.config)
        result = TrainResult(
            trainer=self.options.trainer,
            dataset=self.dataset.name,
            device=self.device,
            epochs=epochs,
            test_accuracy=held_out.accuracy,
            test_cost=held_out.cost,
            train_cost=on_train.cost,
            seconds=seconds,
            samples_per_s=len(self.train_y) * epochs / seconds if seconds else 0.0,
            figures=self.figures,
            history=self.history,
        )
        if run is not None:
            from labclient.training.record import log_results

            log_results(run, self, result, on_train.accuracy)
        else:
            from labclient.training.record import check_round_trip

            result.weights_file_bytes = check_round_trip(self)
        return result

    def _log_setup(self, run) -> None:
        from labclient.training.record import log_setup

        log_setup(run, self)


class _StepLog:
    """Collects per-step costs; reads them off the device every STEP_FLUSH_EVERY steps and checks for NaN."""

    def __init__(self, run, log_every: int, first_step: int, reporter):
        self.run, self.log_every, self.first_step, self.reporter = run, log_every, first_step, reporter
        self.pending: list = []
        self.values: list[float] = []

    def add(self, cost) -> None:
        self.pending.append(cost)
        if len(self.pending) >= STEP_FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        import torch

        values = torch.stack(self.pending).float().cpu().tolist()
        self.pending.clear()
        first = self.first_step + len(self.values)
        bad = next((index for index, value in enumerate(values) if not math.isfinite(value)), len(values))
        self.values.extend(values[: bad + 1])
        if self.run is not None:  # one journal write for the group, not one per step
            skip = -first % self.log_every
            self.run.log_metric_steps(
                "step_train_cost", values[skip : bad : self.log_every], first + skip, self.log_every
            )
        if bad < len(values):
            _check_finite(values[bad], first + bad)
        self.reporter.steps(len(values), values[-1])


def _check_finite(value: float, step: int | None = None) -> None:
    if value != value or value in (float("inf"), float("-inf")):
        where = f" at step {step}" if step is not None else ""
        raise TrainingDiverged(
            f"the cost became {value}{where}; training stopped and the run is marked failed",
            "learning rate too high? try a smaller --lr",
        )

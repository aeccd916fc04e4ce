"""Orchestration of a comparison and its JSON (format `labcompare/1`, keys documented in the README)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labclient.compare import evaluate as ev
from labclient.compare import stats
from labclient.compare.models import (
    Side,
    check_compatible,
    load_data,
    load_side,
    pick_references,
)
from labclient.config import get_settings
from labclient.models.evaluation import EVAL_BATCH, Evaluation, evaluate
from labserver.tags import DEVICE_TAG, KIND_TAG, TRAINER_TAG, hardware_tag

FORMAT = "labcompare/1"
CLAIM_TOLERANCE = 0.005  # claimed vs measured accuracy: beyond half a percentage point is flagged
OVERFIT_COST_RATIO = 1.2  # held-out cost 20% above training cost ...
OVERFIT_ACCURACY_GAP = 0.02  # ... and held-out accuracy 2 points below training accuracy
TRAIN_SUBSET = 10_000
PROBE_SAMPLES = 500
LATENCY_BATCH = 256
HARDWARE_TAGS = ("cpu.model", "cpu.cores", "memory_gb", "gpu.name", "gpu.memory_gb", "torch", "os")


@dataclass
class CompareOptions:
    references: tuple[str, ...] = ()
    team: str | None = None
    data_dir: Path | None = None
    tracking_uri: str | None = None
    report: Path | None = None
    log: bool = False
    all_params: bool = False
    output_dir: Path | None = None


@dataclass
class Comparison:
    data: dict[str, Any]
    a: Side
    b: Side
    extras: dict[str, Any] = field(default_factory=dict)  # arrays the figures need, not part of the JSON

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=True, default=_plain)


def run_comparison(options: CompareOptions) -> Comparison:
    settings = get_settings()
    if options.report:
        from labclient.compare.document import check_report_path

        check_report_path(options.report)  # before any work: a typo must not cost a full comparison
    ref_a, ref_b = pick_references(options.references, options.team, settings)
    a = load_side("a", ref_a, options.tracking_uri, settings)
    b = load_side("b", ref_b, options.tracking_uri, settings)
    dataset_name = check_compatible(a, b)
    dataset = load_data(dataset_name, a.input_shape, a.num_classes, options.data_dir, settings)
    comparison = compare_loaded(a, b, dataset)
    folder = options.output_dir or _figure_folder(options, settings, a, b)
    from labclient.compare import figures

    comparison.data["figures"] = figures.render_all(comparison, folder)
    if options.report:
        from labclient.compare.document import write_report

        write_report(comparison, Path(options.report), all_params=True)
    if options.log:
        from labclient.compare.record import log_comparison

        comparison.data["logged_run"] = log_comparison(comparison, options, settings)
    return comparison


def compare_loaded(a: Side, b: Side, dataset) -> Comparison:
    """Everything but figures and output, for two loaded models and the dataset they share."""
    classes = dataset.num_classes
    # samples per forward pass: fewer only where a layer would hold too many values (memory, not speed)
    rows = {side.key: ev.rows_per_pass(side.model.spec, side.input_shape, EVAL_BATCH) for side in (a, b)}

    def evaluated(side: Side, x: np.ndarray, y: np.ndarray) -> Evaluation:
        return evaluate(side.model.module, x, y, ev.cost_function(side.model.cost), classes, rows[side.key])

    eval_a, eval_b = evaluated(a, dataset.test_x, dataset.test_y), evaluated(b, dataset.test_x, dataset.test_y)
    train_x, train_y = dataset.train_x[:TRAIN_SUBSET], dataset.train_y[:TRAIN_SUBSET]
    on_train = {side.key: evaluated(side, train_x, train_y) for side in (a, b)}
    probe = min(ev.probe_rows(side.model.spec, side.input_shape, PROBE_SAMPLES) for side in (a, b))
    fingerprint = dataset.fingerprint[:16]
    agreed = stats.agreement(eval_a.predictions, eval_b.predictions, dataset.test_y)
    data = {
        "format": FORMAT,
        "models": {side.key: _model_info(side) for side in (a, b)},
        "hyperparameters": _hyperparameters(a.params, b.params),
        "training": {side.key: _training(side) for side in (a, b)},
        "evaluation": {
            "dataset": dataset.name,
            "fingerprint": fingerprint,
            "samples": int(len(dataset.test_y)),
            "input_shape": list(dataset.input_shape),
            "num_classes": classes,
            "a": _measured(a, eval_a, fingerprint),
            "b": _measured(b, eval_b, fingerprint),
            "both_correct": agreed.both_correct,
            "only_a_correct": agreed.only_a_correct,
            "only_b_correct": agreed.only_b_correct,
            "both_wrong": agreed.both_wrong,
            "agreement": agreed.agreement,
            "disagreements": agreed.disagreements,
            "mcnemar_p": agreed.mcnemar_p,
            "significant": agreed.mcnemar_p < stats.SIGNIFICANCE,
        },
        "generalisation": {
            side.key: _generalisation(on_train[side.key], evaluation, len(train_y))
            for side, evaluation in ((a, eval_a), (b, eval_b))
        },
        "weights": weight_diff(a, b),
        "representations": _representations(a, b, dataset.test_x[:probe]),
        "compute": {side.key: _compute(side, dataset.test_x[: min(LATENCY_BATCH, rows[side.key])]) for side in (a, b)},
        "figures": {},
        "logged_run": None,
    }
    data["summary"] = _summary(data, a.name, b.name)
    extras = {"dataset": dataset, "predictions": {"a": eval_a.predictions, "b": eval_b.predictions}}
    return Comparison(data, a, b, extras)


def _model_info(side: Side) -> dict[str, Any]:
    meta = side.meta
    return {
        "name": side.name,
        "run_id": side.fetched.run_id,
        "team": meta.get("team"),
        "trainer": side.params.get("trainer") or side.tags.get(TRAINER_TAG),
        "kind": side.tags.get(KIND_TAG),
        "dataset": side.dataset,
        "cost_function": side.model.cost,
        "weights_format": meta.get("weights_format"),
        "snapshot": str(side.fetched.path),
    }


def _hyperparameters(params_a: dict, params_b: dict) -> dict[str, dict]:
    differing, same = {}, {}
    for key in sorted(set(params_a) | set(params_b)):
        value_a, value_b = params_a.get(key), params_b.get(key)
        if value_a == value_b:
            same[key] = value_a
        else:
            differing[key] = {"a": value_a, "b": value_b}
    return {"differing": differing, "same": same}


def _training(side: Side) -> dict[str, Any]:
    metrics, history = side.metrics, side.meta.get("history", {})
    epochs = side.params.get("epochs")
    return {
        "epochs": int(epochs) if str(epochs).isdigit() else len(history.get("epoch_train_cost", [])) or None,
        "final_train_cost": metrics.get("train_cost"),
        "training_time_s": metrics.get("training_time_s"),
        "samples_per_s": metrics.get("samples_per_s"),
        "device": side.params.get("device") or side.tags.get(DEVICE_TAG),
        "hardware": {key: side.tags[hardware_tag(key)] for key in HARDWARE_TAGS if hardware_tag(key) in side.tags},
        "curves": {key: [value for _, value in points] for key, points in history.items() if key.startswith("epoch_")},
    }


def _measured(side: Side, evaluation: Evaluation, fingerprint: str) -> dict[str, Any]:
    claimed = side.metrics.get("test_accuracy")
    comparable = claimed is not None and side.params.get("dataset_fingerprint") == fingerprint
    difference = evaluation.accuracy - claimed if claimed is not None else None
    return {
        "accuracy": evaluation.accuracy,
        "cost": evaluation.cost,
        "cost_function": side.model.cost,
        "per_class_accuracy": evaluation.per_class_accuracy,
        "confusion": evaluation.confusion.tolist(),
        "claimed_accuracy": claimed,
        "claim_difference": difference,
        "claim_comparable": comparable,
        "claim_flagged": bool(comparable and abs(difference) > CLAIM_TOLERANCE),
    }


def _generalisation(on_train: Evaluation, held_out: Evaluation, train_samples: int) -> dict[str, Any]:
    overfitting = (
        held_out.cost > OVERFIT_COST_RATIO * on_train.cost
        and held_out.accuracy < on_train.accuracy - OVERFIT_ACCURACY_GAP
    )
    return {
        "train_samples": train_samples,
        "train_cost": on_train.cost,
        "test_cost": held_out.cost,
        "gap": held_out.cost - on_train.cost,
        "train_accuracy": on_train.accuracy,
        "test_accuracy": held_out.accuracy,
        "overfitting": bool(overfitting),
    }


def weight_diff(a: Side, b: Side) -> dict[str, Any]:
    state_a = {name: t.numpy() for name, t in a.model.module.state_dict().items()}
    state_b = {name: t.numpy() for name, t in b.model.module.state_dict().items()}
    layers = []
    for name in list(state_a) + [n for n in state_b if n not in state_a]:
        ta, tb = state_a.get(name), state_b.get(name)
        row = {
            "name": name,
            "shape_a": list(ta.shape) if ta is not None else None,
            "shape_b": list(tb.shape) if tb is not None else None,
            "parameters_a": int(ta.size) if ta is not None else None,
            "parameters_b": int(tb.size) if tb is not None else None,
            "dtype_a": str(ta.dtype) if ta is not None else None,
            "dtype_b": str(tb.dtype) if tb is not None else None,
            "match": ta is not None and tb is not None and ta.shape == tb.shape,
            "l2_distance": None,
            "relative_difference": None,
            "cosine_similarity": None,
        }
        if row["match"]:
            row.update(stats.tensor_diff(ta, tb))
        layers.append(row)
    same_layers = [layer.get("type") for layer in a.model.spec["layers"]] == [
        layer.get("type") for layer in b.model.spec["layers"]
    ]
    return {
        "same_architecture": bool(same_layers and all(row["match"] for row in layers)),
        "layer_types_a": [layer.get("type") for layer in a.model.spec["layers"]],
        "layer_types_b": [layer.get("type") for layer in b.model.spec["layers"]],
        "layers": layers,
        "matching": [row["name"] for row in layers if row["match"]],
        "only_in_a": [name for name in state_a if name not in state_b],
        "only_in_b": [name for name in state_b if name not in state_a],
        "shape_mismatch": [row["name"] for row in layers if row["shape_a"] and row["shape_b"] and not row["match"]],
        "norms": {
            "a": {n: stats.norm_stats(t) for n, t in state_a.items()},
            "b": {n: stats.norm_stats(t) for n, t in state_b.items()},
        },
    }


def _representations(a: Side, b: Side, probe: np.ndarray) -> dict[str, Any]:
    reps_a = ev.representations(a.model.module, a.model.spec, probe)
    reps_b = ev.representations(b.model.module, b.model.spec, probe)
    matrix = ev.cka_matrix(reps_a, reps_b)
    names_a, names_b = list(reps_a), list(reps_b)
    best = [
        {"a": name, "b": names_b[int(np.argmax(row))], "cka": float(max(row))} for name, row in zip(names_a, matrix)
    ]
    return {
        "probe_samples": int(len(probe)),
        "layers_a": names_a,
        "layers_b": names_b,
        "cka": matrix,
        "best_match": best,
    }


def _compute(side: Side, batch: np.ndarray) -> dict[str, Any]:
    from labclient.models.compute import measure

    figures = measure(side.model.module, side.input_shape)
    file_bytes = side.fetched.entry.files[side.meta["weights"]]["size"]
    return {
        "parameters": figures.parameters,
        "macs_per_sample": figures.macs_per_sample,
        "weights_file_bytes": file_bytes,
        "tensor_bytes": figures.weights_bytes,
        "bytes_per_parameter": figures.bytes_per_parameter,
        "file_bytes_per_parameter": file_bytes / figures.parameters if figures.parameters else None,
        "latency_ms_per_batch": ev.latency_ms(side.model.module, batch),
        "latency_batch_size": int(len(batch)),
        "latency_device": "cpu",
    }


def _summary(data: dict, name_a: str, name_b: str) -> list[str]:
    evaluation = data["evaluation"]
    acc_a, acc_b = evaluation["a"]["accuracy"], evaluation["b"]["accuracy"]
    better = name_a if acc_a > acc_b else name_b
    verdict = "a significant difference" if evaluation["significant"] else "not a significant difference"
    lines = [
        f"held-out accuracy on {evaluation['samples']} {evaluation['dataset']} samples: {name_a} {acc_a:.4f}, {name_b} "
        f"{acc_b:.4f}"
        + (
            f"; {better} is ahead, {verdict} (McNemar p = {evaluation['mcnemar_p']:.3g})"
            if acc_a != acc_b
            else " (equal)"
        ),
        f"the models agree on {evaluation['agreement']:.1%} of the samples ({evaluation['disagreements']} "
        "disagreements)",
    ]
    for key, name in (("a", name_a), ("b", name_b)):
        measured = evaluation[key]
        if measured["claim_flagged"]:
            lines.append(
                f"{name} claims {measured['claimed_accuracy']:.4f} but measures {measured['accuracy']:.4f} on the same "
                "data"
            )
        if data["generalisation"][key]["overfitting"]:
            lines.append(f"{name} looks overfitted: held-out cost well above its training cost")
    return lines


def _figure_folder(options: CompareOptions, settings, a: Side, b: Side) -> Path:
    if options.report:
        report = Path(options.report)
        return report.parent / f"{report.stem}_files"
    slug = re.sub(r"[^a-z0-9-]+", "_", f"{a.name}--{b.name}".lower())
    return Path(settings.cache_dir).expanduser() / "comparisons" / slug


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")

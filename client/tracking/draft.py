"""The automatic dev-diary draft: a Markdown entry written from what a run logged.

It reads only the run's params, metrics and tags (an `mlflow.entities.Run`), so `train`, `push` and a
re-draft all write the same entry. MLflow's UI renders it with showdown (GitHub flavour: tables work)
and keeps `<img src>`, so the cost curve shows inline through the UI's own `get-artifact` route.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

from labserver.tags import DATASET_TAG, DEVICE_TAG, TRAINER_TAG, hardware_tag
from labserver.units import human_bytes, human_count

# Params shown in their own rows, or describing the data rather than the model
_NAMED = ("lr", "batch_size", "epochs", "optimizer", "momentum", "cost", "weight_decay", "seed")
_NOT_HYPERPARAMETERS = {"trainer", "device", "log_every", "dataset"}

_COST_MEANING = {
    "cross_entropy": "the cross-entropy, −ln p averaged over the images, where p is the probability the model gives "
    "the "
    "right digit",
    "quadratic": "the quadratic cost ½‖y − a‖², half the squared distance between the ten output activations a and the "
    "one-hot target y, averaged over the images",
}

PLOTS = {
    "cost": "plots/cost_curve.png",
    "accuracy": "plots/accuracy.png",
    "confusion": "plots/confusion_matrix.png",
    "misclassified": "plots/misclassified.png",
}
_PLOT_TITLES = {
    "accuracy": "accuracy per epoch",
    "confusion": "confusion matrix",
    "misclassified": "misclassified digits",
}


def artifact_link(run_id: str, path: str) -> str:
    """A link the MLflow UI resolves against its own address: the route its artifact viewer uses."""
    return f"get-artifact?path={quote(path, safe='')}&run_uuid={quote(run_id, safe='')}"


def draft_entry(
    run,
    *,
    note: str | None = None,
    architecture: str | None = None,
    plots: list[str] | None = None,
    when: dt.datetime | None = None,
) -> str:
    """The Markdown entry for a logged run; `plots` are the artifact paths of the plots it logged."""
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    name = run.info.run_name or run.info.run_id
    logged_plots = PLOTS.values() if plots is None else plots
    when = when or dt.datetime.now()
    sections = [
        _title(name, params, metrics),
        (
            f"_Drafted by labclient on {when:%Y-%m-%d %H:%M}. Edit it in the MLflow UI or with "
            f"`labclient diary {name} --edit`._"
        ),
    ]
    if note and note.strip():
        sections.append("## Our note\n\n" + note.strip())
    sections += [
        "## What we trained\n\n" + _what_was_trained(params, tags, architecture),
        "## Hyperparameters\n\n" + _table(("hyperparameter", "value"), _hyperparameters(params)),
        "## Results\n\n" + _results(params, metrics),
        _plots(run.info.run_id, name, logged_plots),
        "## Compute\n\n" + _table(("what", "figure"), _compute(params, metrics, tags)),
        "## What we learned",
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def describe_architecture(spec: dict | None) -> str | None:
    """'Flatten → Linear(784→30) → Sigmoid → ...' from a labspec/1 model spec."""
    if not spec or not spec.get("layers"):
        return None
    parts = []
    for layer in spec["layers"]:
        kind = layer.get("type", "?")
        if kind == "Linear":
            parts.append(f"Linear({layer.get('in_features')}→{layer.get('out_features')})")
        elif kind == "Conv2d":
            size = layer.get("kernel_size")
            size = "x".join(map(str, size)) if isinstance(size, list) else size
            parts.append(f"Conv2d({layer.get('in_channels')}→{layer.get('out_channels')}, {size})")
        else:
            parts.append(kind)
    return " → ".join(parts)


def _title(name: str, params: dict, metrics: dict) -> str:
    what = f"{params.get('trainer', 'a model')} on {params.get('dataset', 'unknown data')}"
    accuracy = metrics.get("test_accuracy")
    score = f", {accuracy:.2%} held-out accuracy" if accuracy is not None else ""
    return f"# {name}: {what}{score}"


def _what_was_trained(params: dict, tags: dict, architecture: str | None) -> str:
    trainer = params.get("trainer") or tags.get(TRAINER_TAG) or "a model"
    text = f"**{trainer}**" + (f", layers {architecture}," if architecture else "")
    dataset = params.get("dataset") or tags.get(DATASET_TAG)
    if not dataset:
        return text + " trained on data this run did not describe."
    text += f" trained on **{dataset}**"
    if "dataset_train_size" in params:
        shape = params.get("dataset_input_shape", "?").replace("x", "×")
        text += (
            f": {int(params['dataset_train_size']):,} training and {int(params['dataset_test_size']):,} held-out "
            f"images ({shape}), {params.get('dataset_num_classes', '?')} classes"
        )
    fingerprint = params.get("dataset_fingerprint")
    if fingerprint:
        published = "the published split" if params.get("dataset_canonical") == "True" else "not the published split"
        text += f"; data fingerprint `{fingerprint}`, {published}"
    return text + "."


def _hyperparameters(params: dict) -> list[tuple[str, str]]:
    rows = [
        ("learning rate η", params.get("lr")),
        ("mini-batch size", params.get("batch_size")),
        ("epochs", params.get("epochs")),
        ("optimizer", _optimizer(params)),
        ("cost function", params.get("cost")),
        ("weight decay", params.get("weight_decay") if _nonzero(params.get("weight_decay")) else None),
        ("seed", params.get("seed")),
    ]
    others = sorted(
        (f"`{key}`", value)
        for key, value in params.items()
        if key not in _NAMED and key not in _NOT_HYPERPARAMETERS and not key.startswith("dataset_")
    )
    return [(label, str(value)) for label, value in rows + others if value is not None]


def _optimizer(params: dict) -> str | None:
    optimizer = params.get("optimizer")
    if optimizer and _nonzero(params.get("momentum")):
        return f"{optimizer}, momentum {params['momentum']}"
    return optimizer


def _nonzero(value: str | None) -> bool:
    try:
        return value is not None and float(value) != 0.0
    except ValueError:
        return True


def _results(params: dict, metrics: dict) -> str:
    accuracy, cost = metrics.get("test_accuracy"), metrics.get("test_cost")
    if accuracy is None or cost is None:
        return "This run logged no held-out accuracy and cost."
    tested = params.get("dataset_test_size")
    right = f" ({round(accuracy * int(tested)):,} of {int(tested):,} right)" if tested else ""
    train_accuracy, train_cost = metrics.get("train_accuracy"), metrics.get("train_cost")
    rows = [
        ("accuracy", f"{accuracy:.2%}{right}", f"{train_accuracy:.2%}" if train_accuracy is not None else "–"),
        ("cost", f"{cost:.4f}", f"{train_cost:.4f}" if train_cost is not None else "–"),
    ]
    meaning = _COST_MEANING.get(params.get("cost", ""), "the trainer's cost function averaged over the images")
    explanation = (
        "**Accuracy** is the fraction of held-out images whose highest output is the right digit: it only counts right "
        f"and wrong answers. **Cost** is {meaning}. The cost also moves when the model grows more or less confident "
        "without changing a single answer, so the two measure different things and the cost is not 1 − accuracy "
        f"(here 1 − accuracy = {1 - accuracy:.4f}, while the cost is {cost:.4f})."
    )
    if train_accuracy is not None and train_accuracy - accuracy > 0.02:
        explanation += (
            f" Training-set accuracy is {100 * (train_accuracy - accuracy):.1f} points above held-out "
            "accuracy: the model fits its training images better than new ones."
        )
    return _table(("final model", "held-out set", "training set"), rows) + "\n\n" + explanation


def _plots(run_id: str, name: str, logged: list[str]) -> str:
    logged = list(logged)
    lines = ["## Cost curve"]
    if PLOTS["cost"] in logged:
        lines.append(f"![cost curve of {name}]({artifact_link(run_id, PLOTS['cost'])})")
        lines.append("Training cost per step (faint) and per epoch, and the held-out cost after each epoch.")
    else:
        lines.append("No cost curve was logged.")
    others = [
        f"[{_PLOT_TITLES[key]}]({artifact_link(run_id, path)})"
        for key, path in PLOTS.items()
        if key in _PLOT_TITLES and path in logged
    ]
    if others:
        lines.append("More plots among the run's artifacts: " + ", ".join(others) + ".")
    return "\n\n".join(lines)


def _compute(params: dict, metrics: dict, tags: dict) -> list[tuple[str, str]]:
    rows = [("device", _device(params, tags))]
    seconds, epochs = metrics.get("training_time_s"), params.get("epochs")
    if seconds is not None:
        per_epoch = f" ({_seconds(seconds / int(epochs))} per epoch)" if epochs and int(epochs) > 1 else ""
        rows.append(("training time", f"{_seconds(seconds)} for {epochs or '?'} epoch(s){per_epoch}"))
    if metrics.get("samples_per_s") is not None:
        rows.append(("throughput", f"{metrics['samples_per_s']:,.0f} training samples/s"))
    parameters = metrics.get("compute_parameters")
    if parameters is not None:
        width = metrics.get("compute_bytes_per_parameter")
        rows.append(("parameters", f"{int(parameters):,}" + (f" ({width:g} bytes each)" if width else "")))
    if metrics.get("compute_macs_per_sample") is not None:
        flops = metrics.get("compute_flops_per_sample", 0)
        macs = human_count(metrics["compute_macs_per_sample"])
        rows.append(("MACs per sample", f"{macs} ({human_count(flops)} FLOPs per forward pass)"))
    if metrics.get("compute_training_flops") is not None:
        rows.append(("training compute", f"{human_count(metrics['compute_training_flops'])} FLOPs"))
    rows += _file_size(metrics, parameters)
    return rows


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value >= 10 else f"{value:.3g} s"


def _device(params: dict, tags: dict) -> str:
    device = tags.get(hardware_tag("device")) or params.get("device") or tags.get(DEVICE_TAG) or "unknown"
    cpu = tags.get(hardware_tag("cpu.model"))
    cores, memory = tags.get(hardware_tag("cpu.cores")), tags.get(hardware_tag("memory_gb"))
    host = ", ".join(
        part for part in (cpu, f"{cores} cores" if cores else None, f"{memory} GB memory" if memory else None) if part
    )
    gpu = tags.get(hardware_tag("gpu.name"))
    if device in ("cuda", "mps") and gpu:
        gpu_memory = tags.get(hardware_tag("gpu.memory_gb"))
        accelerator = f"{device}: {gpu}" + (f" ({gpu_memory} GB)" if gpu_memory else "")
        return f"{accelerator}; host {host}" if host else accelerator
    return f"{device}: {host}" if host else device


def _file_size(metrics: dict, parameters: float | None) -> list[tuple[str, str]]:
    expected, actual = metrics.get("weights_expected_bytes"), metrics.get("weights_file_bytes")
    if expected is None or actual is None:
        return []
    width = metrics.get("compute_bytes_per_parameter")
    product = f" = {int(parameters):,} parameters × {width:g} bytes" if parameters and width else ""
    extra = actual - expected
    text = (
        f"expected {human_bytes(expected)}{product}; actual {human_bytes(actual)}, "
        f"{human_bytes(extra)} more for the safetensors header and the spec and config stored inside it"
    )
    return [("weight file", text)]


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    def line(cells) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(row) for row in rows)])

"""What a training run records besides its step metrics: params, hardware, compute, weights, spec, plots."""

from __future__ import annotations

import json
from pathlib import Path

from labclient.errors import LabError
from labclient.models import spec
from labclient.training import hardware
from labserver.tags import hardware_tag


def log_setup(run, session) -> None:
    config = session.config.model_dump(mode="json")
    run.log_params(
        {**config, "trainer": session.options.trainer, "device": session.device, **session.dataset.describe()}
    )
    data = session.dataset
    for split, context, labels in (("train", "training", data.train_y), ("test", "evaluation", data.test_y)):
        run.log_dataset(
            f"{data.name}-{split}",
            data.fingerprint[:16],
            data.source,
            context,
            profile={"num_rows": len(labels), "input_shape": list(data.input_shape), "num_classes": data.num_classes},
        )
    facts = hardware.collect(session.device, _code_path(session.trainer))
    run.set_tags({hardware_tag(key): value for key, value in facts.items()})
    run.log_json(facts, "environment.json")
    figures = session.figures
    run.log_metrics(
        {
            "compute_parameters": figures.parameters,
            "compute_flops_per_sample": figures.flops_per_sample,
            "compute_macs_per_sample": figures.macs_per_sample,
            "compute_bytes_per_parameter": figures.bytes_per_parameter,
            "weights_expected_bytes": figures.weights_bytes,
        }
    )
    if session.options.note:
        # shown while training runs, and kept if it fails; the drafted entry replaces it at the end
        run.note(session.options.note)


def _code_path(trainer) -> Path | None:
    location = getattr(trainer, "__file__", None)
    return Path(location).parent if location else None


def model_spec(session) -> dict | None:
    try:
        return spec.describe(session.model, session.dataset.input_shape, session.dataset.num_classes)
    except spec.SpecError as err:
        session.reporter.warn(f"no model spec: {err.one_line()}")
        return None


def checkpoint_config(session) -> dict:
    """The config that travels with the checkpoint: everything needed to retrain or evaluate it."""
    return {
        "trainer": session.options.trainer,
        "config": session.config.model_dump(mode="json"),
        "dataset": session.dataset.describe(),
    }


def log_results(run, session, result, train_accuracy: float) -> None:
    samples_seen = len(session.train_y) * result.epochs
    run.log_metrics(
        {
            "test_accuracy": result.test_accuracy,
            "test_cost": result.test_cost,
            "train_accuracy": train_accuracy,
            "train_cost": result.train_cost,
            "training_time_s": result.seconds,
            "samples_per_s": result.samples_per_s,
            "compute_training_flops": result.figures.training_flops(samples_seen),
        },
        step=result.epochs,
    )
    described = model_spec(session)
    weights = run.log_weights(session.model, spec=described, config=checkpoint_config(session))
    result.weights_file_bytes = weights.stat().st_size
    run.log_metrics({"weights_file_bytes": result.weights_file_bytes})
    logged_plots = _log_plots(run, session, train_accuracy)
    from labclient.tracking.draft import describe_architecture

    # drafted where the run's figures are, on the store, once they all arrived (at sync time for an offline run)
    run.draft_diary(session.options.note, describe_architecture(described), logged_plots)


def _log_plots(run, session, train_accuracy: float) -> list[str]:
    """Cost, accuracy, confusion matrix and misclassified digits under plots/; returns their artifact paths."""
    from labclient.tracking.draft import PLOTS  # the draft links the plots by these paths
    from labclient.training import plots

    folder = run.workdir / "plots"
    folder.mkdir(exist_ok=True)
    path = {key: folder / Path(artifact).name for key, artifact in PLOTS.items()}
    plots.cost_curve(session.step_costs, session.history, path["cost"], title=run.name)
    plots.accuracy_curve(session.history, path["accuracy"], title=run.name, train_accuracy=train_accuracy)
    drawn = ["cost", "accuracy"]
    predictions = getattr(session.held_out, "predictions", None)  # a team's own evaluate() may not return them
    if predictions is not None:
        if hasattr(predictions, "cpu"):  # a tensor, from a team's own evaluate(): maybe on the GPU
            predictions = predictions.cpu().numpy()
        labels = session.test_y.cpu().numpy()
        plots.confusion_matrix(labels, predictions, session.dataset.num_classes, path["confusion"])
        plots.misclassified_grid(session.test_x.cpu().numpy(), labels, predictions, path["misclassified"])
        drawn += ["confusion", "misclassified"]
    for key in drawn:
        run.log_artifact(path[key], "plots")
    return [PLOTS[key] for key in drawn]


def check_round_trip(session) -> int:
    """Dry run: save the weights, rebuild the model from its spec alone, and check it predicts the same."""
    import tempfile

    import torch
    from safetensors.torch import load_file

    from labclient.models.loading import build_model
    from labclient.models.weights import save_safetensors

    described = model_spec(session)
    with tempfile.TemporaryDirectory() as folder:
        path = save_safetensors(session.model, Path(folder) / "model.safetensors", {"spec": described or {}})
        size = path.stat().st_size
        if described is None:
            return size
        rebuilt = build_model(json.loads(json.dumps(described)), load_file(str(path)))  # the path every loader takes
    session.model.eval()
    rebuilt.eval()
    sample = session.test_x[:64].cpu()
    with torch.no_grad():
        if not torch.allclose(session.model.cpu()(sample), rebuilt(sample), atol=1e-6):
            raise LabError("the model rebuilt from its spec predicts differently", "report this as a bug")
    return size

"""`labclient train`, `labclient ui` and `labclient list-trainers`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from labclient.errors import ConfigError


def _parse_params(values: tuple[str, ...]) -> dict:
    parsed = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {item!r} is not KEY=VALUE", "for example --param hidden=[100]")
        try:
            parsed[key.strip().replace("-", "_")] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key.strip().replace("-", "_")] = raw
    return parsed


@click.command()
@click.option("--team", help="Your team (an MLflow experiment). Default: LAB_TEAM or the config file.")
@click.option(
    "--trainer", default="mnist-mlp", show_default=True, help="mnist-mlp, mnist-cnn, logreg, or path/to/file.py"
)
@click.option("--dataset", default="mnist", show_default=True, help="mnist, or digits (bundled, works offline)")
@click.option("--epochs", type=int, help="Passes over the training set.")
@click.option("--lr", type=float, help="Learning rate (eta).")
@click.option("--batch-size", type=int, help="Mini-batch size.")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]))
@click.option("--seed", type=int)
@click.option(
    "--param", "params", multiple=True, metavar="KEY=VALUE", help="Any other trainer setting, e.g. hidden=[100]."
)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@click.option("--data-dir", type=click.Path(path_type=Path), help="Folder with the MNIST IDX files (LAB_DATA_DIR).")
@click.option("--note", help="Your own words for the run's dev-diary entry.")
@click.option("--tracking-uri", help="Log to this server or database instead of the configured one.")
@click.option("--dry-run", is_flag=True, help="Train two batches, check the model round-trips, log nothing.")
@click.option(
    "--offline",
    is_flag=True,
    default=None,
    help="Contact no server: journal the run locally; `labclient sync` publishes it.",
)
def train(
    team,
    trainer,
    dataset,
    epochs,
    lr,
    batch_size,
    optimizer,
    seed,
    params,
    device,
    data_dir,
    note,
    tracking_uri,
    dry_run,
    offline,
):
    """Train a model and log the run, its hardware, compute figures and weights."""
    from labclient.training.loop import TrainOptions
    from labclient.training.loop import train as run_training
    from labclient.training.progress import print_table, summary_rows

    overrides = {
        **_parse_params(params),
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "optimizer": optimizer,
        "seed": seed,
    }
    options = TrainOptions(
        team=team,
        trainer=trainer,
        dataset=dataset,
        data_dir=data_dir,
        device=device,
        overrides=overrides,
        note=note,
        dry_run=dry_run,
        tracking_uri=tracking_uri,
        offline=offline,
    )
    result = run_training(options)
    print_table(summary_rows(result), title="dry run" if dry_run else f"run {result.run_name}")
    if result.pending:
        why, when = (
            "it was trained offline" if result.offline else "the tracking server did not answer in time",
            "when the server is reachable",
        )
        if result.problem and "the tracking store's disk is full" in result.problem:
            why, when = "the tracking store's disk is full", "once there is free space where the store keeps its data"
        click.echo(
            f"The run is stored locally and pending ({why}): {result.journal}\n"
            f"Nothing is lost. Run `labclient sync` {when}; `labclient status` lists pending runs."
        )
    elif not dry_run:
        from labclient.config import get_settings
        from labclient.store.target import resolve_target

        if not resolve_target(get_settings(), tracking_uri).is_server:
            click.echo("Open the MLflow UI on this store with: labclient ui")


@click.command()
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
def ui(port, host):
    """Open MLflow's web UI on the local (embedded) store."""
    from labclient.config import get_settings

    settings = get_settings()
    settings.embedded_artifact_root.mkdir(parents=True, exist_ok=True)
    click.echo(f"store: {settings.embedded_tracking_uri}")
    click.echo(f"MLflow UI: http://{host}:{port}/#/experiments?workflowType=machine_learning  (Ctrl-C stops it)")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        settings.embedded_tracking_uri,
        "--default-artifact-root",
        settings.embedded_artifact_root.as_uri(),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    os.execvpe(command[0], command, env)


@click.command("list-trainers")
def list_trainers():
    """List built-in trainers and datasets."""
    from labclient.training.data import DATASETS
    from labtrainers import BUILTIN

    click.echo("trainers:")
    for name, module in BUILTIN.items():
        click.echo(f"  {name:<10} {module}")
    click.echo("datasets:")
    for name, description in DATASETS.items():
        click.echo(f"  {name:<10} {description}")

"""`labclient fetch`, `push`, `compare` and `cache`: one small function each around labclient.exchange.fetch,
labclient.compare and labclient.exchange.cache. Only click and light labclient modules are imported here; torch and
mlflow load inside the commands that need them (a cache hit of `fetch red/run-3` needs neither).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from labclient.errors import CorruptCacheEntry
from labclient.safe_text import one_line

PROGRESS_MIN_BYTES = 1 << 20


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _interactive() -> bool:
    return sys.stdin.isatty()


def _offer_refetch(err: CorruptCacheEntry) -> bool:
    """On a terminal, offer to download a corrupt cache entry again; elsewhere the error says how."""
    if not (err.reference and _interactive()):
        return False
    click.echo(f"error: {one_line(err.one_line())}", err=True)
    return click.confirm(f"Download {err.reference} again now?", default=True, err=True)


class _DownloadBar:
    """A rich progress bar for files of a megabyte or more, shown only on a terminal."""

    def __init__(self):
        self.console = _console(stderr=True)
        self.progress = None
        self.tasks: dict[str, object] = {}

    def __call__(self, path: str, done: int, total: int) -> None:
        if total < PROGRESS_MIN_BYTES or not self.console.is_terminal:
            return
        if self.progress is None:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=self.console,
            )
            self.progress.start()
        if path not in self.tasks:
            self.tasks[path] = self.progress.add_task(path, total=total)
        self.progress.update(self.tasks[path], completed=done)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _offering_refetch(action, again):
    """action(); when it meets a corrupt cache entry and the user agrees (on a terminal), again(reference), which
    downloads that run anew. Elsewhere the error itself says how to download it again."""
    try:
        return action()
    except CorruptCacheEntry as err:
        if not _offer_refetch(err):
            raise
        return again(err.reference)


@click.command()
@click.argument("reference")
@click.option("--force", is_flag=True, help="Download again even if the run is cached.")
@click.option("--tracking-uri", help="Fetch from this server or database instead of the configured one.")
def fetch(reference, force, tracking_uri):
    """Fetch a run's weights into the verified local cache: TEAM/run-N, TEAM/latest, TEAM/best or a run id."""
    from labserver.units import human_bytes

    bar = _DownloadBar()
    try:
        from labclient.exchange.fetch import fetch as fetch_run

        result = _offering_refetch(
            lambda: fetch_run(reference, force=force, tracking_uri=tracking_uri, on_progress=bar),
            lambda corrupt: fetch_run(corrupt, force=True, tracking_uri=tracking_uri, on_progress=bar),
        )
    finally:
        bar.close()
    entry = result.entry
    how = (
        f"downloaded and verified in {result.seconds:.2f} s"
        if result.downloaded
        else f"already cached, verified in {result.seconds:.2f} s"
    )
    click.echo(f"{one_line(entry.name)} ({entry.run_id}): {how}")
    for artifact_path, info in sorted(entry.files.items()):
        click.echo(f"  {one_line(artifact_path):<28} {human_bytes(info['size']):>10}  sha256 {info['sha256'][:16]}")
    meta = entry.meta
    accuracy = meta.get("metrics", {}).get("test_accuracy")
    claimed = f", claimed held-out accuracy {accuracy:.4f}" if accuracy is not None else ""
    click.echo(
        f"total {human_bytes(entry.size)}, {meta.get('parameters', 0):,} parameters "
        f"({meta.get('weights_format')}){claimed}"
    )
    click.echo(f"cached at {entry.path}")
    click.echo(f"compare it with your latest run: labclient compare {one_line(entry.name)}")


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--team", help="The team the new run belongs to. Default: LAB_TEAM or the config file.")
@click.option("--arch", help="labspec/1 JSON file or text, or sizes like 784-30-10; needed for bare state dicts.")
@click.option("--dataset", help="The dataset the model was trained on (default: guessed from the input shape).")
@click.option("--note", help="Your own words for the run's dev-diary entry.")
@click.option("--tracking-uri", help="Push to this server or database instead of the configured one.")
def push(file, team, arch, dataset, note, tracking_uri):
    """Upload weights trained elsewhere (safetensors, .pt/.pth state dict, numpy-lab pickle) as a new run."""
    from labclient.exchange.push import push as push_weights

    result = push_weights(file, team, arch=arch, note=note, dataset=dataset, tracking_uri=tracking_uri)
    params = result.params
    click.echo(f"pushed {file} as {result.name}")
    click.echo(
        f"  layers {params['layer_sizes']}, {params['parameters']:,} parameters, {params['dtype']}, cost "
        f"{params['cost']}, for {params['dataset']}"
    )
    click.echo(f"  stored as safetensors ({result.weights_bytes:,} bytes) with a labspec/1 spec")
    click.echo(f"see it: {result.url}")
    click.echo(f"fetch it: labclient fetch {result.name}")


@click.command()
@click.argument("references", nargs=-1, metavar="[REF_A] [REF_B]")
@click.option("--team", help="Your team, whose latest run stands in for a missing reference.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON (keys documented in the README).")
@click.option("--report", type=click.Path(path_type=Path), help="Write a report with plots: PATH.md or PATH.html.")
@click.option("--log", "log_run", is_flag=True, help="Store the comparison as a run of your team: note plus artifacts.")
@click.option("--all-params", is_flag=True, help="Show every hyperparameter, not only those that differ.")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Folder with the MNIST IDX files (LAB_DATA_DIR).")
@click.option("--tracking-uri", help="Use this server or database instead of the configured one.")
def compare(references, team, as_json, report, log_run, all_params, data_dir, tracking_uri):
    """Evaluate two models on the same held-out data and diff them.

    No reference: the last fetched model against your team's latest run. One: that run against your latest.
    """
    from labclient.compare import CompareOptions, run_comparison

    if len(references) > 2:
        raise click.UsageError("compare takes at most two references")
    options = CompareOptions(
        references=tuple(references),
        team=team,
        data_dir=data_dir,
        tracking_uri=tracking_uri,
        report=report,
        log=log_run,
        all_params=all_params,
    )

    def fetch_again_and_compare(corrupt: str):
        from labclient.exchange.fetch import fetch as fetch_run

        fetch_run(corrupt, force=True, tracking_uri=tracking_uri)
        return run_comparison(options)

    comparison = _offering_refetch(lambda: run_comparison(options), fetch_again_and_compare)
    if as_json:
        click.echo(comparison.to_json())
    else:
        from labclient.compare.terminal import render

        render(comparison, _console(), all_params=all_params)


@click.group()
def cache():
    """List or remove fetched models in the local cache."""


@cache.command("ls")
def cache_ls():
    """List cached runs, their size and where they live."""
    from labclient.config import get_settings
    from labclient.exchange.cache import ModelCache
    from labserver.units import human_bytes

    store = ModelCache.from_settings(get_settings())
    entries = store.entries()
    if not entries:
        click.echo(f"the cache is empty ({store.root})")
        return
    last = store.last_fetched()
    for entry in entries:
        marker = "*" if entry.run_id == last else " "
        click.echo(
            f"{marker} {one_line(entry.name):<24} {entry.run_id}  {human_bytes(entry.size):>10}  "
            f"{entry.meta.get('fetched_at', '?')}  {entry.path}"
        )
    click.echo(
        f"{len(entries)} run(s), {human_bytes(sum(e.size for e in entries))} in {store.root}  (* = last fetched)"
    )


@cache.command("rm")
@click.argument("references", nargs=-1)
@click.option("--all", "remove_all", is_flag=True, help="Empty the whole model cache.")
def cache_rm(references, remove_all):
    """Remove cached runs (TEAM/run-N or run id) and the blobs no other run uses."""
    from labclient.exchange.fetch import uncache
    from labserver.units import human_bytes

    removed, freed = uncache(tuple(references), remove_all=remove_all)
    click.echo(f"removed {removed} run(s), freed {human_bytes(freed)}")

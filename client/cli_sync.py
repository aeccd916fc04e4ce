"""`labclient sync` and `labclient status`: publish and list runs that wait in the local journal."""

from __future__ import annotations

import click

from labclient.safe_text import one_line


def _size(size: int) -> str:
    from labclient.compute import human_bytes

    return human_bytes(size)


@click.command()
@click.option("--tracking-uri", help="Send every pending run here instead of where each was headed when it was trained.")
def sync(tracking_uri):
    """Publish every pending run (trained --offline, or while the server was down), weights included."""
    from labclient.errors import TrackingError
    from labclient.sync import sync_pending

    sent = failed = 0
    for result in sync_pending(tracking_uri=tracking_uri):
        if result.skipped:
            click.echo(f"{result.local_name}: skipped, {result.skipped}")
            continue
        if result.error:
            failed += 1
            click.echo(f"{result.local_name}: not sent: {one_line(result.error)}")
            continue
        sent += 1
        status = f"ended {result.status}" + (" (its training process had died)" if result.recovered else "")
        click.echo(f"{result.local_name} -> {result.name}: sent {result.events} events and {result.files} files "
                   f"({_size(result.file_bytes)}), {status}")
        for warning in result.warnings:
            click.echo(f"  warning: {one_line(warning)}")
    if not (sent or failed):
        click.echo("nothing to sync: no pending runs")
    elif failed:
        raise TrackingError(f"{failed} run(s) not sent ({sent} sent)",
                            "nothing is lost: they stay in the journal; run `labclient sync` again when the server is reachable")
    else:
        click.echo(f"synced {sent} run(s)")


@click.command()
def status():
    """List pending runs: journalled locally and not yet (all) on the tracking store."""
    from labclient.config import get_settings
    from labclient.sync import pending_runs

    settings = get_settings()
    runs = pending_runs(settings)
    if not runs:
        click.echo(f"no pending runs (journal: {settings.journal_dir})")
        return
    click.echo(f"{len(runs)} pending run(s) in {settings.journal_dir}:")
    for run in runs:
        name = f" = {run.name}" if run.name else ""
        click.echo(f"  {run.local_name}{name}  {run.state}, started {run.started:%Y-%m-%d %H:%M:%S}, "
                   f"{run.events} events and {run.files} files ({_size(run.file_bytes)}) to send to {run.uri}")
    click.echo("`labclient sync` sends them.")

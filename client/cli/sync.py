"""`labclient sync` and `labclient status`: publish and list runs that wait in the local journal."""

from __future__ import annotations

import click

from labclient.safe_text import one_line


def _size(size: int) -> str:
    from labserver.units import human_bytes

    return human_bytes(size)


@click.command()
@click.option(
    "--tracking-uri", help="Send every pending run here instead of where each was headed when it was trained."
)
def sync(tracking_uri):
    """Publish every pending run (trained --offline, or while the server was down), weights included."""
    from labclient.errors import TrackingError
    from labclient.tracking.sync import sync_pending

    sent = skipped = 0
    causes: list[str] = []
    for result in sync_pending(tracking_uri=tracking_uri):
        if result.skipped:
            skipped += 1
            click.echo(f"{result.local_name}: skipped, {result.skipped}")
            continue
        if result.error:
            causes.append(result.cause or "refused")
            click.echo(f"{result.local_name}: not sent: {one_line(result.error)}")
            continue
        sent += 1
        status = f"ended {result.status}" + (" (its training process had died)" if result.recovered else "")
        click.echo(
            f"{result.local_name} -> {result.name}: sent {result.events} events and {result.files} files "
            f"({_size(result.file_bytes)}), {status}"
        )
        for warning in result.warnings:
            click.echo(f"  warning: {one_line(warning)}")
    if not (sent or causes):
        click.echo(
            "nothing sent by this sync: every pending run is held by another process"
            if skipped
            else "nothing to sync: no pending runs"
        )
    elif causes:
        raise TrackingError(
            f"{len(causes)} run(s) or journal folder(s) not sent ({sent} sent)",
            "nothing is lost: they stay in the journal; " + _remedies(causes),
        )
    else:
        click.echo(f"synced {sent} run(s)")


_REMEDIES = {  # in the order they are said; each only when one of the runs needs it
    "disk": "free some disk space (see above)",
    "unreadable": "restore or move the folders that cannot be read (see above)",
    "refused": "fix what the server refused (see above)",
    "unreachable": "run `labclient sync` again when the server is reachable",
}


def _remedies(causes: list[str]) -> str:
    said = [text for cause, text in _REMEDIES.items() if cause in causes]
    if "unreachable" not in causes:
        said.append("then run `labclient sync` again")
    return "; ".join(said)


@click.command()
def status():
    """List pending runs: journalled locally and not yet (all) on the tracking store."""
    from labclient.config import get_settings
    from labclient.tracking.sync import scan_pending

    settings = get_settings()
    runs, unreadable = scan_pending(settings)
    for folder in unreadable:
        click.echo(f"cannot read the journal folder {folder.one_line()}")
    if not runs:
        click.echo(
            f"no pending runs (journal: {settings.journal_dir})"
            if not unreadable
            else f"no other pending runs (journal: {settings.journal_dir})"
        )
        return
    click.echo(f"{len(runs)} pending run(s) in {settings.journal_dir}:")
    for run in runs:
        name = f" = {run.name}" if run.name else ""
        damaged = f" ({run.damaged} damaged lines cannot be sent)" if run.damaged else ""
        click.echo(
            f"  {run.local_name}{name}  {run.state}, started {run.started:%Y-%m-%d %H:%M:%S}, "
            f"{run.events} events{damaged} and {run.files} files ({_size(run.file_bytes)}) to send to {run.uri}"
        )
    click.echo("`labclient sync` sends them.")

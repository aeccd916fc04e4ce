"""`labclient diary` and `labclient leaderboard`: the commands wrap labclient.diary.entries and labserver.leaderboard.

Only click and labclient's light modules are imported here; mlflow and rich load inside the commands.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import click

from labclient.errors import ConfigError, EditorFailed, LabError
from labclient.safe_text import markup, one_line, printable

_FALLBACK_EDITORS = ("nano", "vi")


class _DiaryGroup(click.Group):
    """`labclient diary REF ...` means `labclient diary show REF ...`: REF is a run or a team, not a subcommand."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["show", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DiaryGroup, subcommand_metavar="REF [--edit | --append TEXT] | list [--team TEAM]")
def diary():
    """Dev-diary entries: the descriptions of runs and teams in the MLflow UI.

    \b
    labclient diary blue/run-3                 print a run's entry
    labclient diary blue/run-3 --edit          edit it in $EDITOR
    labclient diary blue/run-3 --append TEXT   add a dated paragraph
    labclient diary blue                       the team's own diary (same options)
    labclient diary list [--team blue]         entries, newest first
    """


@diary.command("show")
@click.argument("ref")
@click.option("--edit", is_flag=True, help="Open $EDITOR on the entry and save it back when the editor exits cleanly.")
@click.option("--append", "append_text", metavar="TEXT", help="Add a paragraph that starts with today's date and time.")
@click.option("--raw", is_flag=True, help="Print the Markdown source instead of rendering it.")
@click.option("--tracking-uri", help="Read from this server or database instead of the configured one.")
def show(ref, edit, append_text, raw, tracking_uri):
    """Print, edit or add to the entry of a run (blue/run-3) or of a team (blue)."""
    from labclient.diary import entries as api

    if edit and append_text is not None:
        raise ConfigError("--edit and --append cannot be combined", "use one, then the other")
    if append_text is not None:
        entry = api.append_entry(ref, append_text, tracking_uri=tracking_uri)
        click.echo(f"added a dated paragraph to the entry of {entry.ref}")
        _say_if_truncated(entry)
        return
    entry = api.read_entry(ref, tracking_uri=tracking_uri)
    if edit:
        _edit(entry, tracking_uri)
    elif raw:
        click.echo(entry.text, nl=False)
    else:
        _render(entry)


@diary.command("list")
@click.option("--team", help="Only this team's runs. Default: every team.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--tracking-uri", help="Read from this server or database instead of the configured one.")
def list_entries(team, limit, tracking_uri):
    """List run entries, newest first, with their first lines."""
    from labclient.diary import entries as api

    listings = api.list_entries(team, limit=limit, tracking_uri=tracking_uri)
    if not listings:
        click.echo(f"no runs of team {team} yet" if team else "no runs yet")
        return
    width = max(len(one_line(item.ref)) for item in listings)
    for item in listings:
        click.echo(
            f"{one_line(item.ref):<{width}}  {item.started:%Y-%m-%d %H:%M}  {item.status.lower():<8}  "
            f"{one_line(item.first_line)}"
        )


# --- helpers ----------------------------------------------------------------------------------------
def edit_text(text: str, name: str) -> str:
    """The text after the user edited it in $EDITOR; an editor that exits non-zero raises EditorFailed."""
    command = _editor_command()
    with tempfile.TemporaryDirectory(prefix="labdiary-") as folder:
        path = Path(folder) / name
        path.write_text(text, encoding="utf-8")
        try:
            status = subprocess.run([*command, str(path)], check=False).returncode
        except OSError as err:
            raise ConfigError(
                f"cannot start the editor {command[0]!r} ({err.strerror or err})",
                "set EDITOR to an installed editor, e.g. EDITOR=nano",
            ) from None
        if status != 0:
            raise EditorFailed(
                f"the editor exited with status {status}; nothing was saved",
                "save and quit the editor normally to keep your changes",
            )
        return path.read_text(encoding="utf-8")


def _editor_command() -> list[str]:
    for variable in ("EDITOR", "VISUAL"):
        if os.environ.get(variable, "").strip():
            return shlex.split(os.environ[variable])
    for name in _FALLBACK_EDITORS:
        if shutil.which(name):
            return [name]
    raise ConfigError("no editor found", "set EDITOR, e.g. export EDITOR=nano, or use --append TEXT")


def _edit(entry, tracking_uri) -> None:
    from labclient.diary import entries as api

    edited = edit_text(entry.text, entry.ref.replace("/", "-") + ".md")
    if edited.rstrip() == entry.text.rstrip():
        click.echo(f"no changes; the entry of {entry.ref} is as it was")
        return
    try:
        saved = api.write_entry(entry.ref, edited, tracking_uri=tracking_uri)
    except LabError as err:
        kept = _keep_unsaved(entry.ref, edited)
        err.remedy = (
            f"{err.remedy}; your edited text is kept in {kept}" if err.remedy else f"your edited text is kept in {kept}"
        )
        raise
    click.echo(f"saved the entry of {saved.ref}: {saved.url}")
    _say_if_truncated(saved)


def _keep_unsaved(ref: str, text: str) -> Path:
    """An edit the store refused is still the user's work: keep it where they can find it."""
    from labclient.config import get_settings

    folder = get_settings().cache_dir / "diary-unsaved"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ref.replace('/', '-')}-{time.strftime('%Y%m%d-%H%M%S')}.md"
    path.write_text(text, encoding="utf-8")
    return path


def _say_if_truncated(entry) -> None:
    if entry.truncated:
        from labclient.diary.entries import ENTRY_ARTIFACT

        click.echo(
            f"note: the entry has {len(entry.text):,} characters and MLflow keeps at most {entry.limit:,} in a "
            f"description, so the UI shows its beginning; the full text is the artifact {ENTRY_ARTIFACT}"
        )


def _render(entry) -> None:
    from rich.console import Console
    from rich.markdown import Markdown

    console = Console()
    label = f"{entry.ref} (team diary)" if entry.is_team_entry else entry.ref
    console.print(f"[bold]{markup(label)}[/]  {markup(entry.url)}", highlight=False, soft_wrap=True)
    if entry.truncated:
        from labclient.diary.entries import ENTRY_ARTIFACT

        console.print(
            f"(the full text, from {ENTRY_ARTIFACT}: the MLflow description shows only its first "
            f"{entry.limit:,} characters)",
            highlight=False,
            soft_wrap=True,
        )
    if entry.text.strip():
        console.print(Markdown(printable(entry.text), hyperlinks=False))
    else:
        console.print(f"no entry yet: write one with `labclient diary {entry.ref} --edit`", highlight=False)

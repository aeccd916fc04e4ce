"""The `labclient` command. Each command parses options, calls one function of the Python API, and prints.

Errors are typed (labclient.errors) and become one line on stderr here; LAB_DEBUG=1 shows tracebacks.
torch and mlflow are imported inside commands, never at module level.
"""

from __future__ import annotations

import errno
import os
import sys

import click
from labclient.errors import DiskFull, LabError
from labclient.safe_text import one_line


def _debug() -> bool:
    return os.environ.get("LAB_DEBUG", "").lower() in ("1", "true", "yes")


class LabGroup(click.Group):
    """Turns every error into one line with a remedy and a non-zero exit code."""

    def list_commands(self, ctx) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx, name: str):
        if name not in COMMANDS:
            return None
        import importlib

        module, function = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), function)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LabError as err:
            if _debug():
                raise
            click.echo(f"error: {one_line(err.one_line())}", err=True)  # messages may quote other teams' text
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as err:  # a bug of ours: still one line, with the way to see more
            if _debug():
                raise
            if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):  # a full disk is no bug
                click.echo(f"error: {DiskFull(err.filename or 'a file').one_line()}", err=True)
                sys.exit(DiskFull.exit_code)
            message = one_line(err) or type(err).__name__
            click.echo(f"error: {type(err).__name__}: {message} (set LAB_DEBUG=1 for the traceback)", err=True)
            sys.exit(1)


# name -> "module:function"; a command's module is imported only when that command runs (or help lists it)
COMMANDS = {
    "train": "labclient.cli.train:train",
    "ui": "labclient.cli.train:ui",
    "list-trainers": "labclient.cli.train:list_trainers",
    "fetch": "labclient.cli.exchange:fetch",
    "push": "labclient.cli.exchange:push",
    "compare": "labclient.cli.exchange:compare",
    "cache": "labclient.cli.exchange:cache",
    "login": "labclient.cli.login:login",
    "diary": "labclient.cli.diary:diary",
    "leaderboard": "labclient.cli.leaderboard:leaderboard",
    "sync": "labclient.cli.sync:sync",
    "status": "labclient.cli.sync:status",
}


@click.group(cls=LabGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lab-platform", prog_name="labclient")
def main() -> None:
    """Train models, exchange them between teams, and compare them, on MLflow."""


if __name__ == "__main__":
    main()

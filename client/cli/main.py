"""The `labclient` command. Each command parses options, calls one function of the Python API, and prints.

Errors are typed (labclient.errors) and become one line on stderr here; LAB_DEBUG=1 shows tracebacks.
torch and mlflow are imported inside commands, never at module level.
"""

from __future__ import annotations

import errno
import sys

import click

from labclient.errors import DiskFull
from labclient.safe_text import one_line
from labserver.cli_errors import OneLineErrors


class LabGroup(OneLineErrors):
    """Turns every error into one line with a remedy and a non-zero exit code; commands load when they run."""

    def list_commands(self, ctx) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx, name: str):
        if name not in COMMANDS:
            return None
        import importlib

        module, function = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), function)

    def printable(self, text: str) -> str:
        return one_line(text)  # messages may quote other teams' text: no markup, no escape codes

    def unexpected(self, err: Exception) -> None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):  # a full disk is no bug
            click.echo(f"error: {DiskFull(err.filename or 'a file').one_line()}", err=True)
            sys.exit(DiskFull.exit_code)
        super().unexpected(err)


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

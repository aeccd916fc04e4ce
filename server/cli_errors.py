"""The one place where a command's errors become one line on stderr and a non-zero exit, for `labserver` and
`labclient` alike. LAB_DEBUG=1 shows the traceback instead."""

from __future__ import annotations

import os
import sys

import click

from labserver.errors import OneLineError


def debugging() -> bool:
    return os.environ.get("LAB_DEBUG", "").lower() in ("1", "true", "yes")


class OneLineErrors(click.Group):
    """A click group whose commands fail in one line: the message and its remedy, or, for an error nobody
    expected (a bug, a database that fell over), its type and message with the way to see more."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OneLineError as err:
            if debugging():
                raise
            click.echo(f"error: {self.printable(err.one_line())}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as err:
            if debugging():
                raise
            self.unexpected(err)

    def printable(self, text: str) -> str:
        """The text as it may reach a terminal; labclient escapes what other teams wrote."""
        return text

    def unexpected(self, err: Exception) -> None:
        message = self.printable(" ".join(str(err).split())[:300]) or type(err).__name__
        click.echo(f"error: {type(err).__name__}: {message} (set LAB_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)

"""Messages for people: one line per problem, with the fix."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

_debug = False


class EscaError(Exception):
    """A failure the user can act on: the message says what, the hint how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def set_debug(enabled: bool) -> None:
    global _debug
    _debug = enabled


def die(message: str, hint: str | None = None) -> NoReturn:
    raise EscaError(message, hint)


def info(message: str) -> None:
    click.echo(message, err=True)


def debug(message: str) -> None:
    if _debug:
        click.echo(f"debug: {message}", err=True)


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def report(err: EscaError) -> None:
    click.echo(f"error: {err}", err=True)
    if err.hint:
        click.echo(f"  fix: {err.hint}", err=True)


def run_main(func: click.Command) -> None:
    """Run a click command, turning EscaError into one line and exit code 1."""
    try:
        func.main(standalone_mode=False)
    except EscaError as err:
        if _debug:
            raise
        report(err)
        sys.exit(1)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)

"""Pieces shared by the commands: error lines and paths printed on one line."""

from __future__ import annotations

import click

from ..errors import error_line, printable, quote_path  # noqa: F401  (the commands' one-line helpers)


def echo_err(msg: str) -> None:
    """One line on stderr: 'error: ...'."""
    click.echo(f"error: {msg.splitlines()[0] if msg else 'unknown error'}", err=True)

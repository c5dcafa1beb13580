"""Pieces shared by the commands: error lines and paths printed on one line."""

from __future__ import annotations

import click


def echo_err(msg: str) -> None:
    """One line on stderr: 'error: ...'."""
    click.echo(f"error: {msg.splitlines()[0] if msg else 'unknown error'}", err=True)


_CONTROL = {i: f"\\x{i:02x}" for i in range(32)} | {0x7F: "\\x7f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


def printable(text: str) -> str:
    """``text`` with control characters (a newline in a file name...) escaped, so that it stays on one line."""
    return str(text).translate(_CONTROL)


def quote_path(path) -> str:
    """A path for an error line: as is, or repr-quoted when it holds control characters."""
    s = str(path)
    return repr(s) if printable(s) != s else s


def error_line(path, e: BaseException) -> str:
    """``<file>: <message>`` on one line, for any exception raised while processing ``path``.

    The project's errors already start with the file; others get it in front, with
    their type when the message alone would not say what happened."""
    from ..errors import AvsError

    raw = str(path)
    msg = str(e).strip()
    if not isinstance(e, (AvsError, OSError)) or not msg:
        msg = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    shown = quote_path(path)
    if raw and msg.startswith(raw):
        msg = msg[len(raw):].lstrip(": ").lstrip()
    if raw and raw != shown:
        msg = msg.replace(raw, shown)
    first = (msg.splitlines() or [""])[0].strip()
    return f"{shown}: {printable(first) or type(e).__name__}"

"""Typer application: every capability is reachable from the CLI.

Errors are rendered here, once: a user error (MicrosegError) prints its message and exits 1;
anything else is a bug and prints a one-line report (the traceback with MICROSEG_DEBUG=1).
"""

from __future__ import annotations

import errno
import io
import os
import sys
from typing import BinaryIO

import typer

# Command modules (one per area keeps parallel work apart) register on import, which the
# root command does lazily: see COMMAND_MODULES in microseg.cli.app.
from microseg.cli.app import app
from microseg.cli.common import err_console
from microseg.model import MicrosegError

EXIT_USER_ERROR = 1
EXIT_INTERNAL_ERROR = 70  # EX_SOFTWARE (sysexits.h)


class _ClosedOutput(io.TextIOBase):
    """Standard output of a process started with it closed (`microseg lint >&-`), where
    Python leaves sys.stdout None: writing to it is a user error, as `echo hi >&-` says
    "write error: Bad file descriptor", not a crash, nor output silently lost."""

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "standard output is closed")

    @property
    def buffer(self) -> BinaryIO:
        raise OSError(errno.EBADF, "standard output is closed")


def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    finally:
        _flush_standard_output()


def _flush_standard_output() -> None:
    """Flush stdout here rather than at interpreter exit, where a reader that closed early
    (`microseg log | head -1`) is reported as "Exception ignored ... BrokenPipeError" and
    exit 120. Python's note on SIGPIPE (library/signal.html#note-on-sigpipe): point stdout at
    /dev/null, say nothing and exit 1, as Python itself does on EPIPE (and Click does for a
    write that fails while a command runs)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_USER_ERROR)


def _main(argv: list[str] | None) -> None:
    if sys.stdout is None:
        sys.stdout = _ClosedOutput()
    words = sys.argv[1:] if argv is None else argv
    if any("\x00" in word for word in words):
        # A shell cannot pass one (argv strings end at NUL); another program calling main() can.
        err_console.print("error: an argument contains a NUL character", markup=False)
        sys.exit(EXIT_USER_ERROR)
    try:
        # Without standalone mode, click returns the code of a `typer.Exit` instead of exiting.
        code = app(args=argv, prog_name="microseg", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except MicrosegError as error:
        from rich.markup import escape

        # The message is user text (names, paths): escaped, never read as markup.
        err_console.print(f"[bold red]error:[/] {escape(str(error))}", markup=True, highlight=False)
        sys.exit(EXIT_USER_ERROR)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(EXIT_USER_ERROR)
    except typer.TyperException as error:  # usage errors: bad option, missing argument
        if type(error).__name__ == "NoArgsIsHelpError":  # click's, as Typer vendors it
            # `microseg`, `microseg sessions`: the message is the help itself
            err_console.print(error.format_message(), markup=False, highlight=False)
            sys.exit(EXIT_USER_ERROR)
        # The help of the command that was mistyped (`microseg check --help`), not the root's.
        context = getattr(error, "ctx", None)
        command = getattr(context, "command_path", None) or "microseg"
        err_console.print(f"error: {_usage_message(error)} (see: {command} --help)", markup=False)
        sys.exit(EXIT_USER_ERROR)
    except OSError as error:  # a file or directory the user named that cannot be used
        reason = error.strerror or str(error)
        name = "" if error.filename is None else f": {_shortened(str(error.filename))}"
        err_console.print(f"error: {reason}{name}", markup=False)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as error:  # a bug: say so without a traceback unless asked
        if os.environ.get("MICROSEG_DEBUG"):
            raise
        err_console.print(
            f"internal error: {type(error).__name__}: {error}\n"
            "This is a bug in microseg. Re-run with MICROSEG_DEBUG=1 for the traceback.",
            markup=False,
        )
        sys.exit(EXIT_INTERNAL_ERROR)


# Typer coerces a parameter's text with pydantic; its error types, said as a network engineer
# reads them (`'abc' is not a whole number`, not "Input should be a valid integer").
_COERCION_ERRORS = {
    "int_parsing": "is not a whole number",
    "int_from_float": "is not a whole number",
    "int_parsing_size": "is too long a number",
    "float_parsing": "is not a number",
    "finite_number": "is not a finite number",
    "greater_than_equal": "is less than {ge}",
    "greater_than": "is not more than {gt}",
    "less_than_equal": "is more than {le}",
    "less_than": "is not less than {lt}",
}


def _usage_message(error: typer.TyperException) -> str:
    """Click's message for a usage error; a value Typer refused names the parameter as the
    help shows it (CHANGE, '--limit') and the value given."""
    from pydantic import ValidationError

    parameter = getattr(error, "param", None)
    cause = error.__cause__
    if parameter is None or not isinstance(cause, ValidationError) or not cause.errors():
        return str(error.format_message())
    first = cause.errors()[0]
    template = _COERCION_ERRORS.get(first["type"])
    if template is None:
        return str(error.format_message())
    if parameter.param_type_name == "argument":
        name = str(parameter.metavar or parameter.name).upper()
    else:
        name = " / ".join(repr(o) for o in parameter.opts)
    value = _shortened(str(first["input"]), 40)
    return f"Invalid value for {name}: {value!r} {template.format(**first.get('ctx', {}))}"


def _shortened(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"

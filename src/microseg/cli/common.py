"""What every command shares: output, JSON, and resolving a POLICY argument."""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from microseg.files import Writer, replace_atomically, write_content
from microseg.model import MicrosegError

if TYPE_CHECKING:
    from rich.console import Console

    from microseg.model import PolicySet


class _LazyConsole:
    """A rich Console made on first use: importing rich.console would otherwise be a third of
    what `microseg --help` takes to start (bench/startup.py)."""

    def __init__(self, **options: Any) -> None:
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_console", None)
        self._options: dict[str, Any]
        self._console: Console | None

    def _made(self) -> Console:
        if self._console is None:
            from rich.console import Console

            object.__setattr__(self, "_console", Console(**self._options))
        return self._console  # type: ignore[return-value]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._made(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._made(), name, value)


console = cast("Console", _LazyConsole(highlight=False, soft_wrap=True))
err_console = cast("Console", _LazyConsole(stderr=True, highlight=False, soft_wrap=True))

JSON_OPTION_HELP = "Print machine-readable JSON instead of a table."
# Every --since/--until value is read by microseg.builder.times.parse_moment.
TIME_HELP = "a duration back from now (30m, 24h, 7d) or an ISO time (UTC unless it names a zone)"
POLICY_HELP = "A policy file or directory, rev:N (a stored revision) or ws:NAME (a workspace)."


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`1 device`, `2 devices`, `0 devices`: a count with its noun in the right number."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def section_count(section: str, count: int) -> str:
    """`1 monitor node`, `2 categories`: how many objects of a policy section."""
    from microseg.model.errors import singular

    return counted(count, singular(section), section.replace("_", " "))


def print_paragraph(text: str, hanging: str = "  ") -> None:
    """Plain text wrapped to the console's width, continuation lines indented by `hanging`."""
    import textwrap

    wrapped = textwrap.fill(text, width=console.width, subsequent_indent=hanging)
    console.print(wrapped, markup=False, soft_wrap=True)


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A plain text table on stdout: left-aligned columns two spaces apart."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        sys.stdout.write("  ".join(cells).rstrip() + "\n")


def emit_json(data: Any) -> None:
    """Deterministic JSON on stdout: same input, same bytes."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# POSIX utility syntax guideline 13: an operand "-" names standard output (for a file
# named "-", write `./-`). Said in the help of every option that writes a file.
STANDARD_OUTPUT = "-"
OUTPUT_HELP_DASH = "'-': standard output."


def output_option(*names: str, help_text: str) -> Any:
    """An option naming a file the command writes (`-o FILE`, `--csv FILE`): text, not a
    Path, so that `./-` stays a file named `-` while `-` is standard output."""
    import typer

    return typer.Option(None, *names, metavar="FILE", help=f"{help_text} {OUTPUT_HELP_DASH}")


def is_standard_output(path: str | Path | None) -> bool:
    """Whether an output option names standard output: exactly `-` as the user typed it."""
    return isinstance(path, str) and path == STANDARD_OUTPUT


def output_name(path: str | Path) -> str:
    """How a status line names an output: its path, or `standard output`."""
    return "standard output" if is_standard_output(path) else str(path)


def status_console(path: str | Path) -> Console:
    """Where to say what was written: stderr when the output itself is on stdout."""
    return err_console if is_standard_output(path) else console


def write_output(
    path: str | Path,
    content: str | bytes | Writer,
    reads: tuple[str, Path | None] | None = None,
    *,
    binary: str | None = None,
) -> None:
    """Write a command's output file (`-o FILE`, `--csv FILE`, ...): the CLI's one writer.

    `content` is text (UTF-8), bytes, or a function that writes to a binary file. `reads`:
    (what, file) the command reads, which the output must not replace (a policy compiled
    over itself, sessions exported over their own file and summarised). `binary`: content
    no terminal can show, by its format's name (`Parquet`): refused when standard output is
    a terminal.

    * `-` (the string the user typed, see STANDARD_OUTPUT) is standard output, written in
      place as a stream; `./-` is a file named `-`.

    * A regular file (or a new one) is replaced atomically: readers see the old file or the
      new one, never a part. The temporary file has a unique name in the target's directory,
      so two runs never write into one temporary, and nothing is left behind on failure.
    * An existing file keeps its permission bits; a new one gets 0666 minus the umask, as
      the shell's `>` would give it.
    * A symbolic link is written through: its target is replaced, the link stays.
    * Anything that is not a regular file (`/dev/null`, a terminal, a FIFO) is written to
      in place, as a stream: replacing it would turn a device into a file.

    A file that cannot be written (no such directory, a directory in the way, no
    permission, a full or read-only disk) is a user error naming it."""
    if is_standard_output(path):
        _write_standard_output(content, binary)
        return
    path = Path(path)
    if reads is not None and reads[1] is not None and _same_file(path, reads[1]):
        raise MicrosegError(
            f"cannot write {path}: it is the {reads[0]} this command reads, which the output "
            "would replace; give another file"
        )
    try:
        target = Path(os.path.realpath(path))
        try:
            existing = target.stat()
        except FileNotFoundError:
            existing = None
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            with open(target, "wb") as stream:
                write_content(stream, content)
            return
        mode = stat.S_IMODE(existing.st_mode) if existing is not None else _new_file_mode()
        replace_atomically(target, content, mode)
    except OSError as error:
        reason = error.strerror or str(error)
        raise MicrosegError(f"cannot write {path}: {reason}") from None


def _write_standard_output(content: str | bytes | Writer, binary: str | None) -> None:
    stream = sys.stdout.buffer
    if binary is not None and stream.isatty():
        # as gzip refuses: "compressed data not written to a terminal"
        raise MicrosegError(
            f"{binary} is binary: not written to a terminal (redirect standard output to a "
            "file or a pipe, or give a file name)"
        )
    sys.stdout.flush()  # what was printed before comes first
    write_content(stream, content)
    stream.flush()


def _same_file(one: Path, other: Path) -> bool:
    try:
        return os.path.samefile(one, other)
    except (OSError, ValueError):  # one of them does not exist (yet), or a NUL in a name
        return False


def _new_file_mode() -> int:
    """0666 minus the process's umask (which can only be read by setting it)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def resolve_policy(spec: str) -> PolicySet:
    """A POLICY argument: a path, `rev:N` or `ws:NAME`."""
    if spec.startswith(("rev:", "ws:")):  # microseg.store.specs.STORED_PREFIXES
        from microseg.store import open_store
        from microseg.store.specs import check_stored_spec, stored_policy

        check_stored_spec(spec)
        with open_store(create=False) as store:
            return stored_policy(store, spec)
    from microseg.policyfile import load_policy

    return load_policy(policy_path(spec))


def policy_path(text: str) -> Path:
    """A policy file or directory argument; an empty one is an error, not `.`."""
    if not text:
        raise MicrosegError("the policy path is empty: give a file or directory")
    return Path(text)


ENGINE_HELP = (
    "Where the session query runs: duckdb (in this process) or spark (Spark SQL; "
    "--spark-master, $MICROSEG_SPARK_MASTER)."
)
SPARK_MASTER_HELP = (
    "With --engine spark: local[N], spark://HOST:PORT or k8s://https://HOST:PORT "
    "(default $MICROSEG_SPARK_MASTER, else local[*])."
)
SPARK_CONF_HELP = (
    "With --engine spark: a Spark setting KEY=VALUE, repeatable (after $MICROSEG_SPARK_CONF)."
)


def session_engine(engine: str, spark_master: str | None, spark_conf: list[str]):
    """The SessionEngine the `--engine` options name (pyspark is imported only when used)."""
    from microseg.flows.engines import ENGINES, DuckDBEngine

    if engine not in ENGINES:
        raise MicrosegError(f"--engine {engine!r}: expected {' or '.join(ENGINES)}")
    if engine == "duckdb":
        given = [
            name
            for name, value in (("--spark-master", spark_master), ("--spark-conf", spark_conf))
            if value
        ]
        if given:
            raise MicrosegError(f"{' and '.join(given)}: only with --engine spark")
        return DuckDBEngine()
    from microseg.flows.spark import SparkEngine, spark_settings

    return SparkEngine(spark_settings(spark_master, spark_conf))

"""Every DuckDB connection microseg opens (session tables, the flow store, counter series).

DuckDB draws a progress bar on stdout for any query running longer than two seconds
(`enable_progress_bar`, on by default in the Python client): in `microseg serve` it lands in
the server log, and in a `--json` command it would corrupt the output. microseg reports its
own progress, so every connection is opened here, with the bar off.
"""

from __future__ import annotations

import re

import duckdb


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that prints nothing of its own."""
    connection = duckdb.connect()
    # A per-connection setting: DuckDB refuses it in `connect(config=...)` ("Could not set
    # option as a global option").
    connection.execute("SET enable_progress_bar = false")
    return connection


# Where DuckDB's message stops saying what is wrong: its advice on its own options, the
# dialect it searched, and the SQL it quotes.
_AFTER_WHAT = re.compile(r"^(Possible fixes|The search space|LINE \d+:)")
_ERROR_CLASS = re.compile(r"^[A-Z][A-Za-z ]*Error: ")


def said(error: BaseException) -> str:
    """DuckDB's error in one line for a user: what is wrong and where (`CSV Error on Line: 3;
    Expected Number of Columns: 19 Found: 15`), without its error class, the line it quotes,
    its advice on DuckDB options or the SQL microseg ran."""
    kept = []
    for line in str(error).strip().splitlines():
        line = line.strip()
        if not line or _AFTER_WHAT.match(line):
            break
        if not line.startswith("Original Line:"):
            kept.append(line)
    # A byte of a damaged file may be quoted raw (`don't know what type: \x0f`).
    text = "".join(char for char in "; ".join(kept) if char.isprintable()).rstrip(" :")
    return _ERROR_CLASS.sub("", text) or type(error).__name__

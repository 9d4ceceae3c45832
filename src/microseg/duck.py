"""Every DuckDB connection microseg opens (session tables, the flow store, counter series).

DuckDB draws a progress bar on stdout for any query running longer than two seconds
(`enable_progress_bar`, on by default in the Python client): in `microseg serve` it lands in
the server log, and in a `--json` command it would corrupt the output. microseg reports its
own progress, so every connection is opened here, with the bar off.
"""

from __future__ import annotations

import duckdb


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that prints nothing of its own."""
    connection = duckdb.connect()
    # A per-connection setting: DuckDB refuses it in `connect(config=...)` ("Could not set
    # option as a global option").
    connection.execute("SET enable_progress_bar = false")
    return connection

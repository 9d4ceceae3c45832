"""DuckDB prints nothing of its own: no progress bar in `microseg serve`'s log or in the
output of a command (it draws one on stdout for any query over two seconds by default)."""

from __future__ import annotations

import re

from microseg import duck
from support import ROOT


def test_our_connections_have_no_progress_bar():
    connection = duck.connect()
    setting = "SELECT current_setting('enable_progress_bar')"
    assert connection.execute(setting).fetchone() == (False,)


def test_every_duckdb_connection_is_opened_by_duck_connect():
    opened_elsewhere = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "src" / "microseg").rglob("*.py"))
        if path.name != "duck.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bduckdb\.connect\(", line)
    ]
    assert opened_elsewhere == []

"""The store under load (bench/pg_load.py, shorter): 20 writers and 100 readers at once on
the real PostgreSQL server and on SQLite. Nothing acknowledged is lost, the writers' shared
first change is refused as a conflict for all but one, and no other error appears."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from pg_load import run_load

pytestmark = [pytest.mark.slow, pytest.mark.system]


def test_twenty_writers_and_a_hundred_readers_lose_nothing(store_url):
    figures = run_load(store_url, seconds=4, writers=20, readers=100, reader_processes=2)
    assert figures["errors"] == {} and figures["lost"] == [] and figures["lost_writes"] == 0
    # round one: twenty submits of the same new group from one base; one wins
    assert figures["conflicts"] >= 19
    assert figures["submits"] >= 1 and figures["revision_reads"] >= 1

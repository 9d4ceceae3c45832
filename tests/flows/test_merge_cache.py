"""The collector's compiled merge where numba has nowhere to write its cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support import SRC

TESTS_FLOWS = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent(
    """
    import logging
    logging.basicConfig(format="%(levelname)s %(message)s")
    from flows_encoder import SOFTFLOWD_V4, data_set, ipfix_message, ipfix_template_set
    from flows_encoder import softflowd_v4_record as record
    from microseg.flows.decoder import FlowDecoder
    from microseg.flows.sessions import SessionTable
    from microseg.flows import merge_loops
    records = [
        record("10.0.0.1", "10.0.0.2", 1000, 2000, 100, 1, 40000, 443, 6, 0x18),
        record("10.0.0.1", "10.0.0.2", 2000, 3000, 200, 2, 40000, 443, 6, 0x18),
    ]
    datagrams = [
        (ipfix_message([ipfix_template_set({1024: SOFTFLOWD_V4})]), ("192.0.2.1", 9995)),
        (ipfix_message([data_set(1024, records)], sequence=0), ("192.0.2.1", 9995)),
    ]
    table = SessionTable()
    table.add(FlowDecoder().decode(datagrams), now=10.0)
    sessions = table.flush().oriented()
    print("cache", merge_loops.CACHE)
    print("sessions", sessions.num_rows, "packets", sessions.column("fwd_packets").to_pylist())
    """
)


@pytest.mark.system
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)"
)
def test_a_read_only_install_without_a_writable_cache_compiles_at_start_and_merges():
    """A service user of a read-only install (the sources' __pycache__ cannot be written,
    nor its home): numba refuses cache=True there (RuntimeError: no locator available),
    which stopped the collector at start. The merge is compiled without a cache instead,
    with a warning that says how to keep it (NUMBA_CACHE_DIR)."""
    mount = f'mount --bind {SRC} {SRC} && mount -o remount,ro,bind {SRC} {SRC} && exec "$0" -c "$1"'
    env = {key: value for key, value in os.environ.items() if not key.startswith("NUMBA_")}
    env.update(
        HOME="/proc",  # no cache directory can be made under it, even by root
        XDG_CACHE_HOME="/proc/nothing",
        PYTHONPATH=os.pathsep.join([str(SRC), str(TESTS_FLOWS)]),
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", mount, sys.executable, SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "cache False" in done.stdout
    assert "sessions 1 packets [3]" in done.stdout  # the two records merged into one session
    assert "Set NUMBA_CACHE_DIR" in done.stderr
    assert "Traceback" not in done.stderr

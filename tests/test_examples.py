"""examples/ is what a newcomer reads and runs: one copy, shipped in the wheel, consistent
with itself (the session table is the capture's), and licensed as pyproject says."""

from __future__ import annotations

import tomllib

from microseg.flows.demo import SEED_LAB_PCAP, run_demo
from microseg.flows.flowstore import read_sessions
from support import EXAMPLES, ROOT, SRC


def test_package_examples_are_the_repository_examples_not_a_copy():
    # One source: src/microseg/examples is a link to examples/, so they cannot drift.
    packaged = SRC / "microseg" / "examples"
    assert packaged.is_symlink()
    assert packaged.resolve() == EXAMPLES.resolve()
    import microseg

    assert EXAMPLES.resolve() == microseg.EXAMPLES
    assert SEED_LAB_PCAP.parent == EXAMPLES.resolve()


def test_shipped_session_table_is_the_session_table_of_the_shipped_capture(tmp_path):
    # examples/seed-lab-sessions.csv = `microseg sessions export --csv` of the demo's store.
    collected = run_demo(tmp_path)
    assert read_sessions(EXAMPLES / "seed-lab-sessions.csv").to_pylist() == collected.to_pylist()


def test_license_file_is_the_apache_license_pyproject_declares():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text
    assert len(text.splitlines()) == 202  # the whole text, not a notice

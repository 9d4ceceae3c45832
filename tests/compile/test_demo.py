"""`microseg demo` step 3: the seed lab compiled, both ends of the mirror, and the diff."""

from __future__ import annotations

import tempfile
from pathlib import Path

from microseg.cli.compile import _demo_compile
from microseg.cli.demo import DemoContext


def test_demo_shows_switch_monitor_node_and_the_diff_between_seed_states(capsys):
    with tempfile.TemporaryDirectory() as workdir:
        _demo_compile(DemoContext(workdir=Path(workdir)))
    out = capsys.readouterr().out
    assert "   traffic-policy vrf_all_home\n" in out
    assert "   tunnel destination 10.255.1.10\n" in out
    assert "flow tracking firewall distributed\n" in out
    assert "-      match rule72 ipv4\n" in out
    assert "+      match drop_all_else_web-app-reverse ipv4\n" in out
    assert "1 device changed, 121 lines added, 10 removed" in out

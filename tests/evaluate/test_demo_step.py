"""The demo's evaluator step tells the seed's story: the table, the bypass, the lint."""

from __future__ import annotations

from microseg.cli.demo import DemoContext
from microseg.cli.evaluate import _demo_check_and_lint


def test_demo_step_prints_seed_table_bypass_and_lint(tmp_path, capsys):
    _demo_check_and_lint(DemoContext(workdir=tmp_path))
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()]
    assert ["172.18.6.138", "10.100.99.51", "tcp/22", "connects", "ssh_to_web-app_servers"] in lines
    assert [
        "10.100.99.52",
        "10.100.99.51",
        "tcp/80",
        "dropped",
        "drop_http_between_webservers",
    ] in lines
    assert [
        "10.100.99.51",
        "10.100.99.52",
        "tcp/22",
        "not",
        "enforced",
        "*",
        "drop_all_else_web-app",
    ] in lines
    assert "ip local-proxy-arp" in out
    assert "unused monitor object 'andreas-vztx'" in out

"""`microseg workspace build`: the seed's workspace review, on a real (SQLite) store."""

from __future__ import annotations

import json
import textwrap

import pytest

from support import EXAMPLES

CHANGE = """
groups:
  - name: web-appserver1
    prefixes: [10.100.99.50/32, 10.100.99.51/32, 10.100.99.52/32]
rules:
  - name: web-appserver-discovery
    sources: [web-appserver1]
    destinations: any
    services: any
    monitor: andreas-vztx
policies:
  - name: dns_ntp_services
    description: Allow DNS and NTP requests to 10.100.1.6 and 10.100.1.7
    id: 256
    domain: andreas-lab-domain
    vrf: ALL
    rules: [rule72, rule73, web-appserver-discovery]
"""


@pytest.fixture
def store_with_workspace(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MICROSEG_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    assert run_cli("import", str(EXAMPLES / "home-lab-dns-ntp.yaml")).exit_code == 0
    assert run_cli("workspace", "create", "monitor-web").exit_code == 0
    change = tmp_path / "change.yaml"
    change.write_text(textwrap.dedent(CHANGE))
    result = run_cli("workspace", "set", "monitor-web", "-f", str(change))
    assert result.exit_code == 0, result.stderr
    return tmp_path


def test_adding_a_monitor_rule_in_a_workspace_changes_switch_and_vztx(
    run_cli, store_with_workspace
):
    # The seed: "There are 2 devices with proposed config changes" — the vZTX gets the GRE
    # tunnel, the 720XP the mirrored matches and its monitor session.
    result = run_cli("workspace", "build", "monitor-web", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["base"] == 1
    assert [d["device"] for d in data["devices"]] == ["andreas-ztx1", "andreasm-720xp-home"]
    switch = data["devices"][1]["diff"]
    assert switch.startswith(
        "--- rev:1 andreasm-720xp-home\n+++ ws:monitor-web andreasm-720xp-home"
    )
    assert "+      match web-appserver-discovery-reverse ipv4\n" in switch
    assert "+            mirror session andreas-vztx-ALL\n" in switch
    assert data["summary"]["devices_changed"] == 2
    assert data["summary"]["lines_removed"] == 0

    text = run_cli("workspace", "build", "monitor-web").stdout
    assert "@@ traffic-policies > field-set ipv4 prefix web-appserver1" in text
    assert "2 devices changed" in text


def test_unknown_workspace_is_a_clear_error(run_cli, store_with_workspace):
    result = run_cli("workspace", "build", "nosuch")
    assert result.exit_code == 1
    assert "no workspace 'nosuch'" in result.stderr

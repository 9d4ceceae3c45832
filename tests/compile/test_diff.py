"""Diffs between the seed's states, as the CloudVision workspace review showed them."""

from __future__ import annotations

import json

from microseg.compile.diff import diff_text, section_path
from support import EXAMPLES

SWITCH = "andreasm-720xp-home"
DNS_NTP = str(EXAMPLES / "home-lab-dns-ntp.yaml")
MONITOR = str(EXAMPLES / "home-lab-monitor.yaml")
FINAL = str(EXAMPLES / "home-lab.yaml")


def test_adding_the_monitor_rule_changes_the_switch_and_the_vztx(run_cli):
    # The seed: "There are 2 devices with proposed config changes" (switch and vZTX).
    result = run_cli("diff", DNS_NTP, MONITOR, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    changed = {d["device"]: d for d in data["devices"] if d["added"] or d["removed"]}
    assert sorted(changed) == ["andreas-ztx1", SWITCH]
    vztx = changed["andreas-ztx1"]
    assert vztx["removed"] == 0
    assert "+   tunnel destination 10.255.1.10\n" in vztx["diff"]
    switch = changed[SWITCH]["diff"]
    assert "+            mirror session andreas-vztx-ALL\n" in switch
    assert "+monitor session andreas-vztx-ALL destination tunnel mode gre" in switch
    assert data["summary"]["devices_changed"] == 2
    assert data["summary"]["lines_added"] == vztx["added"] + changed[SWITCH]["added"]


def test_switch_diff_between_the_seed_states_names_sections(run_cli):
    result = run_cli("diff", DNS_NTP, FINAL, "--device", SWITCH)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert f"--- {DNS_NTP} {SWITCH}\n+++ {FINAL} {SWITCH}\n" in out
    assert "-      match rule72 ipv4\n" in out
    assert "+      match drop_all_else_web-app-reverse ipv4\n" in out
    hunks = [line for line in out.splitlines() if line.startswith("@@")]
    assert hunks[0].endswith(
        "@@ traffic-policies > vrf ALL > traffic-policy input dns_ntp_services physical"
    )
    assert "1 device changed" in out


def test_identical_policies_have_no_diff(run_cli):
    result = run_cli("diff", FINAL, FINAL)
    assert result.exit_code == 0
    assert result.stdout.strip() == "0 devices changed, 0 lines added, 0 removed"


def test_unknown_device_is_an_error(run_cli):
    result = run_cli("diff", FINAL, FINAL, "--device", "nope")
    assert result.exit_code == 1
    assert "device 'nope' is configured by neither policy" in result.stderr


def test_line_counts_and_section_of_a_changed_match():
    old = "a\n   b\n      c\n   !\n   d\n      e\n"
    new = "a\n   b\n      c\n   !\n   d\n      E\n"
    diff = diff_text("dev", old, new, "old", "new")
    assert (diff.added, diff.removed) == (1, 1)
    assert "@@ a > d > e" in diff.text.splitlines()[2]
    assert section_path(new.splitlines(), 5) == "a > d > E"


def test_nftables_hunks_name_their_tab_indented_section():
    # nftables rulesets are indented with tabs: the section is the enclosing chain.
    old = "table inet microseg {\n\tchain policy_p {\n\t\tip saddr 10.0.0.1 accept\n\t}\n}\n"
    new = old.replace("10.0.0.1 accept", "10.0.0.1 drop")
    diff = diff_text("r1", old, new, "a", "b")
    [header] = [line for line in diff.text.splitlines() if line.startswith("@@")]
    assert header.endswith(
        "@@ table inet microseg { > chain policy_p { > ip saddr 10.0.0.1 accept"
    ), header


def test_diff_summary_prints_bracketed_device_names_literally(run_cli, tmp_path):
    policy = (
        "devices: [{name: 'leaf[bold]1'}]\n"
        "domains: [{name: dc, devices: ['leaf[bold]1']}]\n"
        "groups: [{name: g, prefixes: [10.0.0.0/24]}]\n"
        "rules: [{name: r, sources: [g], action: drop, destinations: any, services: any}]\n"
        "policies: [{name: p, id: 1, domain: dc, rules: RULES}]\n"
    )
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(policy.replace("RULES", "[]"))
    new.write_text(policy.replace("RULES", "[r]"))
    result = run_cli("diff", str(old), str(new))
    assert result.exit_code == 0, result.stderr
    assert ": leaf[bold]1 (+" in result.stdout

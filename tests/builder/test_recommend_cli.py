"""`microseg recommend` at the edge: bad input, and proposals written into a workspace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import seed_policies

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DNS_NTP = str(EXAMPLES / "home-lab-dns-ntp.yaml")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--sessions", "x.jsonl", "--store", "d"], "one of --sessions FILE or --store DIR"),
        (["--sessions", "/nonexistent/s.jsonl"], "no such session file"),
        (["--categories", "servers"], "unknown category servers"),
        (["--monitor-rule", "nope"], "monitor rule 'nope' is not in the policy"),
        (["--since", "yesterday"], "--since 'yesterday': expected a duration like 30m, 24h or 7d"),
        (["--between", "10.0.0.300/24"], "--between: '10.0.0.300/24' is not an IP prefix"),
        (["--min-share", "0"], "--min-share must be a share between 0 and 1"),
        (["--min-share", "0.0001"], "--min-share 0.0001 is below the floor of 0.5"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_1(run_cli, arguments, message, tmp_path):
    dns_ntp_file = seed_policies.dns_ntp_file(tmp_path)
    if arguments and arguments[0] != "--sessions" and "--store" not in arguments:
        arguments = ["--sessions", str(dns_ntp_file), *arguments]
    result = run_cli("recommend", DNS_NTP, *arguments)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_without_a_source_the_default_flow_store_is_read(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MICROSEG_FLOW_STORE", str(tmp_path / "empty-store"))
    (tmp_path / "empty-store").mkdir()
    result = run_cli("recommend", DNS_NTP, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["rules"] == [] and data["scoped_sessions"] == 0


def test_nothing_collected_yet_says_how_to_get_sessions(run_cli, tmp_path, monkeypatch):
    """A newcomer's first `recommend POLICY`, before any `collect`: what to do, not just a path."""
    monkeypatch.setenv("MICROSEG_FLOW_STORE", str(tmp_path / "flows"))
    result = run_cli("recommend", DNS_NTP)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: no sessions collected yet ({tmp_path / 'flows'} ")
    assert "run `microseg collect`, or give --sessions FILE or --store DIR" in result.stderr
    assert not (tmp_path / "flows").exists()


def test_a_malformed_sessions_file_is_a_user_error(run_cli, tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"protocol": "udp", "src": "10.0.0.1", "dst": "not-an-ip", "dport": 53}\n')
    result = run_cli("recommend", DNS_NTP, "--sessions", str(broken))
    assert result.exit_code == 1 and "not-an-ip" in result.stderr


def test_into_workspace_writes_the_proposals_for_review(run_cli, monkeypatch, tmp_path):
    """The seed's "submit rules": a workspace holding the new rules, placed in the policy."""
    dns_ntp_before = seed_policies.dns_ntp_before()
    dns_ntp_file = seed_policies.dns_ntp_file(tmp_path)
    from microseg.policyfile import dump_policy

    monkeypatch.setenv("MICROSEG_DATABASE_URL", f"sqlite:///{tmp_path / 'microseg.db'}")
    before = tmp_path / "before.yaml"
    before.write_text(dump_policy(dns_ntp_before), encoding="utf-8")
    assert run_cli("db", "init").exit_code == 0
    imported = run_cli("import", str(before), "-m", "DNS/NTP discovery")
    assert imported.exit_code == 0, imported.stderr

    result = run_cli(
        "recommend",
        "rev:1",
        "--sessions",
        str(dns_ntp_file),
        "--categories",
        "clients,infrastructure",
        "--monitor-rule",
        "dns_ntp_discovery",
        "--into-workspace",
        "builder-1",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    rule = data["rules"][0]["name"]
    assert data["workspace"]["objects"] == [
        {"section": "rules", "name": rule},
        {"section": "policies", "name": "dns_ntp_services"},
    ]

    from microseg.store import open_store

    with open_store() as store:
        policy = store.workspace_policy("builder-1")
    assert policy.policy("dns_ntp_services").rules == (rule, "dns_ntp_discovery")
    assert policy.rule(rule).sources == ("wifi_clients",)
    assert policy.rule(rule).services == ("DNS", "NTP")

    again = run_cli("workspace", "diff", "builder-1")
    assert again.exit_code == 0 and rule in again.stdout

    # The seed's review: "24 lines added to the config", not hundreds.
    build = run_cli("workspace", "build", "builder-1", "--json")
    assert build.exit_code == 0, build.stderr
    added = json.loads(build.stdout)["summary"]["lines_added"]
    assert added == data["quality"]["config_lines"]
    assert 0 < added <= 36


def _store_with(run_cli, monkeypatch, tmp_path, *policies):
    from microseg.policyfile import dump_policy

    monkeypatch.setenv("MICROSEG_DATABASE_URL", f"sqlite:///{tmp_path / 'microseg.db'}")
    assert run_cli("db", "init").exit_code == 0
    for number, policy_set in enumerate(policies, 1):
        path = tmp_path / f"revision-{number}.yaml"
        path.write_text(dump_policy(policy_set), encoding="utf-8")
        imported = run_cli("import", str(path), "-m", f"revision {number}")
        assert imported.exit_code == 0, imported.stderr


def test_into_a_workspace_on_another_revision_says_exactly_that(run_cli, monkeypatch, tmp_path):
    dns_ntp_file = seed_policies.dns_ntp_file(tmp_path)
    _store_with(
        run_cli,
        monkeypatch,
        tmp_path,
        seed_policies.dns_ntp_before(),
        seed_policies.home_lab_final(),
    )
    assert run_cli("workspace", "create", "builder-1").exit_code == 0  # on revision 2
    arguments = ["--sessions", str(dns_ntp_file), "--categories", "clients,infrastructure"]
    result = run_cli("recommend", "rev:1", *arguments, "--into-workspace", "builder-1")
    assert result.exit_code == 1
    assert (
        "workspace 'builder-1' is based on revision 2, but the recommendation was made from "
        "revision 1" in result.stderr
    )
    assert "unknown rule" not in result.stderr

    from microseg.store import open_store

    with open_store() as store:
        assert store.workspace_info("builder-1").changes == 0  # nothing was written
    # a file that is not the head revision cannot seed a new workspace either
    before = tmp_path / "revision-1.yaml"
    from_file = run_cli("recommend", str(before), *arguments, "--into-workspace", "builder-2")
    assert from_file.exit_code == 1
    assert "starts from the head revision 2" in from_file.stderr
    # the same revision, or the workspace itself, is fine
    fresh = run_cli("recommend", "rev:1", *arguments, "--into-workspace", "builder-3")
    assert fresh.exit_code == 0, fresh.stderr
    again = run_cli("recommend", "ws:builder-3", *arguments, "--into-workspace", "builder-3")
    assert again.exit_code == 0, again.stderr


def test_into_workspace_refuses_a_proposal_over_the_hardware_budget(run_cli, monkeypatch, tmp_path):
    """The budget is the EOS target's (targets/eos/target.py, the figure lint reports):
    shrunk here so the seed's per-host proposal (a rule for every IP) goes over it."""
    from microseg.targets.eos.target import HARDWARE_BUDGETS
    from microseg.targets.target import HardwareBudget

    dns_ntp_file = seed_policies.dns_ntp_file(tmp_path)
    _store_with(run_cli, monkeypatch, tmp_path, seed_policies.dns_ntp_before())
    for key in ("CCS-720XP", None):
        monkeypatch.setitem(HARDWARE_BUDGETS, key, HardwareBudget(100, "a test's small budget"))
    arguments = ["rev:1", "--sessions", str(dns_ntp_file)]
    report = run_cli("recommend", *arguments, "--json")
    [use] = json.loads(report.stdout)["quality"]["hardware"]
    assert use["budget"] == 100 and use["entries_after"] > 100 and use["over_budget"]
    assert "OVER BUDGET" in run_cli("recommend", *arguments).stdout

    refused = run_cli("recommend", *arguments, "--into-workspace", "builder-1")
    assert refused.exit_code == 1
    assert "goes over the hardware budget" in refused.stderr and "--force" in refused.stderr
    from microseg.store import open_store

    with open_store() as store:
        assert "builder-1" not in {w.name for w in store.workspace_list()}
    forced = run_cli("recommend", *arguments, "--into-workspace", "builder-1", "--force")
    assert forced.exit_code == 0, forced.stderr
    grouped = run_cli(
        "recommend",
        *arguments,
        "--categories",
        "clients,infrastructure",
        "--into-workspace",
        "builder-2",
    )
    assert grouped.exit_code == 0, grouped.stderr  # one group rule fits


def test_a_tiny_min_share_is_refused_and_forced_says_how_far_it_widened(run_cli, tmp_path):
    # One laptop seen talking to appserver1: --min-share 0.001 would open the whole wifi
    # /24 to it. Refused, naming the floor and the flag; forced, the output says which rule
    # allows how many addresses nobody saw.
    sessions = tmp_path / "one.csv"
    sessions.write_text(
        "vrf,protocol,src,sport,dst,dport,packets,bytes\n"
        "default,tcp,172.18.6.138,41000,10.100.99.50,4567,10,1000\n"
    )
    arguments = ["recommend", str(EXAMPLES / "home-lab-monitor.yaml"), "--sessions", str(sessions)]
    refused = run_cli(*arguments, "--min-share", "0.001")
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr.startswith("error: --min-share 0.001 is below the floor of 0.5: ")
    assert "--force-min-share" in refused.stderr
    forced = run_cli(*arguments, "--min-share", "0.001", "--force-min-share")
    assert forced.exit_code == 0, forced.stderr
    assert "Widened beyond what was seen" in forced.stdout
    assert (
        "allow_wifi_clients_to_appserver1: group wifi_clients used whole (min-share): "
        "1 of 256 addresses seen, 255 never seen" in forced.stdout
    )
    data = json.loads(
        run_cli(*arguments, "--min-share", "0.001", "--force-min-share", "--json").stdout
    )
    assert data["widened"] == [
        {
            "rule": "allow_wifi_clients_to_appserver1",
            "group": "wifi_clients",
            "reason": "min-share",
            "observed_addresses": 1,
            "group_addresses": 256,
            "unseen_addresses": 255,
        }
    ]
    # At the floor nothing is refused: the laptop alone is below half of the /24, so it
    # keeps its host group and nothing is widened.
    at_floor = json.loads(run_cli(*arguments, "--min-share", "0.5", "--json").stdout)
    assert at_floor["widened"] == [] and at_floor["rules"][0]["sources"] == ["host-172-18-6-138"]


def test_a_category_group_is_reported_widened_per_rule_not_per_recommendation(run_cli, tmp_path):
    # DNS_NTP_servers (infrastructure) holds 10.100.1.6 and .7. web01 asked only .7 for DNS,
    # web02 only .6 for NTP: both servers were seen in the recommendation, but each rule
    # allows its client to a server it never talked to, and says so.
    sessions = tmp_path / "dns-ntp.csv"
    sessions.write_text(
        "vrf,protocol,src,sport,dst,dport,packets,bytes\n"
        "default,udp,10.100.99.51,41000,10.100.1.7,53,2,200\n"
        "default,udp,10.100.99.52,41001,10.100.1.6,123,2,200\n"
    )
    arguments = [
        "recommend",
        DNS_NTP,
        "--sessions",
        str(sessions),
        "--categories",
        "infrastructure",
    ]
    data = json.loads(run_cli(*arguments, "--json").stdout)
    assert [
        (w["rule"], w["group"], w["observed_addresses"], w["unseen_addresses"])
        for w in data["widened"]
    ] == [
        ("allow_host-10-100-99-51_to_DNS_NTP_servers", "DNS_NTP_servers", 1, 1),
        ("allow_host-10-100-99-52_to_DNS_NTP_servers", "DNS_NTP_servers", 1, 1),
    ]
    text = run_cli(*arguments).stdout
    assert (
        "allow_host-10-100-99-51_to_DNS_NTP_servers: group DNS_NTP_servers used whole "
        "(category): 1 of 2 addresses seen, 1 never seen" in text
    )


def test_a_switch_without_a_loopback_still_gets_its_recommendations_with_a_note(run_cli, tmp_path):
    # The seed's switch mirrors to the vZTX over a GRE tunnel from its loopback: without
    # loopback_address neither end's configuration renders (compile says so), but the
    # rules the traffic supports do not depend on the tunnel. Recommend proposes them and
    # says which configurations it could not count config lines for.
    seed = (EXAMPLES / "home-lab-monitor.yaml").read_text()
    assert seed.count("    loopback_address: 10.255.1.10\n") == 1
    policy = tmp_path / "no-loopback.yaml"
    policy.write_text(seed.replace("    loopback_address: 10.255.1.10\n", ""))
    sessions = str(EXAMPLES / "seed-lab-sessions.csv")
    compiled = run_cli("compile", str(policy), "-d", "andreasm-720xp-home")
    assert compiled.exit_code == 1 and "no loopback_address" in compiled.stderr
    result = run_cli("recommend", str(policy), "--sessions", sessions, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    with_loopback = run_cli(
        "recommend", str(EXAMPLES / "home-lab-monitor.yaml"), "--sessions", sessions, "--json"
    )
    expected = json.loads(with_loopback.stdout)
    assert report["rules"] == expected["rules"] and report["rules"]
    assert report["quality"]["config_lines"] is None  # neither configuration renders
    notes = report["quality"]["notes"]
    for device in ("andreas-ztx1", "andreasm-720xp-home"):
        assert any(
            note.startswith(f"config lines of {device} not counted: its configuration does not")
            and "loopback_address" in note
            for note in notes
        ), notes


def test_include_blocked_says_in_its_help_that_it_overrides_drop_rules(run_cli):
    # It proposes forwarding what an existing drop or redirect rule stops (placed before
    # it): advice that widens access must say so where the option is offered.
    shown = " ".join(run_cli("recommend", "--help").stdout.split())
    assert "an existing drop or redirect rule stops today" in shown
    assert "widens access" in shown


def test_into_workspace_with_nothing_to_propose_makes_no_empty_workspace(
    run_cli, monkeypatch, tmp_path
):
    monkeypatch.setenv("MICROSEG_DATABASE_URL", f"sqlite:///{tmp_path / 'microseg.db'}")
    home_lab = str(seed_policies.EXAMPLES / "home-lab.yaml")
    assert run_cli("import", home_lab).exit_code == 0
    sessions = str(seed_policies.EXAMPLES / "seed-lab-sessions.csv")
    # the seed's final policy already decides every answered session: nothing to propose
    args = ["recommend", "rev:1", "--sessions", sessions, "--into-workspace", "builder-1"]
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    assert "no proposals: nothing written into workspace builder-1" in result.stdout
    assert json.loads(run_cli(*args, "--json").stdout)["workspace"]["objects"] == []
    assert json.loads(run_cli("workspace", "list", "--json").stdout) == []

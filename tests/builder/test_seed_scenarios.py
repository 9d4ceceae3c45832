"""The seed's two Policy Builder stories, end to end through `recommend()` and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import seed_policies

from microseg.builder import BuilderOptions, Scope, recommend, rule_selector
from microseg.builder.seed_sessions import (
    APPSERVER1,
    LAPTOP,
    WEB01,
    WEB02,
    dns_ntp_sessions,
    web_app_sessions,
    wifi_clients,
)
from microseg.flows.flowstore import read_sessions

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEED_CATEGORIES = ("clients", "infrastructure")  # carried by wifi_clients, DNS_NTP_servers


def monitor_scope(policy_set, rule: str) -> Scope:
    return Scope(all_of=((rule_selector(policy_set, rule),),))


def test_dns_ntp_with_categories_is_one_group_rule_and_a_few_dozen_lines(tmp_path):
    dns_ntp_before = seed_policies.dns_ntp_before()
    dns_ntp_file = seed_policies.dns_ntp_file(tmp_path)
    options = BuilderOptions(
        categories=SEED_CATEGORIES, scope=monitor_scope(dns_ntp_before, "dns_ntp_discovery")
    )
    result = recommend(dns_ntp_before, read_sessions(dns_ntp_file), options)

    assert [(r.rule.sources, r.rule.destinations, r.rule.services) for r in result.rules] == [
        (("wifi_clients",), ("DNS_NTP_servers",), ("DNS", "NTP"))
    ]
    assert result.new_groups == () and result.new_services == ()
    evidence = result.rules[0].evidence
    assert evidence.sessions == sum(row["sessions"] for row in dns_ntp_sessions())
    assert evidence.host_combinations == 60 * 2 * 2  # clients x servers x services
    assert [
        (w.group, w.observed_addresses, w.group_addresses) for w in result.rules[0].widened
    ] == [("wifi_clients", 60, 256)]
    quality = result.quality
    assert quality.coverage == 1.0 and quality.covered_sessions == evidence.sessions
    assert quality.rules == 1
    assert 0 < quality.config_lines <= 36  # the seed: "24 lines added to the config"
    # The rules go before the monitor rule, as MSS placed rule72 and rule73.
    assert result.target_policy == "dns_ntp_services"
    assert [(r.insert_at, r.before) for r in result.rules] == [(0, "dns_ntp_discovery")]


def test_dns_ntp_without_categories_is_a_rule_for_every_ip_and_hundreds_of_lines(tmp_path):
    dns_ntp_before = seed_policies.dns_ntp_before()
    dns_ntp_file = seed_policies.dns_ntp_file(tmp_path)
    result = recommend(dns_ntp_before, read_sessions(dns_ntp_file))

    sources = [r.rule.sources for r in result.rules]
    assert sorted(sources) == sorted((f"host-{c.replace('.', '-')}",) for c in wifi_clients(60))
    for rule in result.rules:
        assert rule.rule.destinations == ("host-10-100-1-6", "host-10-100-1-7")
        assert rule.rule.services == ("DNS", "NTP")
    assert {g.name for g in result.new_groups} >= {"host-10-100-1-6", "host-172-18-6-10"}
    assert all(g.prefixes[0].prefixlen == 32 for g in result.new_groups)
    assert result.quality.over_permissiveness == 0.0  # nothing wider than the evidence
    assert result.quality.config_lines >= 300
    assert result.quality.coverage == 1.0


def test_web_app_monitor_rule_finds_exactly_the_application_dependencies(tmp_path):
    web_app_monitor = seed_policies.web_app_monitor()
    web_app_file = seed_policies.web_app_file(tmp_path)
    options = BuilderOptions(
        categories=SEED_CATEGORIES,
        scope=monitor_scope(web_app_monitor, "web-appserver-discovery"),
    )
    result = recommend(web_app_monitor, read_sessions(web_app_file), options)

    proposed = {(r.rule.sources, r.rule.destinations, r.rule.services) for r in result.rules}
    web01, web02 = "host-10-100-99-51", "host-10-100-99-52"
    # DNS and NTP to the DNS servers: allow_all_DNS and allow_all_NTP allow them already
    assert {(a.rule, a.sessions) for a in result.already_allowed} == {
        ("allow_all_DNS", 6),
        ("allow_all_NTP", 6),
    }
    assert proposed == {
        # HTTP from a wifi client to both web servers
        (("wifi_clients",), (web01, web02), ("HTTP",)),
        # both web servers to appserver1 on tcp/4567 (the existing service is reused)
        ((web01,), ("appserver1",), ("appserver1-tcp",)),
        ((web02,), ("appserver1",), ("appserver1-tcp",)),
        # package updates from both mirrors outside the lab: one group of exactly them
        ((web01,), ("external-HTTP-servers",), ("HTTP",)),
        ((web02,), ("external-HTTP-servers",), ("HTTP",)),
        (("appserver1",), ("external-HTTP-servers",), ("HTTP",)),
    }
    by_pair = {(r.rule.sources, r.rule.destinations): r.evidence for r in result.rules}
    http_to_web = by_pair[(("wifi_clients",), (web01, web02))]
    assert http_to_web.sessions == 10
    assert {e.client for e in http_to_web.examples} == {LAPTOP}
    assert http_to_web.server_side == {"tcp-handshake": 10}
    assert by_pair[((web01,), ("appserver1",))].sessions == 4
    mirrors = next(g for g in result.new_groups if g.name == "external-HTTP-servers")
    assert [str(p) for p in mirrors.prefixes] == ["91.189.91.81/32", "185.125.190.36/32"]
    assert mirrors.description.startswith("2 host(s) outside every known group and segment")
    assert result.quality.coverage == 1.0


def test_dropped_attempts_are_reported_apart_and_never_proposed(tmp_path):
    web_app_monitor = seed_policies.web_app_monitor()
    web_app_file = seed_policies.web_app_file(tmp_path)
    options = BuilderOptions(scope=monitor_scope(web_app_monitor, "web-appserver-discovery"))
    result = recommend(web_app_monitor, read_sessions(web_app_file), options)

    blocked = {(a.source, a.destination, a.service, a.sessions) for a in result.blocked_attempts}
    assert blocked == {(LAPTOP, APPSERVER1, "SSH", 2), (WEB01, WEB02, "HTTP", 1)}
    assert not any("SSH" in r.rule.services for r in result.rules)
    allowed = sum(a.sessions for a in result.already_allowed)  # DNS and NTP
    assert result.quality.evidence_sessions + allowed == sum(
        r["sessions"] for r in web_app_sessions()
    )

    included = recommend(
        web_app_monitor,
        read_sessions(web_app_file),
        BuilderOptions(scope=options.scope, include_blocked=True),
    )
    assert ("SSH",) in {r.rule.services for r in included.rules}


def test_in_the_locked_down_lab_nothing_is_proposed_against_its_rules(tmp_path):
    """In the final lab every collected session is decided by a hand-written rule: DNS, NTP,
    HTTP to the web servers and web -> appserver1 are already allowed; the package updates
    are dropped by drop_all_else_web-app. Nothing is proposed; the review says why. With
    --include-blocked the updates are proposed, before the drop that stops them today."""
    home_lab_final = seed_policies.home_lab_final()
    web_app_file = seed_policies.web_app_file(tmp_path)
    from microseg.builder.quality import covered_sessions

    table = read_sessions(web_app_file)
    result = recommend(home_lab_final, table, BuilderOptions(categories=SEED_CATEGORIES))
    assert result.rules == ()
    assert {a.rule for a in result.already_allowed} == {
        "allow_all_DNS",
        "allow_all_NTP",
        "clients_to_webservers",
        "web-to-appserver1",
    }
    assert [(b.rule, b.verdict, b.sessions) for b in result.blocked_by_rules] == [
        ("drop_all_else_web-app", "drop", 18)
    ]

    included = recommend(
        home_lab_final, table, BuilderOptions(categories=SEED_CATEGORIES, include_blocked=True)
    )
    rules = home_lab_final.policy("vrf_all_home").rules
    updates = [r for r in included.rules if r.rule.destinations == ("external-HTTP-servers",)]
    assert updates and all(r.before == "drop_all_else_web-app" for r in updates)
    assert all(r.insert_at == rules.index("drop_all_else_web-app") for r in updates)
    assert {(d.rule, d.verdict) for r in updates for d in r.current_decisions} == {
        ("drop_all_else_web-app", "drop")
    }
    accepted = included.proposed_policy_set(home_lab_final)
    from microseg.builder.recommend import answered
    from microseg.flows.session_columns import session_columns

    columns = session_columns(table)
    evidence = columns.take(answered(columns))
    assert covered_sessions(home_lab_final, evidence) < covered_sessions(accepted, evidence)


def test_recommend_cli_json_carries_rules_quality_and_blocked_attempts(run_cli, tmp_path):
    web_app_file = seed_policies.web_app_file(tmp_path)
    result = run_cli(
        "recommend",
        str(EXAMPLES / "home-lab-monitor.yaml"),
        "--sessions",
        str(web_app_file),
        "--monitor-rule",
        "web-appserver-discovery",
        "--categories",
        "clients,infrastructure",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"rules", "quality", "blocked_attempts", "new_groups", "new_services"}
    assert set(data["quality"]) >= {"coverage", "rules", "config_lines", "over_permissiveness"}
    assert data["quality"]["coverage"] == 1.0 and data["quality"]["rules"] == 6
    rule = data["rules"][0]
    assert set(rule) >= {"name", "sources", "destinations", "services", "direction", "evidence"}
    assert rule["evidence"]["examples"]
    assert {a["service"] for a in data["blocked_attempts"]} == {"SSH", "HTTP"}
    again = run_cli(
        *["recommend", str(EXAMPLES / "home-lab-monitor.yaml"), "--sessions"],
        str(web_app_file),
        "--monitor-rule",
        "web-appserver-discovery",
        "--categories",
        "clients,infrastructure",
        "--json",
    )
    assert again.stdout == result.stdout  # deterministic byte for byte
    table = run_cli(
        "recommend",
        str(EXAMPLES / "home-lab-monitor.yaml"),
        "--sessions",
        str(web_app_file),
        "--monitor-rule",
        "web-appserver-discovery",
    )
    assert table.exit_code == 0
    assert "Attempts blocked" in table.stdout and "Quality: coverage 100.0%" in table.stdout


@pytest.mark.parametrize("categories", [(), SEED_CATEGORIES], ids=["hosts", "categories"])
def test_no_proposed_rule_is_shadowed_says_the_linter(tmp_path, categories):
    from microseg.compile import compile_all
    from microseg.evaluate.lint import shadow_findings

    for policy_set, path, rule in (
        (seed_policies.dns_ntp_before(), seed_policies.dns_ntp_file(tmp_path), None),
        (
            seed_policies.web_app_monitor(),
            seed_policies.web_app_file(tmp_path),
            "web-appserver-discovery",
        ),
    ):
        scope = monitor_scope(policy_set, rule) if rule else Scope()
        options = BuilderOptions(categories=categories, scope=scope)
        result = recommend(policy_set, read_sessions(path), options)
        proposed = {f"rule '{r.rule.name}'" for r in result.rules}
        assert proposed
        for intent in compile_all(result.proposed_policy_set(policy_set)).values():
            shadowed = {f.subject for f in shadow_findings(intent, set())}
            assert not shadowed & proposed

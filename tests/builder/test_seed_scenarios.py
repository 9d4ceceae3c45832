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
    assert result.target_policy == "dns_ntp_services" and result.insert_at == 0


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
    assert proposed == {
        # DNS and NTP to the DNS servers
        ((web01,), ("DNS_NTP_servers",), ("DNS", "NTP")),
        ((web02,), ("DNS_NTP_servers",), ("DNS", "NTP")),
        (("appserver1",), ("DNS_NTP_servers",), ("DNS", "NTP")),
        # HTTP from a wifi client to both web servers
        (("wifi_clients",), (web01, web02), ("HTTP",)),
        # both web servers to appserver1 on tcp/4567 (the existing service is reused)
        ((web01,), ("appserver1",), ("appserver1-tcp",)),
        ((web02,), ("appserver1",), ("appserver1-tcp",)),
        # package updates from the internet
        ((web01,), ("internet",), ("HTTP",)),
        ((web02,), ("internet",), ("HTTP",)),
        (("appserver1",), ("internet",), ("HTTP",)),
    }
    by_pair = {(r.rule.sources, r.rule.destinations): r.evidence for r in result.rules}
    http_to_web = by_pair[(("wifi_clients",), (web01, web02))]
    assert http_to_web.sessions == 10
    assert {e.client for e in http_to_web.examples} == {LAPTOP}
    assert http_to_web.server_side == {"tcp-handshake": 10}
    assert by_pair[((web01,), ("appserver1",))].sessions == 4
    internet = next(g for g in result.new_groups if g.name == "internet")
    assert [str(p) for p in internet.prefixes] == ["0.0.0.0/0"]
    assert "10.100.99.0/24" in [str(p) for p in internet.except_prefixes]
    assert result.quality.coverage == 1.0


def test_dropped_attempts_are_reported_apart_and_never_proposed(tmp_path):
    web_app_monitor = seed_policies.web_app_monitor()
    web_app_file = seed_policies.web_app_file(tmp_path)
    options = BuilderOptions(scope=monitor_scope(web_app_monitor, "web-appserver-discovery"))
    result = recommend(web_app_monitor, read_sessions(web_app_file), options)

    blocked = {(a.source, a.destination, a.service, a.sessions) for a in result.blocked_attempts}
    assert blocked == {(LAPTOP, APPSERVER1, "SSH", 2), (WEB01, WEB02, "HTTP", 1)}
    assert not any("SSH" in r.rule.services for r in result.rules)
    assert result.quality.evidence_sessions == sum(r["sessions"] for r in web_app_sessions())

    included = recommend(
        web_app_monitor,
        read_sessions(web_app_file),
        BuilderOptions(scope=options.scope, include_blocked=True),
    )
    assert ("SSH",) in {r.rule.services for r in included.rules}


def test_proposals_go_before_the_drop_rule_that_would_shadow_them(tmp_path):
    """In the locked-down lab, drop_all_else_web-app drops the package updates; the
    proposals land before it, and the evaluator confirms they now carry the traffic."""
    home_lab_final = seed_policies.home_lab_final()
    web_app_file = seed_policies.web_app_file(tmp_path)
    from microseg.builder.quality import covered_sessions

    table = read_sessions(web_app_file)
    result = recommend(home_lab_final, table, BuilderOptions(categories=SEED_CATEGORIES))
    rules = home_lab_final.policy("vrf_all_home").rules
    assert result.insert_at <= rules.index("allow_all_NTP")
    # The review says what each proposal changes: updates are dropped today, DNS is allowed.
    today = {r.rule.name: r.current_decisions for r in result.rules}
    assert [(d.rule, d.verdict, d.sessions) for d in today["allow_appserver1_to_internet"]] == [
        ("drop_all_else_web-app", "drop", 6)
    ]
    dns = next(
        r for r in result.rules if r.rule.sources == ("appserver1",) and "DNS" in r.rule.services
    )
    assert {(d.rule, d.verdict) for d in dns.current_decisions} == {
        ("allow_all_DNS", "forward"),
        ("allow_all_NTP", "forward"),
    }
    assert result.quality.coverage == 1.0

    from microseg.builder.recommend import answered
    from microseg.flows.session_columns import session_columns

    columns = session_columns(table)
    evidence = columns.take(answered(columns))
    before = covered_sessions(home_lab_final, evidence)
    assert before < result.quality.evidence_sessions  # the internet updates were dropped
    appended = result.proposed_policy_set(home_lab_final)
    late = type(result)(**{**result.__dict__, "insert_at": len(rules)})
    shadowed = late.proposed_policy_set(home_lab_final)
    assert covered_sessions(shadowed, evidence) < result.quality.evidence_sessions
    assert covered_sessions(appended, evidence) == result.quality.evidence_sessions


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
    assert data["quality"]["coverage"] == 1.0 and data["quality"]["rules"] == 9
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
        (seed_policies.home_lab_final(), seed_policies.web_app_file(tmp_path), None),
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

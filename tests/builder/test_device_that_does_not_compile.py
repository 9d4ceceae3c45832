"""A device whose policy does not compile costs the verification of that device only: the
others are verified, and the report names the device, why, and the sessions that pass it."""

from __future__ import annotations

import json

import seed_policies
from seed_policies import with_leaf2

from microseg.builder import BuilderOptions, Scope, recommend, rule_selector
from microseg.flows.flowstore import read_sessions

SEED_CATEGORIES = ("clients", "infrastructure")
SWITCH = "andreasm-720xp-home"
# EOS binds one traffic policy per VRF: a leaf in two domains that each bind VRF ALL.
LEAF2_ERROR = (
    "policies 'second' and 'third' both bind to VRF 'ALL' on device 'leaf2': "
    "EOS takes one traffic policy per VRF"
)


def _recommend(policy_set, tmp_path):
    options = BuilderOptions(
        categories=SEED_CATEGORIES,
        scope=Scope(all_of=((rule_selector(policy_set, "dns_ntp_discovery"),),)),
        target_policy="dns_ntp_services",
    )
    sessions = read_sessions(seed_policies.dns_ntp_file(tmp_path))
    return recommend(policy_set, sessions, options)


def test_the_switch_is_verified_when_another_leaf_does_not_compile(tmp_path):
    alone = _recommend(seed_policies.dns_ntp_before(), tmp_path)
    result = _recommend(with_leaf2(seed_policies.dns_ntp_before()), tmp_path)

    assert [r.rule for r in result.rules] == [r.rule for r in alone.rules]
    quality = result.quality
    assert quality.coverage == 1.0 and quality.covered_sessions == alone.quality.covered_sessions
    assert [(u.device, u.reason, u.sessions) for u in quality.unverified] == [
        ("leaf2", LEAF2_ERROR, 0)
    ]
    assert any(note.startswith("leaf2 not verified: ") for note in quality.notes)
    assert quality.config_lines == alone.quality.config_lines  # the switch's lines counted


def test_sessions_through_the_leaf_that_does_not_compile_are_not_called_covered(tmp_path):
    # leaf2 routes the wifi clients' subnet: every evidence session passes it.
    result = _recommend(with_leaf2(seed_policies.dns_ntp_before(), "172.18.6.0/24"), tmp_path)
    quality = result.quality
    [unverified] = quality.unverified
    assert (unverified.device, unverified.sessions) == ("leaf2", quality.evidence_sessions)
    assert quality.coverage is None and quality.covered_sessions is None


def test_recommend_cli_names_the_device_that_does_not_compile(tmp_path, run_cli):
    from microseg.policyfile import dump_policy

    policy = tmp_path / "two-leaves.yaml"
    policy.write_text(dump_policy(with_leaf2(seed_policies.dns_ntp_before())))
    sessions = str(seed_policies.dns_ntp_file(tmp_path))
    args = ["recommend", str(policy), "--sessions", sessions, "--policy", "dns_ntp_services"]
    table = run_cli(*args, "--categories", ",".join(SEED_CATEGORIES))
    assert table.exit_code == 0, table.stderr
    assert "coverage 100.0%" in table.stdout
    assert f"leaf2 not verified: its policy does not compile ({LEAF2_ERROR})" in table.stdout
    data = json.loads(run_cli(*args, "--json").stdout)
    assert data["quality"]["unverified"] == [
        {"device": "leaf2", "reason": LEAF2_ERROR, "sessions": 0}
    ]


def test_traffic_a_rule_drops_today_is_not_proposed_because_another_leaf_does_not_compile():
    # The policy in force was read as empty when any device failed: every session looked
    # unhandled, and the builder proposed forwarding what the drop rules drop.
    home_lab = seed_policies.home_lab_final()
    sessions = read_sessions(seed_policies.EXAMPLES / "seed-lab-sessions.csv")
    alone = recommend(home_lab, sessions)
    result = recommend(with_leaf2(home_lab), sessions)
    assert [r.rule for r in result.rules] == [r.rule for r in alone.rules] == []
    assert result.blocked_by_rules == alone.blocked_by_rules
    assert result.blocked_by_rules and alone.quality.coverage == result.quality.coverage

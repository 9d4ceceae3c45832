"""Lint: exact shadowing over field-set cells, dead matches, unused objects, bypass, hardware."""

from __future__ import annotations

import json
import random

import pytest
from tests.evaluate.random_policies import random_policy_set, replaced
from tests.evaluate.test_engine import random_packets

from microseg.compile.resolve import compile_all
from microseg.evaluate import CompiledDevice, PacketBatch
from microseg.evaluate.lint import lint, range_prefix_count
from microseg.model import PolicySet
from support import EXAMPLES


def _policy(groups, services, rules, segments=()) -> PolicySet:
    return PolicySet.model_validate(
        {
            "devices": [{"name": "leaf1", "hardware": "CCS-720XP", "segments": list(segments)}],
            "domains": [{"name": "dc", "devices": ["leaf1"]}],
            "groups": groups,
            "services": services,
            "rules": rules,
            "policies": [
                {"name": "p", "id": 1, "domain": "dc", "rules": [r["name"] for r in rules]}
            ],
        }
    )


GROUPS = [
    {"name": "web", "prefixes": ["10.0.1.0/24"]},
    {"name": "web01", "prefixes": ["10.0.1.1/32"]},
    {"name": "db", "prefixes": ["10.0.2.0/24"]},
]


def _findings(policy_set, kind):
    return [f for f in lint(policy_set)["findings"] if f["kind"] == kind]


def test_rule_under_a_broader_drop_is_shadowed_with_different_action():
    rules = [
        {
            "name": "drop-web",
            "sources": ["web"],
            "action": "drop",
            "direction": "unidirectional",
            "destinations": "any",
            "services": "any",
        },
        {
            "name": "web01-db-ssh",
            "sources": ["web01"],
            "destinations": ["db"],
            "services": ["ssh"],
            "direction": "unidirectional",
        },
    ]
    services = [{"name": "ssh", "protocol": "tcp", "destination_ports": [22]}]
    [finding] = _findings(_policy(GROUPS, services, rules), "shadowed")
    assert finding["match"] == "web01-db-ssh"
    assert finding["shadowed_by"] == ["drop-web"]
    assert finding["action_differs"] is True
    # Moving the allow above the drop would open web01 -> db ssh: not a lint fix.
    assert "move rule web01-db-ssh above" not in finding["fix"]
    assert "moving rule web01-db-ssh above drop-web would widen access" in finding["fix"]
    assert finding["hints"] == [{"action": "remove", "rule": "web01-db-ssh", "policy": "p"}]


def test_a_drop_under_a_broader_allow_may_move_up_it_only_narrows_access():
    rules = [
        {
            "name": "web-any",
            "sources": ["web"],
            "destinations": "any",
            "services": "any",
            "direction": "unidirectional",
        },
        {
            "name": "drop-web01",
            "sources": ["web01"],
            "destinations": "any",
            "services": "any",
            "action": "drop",
            "direction": "unidirectional",
        },
    ]
    [finding] = _findings(_policy(GROUPS, [], rules), "shadowed")
    assert finding["action_differs"] is True
    assert (
        "move it above web-any: that changes verdicts, and never to a wider access"
        in (finding["fix"])
    )
    assert finding["hints"] == [
        {"action": "move", "rule": "drop-web01", "above": "web-any", "policy": "p"},
        {"action": "remove", "rule": "drop-web01", "policy": "p"},
    ]


def test_shadowing_by_a_union_names_the_minimal_set():
    services = [
        {"name": "mid", "protocol": "tcp", "destination_ports": ["60-70"]},
        {"name": "low", "protocol": "tcp", "destination_ports": ["1-100"]},
        {"name": "high", "protocol": "tcp", "destination_ports": ["101-200"]},
        {"name": "span", "protocol": "tcp", "destination_ports": ["50-150"]},
    ]
    rules = [
        {
            "name": f"r-{s}",
            "sources": "any",
            "destinations": ["db"],
            "services": [s],
            "direction": "unidirectional",
        }
        for s in ("mid", "low", "high", "span")
    ]
    [finding] = _findings(_policy(GROUPS, services, rules), "shadowed")
    assert finding["match"] == "r-span"
    assert finding["shadowed_by"] == ["r-low", "r-high"]  # r-mid is not needed
    assert finding["action_differs"] is False
    assert "redundant" in finding["fix"]


def test_except_prefix_leaves_a_hole_so_no_shadowing():
    groups = [
        *GROUPS,
        {"name": "web-but-01", "prefixes": ["10.0.1.0/24"], "except_prefixes": ["10.0.1.1/32"]},
    ]
    rules = [
        {
            "name": "drop-most",
            "sources": ["web-but-01"],
            "destinations": "any",
            "services": "any",
            "action": "drop",
            "direction": "unidirectional",
        },
        {
            "name": "web-any",
            "sources": ["web"],
            "direction": "unidirectional",
            "destinations": "any",
            "services": "any",
        },
    ]
    assert _findings(_policy(groups, [], rules), "shadowed") == []
    # Without the except-prefix the second rule is shadowed.
    groups[-1] = {"name": "web-but-01", "prefixes": ["10.0.1.0/24"]}
    assert [f["match"] for f in _findings(_policy(groups, [], rules), "shadowed")] == ["web-any"]


def test_group_emptied_by_its_except_prefix_never_matches():
    groups = [
        *GROUPS,
        {"name": "nothing", "prefixes": ["10.0.3.0/31"], "except_prefixes": ["10.0.3.0/31"]},
    ]
    rules = [
        {
            "name": "from-nothing",
            "sources": ["nothing"],
            "destinations": "any",
            "services": "any",
            "action": "drop",
            "direction": "unidirectional",
        }
    ]
    [finding] = _findings(_policy(groups, [], rules), "never-matches")
    assert "nothing" in finding["message"]


def test_unused_objects_are_reported(home_lab):
    report = lint(home_lab)
    assert [(f["kind"], f["subject"]) for f in report["findings"]] == [
        ("unused", "monitor object 'andreas-vztx'")
    ]
    assert report["hardware"][0]["entries"] > 0 and report["hardware"][0]["budget"] == 4096


def test_drop_rule_within_a_non_isolated_segment_can_bypass_the_switch(home_lab):
    device = home_lab.devices[0]
    segments = tuple(
        s.model_copy(update={"hosts_isolated": False}) if s.name == "Vlan299" else s
        for s in device.segments
    )
    variant = replaced(home_lab, devices=(device.model_copy(update={"segments": segments}),))
    bypass = _findings(variant, "bypass")
    assert [f["subject"] for f in bypass] == [
        "rule 'drop_http_between_webservers'",
        "rule 'drop_all_else_web-app'",
    ]
    assert all("local-proxy-arp" in f["fix"] for f in bypass)
    assert _findings(home_lab, "bypass") == []


def test_hardware_overrun_is_a_finding():
    groups = [
        {"name": f"g{i}", "prefixes": [f"10.{i}.{2 * j}.0/24" for j in range(60)]} for i in range(2)
    ]
    services = [{"name": "odd", "protocol": "tcp", "destination_ports": ["1-65534"]}]
    rules = [{"name": "wide", "sources": ["g0"], "destinations": ["g1"], "services": ["odd"]}]
    [finding] = _findings(_policy(groups, services, rules), "hardware")
    assert finding["entries"] > finding["budget"]


def test_a_hardware_model_without_a_figure_says_so_instead_of_passing_for_known(run_cli, tmp_path):
    # A typo in `hardware` (CCS-7X0XP) got the generic figure exactly as if it were the
    # 720XP's: the budget says where it comes from now, in the JSON and on the text line.
    policy = tmp_path / "typo.yaml"
    policy.write_text((EXAMPLES / "home-lab.yaml").read_text().replace("CCS-720XP", "CCS-7X0XP"))
    [row] = json.loads(run_cli("lint", str(policy), "--json").stdout)["hardware"]
    assert row["budget"] == 4096
    assert row["budget_source"].startswith(
        "no figure for hardware 'CCS-7X0XP' (models with one: CCS-720XP): generic EOS"
    )
    text = run_cli("lint", str(policy)).stdout.splitlines()[-1]
    assert text.endswith("budget 4096 (no figure for CCS-7X0XP: a generic planning figure)")
    seed = run_cli("lint", str(EXAMPLES / "home-lab.yaml")).stdout.splitlines()[-1]
    assert seed.endswith("needs about 30 entries, budget 4096")


def test_range_prefix_count():
    assert range_prefix_count(0, 65535) == 1
    assert range_prefix_count(22, 22) == 1
    assert range_prefix_count(1, 65534) == 30  # the worst case, 2w - 2
    assert range_prefix_count(1024, 2047) == 1


@pytest.mark.parametrize("seed", range(12))
def test_a_shadowed_match_never_decides_a_packet(seed):
    policy_set = random_policy_set(seed, rules=14)
    shadowed = {
        f["match"]
        for f in lint(policy_set)["findings"]
        if f["kind"] in ("shadowed", "never-matches")
    }
    intent = compile_all(policy_set)["sw1"]
    evaluation = CompiledDevice(intent).evaluate(
        PacketBatch.from_fields(**random_packets(random.Random(seed), 4000))
    )
    decided = {
        intent.policies[0].matches[i].name for i in set(evaluation.match_index.tolist()) if i >= 0
    }
    assert not (decided & shadowed)


def test_lint_cli_exit_codes_and_json(run_cli, tmp_path):
    result = run_cli("lint", str(EXAMPLES / "home-lab.yaml"))
    assert result.exit_code == 1
    assert "unused monitor object 'andreas-vztx'" in result.stdout
    assert "fix: delete monitor object andreas-vztx" in result.stdout
    as_json = run_cli("lint", str(EXAMPLES / "home-lab.yaml"), "--json")
    assert json.loads(as_json.stdout)["clean"] is False
    assert as_json.stdout == run_cli("lint", str(EXAMPLES / "home-lab.yaml"), "--json").stdout
    clean = tmp_path / "clean.yaml"
    text = (EXAMPLES / "home-lab.yaml").read_text()
    clean.write_text(text.split("monitor_objects:")[0] + "rules:" + text.split("\nrules:")[1])
    clean_result = run_cli("lint", str(clean))
    assert clean_result.exit_code == 0, clean_result.stdout + clean_result.stderr
    assert "no findings" in clean_result.stdout


def test_the_only_web_db_drop_is_never_called_redundant_when_its_reverse_is_shadowed():
    # The drop's -reverse match (db -> web) is shadowed by an earlier drop of everything
    # from db; its forward match (web -> db) is the only thing dropping web -> db.
    # Removing the rule would forward that: lint used to call it redundant.
    rules = [
        {
            "name": "db-silent",
            "sources": ["db"],
            "destinations": "any",
            "services": "any",
            "action": "drop",
            "direction": "unidirectional",
        },
        {
            "name": "web-db-drop",
            "sources": ["web"],
            "destinations": ["db"],
            "services": "any",
            "action": "drop",
        },
    ]
    [finding] = _findings(_policy(GROUPS, [], rules), "shadowed")
    assert finding["match"] == "web-db-drop-reverse"
    assert "the IPv4 reverse match of rule web-db-drop" in finding["message"]
    assert "remove rule web-db-drop:" not in finding["fix"].replace("do not remove", "")
    assert "do not remove rule web-db-drop: that would change verdicts" in finding["fix"]
    assert "from drop to forward" in finding["fix"]
    assert finding["hints"] == [{"action": "unidirectional", "rule": "web-db-drop"}]


def test_a_shadowed_reverse_of_a_live_allow_is_fixed_unidirectional_not_by_removal():
    # db -> web is already allowed by an earlier rule, so web-to-db's reverse match decides
    # nothing; its forward match (web -> db on 5432) is the rule's point. In this
    # default-forward policy removing the rule changes no verdict today, but only until a
    # drop is added below it: the fix is to make it unidirectional.
    rules = [
        {
            "name": "db-to-web",
            "sources": ["db"],
            "destinations": ["web"],
            "services": "any",
            "direction": "unidirectional",
        },
        {"name": "web-to-db", "sources": ["web"], "destinations": ["db"], "services": ["PG"]},
    ]
    services = [{"name": "PG", "protocol": "tcp", "destination_ports": [5432]}]
    [finding] = _findings(_policy(GROUPS, services, rules), "shadowed")
    assert finding["match"] == "web-to-db-reverse"
    assert finding["hints"] == [{"action": "unidirectional", "rule": "web-to-db"}]
    assert finding["fix"] == (
        "make rule web-to-db unidirectional: its reverse matches decide no packet, "
        "so no verdict changes"
    )


def test_a_symmetric_deny_all_is_one_match_and_no_finding():
    # Its reverse equals its forward match, so it compiles to one match: nothing shadowed.
    rules = [
        {
            "name": "deny-all",
            "sources": "any",
            "destinations": "any",
            "services": "any",
            "action": "drop",
        },
    ]
    assert _findings(_policy(GROUPS, [], rules), "shadowed") == []


# A later or earlier rule on source ports 0-1 was taken to meet one on source port 2 when a
# third service had two source-port intervals (term boxes padded with an empty slot that
# "met" 0-1), so lint answered from the wrong rule.
SOURCE_PORT_POLICY = """\
devices: [{name: sw1}]
domains: [{name: d1, devices: [sw1]}]
services:
  - {name: low-source, protocol: tcp, source_ports: [0-1]}
  - {name: source-two, protocol: tcp, source_ports: [2]}
  - {name: source-four-six, protocol: tcp, source_ports: [4, 6]}
rules:
  - {name: %s, sources: any, destinations: any, services: [%s], direction: unidirectional, action: %s}
  - {name: %s, sources: any, destinations: any, services: [%s], direction: unidirectional, action: %s}
  - {name: allow-four-six, sources: any, destinations: any, services: [source-four-six],
     direction: unidirectional}
policies:
  - {name: p1, id: 1, domain: d1, rules: [%s, %s, allow-four-six], default_action: %s}
"""


def _source_port_policy(tmp_path, first, second, default_action):
    path = tmp_path / "policy.yaml"
    path.write_text(SOURCE_PORT_POLICY % (*first, *second, first[0], second[0], default_action))
    return str(path)


def test_a_drop_on_source_port_2_is_not_redundant_to_a_later_drop_on_ports_0_1(run_cli, tmp_path):
    # Removing drop-two forwards tcp from source port 2 (the default forwards): lint
    # suggested exactly that removal, "no packet's verdict changes".
    policy = _source_port_policy(
        tmp_path,
        ("drop-two", "source-two", "drop"),
        ("drop-low", "low-source", "drop"),
        "forward",
    )
    result = run_cli("lint", policy, "--json")
    assert json.loads(result.stdout)["findings"] == []
    assert result.exit_code == 0


def test_an_allow_on_source_port_2_is_not_shadowed_by_an_earlier_drop_on_ports_0_1(
    run_cli, tmp_path
):
    # lint said drop-low takes all of allow-two's traffic and suggested removing allow-two.
    policy = _source_port_policy(
        tmp_path,
        ("drop-low", "low-source", "drop"),
        ("allow-two", "source-two", "forward"),
        "drop",
    )
    result = run_cli("lint", policy)
    assert "allow-two" not in result.stdout
    # drop-low is redundant indeed: without it, source ports 0-1 meet the default drop.
    assert "redundant rule 'drop-low'" in result.stdout
    assert "1 finding" in result.stdout

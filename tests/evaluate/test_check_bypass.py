"""check's bypass: only both ends in one subnet of a non-hairpinning segment of the VRF."""

from __future__ import annotations

from microseg.evaluate.check import check_connection
from microseg.evaluate.lint import lint
from microseg.model import PolicySet


def _policy_set(segments: list[dict], vrf: str = "ALL") -> PolicySet:
    return PolicySet.model_validate(
        {
            "devices": [{"name": "leaf1", "segments": segments}],
            "domains": [{"name": "dc", "devices": ["leaf1"], "vrfs": ["default", "blue"]}],
            "groups": [
                {"name": "hosts", "prefixes": ["10.0.0.0/16", "fd00::/16"]},
            ],
            "rules": [
                {
                    "name": "drop-hosts",
                    "sources": ["hosts"],
                    "destinations": ["hosts"],
                    "services": "any",
                    "action": "drop",
                }
            ],
            "policies": [
                {"name": "p", "id": 1, "domain": "dc", "vrf": vrf, "rules": ["drop-hosts"]}
            ],
        }
    )


FLAT = {"name": "Vlan10", "vlan": 10, "subnets": ["10.0.1.0/24", "10.0.2.0/24", "fd00:1::/64"]}


def test_both_ends_in_one_ipv6_subnet_bypass_the_switch():
    checked = check_connection(_policy_set([FLAT]), "fd00:1::5", "fd00:1::6", "icmp")
    assert checked.request.protocol == 58 and checked.request.icmp_type == 128
    assert checked.bypass is not None and checked.bypass.segment.name == "Vlan10"
    assert checked.result.startswith("not enforced")
    assert not checked.policy_allows  # still says what the policy would do


def test_ends_in_two_subnets_of_one_segment_are_routed_by_the_switch():
    # Hosts of different subnets reach each other through their gateway, the SVI: the
    # switch routes the traffic, so the policy applies (issue: "same subnet/VLAN").
    checked = check_connection(_policy_set([FLAT]), "10.0.1.5", "10.0.2.5", "tcp", 22)
    assert checked.bypass is None
    assert checked.result == "dropped"


def test_segment_of_another_vrf_does_not_bypass():
    blue = {**FLAT, "vrf": "blue"}
    policy_set = _policy_set([blue])
    assert check_connection(policy_set, "10.0.1.5", "10.0.1.6", "tcp", 22).bypass is None
    in_blue = check_connection(policy_set, "10.0.1.5", "10.0.1.6", "tcp", 22, vrf="blue")
    assert in_blue.bypass is not None and in_blue.result.startswith("not enforced")


def test_lint_bypass_needs_both_sides_in_one_subnet():
    # The rule's groups are whole /16s: they touch both subnets, and each subnet holds
    # traffic between its own hosts, so the rule can be bypassed.
    findings = [f for f in lint(_policy_set([FLAT]))["findings"] if f["kind"] == "bypass"]
    assert [f["segment"] for f in findings] == ["Vlan10"]
    # Sources only in one subnet, destinations only in the other: all of it is routed.
    policy_set = _policy_set([FLAT])
    document = policy_set.model_dump(mode="json")
    document["groups"] = [
        {"name": "left", "prefixes": ["10.0.1.0/24"]},
        {"name": "right", "prefixes": ["10.0.2.0/24"]},
    ]
    document["rules"][0].update(sources=["left"], destinations=["right"])
    routed = PolicySet.model_validate(document)
    assert [f for f in lint(routed)["findings"] if f["kind"] == "bypass"] == []


def test_lint_bypass_only_for_segments_the_rules_policy_applies_to():
    # The policy binds to VRF blue; the segment is in VRF default: its traffic never meets
    # the rule, bypass or not.
    assert [
        f for f in lint(_policy_set([FLAT], vrf="blue"))["findings"] if f["kind"] == "bypass"
    ] == []
    blue = {**FLAT, "vrf": "blue"}
    findings = lint(_policy_set([blue], vrf="blue"))["findings"]
    assert [f["segment"] for f in findings if f["kind"] == "bypass"] == ["Vlan10"]


def test_lint_bypass_sees_except_prefixes():
    # The group's hosts in 10.0.1.0/24 are all excepted: no traffic of the rule stays in it.
    policy_set = _policy_set([{"name": "Vlan10", "subnets": ["10.0.1.0/24"]}])
    document = policy_set.model_dump(mode="json")
    document["groups"][0]["except_prefixes"] = ["10.0.1.0/24"]
    excepted = PolicySet.model_validate(document)
    assert [f for f in lint(excepted)["findings"] if f["kind"] == "bypass"] == []

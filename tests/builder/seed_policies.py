"""The seed's policies at the stages the builder tests need, and their session files.

Plain functions, not fixtures: a conftest.py here would shadow the suite's own `conftest`
module that other test packages import by name.
"""

from __future__ import annotations

from pathlib import Path

from microseg.builder.seed_sessions import (
    blocked_attempts,
    dns_ntp_sessions,
    web_app_sessions,
    write_jsonl,
)
from microseg.model import SECTIONS, Device, Policy, PolicySet, Rule, SecurityDomain, Segment
from microseg.policyfile import load_policy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def dns_ntp_before() -> PolicySet:
    """The seed's DNS/NTP stage before the Policy Builder ran: policy dns_ntp_services holds
    only the manual monitor rule (wifi clients -> DNS/NTP servers, DNS and NTP, mirrored)."""
    lab = load_policy(EXAMPLES / "home-lab-dns-ntp.yaml")
    monitor = Rule(
        name="dns_ntp_discovery",
        sources=("wifi_clients",),
        destinations=("DNS_NTP_servers",),
        services=("DNS", "NTP"),
        monitor="andreas-vztx",
    )
    policy = lab.policy("dns_ntp_services").model_copy(update={"rules": (monitor.name,)})
    return replaced(lab, rules=(monitor,), policies=(policy,))


def replaced(policy_set: PolicySet, **sections) -> PolicySet:
    """A new, validated PolicySet with some sections replaced."""
    return PolicySet(**{**{s: getattr(policy_set, s) for s in SECTIONS}, **sections})


def with_leaf2(policy_set, leaf2_segment: str = "10.100.30.0/24"):
    """`policy_set` plus leaf2, whose two domains both bind VRF ALL (to its first rule)."""
    leaf2 = Device(
        name="leaf2",
        platform="eos",
        segments=(Segment(name="Vlan300", vlan=300, subnets=(leaf2_segment,)),),
    )
    domains = tuple(
        SecurityDomain(name=name, devices=("leaf2",), vrfs=("default",))
        for name in ("second", "third")
    )
    policies = tuple(
        Policy(name=name, id=300 + n, domain=name, vrf="ALL", rules=(policy_set.rules[0].name,))
        for n, name in enumerate(("second", "third"))
    )
    return replaced(
        policy_set,
        devices=(*policy_set.devices, leaf2),
        domains=(*policy_set.domains, *domains),
        policies=(*policy_set.policies, *policies),
    )


def web_app_monitor() -> PolicySet:
    return load_policy(EXAMPLES / "home-lab-monitor.yaml")


def home_lab_final() -> PolicySet:
    return load_policy(EXAMPLES / "home-lab.yaml")


def dns_ntp_file(tmp_path: Path) -> Path:
    return write_jsonl(dns_ntp_sessions(), tmp_path / "dns-ntp.jsonl")


def web_app_file(tmp_path: Path) -> Path:
    return write_jsonl(web_app_sessions() + blocked_attempts(), tmp_path / "web-app.jsonl")

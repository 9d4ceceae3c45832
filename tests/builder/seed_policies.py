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
from microseg.model import SECTIONS, PolicySet, Rule
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


def web_app_monitor() -> PolicySet:
    return load_policy(EXAMPLES / "home-lab-monitor.yaml")


def home_lab_final() -> PolicySet:
    return load_policy(EXAMPLES / "home-lab.yaml")


def dns_ntp_file(tmp_path: Path) -> Path:
    return write_jsonl(dns_ntp_sessions(), tmp_path / "dns-ntp.jsonl")


def web_app_file(tmp_path: Path) -> Path:
    return write_jsonl(web_app_sessions() + blocked_attempts(), tmp_path / "web-app.jsonl")

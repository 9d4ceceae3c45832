"""Helpers for change-control tests: the seed's examples pointed at eAPI test doubles."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from support import EXAMPLES, REFERENCE

SWITCH = "andreasm-720xp-home"
VZTX = "andreas-ztx1"
DNS_NTP = (REFERENCE / "seed-720xp-dns-ntp.eos").read_text()
WEB_APP = (REFERENCE / "seed-720xp-web-app.eos").read_text()
IMPLICIT_DEFAULTS = (
    "      match ipv4-all-default ipv4\n      !\n      match ipv6-all-default ipv6\n!\n"
)


def with_implicit_defaults(reference: str) -> str:
    """A seed listing as the device prints it whole: EOS's default matches close each
    traffic-policy (the listings were cut before them; see test_eos_golden)."""
    text = reference if reference.endswith("      !\n") else reference + "      !\n"
    return text + IMPLICIT_DEFAULTS


def pointed_at(
    example: str | Path, directory: Path, doubles: dict, name: str | None = None
) -> Path:
    """The example policy with each named device reached at its double (http on loopback)."""
    from microseg.policyfile import dump_policy, load_policy

    policy_set = load_policy(EXAMPLES / example if isinstance(example, str) else example)
    updates = {}
    for section in ("devices", "monitor_nodes"):
        updates[section] = tuple(
            obj.model_copy(
                update={
                    "management_address": "127.0.0.1",
                    "management_port": doubles[obj.name].port,
                    "management_transport": "http",
                }
            )
            if obj.name in doubles
            else obj
            for obj in getattr(policy_set, section)
        )
    path = directory / (name or Path(example).name)
    path.write_text(dump_policy(policy_set.model_copy(update=updates)))
    return path


def owned(double, role: str = "switch") -> str:
    """What microseg owns on the double, read through the EOS driver."""
    from microseg.targets.eos.driver import EosDriver

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        name = double.hostname(double.running)
        driver = EosDriver(name, double.endpoint(), "admin", "secret", role=role)
    return driver.running()


def hand_edit(double, *commands: str) -> None:
    """Someone configures the device directly (`configure` ... `end`), not through microseg."""
    body = {
        "jsonrpc": "2.0",
        "id": "hand",
        "method": "runCmds",
        "params": {"version": 1, "cmds": ["configure", *commands, "end"], "format": "json"},
    }
    answer = double.handle(json.dumps(body).encode())
    assert "error" not in answer, answer

"""toyfw: a tiny third-party target, defined only in microseg's test suite.

It proves the plug-in path: installed as a distribution with an entry point in the group
`microseg.targets` (tests/targets/test_plugin.py writes its dist-info), it is used by
`microseg compile` and `microseg lint` without any edit to microseg itself. It imports only
microseg's public target API, as any third-party target would.

The "device" is a directory holding `running.txt`: a test double of a device, good enough
for the conformance suite's driver verbs.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from microseg.targets import DeviceDiff, DriverError, Facts, MatchCounters
from microseg.targets.target import Capabilities, HardwareBudget, Limits


class ToyDriver:
    """A directory standing in for a device (a test double): running.txt, previous.txt."""

    def __init__(self, device: str, directory: Path) -> None:
        self.device = device
        self.directory = directory
        self._candidate: str | None = None

    def facts(self) -> Facts:
        return Facts(hostname=self.device, model="toyfw", version="1", serial="")

    def running(self) -> str:
        path = self.directory / "running.txt"
        return path.read_text() if path.exists() else ""

    def load(self, config: str) -> None:
        self._candidate = config

    def compare(self) -> DeviceDiff:
        if self._candidate is None:
            raise DriverError(self.device, "nothing loaded")
        lines = difflib.unified_diff(
            self.running().splitlines(), self._candidate.splitlines(), lineterm=""
        )
        body = list(lines)[2:]
        return DeviceDiff(self.device, "\n".join(body) + "\n" if body else "")

    def commit(self, confirm_within: int | None = None) -> None:
        if self._candidate is None:
            raise DriverError(self.device, "nothing loaded")
        (self.directory / "previous.txt").write_text(self.running())
        (self.directory / "running.txt").write_text(self._candidate)
        self._candidate = None

    def confirm(self) -> None:
        pass

    def discard(self) -> None:
        self._candidate = None

    def rollback(self) -> None:
        (self.directory / "running.txt").write_text((self.directory / "previous.txt").read_text())

    def counters(self) -> list[MatchCounters]:
        return []


class ToyTarget:
    name = "toyfw"
    description = "a toy firewall: one line per match"
    capabilities = Capabilities(redirect=False, decap=False, mirror=False, ipv6=False)
    limits = Limits(
        max_name_bytes=24,
        reserved_match_names=frozenset({"default"}),
        hardware_budgets={None: HardwareBudget(8, "toyfw holds 8 entries")},
    )
    default_verdict = "forward"

    def render(self, intent, options) -> str:
        lines = [f"toyfw {intent.device}"]
        for policy in intent.policies:
            lines.append(f"policy {policy.name} vrf {policy.vrf}")
            for match in policy.matches:
                verdict = "deny" if match.action == "drop" else "permit"
                sources = ",".join(match.source_field_sets) or "any"
                destinations = ",".join(match.destination_field_sets) or "any"
                lines.append(f"  {match.name} {sources} -> {destinations} {verdict}")
        return "\n".join(lines) + "\n"

    def driver(self, device, credentials, session=None, timeout=None) -> ToyDriver:
        return ToyDriver(device.name, Path(os.environ["TOYFW_DEVICES"]) / device.name)


TARGET = ToyTarget()

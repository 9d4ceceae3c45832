"""The lint check registry: one class per check, found by name, selected on the command line.

Like ANTA's catalog: a check is a class with a `name` (what `--select` / `--ignore` take and
what its findings are called), a one-line `summary` and `run(context)`. Registering a class
adds it to `CHECKS`; the order of registration is the order findings are reported in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

from microseg.compile.intent import DeviceIntent
from microseg.compile.resolve import compile_all
from microseg.evaluate.lint.boxes import AddressLine
from microseg.evaluate.lint.space import EditPlan, PolicyAnalysis, plan_edits
from microseg.model import MicrosegError, PolicySet


@dataclass(frozen=True)
class Finding:
    """One lint result; `kind` is the name of the check that found it."""

    kind: str
    subject: str  # `rule 'x'`, `group 'g'`, `device 'd'`
    message: str
    fix: str
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "message": self.message,
            "fix": self.fix,
            **self.details,
        }


class LintContext:
    """What every check may read, each computed once: the policy set, its compiled device
    intents and the exact analysis of each policy (shared by the match checks)."""

    def __init__(self, policy_set: PolicySet):
        self.policy_set = policy_set
        # The hardware estimate per device, filled in by the hardware check when it runs.
        self.hardware: list[dict] = []

    @cached_property
    def intents(self) -> dict[str, DeviceIntent]:
        return compile_all(self.policy_set)

    @cached_property
    def analyses(self) -> list[PolicyAnalysis]:
        """One analysis per policy, on the first device (by name) that enforces it: a
        policy compiles to the same matches on every device of its domain."""
        analyses: dict[str, PolicyAnalysis] = {}
        for intent in self.intents.values():
            if all(policy.name in analyses for policy in intent.policies):
                continue
            line = AddressLine(intent)
            for position, policy in enumerate(intent.policies):
                if policy.name not in analyses:
                    analyses[policy.name] = PolicyAnalysis(line, intent, position)
        return list(analyses.values())

    @cached_property
    def edits(self) -> EditPlan:
        """The removals and direction changes lint suggests, verified all together."""
        return plan_edits(self.analyses)


class Check:
    """One lint check. Subclasses set `name` and `summary` and implement `run`."""

    name: ClassVar[str]
    summary: ClassVar[str]

    def run(self, context: LintContext) -> list[Finding]:
        raise NotImplementedError


CHECKS: dict[str, type[Check]] = {}


def register(check: type[Check]) -> type[Check]:
    """Class decorator: make a check known by its name (in report order)."""
    if check.name in CHECKS:
        raise ValueError(f"lint check {check.name!r} is registered twice")
    CHECKS[check.name] = check
    return check


def selected_checks(
    select: Iterable[str] | None = None, ignore: Iterable[str] | None = None
) -> list[type[Check]]:
    """The checks to run, in report order: `select` (default: all) minus `ignore`.

    Example: selected_checks(select=["shadowed", "redundant"])"""
    chosen = list(select) if select else list(CHECKS)
    dropped = list(ignore or ())
    unknown = [name for name in (*chosen, *dropped) if name not in CHECKS]
    if unknown:
        raise MicrosegError(
            f"unknown lint check(s): {', '.join(dict.fromkeys(unknown))} "
            f"(checks: {', '.join(CHECKS)})"
        )
    checks = [CHECKS[name] for name in CHECKS if name in chosen and name not in dropped]
    if not checks:
        # "no findings" from no check at all would read as a clean policy.
        raise MicrosegError(
            f"--ignore {','.join(dict.fromkeys(dropped))} leaves no check of "
            f"{','.join(chosen)} to run: nothing would be checked"
        )
    return checks

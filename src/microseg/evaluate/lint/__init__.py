"""Policy lint: one class per check, registered by name (see `registry`), run over the
compiled policy. Findings come in check order, then policy rule order, deterministically.

Checks, in report order: never-matches, shadowed, redundant (`matches`), bypass, nested-prefix,
unused, hardware. `lint(policy_set, select=..., ignore=...)` runs a subset.
"""

from __future__ import annotations

from collections.abc import Iterable

# isort: off
# Importing a check module registers its checks; this order is the report order.
from microseg.evaluate.lint import matches as _matches  # noqa: F401
from microseg.evaluate.lint import bypass as _bypass  # noqa: F401
from microseg.evaluate.lint import prefixes as _prefixes  # noqa: F401
from microseg.evaluate.lint import unused as _unused  # noqa: F401
from microseg.evaluate.lint.hardware import (
    hardware_entries,
    hardware_report,
    range_prefix_count,
)

# isort: on
from microseg.evaluate.lint.registry import CHECKS, Check, Finding, LintContext, selected_checks
from microseg.model import PolicySet

__all__ = [
    "CHECKS",
    "Check",
    "Finding",
    "LintContext",
    "hardware_entries",
    "hardware_report",
    "lint",
    "range_prefix_count",
]


def lint(
    policy_set: PolicySet,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
) -> dict:
    """Every finding of the selected checks (default: all), in a deterministic order, plus
    the hardware estimate per device (when the hardware check runs).

    Example: lint(policy_set, select=["shadowed", "redundant"])"""
    checks = selected_checks(select, ignore)
    context = LintContext(policy_set)
    findings: list[Finding] = []
    for check in checks:
        findings += check().run(context)
    kinds = list(CHECKS)
    order = {name: position for position, name in enumerate(_rule_order(policy_set))}
    findings.sort(
        key=lambda f: (
            kinds.index(f.kind),
            order.get(f.subject, len(order)),
            f.subject,
            f.details.get("match", ""),
            f.message,
        )
    )
    return {
        "clean": not findings,
        "findings": [f.as_dict() for f in findings],
        "hardware": context.hardware,
    }


def _rule_order(policy_set: PolicySet) -> list[str]:
    names = [f"rule '{r}'" for p in policy_set.policies for r in p.rules]
    return list(dict.fromkeys(names))

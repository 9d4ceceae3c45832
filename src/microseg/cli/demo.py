"""`microseg demo`: the seed lab end to end on embedded defaults (no server to install).

Each area registers a step with `@demo_step(order, title)` in its own CLI module; a step
takes a `DemoContext` and prints its part of the story.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape
from rich.rule import Rule

from microseg.cli.app import DEMO_STEPS, GETTING_STARTED, app, demo_step
from microseg.cli.common import console
from microseg.model import SECTIONS, PolicySet
from microseg.policyfile import load_policy

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@dataclass
class DemoContext:
    """What the steps share: the seed lab's policies and a scratch directory."""

    workdir: Path
    examples: Path = EXAMPLES
    policies: dict[str, PolicySet] = field(default_factory=dict)


@app.command(rich_help_panel=GETTING_STARTED)
def demo(
    examples: Path = EXAMPLES,
) -> None:
    """Run the seed lab end to end: validate, store, compile, check, collect, recommend.

    Example: microseg demo
    """
    with tempfile.TemporaryDirectory(prefix="microseg-demo-") as workdir:
        context = DemoContext(workdir=Path(workdir), examples=examples)
        for _, title, step in sorted(DEMO_STEPS, key=lambda s: s[0]):
            console.print(Rule(title))
            step(context)


@demo_step(10, "1. The seed lab as policy files")
def _validate_examples(context: DemoContext) -> None:
    for name in ("home-lab-dns-ntp.yaml", "home-lab-monitor.yaml", "home-lab.yaml"):
        policy_set = load_policy(context.examples / name)
        context.policies[name] = policy_set
        counts = ", ".join(
            f"{len(getattr(policy_set, s))} {s.replace('_', ' ')}"
            for s in SECTIONS
            if getattr(policy_set, s)
        )
        console.print(f"[bold]{name}[/]: valid — {counts}")
    final = context.policies["home-lab.yaml"]
    for policy in final.policies:
        console.print(
            f"policy [bold]{escape(policy.name)}[/] (id {policy.id}) on domain "
            f"{escape(policy.domain)}, VRF {escape(policy.vrf)}: {len(policy.rules)} rules"
        )
        for index, rule_name in enumerate(policy.rules, 1):
            rule = final.rule(rule_name)
            console.print(
                f"  {index}. {rule.name}: {_names(rule.sources)} -> {_names(rule.destinations)} "
                f"on {_names(rule.services)}, {rule.direction}, {rule.action}",
                markup=False,
            )


def _names(names: tuple[str, ...]) -> str:
    return ",".join(names) if names else "any"

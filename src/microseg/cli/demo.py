"""`microseg demo`: the seed lab end to end on embedded defaults (no server to install).

Each area registers a step with `@demo_step(order, title)` in its own CLI module; a step
takes a `DemoContext` and prints its part of the story.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from microseg import EXAMPLES
from microseg.cli.app import DEMO_STEPS, GETTING_STARTED, DemoStep, app, demo_step
from microseg.cli.common import console, counted, print_paragraph, section_count
from microseg.model import MicrosegError

if TYPE_CHECKING:
    from microseg.model import PolicySet

DEMO_WIDTH = 100  # columns: the demo's output fits a 100-column terminal (and narrower ones)


@dataclass
class DemoContext:
    """What the steps share: the seed lab's policies and a scratch directory."""

    workdir: Path
    examples: Path = EXAMPLES
    policies: dict[str, PolicySet] = field(default_factory=dict)


@app.command(rich_help_panel=GETTING_STARTED)
def demo(
    keep: Path | None = typer.Option(
        None,
        "--keep",
        help="Keep what the demo writes (its store and flow store) in this new or empty "
        "directory, to explore afterwards.",
    ),
    live: bool = typer.Option(
        False,
        "--live",
        help="Run the seed story on the live lab (root, network namespaces, softflowd): "
        "real packets, the monitor node's flows, the builder, change control, `lab test`.",
    ),
) -> None:
    """Run the seed lab end to end: validate, store, compile, check, collect, recommend.

    Nothing is installed and nothing outside a temporary directory (or --keep DIR) is written
    (with --live, the lab's namespaces too, removed at the end).
    Example: microseg demo --keep lab
    """
    from rich.rule import Rule

    if keep is not None and keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        raise MicrosegError(f"--keep {keep}: exists and is not an empty directory")
    if live:
        _live(keep)
        return
    steps = sorted(DEMO_STEPS, key=lambda s: s[0])
    with _fitting_width(DEMO_WIDTH), _workdir(keep) as workdir:
        _introduce(steps)
        context = DemoContext(workdir=workdir)
        for _, title, step in steps:
            console.print(Rule(title))
            step(context)
        console.print(Rule("What to try next"))
        _what_next(keep)


def _live(keep: Path | None) -> None:
    """The story of `microseg.lab.story` on the live lab, each command shown then run, with
    the demo's own store and flow store; the lab goes down at the end, also on a failure."""
    from rich.rule import Rule

    from microseg.lab.lab import require_tools
    from microseg.lab.story import STORY

    try:
        require_tools()
    except MicrosegError as error:
        raise MicrosegError(
            f"demo --live cannot run here: {error}. `microseg demo` tells the same story "
            "offline, from recorded traffic"
        ) from None
    with _workdir(keep) as workdir:
        env = dict(os.environ)
        env["MICROSEG_DATABASE_URL"] = f"sqlite:///{workdir / 'microseg.db'}"
        env["MICROSEG_FLOW_STORE"] = str(workdir / "flows")
        env["MICROSEG_LAB_NAME"] = "microseg-demo"  # beside a lab of the default name
        lab_is_ours = False
        try:
            for step in STORY:
                console.print(Rule(step.says))
                console.print(f"$ {step.command()}", markup=False)
                arguments = [str(EXAMPLES) + a[8:] if a.startswith("examples/") else a
                             for a in step.arguments]  # fmt: skip
                ran = subprocess.run([sys.executable, "-m", "microseg", *arguments], env=env)
                if ran.returncode != 0:
                    raise MicrosegError(f"demo --live: `{step.command()}` exited {ran.returncode}")
                if step.arguments[:2] == ("lab", "up"):
                    lab_is_ours = True
                elif step.arguments[:2] == ("lab", "down"):
                    lab_is_ours = False
        finally:
            if lab_is_ours:
                subprocess.run([sys.executable, "-m", "microseg", "lab", "down"], env=env)


@contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="microseg-demo-") as workdir:
            yield Path(workdir)
        return
    try:
        keep.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MicrosegError(f"--keep {keep}: cannot create it: {error.strerror}") from None
    yield keep


@contextmanager
def _fitting_width(columns: int) -> Iterator[None]:
    """Rich lays out (and wraps) text `columns` wide, or a terminal's width if narrower."""
    # rich has no public way back to "the terminal's width": restore its private setting.
    saved = console._width, console.soft_wrap
    console.width = min(console.width, columns) if console.is_terminal else columns
    console.soft_wrap = False
    try:
        yield
    finally:
        console._width, console.soft_wrap = saved


def _introduce(steps: list[tuple[int, str, DemoStep]]) -> None:
    console.print(
        "microseg demo: the seed lab of the Arista MSS blog (a 720XP switch, a vZTX monitor "
        "node, DNS/NTP servers, wifi clients, two web servers and an app server), end to end "
        "on embedded defaults:",
        markup=False,
    )
    for _, title, _step in steps:
        console.print(f"  {title}", markup=False)


def _what_next(keep: Path | None) -> None:
    lab = _shown_path(EXAMPLES)
    lines = [
        "The seed lab's files are in the examples directory:",
        f"  lab={lab}",
        "  microseg validate $lab",
        "  microseg check $lab/home-lab.yaml --from 172.18.6.138 --to 10.100.99.51 --port 22",
        "  microseg compile $lab/home-lab.yaml -d andreasm-720xp-home --target nftables",
        "  microseg whatif --base $lab/home-lab-monitor.yaml --candidate $lab/home-lab.yaml \\",
        "      --sessions $lab/seed-lab-sessions.csv",
    ]
    if keep is None:
        lines.append("Run `microseg demo --keep DIR` to keep the demo's store and flow store.")
    else:
        kept = keep.resolve()
        lines += [
            "The demo's store (microseg.db) and flow store (flows/) are kept: explore them with",
            f"  export MICROSEG_DATABASE_URL=sqlite:///{kept}/microseg.db",
            f"  export MICROSEG_FLOW_STORE={kept}/flows",
            "  microseg log",
            "  microseg workspace diff web-only-from-wifi",
            "  microseg sessions list",
            "  microseg recommend rev:2 --monitor-rule web-appserver-discovery --categories clients",
        ]
    lines.append("The README walks through each command; `microseg COMMAND --help` has examples.")
    for line in lines:
        console.print(line, markup=False, soft_wrap=True)  # commands stay whole, to copy


def _shown_path(path: Path) -> str:
    """`path` relative to the working directory when it is below it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@demo_step(10, "1. The seed lab as policy files")
def _validate_examples(context: DemoContext) -> None:
    from rich.markup import escape

    from microseg.model import SECTIONS
    from microseg.policyfile import load_policy

    for name in ("home-lab-dns-ntp.yaml", "home-lab-monitor.yaml", "home-lab.yaml"):
        policy_set = load_policy(context.examples / name)
        context.policies[name] = policy_set
        counts = ", ".join(
            section_count(s, len(getattr(policy_set, s)))
            for s in SECTIONS
            if getattr(policy_set, s)
        )
        print_paragraph(f"{name}: valid — {counts}")
    final = context.policies["home-lab.yaml"]
    for policy in final.policies:
        console.print(
            f"policy [bold]{escape(policy.name)}[/] (id {policy.id}) on domain "
            f"{escape(policy.domain)}, VRF {escape(policy.vrf)}: {counted(len(policy.rules), 'rule')}"
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

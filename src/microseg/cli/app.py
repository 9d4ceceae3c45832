"""The Typer application every command module registers on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from microseg import __version__

# `microseg --help` lists commands under these headings, in this order. A command names its
# heading with Typer's `rich_help_panel=` (tests/cli check that every command has one).
GETTING_STARTED = "Getting started"
POLICY_FILES = "Policy files"
STORE = "Store: revisions and workspaces"
COMPILE_AND_CHECK = "Compile and check"
FLOWS = "Flows"
BUILDER = "Policy builder"
DEPLOY = "Deploy: change control"
OPERATE = "Operate: live lab and Policy Monitor"
SERVER = "Server: REST API, web UI, users"
PANELS = (
    GETTING_STARTED,
    POLICY_FILES,
    STORE,
    COMPILE_AND_CHECK,
    FLOWS,
    BUILDER,
    DEPLOY,
    OPERATE,
    SERVER,
)


class _HelpArgument(TyperArgument):
    """An argument shown as click shows it: `POLICY` (required) or `[POLICY]`, no `{policy}`
    or `<str>` (the style of this Typer version's plain help)."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw.upper()
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    def _rich_display_name(self) -> str:
        return self.display_name_raw.upper() + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


class _HelpOption(TyperOption):
    """An option's value shown by what it is (`--device DEVICE`), not its Python type."""

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.metavar is not None:
            return self.metavar
        long_names = [o for o in self.opts if o.startswith("--")] or self.opts
        return long_names[0].lstrip("-").upper()


class HelpGroup(TyperGroup):
    """The root command: commands grouped under headings, parameters named plainly."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        _plain_parameters(self)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        commands = [
            (name, command)
            for name in self.list_commands(ctx)
            if (command := self.get_command(ctx, name)) is not None and not command.hidden
        ]
        if not commands:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in commands)
        for panel in (*PANELS, None):
            rows = [
                (name, command.get_short_help_str(limit))
                for name, command in commands
                if getattr(command, "rich_help_panel", None) == panel
                or (panel is None and getattr(command, "rich_help_panel", None) not in PANELS)
            ]
            if rows:
                with formatter.section(panel or "Commands"):
                    formatter.write_dl(rows)


def _plain_parameters(command: Any) -> None:
    for sub in getattr(command, "commands", {}).values():
        _plain_parameters(sub)
    for parameter in command.params:
        if type(parameter) is TyperArgument:
            parameter.__class__ = _HelpArgument
        elif type(parameter) is TyperOption:
            parameter.__class__ = _HelpOption


app = typer.Typer(
    name="microseg",
    cls=HelpGroup,
    help="Microsegmentation controller for switch fabrics: policy as code, EOS and nftables "
    "compiler, evaluator, flow collector and policy builder.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"microseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """microseg command line."""


# A demo step takes the demo's context (`microseg.cli.demo.DemoContext`, which imports this
# module, hence Any) and prints its part of the story.
DemoStep = Callable[[Any], None]

# `microseg demo` runs these in order; each area registers its own step with @demo_step(n).
DEMO_STEPS: list[tuple[int, str, DemoStep]] = []


def demo_step(order: int, title: str) -> Callable[[DemoStep], DemoStep]:
    def register(function: DemoStep) -> DemoStep:
        DEMO_STEPS.append((order, title, function))
        return function

    return register

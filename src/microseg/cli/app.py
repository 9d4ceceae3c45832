"""The Typer application every command module registers on."""

from __future__ import annotations

import difflib
import importlib
import inspect
import sys
from collections.abc import Callable
from typing import Any

import typer
import typer.main
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.models import CommandInfo, TyperInfo

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

# Each top-level command and the module (under microseg.cli) that registers it. A command
# imports its module only when it runs, so `microseg --version` imports none and `microseg
# validate` never loads the store; `--help` and shell completion import them all (the modules
# keep heavy imports inside their functions). tests/cli/test_startup.py checks this table
# against what the modules register. `demo` runs every area's demo step: it loads them all.
COMMAND_MODULES: dict[str, str] = {
    "demo": "*",
    "validate": "policy",
    "schema": "policy",
    "fmt": "policy",
    "import": "store",
    "export": "store",
    "log": "store",
    "db": "store",
    "workspace": "compile",  # `workspace build` is a compile command
    "compile": "compile",
    "diff": "compile",
    "check": "evaluate",
    "whatif": "evaluate",
    "lint": "evaluate",
    "collect": "flows",
    "sessions": "flows",
    "recommend": "builder",
    "drift": "change",
    "change": "change",
    "lab": "lab",
    "monitor": "monitor",
    "serve": "serve",
    "user": "user",
}
# The order the modules register in, which is the order `--help` lists commands in.
ALL_MODULES: tuple[str, ...] = ("builder", "change", "compile", "demo", "evaluate", "flows")
ALL_MODULES += ("lab", "monitor", "policy", "serve", "store", "user")


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
    """The root command: commands grouped under headings, parameters named plainly.

    Commands are imported and converted to click commands one by one, when used: `--help`
    lists them from what Typer registered (name, docstring, heading) without converting their
    parameters, which is most of the cost of a Typer application's start-up."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        _plain_parameters(self)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(_registered(ALL_MODULES))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        module = COMMAND_MODULES.get(cmd_name)
        modules = ALL_MODULES if module in (None, "*") else (module,)
        # A group converted before its module was imported lacks the subcommands that module
        # adds (`workspace build` comes with `compile`): a second run in one process (tests,
        # an embedding program) would otherwise say "No such command 'build'".
        incomplete = any(f"microseg.cli.{name}" not in sys.modules for name in modules)
        if cmd_name not in self.commands or incomplete:
            info = _registered(modules).get(cmd_name)
            if info is None:
                return None
            self.commands[cmd_name] = _plain_parameters(_converted(info))
        return self.commands[cmd_name]

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except typer.TyperException as error:  # click's UsageError, as Typer vendors it
            # Typer suggests from the commands already loaded, which here is none of them.
            matches = difflib.get_close_matches(args[0], COMMAND_MODULES) if args else []
            if matches and "Did you mean" not in error.message:
                suggestions = ", ".join(repr(match) for match in matches)
                error.message = f"{error.message.rstrip('.')}. Did you mean {suggestions}?"
            raise

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        commands = [
            (name, listed)
            for name, info in _registered(ALL_MODULES).items()
            if not (listed := _listing(name, info)).hidden
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


Registered = CommandInfo | TyperInfo


def _registered(modules: tuple[str, ...]) -> dict[str, Registered]:
    """Name -> what Typer registered, once `modules` are imported, in Typer's order
    (commands, then groups)."""
    for module in modules:
        importlib.import_module(f"microseg.cli.{module}")
    found: dict[str, Registered] = {}
    for command in app.registered_commands:
        assert command.callback is not None
        found[command.name or typer.main.get_command_name(command.callback.__name__)] = command
    for group in app.registered_groups:
        assert group.name is not None  # every sub-application is added with a name
        found[group.name] = group
    return found


def _converted(info: Registered) -> Any:
    """The click command Typer makes of one registered command or group."""
    if isinstance(info, CommandInfo):
        return typer.main.get_command_from_info(
            info,
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=app.rich_markup_mode,
        )
    return typer.main.get_group_from_info(
        info,
        pretty_exceptions_short=app.pretty_exceptions_short,
        rich_markup_mode=app.rich_markup_mode,
        suggest_commands=app.suggest_commands,
    )


def _listing(name: str, info: Registered) -> TyperCommand:
    """A parameterless stand-in carrying what `--help` shows of a command: its short help
    (from the docstring, as Typer takes it), its heading and whether it is hidden."""
    if isinstance(info, CommandInfo):
        text = info.help if info.help is not None else inspect.getdoc(info.callback)
        return TyperCommand(
            name,
            help=inspect.cleandoc(text) if text else None,
            short_help=info.short_help,
            hidden=info.hidden,
            deprecated=info.deprecated,
            rich_help_panel=info.rich_help_panel,
        )
    solved = typer.main.solve_typer_info_defaults(info)
    return TyperCommand(
        name,
        help=solved.help,
        short_help=solved.short_help,
        hidden=solved.hidden,
        deprecated=solved.deprecated,
        rich_help_panel=solved.rich_help_panel,
    )


def _plain_parameters(command: Any) -> Any:
    for sub in getattr(command, "commands", {}).values():
        _plain_parameters(sub)
    for parameter in command.params:
        if type(parameter) is TyperArgument:
            parameter.__class__ = _HelpArgument
        elif type(parameter) is TyperOption:
            parameter.__class__ = _HelpOption
    return command


app = typer.Typer(
    name="microseg",
    cls=HelpGroup,
    help="Microsegmentation controller for switch fabrics: policy as code, EOS and nftables "
    "compiler, evaluator, flow collector and policy builder.",
    no_args_is_help=True,
    add_completion=True,
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


def root_command() -> HelpGroup:
    """The whole command tree, every command converted (for tests and tools that walk it)."""
    group = typer.main.get_command(app)
    assert isinstance(group, HelpGroup)
    for name in group.list_commands(None):
        group.get_command(None, name)
    return group

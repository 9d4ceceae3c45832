"""The Typer application every command module registers on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from microseg import __version__

app = typer.Typer(
    name="microseg",
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

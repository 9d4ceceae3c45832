"""`microseg lab up|test|down|status`: the seed lab on real packets (issue 12)."""

from __future__ import annotations

from pathlib import Path

import typer

from microseg.cli.app import OPERATE, app
from microseg.cli.common import JSON_OPTION_HELP, emit_json, print_table

lab_app = typer.Typer(
    help="The seed lab in network namespaces (root): up, test, status, down.",
    no_args_is_help=True,
)
app.add_typer(lab_app, name="lab", rich_help_panel=OPERATE)


@lab_app.command("up")
def lab_up(
    policy: Path | None = typer.Argument(None, help="Policy file (default: the seed's)."),
    no_isolation: bool = typer.Option(
        False, "--no-isolation", help="Leave the Vlan299 bridge ports plain (the seed's Ooops)."
    ),
) -> None:
    """Build the seed lab and deploy the policy to its switch through a change.

    Example: sudo microseg lab up examples/home-lab.yaml
    """
    from microseg.lab import lab as seed_lab
    from microseg.store import open_store

    with open_store() as store:
        state, change = seed_lab.up(store, policy, not no_isolation)
    isolation = "isolated" if state.data["isolated"] else "NOT isolated"
    typer.echo(
        f"lab up: {len(state.data['namespaces'])} namespaces, Vlan299 ports {isolation}, "
        f"policy deployed by change {change} (state {state.path})"
    )


@lab_app.command("test")
def lab_test(as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP)) -> None:
    """The seed's connectivity table: real connections next to `microseg check`.

    Exit 1 when a real connection and check disagree.
    Example: sudo microseg lab test
    """
    from microseg.lab import lab as seed_lab
    from microseg.store import open_store

    with open_store() as store:
        rows = seed_lab.test(store)
    if as_json:
        emit_json({"rows": [r.as_json() for r in rows], "agree": all(r.agrees for r in rows)})
    else:
        print_table(
            ["source", "destination", "service", "real", "check", ""],
            [
                [
                    r.source,
                    r.destination,
                    r.protocol + (f"/{r.port}" if r.port else ""),
                    r.real,
                    r.check,
                    "" if r.agrees else "DISAGREE",
                ]
                for r in rows
            ],
        )
    if not all(r.agrees for r in rows):
        raise typer.Exit(1)


@lab_app.command("status")
def lab_status() -> None:
    """What the lab has up, from its state file.

    Example: microseg lab status
    """
    from microseg.lab.topology import State, state_path, status

    state = State.load()
    if state is None:
        typer.echo(f"no lab is up (no {state_path()})")
        return
    print_table(["kind", "name", "state"], [list(row) for row in status(state)])


@lab_app.command("down")
def lab_down() -> None:
    """Remove every namespace, link and process the lab made; safe to run twice.

    Example: sudo microseg lab down
    """
    from microseg.lab import lab as seed_lab

    removed = seed_lab.down()
    typer.echo(f"lab down: removed {len(removed)} items" if removed else "no lab was up")

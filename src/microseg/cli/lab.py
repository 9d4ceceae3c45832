"""`microseg lab up|deploy|traffic|test|status|down`: the seed lab on real packets."""

from __future__ import annotations

from pathlib import Path

import typer

from microseg.cli.app import OPERATE, app
from microseg.cli.common import JSON_OPTION_HELP, emit_json, err_console, print_table
from microseg.lab.topology import DEFAULT_NAME, name_option
from microseg.model import MicrosegError

lab_app = typer.Typer(
    help="The seed lab in network namespaces (root): up, deploy, traffic, test, status, down.",
    no_args_is_help=True,
)
app.add_typer(lab_app, name="lab", rich_help_panel=OPERATE)

NAME_HELP = (
    "The lab's name: its namespaces are NAME-switch, NAME-web01, ... and its state "
    "$MICROSEG_LAB_DIR/NAME; labs of different names run side by side."
)

LAB_NAME_OPTION = typer.Option(DEFAULT_NAME, "--name", envvar="MICROSEG_LAB_NAME", help=NAME_HELP)


@lab_app.command("up")
def lab_up(
    policy: Path | None = typer.Argument(None, help="Policy file (default: the seed's)."),
    no_isolation: bool = typer.Option(
        False, "--no-isolation", help="Leave the Vlan299 bridge ports plain (the seed's Ooops)."
    ),
    flows: Path | None = typer.Option(
        None,
        "--flows",
        help="Flow store the monitor node's collector writes (default: $MICROSEG_FLOW_STORE "
        "or the user data dir).",
    ),
    name: str = LAB_NAME_OPTION,
) -> None:
    """Build the seed lab, its monitor node and collector, and deploy the policy to its
    switch through a change.

    Example: sudo microseg lab up examples/home-lab.yaml
    """
    from microseg.flows.flowstore import default_store_dir
    from microseg.lab import lab as seed_lab
    from microseg.lab.topology import checked_name
    from microseg.store import open_store

    checked_name(name)  # before the store is opened (or made)
    with open_store() as store:
        state, change = seed_lab.up(
            store, name, policy, not no_isolation, flows or default_store_dir()
        )
    isolation = "isolated" if state.data["isolated"] else "NOT isolated"
    typer.echo(
        f"lab up: {len(state.data['namespaces'])} namespaces, Vlan299 ports {isolation}, "
        f"policy deployed by change {change}, flows to {state.data['flows']} "
        f"(state {state.path})"
    )


@lab_app.command("deploy")
def lab_deploy(
    policy: Path = typer.Argument(..., help="Policy file."), name: str = LAB_NAME_OPTION
) -> None:
    """Deploy another policy to the running lab's switch through a change.

    Example: sudo microseg lab deploy examples/home-lab.yaml
    """
    from microseg.lab import lab as seed_lab
    from microseg.store import open_store

    seed_lab.require_tools()
    seed_lab.current(name)  # before the store is opened (or made): no lab, nothing changes
    with open_store() as store:
        change = seed_lab.deploy_policy(store, name, policy)
    typer.echo(f"lab deploy: {policy} deployed by change {change}")


@lab_app.command("traffic")
def lab_traffic(
    count: int | None = typer.Option(
        None, "--count", min=1, help="Rounds of the traffic mix (default 3)."
    ),
    minutes: float | None = typer.Option(
        None, "--minutes", min=0.01, help="Send rounds for this many minutes instead."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
    name: str = LAB_NAME_OPTION,
) -> None:
    """Send the seed's traffic mix from the lab's hosts (DNS, NTP, HTTP, web -> app on
    4567, blocked attempts) with real sockets; then the monitor node's flows go to the
    flow store.

    Example: sudo microseg lab traffic --count 5
    """
    from microseg.lab import lab as seed_lab

    if count is not None and minutes is not None:
        raise MicrosegError("--count and --minutes: give one of them")

    def progress(done: int, rows: list[seed_lab.TrafficRow]) -> None:
        total = f"/{count or 3}" if minutes is None else ""
        sent = sum(r.sent for r in rows)
        connects = sum(r.connects for r in rows)
        err_console.print(
            f"round {done}{total}: {sent} connections so far, {connects} connect, "
            f"{sent - connects} blocked",
            markup=False,
        )

    from microseg.store import open_store

    lab_state = seed_lab.current(name)  # before the store is opened: no lab, nothing made
    with open_store() as store:  # and the policy it runs, before any traffic is sent
        mirrored = seed_lab.mirroring_rules(seed_lab.deployed_policy(store, lab_state))
    rows, rounds = seed_lab.traffic(name, count or (None if minutes else 3), minutes, progress)
    sent = sum(r.sent for r in rows)
    connects = sum(r.connects for r in rows)
    if as_json:
        emit_json({"rounds": rounds, "sent": sent, "connects": connects,
                   "blocked": sent - connects, "mirrored_rules": mirrored,
                   "rows": [r.as_json() for r in rows]})  # fmt: skip
        return
    print_table(
        ["source", "destination", "service", "sent", "connects", "blocked"],
        [
            [
                r.source,
                r.destination,
                f"{r.protocol}/{r.port}",
                str(r.sent),
                str(r.connects),
                str(r.blocked),
            ]
            for r in rows
        ],
    )
    blocked = sent - connects
    summary = (
        f"lab traffic: {rounds} rounds, {sent} connections ({connects} connect, {blocked} blocked)"
    )
    if mirrored:
        typer.echo(
            f"{summary}; the monitor node's flows of what {', '.join(mirrored)} mirrored "
            "are in the flow store"
        )
    else:
        # The seed's final policy mirrors nothing: `sessions list` would be empty, with
        # no word of why.
        typer.echo(
            f"{summary}; nothing went to the monitor node: no rule of the deployed policy "
            "mirrors traffic (a rule with a monitor object does). Deploy one that does, e.g. "
            f"`sudo microseg lab deploy{name_option(name)} examples/home-lab-monitor.yaml`"
        )


@lab_app.command("test")
def lab_test(
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
    name: str = LAB_NAME_OPTION,
) -> None:
    """The seed's connectivity table: real connections next to `microseg check`.

    Exit 1 when a real connection and check disagree.
    Example: sudo microseg lab test
    """
    from microseg.lab import lab as seed_lab
    from microseg.store import open_store

    seed_lab.current(name)  # before the store is opened (or made)
    with open_store() as store:
        rows = seed_lab.test(store, name)
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
def lab_status(
    name: str = LAB_NAME_OPTION,
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """What the lab has up, from its state file.

    Example: microseg lab status
    """
    from microseg.lab.topology import State, labs_up, not_up, state_path, status

    state = State.load(name)
    if as_json:
        rows = [] if state is None else status(state)
        emit_json(
            {
                "name": name,
                "up": state is not None,
                "state": str(state_path(name)),
                "items": [{"kind": k, "name": n, "state": s} for k, n, s in rows],
                "labs_up": labs_up(),
            }
        )
        return
    if state is None:
        typer.echo(f"{not_up(name)} (no {state_path(name)})")
        return
    print_table(["kind", "name", "state"], [list(row) for row in status(state)])


@lab_app.command("down")
def lab_down(name: str = LAB_NAME_OPTION) -> None:
    """Remove every namespace, link and process the lab made; safe to run twice.

    Example: sudo microseg lab down
    """
    from microseg.lab import lab as seed_lab
    from microseg.lab.topology import not_up

    removed = seed_lab.down(name)
    typer.echo(f"lab down: removed {len(removed)} items" if removed else f"{not_up(name)}")

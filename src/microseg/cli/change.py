"""Change control commands: change create|list|show|approve|run|rollback|cancel|four-eyes,
and drift (issue 11).

Devices are reached with the credentials of `microseg.deploy.credentials` (environment or
a 0600 credentials file), never with anything from the policy or the store.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING

import typer

from microseg.cli.app import DEPLOY, app
from microseg.cli.common import JSON_OPTION_HELP, emit_json, err_console, print_table
from microseg.model import MicrosegError

if TYPE_CHECKING:
    from rich.table import Table

    from microseg.store import ChangeRecord

change_app = typer.Typer(
    help="Change control: deploy a revision to devices after review (approve, run, rollback).",
    no_args_is_help=True,
)
app.add_typer(change_app, name="change", rich_help_panel=DEPLOY)

AUTHOR_HELP = "Who does it (default: $MICROSEG_AUTHOR, else your user name)."
TIMEOUT_HELP = "Seconds to wait for each device request."


def _who(author: str) -> str:
    from microseg.store import default_author

    return author.strip() or default_author()


@change_app.command("create")
def change_create(
    revision: int | None = typer.Option(None, "--revision", "-r", help="Default: the head."),
    devices: list[str] = typer.Option(
        [], "--device", "-d", help="Only these devices (repeat); default: every changed one."
    ),
    description: str = typer.Option("", "-m", "--message", help="What the change is for."),
    author: str = typer.Option("", "--author", help=AUTHOR_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Create a change deploying a revision, waiting for approval.

    Without --device, every device whose configuration differs from what microseg last
    deployed there (or that was never deployed) is in the change.
    Example: microseg change create --revision 3 -m "web servers only from wifi"
    """
    from microseg.deploy import create_change
    from microseg.store import open_store

    with open_store() as store:
        record = create_change(store, _who(author), revision, devices, description)
    if as_json:
        emit_json(record.as_json())
        return
    names = ", ".join(d.device for d in record.devices)
    typer.echo(
        f"change {record.id} created: deploy revision {record.revision} to {names} "
        "(pending-approval)"
    )


@change_app.command("list")
def change_list(
    limit: int | None = typer.Option(
        None, "-n", "--limit", min=1, max=2**31 - 1, help="Show only the newest N."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Changes, newest first.

    Example: microseg change list -n 20
    """
    from microseg.deploy import list_changes
    from microseg.store import open_store

    with open_store(create=False) as store:
        changes = list_changes(store, limit)
    if as_json:
        emit_json([c.as_json(details=False) for c in changes])
        return
    rows = [
        [
            str(c.id),
            str(c.revision),
            c.state,
            str(len(c.devices)),
            c.author,
            c.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            c.description.splitlines()[0] if c.description else "",
        ]
        for c in changes
    ]
    print_table(["id", "rev", "state", "devices", "author", "created (UTC)", "description"], rows)


@change_app.command("show")
def change_show(
    change: int = typer.Argument(..., help="Change number."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """A change: its state, devices (planned diff, device diff, outcome), approvals and the
    audit trail with every device's log.

    Example: microseg change show 4
    """
    from microseg.deploy import show_change
    from microseg.store import open_store

    with open_store(create=False) as store:
        record = show_change(store, change)
    if as_json:
        emit_json(record.as_json())
        return
    for line in show_lines(record):
        typer.echo(line)


def show_lines(record: ChangeRecord) -> list[str]:
    lines = [
        f"change {record.id}: {record.description}",
        f"  state:    {record.state}",
        f"  revision: {record.revision}"
        + (
            f" (devices ran revision {record.base_revision} before)" if record.base_revision else ""
        ),
        f"  author:   {record.author}, {_time(record.created_at)}",
    ]
    if record.rollback_of is not None:
        lines.append(f"  rolls back change {record.rollback_of}")
    for approval in record.approvals:
        comment = f": {approval.comment}" if approval.comment else ""
        lines.append(f"  approved: {approval.approver}, {_time(approval.approved_at)}{comment}")
    lines.append("devices:")
    for device in record.devices:
        error = f" -- {device.error.splitlines()[0]}" if device.error else ""
        lines.append(f"  {device.device} ({device.platform}): {device.state}{error}")
    for device in record.devices:
        shown = device.device_diff if device.device_diff is not None else device.planned_diff
        what = "device diff" if device.device_diff is not None else "planned diff"
        lines.append(f"{what} {device.device}:")
        lines.extend(f"  {line}" for line in shown.splitlines() or ["(no change)"])
    lines.append("log:")
    for event in record.events:
        where = f" [{event.device}]" if event.device else ""
        first, *rest = event.message.splitlines() or [""]
        lines.append(f"  {_time(event.at)} {event.actor} {event.kind}{where}: {first}")
        lines.extend(f"      {line}" for line in rest)
    return lines


@change_app.command("approve")
def change_approve(
    change: int = typer.Argument(..., help="Change number."),
    comment: str = typer.Option("", "--comment", "-c", help="Why it may go ahead."),
    author: str = typer.Option("", "--author", help="Who approves (default: $MICROSEG_AUTHOR)."),
) -> None:
    """Approve a pending change. With four-eyes on, its author cannot.

    Example: microseg change approve 4 --comment "reviewed the diff with Andreas"
    """
    from microseg.deploy import approve_change
    from microseg.store import open_store

    with open_store() as store:
        record = approve_change(store, change, _who(author), comment)
    typer.echo(f"change {record.id} approved by {record.approvals[-1].approver}")


@change_app.command("run")
def change_run(
    change: int = typer.Argument(..., help="Change number."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Load and show each device's own diff, then discard it."
    ),
    parallel: int = typer.Option(1, "--parallel", "-p", min=1, max=256, help="Devices at once."),
    confirm_within: int | None = typer.Option(
        None,
        "--confirm-within",
        min=1,
        max=86399,
        help="Seconds a device waits for the confirm before restoring its configuration.",
    ),
    continue_on_error: bool = typer.Option(
        False,
        "--continue-on-error",
        help="Deploy the other devices when one fails, and keep them deployed.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace owned configuration that was edited outside microseg."
    ),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, max=3600, help=TIMEOUT_HELP),
    author: str = typer.Option("", "--author", help=AUTHOR_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Deploy an approved change: per device load, diff, commit with a confirm timer, read
    back, confirm. A failed device stops the run and rolls back the devices already done.

    Progress goes to stderr; exit 1 when the change failed.
    Example: microseg change run 4 --parallel 10 --confirm-within 120
    """
    from microseg.deploy import RunOptions, run_change
    from microseg.deploy.run import DEFAULT_CONFIRM_WITHIN_S
    from microseg.store import open_store

    confirm_within = DEFAULT_CONFIRM_WITHIN_S if confirm_within is None else confirm_within
    options = RunOptions(dry_run, parallel, confirm_within, continue_on_error, force, timeout)
    try:
        with open_store() as store, _Progress(store, change) as progress:
            result = run_change(store, change, _who(author), options, progress)
    except KeyboardInterrupt:
        _interrupted(change, dry_run)
        raise typer.Exit(130) from None
    if as_json:
        emit_json(result.as_json())
    else:
        for outcome in result.devices:
            if dry_run and outcome.device_diff:
                typer.echo(f"device diff {outcome.device}:")
                typer.echo(outcome.device_diff, nl=False)
        verb = "dry run of change" if dry_run else "change"
        state = "" if dry_run else f" {result.state}"
        kept = [o.device for o in result.devices if o.state == "confirmed" and o.error]
        if kept:  # a failed change whose rollback failed on these: they run it still
            state += f" (rollback failed, still running it: {', '.join(kept)})"
        typer.echo(f"{verb} {change}{state}: " + _counts([o.state for o in result.devices]))
    if result.state == "failed":
        raise typer.Exit(1)


def _interrupted(change: int, dry_run: bool) -> None:
    """Ctrl-C during a run: said at once (the devices in flight still finish their step,
    bounded by --timeout, before the process ends), with what to do next."""
    if dry_run:
        message = f"dry run of change {change} interrupted (Ctrl-C): no device's running configuration was changed"
    else:
        message = (
            f"change {change} interrupted (Ctrl-C): no other device is started; a device in "
            "flight finishes its step first, and a commit not confirmed is undone by the "
            f"device's confirm timer. microseg change show {change} says where each device "
            f"is; microseg change run {change} runs it again, microseg change cancel {change} "
            "drops it"
        )
    err_console.print(message, markup=False)


@change_app.command("rollback")
def change_rollback(
    change: int = typer.Argument(..., help="The succeeded change to undo."),
    author: str = typer.Option("", "--author", help=AUTHOR_HELP),
) -> None:
    """Create a change deploying the revision the devices ran before CHANGE (to approve and
    run like any change).

    Example: microseg change rollback 4
    """
    from microseg.deploy import rollback_change
    from microseg.store import open_store

    with open_store() as store:
        record = rollback_change(store, change, _who(author))
    typer.echo(
        f"change {record.id} created: roll back change {change} by deploying revision "
        f"{record.revision} (pending-approval)"
    )


@change_app.command("cancel")
def change_cancel(
    change: int = typer.Argument(..., help="Change number."),
    author: str = typer.Option("", "--author", help=AUTHOR_HELP),
) -> None:
    """Cancel a change that is pending, approved or interrupted.

    Example: microseg change cancel 4
    """
    from microseg.deploy import cancel_change
    from microseg.store import open_store

    with open_store() as store:
        record = cancel_change(store, change, _who(author))
    typer.echo(f"change {record.id} cancelled")


@change_app.command("four-eyes")
def change_four_eyes(
    setting: str | None = typer.Argument(None, metavar="[on|off]", help="Default: show it."),
    author: str = typer.Option("", "--author", help=AUTHOR_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Show or set four-eyes: when on, a change's author cannot approve it.

    Example: microseg change four-eyes on
    """
    from microseg.deploy import four_eyes_setting, set_four_eyes
    from microseg.store import open_store

    if setting not in (None, "on", "off"):
        raise MicrosegError(f"four-eyes {setting!r}: on or off")
    # Showing the setting only reads: it must not create a store.
    with open_store(create=setting is not None) as store:
        if setting is not None:
            set_four_eyes(store, setting == "on", _who(author))
        recorded = store.changes.setting("four_eyes")
        shown = four_eyes_setting(store)
    if as_json:
        emit_json(shown)
        return
    by = f" (set by {recorded[1]}, {_time(recorded[2])})" if recorded else ""
    typer.echo(f"four-eyes is {'on' if shown['on'] else 'off'}{by}")


@app.command("drift", rich_help_panel=DEPLOY)
def drift_command(
    devices: list[str] = typer.Option(
        [], "--device", "-d", help="Only these devices (repeat); default: every configured one."
    ),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, max=3600, help=TIMEOUT_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Compare what the head revision intends with what each device runs; exit 1 on drift.

    Shows, per device, the diff from its running owned sections to the intended ones, and
    whether they were edited outside microseg since its last deploy.
    Example: microseg drift --device andreasm-720xp-home
    """
    from microseg.deploy import drift
    from microseg.store import open_store

    with open_store(create=False) as store:
        head, reports = drift(store, devices, timeout)
    if as_json:
        emit_json({"revision": head, "devices": [r.as_json() for r in reports]})
    else:
        for report in reports:
            if report.error:
                typer.echo(f"{report.device}: cannot read: {report.error}")
                continue
            state = "in sync" if report.in_sync else "drift"
            if report.hand_edited:
                state += ", edited outside microseg since its last deploy"
            typer.echo(f"{report.device}: {state}")
            if not report.in_sync:
                typer.echo(report.diff, nl=False)
    if any(not r.in_sync or r.error for r in reports):
        raise typer.Exit(1)


# -- output helpers -------------------------------------------------------------------------


def _time(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _counts(states: list[str]) -> str:
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in counts.items())


class _Progress:
    """Per-device progress on stderr: a live table on a terminal, one line per step otherwise."""

    def __init__(self, store, change: int) -> None:
        from rich.live import Live

        self._lock = threading.Lock()
        self._rows: dict[str, tuple[str, str]] = {}
        self._live: Live | None = None
        self._store, self._change = store, change

    def __enter__(self):
        from rich.console import Console
        from rich.live import Live

        if sys.stderr.isatty():
            for device in self._store.changes.get(self._change).devices:
                self._rows[device.device] = ("waiting", "")
            self._live = Live(self._table(), console=Console(stderr=True), auto_refresh=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def __call__(self, device: str, step: str, detail: str) -> None:
        with self._lock:
            if self._live is None:
                err_console.print(
                    f"{device}: {step}" + (f" ({detail})" if detail else ""), markup=False
                )
                return
            self._rows[device] = (step, detail)
            self._live.update(self._table(), refresh=True)

    def _table(self) -> Table:
        from rich.table import Table

        table = Table("device", "step", "detail", box=None)
        for device, (step, detail) in self._rows.items():
            table.add_row(device, step, detail.splitlines()[0] if detail else "")
        return table

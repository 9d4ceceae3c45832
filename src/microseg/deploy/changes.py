"""Change control: a change deploys one revision to devices, after review.

States (`microseg change show` prints them; the audit trail records every move with who
and when):

    pending-approval --approve--> approved --run--> running --> succeeded | failed
           |                         |                 |
           +--------cancel-----------+             interrupted (the runner died) --run--> running
                                                       |
                                                     cancel --> cancelled
    succeeded --(its rollback change succeeds)--> rolled-back

* `failed`: a device failed; the devices this change had committed were rolled back to
  what they ran before (unless `--continue-on-error`, which leaves the others deployed).
* `interrupted`: the process running the change is gone (killed, crashed, the machine
  rebooted). Devices it had confirmed run the new configuration; a device it had committed
  but not confirmed was restored by its confirm timer. `change run` starts it again.
* `rolled-back`: a later change (`change rollback ID`) deployed the revision the devices
  ran before this one.

Four-eyes (`microseg change four-eyes on`): the approver must be someone other than the
change's author. The setting is kept in the store, with who set it and when.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from microseg.compile.diff import diff_text
from microseg.deploy.devices import intended_configs
from microseg.model import MicrosegError
from microseg.store import ChangeRecord, PlannedDevice, Store, default_author
from microseg.store.notices import CHANGE_NOTICES
from microseg.targets.render import configured_names

FOUR_EYES = "four_eyes"
CANCELLABLE = ("pending-approval", "approved", "interrupted")
RUNNABLE = ("approved", "interrupted")
# Device rows a dead runner left in the middle of a step.
UNFINISHED_DEVICE_STATES = ("loading", "committing")
# A runner on another host is presumed dead when it has not said it is alive for this long
# (a runner on this host is checked directly, by its process id and start time).
HEARTBEAT_INTERVAL_S = 10.0
HEARTBEAT_STALE = timedelta(seconds=120)
# A change's event streams read the store this often while another process runs it (or
# nobody yet); a run in this process wakes them at each write (store/notices.py) and they
# read the store at least every RUN_HERE_CHECK_S, in case another process writes the change.
POLL_ELSEWHERE_S = 0.4
RUN_HERE_CHECK_S = 5.0


class FourEyesRefusal(MicrosegError):
    """Four-eyes is on and the approver is the change's author."""


def create_change(
    store: Store,
    author: str,
    revision: int | None = None,
    devices: list[str] | None = None,
    description: str = "",
    rollback_of: int | None = None,
) -> ChangeRecord:
    """A change deploying `revision` (default: the head) to `devices` (default: every device
    whose configuration differs from what microseg last deployed there, or was never
    deployed). Each device's planned diff is against that last deploy."""
    if revision is None:
        revision = store.head()
        if revision is None:
            raise MicrosegError("the store has no revisions yet: microseg import FILE first")
    policy_set = store.revision_policy(revision)
    planned = []
    for intended in intended_configs(policy_set, devices):
        last = store.changes.last_deployed(intended.device)
        deployed = last[1].config if last else None
        if deployed == intended.config and not devices:
            continue
        old_label = f"change {last[0]}" if last else "nothing deployed yet"
        diff = diff_text(
            intended.device, deployed or "", intended.config, old_label, f"revision {revision}"
        )
        planned.append(
            PlannedDevice(intended.device, intended.platform, intended.config, diff.text)
        )
    if not planned:
        raise MicrosegError(
            f"revision {revision} changes no device's configuration since its last deploy "
            "(name devices with --device to deploy them anyway)"
        )
    base = store.changes.last_succeeded_revision()
    text = description or f"deploy revision {revision}"
    number = store.changes.create(revision, base, author, text, planned, rollback_of)
    return store.changes.get(number)


def rollback_change(store: Store, change: int, author: str) -> ChangeRecord:
    """A new change deploying the revision the devices ran before `change` (which must
    have succeeded) to its devices. When it succeeds, `change` becomes rolled-back."""
    original = show_change(store, change)
    if original.state != "succeeded":
        raise MicrosegError(
            f"change {change} is {original.state}: only a succeeded change is rolled back "
            "(a failed one already was; run or cancel an interrupted one)"
        )
    if original.base_revision is None:
        raise MicrosegError(
            f"change {change} was the first deploy: there is no earlier revision to roll back "
            "to (deploy one with microseg change create --revision N)"
        )
    previous = store.revision_policy(original.base_revision)
    names = [device.device for device in original.devices]
    missing = [name for name in names if name not in configured_names(previous)]
    if missing:
        raise MicrosegError(
            f"revision {original.base_revision} does not configure {', '.join(missing)}, "
            f"which change {change} deployed to: remove microseg's configuration there by "
            "deploying a revision without them"
        )
    return create_change(
        store,
        author,
        original.base_revision,
        names,
        f"roll back change {change}: deploy revision {original.base_revision} again",
        rollback_of=change,
    )


def four_eyes(store: Store) -> bool:
    setting = store.changes.setting(FOUR_EYES)
    return setting is not None and setting[0] == "on"


def four_eyes_setting(store: Store) -> dict[str, Any]:
    """Four-eyes as `GET /api/settings/four-eyes` and `change four-eyes --json` show it:
    on, and who set it when (None: never set, off by default)."""
    recorded = store.changes.setting(FOUR_EYES)
    return {
        "on": four_eyes(store),
        "set_by": recorded[1] if recorded else None,
        "set_at": recorded[2].isoformat() if recorded else None,
    }


def set_four_eyes(store: Store, on: bool, actor: str) -> None:
    store.changes.set_setting(FOUR_EYES, "on" if on else "off", actor)


def approve_change(store: Store, change: int, approver: str, comment: str = "") -> ChangeRecord:
    """Approve a pending change; with four-eyes on, not by its own author."""
    record = show_change(store, change)
    who = approver.strip() or default_author()
    if four_eyes(store) and who == record.author:
        raise FourEyesRefusal(
            f"four-eyes is on: change {change} was created by {record.author!r}, so someone "
            "else must approve it"
        )
    return store.changes.approve(change, who, comment, ("pending-approval",), "approved")


def cancel_change(store: Store, change: int, actor: str) -> ChangeRecord:
    record = show_change(store, change)
    note = "cancelled"
    if record.state == "interrupted":
        confirmed = [d.device for d in record.devices if d.state == "confirmed"]
        if confirmed:
            note += f"; {', '.join(confirmed)} keep the configuration this change confirmed"
    return store.changes.transition(change, CANCELLABLE, "cancelled", actor, note)


def show_change(store: Store, change: int) -> ChangeRecord:
    """The change as it truly is: a `running` change whose runner is gone is `interrupted`."""
    record = store.changes.get(change)
    if record.state != "running" or runner_alive(record):
        return record
    store.changes.mark_devices(change, UNFINISHED_DEVICE_STATES, "interrupted")
    message = (
        f"the run ({record.runner}) stopped without finishing: devices it confirmed keep the "
        "new configuration, a commit it did not confirm is restored by the device's confirm "
        "timer; microseg change run starts it again"
    )
    try:
        return store.changes.transition(change, ("running",), "interrupted", "microseg", message)
    except MicrosegError:  # another process saw it first
        return store.changes.get(change)


def list_changes(store: Store, limit: int | None = None, offset: int = 0) -> list[ChangeRecord]:
    """Changes, newest first: `limit` of them (None: all) after the `offset` newest; a
    running one with its progress."""
    changes = store.changes.list(limit, offset)
    if any(c.state == "running" for c in changes):
        return [show_change(store, c.id) if c.state == "running" else c for c in changes]
    return changes


# -- who runs a change ------------------------------------------------------------------------


def runner_identity() -> str:
    """`host:pid:start` of this process (start: its start time in clock ticks, so a reused
    process id is not mistaken for us)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid())}"


async def progress_written(record: ChangeRecord, seen: int) -> int:
    """Wait for `record`'s change to move on: until this process writes it past generation
    `seen` (a run here notices each step), or POLL_ELSEWHERE_S when another process runs it
    (nothing is noticed from there: read the store again); the generation then."""
    here = record.runner == runner_identity()
    timeout = RUN_HERE_CHECK_S if here else POLL_ELSEWHERE_S
    return await CHANGE_NOTICES.wait(record.id, seen, timeout)


def runner_alive(record: ChangeRecord) -> bool:
    if not record.runner:
        return False
    host, _, rest = record.runner.partition(":")
    pid_text, _, start = rest.partition(":")
    if host == socket.gethostname() and pid_text.isdigit():
        return _start_ticks(int(pid_text)) == start
    beat = record.heartbeat_at or record.updated_at
    return datetime.now(UTC) - beat < HEARTBEAT_STALE


def _start_ticks(pid: int) -> str:
    """Field 22 of /proc/PID/stat, "" when the process does not exist. Elsewhere than
    Linux, "alive" when signal 0 can be sent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "" if Path("/proc/self/stat").exists() else _signal_zero(pid)
    except OSError:
        return ""
    # The command name (field 2) is in parentheses and may hold spaces.
    # A zombie (state Z: dead, not yet reaped by its parent) is not running anything.
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else ""


def _signal_zero(pid: int) -> str:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return ""
    except PermissionError:
        pass
    return "alive"

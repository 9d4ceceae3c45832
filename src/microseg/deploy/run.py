"""Running a change: every device through its driver, each step recorded before it is taken.

Per device: open, load the intended configuration, the device's own diff (shown; a dry run
stops here and discards), commit with a confirm timer, read back and compare with the
intent, confirm. On a device failure its session is aborted, devices not yet started are
not started (unless `continue_on_error`), and devices this change committed are rolled
back to the owned configuration they had before (read from them when the change first ran).

Crash safety: the store learns of every step before the device does (`committing` is
written before the commit), and each run names its device sessions after the change and
the attempt. A process killed at any point leaves devices either confirmed (they run the
new configuration) or with an unconfirmed commit that the device's confirm timer undoes.
`show_change` reports such a change `interrupted`; running it again first aborts whatever
the dead run left open (by session name), then deploys every device again -- a device that
already runs its configuration loads with an empty diff and is left alone.

A device's state in the change: `pending` (not run yet), `loading` (a session is open),
`committing` (the commit may be in, its timer running), `confirmed`, `unchanged` (it
already ran the configuration), `failed`, `skipped` (not started: another device failed),
`rolled-back` (given back what it ran before the change), `interrupted` (the run died
during a step).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from microseg.compile.diff import diff_text
from microseg.deploy.changes import (
    HEARTBEAT_INTERVAL_S,
    RUNNABLE,
    runner_identity,
    show_change,
)
from microseg.deploy.credentials import CredentialStore
from microseg.deploy.devices import DEFAULT_TIMEOUT_S, open_device
from microseg.model import MicrosegError, PolicySet
from microseg.store import ChangeRecord, DeviceRecord, Store
from microseg.targets import Driver, DriverError

log = logging.getLogger("microseg.deploy")

DEFAULT_CONFIRM_WITHIN_S = 300
DRY_RUN_STATES = ("pending-approval", "approved", "interrupted")

# progress(device, step, detail): called from worker threads, one call per step.
Progress = Callable[[str, str, str], None]


@dataclass(frozen=True)
class RunOptions:
    """How `microseg change run` runs a change.

    Example: RunOptions(parallel=10, confirm_within=120)
    """

    dry_run: bool = False
    parallel: int = 1
    confirm_within: int = DEFAULT_CONFIRM_WITHIN_S
    continue_on_error: bool = False
    force: bool = False
    timeout: float = DEFAULT_TIMEOUT_S


@dataclass
class DeviceOutcome:
    device: str
    state: str
    device_diff: str = ""
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "state": self.state,
            "device_diff": self.device_diff,
            "error": self.error,
            "warnings": self.warnings,
        }


@dataclass
class RunResult:
    change: int
    state: str
    dry_run: bool
    devices: list[DeviceOutcome]

    def as_json(self) -> dict[str, Any]:
        return {
            "change": self.change,
            "state": self.state,
            "dry_run": self.dry_run,
            "devices": [d.as_json() for d in self.devices],
        }


class HandEdited(MicrosegError):
    """Devices whose owned sections changed since microseg deployed them: not overwritten."""


def run_change(
    store: Store,
    change: int,
    actor: str,
    options: RunOptions,
    progress: Progress | None = None,
) -> RunResult:
    """Run (or dry-run) `change`; the result per device. See the module docstring."""
    if options.parallel < 1:
        raise MicrosegError(f"--parallel {options.parallel}: at least 1")
    record = show_change(store, change)
    allowed = DRY_RUN_STATES if options.dry_run else RUNNABLE
    if record.state not in allowed:
        raise MicrosegError(
            f"change {change} is {record.state}: it must be {' or '.join(allowed)} to "
            f"{'dry-run' if options.dry_run else 'run'} it"
        )
    policy_set = store.revision_policy(record.revision)
    run = _Run(store, record, policy_set, actor, options, progress or _silent)
    if options.dry_run:
        return run.dry_run()
    return run.run()


def start_run(store: Store, change: int, actor: str, options: RunOptions) -> threading.Thread:
    """Run `change` in a background thread (a server answers at once; the API and the web
    UI follow the run in the store). The change's own log says what happened on each
    device; a run that stops before its end says why there too."""

    def in_background() -> None:
        try:
            run_change(store, change, actor, options)
        except MicrosegError as error:
            store.changes.log(change, actor, "error", f"run stopped: {error}")
        except Exception:
            log.exception("change %s: the run stopped on a bug", change)
            store.changes.log(change, actor, "error", "run stopped: internal error (server log)")

    thread = threading.Thread(target=in_background, name=f"change-{change}", daemon=True)
    thread.start()
    return thread


def _silent(device: str, step: str, detail: str) -> None:
    pass


class _Run:
    def __init__(
        self,
        store: Store,
        record: ChangeRecord,
        policy_set: PolicySet,
        actor: str,
        options: RunOptions,
        progress: Progress,
    ) -> None:
        self.store, self.changes = store, store.changes
        self.record, self.policy_set = record, policy_set
        self.actor, self.options, self.progress = actor, options, progress
        self.credentials = CredentialStore(policy_set)
        self.outcomes = {d.device: DeviceOutcome(d.device, d.state) for d in record.devices}
        # Log lines and facts waiting for the device's next write (one transaction each:
        # the store's commits are most of microseg's own time per device).
        self.notes: dict[str, list[str]] = {d.device: [] for d in record.devices}
        self.before: dict[str, str] = {}
        self.stop = threading.Event()

    # -- the two kinds of run ------------------------------------------------------------

    def dry_run(self) -> RunResult:
        session = f"microseg-change-{self.record.id}-dry-run"
        self._each(lambda row: self._dry_run_device(row, session), stop_on_failure=False)
        self.changes.log(self.record.id, self.actor, "dry-run", self._summary())
        return RunResult(self.record.id, self.record.state, True, self._ordered())

    def run(self) -> RunResult:
        change, attempt = self.record.id, self.record.attempts + 1
        runner = runner_identity()
        self.record = self.changes.transition(
            change,
            RUNNABLE,
            "running",
            self.actor,
            f"run {attempt} by {runner}",
            attempts=attempt,
            runner=runner,
            heartbeat_at=datetime.now(UTC),
        )
        beating = threading.Event()
        heart = threading.Thread(target=self._heartbeat, args=(runner, beating), daemon=True)
        heart.start()
        try:
            self._each(self._abort_leftovers, stop_on_failure=False)
            session = f"microseg-change-{change}-{attempt}"
            refused = self._preflight()
            if refused:
                return self._refuse(refused)
            if self._stops() and self._any("failed"):
                self.stop.set()  # a device cannot be read: touch none
            self._each(lambda row: self._deploy_device(row, session), self._stops())
            failed = [o for o in self.outcomes.values() if o.state in ("failed", "skipped")]
            if failed and not self.options.continue_on_error:
                self._each(lambda row: self._roll_back_device(row, session), stop_on_failure=False)
            state = "failed" if failed else "succeeded"
            self.changes.transition(change, ("running",), state, self.actor, self._summary())
            if state == "succeeded" and self.record.rollback_of is not None:
                self._mark_rolled_back(self.record.rollback_of)
            return RunResult(change, state, False, self._ordered())
        finally:
            beating.set()

    def _stops(self) -> bool:
        return not self.options.continue_on_error

    def _heartbeat(self, runner: str, done: threading.Event) -> None:
        while not done.wait(HEARTBEAT_INTERVAL_S):
            # The store busy or gone: the run itself will say so.
            with contextlib.suppress(MicrosegError):
                self.changes.heartbeat(self.record.id, runner)

    def _refuse(self, refused: list[str]) -> RunResult:
        change = self.record.id
        message = (
            f"not run: owned configuration edited outside microseg on {', '.join(refused)}; "
            f"see microseg drift --device {refused[0]}; --force replaces it"
        )
        previous = "interrupted" if self.record.attempts > 1 else "approved"
        self.changes.transition(
            change, ("running",), previous, self.actor, message, attempts=self.record.attempts - 1
        )
        raise HandEdited(f"change {change} {message}")

    def _mark_rolled_back(self, original: int) -> None:
        self.changes.transition(
            original,
            ("succeeded",),
            "rolled-back",
            self.actor,
            f"rolled back by change {self.record.id}",
        )

    # -- per device ------------------------------------------------------------------------

    def _each(self, step: Callable[[DeviceRecord], None], stop_on_failure: bool) -> None:
        """`step` for every device, `parallel` at a time, in the change's order."""
        rows = list(self.store.changes.get(self.record.id).devices)

        def guarded(row: DeviceRecord) -> None:
            if stop_on_failure and self.stop.is_set():
                # A device that failed keeps its error; one an earlier run confirmed stays
                # confirmed (and is rolled back with the others).
                if self.outcomes[row.device].state not in ("failed", "confirmed"):
                    self._set(row.device, "skipped", error="not started: another device failed")
                return
            step(row)

        pool = ThreadPoolExecutor(max_workers=self.options.parallel)
        try:
            for future in [pool.submit(guarded, row) for row in rows]:
                future.result()
        except BaseException:
            # Ctrl-C or a bug: start no other device; those in flight finish their step.
            self.stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()

    def _open(self, row: DeviceRecord, session: str) -> Driver:
        driver, warnings = open_device(
            self.policy_set, row.device, self.credentials, session, self.options.timeout
        )
        outcome = self.outcomes[row.device]
        for warning in warnings:
            if warning not in outcome.warnings:  # once per device and run
                outcome.warnings.append(warning)
                self.notes[row.device].append(f"warning: {warning}")
                self.progress(row.device, "warning", warning)
        return driver

    def _abort_leftovers(self, row: DeviceRecord) -> None:
        """What a dead run left open on this device (a load, an unconfirmed commit) is
        aborted by its session name; an expired timer or a confirmed session needs nothing."""
        if row.state != "interrupted" or row.session is None:
            return
        try:
            self._open(row, row.session).discard()
            self._log(row.device, f"aborted what session {row.session} left open, if anything")
        except (DriverError, MicrosegError) as error:
            self._log(row.device, f"could not check session {row.session}: {error}")

    def _preflight(self) -> list[str]:
        """Devices whose owned sections differ from microseg's last deploy there (or, before
        a first deploy, hold something microseg would replace). Records what each runs now."""
        refused: list[str] = []
        lock = threading.Lock()

        def check(row: DeviceRecord) -> None:
            try:
                running = self._open(row, "microseg-preflight").running()
            except (DriverError, MicrosegError) as error:
                self._fail(row.device, f"cannot read its configuration: {error}")
                return
            if row.before is None:
                self.before[row.device] = running  # written with the device's first step
            last = self.changes.last_deployed(row.device)
            expected = last[1].read_back if last else ""
            if running in (expected, row.config) or self.options.force:
                if running not in (expected, row.config):
                    self._log(row.device, "owned configuration edited outside microseg: --force")
                return
            self._log(row.device, "owned configuration edited outside microseg: not overwritten")
            self.progress(row.device, "hand-edited", "not overwritten (--force replaces it)")
            with lock:
                refused.append(row.device)

        self._each(check, stop_on_failure=False)
        return [] if self._any("failed") else sorted(refused)

    def _any(self, state: str) -> bool:
        return any(outcome.state == state for outcome in self.outcomes.values())

    def _deploy_device(self, row: DeviceRecord, session: str) -> None:
        if self.outcomes[row.device].state == "failed":  # unreachable in the preflight
            return
        name, step = row.device, "open"
        driver: Driver | None = None
        try:
            first = {"before": self.before[name]} if name in self.before else {}
            self._set(name, "loading", session=session, error=None, **first)
            driver = self._open(row, session)
            step = "load"
            driver.load(row.config)
            diff = driver.compare()
            self.outcomes[name].device_diff = diff.text
            self.progress(name, "diff", _diff_size(diff.text))
            if not diff.changed:
                driver.discard()
                if row.state == "confirmed":  # by an earlier run of this change
                    self._set(
                        name,
                        "confirmed",
                        "still runs what an earlier run confirmed",
                        device_diff=diff.text,
                    )
                else:
                    self._deployed(name, "unchanged", driver.running(), device_diff=diff.text)
                return
            step = "commit"
            self._set(name, "committing", device_diff=diff.text)
            driver.commit(self.options.confirm_within)
            within = self.options.confirm_within
            self.notes[name].append(
                f"committed; the device restores it unless confirmed within {within} s"
            )
            self.progress(name, "committed", f"confirm within {self.options.confirm_within} s")
            step = "read back"
            read_back = driver.running()
            if not runs_intent(driver, read_back, row.config):
                difference = diff_text(name, row.config, read_back, "intended", "running").text
                raise DriverError(
                    name, f"the configuration read back differs from the intent:\n{difference}"
                )
            step = "confirm"
            driver.confirm()
            self._deployed(name, "confirmed", read_back)
        except (DriverError, MicrosegError) as error:
            if driver is not None and step in ("load", "commit", "read back", "confirm"):
                self._discard_quietly(driver, name)
            self._fail(name, f"{step}: {error}")
            if self._stops():
                self.stop.set()

    def _roll_back_device(self, row: DeviceRecord, session: str) -> None:
        """A device this change confirmed gets back the owned sections it had before."""
        current = self.changes.get(self.record.id).device(row.device)
        if current.state != "confirmed" or current.before is None:
            return
        name = row.device
        try:
            driver = self._open(row, f"{session}-rollback")
            driver.load(current.before)
            driver.commit(self.options.confirm_within)
            if not runs_intent(driver, driver.running(), current.before):
                self._discard_quietly(driver, name)
                raise DriverError(name, "the configuration read back differs from before")
            driver.confirm()
        except (DriverError, MicrosegError) as error:
            # Still `confirmed` (it runs this change's configuration), with the error on its
            # record: `change show` and --json say it, not only the progress line.
            message = f"rollback failed, the device keeps this change's configuration: {error}"
            notes = [*self._take_notes(name), message]
            self.changes.update_device(self.record.id, name, self.actor, notes, error=message)
            self.outcomes[name].error = message
            self.progress(name, "rollback failed", str(error))
            return
        self._set(name, "rolled-back", "rolled back to the configuration it had before this change")

    def _dry_run_device(self, row: DeviceRecord, session: str) -> None:
        name = row.device
        try:
            driver = self._open(row, session)
            driver.load(row.config)
            diff = driver.compare()
            driver.discard()
        except (DriverError, MicrosegError) as error:
            self.outcomes[name].state, self.outcomes[name].error = "failed", str(error)
            self._log(name, f"dry run: {error}")
            self.progress(name, "failed", str(error))
            return
        outcome = self.outcomes[name]
        outcome.state = "would change" if diff.changed else "unchanged"
        outcome.device_diff = diff.text
        self._log(
            name,
            f"dry run: the device's diff\n{diff.text}" if diff.changed else "dry run: no change",
        )
        self.progress(name, outcome.state, _diff_size(diff.text))

    # -- recording ------------------------------------------------------------------------

    def _set(self, device: str, state: str, note: str | None = None, **fields: Any) -> None:
        """The device's new state, its log line `note` and the notes waiting, in one write."""
        notes = self._take_notes(device) + ([note] if note else [])
        self.changes.update_device(self.record.id, device, self.actor, notes, state=state, **fields)
        self.outcomes[device].state = state
        if "error" in fields:
            self.outcomes[device].error = fields["error"]
        self.progress(device, state, fields.get("error") or "")

    def _deployed(self, device: str, state: str, read_back: str, **fields: Any) -> None:
        note = "confirmed" if state == "confirmed" else "already runs this configuration"
        self._set(device, state, note, read_back=read_back, deployed_at=datetime.now(UTC), **fields)

    def _fail(self, device: str, message: str) -> None:
        self._set(device, "failed", f"failed: {message}", error=message)

    def _discard_quietly(self, driver: Driver, device: str) -> None:
        try:
            driver.discard()
        except DriverError as error:
            self._log(
                device,
                f"could not abort the session ({error}); its confirm timer restores the device",
            )

    def _log(self, device: str, message: str) -> None:
        for note in [*self._take_notes(device), message]:
            self.changes.log(self.record.id, self.actor, "device", note, device)

    def _take_notes(self, device: str) -> list[str]:
        notes, self.notes[device] = self.notes[device], []
        return notes

    def _ordered(self) -> list[DeviceOutcome]:
        return [self.outcomes[d.device] for d in self.record.devices]

    def _summary(self) -> str:
        counts: dict[str, int] = {}
        for outcome in self.outcomes.values():
            counts[outcome.state] = counts.get(outcome.state, 0) + 1
        return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def runs_intent(driver: Driver, running: str, intended: str) -> bool:
    """Whether the device runs `intended`: its owned sections read back as that text (EOS
    prints what microseg renders), or, for a device that lists them in its own canonical
    form (nftables lists what `nft -f` loaded its way), its own diff of the intent, staged
    again, against what runs is empty. A device that refuses to stage it again (an EOS
    session is one load) does not run it."""
    if running == intended:
        return True
    try:
        driver.load(intended)
        return not driver.compare().changed
    except DriverError:
        return False


def _diff_size(text: str) -> str:
    lines = text.splitlines()
    added = sum(1 for line in lines if line.startswith("+"))
    removed = sum(1 for line in lines if line.startswith("-"))
    return f"+{added} -{removed}" if added or removed else "no change"

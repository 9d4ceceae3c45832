"""The nftables driver: the local host's nftables, or a named network namespace's.

microseg owns one table, `inet microseg`, and nothing else: every verb reads or replaces that
table alone, and a configuration that would create or change any other table is refused.

How each verb works, and why:

* Commands run as `nft ...` on the local host or `ip netns exec NS nft ...` inside the
  network namespace `NS` (iproute2's named namespaces, /run/netns/NS).
* `load(config)` does not touch the device: the configuration is applied in a throw-away
  network namespace (`unshare --net`) and listed back with `nft -s list ruleset`. That
  checks it with the kernel's own parser and gives its canonical form, the form `running()`
  prints -- so `compare()` diffs like with like, and a configuration that leaves any table
  other than `inet microseg` behind (or uses `flush ruleset`, which would wipe other tables
  on the device) is refused before anything changes.
* `running()` is the owned table as text, `nft -s list table inet microseg` (stateless:
  without counter values, so it is the configuration, comparable across time). Text rather
  than `nft -j`: it is what users read in a diff, and what `nft -f` loads back for a
  rollback; JSON is used where structure matters (`counters()`).
* `commit()` applies `table inet microseg` + `delete table inet microseg` + the canonical
  candidate with one `nft -f`: nft applies a file as one netlink transaction (all or
  nothing; nft(8), "-f"), so the table is replaced atomically and other tables stay as they
  are. Before that, the current table (with its counter values) is saved as the rollback
  ruleset in the state directory.
* Commit-confirm: nftables has no confirm timer of its own, so `commit(confirm_within=N)`
  arms one before applying: a helper process (`confirm_timer.py`) started in its own session
  (setsid) and re-parented to init, so it survives microseg being killed, even by SIGKILL.
  After N seconds it restores the rollback ruleset unless `confirm()` has removed the
  pending record. A `systemd-run` timer would need systemd as PID 1 (containers often have
  none), and the kernel keeps no pending-transaction state that could expire by itself.
  Every step that reads or changes the pending record holds an flock on the state
  directory, so a confirm and an expiry never both win. The state directory lives on /run
  (a tmpfs): after a reboot the kernel's ruleset is gone too.
* `confirm()` removes the pending record of this driver's session and stops the helper.
* `discard()` drops the staged candidate; during an unconfirmed commit it restores the
  previous ruleset at once (as EOS's `configure session NAME abort` does).
* `rollback()` restores the ruleset saved before the last commit.
* `counters()` reads `nft -j list table inet microseg`: each named counter belongs to one
  match and carries the policy's name as its comment; the rules using it carry the match
  name as theirs.
* `facts()`: hostname and kernel release from uname(2), the nft version from
  `nft --version`, the machine-id (machine-id(5)) as serial.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microseg.files import replace_atomically
from microseg.model.objects import NAMESPACE_NAME
from microseg.targets import (
    CommandRejected,
    DeviceDiff,
    DeviceUnreachable,
    DriverError,
    Facts,
    MatchCounters,
)

FAMILY = "inet"
TABLE = "microseg"
OWNED = f"table {FAMILY} {TABLE}"
# Creating the table first makes the delete succeed when it does not exist yet: the file
# then replaces the table whether or not it was there (the renderer starts the same way).
REPLACE_PRELUDE = f"{OWNED}\ndelete {OWNED}\n"
DEFAULT_STATE_DIR = Path("/run/microseg/nftables")
MAX_CONFIRM_SECONDS = 24 * 3600 - 1
_SESSION_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}$")
_TOP_LEVEL_TABLE = re.compile(r"^table (\S+) (\S+) \{$", re.MULTILINE)


@dataclass(frozen=True)
class PendingCommit:
    """A commit waiting for `confirm()`: its session and the helper whose timer runs."""

    session: str
    seconds: int
    helper_pid: int | None


def nft_argv(namespace: str | None, *args: str) -> list[str]:
    """argv running `nft args` on the local host or inside network namespace `namespace`."""
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    return [*prefix, "nft", *args]


def run_nft(
    device: str, namespace: str | None, *args: str, ruleset: str | None = None
) -> subprocess.CompletedProcess:
    """Run nft; a DriverError naming the device and command when it cannot run or fails.

    `ruleset` is given to `nft -f -` on standard input."""
    argv = nft_argv(namespace, *args)
    command = " ".join(args)
    try:
        result = subprocess.run(argv, input=ruleset, capture_output=True, text=True)
    except FileNotFoundError as missing:
        raise DeviceUnreachable(
            device, f"{missing.filename} is not installed (Debian: nftables, iproute2)", command
        ) from None
    if result.returncode != 0:
        message = result.stderr.strip() or f"exit status {result.returncode}"
        if namespace and "Cannot open network namespace" in message:
            raise DeviceUnreachable(device, f"network namespace {namespace!r} does not exist")
        if "Operation not permitted" in message:
            raise DriverError(device, f"{message} (nftables needs root or CAP_NET_ADMIN)", command)
        raise CommandRejected(device, message, command, result.returncode)
    return result


class NftablesDriver:
    """nftables on the local host (`namespace` None) or in a named network namespace.

    `session` names this driver's commits; give the same name (the change's) to confirm or
    roll back from another process after a crash. `state_dir` holds the rollback ruleset
    and the pending-commit record; one per device (default /run/microseg/nftables/<ns>).
    Example: NftablesDriver("router1", namespace="lab-router")
    """

    def __init__(
        self,
        device: str,
        namespace: str | None = None,
        session: str | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.device = device
        if namespace is not None and not NAMESPACE_NAME.fullmatch(namespace):
            raise DriverError(
                device, f"network namespace {namespace!r}: use 1-64 of A-Z a-z 0-9 _ . -"
            )
        self.namespace = namespace
        self.session = session or f"microseg-{uuid.uuid4().hex[:12]}"
        if not _SESSION_NAME.match(self.session):
            raise DriverError(
                device, f"session name {self.session!r}: use 1-64 of A-Z a-z 0-9 _ . -"
            )
        where = f"netns-{namespace}" if namespace else "host"
        self.state_dir = state_dir or DEFAULT_STATE_DIR / where
        self._candidate: str | None = None

    def __repr__(self) -> str:
        where = f"namespace {self.namespace!r}" if self.namespace else "local host"
        return f"NftablesDriver({self.device!r}, {where})"

    # -- the verbs ------------------------------------------------------------------

    def facts(self) -> Facts:
        version = self._nft("--version").stdout.split()
        # `nftables v1.0.6 (Lester Gooch #5)`
        nft_version = version[1].removeprefix("v") if len(version) > 1 else "unknown"
        try:
            serial = Path("/etc/machine-id").read_text().strip()
        except OSError:
            serial = ""
        uname = os.uname()
        return Facts(
            hostname=uname.nodename,
            model=f"nftables {nft_version}",
            version=f"Linux {uname.release}",
            serial=serial,
        )

    def running(self) -> str:
        """The owned table as the kernel lists it, without counter values ("" if absent)."""
        return self._owned_table("-s")

    def load(self, config: str) -> None:
        self._candidate = canonical_ruleset(self.device, config)

    def compare(self) -> DeviceDiff:
        if self._candidate is None:
            raise DriverError(self.device, "nothing loaded to compare")
        diff = difflib.unified_diff(
            self.running().splitlines(), self._candidate.splitlines(), lineterm=""
        )
        body = list(diff)[2:]  # the ---/+++ headers, as the EOS driver drops them
        return DeviceDiff(self.device, "\n".join(body) + "\n" if body else "")

    def commit(self, confirm_within: int | None = None) -> None:
        if self._candidate is None:
            raise DriverError(self.device, "nothing loaded to commit")
        if confirm_within is not None and not 1 <= confirm_within <= MAX_CONFIRM_SECONDS:
            raise DriverError(
                self.device,
                f"confirm within {confirm_within} s: use 1 s to {MAX_CONFIRM_SECONDS} s",
            )
        with self._locked():
            pending = self._read_pending()
            if pending is not None:
                raise DriverError(
                    self.device,
                    f"a commit of session {pending.session!r} waits for confirmation; "
                    "confirm or discard it first",
                )
            previous = self._owned_table()
            self._write("rollback.nft", REPLACE_PRELUDE + previous)
            if confirm_within is not None:
                self._arm_timer(confirm_within)
            try:
                self._nft("-f", "-", ruleset=REPLACE_PRELUDE + self._candidate)
            except DriverError:
                self._disarm()
                raise
        self._candidate = None

    def confirm(self) -> None:
        with self._locked():
            pending = self._read_pending()
            if pending is None or pending.session != self.session:
                raise DriverError(self.device, self._nothing_pending_message(pending))
            self._disarm()

    def discard(self) -> None:
        """Drop what is loaded; during an unconfirmed commit, restore the previous ruleset."""
        self._candidate = None
        with self._locked():
            pending = self._read_pending()
            if pending is not None and pending.session == self.session:
                self._restore()
                self._disarm()

    def rollback(self) -> None:
        """Undo the last commit: at once while unconfirmed, else restore the ruleset saved
        just before it."""
        with self._locked():
            if not (self.state_dir / "rollback.nft").exists():
                raise DriverError(self.device, "no commit to roll back")
            self._restore()
            self._disarm()

    def counters(self) -> list[MatchCounters]:
        listing = self._nft("-j", "list", "table", FAMILY, TABLE).stdout
        try:
            return match_counters(json.loads(listing))
        except (ValueError, KeyError, TypeError) as error:
            raise DriverError(
                self.device,
                f"unexpected `nft -j list table` output ({type(error).__name__}: {error})",
                f"-j list table {FAMILY} {TABLE}",
            ) from None

    def pending(self) -> PendingCommit | None:
        """The commit waiting for confirmation on this device, if any (any session)."""
        with self._locked():
            return self._read_pending()

    # -- nft and the state directory --------------------------------------------------

    def _nft(self, *args: str, ruleset: str | None = None) -> subprocess.CompletedProcess:
        return run_nft(self.device, self.namespace, *args, ruleset=ruleset)

    def _owned_table(self, *options: str) -> str:
        try:
            return self._nft(*options, "list", "table", FAMILY, TABLE).stdout
        except CommandRejected as error:
            if "No such file or directory" in error.message:
                return ""
            raise

    def _restore(self) -> None:
        self._nft("-f", "-", ruleset=(self.state_dir / "rollback.nft").read_text())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            lock = open(self.state_dir / "lock", "a")  # noqa: SIM115 (held for the block)
        except OSError as error:
            raise DriverError(
                self.device, f"state directory {self.state_dir}: {error.strerror}"
            ) from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _write(self, name: str, content: str) -> None:
        replace_atomically(self.state_dir / name, content, 0o600)

    def _read_pending(self) -> PendingCommit | None:
        try:
            record = json.loads((self.state_dir / "pending.json").read_text())
        except FileNotFoundError:
            return None
        return PendingCommit(record["session"], record["seconds"], record.get("helper_pid"))

    def _arm_timer(self, seconds: int) -> None:
        self._write("pending.json", json.dumps({"session": self.session, "seconds": seconds}))
        pid = start_confirm_timer(
            self.device, self.namespace, self.state_dir, self.session, seconds
        )
        self._write(
            "pending.json",
            json.dumps({"session": self.session, "seconds": seconds, "helper_pid": pid}),
        )
        (self.state_dir / "expired.json").unlink(missing_ok=True)

    def _disarm(self) -> None:
        pending = self._read_pending()
        (self.state_dir / "pending.json").unlink(missing_ok=True)
        if pending is not None and pending.helper_pid is not None:
            stop_confirm_timer(pending.helper_pid, pending.session)

    def _nothing_pending_message(self, pending: PendingCommit | None) -> str:
        if pending is not None:
            return (
                f"the commit waiting for confirmation is session {pending.session!r}, "
                f"not {self.session!r}"
            )
        try:
            expired = json.loads((self.state_dir / "expired.json").read_text())
        except FileNotFoundError:
            expired = {}
        if expired.get("session") == self.session:
            if expired.get("error"):
                return (
                    f"the confirm timer of session {self.session!r} expired, but restoring "
                    f"the previous ruleset failed: {expired['error']}"
                )
            return (
                f"the confirm timer of session {self.session!r} expired; the previous "
                "ruleset was restored"
            )
        return f"no commit of session {self.session!r} waits for confirmation"


def canonical_ruleset(device: str, config: str) -> str:
    """`config` as the kernel lists it back (stateless), checked to define nothing but the
    owned table; applied in a throw-away network namespace, never on the device."""
    try:
        result = subprocess.run(
            ["unshare", "--net", "--", "sh", "-c", "nft -f - && nft -s list ruleset"],
            input=config,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        raise DeviceUnreachable(device, "unshare is not installed (Debian: util-linux)") from None
    if result.returncode != 0:
        raise CommandRejected(device, result.stderr.strip(), "nft -f (check)", result.returncode)
    tables = {f"table {family} {name}" for family, name in _TOP_LEVEL_TABLE.findall(result.stdout)}
    others = sorted(tables - {OWNED})
    if others:
        raise DriverError(
            device,
            f"the configuration defines {', '.join(others)}; microseg owns only `{OWNED}` "
            "and never changes another table",
        )
    return result.stdout


def match_counters(listing: dict[str, Any]) -> list[MatchCounters]:
    """(policy, match, packets, bytes) per named counter of `nft -j list table` output.

    A counter's comment names its policy; the rules using it name the match in theirs.
    Counters no commented rule uses (an operator's, say) are left out."""
    items = listing["nftables"]
    counter_match: dict[str, str] = {}
    for item in items:
        rule = item.get("rule")
        if not rule or "comment" not in rule:
            continue
        for expression in rule["expr"]:
            counter = expression.get("counter")
            if isinstance(counter, str):
                counter_match.setdefault(counter, rule["comment"])
    counters = []
    for item in items:
        counter = item.get("counter")
        if counter and counter["name"] in counter_match and "comment" in counter:
            match = counter_match[counter["name"]]
            counters.append(
                MatchCounters(counter["comment"], match, counter["packets"], counter["bytes"])
            )
    return counters


def start_confirm_timer(
    device: str, namespace: str | None, state_dir: Path, session: str, seconds: int
) -> int:
    """Start the confirm-timer helper detached from this process; its pid once armed."""
    import microseg

    package_root = str(Path(microseg.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = package_root + os.pathsep + env.get("PYTHONPATH", "")
    argv = [
        sys.executable,
        "-m",
        "microseg.targets.nftables.confirm_timer",
        "--device",
        device,
        "--state-dir",
        str(state_dir),
        "--session",
        session,
        "--seconds",
        str(seconds),
    ]
    if namespace:
        argv += ["--namespace", namespace]
    helper = subprocess.run(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
    )
    armed = helper.stdout.split()
    if helper.returncode != 0 or len(armed) != 2 or armed[0] != "armed":
        raise DriverError(device, f"could not start the confirm timer: {helper.stderr.strip()}")
    return int(armed[1])


def stop_confirm_timer(pid: int, session: str) -> None:
    """Stop the helper of `session` (checked by its command line: the pid may be reused)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if b"microseg.targets.nftables.confirm_timer" in argv and session.encode() in argv:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

"""What every device driver answers, whatever the platform.

A narrow verb set in the manner of NAPALM's `NetworkDriver` (`load_merge_candidate`,
`compare_config`, `commit_config(revert_in=)`, `confirm_commit`, `discard_config`,
`rollback`): a caller drives an EOS switch and an nftables host the same way and never
imports a vendor library. Platform packages (`targets/eos/`, ...) implement `Driver`.

The verbs, in the order a deploy uses them:

* `facts()` -- who the device says it is;
* `running()` -- the configuration sections microseg owns on the device, as text;
* `load(config)` -- stage `config` as the new content of the owned sections (replacing
  them: what `config` leaves out is removed, nothing microseg does not own is touched);
* `compare()` -- the device's own diff of the staged configuration against its running one;
* `commit(confirm_within=seconds | None)` -- apply; with `confirm_within`, the device
  restores the previous configuration by itself unless `confirm()` comes in time;
* `confirm()`, `discard()` (drop what is staged, or undo an unconfirmed commit),
  `rollback()` (restore the configuration from before the last commit);
* `counters()` -- packets and bytes per match of every policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Facts:
    """Who the device says it is.

    Example: Facts(hostname="andreasm-720xp-home", model="DCS-720XP-48ZC2",
    version="4.34.2F", serial="JPE00000000")
    """

    hostname: str
    model: str
    version: str
    serial: str


@dataclass(frozen=True)
class MatchCounters:
    """What one match of one policy has counted since it was created.

    `bytes` is None when the device counts packets only.
    Example: MatchCounters(policy="vrf_all_home", match="allow_all_DNS", packets=42, bytes=3150)
    """

    policy: str
    match: str
    packets: int
    bytes: int | None


@dataclass(frozen=True)
class DeviceDiff:
    """The device's own diff of the staged configuration against its running one.

    `text` is the diff as the device prints it (unified diff hunks, headers removed);
    empty when loading changed nothing.
    """

    device: str
    text: str

    @property
    def changed(self) -> bool:
        return any(line[:1] in "+-" for line in self.text.splitlines())


class DriverError(Exception):
    """A device could not be reached, refused us, or rejected a command.

    Names the device, the command (when one was sent) and the device's own message.
    """

    def __init__(self, device: str, message: str, command: str | None = None) -> None:
        self.device = device
        self.message = message
        self.command = command
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"device {self.device!r}"
        if self.command is not None:
            where += f", command {self.command!r}"
        return f"{where}: {self.message}"


class DeviceUnreachable(DriverError):
    """No answer: connection refused, timed out, or the TLS handshake failed."""


class AuthenticationFailed(DriverError):
    """The device refused the username or password."""


class CommandRejected(DriverError):
    """The device ran the request but rejected one of its commands."""

    def __init__(self, device: str, message: str, command: str | None, code: int) -> None:
        self.code = code
        super().__init__(device, message, command)


@runtime_checkable
class Driver(Protocol):
    """One device, driven through its own management interface."""

    device: str

    def facts(self) -> Facts: ...

    def running(self) -> str: ...

    def load(self, config: str) -> None: ...

    def compare(self) -> DeviceDiff: ...

    def commit(self, confirm_within: int | None = None) -> None: ...

    def confirm(self) -> None: ...

    def discard(self) -> None: ...

    def rollback(self) -> None: ...

    def counters(self) -> list[MatchCounters]: ...

"""Polling: per-match counters of every deployed device, through its target's driver.

A device is polled when change control has deployed it (`store.changes.last_deployed`); its
matches are named to rules and actions by the DeviceIntent of the revision that change
deployed, so a counter is read against what the device really runs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from microseg.compile.intent import DeviceIntent
from microseg.compile.resolve import compile_all
from microseg.deploy.credentials import CredentialStore
from microseg.deploy.devices import DEFAULT_TIMEOUT_S, open_device
from microseg.model import MicrosegError, PolicySet
from microseg.monitor.series import COMPACT_AFTER, CounterRow, CounterSeries
from microseg.store import Store
from microseg.targets import DriverError
from microseg.targets.render import configured_names

log = logging.getLogger("microseg.monitor")
# EOS: every traffic-policy ends with the implicit `ipv4-all-default` / `ipv6-all-default`
# matches (seed listings; the nftables target names its default drop rules the same way).
DEFAULT_MATCHES = frozenset({"ipv4-all-default", "ipv6-all-default"})


@dataclass(frozen=True)
class Deployed:
    """A device change control has deployed: by which change, of which revision."""

    device: str
    change: int
    revision: int
    deployed_at: datetime | None


@dataclass(frozen=True)
class DevicePoll:
    device: str
    change: int
    matches: int  # counters read
    error: str | None = None
    counters: tuple[CounterRow, ...] = ()  # what was read and stored


class Revisions:
    """Policies of stored revisions and their DeviceIntents, each loaded and compiled once.

    A stored revision never changes, so a poller keeps one of these across its polls of one
    store: a poll then costs the counters read and the segment written, not a policy load
    and compile (seconds for thousands of rules). At most `keep` revisions are held.
    """

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._loaded: dict[int, tuple[PolicySet, dict[str, DeviceIntent] | None]] = {}

    def policy(self, store: Store, revision: int) -> PolicySet:
        if revision not in self._loaded:
            while len(self._loaded) >= self.keep:
                del self._loaded[next(iter(self._loaded))]  # the oldest loaded
            self._loaded[revision] = (store.revision_policy(revision), None)
        return self._loaded[revision][0]

    def intents(self, store: Store, revision: int) -> dict[str, DeviceIntent]:
        policy_set = self.policy(store, revision)
        compiled = self._loaded[revision][1]
        if compiled is None:
            compiled = compile_all(policy_set)
            self._loaded[revision] = (policy_set, compiled)
        return compiled


def deployed_devices(store: Store, revisions: Revisions | None = None) -> list[Deployed]:
    """Devices of the head revision that change control has deployed, by name."""
    head = store.head()
    if head is None:
        raise MicrosegError("the store has no revisions yet: microseg import FILE first")
    deployed = []
    for name in configured_names((revisions or Revisions()).policy(store, head)):
        last = store.changes.last_deployed(name)
        if last is not None:
            change, record = last
            revision = store.changes.get(change).revision
            deployed.append(Deployed(name, change, revision, record.deployed_at))
    return deployed


def poll(
    store: Store,
    series: CounterSeries,
    timeout: float = DEFAULT_TIMEOUT_S,
    revisions: Revisions | None = None,
) -> list[DevicePoll]:
    """Read every deployed device's counters once and store them as one segment. A device
    that does not answer is reported, not fatal: the others are still stored. A poller
    passes the same `revisions` to every poll of one store."""
    now = datetime.now(UTC)
    rows: list[CounterRow] = []
    outcomes = []
    revisions = revisions or Revisions()
    session = f"microseg-monitor-{os.getpid()}"
    for device in deployed_devices(store, revisions):
        policy_set = revisions.policy(store, device.revision)
        intent = revisions.intents(store, device.revision).get(device.device)
        if intent is None:
            continue  # a monitor node: it enforces no traffic policy
        try:
            driver, _ = open_device(
                policy_set, device.device, CredentialStore(policy_set), session, timeout
            )
            counters = driver.counters()
        except (DriverError, MicrosegError) as error:
            outcomes.append(DevicePoll(device.device, device.change, 0, str(error)))
            continue
        names = _match_names(intent)
        read = []
        for counter in counters:
            rule, action = names.get((counter.policy, counter.match), (counter.match, "unknown"))
            read.append(
                CounterRow(
                    now,
                    device.device,
                    device.change,
                    counter.policy,
                    counter.match,
                    rule,
                    action,
                    counter.packets,
                    counter.bytes,
                )
            )
        rows.extend(read)
        outcomes.append(DevicePoll(device.device, device.change, len(counters), None, tuple(read)))
    series.write(rows)
    try:
        series.compact(at_least=COMPACT_AFTER)  # one segment per poll would pile up for ever
    except OSError as error:  # the poll is stored; the merge can wait for a later one
        log.warning(
            "warning: counter series %s: not compacted: %s",
            series.directory,
            error.strerror or error,
        )
    return outcomes


def _match_names(intent: DeviceIntent) -> dict[tuple[str, str], tuple[str, str]]:
    """(policy, match) -> (rule, action); a default match is its own rule, with the
    policy's default action."""
    names: dict[tuple[str, str], tuple[str, str]] = {}
    for policy in intent.policies:
        for match in policy.matches:
            names[(policy.name, match.name)] = (match.rule, match.action)
        for default in DEFAULT_MATCHES:
            names[(policy.name, default)] = (default, policy.default_action)
    return names

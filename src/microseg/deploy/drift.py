"""Drift: what the head revision intends against what each device runs.

Reads (`Driver.running()`). A device is `in_sync` when its owned sections read back as the
intended text, or -- for a device that lists them in its own canonical form, as nftables
does -- when its own diff of the staged intent is empty (staged, compared, dropped: never
committed); `hand_edited` when they differ from what
microseg last deployed there (someone changed them outside microseg, or, before a first
deploy, they hold configuration microseg would replace).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from microseg.compile.diff import diff_text
from microseg.deploy.credentials import CredentialStore
from microseg.deploy.devices import DEFAULT_TIMEOUT_S, intended_configs, open_device
from microseg.model import MicrosegError
from microseg.store import Store
from microseg.targets import Driver, DriverError


@dataclass(frozen=True)
class DriftReport:
    device: str
    in_sync: bool
    hand_edited: bool
    last_change: int | None  # the change that last deployed it
    diff: str  # running -> intended
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "in_sync": self.in_sync,
            "hand_edited": self.hand_edited,
            "last_change": self.last_change,
            "diff": self.diff,
            "error": self.error,
        }


def drift(
    store: Store,
    devices: list[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    parallel: int = 10,
) -> tuple[int, list[DriftReport]]:
    """(head revision, one report per device) for `devices` (default: every configured one)."""
    head = store.head()
    if head is None:
        raise MicrosegError("the store has no revisions yet: microseg import FILE first")
    policy_set = store.revision_policy(head)
    credentials = CredentialStore(policy_set)
    session = f"microseg-drift-{os.getpid()}"

    def report(intended: Any) -> DriftReport:
        name = intended.device
        last = store.changes.last_deployed(name)
        try:
            driver, _ = open_device(policy_set, name, credentials, session, timeout)
            running = driver.running()
            in_sync = running == intended.config or _device_agrees(driver, intended.config)
        except (DriverError, MicrosegError) as error:
            return DriftReport(name, False, False, last[0] if last else None, "", str(error))
        diff = diff_text(name, running, intended.config, "running", f"intended (revision {head})")
        deployed = last[1].read_back if last else ""
        return DriftReport(
            name,
            in_sync,
            running != deployed,
            last[0] if last else None,
            diff.text,
        )

    intended = intended_configs(policy_set, devices)
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return head, list(pool.map(report, intended))


def _device_agrees(driver: Driver, intended: str) -> bool:
    """For a device that lists its configuration in its own form (nftables): stage the
    intent, ask the device's own diff, drop it again."""
    driver.load(intended)
    try:
        return not driver.compare().changed
    finally:
        driver.discard()

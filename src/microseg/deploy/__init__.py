"""Change control: changes, approvals, runs over drivers, rollback, drift.

    with open_store() as store:
        change = create_change(store, "alice")                  # the head, changed devices
        approve_change(store, change.id, "bob", "reviewed")
        result = run_change(store, change.id, "bob", RunOptions(parallel=10))

Logic lives here; `microseg.store` only persists it, `microseg.targets` talks to devices.
"""

from microseg.deploy.changes import (
    FourEyesRefusal,
    approve_change,
    cancel_change,
    create_change,
    four_eyes,
    four_eyes_setting,
    list_changes,
    rollback_change,
    set_four_eyes,
    show_change,
)
from microseg.deploy.credentials import Credentials, CredentialsError, CredentialStore
from microseg.deploy.drift import DriftReport, drift
from microseg.deploy.run import (
    DeviceOutcome,
    HandEdited,
    RunOptions,
    RunResult,
    run_change,
    start_run,
)

__all__ = [
    "CredentialStore",
    "Credentials",
    "CredentialsError",
    "DeviceOutcome",
    "DriftReport",
    "FourEyesRefusal",
    "HandEdited",
    "RunOptions",
    "RunResult",
    "approve_change",
    "cancel_change",
    "create_change",
    "drift",
    "four_eyes",
    "four_eyes_setting",
    "list_changes",
    "rollback_change",
    "run_change",
    "set_four_eyes",
    "show_change",
    "start_run",
]

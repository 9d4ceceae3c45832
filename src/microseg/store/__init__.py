"""SQLAlchemy 2 persistence: mainline revisions, workspaces, and the audit trail (the log).

with open_store() as store:           # $MICROSEG_DATABASE_URL or SQLite in the data dir
    revision = store.import_policy(policy_set, "alice", "seed lab").revision
    store.workspace_create("change-42")
    store.workspace_set("change-42", "groups", {"name": "web", "prefixes": ["10.0.0.0/24"]})
    store.workspace_submit("change-42", "alice", "add web group")
"""

from microseg.store.changes import (
    Approval,
    ChangeRecord,
    DeviceRecord,
    Event,
    PlannedDevice,
    StateConflict,
)
from microseg.store.database import (
    DATABASE_URL_ENV,
    current_schema_revision,
    database_url,
    head_schema_revision,
    upgrade_schema,
)
from microseg.store.errors import (
    InvalidChange,
    NotFound,
    StoreConflict,
    StoreUnavailable,
    WorkspaceClosed,
)
from microseg.store.records import AUTHOR_ENV, Imported, RevisionInfo, WorkspaceInfo, default_author
from microseg.store.snapshot import FieldChange, ObjectChange
from microseg.store.store import Store, init_database, open_store

__all__ = [
    "AUTHOR_ENV",
    "DATABASE_URL_ENV",
    "Approval",
    "ChangeRecord",
    "DeviceRecord",
    "Event",
    "FieldChange",
    "Imported",
    "InvalidChange",
    "NotFound",
    "ObjectChange",
    "PlannedDevice",
    "RevisionInfo",
    "StateConflict",
    "Store",
    "StoreConflict",
    "StoreUnavailable",
    "WorkspaceClosed",
    "WorkspaceInfo",
    "current_schema_revision",
    "database_url",
    "default_author",
    "head_schema_revision",
    "init_database",
    "open_store",
    "upgrade_schema",
]

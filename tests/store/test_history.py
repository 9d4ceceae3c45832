"""The store's history as object versions, on SQLite and PostgreSQL: a revision writes only
the objects it changes, every revision reads back as it was stored, and the migration from
full copies per revision (schema 0002) converts a database without losing anything."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, Integer, String, Text, column, func, select, table
from sqlalchemy.orm import Session

from microseg.model import PolicySet
from microseg.policyfile import dump_policy, load_policy
from microseg.store import open_store
from microseg.store.database import WRITE_TRANSACTION, _alembic_config, create_store_engine
from microseg.store.schema import Base, ObjectVersion
from microseg.store.snapshot import (
    Bodies,
    apply_changes,
    object_body,
    policy_bodies,
    policy_from_bodies,
)
from microseg.store.store import _revision_bodies
from support import EXAMPLES

# The layout before object versions (migration 0002): every object of every revision.
REVISION_OBJECTS = table(
    "revision_objects",
    column("revision_id", Integer),
    column("section", String),
    column("name", String),
    column("body", Text),
)
T0 = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
# The migration to object versions, and the one before it (users and audit; still copies).
OBJECT_VERSIONS, BEFORE_VERSIONS = "0004", "0003"


def _policy(file: str) -> PolicySet:
    return load_policy(EXAMPLES / file)


def _version_rows(store) -> list[tuple[str, str, int, int | None]]:
    with store._engine.connect() as connection:
        query = select(
            ObjectVersion.section,
            ObjectVersion.name,
            ObjectVersion.valid_from,
            ObjectVersion.valid_to,
        ).order_by(ObjectVersion.valid_from, ObjectVersion.section, ObjectVersion.name)
        return [tuple(row) for row in connection.execute(query)]


def test_a_revision_changing_one_object_writes_one_version(store):
    home_lab = _policy("home-lab.yaml")
    store.import_policy(home_lab, "andreas", "seed")
    first = _version_rows(store)
    assert len(first) == len(home_lab.objects())
    assert all(valid_to is None for *_, valid_to in first)

    store.workspace_create("describe", author="andreas")
    rule = home_lab.rule("web-to-appserver1")
    store.workspace_set("describe", "rules", rule.model_copy(update={"description": "new"}))
    assert store.workspace_submit("describe", "andreas", "one rule") == 2
    rows = _version_rows(store)
    assert len(rows) == len(first) + 1
    assert [row for row in rows if row[1] == "web-to-appserver1"] == [
        ("rules", "web-to-appserver1", 1, 2),
        ("rules", "web-to-appserver1", 2, None),
    ]
    # Re-importing what the head holds writes no revision and no object.
    assert store.import_policy(store.revision_policy(2), "andreas", "same again").changed is False
    assert store.head() == 2
    assert len(_version_rows(store)) == len(rows)
    assert dump_policy(store.revision_policy(1)) == dump_policy(home_lab)


def test_deleting_an_object_ends_its_version_and_adds_none(store):
    home_lab = _policy("home-lab.yaml")
    store.import_policy(home_lab, "andreas", "seed")
    before = _version_rows(store)
    policy = home_lab.policies[0]
    store.workspace_create("drop", author="andreas")
    rules = tuple(rule for rule in policy.rules if rule != "drop_all_else_web-app")
    store.workspace_set("drop", "policies", policy.model_copy(update={"rules": rules}))
    store.workspace_delete("drop", "rules", "drop_all_else_web-app")
    store.workspace_submit("drop", "andreas", "no catch-all drop")
    after = _version_rows(store)
    assert len(after) == len(before) + 1  # the policy's new version; none for the rule
    assert ("rules", "drop_all_else_web-app", 1, 2) in after
    assert ("policies", policy.name, 2, None) in after
    current = {(section, name) for section, name, _, valid_to in after if valid_to is None}
    assert ("rules", "drop_all_else_web-app") not in current


def test_every_revision_reads_back_through_changes_deletions_and_re_additions(store):
    stages = [
        _policy("home-lab-dns-ntp.yaml"),
        _policy("home-lab-monitor.yaml"),
        _policy("home-lab.yaml"),
        _policy("home-lab-dns-ntp.yaml"),  # bodies back to revision 1's, objects removed
        PolicySet(),  # everything deleted
        _policy("home-lab.yaml"),  # everything back after a gap
    ]
    for stage in stages:
        store.import_policy(stage, "andreas", "stage")
    for number, stage in enumerate(stages, 1):
        assert dump_policy(store.revision_policy(number)) == dump_policy(stage), number


# -- the migration from full copies (0002) ------------------------------------------------------


def _engine_at_0002(url: str) -> Engine:
    engine = create_store_engine(url)
    with engine.connect() as connection:
        connection.execution_options(**{WRITE_TRANSACTION: True})
        with connection.begin():
            command.upgrade(_alembic_config(connection), "0002")
    return engine


def _write_old_history(engine: Engine, revisions: list[Bodies]) -> None:
    """Revisions 1..N as the 0002 store wrote them: a row per object per revision."""
    tables = Base.metadata.tables
    with engine.begin() as connection:
        for number, bodies in enumerate(revisions, 1):
            connection.execute(
                tables["revisions"].insert(),
                {
                    "id": number,
                    "parent_id": number - 1 or None,
                    "author": "andreas",
                    "message": f"revision {number}",
                    "created_at": T0,
                },
            )
            if bodies:
                connection.execute(
                    REVISION_OBJECTS.insert(),
                    [
                        {"revision_id": number, "section": s, "name": n, "body": b}
                        for (s, n), b in bodies.items()
                    ],
                )
        connection.execute(tables["mainline"].update().values(head_revision_id=len(revisions)))


def _old_rows(engine: Engine) -> set[tuple[int, str, str, str]]:
    with engine.connect() as connection:
        return {tuple(row) for row in connection.execute(select(REVISION_OBJECTS))}


def _seed_history() -> list[Bodies]:
    """Changes, deletions, bodies going back to an earlier value, an empty revision, objects
    re-added after a gap, and a revision identical to its parent."""
    dns_ntp, monitor, home_lab = (
        policy_bodies(_policy(name))
        for name in ("home-lab-dns-ntp.yaml", "home-lab-monitor.yaml", "home-lab.yaml")
    )
    rule = _policy("home-lab.yaml").rule("web-to-appserver1")
    described = dict(home_lab)
    described["rules", rule.name] = object_body(
        "rules", rule.model_copy(update={"description": "changed"})
    )
    return [dns_ntp, monitor, home_lab, described, dns_ntp, {}, home_lab, home_lab]


def _changed_objects(history: list[Bodies]) -> int:
    """How many (revision, object) pairs differ from the revision before: the versions."""
    return sum(
        1
        for previous, bodies in zip([{}, *history], history, strict=False)
        for key, body in bodies.items()
        if previous.get(key) != body
    )


def test_upgrading_a_0002_database_keeps_every_revision_workspace_and_change(store_url):
    history = _seed_history()
    ssh = _policy("home-lab.yaml").rule("ssh_to_web-app_servers")
    wifi = _policy("home-lab.yaml").group("wifi_clients")
    workspace_changes = {
        ("rules", ssh.name): object_body("rules", ssh.model_copy(update={"description": "ws"})),
        ("groups", wifi.name): object_body("groups", wifi.model_copy(update={"categories": ()})),
        ("categories", "clients"): None,
    }
    tables = Base.metadata.tables
    engine = _engine_at_0002(store_url)
    try:
        _write_old_history(engine, history)
        with engine.begin() as connection:
            workspace = {"author": "bob", "created_at": T0, "base_revision_id": 3}
            workspaces = tables["workspaces"]
            (open_id,) = connection.execute(
                workspaces.insert().values(**workspace, name="open-one", state="open")
            ).inserted_primary_key
            connection.execute(
                workspaces.insert().values(
                    **workspace,
                    name="done",
                    state="submitted",
                    closed_at=T0,
                    submitted_revision_id=4,
                )
            )
            connection.execute(
                tables["workspace_changes"].insert(),
                [
                    {"workspace_id": open_id, "section": s, "name": n, "body": b}
                    for (s, n), b in workspace_changes.items()
                ],
            )
            connection.execute(
                tables["changes"].insert(),
                {
                    "id": 1,
                    "revision_id": 7,
                    "base_revision_id": 3,
                    "author": "andreas",
                    "description": "deploy",
                    "created_at": T0,
                    "state": "succeeded",
                    "updated_at": T0,
                    "attempts": 1,
                },
            )
        before = _old_rows(engine)
    finally:
        engine.dispose()
    assert len(before) == sum(len(bodies) for bodies in history)
    exports = [dump_policy(policy_from_bodies(bodies)) for bodies in history]

    with open_store(store_url) as store:
        assert [r.id for r in store.log()] == list(range(len(history), 0, -1))
        for number, export in enumerate(exports, 1):
            assert dump_policy(store.revision_policy(number)) == export, number
        assert len(_version_rows(store)) == _changed_objects(history) < len(before)
        effective = apply_changes(history[2], workspace_changes.items())
        assert dump_policy(store.workspace_policy("open-one")) == dump_policy(
            policy_from_bodies(effective)
        )
        assert [(c.section, c.name, c.change) for c in store.workspace_diff("open-one")] == [
            ("categories", "clients", "removed"),
            ("groups", wifi.name, "changed"),
            ("rules", ssh.name, "changed"),
        ]
        assert store.workspace_info("done").submitted_revision == 4
        change = store.changes.get(1)
        assert (change.revision, change.base_revision) == (7, 3)
        # The upgraded store goes on: a submit onto the head, then every revision again.
        store.workspace_create("after", author="bob")
        store.workspace_set("after", "rules", ssh.model_copy(update={"description": "after"}))
        assert store.workspace_submit("after", "bob", "after the upgrade") == len(history) + 1
        for number, export in enumerate(exports, 1):
            assert dump_policy(store.revision_policy(number)) == export, number


def test_downgrading_from_object_versions_gives_back_the_same_rows(store_url):
    history = _seed_history()
    engine = _engine_at_0002(store_url)
    try:
        _write_old_history(engine, history)
        before = _old_rows(engine)
        with engine.connect() as connection:
            connection.execution_options(**{WRITE_TRANSACTION: True})
            with connection.begin():
                command.upgrade(_alembic_config(connection), OBJECT_VERSIONS)
                command.downgrade(_alembic_config(connection), BEFORE_VERSIONS)
        assert _old_rows(engine) == before
    finally:
        engine.dispose()


KEYS = st.tuples(st.sampled_from(["groups", "rules"]), st.sampled_from(["a", "b", "c"]))
HISTORIES = st.lists(
    st.dictionaries(KEYS, st.sampled_from(["1", "2", "3"]), max_size=6), min_size=1, max_size=8
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=HISTORIES)
def test_any_history_converts_to_versions_that_read_back_the_same(history, tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('history') / 'store.db'}"
    engine = _engine_at_0002(url)
    try:
        _write_old_history(engine, history)
        with engine.connect() as connection:
            connection.execution_options(**{WRITE_TRANSACTION: True})
            with connection.begin():
                command.upgrade(_alembic_config(connection), OBJECT_VERSIONS)
        with Session(engine) as session:
            read = [_revision_bodies(session, n) for n in range(1, len(history) + 1)]
            versions = session.scalar(select(func.count()).select_from(ObjectVersion))
        assert read == history
        assert versions == _changed_objects(history)
    finally:
        engine.dispose()

"""The change-control tables on SQLite and PostgreSQL: changes, devices, approvals, events,
settings, and the compare-and-set of state transitions."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from microseg.policyfile import load_policy
from microseg.store import NotFound, PlannedDevice, StateConflict
from support import EXAMPLES

DEVICES = [
    PlannedDevice("andreas-ztx1", "eos", "", ""),
    PlannedDevice("andreasm-720xp-home", "eos", "traffic-policies\n", "+traffic-policies\n"),
]


@pytest.fixture
def revision(store) -> int:
    imported = store.import_policy(load_policy(EXAMPLES / "home-lab-dns-ntp.yaml"), "andreas", "r1")
    return imported.revision


def test_a_change_keeps_its_devices_in_order_and_its_creation_in_the_trail(store, revision):
    number = store.changes.create(revision, None, "andreas", "deploy", DEVICES)
    change = store.changes.get(number)
    assert (change.id, change.revision, change.state, change.author) == (
        1,
        revision,
        "pending-approval",
        "andreas",
    )
    assert [d.device for d in change.devices] == ["andreas-ztx1", "andreasm-720xp-home"]
    assert change.device("andreasm-720xp-home").planned_diff == "+traffic-policies\n"
    assert [(e.actor, e.kind) for e in change.events] == [("andreas", "created")]
    assert change.created_at.tzinfo is UTC
    assert store.changes.create(revision, None, "andreas", "again", DEVICES) == 2
    assert [c.id for c in store.changes.list()] == [2, 1]


def test_a_transition_only_moves_from_the_states_asked_for(store, revision):
    number = store.changes.create(revision, None, "andreas", "deploy", DEVICES)
    with pytest.raises(StateConflict, match="change 1 is pending-approval: it must be approved"):
        store.changes.transition(number, ("approved",), "running", "bob", "run")
    store.changes.approve(number, "bob", "ok", ("pending-approval",), "approved")
    moved = store.changes.transition(
        number, ("approved",), "running", "bob", "run 1", attempts=1, runner="h:1:2"
    )
    assert (moved.state, moved.attempts, moved.runner) == ("running", 1, "h:1:2")
    assert [(e.actor, e.kind) for e in moved.events] == [
        ("andreas", "created"),
        ("bob", "approval"),
        ("bob", "approved"),
        ("bob", "running"),
    ]
    assert moved.approvals[0].approver == "bob"


def test_of_two_runners_starting_at_once_one_wins(store, revision):
    number = store.changes.create(revision, None, "andreas", "deploy", DEVICES)
    store.changes.approve(number, "bob", "", ("pending-approval",), "approved")

    def start(who: str) -> str:
        try:
            store.changes.transition(number, ("approved",), "running", who, "run")
            return "won"
        except StateConflict:
            return "lost"

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(start, ["a", "b", "c", "d"]))
    assert outcomes == ["lost", "lost", "lost", "won"]


def test_the_last_deploy_of_a_device_is_its_newest_confirmed_row(store, revision):
    assert store.changes.last_deployed("andreasm-720xp-home") is None
    first = store.changes.create(revision, None, "andreas", "one", DEVICES)
    second = store.changes.create(revision, None, "andreas", "two", DEVICES)
    for number, at in ((first, 1), (second, 2)):
        store.changes.update_device(
            number,
            "andreasm-720xp-home",
            state="confirmed",
            read_back=f"config {number}",
            deployed_at=datetime(2026, 11, 30, 12, at, tzinfo=UTC),
        )
    found, row = store.changes.last_deployed("andreasm-720xp-home")
    assert (found, row.read_back) == (second, "config 2")
    store.changes.update_device(second, "andreasm-720xp-home", state="rolled-back")
    assert store.changes.last_deployed("andreasm-720xp-home")[0] == first


def test_settings_remember_who_set_them(store):
    assert store.changes.setting("four_eyes") is None
    store.changes.set_setting("four_eyes", "on", "admin")
    store.changes.set_setting("four_eyes", "off", "carol")
    value, who, when = store.changes.setting("four_eyes")
    assert (value, who, when.tzinfo) == ("off", "carol", UTC)


def test_an_unknown_change_is_not_found(store, revision):
    with pytest.raises(NotFound, match=r"no change 9 \(there are none yet"):
        store.changes.get(9)
    with pytest.raises(NotFound):
        store.changes.get(2**40)


def test_changes_are_listed_a_page_at_a_time_newest_first(store, revision):
    for number in range(1, 8):
        assert store.changes.create(revision, None, "andreas", f"c{number}", DEVICES) == number
    assert store.changes.count() == 7
    assert [c.id for c in store.changes.list(limit=3)] == [7, 6, 5]
    assert [c.id for c in store.changes.list(limit=3, offset=3)] == [4, 3, 2]
    assert [c.id for c in store.changes.list(limit=3, offset=6)] == [1]
    assert store.changes.list(limit=3, offset=7) == []
    assert [c.id for c in store.changes.list(offset=5)] == [2, 1]

"""Two engineers submit at the same moment, each from their own connection (two threads,
two engines), on SQLite and PostgreSQL.

To make the race certain rather than lucky, the first submitter pauses inside its write
transaction, after its conflict check, until the second submitter has started. If writers
were not serialized on the mainline head, the second would pass its own conflict check
against the old head and both would write revision 2 (an integrity or lock error, never a
StoreConflict), so these tests would fail.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import microseg.store.store as store_module
from microseg.policyfile import load_policy
from microseg.store import StoreConflict, open_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RULE = {
    "name": "clients_to_webservers",
    "sources": ["wifi_clients"],
    "destinations": ["web01_web02"],
    "services": ["HTTP"],
}
# Long enough for the second submitter to reach the mainline lock; nothing asserts on time.
HOLD_LOCK_S = 0.5


def _race(store_url: str, monkeypatch, first: str, second: str) -> dict[str, object]:
    """Submit `first` and `second` concurrently; `first` holds the lock while `second` starts."""
    first_holds_lock = threading.Event()
    second_started = threading.Event()
    real_add_revision = store_module._add_revision
    paused = threading.Lock()

    def add_revision_pausing_once(*args, **kwargs):
        if paused.acquire(blocking=False):  # only the first submitter pauses
            first_holds_lock.set()
            second_started.wait(10)
            time.sleep(HOLD_LOCK_S)
        return real_add_revision(*args, **kwargs)

    monkeypatch.setattr(store_module, "_add_revision", add_revision_pausing_once)
    outcomes: dict[str, object] = {}

    def submit(name: str) -> None:
        try:
            with open_store(store_url) as own_store:
                outcomes[name] = own_store.workspace_submit(name, name, f"submit {name}")
        except Exception as error:
            outcomes[name] = error

    def submit_second() -> None:
        first_holds_lock.wait(10)
        second_started.set()
        submit(second)

    threads = [
        threading.Thread(target=submit, args=(first,)),
        threading.Thread(target=submit_second),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


@pytest.fixture
def two_workspaces(store_url):
    def create(first_changes, second_changes):
        with open_store(store_url) as store:
            store.import_policy(load_policy(EXAMPLES / "home-lab.yaml"), "andreas", "seed lab")
            for name, changes in (("alice", first_changes), ("bob", second_changes)):
                store.workspace_create(name)
                store.workspace_set_objects(name, changes)

    return create


def test_concurrent_submits_of_the_same_rule_one_wins_one_conflicts(
    store_url, two_workspaces, monkeypatch
):
    two_workspaces(
        [("rules", RULE)],
        [("rules", {**RULE, "services": ["HTTP", "SSH"]})],
    )
    outcomes = _race(store_url, monkeypatch, "alice", "bob")
    assert outcomes["alice"] == 2
    assert isinstance(outcomes["bob"], StoreConflict), outcomes["bob"]
    assert outcomes["bob"].objects == [("rules", "clients_to_webservers")]
    with open_store(store_url) as store:
        assert store.head() == 2
        assert [r.author for r in store.log()] == ["alice", "andreas"]
        assert store.revision_policy(2).rule("clients_to_webservers").services == ("HTTP",)
        assert store.workspace_info("bob").state == "open"


def test_concurrent_submits_of_different_objects_both_land_in_order(
    store_url, two_workspaces, monkeypatch
):
    two_workspaces(
        [("rules", RULE)],
        [("groups", {"name": "printers", "prefixes": ["10.100.7.0/24"]})],
    )
    outcomes = _race(store_url, monkeypatch, "alice", "bob")
    assert outcomes == {"alice": 2, "bob": 3}
    with open_store(store_url) as store:
        assert [(r.id, r.parent, r.author) for r in store.log()] == [
            (3, 2, "bob"),
            (2, 1, "alice"),
            (1, None, "andreas"),
        ]
        merged = store.revision_policy(3)
        assert merged.rule("clients_to_webservers").sources == ("wifi_clients",)
        assert merged.group("printers").name == "printers"

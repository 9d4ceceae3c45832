"""Change notices (store/notices.py): a committed write of a change moves its generation and
wakes whoever waits on it; a write that fails, or a write of another change, does not."""

from __future__ import annotations

import asyncio
import threading

import pytest

from microseg.store.notices import ChangeNotices

ANSWER_S = 60.0  # a wait no working notice comes near


def test_a_write_from_another_thread_wakes_the_waiter():
    notices = ChangeNotices()

    async def wait() -> int:
        writer = threading.Timer(0.01, notices.written, args=(7,))
        writer.start()
        try:
            return await notices.wait(7, 0, ANSWER_S)
        finally:
            writer.join()

    assert asyncio.run(wait()) == 1


def test_a_write_between_reading_and_waiting_is_not_missed():
    notices = ChangeNotices()
    seen = notices.generation(7)
    notices.written(7)  # after the stream read the store, before it waits
    assert asyncio.run(notices.wait(7, seen, ANSWER_S)) == 1


def test_nothing_written_leaves_the_generation_as_it_was():
    notices = ChangeNotices()
    notices.written(8)  # another change
    assert asyncio.run(notices.wait(7, 0, 0.01)) == 0
    assert notices._waiting == {}  # a waiter that timed out is forgotten


@pytest.fixture
def change(tmp_path):
    from microseg.deploy import create_change
    from microseg.policyfile import load_policy
    from microseg.store import open_store
    from support import EXAMPLES

    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.import_policy(load_policy(EXAMPLES / "home-lab.yaml"), "andreas", "seed lab")
        yield store, create_change(store, "andreas").id


def test_the_store_notices_each_committed_write_of_a_change(change):
    from microseg.store.notices import CHANGE_NOTICES

    store, number = change
    before = CHANGE_NOTICES.generation(number)
    store.changes.log(number, "bob", "note", "looked at it")
    store.changes.approve(number, "bob", "", ("pending-approval",), "approved")
    assert CHANGE_NOTICES.generation(number) == before + 2


def test_a_write_that_fails_is_not_noticed(change):
    from microseg.store import NotFound
    from microseg.store.notices import CHANGE_NOTICES

    store, number = change
    before = CHANGE_NOTICES.generation(number)
    with pytest.raises(NotFound):
        store.changes.update_device(number, "no-such-switch", "bob", ["x"], state="loading")
    assert CHANGE_NOTICES.generation(number) == before

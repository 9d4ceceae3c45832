"""A change's event streams (the API's progress, the web page's device rows) follow a run in
this server as each step is written, without reading the store on a timer; a run in another
process is still followed by reading the store.

The tests play the runner: they move a change to `running` and write its steps through the
store, as deploy.run does, while a client reads the stream in a thread. The store-reading
intervals are made ten minutes long where only a push can deliver the step in time; a queue
read with a generous limit keeps a broken push from hanging the suite."""

from __future__ import annotations

import json
import queue
import threading

import pytest

from microseg.deploy import changes as change_control
from microseg.deploy.changes import runner_identity
from microseg.store.notices import CHANGE_NOTICES

NEVER_S = 600.0  # a store-reading interval no test waits out
ANSWER_S = 60.0  # how long a test waits for a step before calling it lost


def running(store, runner: str) -> tuple[int, str]:
    """A change of the seed lab, moved to `running` by `runner`; and its first device."""
    record = change_control.create_change(store, "andreas")
    store.changes.transition(
        record.id, ("pending-approval",), "running", "bob", "run 1", runner=runner
    )
    return record.id, record.devices[0].device


def follow(client, url: str) -> queue.Queue:
    """Read the event stream at `url` in a thread; (event, data) pairs arrive in the queue,
    then None when the stream ends."""
    arrived: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            with client.stream("GET", url) as stream:
                event = None
                for line in stream.iter_lines():
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        arrived.put((event, line.removeprefix("data: ")))
        finally:
            arrived.put(None)

    threading.Thread(target=read, daemon=True).start()
    return arrived


def next_event(arrived: queue.Queue, wanted) -> tuple[str, str]:
    """The next (event, data) for which wanted(event, data) holds; earlier ones are passed."""
    while True:
        try:
            item = arrived.get(timeout=ANSWER_S)
        except queue.Empty:
            pytest.fail("the stream did not send the step that was written")
        assert item is not None, "the stream ended before the step"
        if wanted(*item):
            return item


def log_message(message: str):
    return lambda event, data: event == "log" and json.loads(data)["message"] == message


@pytest.fixture
def pushed_only(monkeypatch):
    """Streams read the store only when a write of this process wakes them (in a test)."""
    monkeypatch.setattr(change_control, "POLL_ELSEWHERE_S", NEVER_S)
    monkeypatch.setattr(change_control, "RUN_HERE_CHECK_S", NEVER_S)


def test_a_run_in_this_server_pushes_each_step_to_the_progress_stream(seeded, pushed_only):
    change, device = running(seeded.store, runner_identity())
    arrived = follow(seeded.client("viewer"), f"/api/changes/{change}/progress")
    next_event(arrived, log_message("run 1"))  # the log so far
    seeded.store.changes.log(change, "bob", "device", "loading the configuration", device)
    next_event(arrived, log_message("loading the configuration"))
    seeded.store.changes.transition(change, ("running",), "succeeded", "bob", "1 device done")
    next_event(arrived, log_message("1 device done"))
    assert arrived.get(timeout=ANSWER_S) == ("state", '{"state": "succeeded"}')
    assert arrived.get(timeout=ANSWER_S) is None


def test_a_run_in_this_server_pushes_each_device_row_to_the_change_page(seeded, pushed_only):
    change, device = running(seeded.store, runner_identity())
    browser, _ = seeded.browser("viewer")
    arrived = follow(browser, f"/changes/{change}/events")
    next_event(arrived, lambda event, data: event == "device-0")
    seeded.store.changes.update_device(
        change, device, "bob", ["committing session microseg-1"], state="committing"
    )
    next_event(arrived, lambda event, data: event == "device-0" and "committing session" in data)
    seeded.store.changes.transition(change, ("running",), "succeeded", "bob", "1 device done")
    assert next_event(arrived, lambda event, data: event == "done") == ("done", "succeeded")


def test_a_run_in_another_process_is_followed_by_reading_the_store(seeded, monkeypatch):
    # Its writes wake nothing here: only reading the store finds them.
    monkeypatch.setattr(change_control, "POLL_ELSEWHERE_S", 0.05)
    monkeypatch.setattr(change_control, "RUN_HERE_CHECK_S", NEVER_S)
    monkeypatch.setattr(CHANGE_NOTICES, "written", lambda change: None)
    change, device = running(seeded.store, "elsewhere:4242:1")
    arrived = follow(seeded.client("viewer"), f"/api/changes/{change}/progress")
    next_event(arrived, log_message("run 1"))
    seeded.store.changes.log(change, "bob", "device", "loading the configuration", device)
    next_event(arrived, log_message("loading the configuration"))
    seeded.store.changes.transition(change, ("running",), "failed", "bob", "1 device failed")
    assert next_event(arrived, lambda event, data: event == "state") == (
        "state",
        '{"state": "failed"}',
    )

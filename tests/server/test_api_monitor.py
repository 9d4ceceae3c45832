"""Policy Monitor through the API, before anything is deployed, and the TLS listener."""

from __future__ import annotations


def test_monitor_before_any_deploy(seeded):
    viewer = seeded.client("viewer")
    rules = viewer.get("/api/monitor/rules", params={"since": "24h"})
    assert rules.status_code == 200
    assert rules.json()["rules"] == []
    assert viewer.get("/api/monitor/devices").json() == []
    assert seeded.client("editor").post("/api/monitor/poll").json() == []
    bad = viewer.get("/api/monitor/rules", params={"since": "2x"})
    assert bad.status_code == 400
    assert bad.json()["detail"].startswith("--since '2x': expected a duration like 30m, 24h")
    huge = viewer.get("/api/monitor/rules", params={"since": "999999999999d"})
    assert huge.status_code == 400 and "calendar" in huge.json()["detail"]


def test_a_counter_segment_gone_or_unreadable_is_never_a_500(seeded, flow_store, monkeypatch):
    from datetime import UTC, datetime

    from microseg.monitor import CounterRow, CounterSeries

    series = CounterSeries(flow_store)
    now = datetime.now(UTC)
    for packets in (100, 110, 130):
        row = CounterRow(now, "leaf1", 1, "web", "rule10", "rule10", "forward", packets, None)
        series.write([row])
    listed = CounterSeries.segments
    removed: list[bool] = []

    def segments(self):  # another process prunes one between listing and reading, once
        found = listed(self)
        if not removed:
            found[1].unlink()
            removed.append(True)
        return found

    monkeypatch.setattr(CounterSeries, "segments", segments)
    viewer = seeded.client("viewer")
    assert viewer.get("/api/monitor/rules").status_code == 200
    assert removed
    path = series.segments()[0]
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    data[4 : len(data) - footer] = b"\xff" * (len(data) - footer - 4)
    path.write_bytes(bytes(data))
    broken = viewer.get("/api/monitor/rules")
    assert broken.status_code == 503
    assert broken.json()["detail"].startswith(
        "the server's flow store: cannot read the counter series: "
    )
    assert str(flow_store) not in broken.text


def test_a_poll_into_a_flow_store_that_cannot_hold_counters_is_a_503_before_any_device(
    seeded, flow_store
):
    flow_store.write_text("a file where the flow store should be\n")
    answer = seeded.client("editor").post("/api/monitor/poll")
    assert answer.status_code == 503
    assert answer.json()["detail"] == "the server's flow store: Not a directory"

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

"""The sessions route keeps the table it read, and reads again when the flow store changed."""

from __future__ import annotations

import pytest

from support import EXAMPLES


@pytest.fixture
def flow_store(tmp_path):
    path = tmp_path / "sessions.csv"
    lines = (EXAMPLES / "seed-lab-sessions.csv").read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]))  # the header and two sessions
    return path


def test_new_sessions_are_seen_by_the_next_request(server, flow_store):
    viewer = server.client("viewer")
    assert viewer.get("/api/sessions").json()["total"] == 2
    assert viewer.get("/api/sessions").json()["total"] == 2
    flow_store.write_text((EXAMPLES / "seed-lab-sessions.csv").read_text())
    assert viewer.get("/api/sessions").json()["total"] > 2


def test_since_takes_a_window_or_a_time_as_the_cli_does(server, flow_store):
    # ?since= took only an ISO time, where `sessions list --since` and /api/monitor/rules
    # also take 30m/24h/7d: one reading of a time everywhere (builder.times.parse_moment).
    viewer = server.client("viewer")
    assert (
        viewer.get("/api/sessions", params={"since": "2000-01-01T00:00:00Z"}).json()["total"] == 2
    )
    assert viewer.get("/api/sessions", params={"since": "36500d"}).json()["total"] == 2
    assert viewer.get("/api/sessions", params={"since": "1m"}).json()["total"] == 0
    assert viewer.get("/api/sessions", params={"since": "2999-01-01"}).json()["total"] == 0
    bad = viewer.get("/api/sessions", params={"since": "2x"})
    assert bad.status_code == 400
    assert "since '2x'" in bad.json()["detail"]

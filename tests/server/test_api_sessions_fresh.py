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

"""Change control through the API against the seed's switch and vZTX eAPI test doubles:
create, four-eyes approval by a second user, a background run followed as server-sent
events, rollback, drift; and the roles each step needs."""

from __future__ import annotations

import json
import sys

import pytest

from support import EXAMPLES, ROOT

sys.path.insert(0, str(ROOT / "tests" / "targets"))
sys.path.insert(0, str(ROOT / "tests" / "deploy"))

from deploy_lab import DNS_NTP, SWITCH, owned, pointed_at, with_implicit_defaults
from seed_doubles import seed_switch, seed_vztx


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROSEG_DEVICE_USERNAME", "admin")
    monkeypatch.setenv("MICROSEG_DEVICE_PASSWORD", "secret")
    monkeypatch.delenv("MICROSEG_CREDENTIALS_FILE", raising=False)
    with seed_switch() as switch, seed_vztx() as vztx:
        doubles = {SWITCH: switch, "andreas-ztx1": vztx}
        yield (lambda example: pointed_at(example, tmp_path, doubles)), switch


def _events(stream_text: str) -> list[tuple[str, dict]]:
    events = []
    for block in stream_text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_a_change_from_creation_to_a_deployed_switch(server, lab):
    from microseg.policyfile import load_policy

    policy_file, switch = lab
    server.store.import_policy(load_policy(policy_file("home-lab-dns-ntp.yaml")), "andreas", "dns")
    admin, editor, approver = (server.client(role) for role in ("admin", "editor", "approver"))
    assert admin.put("/api/settings/four-eyes", json={"on": True}).json()["on"] is True
    created = editor.post("/api/changes", json={"description": "DNS and NTP"})
    assert created.status_code == 201, created.text
    change = created.json()["id"]
    assert created.json()["author"] == "editor"
    assert editor.post(f"/api/changes/{change}/approve", json={}).status_code == 403  # role
    approved = approver.post(f"/api/changes/{change}/approve", json={"comment": "reviewed"})
    assert approved.json()["state"] == "approved"
    started = approver.post(f"/api/changes/{change}/run", json={})
    assert started.status_code == 202, started.text
    with server.client("viewer").stream("GET", f"/api/changes/{change}/progress") as stream:
        text = "".join(stream.iter_text())
    events = _events(text)
    assert events[-1] == ("state", {"state": "succeeded"})
    assert any(e["device"] == SWITCH for kind, e in events if kind == "log")
    assert owned(switch) == with_implicit_defaults(DNS_NTP)
    detail = server.client("viewer").get(f"/api/changes/{change}").json()
    assert [a["approver"] for a in detail["approvals"]] == ["approver"]
    drift = server.client("viewer").get("/api/drift").json()
    assert drift["drift"] is False
    first = approver.post(f"/api/changes/{change}/rollback")
    assert first.status_code == 400 and "was the first deploy" in first.json()["detail"]
    server.store.import_policy(load_policy(policy_file("home-lab.yaml")), "andreas", "web app")
    second = editor.post("/api/changes", json={}).json()["id"]
    approver.post(f"/api/changes/{second}/approve", json={})
    approver.post(f"/api/changes/{second}/run", json={})
    with server.client("viewer").stream("GET", f"/api/changes/{second}/progress") as stream:
        assert _events("".join(stream.iter_text()))[-1] == ("state", {"state": "succeeded"})
    back = approver.post(f"/api/changes/{second}/rollback")
    assert back.status_code == 201, back.text
    assert (back.json()["rollback_of"], back.json()["revision"]) == (second, 1)
    trail = admin.get("/api/audit").json()
    actions = [
        e["action"] for e in reversed(trail) if e["action"].startswith(("change", "settings"))
    ]
    assert actions == [
        "settings.four_eyes",
        *("change.create", "change.approve", "change.run") * 2,
        "change.rollback",
    ]


def test_four_eyes_refuses_the_authors_own_approval(server, lab):
    from microseg.policyfile import load_policy

    policy_file, _ = lab
    server.store.import_policy(load_policy(policy_file("home-lab-dns-ntp.yaml")), "andreas", "dns")
    server.client("admin").put("/api/settings/four-eyes", json={"on": True})
    approver = server.client("approver")
    change = approver.post("/api/changes", json={}).json()["id"]
    refused = approver.post(f"/api/changes/{change}/approve", json={})
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:microseg:problem:four-eyes"


def test_running_a_change_that_is_not_approved_is_a_conflict(server, lab):
    from microseg.policyfile import load_policy

    policy_file, _ = lab
    server.store.import_policy(load_policy(policy_file("home-lab-dns-ntp.yaml")), "andreas", "dns")
    change = server.client("editor").post("/api/changes", json={}).json()["id"]
    answer = server.client("approver").post(f"/api/changes/{change}/run", json={})
    assert answer.status_code == 409
    assert "pending-approval" in answer.json()["detail"]


def _many_changes(store, count: int) -> None:
    """`count` changes of revision 1 (no devices: only the list is looked at)."""
    for number in range(count):
        store.changes.create(1, None, "andreas", f"change {number + 1}", [])


def test_the_change_list_is_paged_not_every_change_at_once(seeded):
    _many_changes(seeded.store, 130)
    viewer = seeded.client("viewer")
    first = viewer.get("/api/changes")
    assert first.status_code == 200
    assert [c["id"] for c in first.json()] == list(range(130, 30, -1))  # 100 by default
    last = viewer.get("/api/changes", params={"limit": 50, "offset": 100}).json()
    assert [c["id"] for c in last] == list(range(30, 0, -1))
    assert viewer.get("/api/changes", params={"offset": 130}).json() == []
    for bad in ({"limit": 0}, {"limit": 10_001}, {"offset": -1}, {"limit": "x"}):
        assert viewer.get("/api/changes", params=bad).status_code == 422, bad


def test_the_revision_log_is_paged_like_the_change_list(seeded):
    from microseg.policyfile import load_policy

    seed, other = (
        load_policy(EXAMPLES / name) for name in ("home-lab.yaml", "home-lab-dns-ntp.yaml")
    )
    for number in range(2, 6):  # revisions 2..5, alternating policies: each one a change
        seeded.store.import_policy(seed if number % 2 else other, "andreas", f"rev {number}")
    viewer = seeded.client("viewer")
    assert [r["id"] for r in viewer.get("/api/revisions").json()] == [5, 4, 3, 2, 1]
    page = viewer.get("/api/revisions", params={"limit": 2, "offset": 2}).json()
    assert [r["id"] for r in page] == [3, 2]
    assert viewer.get("/api/revisions", params={"offset": 5}).json() == []
    for bad in ({"limit": 0}, {"limit": 10_001}, {"offset": -1}, {"limit": "x"}):
        assert viewer.get("/api/revisions", params=bad).status_code == 422, bad
    # Same parameters, same defaults (limit 100) as /api/changes, in the OpenAPI document.
    paths = seeded.app.openapi()["paths"]
    parameters = {
        path: {p["name"]: p["schema"] for p in paths[path]["get"]["parameters"]}
        for path in ("/api/revisions", "/api/changes")
    }
    assert parameters["/api/revisions"] == parameters["/api/changes"]
    assert parameters["/api/revisions"]["limit"]["default"] == 100

"""Compile, diff, check, lint and what-if through the API: the same answers as the CLI."""

from __future__ import annotations

import json

import pytest

from support import EXAMPLES

SWITCH = "andreasm-720xp-home"


@pytest.fixture
def flow_store():
    return EXAMPLES / "seed-lab-sessions.csv"


@pytest.fixture
def two_revisions(seeded):
    from microseg.policyfile import load_policy

    seeded.store.import_policy(load_policy(EXAMPLES / "home-lab-dns-ntp.yaml"), "a", "dns only")
    return seeded


def test_compile_gives_the_seed_switch_configuration(seeded, run_cli, monkeypatch):
    answer = seeded.client("viewer").get(
        "/api/compile", params={"policy": "rev:1", "device": SWITCH}
    )
    assert answer.status_code == 200, answer.text
    monkeypatch.setenv("MICROSEG_DATABASE_URL", seeded.store.url)
    cli = run_cli("compile", "rev:1", "-d", SWITCH, "--json")
    assert answer.json() == json.loads(cli.stdout)


def test_the_api_never_reads_a_file_a_client_names(seeded):
    answer = seeded.client("viewer").get(
        "/api/compile", params={"policy": str(EXAMPLES / "home-lab.yaml"), "device": SWITCH}
    )
    assert answer.status_code == 400
    assert "the server does not read files" in answer.json()["detail"]


def test_diff_between_revisions_is_the_cli_diff(two_revisions):
    answer = two_revisions.client("viewer").get(
        "/api/diff", params={"old": "rev:2", "new": "rev:1"}
    )
    report = answer.json()
    assert report["summary"] == {"devices_changed": 1, "lines_added": 121, "lines_removed": 10}
    assert [d["device"] for d in report["devices"] if d["added"] or d["removed"]] == [SWITCH]


def test_check_answers_the_seeds_ssh_question(seeded):
    answer = seeded.client("viewer").get(
        "/api/check",
        params={
            "policy": "rev:1",
            "from": "10.100.5.10",
            "to": "10.100.99.50",
            "proto": "tcp",
            "port": 22,
        },
    )
    result = answer.json()
    assert (result["connects"], result["result"]) == (False, "dropped")
    assert result["request"]["rule"] == "drop_all_else_web-app"


def test_check_of_groups_and_bad_input(seeded):
    viewer = seeded.client("viewer")
    groups = viewer.get(
        "/api/check",
        params={"policy": "rev:1", "from": "wifi_clients", "to": "web-appserver1", "port": 80},
    ).json()
    assert groups["result"] == "partly: of 2 address class pairs, 1 connects, 1 dropped"
    bad = viewer.get(
        "/api/check", params={"policy": "rev:1", "from": "nosuchgroup", "to": "10.0.0.1", "port": 1}
    )
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
    missing = viewer.get(
        "/api/check", params={"policy": "rev:9", "from": "10.0.0.1", "to": "10.0.0.2"}
    )
    assert missing.status_code == 404


def test_lint_reports_like_the_cli(seeded, run_cli, monkeypatch):
    answer = seeded.client("viewer").get(
        "/api/lint", params={"policy": "rev:1", "ignore": ["unused"]}
    )
    monkeypatch.setenv("MICROSEG_DATABASE_URL", seeded.store.url)
    cli = run_cli("lint", "rev:1", "--ignore", "unused", "--json")
    assert answer.json() == json.loads(cli.stdout)


def test_whatif_replays_the_flow_store(two_revisions):
    report = (
        two_revisions.client("viewer")
        .get("/api/whatif", params={"base": "rev:2", "candidate": "rev:1"})
        .json()
    )
    assert report["sessions"] > 0
    assert report["newly_blocked"]["sessions"] > 0


def test_sessions_are_filtered_and_paged(seeded):
    viewer = seeded.client("viewer")
    everything = viewer.get("/api/sessions", params={"limit": 1000}).json()
    assert everything["total"] == len(everything["sessions"]) > 3
    dns = viewer.get("/api/sessions", params={"proto": "udp", "port": 53}).json()
    assert dns["total"] >= 1 and {s["dport"] for s in dns["sessions"]} == {53}
    first, second = (
        viewer.get("/api/sessions", params={"limit": 2, "offset": o}).json() for o in (0, 2)
    )
    assert first["sessions"] + second["sessions"] == everything["sessions"][:4]
    past = viewer.get("/api/sessions", params={"offset": 10**6}).json()
    assert (past["total"], past["sessions"]) == (everything["total"], [])


def test_recommend_reads_and_an_editor_writes_into_a_workspace(server):
    from microseg.policyfile import load_policy

    server.store.import_policy(load_policy(EXAMPLES / "home-lab-monitor.yaml"), "a", "monitor")
    query = {
        "policy": "rev:1",
        "monitor_rule": "web-appserver-discovery",
        "categories": ["clients", "infrastructure"],
    }
    proposal = server.client("viewer").get("/api/recommend", params=query).json()
    assert proposal["rules"], proposal
    refused = server.client("viewer").post("/api/workspaces/builder-1/recommend", json=query)
    assert refused.status_code == 403
    written = server.client("editor").post("/api/workspaces/builder-1/recommend", json=query)
    assert written.status_code == 200, written.text
    objects = written.json()["workspace"]["objects"]
    assert len(objects) == 10
    diff = server.client("viewer").get("/api/workspaces/builder-1/diff").json()
    assert len(diff["changes"]) == len(objects)
    info = server.client("viewer").get("/api/workspaces/builder-1").json()["workspace"]
    assert (info["author"], info["base"]) == ("editor", 1)


def test_a_revision_is_compiled_and_its_evaluators_built_once(seeded, monkeypatch):
    from microseg.server import cache

    built: list[str] = []
    real = cache.CompiledDevice

    def counting(intent):
        built.append(intent.device)
        return real(intent)

    monkeypatch.setattr(cache, "CompiledDevice", counting)
    viewer = seeded.client("viewer")
    query = {"policy": "rev:1", "from": "10.100.5.10", "to": "10.100.99.50", "port": 22}
    answers = [viewer.get("/api/check", params=query).json()["result"] for _ in range(3)]
    assert answers == ["dropped"] * 3
    assert built == [SWITCH]  # the revision's one switch, once


def test_recommend_refuses_a_min_share_below_the_floor_unless_forced(server):
    from microseg.policyfile import load_policy

    server.store.import_policy(load_policy(EXAMPLES / "home-lab-monitor.yaml"), "a", "monitor")
    query = {"policy": "rev:1", "monitor_rule": "web-appserver-discovery", "min_share": 0.01}
    viewer = server.client("viewer")
    refused = viewer.get("/api/recommend", params=query)
    assert refused.status_code == 400, refused.text
    assert "below the floor of 0.5" in refused.text and "force_min_share" in refused.text
    written = server.client("editor").post("/api/workspaces/wide/recommend", json=query)
    assert written.status_code == 400 and "below the floor" in written.text
    assert server.client("viewer").get("/api/workspaces/wide").status_code == 404
    forced = viewer.get("/api/recommend", params={**query, "force_min_share": True})
    assert forced.status_code == 200, forced.text
    zero = viewer.get("/api/recommend", params={**query, "min_share": 0})
    assert zero.status_code in (400, 422), zero.text
    assert "min_share" in zero.text and "--min-share" not in zero.text
    widened = forced.json()["widened"]
    assert widened == [
        {"rule": r["name"], **w} for r in forced.json()["rules"] for w in r["widened"]
    ]
    assert {"group": "DNS_NTP_servers", "unseen_addresses": 1} in [
        {"group": w["group"], "unseen_addresses": w["unseen_addresses"]} for w in widened
    ]


def test_check_takes_a_port_by_its_eos_name_as_the_cli_does(seeded):
    viewer = seeded.client("viewer")
    query = {"policy": "rev:1", "from": "10.100.5.10", "to": "10.100.99.50"}
    by_name = viewer.get("/api/check", params={**query, "port": "ssh"})
    assert by_name.status_code == 200, by_name.text
    assert by_name.json() == viewer.get("/api/check", params={**query, "port": 22}).json()
    for bad in ("99999", "-1", "sshh"):
        refused = viewer.get("/api/check", params={**query, "port": bad})
        assert refused.status_code == 400, (bad, refused.text)
        assert "0-65535" in refused.json()["detail"]

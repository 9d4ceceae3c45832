"""A viewer never learns where the server's flow store lives: errors reading it name "the
server's flow store" (503, nothing the client can change), the server's log keeps the path,
and the pages say "the server's flow store" where they showed its path."""

from __future__ import annotations

import logging

import pytest

from support import EXAMPLES

SWITCH = "andreasm-720xp-home"
READS = [
    ("/api/whatif", {"base": "rev:1", "candidate": "rev:2"}),
    ("/api/recommend", {"policy": "rev:1"}),
    ("/api/sessions", {}),
]
PAGES = ["/builder", "/workspaces/w/whatif", "/map"]


@pytest.fixture(params=["not-a-session-file", "csv-without-session-fields"])
def flow_store(request, tmp_path):
    """A flow store the server cannot read (replaced after the server checked it at start)."""
    if request.param == "not-a-session-file":
        broken = tmp_path / "private" / "flows.txt"
        broken.parent.mkdir()
        broken.write_text("not sessions\n")
    else:
        broken = tmp_path / "private" / "flows.csv"
        broken.parent.mkdir()
        broken.write_text("a,b\n1,2\n")
    return broken


@pytest.fixture
def two_revisions(seeded):
    from microseg.policyfile import load_policy

    seeded.store.import_policy(load_policy(EXAMPLES / "home-lab-dns-ntp.yaml"), "a", "dns only")
    seeded.store.workspace_create("w", author="a")
    return seeded


def test_an_unreadable_flow_store_is_a_503_naming_no_server_path(two_revisions, flow_store, caplog):
    viewer = two_revisions.client("viewer")
    for route, params in READS:
        with caplog.at_level(logging.WARNING, logger="microseg.server"):
            answer = viewer.get(route, params=params)
        assert answer.status_code == 503, (route, answer.text)
        problem = answer.json()
        assert problem["detail"].startswith("the server's flow store: "), problem
        assert str(flow_store.parent) not in answer.text and "/tmp" not in answer.text
        # The operator still finds the path in the server's log.
        assert str(flow_store) in caplog.text
        caplog.clear()


def test_pages_reading_an_unreadable_flow_store_name_no_server_path(two_revisions, flow_store):
    browser, _ = two_revisions.browser("viewer")
    for page in PAGES:
        answer = browser.get(page)
        assert answer.status_code == 503, (page, answer.text[:300])
        assert "the server&#39;s flow store" in answer.text or "the server's flow store" in (
            answer.text
        )
        assert str(flow_store.parent) not in answer.text, page


@pytest.fixture
def missing_store(tmp_path):
    return tmp_path / "private" / "not-yet-collected"


def test_a_flow_store_not_collected_yet_is_no_sessions_never_the_default_store(
    two_revisions, tmp_path, monkeypatch
):
    # $MICROSEG_FLOW_STORE (the CLI's default) holds sessions; the server's own store, named
    # at start, does not exist yet: the server reads nothing, not the default store.
    monkeypatch.setenv("MICROSEG_FLOW_STORE", str(EXAMPLES / "seed-lab-sessions.csv"))
    two_revisions.app.state.context.flow_store = tmp_path / "private" / "not-yet-collected"
    viewer = two_revisions.client("viewer")
    assert viewer.get("/api/sessions").json()["total"] == 0
    whatif = viewer.get("/api/whatif", params={"base": "rev:1", "candidate": "rev:2"})
    assert (whatif.status_code, whatif.json()["sessions"]) == (200, 0), whatif.text
    assert viewer.get("/api/recommend", params={"policy": "rev:1"}).json()["scoped_sessions"] == 0
    bad_filter = viewer.get("/api/sessions", params={"src": "10.0.0.300"})
    assert bad_filter.status_code == 400, bad_filter.text  # still checked with nothing collected
    browser, _ = two_revisions.browser("viewer")
    page = browser.get("/workspaces/w/whatif")
    assert page.status_code == 200
    assert "No sessions collected in the server" in page.text
    assert "private" not in page.text

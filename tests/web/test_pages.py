"""The UI's pages through the app's own client (no browser): sign-in, roles, CSRF, escaping,
validation next to the field, and the change's event stream."""

from __future__ import annotations

import re

import pytest

from support import EXAMPLES

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def client(tmp_path):
    testclient = pytest.importorskip("fastapi.testclient")
    from microseg.policyfile import load_policy
    from microseg.server import accounts
    from microseg.server.app import create_app

    app = create_app(f"sqlite:///{tmp_path / 'microseg.db'}", flow_store=tmp_path / "flows")
    store = app.state.context.store
    for name, role in (("alice", "editor"), ("vera", "viewer")):
        accounts.add_user(store, name, role, f"{name}-password-1")
    store.import_policy(load_policy(EXAMPLES / "home-lab.yaml"), "andreas", "seed")
    store.workspace_create("w", author="alice")
    with testclient.TestClient(app) as client:
        client.store = store
        yield client


def sign_in(client, name: str) -> str:
    """Sign in; the CSRF token of the session (as the pages carry it)."""
    answer = client.post(
        "/login", data={"username": name, "password": f"{name}-password-1", "next": "/"}
    )
    assert answer.status_code == 200, answer.text
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', answer.text)[1]


def test_a_page_without_a_session_sends_the_browser_to_the_login_form(client):
    answer = client.get("/changes", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fchanges"
    htmx = client.get("/workspaces/w/build", headers={"HX-Request": "true"})
    assert (htmx.status_code, htmx.headers["HX-Redirect"]) == (401, "/login")


def test_every_page_and_action_needs_a_session(client):
    from fastapi.routing import APIRoute

    from microseg.server.web import routes

    checked = 0
    every = [r for module in routes.AREAS for r in module.router.routes]
    for route in every:
        if not isinstance(route, APIRoute) or route.path == "/login":
            continue
        path = re.sub(r"\{[^}]+\}", "1", route.path)
        for method in sorted(route.methods - {"HEAD"}):
            answer = client.request(method, path, follow_redirects=False)
            assert answer.status_code == 303, (method, route.path, answer.status_code)
            assert answer.headers["location"].startswith("/login?next="), (method, route.path)
            checked += 1
    assert checked >= 30


def test_a_wrong_password_is_refused_on_the_form(client):
    answer = client.post("/login", data={"username": "alice", "password": "nope-nope-nope"})
    assert answer.status_code == 401
    assert "wrong user name or password" in answer.text


def test_an_object_named_like_a_script_is_shown_as_text(client):
    client.store.workspace_set("w", "categories", {"name": HOSTILE})
    sign_in(client, "alice")
    for path in ("/policy?section=categories&ws=w", "/workspaces/w", "/workspaces/w/edit/groups"):
        html = client.get(path).text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        assert HOSTILE not in html, path


def test_a_write_without_the_csrf_token_is_refused_and_changes_nothing(client):
    token = sign_in(client, "alice")
    group = {"name": "laptop", "prefixes": "172.18.6.138/32"}
    refused = client.post("/workspaces/w/objects/groups", data=group)
    assert refused.status_code == 403
    assert "CSRF" in refused.text
    assert client.store.workspace_diff("w") == []
    accepted = client.post("/workspaces/w/objects/groups", data={**group, "csrf_token": token})
    assert accepted.status_code == 200  # followed to the Policy Manager
    assert [c.name for c in client.store.workspace_diff("w")] == ["laptop"]


def test_a_viewer_cannot_edit_a_workspace(client):
    token = sign_in(client, "vera")
    answer = client.post(
        "/workspaces/w/objects/groups",
        data={"name": "laptop", "prefixes": "172.18.6.138/32", "csrf_token": token},
    )
    assert answer.status_code == 403
    assert "needs the editor role" in answer.text
    assert client.store.workspace_diff("w") == []


def test_an_editor_cannot_change_devices_through_the_ui(client):
    """Devices say where microseg uses the device credentials: admin only, as in the API,
    through the device form, through the YAML editor of another section, and on delete."""
    token = sign_in(client, "alice")
    device = "devices:\n  - name: evil\n    management_address: 192.0.2.9\n"
    for path, data in (
        ("/workspaces/w/objects/devices", {"yaml": device}),
        ("/workspaces/w/objects/categories", {"yaml": device}),
        ("/workspaces/w/objects/devices/delete", {"name": "andreasm-720xp-home"}),
    ):
        answer = client.post(path, data={**data, "csrf_token": token})
        assert answer.status_code == 403, (path, answer.status_code)
        assert "needs the admin role" in answer.text, path
    assert client.store.workspace_diff("w") == []


def test_a_bad_prefix_is_reported_next_to_its_field_and_nothing_is_written(client):
    token = sign_in(client, "alice")
    answer = client.post(
        "/workspaces/w/objects/groups",
        data={"name": "laptop", "prefixes": "172.18.6.138/24", "csrf_token": token},
    )
    assert answer.status_code == 422
    field = re.search(r'<div class="field invalid">(.*?)</div>\s*</div>', answer.text, re.S)
    assert field is not None and 'name="prefixes"' in field[1]
    assert "host bits set (did you mean 172.18.6.0/24?)" in field[1]
    assert client.store.workspace_diff("w") == []


def test_an_empty_source_list_is_refused_not_read_as_any(client):
    token = sign_in(client, "alice")
    answer = client.post(
        "/workspaces/w/objects/rules",
        data={"name": "r", "destinations": "any", "services": "any", "direction": "bidirectional",
              "decap_type": "allow-all", "action": "forward", "csrf_token": token},
    )  # fmt: skip
    assert answer.status_code == 422
    assert "write `any` to match everything" in answer.text
    assert client.store.workspace_diff("w") == []


def test_the_event_stream_of_a_settled_change_sends_each_device_then_done(client):
    from microseg.deploy import create_change

    change = create_change(client.store, "alice", None)
    sign_in(client, "alice")
    body = client.get(f"/changes/{change.id}/events").text
    events = re.findall(r"^event: (\S+)$", body, re.MULTILINE)
    assert events == [f"device-{n}" for n in range(len(change.devices))] + ["done"]
    assert "data: pending-approval" in body


def test_an_unreadable_counter_segment_is_a_page_saying_so_not_a_500(client, tmp_path):
    from datetime import UTC, datetime

    from microseg.monitor import CounterRow, CounterSeries

    row = CounterRow(datetime.now(UTC), "leaf1", 1, "web", "r", "r", "forward", 5, None)
    path = CounterSeries(tmp_path / "flows").write([row])
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    data[4 : len(data) - footer] = b"\xff" * (len(data) - footer - 4)
    path.write_bytes(bytes(data))
    sign_in(client, "vera")
    answer = client.get("/monitor")
    assert answer.status_code == 503
    assert (
        "the server&#39;s flow store: cannot read the counter series: don&#39;t know what type</div>"
        in answer.text
    )
    assert str(tmp_path) not in answer.text


@pytest.mark.parametrize(
    "target", ["/\\evil.example", "/\t/evil.example", "/\n/evil.example", "//evil.example",
               "https://evil.example/", "/\\/evil.example"],
)  # fmt: skip
def test_signing_in_never_sends_the_browser_to_another_site(client, target):
    """Browsers read `\\` as `/` and drop tabs and newlines (WHATWG URL Standard)."""
    answer = client.post(
        "/login",
        data={"username": "vera", "password": "vera-password-1", "next": target},
        follow_redirects=False,
    )
    assert (answer.status_code, answer.headers["location"]) == (303, "/")
    form = client.get("/login", params={"next": target})
    assert 'name="next" value="/"' in form.text


@pytest.mark.parametrize(
    ("target", "location"),
    [("/changes?x=1", "/changes?x=1"), ("/workspaces/a b", "/workspaces/a%20b")],
)
def test_signing_in_goes_back_to_the_page_asked_for(client, target, location):
    answer = client.post(
        "/login",
        data={"username": "vera", "password": "vera-password-1", "next": target},
        follow_redirects=False,
    )
    assert answer.headers["location"] == location


def _rows(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<td class="num"><a href="/changes/(\d+)">', page)]


def test_the_changes_page_shows_a_page_of_changes_with_links_to_the_others(client):
    from microseg.server.web.routes.changes import CHANGES_PER_PAGE

    for number in range(2 * CHANGES_PER_PAGE + 7):
        client.store.changes.create(1, None, "alice", f"change {number + 1}", [])
    total = 2 * CHANGES_PER_PAGE + 7
    sign_in(client, "vera")
    first = client.get("/changes").text
    assert _rows(first) == list(range(total, total - CHANGES_PER_PAGE, -1))
    assert f"changes 1–{CHANGES_PER_PAGE} of {total}" in first
    assert f'href="/changes?offset={CHANGES_PER_PAGE}"' in first and "newer" not in first
    last = client.get("/changes", params={"offset": 2 * CHANGES_PER_PAGE}).text
    assert _rows(last) == list(range(7, 0, -1))
    assert f'href="/changes?offset={CHANGES_PER_PAGE}"' in last and "older" not in last
    beyond = client.get("/changes", params={"offset": total + 5})
    assert beyond.status_code == 200 and _rows(beyond.text) == []
    assert 'href="/changes">newest</a>' in beyond.text


@pytest.mark.parametrize("offset", ["x", "-1", "1.5", "9" * 40])
def test_a_bad_changes_page_offset_is_a_page_saying_so(client, offset):
    sign_in(client, "vera")
    answer = client.get("/changes", params={"offset": offset})
    assert answer.status_code == 400
    assert "offset" in answer.text and "Traceback" not in answer.text


def test_the_dashboard_reads_only_the_newest_changes(client, monkeypatch):
    from microseg.store.changes import ChangeTable

    for number in range(12):
        client.store.changes.create(1, None, "alice", f"change {number + 1}", [])
    asked = []
    listed = ChangeTable.list

    def spy(self, limit=None, offset=0):
        asked.append(limit)
        return listed(self, limit, offset)

    monkeypatch.setattr(ChangeTable, "list", spy)
    sign_in(client, "vera")  # (which shows the dashboard)
    asked.clear()
    page = client.get("/").text
    assert asked == [8] and "/changes/12" in page and '/changes/4"' not in page


def test_the_workspaces_page_shows_a_page_of_workspaces_with_links_to_the_others(client):
    from microseg.server.web.routes.workspaces import WORKSPACES_PER_PAGE

    # the fixture's open workspace `w`, and many submitted or abandoned ones before it
    names = [f"old-{number:04d}" for number in range(WORKSPACES_PER_PAGE + 3)]
    for name in names:
        client.store.workspace_create(name, author="alice")
        client.store.workspace_abandon(name)
    sign_in(client, "vera")
    listed = re.compile(r'<td><a href="/workspaces/([^"]+)">')
    first = client.get("/workspaces").text
    assert listed.findall(first) == names[:WORKSPACES_PER_PAGE]  # by name, as before
    assert f'href="/workspaces?offset={WORKSPACES_PER_PAGE}">next →</a>' in first
    total = len(names) + 1
    assert f"workspaces 1–{WORKSPACES_PER_PAGE} of {total}" in first
    second = client.get("/workspaces", params={"offset": WORKSPACES_PER_PAGE}).text
    assert listed.findall(second) == [*names[WORKSPACES_PER_PAGE:], "w"]
    assert 'href="/workspaces">← previous</a>' in second and "next →" not in second
    assert client.get("/workspaces", params={"offset": "x"}).status_code == 400

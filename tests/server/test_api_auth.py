"""Logging in, sessions with CSRF, API tokens, roles, rate limiting, the audit trail."""

from __future__ import annotations

from server_kit import PASSWORD


def test_a_request_without_credentials_gets_a_problem_document_saying_how_to_authenticate(server):
    answer = server.client().get("/api/revisions")
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["www-authenticate"] == 'Bearer realm="microseg"'
    problem = answer.json()
    assert problem["status"] == 401
    assert problem["instance"] == "/api/revisions"
    assert "Bearer" in problem["detail"]


def test_an_api_token_reads_and_a_wrong_or_revoked_one_is_refused(seeded):
    viewer = seeded.client("viewer")
    assert [r["id"] for r in viewer.get("/api/revisions").json()] == [1]
    wrong = seeded.client()
    wrong.headers["Authorization"] = "Bearer mst_not-a-token"
    assert wrong.get("/api/revisions").status_code == 401
    created = viewer.post("/api/tokens", json={"name": "script"})
    assert created.status_code == 201
    token = created.json()["token"]
    script = seeded.client()
    script.headers["Authorization"] = f"Bearer {token}"
    assert script.get("/api/revisions").status_code == 200
    assert viewer.delete(f"/api/tokens/{created.json()['id']}").status_code == 200
    assert script.get("/api/revisions").status_code == 401


def test_tokens_are_stored_hashed_and_listed_without_the_token(server):
    created = server.client("editor").post("/api/tokens", json={"name": "ci"}).json()
    listed = server.client("editor").get("/api/tokens").json()
    assert created["token"] not in str(listed)
    from sqlalchemy import text

    with server.store._engine.connect() as connection:
        stored = " ".join(
            row[0] for row in connection.execute(text("SELECT token_hash FROM api_tokens"))
        )
    assert created["token"] not in stored


def test_a_viewer_cannot_revoke_someone_elses_token(server):
    admin_tokens = server.client("admin").get("/api/tokens", params={"user": "admin"}).json()
    answer = server.client("viewer").delete(f"/api/tokens/{admin_tokens[0]['id']}")
    assert answer.status_code == 404


def test_login_sets_an_httponly_strict_cookie_and_writes_need_the_csrf_token(server):
    browser, csrf = server.browser("editor")
    cookie = browser.cookies.jar
    assert [c.name for c in cookie] == ["microseg_session"]
    login = browser.post("/api/auth/login", json={"username": "editor", "password": PASSWORD})
    set_cookie = login.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    assert browser.get("/api/auth/whoami").json()["user"] == "editor"
    csrf = login.json()["csrf_token"]
    refused = browser.post("/api/tokens", json={"name": "x"})
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    wrong = browser.post("/api/tokens", json={"name": "x"}, headers={"X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403
    ok = browser.post("/api/tokens", json={"name": "x"}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201


def test_logout_ends_the_session_on_the_server(server):
    browser, csrf = server.browser("viewer")
    stolen = dict(browser.cookies)
    assert browser.post("/api/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    replay = server.client()
    replay.cookies.update(stolen)
    assert replay.get("/api/revisions").status_code == 401


def test_a_session_expires(server):
    browser, _ = server.browser("viewer")
    assert browser.get("/api/revisions").status_code == 200
    server.clock.advance(13 * 3600)
    assert browser.get("/api/revisions").status_code == 401


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(server):
    client = server.client()
    wrong = client.post("/api/auth/login", json={"username": "viewer", "password": "nope"})
    unknown = client.post("/api/auth/login", json={"username": "nobody", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]


def test_login_is_rate_limited_per_user_even_with_the_right_password(server):
    client = server.client()
    for _ in range(5):
        assert (
            client.post("/api/auth/login", json={"username": "admin", "password": "x"}).status_code
            == 401
        )
    blocked = client.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) >= 1
    server.clock.advance(61)
    assert (
        client.post("/api/auth/login", json={"username": "admin", "password": PASSWORD}).status_code
        == 200
    )


def test_a_disabled_user_can_no_longer_log_in_nor_use_tokens_nor_sessions(server):
    browser, _ = server.browser("editor")
    admin = server.client("admin")
    assert admin.patch("/api/users/editor", json={"disabled": True}).status_code == 200
    assert browser.get("/api/revisions").status_code == 401
    assert server.client("editor").get("/api/revisions").status_code == 401
    login = server.client().post(
        "/api/auth/login", json={"username": "editor", "password": PASSWORD}
    )
    assert login.status_code == 401


def test_roles_admin_manages_users_others_may_not(server):
    new = {"name": "carol", "role": "approver", "password": "long enough password"}
    for role in ("viewer", "editor", "approver"):
        assert server.client(role).post("/api/users", json=new).status_code == 403
        assert server.client(role).get("/api/users").status_code == 403
    added = server.client("admin").post("/api/users", json=new)
    assert added.status_code == 201
    assert added.json() == {**added.json(), "name": "carol", "role": "approver", "disabled": False}
    listed = str(server.client("admin").get("/api/users").json())
    assert "argon2" not in listed and "long enough password" not in listed


def test_the_last_admin_cannot_be_demoted(server):
    answer = server.client("admin").patch("/api/users/admin", json={"role": "viewer"})
    assert answer.status_code == 409
    assert "last enabled admin" in answer.json()["detail"]


def test_every_write_is_in_the_audit_trail_with_user_source_and_what_changed(server):
    admin = server.client("admin")
    admin.post(
        "/api/users", json={"name": "dave", "role": "viewer", "password": "long enough password"}
    )
    admin.patch("/api/users/dave", json={"role": "editor", "password": "another long password"})
    trail = admin.get("/api/audit").json()
    update, add = trail[0], trail[1]
    assert (add["actor"], add["action"], add["target"], add["detail"]) == (
        "admin",
        "user.add",
        "user/dave",
        {"role": "viewer"},
    )
    assert add["source"] == "testclient"
    assert update["detail"] == {"role": ["viewer", "editor"], "password": "changed"}
    assert "another long password" not in str(trail)
    assert server.client("viewer").get("/api/audit").status_code == 403


def test_logins_are_audited_and_an_unknown_name_is_not_written_down(server):
    client = server.client()
    client.post("/api/auth/login", json={"username": "viewer", "password": PASSWORD})
    client.post("/api/auth/login", json={"username": "my-secret-typed-here", "password": "x"})
    trail = server.client("admin").get("/api/audit").json()
    assert [(e["actor"], e["action"]) for e in trail[:2]] == [
        ("-", "login.failed"),
        ("viewer", "login"),
    ]
    assert "my-secret-typed-here" not in str(trail)

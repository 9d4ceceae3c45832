"""Security properties over every route of the OpenAPI document, not a hand-picked list:
no credentials -> 401, a viewer writing -> 403, a session writing without CSRF -> 403."""

from __future__ import annotations

import logging
import re

import pytest
from server_kit import PASSWORD

# Routes that must answer without credentials (logging in is how one gets them).
PUBLIC = {("POST", "/api/auth/login")}
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def _routes(app) -> list[tuple[str, str]]:
    document = app.openapi()
    return sorted(
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method.upper() in ("GET", *WRITES)
    )


def _concrete(path: str) -> str:
    """A path with its parameters filled in (`{name}` -> `x`, an id -> 1)."""
    return (
        re.sub(r"\{[^}]*(id|number|revision)\}", "1", re.sub(r"\{[^}]*name\}", "x", path))
        .replace("{", "")
        .replace("}", "")
    )


def test_every_api_route_without_credentials_is_401(server):
    routes = [route for route in _routes(server.app) if route not in PUBLIC]
    assert len(routes) >= 8
    client = server.client()
    answers = {(m, p): client.request(m, _concrete(p), json={}).status_code for m, p in routes}
    assert {route: code for route, code in answers.items() if code != 401} == {}


def test_every_write_route_refuses_a_viewer_with_403(server):
    # Own tokens and logout are for every user; anything else a viewer writes is refused.
    own = {
        ("POST", "/api/tokens"),
        ("DELETE", "/api/tokens/{token_id}"),
        ("POST", "/api/auth/logout"),
    }
    routes = [r for r in _routes(server.app) if r[0] in WRITES and r not in PUBLIC | own]
    assert routes
    viewer = server.client("viewer")
    answers = {(m, p): viewer.request(m, _concrete(p), json={}).status_code for m, p in routes}
    assert {route: code for route, code in answers.items() if code != 403} == {}


def test_every_write_route_refuses_a_session_without_csrf_token(server):
    routes = [r for r in _routes(server.app) if r[0] in WRITES and r not in PUBLIC]
    browser, _ = server.browser("admin")
    answers = {(m, p): browser.request(m, _concrete(p), json={}).status_code for m, p in routes}
    assert {route: code for route, code in answers.items() if code != 403} == {}


@pytest.mark.parametrize("content_type", ["form", "json"])
def test_a_csrf_token_in_a_form_field_is_accepted_like_the_header(server, content_type):
    browser, csrf = server.browser("viewer")
    if content_type == "form":
        answer = browser.post("/api/auth/logout", data={"csrf_token": csrf})
    else:
        answer = browser.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 204


def test_passwords_and_tokens_never_appear_in_logs(server, caplog):
    caplog.set_level(logging.DEBUG)
    client = server.client()
    client.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
    client.post("/api/auth/login", json={"username": "admin", "password": "wrong-password-123"})
    admin = server.client("admin")
    created = admin.post("/api/tokens", json={"name": "x"}).json()["token"]
    admin.post(
        "/api/users", json={"name": "eve", "role": "viewer", "password": "eves long password"}
    )
    admin.patch("/api/users/eve", json={"password": "x"})  # too short: a 422 that must not echo it
    invalid = admin.post("/api/users", json={"name": "eve2", "role": "viewer", "password": "short"})
    assert "short" not in invalid.text.replace("too_short", "")
    logged = caplog.text + str(server.client("admin").get("/api/audit").json())
    for secret in (
        PASSWORD,
        "wrong-password-123",
        created,
        server.tokens["admin"],
        "eves long password",
    ):
        assert secret not in logged

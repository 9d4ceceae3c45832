"""Request bodies and query models refuse what they do not know: a typo changes nothing."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        # A typo'd dry_run would have run the change for real.
        ("post", "/api/changes/1/run", {"dryrun": True}, "dryrun"),
        # A typo'd revision would have deployed the head.
        ("post", "/api/changes", {"revison": 1}, "revison"),
        ("post", "/api/workspaces", {"name": "w", "bsae": 1}, "bsae"),
        ("post", "/api/changes/1/approve", {"coment": "ok"}, "coment"),
        ("put", "/api/settings/four-eyes", {"on": True, "of": False}, "of"),
        (
            "post",
            "/api/users",
            {"name": "eve", "role": "viewer", "password": "x" * 12, "x": 1},
            "x",
        ),
        ("patch", "/api/users/viewer", {"rol": "admin"}, "rol"),
        ("post", "/api/tokens", {"name": "t", "usr": "admin"}, "usr"),
    ],
)
def test_an_unknown_field_is_refused_and_nothing_happens(seeded, method, path, body, field):
    admin = seeded.client("admin")
    created = admin.post("/api/changes", json={})
    assert created.status_code == 201, created.text
    before = admin.get("/api/changes/1").json()
    workspaces = admin.get("/api/workspaces").json()
    answer = getattr(admin, method)(path, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"] == [
        {
            "in": "body",
            "field": field,
            "pointer": f"#/{field}",
            "message": "unknown field (not a field of this request)",
        }
    ]
    assert admin.get("/api/changes/1").json() == before
    assert admin.get("/api/workspaces").json() == workspaces
    assert [c["id"] for c in admin.get("/api/changes").json()] == [1]


def test_an_unknown_query_parameter_of_recommend_is_refused(seeded):
    answer = seeded.client("viewer").get("/api/recommend?policy=rev:1&categoris=clients")
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "categoris"


def test_a_body_that_is_not_json_is_located_by_character_not_named_as_a_field(seeded):
    answer = seeded.client("editor").post(
        "/api/workspaces", content=b'{"name": "x"', headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.json()["errors"] == [
        {
            "in": "body",
            "field": "",
            "pointer": "#/",
            "message": "not valid JSON at character 12: Expecting ',' delimiter",
        }
    ]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "the body holds 0 objects: give the one object named in the path"),
        (
            b'{"name": "x", "prefixes": ["10.0.0.0/8"]}, {"name": "y", "prefixes": ["10.0.0.0/8"]}',
            "the body holds 2 objects: give the one object named in the path",
        ),
        (b'{"name": "y", "prefixes": ["10.0.0.0/8"]}', "the body's name 'y' is not 'x'"),
    ],
)
def test_a_put_body_is_exactly_the_object_its_path_names(seeded, body, detail):
    editor = seeded.client("editor")
    editor.post("/api/workspaces", json={"name": "w"})
    answer = editor.put(
        "/api/workspaces/w/objects/groups/x",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith(detail)
    assert editor.get("/api/workspaces/w").json()["workspace"]["changes"] == 0


def _chunks(total: int, first: bytes = b'{"username": "'):
    yield first
    sent = len(first)
    while sent < total:
        yield b"a" * (1 << 20)
        sent += 1 << 20


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_refused_on_every_route_even_before_login(server, declared):
    """FastAPI read a JSON body whole before looking at it: an unauthenticated 300 MiB
    login request took the server's memory from 160 MB to 780 MB."""
    from microseg.server.limits import MAX_REQUEST_BODY_BYTES

    client = server.client(None)
    total = MAX_REQUEST_BODY_BYTES + (1 << 20)
    if declared:
        headers = {"content-type": "application/json", "content-length": str(total)}
        answer = client.post("/api/auth/login", content=b"{}", headers=headers)
    else:
        headers = {"content-type": "application/json"}
        answer = client.post("/api/auth/login", content=_chunks(total), headers=headers)
    assert answer.status_code == 413, answer.text
    assert answer.json()["type"] == "urn:microseg:problem:too-large"
    assert answer.json()["detail"] == "request body: larger than 32 MiB"

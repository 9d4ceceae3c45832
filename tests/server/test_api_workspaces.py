"""The seed's workspace story through the API: narrow the web rule, see the diff and the
build, get located errors for bad objects, submit as the next revision."""

from __future__ import annotations

import json

NARROW_WEB = {
    "name": "clients_to_webservers",
    "description": "HTTP to webservers",
    "sources": ["wifi_clients"],
    "destinations": ["web01_web02"],
    "services": ["HTTP"],
}


def test_an_editor_narrows_the_web_rule_and_submits_it(seeded):
    editor = seeded.client("editor")
    created = editor.post("/api/workspaces", json={"name": "narrow-web"})
    assert created.status_code == 201, created.text
    assert created.json()["base"] == 1 and created.json()["author"] == "editor"
    put = editor.put(
        "/api/workspaces/narrow-web/objects/rules/clients_to_webservers", json=NARROW_WEB
    )
    assert put.status_code == 200, put.text
    assert put.json() == {"workspace": "narrow-web", "objects": ["rules/clients_to_webservers"]}
    diff = editor.get("/api/workspaces/narrow-web/diff").json()
    assert [(c["section"], c["name"], c["change"]) for c in diff["changes"]] == [
        ("rules", "clients_to_webservers", "changed")
    ]
    assert diff["changes"][0]["fields"] == [
        {"field": "sources", "before": "any", "after": ["wifi_clients"]}
    ]
    build = editor.get("/api/workspaces/narrow-web/build").json()
    assert build["summary"]["devices_changed"] == 1
    assert build["devices"][0]["device"] == "andreasm-720xp-home"
    assert "match clients_to_webservers ipv4" in build["devices"][0]["diff"]
    got = editor.get("/api/workspaces/narrow-web/objects/rules/clients_to_webservers").json()
    assert got["sources"] == ["wifi_clients"]
    submitted = editor.post("/api/workspaces/narrow-web/submit", json={"message": "web from wifi"})
    assert submitted.json() == {"workspace": "narrow-web", "revision": 2, "change": None}
    log = editor.get("/api/revisions").json()
    assert (log[0]["id"], log[0]["author"], log[0]["message"]) == (2, "editor", "web from wifi")


def test_bad_objects_are_refused_with_every_problem_located_in_the_body(seeded):
    editor = seeded.client("editor")
    editor.post("/api/workspaces", json={"name": "w"})
    body = json.dumps(
        {
            "groups": [
                {"name": "ok", "prefixes": ["10.1.0.0/24"]},
                {"name": "web", "prefixes": ["10.0.0.300/24"], "colour": "blue"},
            ],
            "rules": [
                {"name": "r2", "sources": ["nothere"], "destinations": "any", "services": "any"}
            ],
        },
        indent=2,
    )
    answer = editor.post(
        "/api/workspaces/w/objects", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    errors = {(e["object"], e["field"]): e for e in answer.json()["errors"]}
    assert set(errors) == {
        ("group 'web'", "prefixes.0"),
        ("group 'web'", "colour"),
        ("rule 'r2'", "sources.0"),
    }
    prefix = errors["group 'web'", "prefixes.0"]
    assert prefix["pointer"] == "#/groups/1/prefixes/0"
    assert prefix["file"] == "request body"
    assert body.splitlines()[prefix["line"] - 1].strip().startswith('"10.0.0.300/24"')
    assert errors["rule 'r2'", "sources.0"]["pointer"] == "#/rules/0/sources/0"
    assert "unknown group 'nothere'" in errors["rule 'r2'", "sources.0"]["message"]
    assert editor.get("/api/workspaces/w/diff").json()["changes"] == []  # nothing written


def test_yaml_bodies_are_read_like_a_policy_file(seeded):
    editor = seeded.client("editor")
    editor.post("/api/workspaces", json={"name": "w"})
    text = "groups:\n  - name: printers\n    prefixes: [10.100.7.0/24]\n"
    answer = editor.post(
        "/api/workspaces/w/objects", content=text, headers={"content-type": "application/yaml"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["objects"] == ["groups/printers"]


def test_put_locates_a_problem_in_the_object_body_and_checks_its_name(seeded):
    editor = seeded.client("editor")
    editor.post("/api/workspaces", json={"name": "w"})
    body = '{"name": "web", "prefixes": ["nope"]}'
    bad = editor.put(
        "/api/workspaces/w/objects/groups/web",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert bad.status_code == 422
    (error,) = bad.json()["errors"]
    assert (error["object"], error["field"], error["pointer"]) == (
        "group 'web'",
        "prefixes.0",
        "#/prefixes/0",
    )
    assert (error["line"], error["column"]) == (1, body.index('"nope"') + 1)
    renamed = editor.put(
        "/api/workspaces/w/objects/groups/web", json={"name": "other", "prefixes": []}
    )
    assert renamed.status_code == 422 and "the object named in the path" in renamed.json()["detail"]


def test_deleting_a_group_a_rule_uses_is_refused_naming_the_rules(seeded):
    editor = seeded.client("editor")
    editor.post("/api/workspaces", json={"name": "w"})
    answer = editor.delete("/api/workspaces/w/objects/groups/wifi_clients")
    assert answer.status_code == 422
    errors = [(e["object"], e["field"]) for e in answer.json()["errors"]]
    assert errors == [("rule 'ssh_to_web-app_servers'", "sources.0")]
    assert editor.get("/api/workspaces/w/objects/groups/wifi_clients").status_code == 200


def test_not_found_and_conflict_are_problem_documents(seeded):
    editor = seeded.client("editor")
    missing = editor.get("/api/workspaces/nope/diff")
    assert (missing.status_code, missing.json()["type"]) == (404, "urn:microseg:problem:not-found")
    editor.post("/api/workspaces", json={"name": "a"})
    editor.post("/api/workspaces", json={"name": "b"})
    for name in ("a", "b"):
        editor.put(
            "/api/workspaces/" + name + "/objects/rules/clients_to_webservers",
            json=NARROW_WEB | {"description": name},
        )
    assert editor.post("/api/workspaces/a/submit", json={}).status_code == 200
    conflict = editor.post("/api/workspaces/b/submit", json={})
    assert conflict.status_code == 409
    assert conflict.json()["objects"] == ["rules/clients_to_webservers"]


def test_workspace_writes_are_audited_with_before_and_after(seeded):
    editor = seeded.client("editor")
    editor.post("/api/workspaces", json={"name": "w"})
    editor.put("/api/workspaces/w/objects/rules/clients_to_webservers", json=NARROW_WEB)
    trail = seeded.client("admin").get("/api/audit", params={"action": "workspace.set"}).json()
    (event,) = trail
    change = event["detail"]["rules/clients_to_webservers"]
    assert change["before"]["sources"] == "any" and change["after"]["sources"] == ["wifi_clients"]
    assert (event["actor"], event["target"]) == ("editor", "workspace/w")


def test_import_and_export_round_trip(server):
    from support import EXAMPLES

    admin = server.client("admin")
    text = (EXAMPLES / "home-lab.yaml").read_text()
    imported = admin.post(
        "/api/revisions",
        params={"message": "seed"},
        content=text,
        headers={"content-type": "application/yaml"},
    )
    assert imported.status_code == 201, imported.text
    assert imported.json() == {"revision": 1, "changed": True, "objects": 24}
    again = admin.post("/api/revisions", content=text, headers={"content-type": "application/yaml"})
    assert again.status_code == 200, again.text  # the head's own policy: nothing created
    assert again.json() == {"revision": 1, "changed": False, "objects": 24}
    assert [r["id"] for r in admin.get("/api/revisions").json()] == [1]
    imports = admin.get("/api/audit", params={"action": "revision.import"}).json()
    assert [event["target"] for event in imports] == ["revision/1"]
    exported = admin.get("/api/revisions/1/export")
    from microseg.policyfile import dump_policy, load_policy

    assert exported.text == dump_policy(load_policy(EXAMPLES / "home-lab.yaml"))
    assert (
        server.client("viewer")
        .post("/api/revisions", content=text, headers={"content-type": "application/yaml"})
        .status_code
        == 403
    )


def test_devices_and_monitor_nodes_are_an_admins(seeded):
    from support import EXAMPLES

    editor, admin = seeded.client("editor"), seeded.client("admin")
    editor.post("/api/workspaces", json={"name": "w"})
    switch = editor.get("/api/workspaces/w/objects/devices/andreasm-720xp-home").json()
    moved = switch | {"management_address": "192.0.2.99"}
    path = "/api/workspaces/w/objects/devices/andreasm-720xp-home"
    refused = editor.put(path, json=moved)
    assert refused.status_code == 403 and "needs the admin role" in refused.json()["detail"]
    assert editor.delete(path).status_code == 403
    assert admin.put(path, json=moved).status_code == 200
    # Importing a policy whose devices are the head's is an editor's; other devices, an admin's.
    same_devices = (EXAMPLES / "home-lab-dns-ntp.yaml").read_text()
    headers = {"content-type": "application/yaml"}
    assert editor.post("/api/revisions", content=same_devices, headers=headers).status_code == 201
    other = same_devices.replace("10.255.1.10", "10.255.1.11")
    assert other != same_devices
    assert editor.post("/api/revisions", content=other, headers=headers).status_code == 403


def test_objects_named_with_slash_percent_space_or_unicode_are_addressable(seeded):
    """A policy object's name may hold '/', '%', spaces and unicode (EOS takes '/', nftables
    escapes the rest): every object route reaches it, percent-encoded as any client sends it."""
    from urllib.parse import quote

    editor = seeded.client("editor")
    editor.post("/api/workspaces", json={"name": "w"})
    for name in ("dc1/web", "a/b/c", "50%", "web servers", "wëb-ø", "../x"):
        path = "/api/workspaces/w/objects/groups/" + quote(name, safe="")
        put = editor.put(path, json={"name": name, "prefixes": ["10.9.0.0/24"]})
        assert put.status_code == 200, (name, put.text)
        assert put.json()["objects"] == [f"groups/{name}"]
        assert editor.get(path).json()["name"] == name
        assert editor.delete(path).status_code == 204, name
        assert editor.get(path).status_code == 404, name
    editor.put(
        "/api/workspaces/w/objects/groups/" + quote("dc1/web", safe=""),
        json={"name": "dc1/web", "prefixes": ["10.9.0.0/24"]},
    )
    revision = editor.post("/api/workspaces/w/submit", json={}).json()["revision"]
    got = editor.get(f"/api/revisions/{revision}/objects/groups/dc1%2Fweb")
    assert got.status_code == 200 and got.json()["name"] == "dc1/web"
    # The name in the path and the body's name must still agree.
    editor.post("/api/workspaces", json={"name": "w2"})
    other = editor.put(
        "/api/workspaces/w2/objects/groups/dc1%2Fweb", json={"name": "dc1", "prefixes": []}
    )
    assert other.status_code == 422

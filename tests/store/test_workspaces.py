"""Workspaces on SQLite and PostgreSQL, told with the seed lab: the final home-lab policy is
revision 1, and an engineer narrows who may reach the web servers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from microseg.model import Group, MicrosegError, PolicyError, PolicySet
from microseg.policyfile import load_policy
from microseg.store import (
    FieldChange,
    InvalidChange,
    NotFound,
    StoreConflict,
    WorkspaceClosed,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

WEB_FROM_WIFI_ONLY = {
    "name": "clients_to_webservers",
    "description": "HTTP to webservers",
    "sources": ["wifi_clients"],
    "destinations": ["web01_web02"],
    "services": ["HTTP"],
}


@pytest.fixture
def lab(store):
    """The store with the final seed lab as revision 1."""
    store.import_policy(load_policy(EXAMPLES / "home-lab.yaml"), "andreas", "seed lab")
    return store


def test_a_workspace_starts_on_the_head_with_no_changes(lab):
    info = lab.workspace_create("narrow-web", author="andreas")
    assert (info.name, info.base, info.state, info.changes, info.author) == (
        "narrow-web",
        1,
        "open",
        0,
        "andreas",
    )
    assert lab.workspace_base("narrow-web") == 1
    assert lab.workspace_policy("narrow-web") == lab.revision_policy(1)
    assert lab.workspace_diff("narrow-web") == []


def test_a_workspace_needs_a_revision_and_a_free_name(store):
    with pytest.raises(NotFound, match="no revisions yet"):
        store.workspace_create("w")
    store.import_policy(load_policy(EXAMPLES / "home-lab.yaml"), "a", "m")
    with pytest.raises(NotFound, match="no revision 7"):
        store.workspace_create("w", base=7)
    store.workspace_create("w")
    with pytest.raises(MicrosegError, match="workspace 'w' already exists"):
        store.workspace_create("w")
    with pytest.raises(MicrosegError, match="workspace name"):
        store.workspace_create(" padded ")
    with pytest.raises(NotFound, match="no workspace 'nothere'"):
        store.workspace_policy("nothere")


def test_a_workspace_name_with_a_slash_is_refused_as_urls_could_not_reach_it(store):
    # /api/workspaces/w%2Fdiff is routed decoded: it would be workspace w's diff.
    store.import_policy(load_policy(EXAMPLES / "home-lab.yaml"), "a", "m")
    with pytest.raises(MicrosegError, match=r"workspace name 'w/diff': no '/'"):
        store.workspace_create("w/diff")
    assert store.workspace_list(include_closed=True) == []


@pytest.mark.parametrize("name", [".", ".."])
def test_a_workspace_named_dot_or_dot_dot_is_refused_as_urls_drop_them(store, name):
    # Clients remove dot segments (RFC 3986): /api/workspaces/../diff is /api/diff.
    store.import_policy(load_policy(EXAMPLES / "home-lab.yaml"), "a", "m")
    with pytest.raises(MicrosegError, match=rf"workspace name '{re.escape(name)}': not '\.' or"):
        store.workspace_create(name)
    assert store.workspace_list(include_closed=True) == []


def test_setting_a_rule_changes_the_effective_policy_and_the_diff_shows_the_field(lab):
    lab.workspace_create("narrow-web")
    lab.workspace_set("narrow-web", "rules", WEB_FROM_WIFI_ONLY)
    effective = lab.workspace_policy("narrow-web")
    assert effective.rule("clients_to_webservers").sources == ("wifi_clients",)
    # Mainline is untouched until the workspace is submitted.
    assert lab.revision_policy(1).rule("clients_to_webservers").sources == ()  # any
    [change] = lab.workspace_diff("narrow-web")
    assert (change.section, change.name, change.change) == (
        "rules",
        "clients_to_webservers",
        "changed",
    )
    assert change.fields == (FieldChange("sources", "any", ["wifi_clients"]),)
    assert change.before["sources"] == "any"
    assert change.after["sources"] == ["wifi_clients"]
    assert lab.workspace_info("narrow-web").changes == 1


def test_added_and_removed_objects_show_in_the_diff(lab):
    lab.workspace_create("printers")
    lab.workspace_set("printers", "groups", Group(name="printers", prefixes=["10.100.7.0/24"]))
    # A rule leaves its policy first: deleting it while the policy lists it is refused.
    with pytest.raises(InvalidChange, match="unknown rule 'drop_http_between_webservers'"):
        lab.workspace_delete("printers", "rules", "drop_http_between_webservers")
    policy = dict(lab.revision_policy(1).policy("vrf_all_home").model_dump(mode="json"))
    policy["rules"] = [r for r in policy["rules"] if r != "drop_http_between_webservers"]
    lab.workspace_set("printers", "policies", policy)
    lab.workspace_delete("printers", "rules", "drop_http_between_webservers")
    changes = {(c.section, c.name): c for c in lab.workspace_diff("printers")}
    assert changes["groups", "printers"].change == "added"
    assert changes["groups", "printers"].after == {
        "name": "printers",
        "prefixes": ["10.100.7.0/24"],
    }
    assert changes["rules", "drop_http_between_webservers"].change == "removed"
    assert changes["policies", "vrf_all_home"].fields[0].field == "rules"
    # Diff order is canonical: sections in policy-file order.
    assert list(changes) == [
        ("groups", "printers"),
        ("rules", "drop_http_between_webservers"),
        ("policies", "vrf_all_home"),
    ]


def test_setting_an_object_back_to_its_base_value_is_no_change(lab):
    lab.workspace_create("w")
    lab.workspace_set("w", "rules", WEB_FROM_WIFI_ONLY)
    lab.workspace_set("w", "rules", lab.revision_policy(1).rule("clients_to_webservers"))
    assert lab.workspace_diff("w") == []
    assert lab.workspace_info("w").changes == 0


def test_a_change_that_breaks_a_reference_is_refused_and_nothing_is_written(lab):
    lab.workspace_create("w")
    lab.workspace_set("w", "rules", WEB_FROM_WIFI_ONLY)
    with pytest.raises(InvalidChange) as refused:
        lab.workspace_delete("w", "groups", "wifi_clients")
    assert [str(p) for p in refused.value.problems] == [
        "rule 'clients_to_webservers' sources.0: unknown group 'wifi_clients'",
        "rule 'ssh_to_web-app_servers' sources.0: unknown group 'wifi_clients'",
    ]
    with pytest.raises(InvalidChange, match="unknown service 'HTTPS'"):
        lab.workspace_set("w", "rules", {**WEB_FROM_WIFI_ONLY, "services": ["HTTPS"]})
    # Only the first, valid change is there.
    [change] = lab.workspace_diff("w")
    assert change.after["services"] == ["HTTP"]
    assert lab.workspace_policy("w").group("wifi_clients") is not None


def test_an_invalid_object_is_refused_naming_the_field(lab):
    lab.workspace_create("w")
    with pytest.raises(PolicyError) as refused:
        lab.workspace_set("w", "groups", {"name": "bad", "prefixes": ["10.0.0.300/24"]})
    [problem] = refused.value.problems
    assert problem.object == "group 'bad'"
    assert problem.field == "prefixes.0"
    assert "not a valid IPv4 or IPv6 prefix" in problem.message
    with pytest.raises(MicrosegError, match="unknown section 'gropus'"):
        lab.workspace_set("w", "gropus", {"name": "x"})
    with pytest.raises(NotFound, match="has no group 'nothere'"):
        lab.workspace_delete("w", "groups", "nothere")
    assert lab.workspace_diff("w") == []


def test_submitting_makes_the_workspace_the_next_revision(lab):
    lab.workspace_create("narrow-web")
    lab.workspace_set("narrow-web", "rules", WEB_FROM_WIFI_ONLY)
    effective = lab.workspace_policy("narrow-web")
    assert lab.workspace_submit("narrow-web", "andreas", "web only from wifi") == 2
    assert lab.head() == 2
    assert lab.revision_policy(2) == effective
    [newest, _] = lab.log()
    assert (newest.id, newest.parent, newest.author, newest.message) == (
        2,
        1,
        "andreas",
        "web only from wifi",
    )
    info = lab.workspace_info("narrow-web")
    assert (info.state, info.submitted_revision) == ("submitted", 2)
    with pytest.raises(WorkspaceClosed, match="submitted as revision 2"):
        lab.workspace_submit("narrow-web", "andreas", "again")
    with pytest.raises(WorkspaceClosed):
        lab.workspace_set("narrow-web", "rules", WEB_FROM_WIFI_ONLY)
    assert lab.head() == 2


def test_a_workspace_with_no_changes_cannot_be_submitted(lab):
    lab.workspace_create("w")
    with pytest.raises(MicrosegError, match="no changes to submit"):
        lab.workspace_submit("w", "a", "m")
    assert lab.head() == 1


def test_an_abandoned_workspace_cannot_be_submitted_and_its_name_is_free_again(lab):
    lab.workspace_create("w")
    lab.workspace_set("w", "rules", WEB_FROM_WIFI_ONLY)
    lab.workspace_abandon("w")
    with pytest.raises(WorkspaceClosed, match="'w' was abandoned"):
        lab.workspace_submit("w", "a", "m")
    with pytest.raises(WorkspaceClosed):
        lab.workspace_delete("w", "rules", "clients_to_webservers")
    with pytest.raises(WorkspaceClosed):
        lab.workspace_abandon("w")
    assert lab.head() == 1
    assert [w.name for w in lab.workspace_list()] == []
    assert [(w.name, w.state) for w in lab.workspace_list(include_closed=True)] == [
        ("w", "abandoned")
    ]
    # Its changes stay readable; a new workspace may take the name.
    assert lab.workspace_diff("w")[0].name == "clients_to_webservers"
    lab.workspace_create("w")
    assert lab.workspace_diff("w") == []
    assert [(w.name, w.state) for w in lab.workspace_list(include_closed=True)] == [
        ("w", "abandoned"),
        ("w", "open"),
    ]


def test_submitting_over_a_mainline_change_to_the_same_object_is_a_conflict(lab):
    lab.workspace_create("web-from-wifi")
    lab.workspace_create("web-from-mgmt")
    lab.workspace_set("web-from-wifi", "rules", WEB_FROM_WIFI_ONLY)
    lab.workspace_set("web-from-mgmt", "groups", Group(name="mgmt", prefixes=["10.100.5.0/24"]))
    lab.workspace_set("web-from-mgmt", "rules", {**WEB_FROM_WIFI_ONLY, "sources": ["mgmt"]})
    assert lab.workspace_submit("web-from-wifi", "a", "first") == 2
    with pytest.raises(StoreConflict) as conflict:
        lab.workspace_submit("web-from-mgmt", "b", "second")
    assert conflict.value.objects == [("rules", "clients_to_webservers")]
    assert (conflict.value.base, conflict.value.head) == (1, 2)
    assert "rules/clients_to_webservers" in str(conflict.value)
    # Nothing written: no revision, the workspace is still open with its changes.
    assert lab.head() == 2
    assert [r.id for r in lab.log()] == [2, 1]
    assert lab.workspace_info("web-from-mgmt").state == "open"
    assert len(lab.workspace_diff("web-from-mgmt")) == 2


def test_submitting_after_mainline_changed_other_objects_merges_onto_the_head(lab):
    lab.workspace_create("web-from-wifi")
    lab.workspace_create("printers")
    lab.workspace_set("web-from-wifi", "rules", WEB_FROM_WIFI_ONLY)
    lab.workspace_set("printers", "groups", Group(name="printers", prefixes=["10.100.7.0/24"]))
    assert lab.workspace_submit("web-from-wifi", "a", "first") == 2
    assert lab.workspace_submit("printers", "b", "second") == 3
    merged = lab.revision_policy(3)
    assert merged.rule("clients_to_webservers").sources == ("wifi_clients",)
    assert merged.group("printers").prefixes[0].compressed == "10.100.7.0/24"
    assert [(r.id, r.parent) for r in lab.log()] == [(3, 2), (2, 1), (1, None)]


def test_a_submit_whose_merge_would_break_a_reference_is_refused(lab):
    lab.workspace_create("add-printers")
    lab.workspace_set("add-printers", "groups", Group(name="printers", prefixes=["10.100.7.0/24"]))
    lab.workspace_submit("add-printers", "a", "printers")
    lab.workspace_create("remove-printers")
    lab.workspace_create("print-rule")
    lab.workspace_delete("remove-printers", "groups", "printers")
    printing = {
        "name": "print",
        "sources": ["wifi_clients"],
        "destinations": ["printers"],
        "services": "any",
    }
    lab.workspace_set("print-rule", "rules", printing)
    assert lab.workspace_submit("remove-printers", "a", "no printers") == 3
    # Each workspace touches a different object, so no conflict, but the merge is invalid.
    with pytest.raises(InvalidChange, match="unknown group 'printers'"):
        lab.workspace_submit("print-rule", "b", "print")
    assert lab.head() == 3
    assert lab.workspace_info("print-rule").state == "open"


def test_an_old_revision_can_be_the_base(lab):
    lab.import_policy(load_policy(EXAMPLES / "home-lab-dns-ntp.yaml"), "a", "back to dns")
    lab.workspace_create("from-1", base=1)
    assert lab.workspace_base("from-1") == 1
    assert lab.workspace_policy("from-1") == lab.revision_policy(1)


def test_every_problem_of_a_change_set_is_reported_at_once(lab):
    lab.workspace_create("w")
    bad_group = {"name": "printers", "prefixes": ["10.100.7.1/24"]}
    bad_rule = {
        "name": "print",
        "sources": ["printers", "nothere"],
        "action": "deny",
        "destinations": "any",
        "services": "any",
    }
    with pytest.raises(InvalidChange) as refused:
        lab.workspace_set_objects("w", [("groups", bad_group), ("rules", bad_rule)])
    reported = [str(p) for p in refused.value.problems]
    assert len(reported) == 3, reported
    assert reported[0].startswith("group 'printers' prefixes.0: 10.100.7.1/24 has host bits set")
    assert reported[1].startswith("rule 'print' action: ")
    # The invalid group still counts as defined; the invalid rule's references are checked.
    assert reported[2] == "rule 'print' sources.1: unknown group 'nothere'"
    assert lab.workspace_diff("w") == []


@pytest.mark.parametrize("collation", ["sqlite", "postgresql-C", "postgresql-en-US"])
def test_workspaces_are_listed_in_byte_order_whatever_the_database_collation(
    collation, tmp_path, request
):
    # A PostgreSQL server initialised in en_US sorts `a` before `B`; the listing (and its
    # --json) must be the same bytes on every backend.
    from microseg.model import PolicySet
    from microseg.store import open_store

    if collation == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        url = server.new_database("en-US" if collation.endswith("en-US") else None)
    names = ["b", "B", "a", "_x", "A-1", "é"]
    with open_store(url) as store:
        store.import_policy(PolicySet(), "andreas", "empty")
        for name in names:
            store.workspace_create(name, author="andreas")
        listed = [info.name for info in store.workspace_list()]
    assert listed == sorted(names, key=str.encode)


@pytest.mark.parametrize("character", ["\x00", "\x1b", "\x7f", "\x85", "\u2028"])
def test_workspace_names_authors_and_messages_are_text_the_store_can_hold(store, character):
    # PostgreSQL text cannot hold NUL; ESC and line separators would garble `log` and
    # `workspace list` in a terminal. Each is refused before anything is written.
    with pytest.raises(MicrosegError, match=r"author .*control characters"):
        store.import_policy(PolicySet(), f"an{character}dreas", "m")
    with pytest.raises(MicrosegError, match="revision message: no NUL"):
        store.import_policy(PolicySet(), "andreas", "line one\n\x00")
    assert store.log() == []
    store.import_policy(PolicySet(), "andreas", "line one\nline two\ttabbed")
    with pytest.raises(MicrosegError, match=r"workspace name .*control characters"):
        store.workspace_create(f"w{character}x")
    assert store.workspace_list(include_closed=True) == []

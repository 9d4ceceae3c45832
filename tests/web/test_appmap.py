"""The application map of the seed lab's collected sessions: groups, the services between
them, and what the seed's final policy blocks (web01's package download, appserver1's ping
of the DNS server: `drop_all_else_web-app`)."""

from __future__ import annotations

from support import EXAMPLES


def test_the_seed_lab_map_shows_what_the_final_policy_blocks(tmp_path):
    from microseg.flows.demo import run_demo
    from microseg.model import Group
    from microseg.policyfile import load_policy
    from microseg.server.web.appmap import OUTSIDE, app_map, svg

    sessions = run_demo(tmp_path)  # the seed lab's capture through the collector
    policy = load_policy(EXAMPLES / "home-lab.yaml")
    picture = app_map(policy, sessions)
    blocked = {(e.source, e.destination, e.service) for e in picture.edges if e.blocked}
    assert blocked == {
        ("web-appserver1", OUTSIDE, "tcp/80"),
        ("appserver1", "DNS_NTP_servers", "icmp type 8"),
    }
    forwarded = {(e.source, e.destination, e.service) for e in picture.edges if not e.blocked}
    assert ("web-appserver1", "appserver1", "tcp/4567") in forwarded
    assert picture.sessions == int(sessions.column("sessions").to_numpy().sum())
    assert svg(picture) == svg(app_map(policy, sessions))  # the same picture every time

    hostile = "<script>alert(1)</script>"
    mirror = Group(name=hostile, prefixes=["91.189.91.81/32"])  # where web01 fetches from
    renamed = policy.model_copy(update={"groups": (*policy.groups, mirror)})
    drawing = svg(app_map(renamed, sessions))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in drawing
    assert hostile not in drawing

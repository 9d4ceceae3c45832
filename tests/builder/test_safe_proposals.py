"""Accepting a recommendation never changes what an existing rule decides explicitly: a
hand-written drop stays in force, traffic a rule already allows is not proposed again."""

from __future__ import annotations

import seed_policies
from seed_policies import replaced

from microseg.builder import BuilderOptions, recommend
from microseg.builder.seed_sessions import APPSERVER1, LAPTOP, WEB01, WEB02, session
from microseg.evaluate.check import check_connection
from microseg.flows.session_columns import session_columns
from microseg.model import Group, Rule

GUEST = "172.18.6.200"  # a wifi client that must never reach the web servers
CATEGORIES = ("clients", "infrastructure")


def _with_drops(*drops: Rule, at: int = 0):
    """The web-app discovery stage (allow_all_NTP, allow_all_DNS, the monitor rule) with
    hand-written drops inserted at position `at`."""
    lab = seed_policies.web_app_monitor()
    guest = Group(name="guest", prefixes=(f"{GUEST}/32",))
    policy = lab.policy("vrf_all_home")
    names = tuple(d.name for d in drops)
    rules = policy.rules[:at] + names + policy.rules[at:]
    return replaced(
        lab,
        groups=(*lab.groups, guest),
        rules=(*lab.rules, *drops),
        policies=(policy.model_copy(update={"rules": rules}),),
    )


def _columns(rows: list[dict]):
    import pyarrow as pa

    for row in rows:
        row["sport"], row["dport"] = str(row["sport"]), str(row["dport"])
    return session_columns(pa.Table.from_pylist(rows))


GUEST_TO_WEB = Rule(
    name="no_guest_to_web",
    sources=("guest",),
    destinations=("web01_web02",),
    services=("HTTP",),
    action="drop",
)
NO_SSH_TO_APPSERVER = Rule(
    name="no_ssh_to_appserver",
    sources=("wifi_clients",),
    destinations=("appserver1",),
    services=("SSH",),
    action="drop",
)


def test_a_hand_written_drop_stays_in_force_when_a_wider_proposal_is_accepted():
    """The laptop's HTTP to the web servers gives `wifi_clients -> web01, web02` with the
    clients category: wider than the evidence, it also covers the guest, whom a drop rule
    (after allow_all_DNS, which decides other sessions) keeps off the web servers. The
    proposal goes after that drop, before the monitor rule (it went before allow_all_DNS,
    ahead of the drop, and let the guest in)."""
    policy_set = _with_drops(GUEST_TO_WEB, at=2)
    rows = [session(LAPTOP, "eph", web, 80, "tcp", sessions=5) for web in (WEB01, WEB02)]
    rows += [session(WEB01, 40000, "10.100.1.6", 53)]  # already allowed by allow_all_DNS
    result = recommend(
        policy_set,
        _columns(rows),
        BuilderOptions(categories=CATEGORIES, target_policy="vrf_all_home"),
    )
    [proposal] = result.rules
    assert proposal.rule.sources == ("wifi_clients",)
    rules = policy_set.policy("vrf_all_home").rules
    assert proposal.insert_at == rules.index("web-appserver-discovery")
    assert proposal.before == "web-appserver-discovery"
    accepted = result.proposed_policy_set(policy_set)
    assert accepted.policy("vrf_all_home").rules.index(proposal.rule.name) == 3
    guest = check_connection(accepted, GUEST, WEB01, "tcp", 80)
    assert not guest.policy_allows and guest.request_decisions[0].rule == "no_guest_to_web"
    laptop = check_connection(accepted, LAPTOP, WEB01, "tcp", 80)
    assert laptop.policy_allows and laptop.request_decisions[0].rule == proposal.rule.name
    assert result.quality.coverage == 1.0


def test_a_hand_written_drop_placed_late_still_decides_what_it_decided():
    """A drop after the monitor rule: the proposal goes after the drop (it cannot go
    before the monitor rule without overriding the drop); coverage still holds."""
    policy_set = _with_drops(GUEST_TO_WEB, at=3)
    rows = [session(LAPTOP, "eph", web, 80, "tcp", sessions=5) for web in (WEB01, WEB02)]
    result = recommend(
        policy_set,
        _columns(rows),
        BuilderOptions(categories=CATEGORIES, target_policy="vrf_all_home"),
    )
    [proposal] = result.rules
    rules = policy_set.policy("vrf_all_home").rules
    assert proposal.insert_at == len(rules) and proposal.before is None
    accepted = result.proposed_policy_set(policy_set)
    for host in (GUEST, LAPTOP, "172.18.6.7"):
        before = check_connection(policy_set, host, WEB02, "tcp", 80)
        after = check_connection(accepted, host, WEB02, "tcp", 80)
        assert after.policy_allows == before.policy_allows, host
    assert result.quality.coverage == 1.0


def test_sessions_an_existing_drop_decides_are_reported_not_proposed():
    policy_set = _with_drops(NO_SSH_TO_APPSERVER)
    rows = [session(LAPTOP, "eph", APPSERVER1, 22, "tcp", sessions=3)]  # answered anyway
    rows += [session(LAPTOP, "eph", WEB01, 80, "tcp")]
    options = BuilderOptions(categories=CATEGORIES, target_policy="vrf_all_home")
    result = recommend(policy_set, _columns([dict(r) for r in rows]), options)
    assert [r.rule.services for r in result.rules] == [("HTTP",)]
    [stopped] = result.blocked_by_rules
    assert (stopped.rule, stopped.verdict, stopped.sessions) == ("no_ssh_to_appserver", "drop", 3)
    assert stopped.examples[0].server == APPSERVER1 and stopped.examples[0].server_port == 22

    included = recommend(
        policy_set,
        _columns([dict(r) for r in rows]),
        BuilderOptions(categories=CATEGORIES, target_policy="vrf_all_home", include_blocked=True),
    )
    ssh = next(r for r in included.rules if r.rule.services == ("SSH",))
    assert ssh.insert_at == 0  # asked for: before the drop it overrides
    assert [(d.rule, d.verdict) for d in ssh.current_decisions] == [("no_ssh_to_appserver", "drop")]
    assert included.blocked_by_rules == ()


def test_traffic_an_existing_rule_allows_is_already_allowed_not_proposed_again():
    """In the web-app stage DNS and NTP are allowed by allow_all_DNS / allow_all_NTP: the
    sessions are reported as already allowed by them; no rule is proposed for them."""
    policy_set = seed_policies.web_app_monitor()
    rows = [session(WEB01, 40000 + n, "10.100.1.6", 53) for n in range(4)]
    rows += [session(WEB02, 123, "10.100.1.7", 123)]
    rows += [session(LAPTOP, "eph", WEB01, 80, "tcp")]  # mirrored: the monitor rule decides
    result = recommend(policy_set, _columns(rows), BuilderOptions(categories=CATEGORIES))
    assert [r.rule.services for r in result.rules] == [("HTTP",)]
    assert [(a.rule, a.verdict, a.sessions) for a in result.already_allowed] == [
        ("allow_all_DNS", "forward", 4),
        ("allow_all_NTP", "forward", 1),
    ]
    assert result.quality.evidence_sessions == 1


def test_outside_endpoints_are_never_widened_to_the_whole_internet():
    """Hosts outside every group and segment become a group of exactly those hosts, named
    for their role; a fully seen block is one prefix; two outside ends are unexplained."""
    policy_set = seed_policies.web_app_monitor()
    block = [f"198.51.100.{n}" for n in range(256)]  # every address of a /24 answered
    rows = [session(WEB01, "eph", host, 443, "tcp") for host in block]
    rows += [session(WEB02, "eph", "203.0.113.7", 443, "tcp")]  # one more HTTPS server
    rows += [session(APPSERVER1, "eph", "203.0.113.9", 22, "tcp")]
    rows += [session("192.0.2.1", "eph", "192.0.2.2", 80, "tcp", sessions=2)]  # transit
    result = recommend(policy_set, _columns(rows))
    for group in result.new_groups:
        assert all(p.prefixlen > 0 for p in group.prefixes), group
    groups = {g.name: [str(p) for p in g.prefixes] for g in result.new_groups}
    assert groups["external-HTTPS-servers"] == ["198.51.100.0/24"]
    assert groups["external-203-0-113-7"] == ["203.0.113.7/32"]
    assert groups["external-203-0-113-9"] == ["203.0.113.9/32"]
    assert result.unexplained is not None and result.unexplained.sessions == 2
    assert result.unexplained.examples[0].server == "192.0.2.2"
    destinations = {d for r in result.rules for d in r.rule.destinations}
    assert destinations == {
        "external-HTTPS-servers",
        "external-203-0-113-7",
        "external-203-0-113-9",
    }
    assert result.quality.coverage == 1.0
    for outside in ("8.8.8.8", "198.51.101.1"):  # nothing unseen is allowed
        accepted = result.proposed_policy_set(policy_set)
        check = check_connection(accepted, WEB01, outside, "tcp", 443)
        assert check.request_decisions[0].rule not in {r.rule.name for r in result.rules}


def _default_drop(default_action: str):
    """The web-app stage without its monitor rule, its policy dropping what no rule allows."""
    lab = seed_policies.web_app_monitor()
    policy = lab.policy("vrf_all_home").model_copy(
        update={"rules": ("allow_all_NTP", "allow_all_DNS"), "default_action": default_action}
    )
    return replaced(lab, policies=(policy,))


def test_a_default_drop_policy_blocks_what_its_default_decides():
    """What the default of a default-drop policy decides is what the policy blocks: answered
    sessions it decides are proposed (they are the allow-list still to write) and placed
    before the default; unanswered ones are attempts its default drops; sessions a rule
    allows are already allowed."""
    rows = [session(LAPTOP, "eph", WEB01, 80, "tcp", sessions=2)]
    rows += [session(LAPTOP, 50000, APPSERVER1, 22, "tcp", reply=False)]
    rows += [session(WEB01, 40000, "10.100.1.6", 53)]
    options = BuilderOptions(categories=CATEGORIES, target_policy="vrf_all_home")
    deny = recommend(_default_drop("drop"), _columns([dict(r) for r in rows]), options)
    [http] = deny.rules
    assert http.rule.services == ("HTTP",) and http.before is None  # at the end, before the default
    assert [(d.rule, d.verdict, d.sessions) for d in http.current_decisions] == [(None, "drop", 2)]
    [attempt] = deny.blocked_attempts
    assert attempt.stopped_by == "drop by the default of policy vrf_all_home"
    assert [a.rule for a in deny.already_allowed] == ["allow_all_DNS"]
    assert deny.quality.coverage == 1.0
    accepted = deny.proposed_policy_set(_default_drop("drop"))
    assert check_connection(accepted, "172.18.6.7", WEB01, "tcp", 80).policy_allows  # any client
    assert not check_connection(accepted, LAPTOP, WEB02, "tcp", 80).policy_allows  # unseen
    assert not check_connection(accepted, LAPTOP, APPSERVER1, "tcp", 22).policy_allows

    allow = recommend(_default_drop("forward"), _columns([dict(r) for r in rows]), options)
    assert [(d.rule, d.verdict) for d in allow.rules[0].current_decisions] == [(None, "forward")]
    assert allow.blocked_attempts[0].stopped_by is None  # the server did not answer

"""The nftables target: passes `nft -c`, loads into a namespace, and enforces the seed's
policy on real forwarded packets (client -> router -> servers in network namespaces)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microseg.compile import compile_device
from microseg.policyfile import load_policy
from microseg.targets.nftables.render import identifier, render_ruleset
from support import EXAMPLES

SWITCH = "andreasm-720xp-home"
needs_root_and_nft = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None, reason="needs root and nft"
)


@pytest.fixture(scope="module")
def home_lab_ruleset() -> str:
    intent = compile_device(load_policy(EXAMPLES / "home-lab.yaml"), SWITCH)
    return render_ruleset(intent)


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def lab():
    """client (wifi 172.18.6.138) -- router -- servers (10.100.1.6 DNS, 10.100.99.50 app)."""
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.skip("needs root and nft")
    tag = uuid.uuid4().hex[:6]
    names = {role: f"ms{role[0]}{tag}" for role in ("client", "router", "servers")}
    for ns in names.values():
        _run("ip", "netns", "add", ns)
    try:
        router, client, servers = names["router"], names["client"], names["servers"]
        _run(
            "ip",
            "link",
            "add",
            "c0",
            "netns",
            client,
            "type",
            "veth",
            "peer",
            "wifi",
            "netns",
            router,
        )
        _run(
            "ip",
            "link",
            "add",
            "s0",
            "netns",
            servers,
            "type",
            "veth",
            "peer",
            "infra",
            "netns",
            router,
        )
        cmds = [
            (router, "ip addr add 172.18.6.1/24 dev wifi"),
            (router, "ip addr add 10.100.1.1/24 dev infra"),
            (router, "ip addr add 10.100.99.1/24 dev infra"),
            (router, "sysctl -qw net.ipv4.ip_forward=1"),
            (client, "ip addr add 172.18.6.138/24 dev c0"),
            (client, "ip route add default via 172.18.6.1"),
            (servers, "ip addr add 10.100.1.6/24 dev s0"),
            (servers, "ip addr add 10.100.99.50/24 dev s0"),
            (servers, "ip route add default via 10.100.1.1"),
        ]
        for ns in names.values():
            for dev in ("lo", "c0", "wifi", "infra", "s0"):
                _run("ip", "-n", ns, "link", "set", dev, "up", check=False)
        for ns, cmd in cmds:
            _run("ip", "netns", "exec", ns, *cmd.split())
        yield names
    finally:
        for ns in names.values():
            _run("ip", "netns", "del", ns, check=False)


def _counters(router: str) -> dict[str, int]:
    listing = _run("ip", "netns", "exec", router, "nft", "-j", "list", "counters")
    result = {}
    for item in json.loads(listing.stdout)["nftables"]:
        counter = item.get("counter")
        if counter and counter["table"] == "microseg":
            result[counter["name"]] = counter["packets"]
    return result


def _udp_request(lab, server: str, port: int) -> bool:
    """Send one UDP datagram from the client to server:port; True if the server got it and
    the client got the reply (both directions forwarded)."""
    server_code = (
        "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
        f"s.bind(('{server}',{port}));s.settimeout(3);print('ready',flush=True);"
        "d,a=s.recvfrom(100);s.sendto(d,a)"
    )
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", lab["servers"], sys.executable, "-c", server_code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout.readline().strip() == "ready"
        client_code = (
            "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(1.5);"
            f"s.sendto(b'hello',('{server}',{port}));"
            "print(s.recvfrom(100)[0].decode())"
        )
        reply = _run(
            "ip", "netns", "exec", lab["client"], sys.executable, "-c", client_code, check=False
        )
        return reply.stdout.strip() == "hello"
    finally:
        receiver.kill()
        receiver.wait()


def test_ruleset_passes_nft_check(home_lab_ruleset, tmp_path):
    if shutil.which("nft") is None:
        pytest.skip("needs nft")
    path = tmp_path / "home-lab.nft"
    path.write_text(home_lab_ruleset)
    check = _run("nft", "-c", "-f", str(path), check=False)
    assert check.returncode == 0, check.stderr


@needs_root_and_nft
def test_ruleset_loads_twice_atomically_and_enforces_the_seed_policy(
    lab, home_lab_ruleset, tmp_path
):
    path = tmp_path / "home-lab.nft"
    path.write_text(home_lab_ruleset)
    router = lab["router"]
    for _ in range(2):  # the second load replaces the first (idempotent)
        loaded = _run("ip", "netns", "exec", router, "nft", "-f", str(path), check=False)
        assert loaded.returncode == 0, loaded.stderr
    tables = _run("ip", "netns", "exec", router, "nft", "list", "tables").stdout
    assert tables.split() == ["table", "inet", "microseg"]

    # A wifi client's DNS query and its reply pass: allow_all_DNS and its -reverse count.
    assert _udp_request(lab, "10.100.1.6", 53)
    counters = _counters(router)
    assert counters["vrf_all_home/allow_all_DNS"] == 1
    assert counters["vrf_all_home/allow_all_DNS-reverse"] == 1
    assert counters["vrf_all_home/drop_all_else_web-app-reverse"] == 0

    # Anything else to appserver1 meets drop_all_else_web-app-reverse and is dropped.
    assert not _udp_request(lab, "10.100.99.50", 9999)
    counters = _counters(router)
    assert counters["vrf_all_home/drop_all_else_web-app-reverse"] == 1
    assert counters["vrf_all_home/allow_all_DNS"] == 1


def _nft_check(text: str, tmp_path) -> None:
    if shutil.which("nft") is None:
        pytest.skip("needs nft")
    path = tmp_path / "ruleset.nft"
    path.write_text(text)
    check = _run("nft", "-c", "-f", str(path), check=False)
    assert check.returncode == 0, check.stderr + text


def test_dual_stack_excepts_services_icmp_and_vrf_dispatch(tmp_path):
    from tests.compile.test_eos_features import BASE

    from microseg.policyfile import load_policy_text

    policy_set = load_policy_text(
        BASE
        + """
rules:
  - {name: web, sources: [dual], services: [WEB, DNS], destinations: any}
  - {name: ping, destinations: [dual], services: [PING, PING6], action: drop, sources: any}
  - {name: gre, sources: [v4only, v6only], services: [GRE], direction: unidirectional, destinations: any}
policies:
  - {name: pblue, id: 2, domain: dc, vrf: blue, rules: [ping]}
  - {name: pall, id: 1, domain: dc, vrf: ALL, rules: [web, gre]}
"""
    )
    ruleset = render_ruleset(compile_device(policy_set, "leaf1"))
    _nft_check(ruleset, tmp_path)
    # dual minus its except-prefixes, exactly: 10.1.0.0/24 except 10.1.0.128/25.
    assert "elements = { 10.1.0.0/25 }" in ruleset
    assert "type ipv6_addr; flags interval;" in ruleset
    # The blue VRF's segment Vlan10 goes to its own policy; everything else to ALL.
    assert 'meta iifname { "Vlan10" } goto policy/pblue' in ruleset
    assert ruleset.index("goto policy/pblue") < ruleset.index("goto policy/pall")
    # Two services -> two nft rules sharing the match's named counter.
    web_rules = [line for line in ruleset.splitlines() if 'comment "web"' in line]
    assert len(web_rules) == 2
    assert all("counter name pall/web " in line for line in web_rules)
    assert "th dport { 80, 443, 8000-8080 }" in web_rules[0] + web_rules[1]
    assert "icmp type { 8 }" in ruleset and "icmpv6 type { 128 }" in ruleset
    assert "meta l4proto 47" in ruleset


def test_monitor_rule_logs_to_its_sessions_nflog_group_and_omit_mirror_drops_it(run_cli, tmp_path):
    example = str(EXAMPLES / "home-lab-monitor.yaml")
    mirrored = run_cli("compile", example, "-d", SWITCH, "--target", "nftables")
    assert mirrored.exit_code == 0, mirrored.stderr
    _nft_check(mirrored.stdout, tmp_path)
    assert mirrored.stdout.splitlines()[1] == (
        "# mirror session andreas-vztx-ALL: nflog group 1, GRE from 10.255.1.10 to 10.255.1.11"
    )
    logged = [line.strip() for line in mirrored.stdout.splitlines() if " log group " in line]
    # Both directions of the monitored rule, and nothing else (the DNS/NTP rules decide
    # their packets first and do not mirror).
    assert logged == [
        "meta nfproto ipv4 ip saddr @v4/web-appserver1 counter name "
        "vrf_all_home/web-appserver-discovery log group 1 accept "
        'comment "web-appserver-discovery"',
        "meta nfproto ipv4 ip daddr @v4/web-appserver1 counter name "
        "vrf_all_home/web-appserver-discovery-reverse log group 1 accept "
        'comment "web-appserver-discovery-reverse"',
    ]
    result = run_cli("compile", example, "-d", SWITCH, "--target", "nftables", "--omit-mirror")
    assert result.exit_code == 0, result.stderr
    _nft_check(result.stdout, tmp_path)
    assert "log group" not in result.stdout and "mirror session" not in result.stdout
    assert 'accept comment "web-appserver-discovery"' in result.stdout


def test_nftables_is_the_default_target_of_an_nftables_device(run_cli, tmp_path):
    from tests.compile.test_eos_features import BASE

    text = BASE.replace("  - name: leaf1\n", "  - name: leaf1\n    platform: nftables\n", 1)
    text += "rules:\n  - {name: r, sources: [v4only], services: [WEB], action: drop, destinations: any}\n"
    text += "policies:\n  - {name: p, id: 1, domain: dc, vrf: ALL, rules: [r]}\n"
    path = tmp_path / "linux.yaml"
    path.write_text(text)
    result = run_cli("compile", str(path), "--device", "leaf1", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["target"] == "nftables"
    assert "table inet microseg {" in data["config"]
    eos = run_cli("compile", str(path), "--device", "leaf1", "--target", "eos")
    assert eos.exit_code == 1
    assert "platform 'nftables', not eos" in eos.stderr


def test_long_names_fit_nft_limits(tmp_path):
    # nft takes set, chain and counter names of at most 255 bytes and comments of at most
    # 128: a side of many long-named groups and a long rule name must still load.
    from microseg.model import PolicySet

    groups = [
        {"name": f"group-{i:02d}-" + "x" * 40, "prefixes": [f"10.0.{i}.0/24"]} for i in range(8)
    ]
    rule = "r" * 140 + "-é"
    policy_set = PolicySet.model_validate(
        {
            "devices": [{"name": "r1", "platform": "nftables"}],
            "domains": [{"name": "dc", "devices": ["r1"]}],
            "groups": groups,
            "rules": [
                {
                    "name": rule,
                    "sources": [g["name"] for g in groups],
                    "destinations": "any",
                    "services": "any",
                    "action": "drop",
                }
            ],
            "policies": [{"name": "p" * 200, "id": 1, "domain": "dc", "rules": [rule]}],
        }
    )
    ruleset = render_ruleset(compile_device(policy_set, "r1"))
    _nft_check(ruleset, tmp_path)
    # Still one distinct counter per match and one set per side.
    assert len([line for line in ruleset.splitlines() if line.startswith("\tcounter ")]) == 2


def test_names_with_unicode_and_nft_punctuation_are_quoted_comments_nft_loads(tmp_path):
    # nft(8): a comment is a single word or a double-quoted string; inside the quotes `#`
    # (nft's comment sign), `;` and braces are the string's own, and so is UTF-8. Only a
    # quote or a line break cannot be said (the renderer refuses those).
    from microseg.model import PolicySet

    rule = "ssh café#;{x}"
    policy_set = PolicySet.model_validate(
        {
            "devices": [{"name": "r1", "platform": "nftables"}],
            "domains": [{"name": "dc", "devices": ["r1"]}],
            "rules": [{"name": rule, "sources": "any", "destinations": "any", "services": "any"}],
            "policies": [{"name": "política;#", "id": 1, "domain": "dc", "rules": [rule]}],
        }
    )
    ruleset = render_ruleset(compile_device(policy_set, "r1"))
    assert f'comment "{rule}"' in ruleset and 'comment "política;#"' in ruleset
    _nft_check(ruleset, tmp_path)


def test_a_default_drop_policy_ends_its_chain_with_counted_drops_per_family(tmp_path):
    from tests.compile.test_eos_features import BASE

    from microseg.policyfile import load_policy_text

    policy_set = load_policy_text(
        BASE
        + """
rules:
  - {name: web, sources: [dual], destinations: any, services: [WEB]}
policies:
  - {name: pall, id: 1, domain: dc, vrf: ALL, rules: [web], default_action: drop}
"""
    )
    ruleset = render_ruleset(compile_device(policy_set, "leaf1"))
    _nft_check(ruleset, tmp_path)
    chain = ruleset.split("chain policy/pall {")[1].split("\t}")[0].strip().splitlines()
    assert [line.strip() for line in chain[-2:]] == [
        'meta nfproto ipv4 counter name pall/ipv4-all-default drop comment "ipv4-all-default"',
        'meta nfproto ipv6 counter name pall/ipv6-all-default drop comment "ipv6-all-default"',
    ]


_NAME_TEXT = st.text(
    alphabet=st.sampled_from("ab_-+/. é☃0" + "\u00a0"), min_size=1, max_size=12
) | st.sampled_from(["a" * 300, "a" * 299 + "b", "v4", "drop", "a.2b.b", "x-reverse"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_NAME_TEXT, min_size=1, max_size=3), st.lists(_NAME_TEXT, min_size=1, max_size=3))
def test_identifiers_are_injective_and_within_nft_limits(first, second):
    one, other = identifier(*first), identifier(*second)
    assert (one == other) == (first == second)
    for name in (one, other):
        assert len(name.encode()) <= 255
        assert re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_./-]*", name), name


def test_identifiers_nft_takes_for_sets_counters_and_chains(tmp_path):
    names = [("v4", "a+b"), ("v4", "a", "b"), ("1 p", "drop"), ("policy", "é" * 200)]
    lines = ["table inet t {"]
    for parts in names:
        name = identifier(*parts)
        lines += [
            f"\tset {name} {{ type ipv4_addr; flags interval; }}",
            f"\tcounter {name} {{ }}",
            f"\tchain {name} {{",
            f"\t\tip saddr @{name} counter name {name} accept",
            "\t}",
        ]
    lines += ["\tchain base {", *[f"\t\tgoto {identifier(*p)}" for p in names[:1]], "\t}", "}"]
    _nft_check("\n".join(lines) + "\n", tmp_path)


def test_a_logged_default_drop_logs_in_nftables_too(tmp_path):
    from tests.compile.test_eos_features import BASE

    from microseg.policyfile import load_policy_text

    policy_set = load_policy_text(
        BASE
        + "rules:\n  - {name: web, sources: [dual], destinations: any, services: [WEB]}\n"
        + "policies:\n  - {name: pall, id: 1, domain: dc, vrf: ALL, rules: [web], "
        + "default_action: drop, default_log: true}\n"
    )
    ruleset = render_ruleset(compile_device(policy_set, "leaf1"))
    _nft_check(ruleset, tmp_path)
    assert (
        'meta nfproto ipv4 counter name pall/ipv4-all-default log prefix "microseg default '
        'drop: " drop comment "ipv4-all-default"'
    ) in ruleset

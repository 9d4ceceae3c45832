"""EOS renderer beyond the seed: IPv6, except-prefixes, direction, services, ICMP, redirect,
decap, several VRFs, monitor sessions and the monitor node."""

from __future__ import annotations

import textwrap

import pytest

from microseg.compile import CompileError, compile_all, compile_device
from microseg.compile.eos import render_device
from microseg.model import Device, PolicyError
from microseg.policyfile import load_policy, load_policy_text
from microseg.targets.render import render_config
from support import EXAMPLES

BASE = """
devices:
  - name: leaf1
    loopback_address: 10.255.0.1
    segments:
      - {name: Vlan10, vrf: blue, subnets: [10.1.0.0/24]}
domains:
  - name: dc
    devices: [leaf1]
    vrfs: [default, blue]
groups:
  - name: dual
    prefixes: [10.1.0.0/24, "2001:db8:1::/64"]
    except_prefixes: [10.1.0.128/25, "2001:db8:1::/80"]
  - name: v4only
    prefixes: [10.2.0.0/16]
  - name: v6only
    prefixes: ["2001:db8:2::/48"]
services:
  - {name: WEB, protocol: tcp, destination_ports: [80, 443, 8000-8080]}
  - {name: DNS, protocol: udp, destination_ports: [domain], source_ports: [1024-65535]}
  - {name: PING, protocol: icmp, icmp_types: [echo]}
  - {name: PING6, protocol: icmpv6, icmp_types: [echo-request]}
  - {name: GRE, protocol: 47}
  - {name: ANYTHING, protocol: any}
redirect_objects:
  - {name: fw, next_hops: [192.0.2.1, 192.0.2.2, "2001:db8::1"]}
  - {name: v4fw, next_hops: [192.0.2.9]}
"""


def compile_text(rules: str, policies: str, device: str = "leaf1") -> str:
    text = BASE + textwrap.dedent(rules) + textwrap.dedent(policies)
    policy_set = load_policy_text(text)
    return render_device(compile_device(policy_set, device))


def one_policy(rules: str, names: list[str], vrf: str = "ALL") -> str:
    policies = f"""
policies:
  - name: p1
    id: 7
    domain: dc
    vrf: {vrf}
    rules: [{", ".join(names)}]
"""
    return compile_text("rules:\n" + textwrap.dedent(rules), policies)


def block(text: str, header: str) -> list[str]:
    """The lines of the sub-mode that starts with `header` (up to the next `!`)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == header)
    indent = len(lines[start]) - len(lines[start].lstrip())
    body = []
    for line in lines[start + 1 :]:
        if len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line.strip())
    return body


def test_a_dual_stack_group_yields_ipv4_and_ipv6_field_sets_and_matches_with_excepts():
    out = one_policy(
        """
  - {name: web, sources: [dual], services: [WEB], destinations: any}
""",
        ["web"],
    )
    assert block(out, "field-set ipv4 prefix dual") == ["10.1.0.0/24", "except 10.1.0.128/25"]
    assert block(out, "field-set ipv6 prefix dual") == ["2001:db8:1::/64", "except 2001:db8:1::/80"]
    names = [line.strip() for line in out.splitlines() if line.strip().startswith("match ")]
    assert names == [
        "match web ipv4",
        "match web-reverse ipv4",
        "match web-ipv6 ipv6",
        "match web-ipv6-reverse ipv6",
        "match ipv4-all-default ipv4",
        "match ipv6-all-default ipv6",
    ]
    assert "source prefix field-set dual" in block(out, "match web-ipv6 ipv6")
    assert "destination prefix field-set dual" in block(out, "match web-ipv6-reverse ipv6")


def test_several_ports_and_ranges_print_in_one_service_line_with_keywords():
    out = one_policy(
        "  - {name: web, destinations: [v4only], services: [WEB, DNS], sources: any}\n", ["web"]
    )
    assert block(out, "field-set service WEB") == [
        "protocol tcp source port all destination port www https 8000-8080"
    ]
    assert block(out, "field-set service DNS-reverse") == [
        "protocol udp source port domain destination port 1024-65535"
    ]
    assert "protocol service field-set DNS WEB" in block(out, "match web ipv4")
    assert "protocol service field-set DNS-reverse WEB-reverse" in block(
        out, "match web-reverse ipv4"
    )


def test_unidirectional_rule_has_no_reverse_match_nor_reverse_field_set():
    out = one_policy(
        "  - {name: oneway, sources: [v4only], services: [WEB], direction: unidirectional, destinations: any}\n",
        ["oneway"],
    )
    assert "match oneway ipv4" in out
    assert "oneway-reverse" not in out
    assert "WEB-reverse" not in out


def test_icmp_only_meets_ipv4_and_its_reverse_is_the_echo_reply():
    out = one_policy(
        "  - {name: ping, destinations: [dual], services: [PING], sources: any}\n", ["ping"]
    )
    assert block(out, "field-set service PING") == ["protocol icmp type 8 code all"]
    assert block(out, "field-set service PING-reverse") == ["protocol icmp type 0 code all"]
    assert "ping-ipv6" not in out  # ICMP is IPv4 only
    out6 = one_policy(
        "  - {name: ping, destinations: [dual], services: [PING6], sources: any}\n", ["ping"]
    )
    assert block(out6, "field-set service PING6") == ["protocol icmpv6 type 128 code all"]
    assert "match ping ipv4" not in out6
    assert "match ping-ipv6 ipv6" in out6


def test_protocol_number_and_any_protocol():
    out = one_policy(
        """
  - {name: gre, sources: [v4only], services: [GRE], destinations: any}
  - {name: all, sources: [v4only], services: [ANYTHING, GRE], destinations: any}
""",
        ["gre", "all"],
    )
    assert block(out, "field-set service GRE") == ["protocol 47"]
    assert block(out, "field-set service GRE-reverse") == ["protocol 47"]
    # A service of protocol any makes the rule match every protocol: no protocol line.
    assert not any(line.startswith("protocol") for line in block(out, "match all ipv4"))


def test_redirect_uses_the_next_hops_of_the_matching_family():
    out = one_policy(
        "  - {name: tofw, sources: [dual], action: redirect, redirect: fw, destinations: any, services: any}\n",
        ["tofw"],
    )
    assert block(out, "match tofw ipv4")[-1] == "redirect next-hop 192.0.2.1 192.0.2.2"
    assert block(out, "match tofw-ipv6 ipv6")[-1] == "redirect next-hop 2001:db8::1"


@pytest.mark.parametrize(
    ("decap", "line"),
    [("vxlan-decap-only", "vxlan decap"), ("no-vxlan-decap", "vxlan decap exclude")],
)
def test_decap_types_render_as_packet_type_vxlan(decap, line):
    out = one_policy(
        f"  - {{name: d, sources: [v4only], destinations: any, services: any, decap_type: {decap}}}\n",
        ["d"],
    )
    assert block(out, "packet type") == [line]
    allow_all = one_policy(
        "  - {name: d, sources: [v4only], destinations: any, services: any}\n", ["d"]
    )
    assert "packet type" not in allow_all


def test_each_vrf_gets_its_own_binding_sorted():
    rules = "rules:\n  - {name: r1, sources: [v4only], destinations: any, services: any}\n  - {name: r2, sources: [v6only], destinations: any, services: any}\n"
    policies = """
policies:
  - {name: pblue, id: 2, domain: dc, vrf: blue, rules: [r2]}
  - {name: pall, id: 1, domain: dc, vrf: ALL, rules: [r1]}
"""
    out = compile_text(rules, policies)
    head = out.splitlines()[:7]
    assert head == [
        "traffic-policies",
        "   vrf ALL",
        "      traffic-policy input pall physical",
        "   !",
        "   vrf blue",
        "      traffic-policy input pblue physical",
        "   !",
    ]
    assert "   traffic-policy pall" in out and "   traffic-policy pblue" in out


def test_output_is_deterministic():
    policy_set = load_policy(EXAMPLES / "home-lab.yaml")
    first = render_config(policy_set, "andreasm-720xp-home", None, compile_all(policy_set))
    again = render_config(policy_set, "andreasm-720xp-home", None, compile_all(policy_set))
    assert first == again


def test_monitored_matches_mirror_to_the_gre_session_of_the_seed(run_cli):
    result = run_cli(
        "compile", str(EXAMPLES / "home-lab-monitor.yaml"), "--device", "andreasm-720xp-home"
    )
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for match in ("web-appserver-discovery", "web-appserver-discovery-reverse"):
        assert block(out, f"match {match} ipv4")[-2:] == [
            "count",
            "mirror session andreas-vztx-ALL",
        ]
    assert "mirror session" not in "".join(block(out, "match allow_all_DNS ipv4"))
    assert (
        "monitor session andreas-vztx-ALL destination tunnel mode gre "
        "source 10.255.1.10 destination 10.255.1.11\n"
    ) in out
    assert "monitor session andreas-vztx-ALL rate-limit per-ingress-chip 100000 kbps\n" in out


def test_the_mirror_rate_limit_is_written_in_its_own_unit():
    text = (EXAMPLES / "home-lab-monitor.yaml").read_text()
    assert "rate_limit: 100000 kbps" in text
    policy_set = load_policy_text(text.replace("rate_limit: 100000 kbps", "rate_limit: 40 mbps"))
    out = render_device(compile_device(policy_set, "andreasm-720xp-home"))
    assert "monitor session andreas-vztx-ALL rate-limit per-ingress-chip 40 mbps\n" in out


def test_monitor_node_gets_the_gre_tunnel_and_flow_tracking_of_the_seed(run_cli):
    result = run_cli("compile", str(EXAMPLES / "home-lab-monitor.yaml"), "--device", "andreas-ztx1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == textwrap.dedent(
        """\
        interface Tunnel0
           description mirror from andreasm-720xp-home
           tunnel mode gre
           tunnel source interface Loopback0
           tunnel destination 10.255.1.10
           flow tracker firewall distributed flowtrkr
        !
        flow tracking firewall distributed
           tracker flowtrkr
              record export on inactive timeout 15000
              record export on interval 1800000
              exporter exp
                 collector 127.0.0.1 port 4739
                 format ipfix version 10
                 local interface Loopback0
           no shutdown
        !
        """
    )


def test_monitor_node_collector_is_configurable(run_cli):
    result = run_cli(
        "compile",
        str(EXAMPLES / "home-lab-monitor.yaml"),
        "--device",
        "andreas-ztx1",
        "--collector",
        "192.0.2.10:2055",
    )
    assert "collector 192.0.2.10 port 2055\n" in result.stdout
    bad = run_cli(
        "compile", str(EXAMPLES / "home-lab-monitor.yaml"), "-d", "andreas-ztx1", "--collector", "x"
    )
    assert bad.exit_code == 1 and "not an IP address" in bad.stderr


def test_json_output_carries_the_configuration(run_cli):
    import json

    result = run_cli(
        "compile", str(EXAMPLES / "home-lab.yaml"), "-d", "andreasm-720xp-home", "--json"
    )
    data = json.loads(result.stdout)
    assert data["target"] == "eos" and data["config"].startswith("traffic-policies\n")


def test_a_default_drop_policy_drops_on_both_default_matches_and_counts():
    # AVD: traffic_policies.policies[].default_actions.ipv4|ipv6 {count, drop}, rendered
    # under the default match with no `!` before `actions`.
    rules = """
    rules:
      - {name: web, sources: [v4only], destinations: any, services: [WEB]}
    """
    policies = """
    policies:
      - {name: p1, id: 7, domain: dc, vrf: ALL, rules: [web], default_action: drop}
    """
    out = compile_text(rules, policies)
    tail = out.split("match web-reverse ipv4")[1].splitlines()
    start = tail.index("      match ipv4-all-default ipv4")
    assert tail[start:] == [
        "      match ipv4-all-default ipv4",
        "         actions",
        "            count",
        "            drop",
        "      !",
        "      match ipv6-all-default ipv6",
        "         actions",
        "            count",
        "            drop",
        "!",
    ]


def test_a_bidirectional_rule_whose_reverse_is_itself_compiles_to_one_match():
    out = one_policy(
        """
  - {name: mesh, sources: [v4only], destinations: [v4only], services: any}
  - {name: gre, sources: [dual], destinations: [dual], services: [GRE]}
  - {name: web, sources: [v4only], destinations: [v4only], services: [WEB]}
  - {name: across, sources: [v4only], destinations: [dual], services: any}
""",
        ["mesh", "gre", "web", "across"],
    )
    matches = [line.split()[1] for line in out.splitlines() if line.startswith("      match ")]
    assert matches == [
        "mesh",  # any service between one group and itself: the reverse is the same match
        "gre",  # GRE has no ports to swap
        "gre-ipv6",
        "web",  # port 80 on one side only: the reverse differs
        "web-reverse",
        "across",  # different groups on each side
        "across-reverse",
        "ipv4-all-default",
        "ipv6-all-default",
    ]
    assert "field-set service GRE-reverse" not in out


def test_field_set_prefixes_print_in_address_order_whatever_the_written_order():
    shuffled = BASE.replace(
        "prefixes: [10.2.0.0/16]",
        "prefixes: [10.2.0.0/16, 10.10.0.0/16, 10.2.0.0/24, 9.0.0.0/8, 10.2.0.0/16]",
    ).replace(
        'prefixes: ["2001:db8:2::/48"]',
        'prefixes: ["2001:db8:2::/48", "2001:db8:1::/48"]',
    )
    rules = "rules:\n  - {name: r, sources: [v4only], destinations: any, services: any}\n"
    rules += "  - {name: r6, sources: [v6only], destinations: any, services: any}\n"
    policies = "policies:\n  - {name: p1, id: 7, domain: dc, vrf: ALL, rules: [r, r6]}\n"
    out = render_device(compile_device(load_policy_text(shuffled + rules + policies), "leaf1"))
    assert block(out, "field-set ipv4 prefix v4only") == [
        "9.0.0.0/8 10.2.0.0/16 10.2.0.0/24 10.10.0.0/16"
    ]
    assert block(out, "field-set ipv6 prefix v6only") == ["2001:db8:1::/48 2001:db8:2::/48"]


def _monitor_lab(switches: dict[str, int | None]) -> str:
    """A monitor node and one mirroring switch per entry (name -> monitor_tunnel or None)."""
    devices = "".join(
        f"  - {{name: {name}, loopback_address: 10.255.0.{index + 1}"
        + (f", monitor_tunnel: {number}" if number is not None else "")
        + "}\n"
        for index, (name, number) in enumerate(switches.items())
    )
    return (
        "devices:\n"
        + devices
        + "monitor_nodes:\n  - {name: ztx, loopback_address: 10.255.0.100}\n"
        + f"domains:\n  - {{name: dc, devices: [{', '.join(switches)}]}}\n"
        + "monitor_objects:\n"
        + "  - {name: mon, tunnel_destination: 10.255.0.100, monitor_nodes: [ztx]}\n"
        + "rules:\n  - {name: watch, sources: any, destinations: any, services: any, "
        + "monitor: mon}\n"
        + "policies:\n  - {name: p, id: 1, domain: dc, rules: [watch]}\n"
    )


def _tunnels(text: str) -> dict[str, str]:
    """switch -> its `interface TunnelN` on the monitor node."""
    policy_set = load_policy_text(text)
    config, _ = render_config(policy_set, "ztx", None, compile_all(policy_set))
    lines = config.splitlines()
    return {
        lines[i + 1].removeprefix("   description mirror from "): lines[i]
        for i, line in enumerate(lines)
        if line.startswith("interface Tunnel")
    }


def test_adding_or_removing_a_switch_never_renumbers_another_switchs_tunnel():
    before = _tunnels(_monitor_lab({"leaf-b": None, "leaf-d": None}))
    added = _tunnels(_monitor_lab({"leaf-a": None, "leaf-b": None, "leaf-c": None, "leaf-d": None}))
    removed = _tunnels(_monitor_lab({"leaf-d": None}))
    assert {name: added[name] for name in before} == before
    assert removed == {"leaf-d": before["leaf-d"]}
    # Sorted by switch name they would have been Tunnel0 and Tunnel1 before and shifted
    # by the additions; the derived numbers come from each switch's own name.
    assert len(set(added.values())) == 4


def test_an_explicit_monitor_tunnel_is_used_and_two_switches_on_one_number_are_refused():
    assert _tunnels(_monitor_lab({"leaf-a": 7, "leaf-b": 3})) == {
        "leaf-a": "interface Tunnel7",
        "leaf-b": "interface Tunnel3",
    }
    with pytest.raises(PolicyError, match="monitor tunnel 7 is also device 'leaf-a'"):
        load_policy_text(_monitor_lab({"leaf-a": 7, "leaf-b": 7}))
    # An explicit number equal to another switch's derived one: refused when compiling.
    derived = Device(name="leaf-b").monitor_tunnel_id
    with pytest.raises(CompileError, match=f"both get Tunnel{derived}.*set a distinct"):
        _tunnels(_monitor_lab({"leaf-a": derived, "leaf-b": None}))


def test_a_logged_default_drop_logs_after_dropping_and_needs_a_drop():
    rules = "rules:\n  - {name: web, sources: [v4only], destinations: any, services: [WEB]}\n"
    policies = (
        "policies:\n  - {name: p1, id: 7, domain: dc, vrf: ALL, rules: [web], "
        "default_action: drop, default_log: true}\n"
    )
    out = compile_text(rules, policies)
    assert block(out, "match ipv6-all-default ipv6") == ["actions", "count", "drop", "log"]
    with pytest.raises(PolicyError, match="default_log needs default_action: drop"):
        compile_text(rules, policies.replace("default_action: drop", "default_action: forward"))

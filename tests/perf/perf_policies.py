"""A large generated policy that exercises every compile path, and its compiled texts."""

from __future__ import annotations

import hashlib
import ipaddress

from microseg.compile import compile_all
from microseg.model import PolicySet
from microseg.targets.eos.render import render_device
from microseg.targets.nftables.render import render_ruleset


def _ipv4(index: int, side: int) -> list[str]:
    base = int(ipaddress.ip_address("10.0.0.0")) + (index * 2 + side) * 256
    return [str(ipaddress.ip_network((base + 32 * k, 27))) for k in range(1 + index % 4)]


def large_policy_document(n_rules: int, redirect: bool = True) -> dict:
    """n_rules rules over dual-stack and except-carrying groups; services by number, name,
    range, ICMP type and `any`; both directions; drop, monitor and (if `redirect`, which
    nftables cannot do) redirect."""
    groups, services, rules = [], [], []
    for index in range(n_rules):
        sources = {"name": f"src{index}", "prefixes": _ipv4(index, 0)}
        destinations = {"name": f"dst{index}", "prefixes": _ipv4(index, 1)}
        if index % 5 == 0:  # dual stack
            sources["prefixes"] += [f"2001:db8:{index:x}::/64"]
            destinations["prefixes"] += [f"2001:db8:{index:x}:1::/64", f"fd00:{index:x}::/48"]
        if index % 7 == 0:
            sources["except_prefixes"] = [sources["prefixes"][0].replace("/27", "/30")]
        groups += [sources, destinations]
        kind = index % 6
        if kind == 0:
            service = {"protocol": "tcp", "destination_ports": [index % 60000 + 1024]}
        elif kind == 1:
            service = {"protocol": "udp", "destination_ports": ["domain", "ntp", 5000 + index]}
        elif kind == 2:
            service = {"protocol": "tcp", "destination_ports": ["1024-2048", "www", 2049]}
        elif kind == 3:
            service = {"protocol": "tcp", "source_ports": ["ssh"], "destination_ports": "all"}
        elif kind == 4:
            service = {"protocol": "icmp", "icmp_types": ["echo", 13]}
        else:
            service = {"protocol": "any"}
        services.append({"name": f"svc{index}", **service})
        rule = {
            "name": f"rule{index}",
            "sources": [f"src{index}"],
            "destinations": [f"dst{index}"] if index % 9 else "any",
            "services": [f"svc{index}"],
            "direction": "bidirectional" if index % 4 in (1, 2) else "unidirectional",
            "description": f"rule number {index}" if index % 3 == 0 else "",
        }
        if index % 4 == 0:
            rule["services"].append(f"svc{(index + 1) % n_rules}")
        if redirect and index % 11 == 0:
            rule |= {"action": "redirect", "redirect": "firewall"}
        elif index % 3 == 0:
            rule["action"] = "drop"
        if index % 13 == 0:
            rule["monitor"] = "vztx"
        rules.append(rule)
    return {
        "devices": [
            {"name": "leaf1", "loopback_address": "192.0.2.1"},
            {"name": "leaf2", "loopback_address": "192.0.2.2"},
        ],
        "monitor_nodes": [{"name": "vztx1", "loopback_address": "192.0.2.100"}],
        "domains": [{"name": "dc", "devices": ["leaf1", "leaf2"], "vrfs": ["default", "blue"]}],
        "groups": groups,
        "services": services,
        "monitor_objects": [
            {"name": "vztx", "tunnel_destination": "192.0.2.100", "monitor_nodes": ["vztx1"]}
        ],
        "redirect_objects": [{"name": "firewall", "next_hops": ["192.0.2.9", "2001:db8::9"]}],
        "rules": rules,
        "policies": [
            {
                "name": "main",
                "id": 1,
                "domain": "dc",
                "vrf": "ALL",
                "rules": [r["name"] for r in rules],
            },
            {"name": "blue", "id": 2, "domain": "dc", "vrf": "blue", "rules": ["rule1", "rule2"]},
        ],
    }


def compiled_texts(n_rules: int) -> dict[str, str]:
    """Every device's EOS configuration of the large policy and its nftables ruleset
    (without redirects and mirroring, which nftables cannot do), each compiled from a
    freshly validated PolicySet."""
    texts = {}
    for device, intent in compile_all(
        PolicySet.model_validate(large_policy_document(n_rules))
    ).items():
        texts[f"{device}.eos"] = render_device(intent)
    for device, intent in compile_all(
        PolicySet.model_validate(large_policy_document(n_rules, redirect=False))
    ).items():
        texts[f"{device}.nft"] = render_ruleset(intent, omit_mirror=True)
    return texts


def digest(texts: dict[str, str]) -> str:
    return hashlib.sha256(repr(sorted(texts.items())).encode()).hexdigest()

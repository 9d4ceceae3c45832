"""Policy builder quality and speed on a synthetic enterprise with a known intended policy.

The enterprise: 40 applications x 3 tiers (web, app, db), shared infrastructure (DNS/NTP
servers, LDAP), 2,000 clients in 4 categorised client groups, the internet. The intended
policy is a set of (source group, destination group, service) dependencies; sessions are
generated from it (1,000,000 by default), plus noise: a port scan nobody answers, half-open
attempts, and a few answered one-off connections the intended policy does not allow (admins
ssh-ing into servers). The builder runs with the categories selected.

Figures (one JSON line):
* recall: intended (source group, destination group, service) triples the recommended rules
  allow / intended triples (target 100%);
* precision: recommended triples the intended policy allows / recommended triples (>= 95%);
* rules_ratio: recommended rules / intended rules (<= 1.2);
* coverage: the builder's own evaluator-verified coverage (100%);
* seconds: wall time of the builder for all sessions (read columns, aggregate, verify with the
  compiler and evaluator) (< 5 s for 1M); aggregate_seconds: the aggregation alone;
* baseline_seconds: the same aggregation as a per-session Python dict loop, in the same run;
  speedup = baseline_seconds / aggregate_seconds.

Run: .venv/bin/python bench/recommend.py [--sessions N]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from microseg.builder import BuilderOptions, recommend
from microseg.builder.endpoints import map_endpoints
from microseg.builder.recommend import aggregate, domain_segments
from microseg.flows.session_columns import session_columns
from microseg.model import (
    Category,
    Device,
    Group,
    Policy,
    PolicySet,
    SecurityDomain,
    Segment,
    Service,
)

APPS = 40
CLIENT_GROUPS = 4
CLIENTS_PER_GROUP = 500
HOSTS_PER_TIER = {"web": 4, "app": 4, "db": 2}
TIER_OCTET = {"web": 1, "app": 2, "db": 3}
CATEGORIES = ("clients", "applications", "infrastructure")
INTERNET_HOSTS = ("91.189.91.81", "185.125.190.36", "151.101.2.132")


@dataclass
class Enterprise:
    policy_set: PolicySet
    hosts: dict[str, list[str]]  # group -> member addresses
    intended: list[tuple[str, str, str, float]]  # (source, destination, service, weight)
    intended_rules: int
    services: dict[str, tuple[str, int]]  # service -> (protocol, port)


def build_enterprise() -> Enterprise:
    hosts: dict[str, list[str]] = {}
    groups: list[Group] = []
    for app in range(APPS):
        for tier, count in HOSTS_PER_TIER.items():
            name = f"app{app:02d}-{tier}"
            hosts[name] = [f"10.{TIER_OCTET[tier]}.{app}.{h + 1}" for h in range(count)]
            groups.append(_group(name, hosts[name], "applications"))
    for number in range(CLIENT_GROUPS):
        name = f"clients-{number}"
        hosts[name] = [
            str(ipaddress.ip_address(f"10.200.{2 * number}.0") + 1 + h)
            for h in range(CLIENTS_PER_GROUP)
        ]
        groups.append(
            Group(name=name, prefixes=(f"10.200.{2 * number}.0/23",), categories=("clients",))
        )
    hosts["dns-ntp"] = ["10.0.0.53", "10.0.1.53"]
    hosts["ldap"] = ["10.0.0.89", "10.0.1.89"]
    groups += [
        _group("dns-ntp", hosts["dns-ntp"], "infrastructure"),
        _group("ldap", hosts["ldap"], "infrastructure"),
    ]
    hosts["internet"] = list(INTERNET_HOSTS)
    services = {"DNS": ("udp", 53), "NTP": ("udp", 123), "LDAP": ("tcp", 389)}
    services |= {"HTTPS": ("tcp", 443), "POSTGRESQL": ("tcp", 5432)}
    services |= {f"app{a:02d}-api": ("tcp", 8000 + a) for a in range(APPS)}
    service_objects = tuple(
        Service(name=n, protocol=p, destination_ports=(port,)) for n, (p, port) in services.items()
    )
    intended: list[tuple[str, str, str, float]] = []
    rules = 0
    servers = [f"app{a:02d}-{t}" for a in range(APPS) for t in HOSTS_PER_TIER]
    # Shared infrastructure: every server resolves names and keeps time (one rule),
    # app tiers authenticate against LDAP (one rule).
    intended += [(s, "dns-ntp", svc, 0.4) for s in servers for svc in ("DNS", "NTP")]
    intended += [(f"app{a:02d}-app", "ldap", "LDAP", 0.3) for a in range(APPS)]
    rules += 2
    # Clients use the apps their group subscribes to (one rule per client group), every
    # client group resolves names (one rule), web tiers fetch updates (one rule).
    for number in range(CLIENT_GROUPS):
        for app in range(APPS):
            if app % CLIENT_GROUPS == number or app % 5 == 0:
                intended.append((f"clients-{number}", f"app{app:02d}-web", "HTTPS", 3.0))
        intended.append((f"clients-{number}", "dns-ntp", "DNS", 1.0))
    rules += CLIENT_GROUPS + 1
    intended += [(f"app{a:02d}-web", "internet", "HTTPS", 0.1) for a in range(APPS)]
    rules += 1
    # Each application's own tiers: web -> app on its API port, app -> db on PostgreSQL.
    for app in range(APPS):
        intended.append((f"app{app:02d}-web", f"app{app:02d}-app", f"app{app:02d}-api", 2.0))
        intended.append((f"app{app:02d}-app", f"app{app:02d}-db", "POSTGRESQL", 2.0))
        rules += 2
    device = Device(
        name="dc-leaf1",
        platform="eos",
        segments=(
            Segment(name="apps", subnets=("10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16")),
            Segment(name="infra", subnets=("10.0.0.0/16",)),
            Segment(name="campus", subnets=("10.200.0.0/16", "10.250.0.0/16")),
        ),
    )
    policy_set = PolicySet(
        devices=(device,),
        domains=(SecurityDomain(name="dc", devices=("dc-leaf1",)),),
        categories=tuple(Category(name=c) for c in CATEGORIES),
        groups=tuple(groups),
        services=service_objects,
        policies=(Policy(name="enterprise", id=1, domain="dc"),),
    )
    return Enterprise(policy_set, hosts, intended, rules, services)


def _group(name: str, members: list[str], category: str) -> Group:
    return Group(name=name, prefixes=tuple(f"{m}/32" for m in members), categories=(category,))


def generate_sessions(enterprise: Enterprise, count: int, seed: int = 1) -> tuple[pa.Table, int]:
    """`count` session rows from the intended dependencies plus noise, as a session table."""
    rng = np.random.default_rng(seed)
    addresses = sorted({a for members in enterprise.hosts.values() for a in members})
    addresses += ["10.250.0.7", "10.250.0.8"]  # a scanner and an admin laptop (no group)
    position = {a: i for i, a in enumerate(addresses)}
    weights = np.array([w for *_, w in enterprise.intended])
    noise = count // 100
    chosen = rng.choice(len(enterprise.intended), size=count - noise, p=weights / weights.sum())
    src = np.empty(count, dtype=np.int32)
    dst = np.empty(count, dtype=np.int32)
    protocol = np.empty(count, dtype=object)
    dport = np.empty(count, dtype=np.int32)
    for index, (source, destination, service, _) in enumerate(enterprise.intended):
        rows = np.flatnonzero(chosen == index)
        members_s = np.array([position[a] for a in enterprise.hosts[source]])
        members_d = np.array([position[a] for a in enterprise.hosts[destination]])
        src[rows] = members_s[rng.integers(0, len(members_s), len(rows))]
        dst[rows] = members_d[rng.integers(0, len(members_d), len(rows))]
        protocol[rows], dport[rows] = enterprise.services[service]
    # Noise: a port scan (SYNs to servers on random ports, no answer) ...
    scan = np.arange(count - noise, count)
    servers = np.array([position[a] for g, m in enterprise.hosts.items() if "-" in g for a in m])
    src[scan] = position["10.250.0.7"]
    dst[scan] = servers[rng.integers(0, len(servers), noise)]
    protocol[scan] = "tcp"
    dport[scan] = rng.integers(1, 10000, noise)
    replied = np.ones(count, dtype=bool)
    replied[scan] = False
    # ... and a few answered one-offs the intended policy does not allow: ssh from an admin
    # laptop and from clients into app servers.
    one_offs = scan[:6]
    src[one_offs[:3]] = position["10.250.0.8"]
    src[one_offs[3:]] = [position[enterprise.hosts[f"clients-{n}"][7]] for n in range(3)]
    dst[one_offs] = [position[enterprise.hosts[f"app{a:02d}-app"][0]] for a in (3, 9, 27, 3, 9, 27)]
    dport[one_offs] = 22
    replied[one_offs] = True
    sport = rng.integers(49152, 65536, count).astype(np.int32)
    start = np.datetime64("2025-11-19T08:00:00", "ms").astype(np.int64)
    first_seen = start + rng.integers(0, 8 * 3600 * 1000, count)
    table = pa.table(
        {
            "vrf": pa.array(np.full(count, "default")),
            "protocol": pa.array(protocol.astype(str)),
            "src": pa.DictionaryArray.from_arrays(src, addresses).cast(pa.string()),
            "sport": pa.array(sport),
            "dst": pa.DictionaryArray.from_arrays(dst, addresses).cast(pa.string()),
            "dport": pa.array(dport),
            "fwd_packets": pa.array(rng.integers(1, 20, count)),
            "fwd_bytes": pa.array(rng.integers(60, 20000, count)),
            "rev_packets": pa.array(np.where(replied, rng.integers(1, 20, count), 0)),
            "rev_bytes": pa.array(np.where(replied, rng.integers(60, 90000, count), 0)),
            "complete": pa.array(replied.astype(np.int64)),
            "half_open": pa.array((~replied).astype(np.int64)),
            "first_seen": pa.array(first_seen).cast(pa.timestamp("ms", tz="UTC")),
            "last_seen": pa.array(first_seen + 2000).cast(pa.timestamp("ms", tz="UTC")),
        }
    )
    return table, len(one_offs)


def allowed_triples(rules, services_of) -> set[tuple[str, str, str]]:
    return {
        (s, d, svc)
        for rule in rules
        for s in rule.sources
        for d in rule.destinations
        for svc in services_of(rule)
    }


def dict_baseline(enterprise: Enterprise, table: pa.Table) -> tuple[float, int]:
    """The same aggregation as a per-session Python loop (the baseline): server side,
    service, endpoint groups, then per (source group, destination group, service) the
    session count, bytes, first/last seen and distinct host combinations, in dicts."""
    columns = session_columns(table)
    used = np.ones(len(columns.addresses), dtype=bool)
    segments = domain_segments(enterprise.policy_set, "enterprise")
    endpoints = map_endpoints(
        enterprise.policy_set, columns.addresses, used, CATEGORIES, None, segments
    )
    group_of = {
        str(a): endpoints.endpoint(i).name for i, a in enumerate(columns.addresses.addresses)
    }
    service_of = {(p, port): name for name, (p, port) in enterprise.services.items()}
    fields = ["protocol", "src", "sport", "dst", "dport", "complete", "rev_packets"]
    fields += ["fwd_bytes", "rev_bytes", "first_seen", "last_seen"]
    rows = table.select(fields).to_pylist()
    started = time.perf_counter()
    aggregate_rows: dict[tuple, list] = {}
    for row in rows:
        if row["rev_packets"] == 0 and not row["complete"]:
            continue  # an attempt nobody answered
        sport, dport = row["sport"], row["dport"]
        client_is_src = row["complete"] or (dport < 49152 <= sport) or dport <= sport
        if client_is_src:
            client, server, port = row["src"], row["dst"], dport
        else:
            client, server, port = row["dst"], row["src"], sport
        protocol = row["protocol"]
        service = service_of.get((protocol, port), f"{protocol}-{port}")
        key = (group_of[client], group_of[server], service)
        entry = aggregate_rows.get(key)
        if entry is None:
            entry = aggregate_rows[key] = [0, 0, row["first_seen"], row["last_seen"], set()]
        entry[0] += 1
        entry[1] += row["fwd_bytes"] + row["rev_bytes"]
        entry[2] = min(entry[2], row["first_seen"])
        entry[3] = max(entry[3], row["last_seen"])
        entry[4].add((client, server))
    return time.perf_counter() - started, len(aggregate_rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    arguments = parser.parse_args(argv)
    enterprise = build_enterprise()
    table, one_offs = generate_sessions(enterprise, arguments.sessions)
    options = BuilderOptions(categories=CATEGORIES, target_policy="enterprise")

    started = time.perf_counter()
    columns = session_columns(table)
    result = recommend(enterprise.policy_set, columns, options)
    seconds = time.perf_counter() - started

    started = time.perf_counter()
    segments = domain_segments(enterprise.policy_set, "enterprise")
    draft = aggregate(enterprise.policy_set, columns, options, segments, "enterprise")
    aggregate_seconds = time.perf_counter() - started
    baseline_seconds, baseline_rows = dict_baseline(enterprise, table)

    intended = {(s, d, svc) for s, d, svc, _ in enterprise.intended}
    recommended = allowed_triples([r.rule for r in result.rules], lambda rule: rule.services)
    # The internet hosts are outside every group: the builder proposes groups of exactly them.
    outside = {g.name for g in result.new_groups if g.name.startswith("external-")}
    recommended = {(s, "internet" if d in outside else d, svc) for s, d, svc in recommended}
    true_positive = len(recommended & intended)
    figures = {
        "bench": "recommend",
        "sessions": arguments.sessions,
        "intended_rules": enterprise.intended_rules,
        "recommended_rules": len(result.rules),
        "rules_ratio": round(len(result.rules) / enterprise.intended_rules, 3),
        "recall": round(true_positive / len(intended), 4),
        "precision": round(true_positive / len(recommended), 4) if recommended else 0.0,
        "intended_triples": len(intended),
        "recommended_triples": len(recommended),
        "answered_one_offs": one_offs,
        "blocked_attempts": len(result.blocked_attempts),
        "coverage": result.quality.coverage,
        "config_lines": result.quality.config_lines,
        "hardware_entries": [h.entries_after for h in result.quality.hardware],
        "already_allowed": sum(a.sessions for a in result.already_allowed),
        "seconds": round(seconds, 3),
        "aggregate_seconds": round(aggregate_seconds, 3),
        "baseline_seconds": round(baseline_seconds, 3),
        "speedup_vs_dict_loop": round(baseline_seconds / aggregate_seconds, 1),
        "baseline_groups": baseline_rows,
        "aggregate_rules": len(draft.recommendation.rules),
    }
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()

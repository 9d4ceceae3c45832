"""Scale bench: `microseg recommend` over a flow store of up to 100 million sessions, with
DuckDB and with Spark.

1. Generates a data-centre's sessions straight into the flow store's own layout
   (`segments/date=<day>/collector=<id>/seg-*.parquet`, written by `FlowStore.write`, so the
   schema, sort order, names and atomic rename are the collector's), vectorised with numpy
   and pyarrow in batches of at most `--batch` sessions, so memory stays bounded whatever the
   size. The population: 8 pods of 24 leaf switches (192 leaves) with 48 three-tier
   applications (web / app / db, one /24 per tier on its own leaf), 40 racks of batch compute,
   shared infrastructure (DNS, NTP, directory, logging, Kafka, Redis, Elasticsearch,
   monitoring, bastions, NFS), 12,000 users and 20,000 internet clients; about 30 services;
   heavy-tailed talkers (Zipf weights within every group, and across applications); Linux
   client ports (32768-60999) for servers, Windows ones (49152-65535) for users; 4 collectors
   (one monitor node per two pods) and 7 days; noise: a port scanner, failed connections,
   users refused by a drop rule, an admin's one-off ssh. A policy file (`policy.yaml`) holds
   the fabric, groups with categories and policy `dc-prod` with existing allow and drop
   rules and five monitor rules, which scope what `recommend --policy dc-prod` looks at.
2. Stores of increasing sizes (`--sizes`) are prefixes of one generated store: every size is
   one generation round drawn from the same population, and the store of size N is a
   directory of hard links to the segments of the rounds up to N (no extra disk).
3. Times `microseg recommend policy.yaml --store VIEW --policy dc-prod --categories ... --json`
   as a user runs it (a subprocess of the CLI), once per engine and size, measuring wall time
   and the peak resident memory of the whole process tree (the CLI and, for Spark, its JVM),
   polled from /proc every 0.1 s; a run whose tree goes over `--memory-limit` is killed
   (that watchdog is the limit) and counts as not handled.
4. Checks every run: the store holds exactly N sessions; `scoped_sessions` of the
   recommendation equals the sessions the generator knows the monitor rules select (counted
   from its own population, independently of microseg's scope code); both engines' JSON is
   identical.

Prints one JSON line: the store (sessions, bytes, bytes per session, and the rows the engine
returns to `microseg`: the `eph` summary's and, what `recommend` gets, the builder's fold's,
counted by DuckDB where they are made), per size and engine
wall seconds, sessions per second, peak RSS, load average, and the largest store each
engine handled within the memory limit.

Run: .venv/bin/python bench/scale.py [--data DIR] [--sizes 1000000,10000000,30000000,100000000]
     [--engines duckdb,spark] [--spark-master local[2]] [--spark-conf spark.KEY=VALUE]
     [--memory-limit 24G] [--no-rows-back] [--quick]
`--data DIR` keeps the generated store and reuses it on the next run (a larger size adds
rounds to it); without it a temporary directory is used and removed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from microseg.builder.endpoints import address_classes  # noqa: E402
from microseg.builder.scope import scope_from, scope_prefixes  # noqa: E402
from microseg.evaluate.cells import port_cuts  # noqa: E402
from microseg.flows.engines import DuckDBEngine, SessionQuery  # noqa: E402
from microseg.flows.flowstore import FlowStore  # noqa: E402
from microseg.model import (  # noqa: E402
    Category,
    Device,
    Group,
    MonitorNode,
    MonitorObject,
    Policy,
    PolicySet,
    Rule,
    SecurityDomain,
    Segment,
    Service,
)
from microseg.policyfile import load_policy  # noqa: E402
from microseg.policyfile.dumper import dump_policy  # noqa: E402

POPULATION = "dc-v1"  # changes whenever the generated data would change: a store is reused
# only when it was made by the same population and seed
PODS = 8
LEAVES_PER_POD = 24
APPS = 48
BATCH_RACKS_PER_POD = 5
HOSTS_PER_BATCH_RACK = 40
USERS = 12_000
INTERNET_CLIENTS = 20_000
DAYS = 7
FIRST_DAY = date(2026, 11, 2)
COLLECTORS = 4  # one monitor node per two pods
CATEGORIES = ("applications", "infrastructure", "clients", "batch", "external")
TCP, UDP, ICMP = 6, 17, 1
APP_PORTS = (8080, 8443, 9000, 9090, 3000, 5000, 7000, 8000, 8081, 8888, 9443, 10000)
DB_PORTS = (5432, 3306, 1433, 27017)
PUBLIC_FIRST_OCTETS = (23, 31, 45, 62, 77, 85, 91, 104, 151, 185, 203, 212)
MS_PER_DAY = 86_400_000
QUICK_SIZES = (20_000,)
DEFAULT_SIZES = (1_000_000, 10_000_000)
# Linux net.ipv4.ip_local_port_range default, and Windows' (RFC 6335 dynamic range)
LINUX_PORTS, WINDOWS_PORTS = (32768, 61000), (49152, 65536)

# Address classes, for the generator's own count of what the monitor rules select
WEB, APP, DB, INFRA, BATCH, USER, INTERNET, OUTSIDE = range(8)
DC_CLASSES = (WEB, APP, DB, INFRA, BATCH)


# -- the population ------------------------------------------------------------------------


@dataclass
class Pool:
    """Hosts one side of a link is drawn from, with heavy-tailed (Zipf) weights."""

    members: np.ndarray  # address indices
    weights: np.ndarray


@dataclass(frozen=True)
class Link:
    """Who talks to whom on what: a client pool, a server pool, a service."""

    client: int  # pool index
    server: int
    protocol: int
    port: int  # 0 with ICMP; -1: a random port per session (a scan)
    weight: float
    client_ports: tuple[int, int] | None  # [low, high) of the client's ports; None: ICMP
    vrf: int = 0  # index into VRFS
    answered: float = 0.998  # share of sessions the server answers


VRFS = ("default", "mgmt")


@dataclass
class Population:
    addresses: list[str]
    address_class: np.ndarray  # per address: WEB ... OUTSIDE
    pod: np.ndarray  # per address: its pod, -1 outside the fabric
    pools: list[Pool]
    links: list[Link]
    policy_set: PolicySet
    # sampling tables: every pool's members concatenated, cumulative weights offset by pool
    members: np.ndarray = field(init=False)
    cumulative: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        members, cumulative = [], []
        for number, pool in enumerate(self.pools):
            weights = pool.weights / pool.weights.sum()
            members.append(pool.members)
            # pool k's entries lie in (k, k + 1]: searchsorted(k + u) lands inside pool k
            cumulative.append(number + np.minimum(np.cumsum(weights), 1.0))
            cumulative[-1][-1] = number + 1.0
        self.members = np.concatenate(members).astype(np.int32)
        self.cumulative = np.concatenate(cumulative)

    def draw(self, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One member per entry of `pool` (pool indices), by the pools' weights."""
        position = np.searchsorted(self.cumulative, pool + rng.random(len(pool)), side="right")
        return self.members[np.minimum(position, len(self.members) - 1)]


def zipf(count: int, rng: np.random.Generator, exponent: float = 1.1) -> np.ndarray:
    """Heavy-tailed weights in a random order: a few members do most of the talking."""
    return 1.0 / (rng.permutation(count) + 1.0) ** exponent


def build_population(seed: int = 7) -> Population:
    rng = np.random.default_rng(seed)
    addresses: list[str] = []
    address_class: list[int] = []
    pods: list[int] = []

    def hosts(prefix: str, first: int, count: int, kind: int, pod: int) -> np.ndarray:
        base = ipaddress.ip_address(prefix) + first
        start = len(addresses)
        addresses.extend(str(base + number) for number in range(count))
        address_class.extend([kind] * count)
        pods.extend([pod] * count)
        return np.arange(start, start + count, dtype=np.int32)

    tiers: dict[tuple[int, int], np.ndarray] = {}
    for app in range(APPS):
        pod = app % PODS
        sizes = {WEB: 8 + (app * 7) % 40, APP: 8 + (app * 11) % 56, DB: 2 + app % 10}
        for kind, count in sizes.items():
            octet = {WEB: 10, APP: 20, DB: 30}[kind]
            tiers[app, kind] = hosts(f"10.{octet}.{app}.0", 11, count, kind, pod)
    batch = [
        hosts(f"10.40.{pod * BATCH_RACKS_PER_POD + rack}.0", 11, HOSTS_PER_BATCH_RACK, BATCH, pod)
        for pod in range(PODS)
        for rack in range(BATCH_RACKS_PER_POD)
    ]
    infra = {
        "dns": hosts("10.0.0.0", 11, 4, INFRA, 0),
        "ntp": hosts("10.0.1.0", 11, 4, INFRA, 1),
        "directory": hosts("10.0.2.0", 11, 4, INFRA, 2),
        "logging": hosts("10.0.3.0", 11, 4, INFRA, 3),
        "kafka": hosts("10.0.4.0", 11, 12, INFRA, 4),
        "redis": hosts("10.0.5.0", 11, 12, INFRA, 5),
        "elasticsearch": hosts("10.0.6.0", 11, 16, INFRA, 6),
        "monitoring": hosts("10.0.7.0", 11, 4, INFRA, 7),
        "bastion": hosts("10.0.7.0", 21, 2, INFRA, 7),
        "nfs": hosts("10.0.7.0", 31, 4, INFRA, 7),
    }
    users = hosts("10.200.0.0", 1, USERS, USER, -1)
    octets = rng.choice(PUBLIC_FIRST_OCTETS, INTERNET_CLIENTS)
    rest = rng.choice(1 << 24, INTERNET_CLIENTS, replace=False)
    internet_start = len(addresses)
    addresses.extend(
        str(ipaddress.ip_address((int(first) << 24) | int(low)))
        for first, low in zip(octets, rest, strict=True)
    )
    address_class.extend([INTERNET] * INTERNET_CLIENTS)
    pods.extend([-1] * INTERNET_CLIENTS)
    internet = np.arange(internet_start, len(addresses), dtype=np.int32)
    updates = hosts("151.101.2.0", 132, 6, INTERNET, -1)  # package mirrors the web tiers use
    scanner = hosts("10.250.0.0", 7, 1, OUTSIDE, -1)
    admin = hosts("10.250.0.0", 8, 1, OUTSIDE, -1)

    pools: list[Pool] = []

    def pool(members: np.ndarray, exponent: float = 1.1) -> int:
        pools.append(Pool(members, zipf(len(members), rng, exponent)))
        return len(pools) - 1

    servers = np.concatenate([*tiers.values(), *batch, *infra.values()])
    every_server = pool(servers, 0.6)
    internet_pool, users_pool = pool(internet, 1.2), pool(users)
    infra_pools = {name: pool(members, 0.8) for name, members in infra.items()}
    batch_pool = pool(np.concatenate(batch))
    tier_pools = {key: pool(members) for key, members in tiers.items()}
    updates_pool = pool(updates)
    links: list[Link] = []
    popularity = zipf(APPS, rng, 1.0)
    popularity = popularity / popularity.mean()
    for app in range(APPS):
        share = float(popularity[app])
        web, app_tier, db = (tier_pools[app, kind] for kind in (WEB, APP, DB))
        app_port, db_port = APP_PORTS[app % len(APP_PORTS)], DB_PORTS[app % len(DB_PORTS)]
        links += [
            Link(internet_pool, web, TCP, 443, 20 / APPS * share, (32768, 65536)),
            Link(users_pool, web, TCP, 443, 10 / APPS * share, WINDOWS_PORTS),
            Link(web, app_tier, TCP, app_port, 15 / APPS * share, LINUX_PORTS),
            Link(app_tier, db, TCP, db_port, 12 / APPS * share, LINUX_PORTS, answered=0.995),
            Link(app_tier, infra_pools["directory"], TCP, 389, 1 / APPS, LINUX_PORTS),
            Link(web, updates_pool, TCP, 443, 0.3 / APPS, LINUX_PORTS),
        ]
        if app % 3 == 0:
            links.append(Link(app_tier, infra_pools["redis"], TCP, 6379, 5 / 16, LINUX_PORTS))
        if app % 2 == 0:
            links.append(Link(app_tier, infra_pools["kafka"], TCP, 9092, 5 / 24, LINUX_PORTS))
        if app % 4 == 1:
            links.append(
                Link(app_tier, infra_pools["elasticsearch"], TCP, 9200, 2 / 12, LINUX_PORTS)
            )
        if app % 3 == 1:
            other = (app * 7 + 3) % APPS
            other_port = APP_PORTS[other % len(APP_PORTS)]
            links.append(
                Link(app_tier, tier_pools[other, APP], TCP, other_port, 3 / 16, LINUX_PORTS)
            )
    dns, ntp, logging_pool = infra_pools["dns"], infra_pools["ntp"], infra_pools["logging"]
    links += [
        Link(every_server, dns, UDP, 53, 10, LINUX_PORTS),
        Link(every_server, ntp, UDP, 123, 1, LINUX_PORTS),
        Link(every_server, logging_pool, UDP, 514, 2, LINUX_PORTS),
        Link(batch_pool, infra_pools["kafka"], TCP, 9092, 5, LINUX_PORTS),
        Link(batch_pool, infra_pools["nfs"], TCP, 2049, 2, LINUX_PORTS),
        Link(batch_pool, infra_pools["elasticsearch"], TCP, 9200, 3, LINUX_PORTS),
        Link(users_pool, infra_pools["directory"], TCP, 88, 1, WINDOWS_PORTS),
        # the management VRF: scrapes, ssh from the bastions, pings
        Link(infra_pools["monitoring"], every_server, TCP, 9100, 3, LINUX_PORTS, vrf=1),
        Link(infra_pools["bastion"], every_server, TCP, 22, 0.1, LINUX_PORTS, vrf=1),
        Link(infra_pools["monitoring"], every_server, ICMP, 0, 1, None, vrf=1),
        # noise: a port scan nobody answers, users a drop rule refuses, an admin's ssh
        Link(pool(scanner), every_server, TCP, -1, 0.3, LINUX_PORTS, answered=0.0),
        Link(users_pool, pool(np.concatenate([tiers[a, DB] for a in range(APPS)])), TCP,
             5432, 0.05, WINDOWS_PORTS, answered=0.0),
        Link(pool(admin), pool(np.concatenate([tiers[a, APP] for a in range(0, APPS, 9)])),
             TCP, 22, 0.002, LINUX_PORTS),
    ]  # fmt: skip
    return Population(
        addresses=addresses,
        address_class=np.array(address_class, dtype=np.int8),
        pod=np.array(pods, dtype=np.int8),
        pools=pools,
        links=links,
        policy_set=build_policy(),
    )


def build_policy() -> PolicySet:
    """The fabric and policy `dc-prod`: allow DNS and NTP, drop users to databases, and five
    monitor rules that decide which sessions the builder looks at."""
    devices = []
    for pod in range(PODS):
        for leaf in range(LEAVES_PER_POD):
            devices.append(
                Device(
                    name=f"leaf-p{pod}-{leaf:02d}",
                    platform="eos",
                    loopback_address=f"10.255.{pod + 1}.{leaf + 1}",
                    monitor_tunnel=pod * LEAVES_PER_POD + leaf,
                    segments=_leaf_segments(pod, leaf),
                )
            )
    monitor_nodes = tuple(
        MonitorNode(name=f"mon{number + 1}", loopback_address=f"10.255.0.{number + 1}")
        for number in range(COLLECTORS)
    )
    groups = [
        Group(name=f"app{app:02d}-{tier}", prefixes=(f"10.{octet}.{app}.0/24",),
              categories=("applications",))
        for app in range(APPS)
        for tier, octet in (("web", 10), ("app", 20), ("db", 30))
    ]  # fmt: skip
    infra_groups = {
        "dns-servers": "10.0.0.0/24",
        "ntp-servers": "10.0.1.0/24",
        "directory": "10.0.2.0/24",
        "logging": "10.0.3.0/24",
        "kafka": "10.0.4.0/24",
        "redis": "10.0.5.0/24",
        "elasticsearch": "10.0.6.0/24",
        "management": "10.0.7.0/24",
    }
    groups += [
        Group(name=name, prefixes=(prefix,), categories=("infrastructure",))
        for name, prefix in infra_groups.items()
    ]
    groups += [
        Group(name="batch-compute", prefixes=("10.40.0.0/16",), categories=("batch",)),
        Group(name="users", prefixes=("10.200.0.0/16",), categories=("clients",)),
        Group(
            name="internet",
            prefixes=("0.0.0.0/0",),
            except_prefixes=("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
            categories=("external",),
        ),
        Group(name="web-tiers", prefixes=("10.10.0.0/16",)),
        Group(name="app-tiers", prefixes=("10.20.0.0/16",)),
        Group(name="db-tiers", prefixes=("10.30.0.0/16",)),
        Group(name="infrastructure-all", prefixes=("10.0.0.0/16",)),
        Group(
            name="dc-servers",
            prefixes=tuple(f"10.{octet}.0.0/16" for octet in (0, 10, 20, 30, 40)),
        ),
    ]
    monitor = "mon-dc"
    rules = (
        Rule(name="allow-dns", sources="any", destinations=["dns-servers"], services=["DNS"]),
        Rule(name="allow-ntp", sources="any", destinations=["ntp-servers"], services=["NTP"]),
        Rule(name="drop-users-to-db", sources=["users"], destinations=["db-tiers"],
             services="any", action="drop"),
        Rule(name="watch-web", sources="any", destinations=["web-tiers"], services="any",
             monitor=monitor),
        Rule(name="watch-app", sources=["web-tiers"], destinations=["app-tiers"],
             services="any", monitor=monitor),
        Rule(name="watch-db", sources=["app-tiers"], destinations=["db-tiers"],
             services="any", monitor=monitor),
        Rule(name="watch-infra", sources=["dc-servers"], destinations=["infrastructure-all"],
             services="any", monitor=monitor),
        Rule(name="watch-batch", sources=["batch-compute"], destinations="any",
             services="any", monitor=monitor),
    )  # fmt: skip
    return PolicySet(
        devices=tuple(devices),
        monitor_nodes=monitor_nodes,
        domains=(
            SecurityDomain(
                name="dc", devices=tuple(d.name for d in devices), vrfs=("default", "mgmt")
            ),
        ),
        categories=tuple(Category(name=name) for name in CATEGORIES),
        groups=tuple(groups),
        services=(
            Service(name="DNS", protocol="udp", destination_ports=(53,)),
            Service(name="NTP", protocol="udp", destination_ports=(123,)),
        ),
        monitor_objects=(
            MonitorObject(
                name=monitor,
                tunnel_destination="10.255.0.1",
                monitor_nodes=tuple(node.name for node in monitor_nodes),
            ),
        ),
        rules=rules,
        policies=(
            Policy(
                name="dc-prod",
                id=100,
                domain="dc",
                vrf="default",
                rules=tuple(r.name for r in rules),
            ),
        ),
    )


def _leaf_segments(pod: int, leaf: int) -> tuple[Segment, ...]:
    """App a's tiers live on leaves 3*(a // PODS) .. +2 of pod a % PODS; then batch racks;
    the last leaf of each pod holds that pod's infrastructure /24."""
    if leaf < 3 * (APPS // PODS):
        app, tier = (leaf // 3) * PODS + pod, leaf % 3
        octet = (10, 20, 30)[tier]
        subnet = f"10.{octet}.{app}.0/24"
    elif leaf < 3 * (APPS // PODS) + BATCH_RACKS_PER_POD:
        rack = pod * BATCH_RACKS_PER_POD + leaf - 3 * (APPS // PODS)
        subnet = f"10.40.{rack}.0/24"
    else:
        subnet = f"10.0.{pod}.0/24"
    return (Segment(name=f"Vlan{100 + leaf}", vlan=100 + leaf, subnets=(subnet,)),)


# -- generating sessions ---------------------------------------------------------------------


def monitored(population: Population, client: np.ndarray, server: np.ndarray, vrf: np.ndarray):
    """Sessions policy dc-prod's monitor rules select, from the generator's own address
    classes (independent of microseg's scope code): VRF default, and the request or the reply
    matches watch-web (any -> web), watch-app (web -> app), watch-db (app -> db), watch-infra
    (DC servers -> infrastructure) or watch-batch (batch -> any)."""
    kind = population.address_class

    def rule_match(source: np.ndarray, destination: np.ndarray) -> np.ndarray:
        s, d = kind[source], kind[destination]
        return (
            (d == WEB)
            | ((s == WEB) & (d == APP))
            | ((s == APP) & (d == DB))
            | (np.isin(s, DC_CLASSES) & (d == INFRA))
            | (s == BATCH)
        )

    return (vrf == 0) & (rule_match(client, server) | rule_match(server, client))


def generate_batch(population: Population, count: int, day: date, seed: list[int]) -> pa.Table:
    """`count` sessions of one day, plus the column `collector` (0-based) they belong to
    and `monitored` (the generator's own scope count)."""
    rng = np.random.default_rng(seed)
    links = population.links
    weights = np.array([link.weight for link in links])
    chosen = rng.choice(len(links), size=count, p=weights / weights.sum())
    link_client = np.array([link.client for link in links])[chosen]
    link_server = np.array([link.server for link in links])[chosen]
    client = population.draw(link_client, rng)
    server = population.draw(link_server, rng)
    protocol = np.array([link.protocol for link in links], dtype=np.int16)[chosen]
    port = np.array([link.port for link in links], dtype=np.int32)[chosen]
    port = np.where(port < 0, rng.integers(1, 10_000, count), port).astype(np.int32)
    low = np.array([(link.client_ports or (0, 1))[0] for link in links])[chosen]
    high = np.array([(link.client_ports or (0, 1))[1] for link in links])[chosen]
    client_port = (low + (rng.random(count) * (high - low)).astype(np.int64)).astype(np.int32)
    vrf = np.array([link.vrf for link in links], dtype=np.int8)[chosen]
    answered = rng.random(count) < np.array([link.answered for link in links])[chosen]
    tcp = protocol == TCP

    fwd_packets = np.where(answered, 2 + rng.lognormal(1.6, 1.3, count).astype(np.int64), 1)
    rev_packets = np.where(answered, 1 + rng.lognormal(1.8, 1.5, count).astype(np.int64), 0)
    fwd_bytes = fwd_packets * rng.integers(60, 900, count)
    rev_bytes = rev_packets * rng.integers(60, 1400, count)
    # SYN|ACK|PSH|FIN from both sides of an answered TCP session; a lone SYN otherwise
    fwd_flags = np.where(tcp, np.where(answered, 0x1B, 0x02), 0).astype(np.int32)
    rev_flags = np.where(tcp & answered, 0x1B, 0).astype(np.int32)
    start = (np.datetime64(day, "ms") - np.datetime64(0, "ms")).astype(np.int64)
    first_seen = start + rng.integers(0, MS_PER_DAY, count)
    duration = np.minimum(rng.lognormal(7.0, 2.0, count), 1_800_000).astype(np.int64)
    last_seen = first_seen + np.where(answered, duration, 0)

    pod = population.pod[server]
    pod = np.where(pod < 0, population.pod[client], pod)
    collector = np.maximum(pod, 0) // (PODS // COLLECTORS)
    exporters = [f"10.255.0.{number + 1}" for number in range(COLLECTORS)]
    address_text = pa.array(population.addresses, pa.string())

    def text(indices: np.ndarray, dictionary: pa.Array) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(indices), dictionary).cast(pa.string())

    protocol_names = {TCP: "tcp", UDP: "udp", ICMP: "icmp"}
    protocol_codes = np.searchsorted(np.array(sorted(protocol_names)), protocol)
    exporter = text(collector.astype(np.int32), pa.array(exporters))
    return pa.table(
        {
            "vrf": text(vrf.astype(np.int32), pa.array(VRFS)),
            "protocol": text(
                protocol_codes.astype(np.int32),
                pa.array([protocol_names[number] for number in sorted(protocol_names)]),
            ),
            "src": text(client, address_text),
            "sport": pa.array(np.where(protocol == ICMP, 0, client_port).astype(np.int32)),
            "dst": text(server, address_text),
            "dport": pa.array(port),
            "fwd_packets": pa.array(fwd_packets),
            "fwd_bytes": pa.array(fwd_bytes),
            "rev_packets": pa.array(rev_packets),
            "rev_bytes": pa.array(rev_bytes),
            "complete": pa.array(answered.astype(np.int64)),
            "half_open": pa.array((~answered).astype(np.int64)),
            "first_seen": pa.array(first_seen).cast(pa.timestamp("ms", tz="UTC")),
            "last_seen": pa.array(last_seen).cast(pa.timestamp("ms", tz="UTC")),
            "exporter": exporter,
            "rev_exporter": text(
                np.where(answered, collector, COLLECTORS).astype(np.int32),
                pa.array([*exporters, ""]),
            ),
            "fwd_tcp_flags": pa.array(fwd_flags),
            "rev_tcp_flags": pa.array(rev_flags),
            "sessions": pa.array(np.ones(count, dtype=np.int64)),
            "collector": pa.array(collector.astype(np.int8)),
            "monitored": pa.array(monitored(population, client, server, vrf)),
        }
    )


# -- the data directory: store, policy, rounds, views --------------------------------------


@dataclass
class DataDir:
    """`store/` (every round), `policy.yaml`, `manifest.json`, `views/<N>/` (hard links)."""

    root: Path
    seed: int

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def policy(self) -> Path:
        return self.root / "policy.yaml"

    def manifest(self) -> dict:
        path = self.root / "manifest.json"
        if path.exists():
            manifest = json.loads(path.read_text())
            if manifest["population"] == POPULATION and manifest["seed"] == self.seed:
                return manifest
            raise SystemExit(
                f"{self.root} holds a store of another population or seed "
                f"({manifest['population']}, seed {manifest['seed']}): give another --data"
            )
        return {"population": POPULATION, "seed": self.seed, "rounds": []}

    def save(self, manifest: dict) -> None:
        path = self.root / "manifest.json"
        path.with_suffix(".tmp").write_text(json.dumps(manifest, indent=1))
        os.replace(path.with_suffix(".tmp"), path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One bench per data directory at a time: another would take this one's unfinished
        round for a crashed one and remove it (flock, released when the process dies)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SystemExit(f"{self.root}: another bench/scale.py is using it") from None
            yield

    def generate(self, sizes: list[int], batch: int, log) -> dict:
        """Add the rounds `sizes` needs; returns the manifest. A round interrupted before
        it finished is removed and made again."""
        self.root.mkdir(parents=True, exist_ok=True)
        manifest = self.manifest()
        population = build_population(self.seed)
        self.policy.write_text(dump_policy(population.policy_set))
        listed = {s for r in manifest["rounds"] for s in r["segments"]}
        for stray in self.store.glob("segments/date=*/collector=*/seg-*.parquet"):
            if str(stray.relative_to(self.store)) not in listed:
                stray.unlink()  # a round that did not finish
        stores = [FlowStore(self.store, f"mon{number + 1}").open() for number in range(COLLECTORS)]
        done = manifest["rounds"][-1]["until"] if manifest["rounds"] else 0
        for until in sorted(sizes):
            if until <= done:
                if until not in {r["until"] for r in manifest["rounds"]}:
                    known = [r["until"] for r in manifest["rounds"]]
                    raise SystemExit(
                        f"{self.root}: sizes are rounds of one store; this one has {known}, "
                        f"so {until} is not one of them (give those, or another --data)"
                    )
                continue
            started = time.perf_counter()
            round_number = len(manifest["rounds"])
            entry = {"until": until, "sessions": until - done, "monitored": 0, "segments": []}
            per_day = np.diff(np.linspace(0, until - done, DAYS + 1).astype(np.int64))
            for day_number, day_sessions in enumerate(per_day):
                day = FIRST_DAY + timedelta(days=day_number)
                for part, offset in enumerate(range(0, int(day_sessions), batch)):
                    count = min(batch, int(day_sessions) - offset)
                    seed = [self.seed, round_number, day_number, part]
                    table = generate_batch(population, count, day, seed)
                    entry["monitored"] += int(np.count_nonzero(table["monitored"]))
                    collectors = table["collector"].to_numpy()
                    sessions = table.drop_columns(["collector", "monitored"])
                    for number, store in enumerate(stores):
                        rows = np.flatnonzero(collectors == number)
                        written = store.write(sessions.take(rows), day=day)
                        if written is not None:
                            entry["segments"].append(str(written.relative_to(self.store)))
                    del table, sessions
            entry["generate_s"] = round(time.perf_counter() - started, 1)
            manifest["rounds"].append(entry)
            self.save(manifest)
            log(f"generated {until - done:,} sessions (up to {until:,}) in {entry['generate_s']} s")
            done = until
        return manifest

    def view(self, manifest: dict, size: int) -> Path:
        """A store of the rounds up to `size`: hard links to their segments."""
        view = self.root / "views" / str(size)
        wanted = {s for r in manifest["rounds"] if r["until"] <= size for s in r["segments"]}
        present = {str(p.relative_to(view)) for p in view.glob("segments/*/*/seg-*.parquet")}
        for extra in present - wanted:
            (view / extra).unlink()
        for name in sorted(wanted - present):
            target = view / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(self.store / name, target)
        return view


def rows_back(view: Path, policy: Path) -> dict:
    """The rows `recommend` gets back from the engine, without and with the builder's fold
    (`flows.engines.builder_rows`): counted by DuckDB where they are made, the same rows
    Spark returns (the SQL is shared)."""
    policy_set = load_policy(policy)
    scope = scope_from(policy_set, None, "dc-prod", None, [], None, None)
    fold = SessionQuery(
        client_port_cuts=port_cuts(policy_set),
        address_classes=address_classes(policy_set, CATEGORIES, scope_prefixes(scope)),
    )
    engine = DuckDBEngine()
    segments = FlowStore(view).scan().live
    return {
        "summary_rows": engine.rows(segments, SessionQuery()),
        "builder_rows": engine.rows(segments, fold),
    }


def stored(view: Path) -> tuple[int, int, int]:
    """Sessions (from the segment footers), bytes and segments of a store directory."""
    store = FlowStore(view)
    scan = store.scan()
    size = sum(segment.stat().st_size for segment in scan.live)
    return scan.rows(scan.live), size, len(scan.live)


# -- running the CLI and measuring it -------------------------------------------------------


def tree_rss(root: int) -> int:
    """Resident bytes of process `root` and all its descendants (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue
        # the process name is in parentheses and may hold spaces: fields follow the last ')'
        parent = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    total, waiting, page = 0, [root], os.sysconf("SC_PAGE_SIZE")
    while waiting:
        pid = waiting.pop()
        waiting += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/statm", "rb") as file:
                total += int(file.read().split()[1]) * page
        except OSError:
            continue
    return total


@dataclass
class Run:
    sessions: int
    engine: str
    exit_code: int
    wall_s: float
    peak_rss_bytes: int
    killed_over_limit: bool
    load_average: tuple[float, float, float]
    output: dict | None = None
    error: str = ""

    def figures(self) -> dict:
        handled = self.exit_code == 0 and not self.killed_over_limit
        return {
            "sessions": self.sessions,
            "engine": self.engine,
            "ok": handled,
            "wall_s": round(self.wall_s, 1),
            "sessions_per_s": round(self.sessions / self.wall_s) if handled else None,
            "peak_rss_mib": round(self.peak_rss_bytes / 2**20),
            "killed_over_limit": self.killed_over_limit,
            "load_average_1m_before_after": [self.load_average[0], round(os.getloadavg()[0], 2)],
            **({"error": self.error} if self.error else {}),
        }


def run_recommend(
    data: DataDir, view: Path, sessions: int, engine: str, options: argparse.Namespace
) -> Run:
    command = [sys.executable, "-m", "microseg", "recommend", str(data.policy)]
    command += ["--store", str(view), "--policy", "dc-prod", "--categories", ",".join(CATEGORIES)]
    command += ["--json", "--engine", engine]
    if engine == "spark":
        command += ["--spark-master", options.spark_master]
        for setting in options.spark_conf:
            command += ["--spark-conf", setting]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    one, five, fifteen = (round(value, 2) for value in os.getloadavg())
    load = (one, five, fifteen)
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=stdout, stderr=stderr, env=env, start_new_session=True
        )
        peak, killed = 0, False
        while process.poll() is None:
            peak = max(peak, tree_rss(process.pid))
            if peak > options.memory_limit:
                killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                break
            time.sleep(0.1)
        process.wait()
        wall = time.perf_counter() - started
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # anything the CLI left behind (a JVM)
        stdout.seek(0)
        stderr.seek(0)
        text, errors = stdout.read().decode(), stderr.read().decode()
    run = Run(sessions, engine, process.returncode, wall, peak, killed, load)
    if process.returncode == 0:
        run.output = json.loads(text)
    else:
        run.error = (errors.strip().splitlines() or ["no message"])[-1][:300]
    return run


def parse_size(text: str) -> int:
    """`24G`, `512M`, `1000000` -> bytes (or a count)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


@contextlib.contextmanager
def data_directory(path: Path | None) -> Iterator[Path]:
    if path is not None:
        yield path
        return
    temporary = Path(tempfile.mkdtemp(prefix="microseg-scale-"))
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def bench(options: argparse.Namespace, log=lambda text: None) -> dict:
    """Generate (or reuse) the store, run every engine at every size; the figures."""
    sizes = sorted(options.sizes)
    with data_directory(options.data) as root, DataDir(root, options.seed).locked():
        data = DataDir(root, options.seed)
        free = shutil.disk_usage(root if root.exists() else root.parent).free
        manifest = data.generate(sizes, options.batch, log)
        figures: dict = {
            "bench": "scale",
            "cpus": os.cpu_count(),
            "memory_total_mib": os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20,
            "memory_limit_mib": options.memory_limit >> 20,
            "memory_limit_enforced_by": "a watchdog polling the RSS of the CLI's process tree "
            "(CLI + JVM) from /proc every 0.1 s, killing the tree past the limit",
            "disk_free_before_gib": round(free / 2**30, 1),
            "stores": [],
            "runs": [],
            "identical_proposals": {},
        }
        for size in sizes:
            view = data.view(manifest, size)
            count, size_bytes, segments = stored(view)
            expected = sum(r["monitored"] for r in manifest["rounds"] if r["until"] <= size)
            figures["stores"].append(
                {
                    "sessions": count,
                    "bytes": size_bytes,
                    "bytes_per_session": round(size_bytes / count, 1),
                    "segments": segments,
                    "monitored_sessions": expected,
                    "generate_s": sum(
                        r["generate_s"] for r in manifest["rounds"] if r["until"] <= size
                    ),
                }
            )
            if count != size:
                raise SystemExit(f"store {view} holds {count} sessions, not {size}")
            if options.rows_back:
                figures["stores"][-1].update(rows_back(view, data.policy))
            log(json.dumps(figures["stores"][-1]))
            outputs = {}
            for engine in options.engines:
                log(f"recommend --engine {engine} on {size:,} sessions ...")
                run = run_recommend(data, view, size, engine, options)
                entry = run.figures()
                if run.output is not None:
                    entry["scoped_sessions"] = run.output["scoped_sessions"]
                    entry["scoped_as_generated"] = run.output["scoped_sessions"] == expected
                    entry["rules"] = len(run.output["rules"])
                    outputs[engine] = run.output
                figures["runs"].append(entry)
                log(json.dumps(entry))
            if len(outputs) > 1:
                first = next(iter(outputs.values()))
                figures["identical_proposals"][str(size)] = all(
                    output == first for output in outputs.values()
                )
        figures["largest_store_within_limit"] = {
            engine: max(
                (r["sessions"] for r in figures["runs"] if r["engine"] == engine and r["ok"]),
                default=0,
            )
            for engine in options.engines
        }
        return figures


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="keep (and reuse) the generated store here")
    parser.add_argument(
        "--sizes",
        type=lambda text: [parse_size(part) for part in text.split(",")],
        default=list(DEFAULT_SIZES),
        help="store sizes in sessions, comma-separated (default 1000000,10000000)",
    )
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} (a test)")
    parser.add_argument("--engines", default="duckdb,spark", type=lambda t: t.split(","))
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument(
        "--spark-conf", action="append", default=[], help="spark.KEY=VALUE, passed on"
    )
    parser.add_argument("--memory-limit", default="24G", type=parse_size)
    parser.add_argument("--batch", default=2_000_000, type=int, help="sessions per batch")
    parser.add_argument("--seed", default=7, type=int)
    parser.add_argument(
        "--no-rows-back",
        dest="rows_back",
        action="store_false",
        help="do not count the rows the engine returns (two DuckDB queries per size; the same "
        "for every engine)",
    )
    options = parser.parse_args(argv)
    if options.quick:
        options.sizes = list(QUICK_SIZES)
    return options


def main(argv: list[str] | None = None) -> None:
    options = arguments(argv)
    figures = bench(options, log=lambda text: print(text, file=sys.stderr, flush=True))
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()

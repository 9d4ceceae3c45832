"""`microseg lab`: the seed lab up, its policy deployed through change control, and the
seed's connectivity table tested with real connections next to `microseg check`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from microseg.compile.resolve import compile_device
from microseg.deploy import RunOptions, approve_change, create_change, run_change
from microseg.evaluate.check import check_connection
from microseg.lab.topology import (
    MONITOR_LOOPBACK,
    SWITCH,
    SWITCH_LOOPBACK,
    LabError,
    State,
    address_host,
    build,
    checked_name,
    flush_flows,
    host_address,
    name_option,
    not_up,
    start_monitor,
    start_services,
    teardown,
)
from microseg.model import PolicySet
from microseg.policyfile import dump_policy, load_policy, load_policy_text
from microseg.store import Store
from microseg.targets.nftables.render import mirror_groups

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "examples" / "home-lab.yaml"
LAB_AUTHOR = "microseg-lab"

# The seed's connectivity table (blog: "ssh/curl/dig that succeed or time out").
SEED_TABLE = (
    ("laptop", "web01", "tcp", 22),
    ("mgmt", "appserver1", "tcp", 22),
    ("laptop", "web02", "tcp", 80),
    ("web01", "appserver1", "tcp", 4567),
    ("laptop", "appserver1", "tcp", 4567),
    ("appserver1", "8.8.8.8", "icmp", None),
    ("web01", "8.8.8.8", "icmp", None),
    ("appserver1", "10.100.1.7", "udp", 53),
    ("laptop", "10.100.1.6", "udp", 123),
    ("web01", "appserver1", "tcp", 22),
    ("web01", "web02", "tcp", 22),
    ("web01", "web02", "tcp", 80),
    ("web02", "web01", "tcp", 80),
)


# NFLOG groups the switch's mirror process listens on: a policy's mirror sessions are
# numbered from 1 (nftables target), and all of them go to the lab's one monitor node.
MIRROR_GROUPS = 16
TOOLS = ("ip", "bridge", "nft", "softflowd")


# capabilities(7): network namespaces need both (`ip netns add` mounts /run/netns).
NEEDED_CAPABILITIES = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21}


def require_tools() -> None:
    """Root, its capabilities, ip, bridge, nft and softflowd: why the lab cannot run here,
    or nothing. Checked before anything is made: a half-made lab is worse than none."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, nftables): run it with sudo")
    effective = effective_capabilities()
    lacking = [name for name, bit in NEEDED_CAPABILITIES.items() if not effective >> bit & 1]
    if lacking:
        raise LabError(
            f"the lab needs {' and '.join(lacking)} (network namespaces, nftables), which "
            "this root process has not got: in a container, run it with those capabilities "
            "(e.g. --privileged)"
        )
    if missing:
        raise LabError(f"the lab needs {', '.join(missing)} (scripts/setup.sh installs them)")


def effective_capabilities() -> int:
    """This process's effective capability set (proc(5) `CapEff`); all of them if unknown."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return -1
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return -1


def lab_policy(policy: PolicySet, state: State) -> PolicySet:
    """The policy as the lab runs it: the switch is an nftables device in its namespace,
    Vlan299's isolation as built; other devices are not in the lab."""
    device = policy.device(SWITCH)
    segments = tuple(
        s.model_copy(update={"hosts_isolated": bool(state.data["isolated"])})
        if s.name == "Vlan299"
        else s
        for s in device.segments
    )
    switch = device.model_copy(
        update={
            "platform": "nftables",
            "management_namespace": state.namespace("switch"),
            "segments": segments,
        }
    )
    domains = tuple(d.model_copy(update={"devices": (SWITCH,)}) for d in policy.domains)
    copied = policy.model_copy(update={"devices": (switch,), "domains": domains})
    return load_policy_text(dump_policy(copied), "lab policy")


def check_mirrors(policy: PolicySet) -> None:
    """The lab has one monitor node (the seed's vZTX behind 10.255.1.11, tunnels from the
    switch's 10.255.1.10): a mirror session going anywhere else cannot be honoured."""
    sessions = compile_device(policy, SWITCH).mirror_sessions
    for name, session in sorted(sessions.items()):
        if str(session.tunnel_destination) != MONITOR_LOOPBACK:
            raise LabError(
                f"mirror session {name}: tunnel destination {session.tunnel_destination}, but "
                f"the lab's monitor node is {MONITOR_LOOPBACK} (the seed's vZTX loopback)"
            )
        if session.tunnel_source is not None and str(session.tunnel_source) != SWITCH_LOOPBACK:
            raise LabError(
                f"mirror session {name}: tunnel source {session.tunnel_source}, but the lab's "
                f"switch loopback is {SWITCH_LOOPBACK}"
            )
    if len(mirror_groups(compile_device(policy, SWITCH))) > MIRROR_GROUPS:
        raise LabError(f"the lab mirrors at most {MIRROR_GROUPS} monitor sessions")


def deploy(store: Store, policy: PolicySet, message: str) -> int:
    """Import `policy` and deploy it to the lab's switch through a change; the change."""
    store.import_policy(policy, LAB_AUTHOR, message)
    record = create_change(store, LAB_AUTHOR, None, [SWITCH], message)
    approve_change(store, record.id, LAB_AUTHOR, "the lab deploys its own switch")
    # The switch namespace was made empty moments ago by `up`: what the store last deployed
    # to it lived in an earlier lab's namespace, so "edited outside microseg" is expected
    # and there is nobody's configuration to protect (force).
    options = RunOptions(confirm_within=60, force=True)
    result = run_change(store, record.id, LAB_AUTHOR, options)
    if result.state != "succeeded":
        raise LabError(f"change {record.id} {result.state}: see microseg change show {record.id}")
    return record.id


def _load(policy_path: Path | None) -> PolicySet:
    policy = load_policy(policy_path or DEFAULT_POLICY)
    if SWITCH not in {d.name for d in policy.devices}:
        raise LabError(f"{policy_path}: the lab needs the seed's switch device {SWITCH}")
    check_mirrors(policy)  # before anything is built
    return policy


def up(
    store: Store, name: str, policy_path: Path | None, isolated: bool, flows: Path
) -> tuple[State, int]:
    """Lab `name` up: namespaces, services, the monitor node, the policy through a change."""
    checked_name(name)
    require_tools()
    policy = _load(policy_path)
    state = State.create(name, isolated, flows)
    try:
        build(state)
        start_services(state)
        start_monitor(state, {g: MONITOR_LOOPBACK for g in range(1, MIRROR_GROUPS + 1)})
        change = deploy(store, lab_policy(policy, state), f"lab up ({policy_path or 'seed'})")
        state.data["change"] = change
        state.data["complete"] = True
        state.save()
    except BaseException:
        teardown(state)
        raise
    return state, change


def deploy_policy(store: Store, name: str, policy_path: Path) -> int:
    """Deploy another policy to the running lab's switch through a change."""
    require_tools()
    state = current(name)
    change = deploy(store, lab_policy(_load(policy_path), state), f"lab deploy ({policy_path})")
    state.data["change"] = change
    state.save()
    return change


def current(name: str) -> State:
    state = State.load(name)
    if state is None:
        raise LabError(f"{not_up(name)}: run `microseg lab up{name_option(name)}` first")
    return state


@dataclass(frozen=True)
class Row:
    source: str
    destination: str
    protocol: str
    port: int | None
    real: str  # connects | blocked
    check: str  # check's result text
    check_connects: bool

    @property
    def agrees(self) -> bool:
        return (self.real == "connects") == self.check_connects

    def as_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "destination": self.destination,
            "protocol": self.protocol,
            "port": self.port,
            "real": self.real,
            "check": self.check,
            "agrees": self.agrees,
        }


def _address(name: str) -> str:
    return name if name[0].isdigit() else host_address(name)


def probe_all(state: State, rows: tuple[tuple[str, str, str, int | None], ...]) -> list[str]:
    """Every row's real connection, at once, from its source host: connects or blocked.
    One process per source host runs that host's probes in parallel."""
    by_source: dict[str, list[int]] = {}
    for index, (source, _destination, _protocol, _port) in enumerate(rows):
        by_source.setdefault(source, []).append(index)
    clients = {}
    for source, indexes in by_source.items():
        probes = [[rows[i][2], _address(rows[i][1]), rows[i][3] or 0] for i in indexes]
        clients[source] = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                state.namespace(address_host(_address(source))),
                sys.executable,
                "-m",
                "microseg.lab.services",
                "burst",
                json.dumps(probes),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    results = [""] * len(rows)
    for source, client in clients.items():
        out, err = client.communicate(timeout=60)
        if client.returncode != 0:
            raise LabError(f"probe from {source} failed: {err.strip()}")
        for index, outcome in zip(by_source[source], json.loads(out), strict=True):
            results[index] = outcome
    return results


def deployed_policy(store: Store, state: State) -> PolicySet:
    """The policy the lab's switch runs: the last revision the store deployed to it."""
    name = str(state.data["name"])
    again = f"run `microseg lab down{name_option(name)}` and `up` again"
    last = store.changes.last_deployed(SWITCH)
    if last is None:
        raise LabError(f"nothing deployed to {SWITCH}: {again}")
    policy = store.revision_policy(store.changes.get(last[0]).revision)
    # A store shared by two labs: its last deployment may have gone to the other lab's
    # switch, and checking this lab against that policy would be a wrong verdict.
    deployed_to = policy.device(SWITCH).management_namespace
    if deployed_to != state.namespace("switch"):
        raise LabError(
            f"change {last[0]}, the last deployed to {SWITCH} in this store, went to namespace "
            f"{deployed_to}, not lab {name}'s {state.namespace('switch')}: give each lab its "
            f"own store (MICROSEG_DATABASE_URL), or {again}"
        )
    return policy


def mirroring_rules(policy: PolicySet) -> list[str]:
    """The rules whose traffic the switch mirrors to the monitor node, in policy order."""
    intent = compile_device(policy, SWITCH)
    rules = (m.rule for p in intent.policies for m in p.matches if m.mirror_session)
    return list(dict.fromkeys(rules))


def test(store: Store, name: str) -> list[Row]:
    """The seed table: real connections and check's verdict on the deployed revision."""
    state = current(name)
    policy = deployed_policy(store, state)
    real = probe_all(state, SEED_TABLE)
    rows = []
    for (source, destination, protocol, port), outcome in zip(SEED_TABLE, real, strict=True):
        checked = check_connection(policy, _address(source), _address(destination), protocol, port)
        rows.append(
            Row(source, destination, protocol, port, outcome, checked.result, checked.connects)
        )
    return rows


def down(name: str) -> list[str]:
    state = State.load(name)
    if state is None:
        return []
    return teardown(state)


# The seed's traffic mix (blog, Policy Builder: "NTP and DNS requests to my DNS servers, HTTP
# requests coming from a wifi client, both the web-servers requests the appserver1 over tcp
# 4567 and some HTTP to the internet, Ubuntu repositories for updates"), plus the attempts
# its tests show blocked by the final policy (ssh from mgmt, the laptop to the app port,
# web01 to web02, updates from the internet).
TRAFFIC_MIX = (
    ("laptop", "10.100.1.7", "udp", 53),
    ("laptop", "10.100.1.6", "udp", 53),
    ("laptop", "10.100.1.7", "udp", 123),
    ("laptop", "10.100.1.6", "udp", 123),
    ("laptop", "web01", "tcp", 80),
    ("laptop", "web02", "tcp", 80),
    ("laptop", "web01", "tcp", 22),
    ("laptop", "appserver1", "tcp", 4567),
    ("mgmt", "10.100.1.7", "udp", 53),
    ("mgmt", "appserver1", "tcp", 22),
    ("web01", "10.100.1.7", "udp", 53),
    ("web01", "10.100.1.7", "udp", 123),
    ("web01", "appserver1", "tcp", 4567),
    ("web01", "web02", "tcp", 80),
    ("web01", "8.8.8.8", "tcp", 80),
    ("web02", "10.100.1.6", "udp", 53),
    ("web02", "10.100.1.7", "udp", 123),
    ("web02", "appserver1", "tcp", 4567),
    ("appserver1", "10.100.1.7", "udp", 53),
    ("appserver1", "10.100.1.6", "udp", 123),
    ("appserver1", "8.8.8.8", "tcp", 80),
)


@dataclass
class TrafficRow:
    source: str
    destination: str
    protocol: str
    port: int
    sent: int = 0
    connects: int = 0

    @property
    def blocked(self) -> int:
        return self.sent - self.connects

    def as_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "destination": self.destination,
            "protocol": self.protocol,
            "port": self.port,
            "sent": self.sent,
            "connects": self.connects,
            "blocked": self.blocked,
        }


def traffic(
    name: str,
    rounds: int | None,
    minutes: float | None,
    progress: Callable[[int, list[TrafficRow]], None],
) -> tuple[list[TrafficRow], int]:
    """The seed's traffic mix from the lab's hosts with real sockets, `rounds` times or for
    `minutes`; then every flow the monitor node holds goes to the flow store. The rows and
    the number of rounds."""
    state = current(name)
    rows = [TrafficRow(*item) for item in TRAFFIC_MIX]
    deadline = None if minutes is None else time.monotonic() + minutes * 60
    done = 0
    while (rounds is None or done < rounds) and (deadline is None or time.monotonic() < deadline):
        for row, outcome in zip(rows, probe_all(state, TRAFFIC_MIX), strict=True):
            row.sent += 1
            row.connects += outcome == "connects"
        done += 1
        progress(done, rows)
    flush_flows(state)
    return rows, done

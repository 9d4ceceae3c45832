"""`microseg lab`: the seed lab up, its policy deployed through change control, and the
seed's connectivity table tested with real connections next to `microseg check`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from microseg.deploy import RunOptions, approve_change, create_change, run_change
from microseg.evaluate.check import check_connection
from microseg.lab.topology import (
    SWITCH,
    LabError,
    State,
    address_host,
    build,
    host_address,
    start_services,
    teardown,
)
from microseg.model import PolicySet
from microseg.policyfile import dump_policy, load_policy, load_policy_text
from microseg.store import Store

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


def require_tools() -> None:
    """Root, ip, bridge and nft: why the lab cannot run here, or nothing."""
    missing = [tool for tool in ("ip", "bridge", "nft") if shutil.which(tool) is None]
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, nftables): run it with sudo")
    if missing:
        raise LabError(f"the lab needs {', '.join(missing)} (scripts/setup.sh installs them)")


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


def up(store: Store, policy_path: Path | None, isolated: bool) -> tuple[State, int]:
    require_tools()
    policy = load_policy(policy_path or DEFAULT_POLICY)
    if SWITCH not in {d.name for d in policy.devices}:
        raise LabError(f"{policy_path}: the lab needs the seed's switch device {SWITCH}")
    state = State.create(isolated)
    try:
        build(state)
        start_services(state)
        change = deploy(store, lab_policy(policy, state), f"lab up ({policy_path or 'seed'})")
        state.data["change"] = change
        state.data["complete"] = True
        state.save()
    except BaseException:
        teardown(state)
        raise
    return state, change


def current() -> State:
    state = State.load()
    if state is None:
        raise LabError("no lab is up: run `microseg lab up` first")
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
    """Every row's real connection at once from its source host: connects or blocked."""
    clients = [
        subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                state.namespace(address_host(_address(source))),
                sys.executable,
                "-m",
                "microseg.lab.services",
                "probe",
                protocol,
                _address(destination),
                str(port or 0),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for source, destination, protocol, port in rows
    ]
    results = []
    for client in clients:
        out, err = client.communicate(timeout=60)
        if client.returncode != 0:
            raise LabError(f"probe failed: {err.strip()}")
        results.append(out.strip())
    return results


def test(store: Store) -> list[Row]:
    """The seed table: real connections and check's verdict on the deployed revision."""
    state = current()
    last = store.changes.last_deployed(SWITCH)
    if last is None:
        raise LabError(f"nothing deployed to {SWITCH}: run `microseg lab down` and `up` again")
    policy = store.revision_policy(store.changes.get(last[0]).revision)
    real = probe_all(state, SEED_TABLE)
    rows = []
    for (source, destination, protocol, port), outcome in zip(SEED_TABLE, real, strict=True):
        checked = check_connection(policy, _address(source), _address(destination), protocol, port)
        rows.append(
            Row(source, destination, protocol, port, outcome, checked.result, checked.connects)
        )
    return rows


def down() -> list[str]:
    state = State.load()
    if state is None:
        return []
    return teardown(state)

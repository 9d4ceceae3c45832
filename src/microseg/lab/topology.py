"""The seed lab in network namespaces: build, record, tear down.

A "switch" namespace routes the seed's VLAN subnets. Vlan299 is a Linux bridge in it (the
seed's Proxmox node) whose ports (appserver1, web01, web02) are isolated, and its SVI
answers ARP for hosts of the same subnet (`proxy_arp_pvlan`, Linux's counterpart of EOS
`ip local-proxy-arp`); `isolated=False` leaves the ports plain (the seed's "Ooops").

The monitor node (the seed's vZTX, andreas-ztx1) is a namespace behind the switch's p2p link
Vlan1111 (172.18.111.1 <-> .2), with the seed's loopbacks 10.255.1.10 (switch) and
10.255.1.11 (vZTX) and static routes between them. `start_monitor` runs the mirror path
(`microseg.lab.mirror`: NFLOG on the switch -> GRE -> softflowd in the vZTX) and
`microseg collect` in the vZTX, which exports to 127.0.0.1:4739 as the seed's does.

Every namespace and process is written to the state file *before* it is made, so `down`
from another process, after a crash or a SIGKILL, removes all of it. Traffic never leaves
the namespaces: no link of the lab has a peer in the host's namespace.

A lab has a name (default `microseg`): its namespaces are `<name>-<role>` and its state
directory `<base>/<name>`, so labs of different names run side by side. Interface names
live inside the lab's own namespaces and never depend on the name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microseg.model import MicrosegError

SWITCH = "andreasm-720xp-home"
DEFAULT_STATE_DIR = Path("/run/microseg-lab")
DEFAULT_NAME = "microseg"
# A network namespace name is a file under /run/netns (iproute2), not an interface name, so
# IFNAMSIZ does not bound it; 32 keeps `<name>-appserver1` inside the nftables driver's 64.
LAB_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


@dataclass(frozen=True)
class Host:
    name: str
    address: str  # address/prefix
    gateway: str
    switch_port: str
    switch_address: str | None  # None: a port of the Vlan299 bridge


HOSTS = (
    Host("laptop", "172.18.6.138/24", "172.18.6.1", "wifi", "172.18.6.1/24"),
    Host("mgmt", "10.100.5.10/24", "10.100.5.1", "mgmt", "10.100.5.1/24"),
    Host("dns", "10.100.1.7/24", "10.100.1.1", "infrastructure", "10.100.1.1/24"),
    Host("internet", "172.31.255.2/30", "172.31.255.1", "uplink", "172.31.255.1/30"),
    Host("appserver1", "10.100.99.50/24", "10.100.99.1", "vp50", None),
    Host("web01", "10.100.99.51/24", "10.100.99.1", "vp51", None),
    Host("web02", "10.100.99.52/24", "10.100.99.1", "vp52", None),
)
# Further addresses a host answers on (loopback aliases): the seed's second DNS/NTP server
# and the internet's resolver.
EXTRA_ADDRESSES = {"dns": ("10.100.1.6/32",), "internet": ("8.8.8.8/32",)}
SERVERS = ("dns", "internet", "appserver1", "web01", "web02")
# The monitor node, as the seed configures it (andreas-ztx1 and the 720XP's Vlan1111).
MONITOR = "vztx"
SWITCH_LOOPBACK = "10.255.1.10"
MONITOR_LOOPBACK = "10.255.1.11"
P2P_SWITCH = ("Vlan1111", "172.18.111.1/24")
P2P_MONITOR = ("Ethernet1", "172.18.111.2/24")
P2P_MTU = "9000"  # room for a 1500-byte packet plus its GRE and IP headers
COLLECTOR = "127.0.0.1:4739"
STOP_WAIT_S = 30.0  # how long a monitor process may take to hand over its flows


class LabError(MicrosegError):
    """The lab cannot be built, is already up, or is not up."""


def checked_name(name: str) -> str:
    """`name` if it can name a lab (its namespaces and state directory derive from it)."""
    if not LAB_NAME.fullmatch(name):
        raise LabError(
            f"--name {name!r}: a lab name is 1-32 of a-z 0-9 - (starting with a letter or "
            "digit); it prefixes the lab's network namespaces"
        )
    return name


def base_dir() -> Path:
    """Where every lab keeps its state directory."""
    return Path(os.environ.get("MICROSEG_LAB_DIR") or DEFAULT_STATE_DIR)


def state_path(name: str) -> Path:
    return base_dir() / checked_name(name) / "lab.json"


def namespace_name(name: str, role: str) -> str:
    """Roles have no '-', so two labs' namespace names never meet."""
    return f"{name}-{role}"


def roles() -> tuple[str, ...]:
    return ("switch", *(host.name for host in HOSTS), MONITOR)


def labs_up() -> list[str]:
    """The names of the labs with a state file, sorted."""
    try:
        return sorted(d.name for d in base_dir().iterdir() if (d / "lab.json").exists())
    except OSError:
        return []


def name_option(name: str) -> str:
    """The `--name` a command needs to reach this lab ("" for the default)."""
    return "" if name == DEFAULT_NAME else f" --name {name}"


def not_up(name: str) -> str:
    """Why there is no lab `name`, and which labs there are."""
    others = [n for n in labs_up() if n != name]
    text = "no lab is up" if name == DEFAULT_NAME else f"no lab named {name} is up"
    return text + (f" (labs up: {', '.join(others)}; pick one with --name)" if others else "")


def existing_namespaces() -> set[str]:
    return set(run("ip", "netns", "list").stdout.split())


def host_address(name: str) -> str:
    for host in HOSTS:
        if host.name == name:
            return host.address.split("/")[0]
    raise LabError(f"no lab host {name!r}")


def address_host(address: str) -> str:
    """The host namespace role that owns `address`."""
    for host in HOSTS:
        if host.address.split("/")[0] == address:
            return host.name
    for name, extra in EXTRA_ADDRESSES.items():
        if any(e.split("/")[0] == address for e in extra):
            return name
    raise LabError(f"{address} is no lab host's address")


class State:
    """The lab's record: namespaces, processes and paths, rewritten atomically on each
    change so a reader in another process sees a whole file."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def create(cls, name: str, isolated: bool, flows: Path) -> State:
        """A new state file for lab `name`; refuses while one exists (that lab is up or half
        up) or while a namespace the lab would make exists (another lab of that name with
        another state directory, or not a lab at all: nothing of it is touched). `flows`:
        the flow store the monitor node's collector writes."""
        path = state_path(name)
        taken = sorted(existing_namespaces() & {namespace_name(name, r) for r in roles()})
        if taken and not path.exists():
            raise LabError(
                f"lab name {name!r} is in use: network namespace {taken[0]} exists and this "
                f"lab did not make it (no {path}); choose another --name"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "name": name,
            "isolated": isolated,
            "flows": str(flows),
            "namespaces": {},
            "pids": {},
            "complete": False,
        }
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise LabError(
                f"a lab named {name} is already up (state {path}): run `microseg lab down"
                f"{name_option(name)}` first, or choose another --name"
            ) from None
        with os.fdopen(descriptor, "w") as out:
            json.dump(data, out)
        return cls(path, data)

    @classmethod
    def load(cls, name: str) -> State | None:
        path = state_path(name)
        try:
            return cls(path, json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise LabError(f"{path}: unreadable lab state ({error})") from None

    def save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.data, indent=2, sort_keys=True))
        os.replace(temporary, self.path)

    def namespace(self, role: str) -> str:
        try:
            return str(self.data["namespaces"][role])
        except KeyError:
            raise LabError(f"the lab has no {role} namespace") from None


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")
    return result


def in_ns(namespace: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("ip", "netns", "exec", namespace, *argv, check=check)


def _sysctl(namespace: str, name: str, value: str, check: bool = True) -> None:
    in_ns(namespace, "sysctl", "-qw", f"{name}={value}", check=check)


def _add_namespace(state: State, role: str) -> str:
    """Recorded before it is made (a SIGKILL after the record leaves `down` to remove it);
    when `ip netns add` fails the namespace is not ours (someone else's of the same name,
    made since `State.create` looked) and the record goes, so `down` never removes it."""
    name = namespace_name(str(state.data["name"]), role)
    state.data["namespaces"][role] = name
    state.save()
    added = run("ip", "netns", "add", name, check=False)
    if added.returncode != 0:
        del state.data["namespaces"][role]
        state.save()
        raise LabError(f"ip netns add {name}: {added.stderr.strip() or added.returncode}")
    run("ip", "-n", name, "link", "set", "lo", "up")
    return name


def build(state: State) -> None:
    """Namespaces, veths, the Vlan299 bridge and routing; no policy yet."""
    switch = _add_namespace(state, "switch")
    for name, value in (
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
        ("net.ipv4.conf.all.send_redirects", "0"),
        ("net.ipv4.conf.default.send_redirects", "0"),
    ):
        _sysctl(switch, name, value)
    # The bridge is the hypervisor's L2: its frames never meet the switch's IP hooks.
    for name in ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"):
        _sysctl(switch, name, "0", check=False)
    run("ip", "-n", switch, "link", "add", "Vlan299", "type", "bridge")
    run("ip", "-n", switch, "addr", "add", "10.100.99.1/24", "dev", "Vlan299")
    run("ip", "-n", switch, "link", "set", "Vlan299", "up")
    isolated = bool(state.data["isolated"])
    if isolated:
        # `ip local-proxy-arp` on the SVI: answer ARP for hosts of the same subnet.
        _sysctl(switch, "net.ipv4.conf.Vlan299.proxy_arp", "1")
        _sysctl(switch, "net.ipv4.conf.Vlan299.proxy_arp_pvlan", "1")
        # EOS answers at once; Linux delays a proxied ARP reply by a random time below
        # `proxy_delay` (default 0.8 s; ip-sysctl.rst, neigh). Two hosts of Vlan299 need two
        # proxied answers for their first packet and its reply: up to 1.6 s, past the lab
        # probe's handshake timeout, so an allowed connection came out `blocked`.
        _sysctl(switch, "net.ipv4.neigh.Vlan299.proxy_delay", "0")
    for host in HOSTS:
        namespace = _add_namespace(state, host.name)
        run("ip", "link", "add", host.switch_port, "netns", switch, "type", "veth",
            "peer", "name", "eth0", "netns", namespace)  # fmt: skip
        run("ip", "-n", namespace, "addr", "add", host.address, "dev", "eth0")
        run("ip", "-n", namespace, "link", "set", "eth0", "up")
        run("ip", "-n", namespace, "route", "add", "default", "via", host.gateway)
        for extra in EXTRA_ADDRESSES.get(host.name, ()):
            run("ip", "-n", namespace, "addr", "add", extra, "dev", "lo")
        if host.switch_address is None:
            run("ip", "-n", switch, "link", "set", host.switch_port, "master", "Vlan299")
            if isolated:
                run("bridge", "-n", switch, "link", "set", "dev", host.switch_port,
                    "isolated", "on")  # fmt: skip
        else:
            run("ip", "-n", switch, "addr", "add", host.switch_address, "dev", host.switch_port)
        run("ip", "-n", switch, "link", "set", host.switch_port, "up")
    for extra, via in (("10.100.1.6/32", "10.100.1.7"), ("8.8.8.8/32", "172.31.255.2")):
        run("ip", "-n", switch, "route", "add", extra, "via", via)
    _build_monitor(state, switch)


def _build_monitor(state: State, switch: str) -> None:
    """The vZTX: its p2p link to the switch, both loopbacks and the static routes (seed)."""
    monitor = _add_namespace(state, MONITOR)
    (switch_port, switch_address), (monitor_port, monitor_address) = P2P_SWITCH, P2P_MONITOR
    run("ip", "link", "add", switch_port, "netns", switch, "mtu", P2P_MTU, "type", "veth",
        "peer", "name", monitor_port, "netns", monitor, "mtu", P2P_MTU)  # fmt: skip
    run("ip", "-n", switch, "addr", "add", switch_address, "dev", switch_port)
    run("ip", "-n", monitor, "addr", "add", monitor_address, "dev", monitor_port)
    run("ip", "-n", switch, "addr", "add", f"{SWITCH_LOOPBACK}/32", "dev", "lo")
    run("ip", "-n", monitor, "addr", "add", f"{MONITOR_LOOPBACK}/32", "dev", "lo")
    for namespace, port in ((switch, switch_port), (monitor, monitor_port)):
        run("ip", "-n", namespace, "link", "set", port, "up")
    run("ip", "-n", switch, "route", "add", f"{MONITOR_LOOPBACK}/32", "via",
        monitor_address.split("/")[0])  # fmt: skip
    run("ip", "-n", monitor, "route", "add", f"{SWITCH_LOOPBACK}/32", "via",
        switch_address.split("/")[0])  # fmt: skip


def _start(state: State, label: str, role: str, *argv: str) -> None:
    """Start `argv` in `role`'s namespace, recorded as `label`; wait for its "ready" line."""
    process = subprocess.Popen(
        ["ip", "netns", "exec", state.namespace(role), *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    state.data["pids"][label] = process.pid
    state.save()
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise LabError(f"{label} did not start in the {role} namespace")
    process.stdout.close()


def start_services(state: State) -> None:
    for role in SERVERS:
        _start(state, f"services-{role}", role, sys.executable, "-m", "microseg.lab.services",
               "serve")  # fmt: skip


def start_monitor(state: State, groups: dict[int, str]) -> None:
    """The mirror path and the collector: `groups` maps NFLOG groups to tunnel destinations."""
    flushed = state.path.parent / "flushed"
    state.data["flushed"] = str(flushed)
    _start_collector(state)
    _start(state, "mirror-decap", MONITOR, sys.executable, "-m", "microseg.lab.mirror", "decap",
           "--peer", SWITCH_LOOPBACK, "--collector", COLLECTOR, "--flushed", str(flushed))  # fmt: skip
    group_options = [f"--group={group}={address}" for group, address in sorted(groups.items())]
    _start(state, "mirror-encap", "switch", sys.executable, "-m", "microseg.lab.mirror", "encap",
           "--source", SWITCH_LOOPBACK, *group_options)  # fmt: skip


def _start_collector(state: State) -> None:
    """`microseg collect` in the vZTX writing the lab's flow store; its log beside the state."""
    log = state.path.parent / "collector.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                state.namespace(MONITOR),
                sys.executable,
                "-m",
                "microseg",
                "collect",
                "--listen",
                COLLECTOR,
                "--store",
                str(state.data["flows"]),
            ],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
    state.data["pids"]["collector"] = process.pid
    state.save()
    deadline = time.monotonic() + STOP_WAIT_S
    while "listening on" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"microseg collect did not start in the vZTX: see {log}")
        time.sleep(0.05)


def flush_flows(state: State) -> None:
    """Every flow the monitor node holds, into the flow store now: softflowd exports all
    (mirror-decap restarts it), then the collector stops (writing every session) and a new
    one takes over."""
    pid = int(state.data["pids"]["mirror-decap"])
    flushed = Path(state.data["flushed"])
    before = flushed.read_text().strip()
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + STOP_WAIT_S
    while flushed.read_text().strip() == before:
        if time.monotonic() > deadline or not _alive(pid):
            raise LabError("the monitor node's flow exporter did not flush (softflowd)")
        time.sleep(0.05)
    stop_process(state, "collector")
    _start_collector(state)


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def stop_process(state: State, label: str) -> bool:
    """SIGTERM one of the lab's processes and wait until it has exited; whether it ran."""
    pid = state.data["pids"].get(label)
    if pid is None or not _ours(int(pid), state):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    while _alive(int(pid)) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(int(pid), os.WNOHANG)
        time.sleep(0.05)
    return True


def _ours(pid: int, state: State) -> bool:
    """The process still runs and is one the lab started: it runs in one of the lab's
    namespaces, or its command line names one (`ip netns exec` before it enters)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        network = os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return False
    namespaces = [str(n) for n in state.data["namespaces"].values()]
    text = [c.decode(errors="replace") for c in command]
    if any(t in namespaces for t in text):
        return True
    for namespace in namespaces:
        with contextlib.suppress(OSError):
            if os.stat(f"/run/netns/{namespace}").st_ino == network:
                return True
    return False


def teardown(state: State) -> list[str]:
    """Stop the lab's processes and delete its namespaces (links go with them); what was
    removed. Safe on a half-built lab."""
    removed = []
    # The mirror path first, then the collector, each waited for: the flows they hold
    # reach the flow store before the namespaces go.
    for label in ("mirror-encap", "mirror-decap", "collector"):
        if stop_process(state, label):
            removed.append(f"process {label} ({state.data['pids'][label]})")
    for label, pid in sorted(state.data["pids"].items()):
        if label not in ("mirror-encap", "mirror-decap", "collector") and _ours(int(pid), state):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid), signal.SIGTERM)
            removed.append(f"process {label} ({pid})")
    existing = existing_namespaces()
    for namespace in sorted(state.data["namespaces"].values()):
        if namespace in existing:
            # Processes still inside (a service whose parent was killed) go first.
            for pid in run("ip", "netns", "pids", namespace, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            run("ip", "netns", "del", namespace)
            removed.append(f"namespace {namespace}")
    state.path.unlink(missing_ok=True)
    return removed


def status(state: State) -> list[tuple[str, str, str]]:
    """(kind, name, up|missing) of everything the state records."""
    existing = existing_namespaces()
    rows = []
    for role, namespace in sorted(state.data["namespaces"].items()):
        rows.append(
            ("namespace", f"{role} ({namespace})", "up" if namespace in existing else "missing")
        )
    for label, pid in sorted(state.data["pids"].items()):
        alive = _ours(int(pid), state)
        rows.append(("process", f"{label} ({pid})", "up" if alive else "missing"))
    return rows

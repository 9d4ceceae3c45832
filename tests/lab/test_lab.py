"""`microseg lab` as a user runs it, as root: up, test, status, down, the Ooops without
isolation, a second up, down after a SIGKILLed up, the monitor node seeing exactly what the
monitor rule mirrors, and nothing on the host's interfaces."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from microseg.lab.lab import SEED_TABLE, TRAFFIC_MIX
from microseg.lab.topology import address_host, host_address
from support import EXAMPLES, cli_command, cli_env

pytestmark = [pytest.mark.system, pytest.mark.slow]
LAB_NETWORKS = [
    ipaddress.ip_network(n)
    for n in (
        "172.18.6.0/24",
        "10.100.0.0/16",
        "172.31.255.0/30",
        "8.8.8.8/32",
        "172.18.111.0/24",
        "10.255.1.0/24",
    )
]
NAMESPACES = 9  # 7 hosts, the switch and the monitor node
# The seed's table (blog): row -> real result with the isolated bridge.
EXPECTED_ISOLATED = [
    "connects", "blocked", "connects", "connects", "blocked", "blocked", "blocked",
    "connects", "connects", "blocked", "blocked", "blocked", "blocked",
]  # fmt: skip


@pytest.fixture
def lab_env(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (CI runs as root; see scripts/setup.sh)")
    env = cli_env(
        MICROSEG_LAB_DIR=str(tmp_path / "state"),
        MICROSEG_LAB_NAME=f"mst{uuid.uuid4().hex[:5]}",
        MICROSEG_DATABASE_URL=f"sqlite:///{tmp_path / 'microseg.db'}",
        MICROSEG_AUTHOR="andreas",
        MICROSEG_FLOW_STORE=str(tmp_path / "flows"),
    )
    yield env
    subprocess.run(cli_command("lab", "down"), env=env, capture_output=True, check=False)


def state_file(env) -> Path:
    return Path(env["MICROSEG_LAB_DIR"]) / env["MICROSEG_LAB_NAME"] / "lab.json"


def cli(env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command(*args), env=env, capture_output=True, text=True)


def namespaces_of(env) -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [n for n in listing.split() if n.startswith(env["MICROSEG_LAB_NAME"] + "-")]


class HostCapture:
    """Frames with a lab address seen on any interface of the host's namespace.

    `works()` proves the capture sees the host's traffic at all: it sends a marked datagram
    over the host's loopback and waits for it (an idle machine may carry no other frame)."""

    MARK = b"microseg-lab-capture-probe"

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.sock.settimeout(0.2)
        self.seen: list[tuple[str, str, str]] = []
        self.frames = 0
        self.probe_seen = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        while not self.stop.is_set():
            try:
                frame, where = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.frames += 1
            if self.MARK in frame:
                self.probe_seen.set()
            if len(frame) >= 34 and frame[12:14] == b"\x08\x00":
                addresses = [ipaddress.ip_address(frame[26:30]), ipaddress.ip_address(frame[30:34])]
                if any(a in n for a in addresses for n in LAB_NETWORKS):
                    self.seen.append((where[0], str(addresses[0]), str(addresses[1])))

    def works(self) -> bool:
        for _ in range(20):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.sendto(self.MARK, ("127.0.0.1", 9))  # discard; no listener needed
            if self.probe_seen.wait(0.25):
                return True
        return False

    def __enter__(self) -> HostCapture:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


def switch_sysctl(env, name: str) -> str:
    switch = f"{env['MICROSEG_LAB_NAME']}-switch"
    command = ["ip", "netns", "exec", switch, "sysctl", "-n", name]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def host_links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def test_up_test_status_down_on_real_packets_and_nothing_on_the_host(lab_env):
    links = host_links()
    with HostCapture() as capture:
        up = cli(lab_env, "lab", "up")
        assert up.returncode == 0, up.stderr
        assert "Vlan299 ports isolated, policy deployed by change 1" in up.stdout
        # Proxy ARP answers at once, as EOS's `ip local-proxy-arp` does: with Linux's default
        # random delay (up to 0.8 s per answer) the first web01 -> appserver1 connection
        # took up to 1.6 s to be answered and a loaded machine's probe called it blocked.
        assert switch_sysctl(lab_env, "net.ipv4.neigh.Vlan299.proxy_delay") == "0"
        tested = cli(lab_env, "lab", "test", "--json")
        assert tested.returncode == 0, tested.stdout + tested.stderr
        # The capture sees the host's traffic (its own probe on loopback): `seen == []`
        # below means nothing of the lab reached the host, not a deaf capture.
        assert capture.works()
    report = json.loads(tested.stdout)
    assert [r["real"] for r in report["rows"]] == EXPECTED_ISOLATED
    assert report["agree"] and all(r["agrees"] for r in report["rows"])
    assert len(report["rows"]) == len(SEED_TABLE)
    assert capture.seen == []
    assert host_links() == links
    # The policy reached the switch through change control.
    shown = json.loads(cli(lab_env, "change", "show", "1", "--json").stdout)
    assert shown["state"] == "succeeded"

    # The seed's final policy mirrors nothing: traffic says so, and how to mirror some.
    sent = cli(lab_env, "lab", "traffic", "--count", "1")
    assert sent.returncode == 0, sent.stderr
    assert "nothing went to the monitor node: no rule of the deployed policy mirrors" in sent.stdout
    assert "lab deploy --name " in sent.stdout and "examples/home-lab-monitor.yaml" in sent.stdout

    status = cli(lab_env, "lab", "status")
    assert status.returncode == 0 and "missing" not in status.stdout
    assert "switch (" in status.stdout and "services-web01" in status.stdout
    for process in ("collector", "mirror-encap", "mirror-decap"):
        assert process in status.stdout

    second = cli(lab_env, "lab", "up")
    assert second.returncode == 1
    name = lab_env["MICROSEG_LAB_NAME"]
    assert f"a lab named {name} is already up" in second.stderr
    assert f"lab down --name {name}" in second.stderr
    assert "Traceback" not in second.stderr
    assert len(namespaces_of(lab_env)) == NAMESPACES  # the second up touched nothing

    down = cli(lab_env, "lab", "down")
    assert down.returncode == 0 and "removed" in down.stdout
    assert namespaces_of(lab_env) == []
    assert cli(lab_env, "lab", "down").stdout == f"no lab named {name} is up\n"
    assert cli(lab_env, "lab", "status").stdout.startswith(f"no lab named {name} is up")
    assert cli(lab_env, "lab", "test").returncode == 1


def test_two_labs_run_side_by_side_and_a_taken_name_is_refused(lab_env):
    name = lab_env["MICROSEG_LAB_NAME"]
    other = {**lab_env, "MICROSEG_LAB_NAME": f"{name}b"}
    # A namespace of that name this lab did not make (another lab's, with another state
    # directory, or nobody's lab): refused, and left alone.
    foreign = f"{name}-web01"
    subprocess.run(["ip", "netns", "add", foreign], check=True)
    try:
        taken = cli(lab_env, "lab", "up")
        assert taken.returncode == 1, taken.stdout + taken.stderr
        assert f"lab name '{name}' is in use: network namespace {foreign} exists" in taken.stderr
        assert "choose another --name" in taken.stderr and "Traceback" not in taken.stderr
        assert namespaces_of(lab_env) == [foreign] and not state_file(lab_env).exists()
    finally:
        subprocess.run(["ip", "netns", "del", foreign], check=True)
    try:
        assert cli(lab_env, "lab", "up").returncode == 0
        # The second lab shares the first one's store and state directory.
        second = cli(lab_env, "lab", "up", "--name", f"{name}b")
        assert second.returncode == 0, second.stderr
        assert len(namespaces_of(lab_env)) == len(namespaces_of(other)) == NAMESPACES
        tested = json.loads(cli(other, "lab", "test", "--json").stdout)
        assert [r["real"] for r in tested["rows"]] == EXPECTED_ISOLATED
        # The store's last deployment went to the second lab: the first says so rather
        # than checking itself against it.
        shared = cli(lab_env, "lab", "test")
        assert shared.returncode == 1 and "give each lab its own store" in shared.stderr
        assert cli(lab_env, "lab", "down").returncode == 0
        # The first lab went, the second is whole.
        assert namespaces_of(lab_env) == [] and len(namespaces_of(other)) == NAMESPACES
        status = json.loads(cli(other, "lab", "status", "--json").stdout)
        assert status["up"] and len(status["items"]) > NAMESPACES
        assert {item["state"] for item in status["items"]} == {"up"}
        default = {k: v for k, v in lab_env.items() if k != "MICROSEG_LAB_NAME"}
        assert cli(default, "lab", "status").stdout.startswith(
            f"no lab is up (labs up: {name}b; pick one with --name)"
        )
    finally:
        subprocess.run(cli_command("lab", "down"), env=other, capture_output=True, check=False)
    assert namespaces_of(lab_env) == namespaces_of(other) == []


def test_a_lab_name_that_cannot_name_namespaces_is_refused(lab_env):
    for bad in ("Lab", "-x", "a/b", "x" * 33, ""):
        result = cli(lab_env, "lab", "up", "--name", bad)
        assert result.returncode == 1, (bad, result.stderr)
        assert f"--name {bad!r}: a lab name is 1-32 of a-z 0-9 -" in result.stderr
    assert not Path(lab_env["MICROSEG_LAB_DIR"]).exists()


def test_down_after_a_sigkilled_up_removes_everything(lab_env):
    state = state_file(lab_env)
    up = subprocess.Popen(
        cli_command("lab", "up"), env=lab_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    # Kill it once it has made a few namespaces (the state file names them first).
    for _ in range(600):
        if len(namespaces_of(lab_env)) >= 3 or up.poll() is not None:
            break
        time.sleep(0.05)
    up.send_signal(signal.SIGKILL)
    up.communicate()
    assert state.exists() and namespaces_of(lab_env)
    assert cli(lab_env, "lab", "up").returncode == 1  # half a lab is still a lab
    down = cli(lab_env, "lab", "down")
    assert down.returncode == 0, down.stderr
    assert namespaces_of(lab_env) == [] and not state.exists()
    assert cli(lab_env, "lab", "up").returncode == 0  # and a new lab comes up


def _mirrored(source: str, destination: str, protocol: str, port: int) -> bool:
    """What home-lab-monitor.yaml mirrors: traffic from or to web01, web02 and appserver1
    (rule web-appserver-discovery and its reverse), except DNS and NTP to the DNS/NTP
    servers, which allow_all_DNS / allow_all_NTP decide first."""
    servers = {"appserver1", "web01", "web02"}
    hosts = {address_host(_lab_address(source)), address_host(_lab_address(destination))}
    dns_ntp = destination in ("10.100.1.6", "10.100.1.7") and port in (53, 123)
    return bool(hosts & servers) and not dns_ntp


def _lab_address(name: str) -> str:
    return name if name[0].isdigit() else host_address(name)


def test_the_monitor_node_sees_exactly_what_the_monitor_rule_mirrors(lab_env):
    with HostCapture() as capture:
        up = cli(lab_env, "lab", "up", str(EXAMPLES / "home-lab-monitor.yaml"))
        assert up.returncode == 0, up.stderr
        assert f"flows to {lab_env['MICROSEG_FLOW_STORE']}" in up.stdout
        sent = cli(lab_env, "lab", "traffic", "--count", "2", "--json")
        assert sent.returncode == 0, sent.stderr
        assert "round 2/2" in sent.stderr
        assert capture.works()
    assert capture.seen == []
    report = json.loads(sent.stdout)
    assert report["rounds"] == 2 and report["sent"] == 2 * len(TRAFFIC_MIX)
    assert report["mirrored_rules"] == ["web-appserver-discovery"]
    assert report["blocked"] == 0  # this policy drops nothing
    listed = cli(lab_env, "sessions", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    sessions = [json.loads(line) for line in listed.stdout.splitlines()]
    seen = {(s["src"], s["dst"], s["protocol"], s["dport"]) for s in sessions}
    expected = {
        (_lab_address(src), _lab_address(dst), protocol, port)
        for src, dst, protocol, port in TRAFFIC_MIX
        if _mirrored(src, dst, protocol, port)
    }
    assert seen == expected
    # Both directions reached the monitor node: every session is complete.
    assert all(s["complete"] and s["fwd_packets"] and s["rev_packets"] for s in sessions)
    pids = json.loads(state_file(lab_env).read_text())["pids"]
    down = cli(lab_env, "lab", "down")
    assert down.returncode == 0, down.stderr
    for label in ("collector", "mirror-encap", "mirror-decap"):
        assert not Path(f"/proc/{pids[label]}").exists()

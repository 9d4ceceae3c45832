"""The evaluator against the Linux kernel: what we predict is what nftables does.

Random policies (small address pools: overlaps, shadowing, except-prefixes, IPv4 and IPv6)
are compiled to nftables by the compiler's renderer and loaded into a "switch" namespace
that routes between three host namespaces. Real frames (TCP SYN, UDP, ICMP / ICMPv6, GRE)
are sent from the hosts; a receiver in every host records which packet ids arrived. For
every packet, delivery must equal the evaluator's verdict, and per match the kernel's
counter must equal the packets AND bytes of the packets the evaluator says that match
decided. Every packet gets a random size, so the byte counters pin down which packets each
rule took: a packet attributed to the wrong rule would have to be offset exactly by another
of the same size going the other way.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from tests.evaluate import frames
from tests.evaluate.netns import (
    load_ruleset,
    make_router,
    named_counters,
    namespaces,
    require_root_and_nft,
    run,
    sysctl,
)
from tests.evaluate.random_policies import HOSTS, random_policy_set

from microseg.compile.resolve import compile_all
from microseg.evaluate import CompiledDevice, PacketBatch
from microseg.evaluate.engine import Evaluation
from microseg.model import PolicySet
from microseg.targets.nftables.render import identifier, render_ruleset
from support import cli_env

pytestmark = pytest.mark.system

ROUNDS = 30
PACKETS_PER_ROUND = 450
TRAFFIC_ADDRESSES = (1, 2, 3, 4, 5, 200)  # pool hosts plus two inside the subnets only
PORT_POINTS = sorted(
    {0, 65535, 49152}
    | {
        p + d
        for p in (22, 53, 80, 443, 1000, 1500, 2000, 5000)
        for d in (-1, 0, 1, 10, 11, 600, 601)
    }
)
ICMP_TYPES = {4: (0, 3, 8, 13), 6: (1, 128, 129)}
FRAMES_SCRIPT = Path(frames.__file__)


def mac(host: int, last: int) -> bytes:
    return bytes([2, 0, 0, 0, host, last])


def mac_text(host: int, last: int) -> str:
    return ":".join(f"{b:02x}" for b in mac(host, last))


def address(family: int, host: int, last: int) -> str:
    return f"10.66.{host}.{last}" if family == 4 else f"fd66:0:0:{host}::{last:x}"


def build_lab(names: dict[str, str]) -> None:
    switch = names["switch"]
    make_router(switch)
    for host in HOSTS:
        namespace = names[f"h{host}"]
        sysctl(namespace, "net.ipv6.conf.all.disable_ipv6", "1")
        sysctl(namespace, "net.ipv6.conf.default.disable_ipv6", "1")
        run(
            "ip",
            "link",
            "add",
            f"p{host}",
            "address",
            mac_text(host, 0xFE),
            "netns",
            switch,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "address",
            mac_text(host, 1),
            "netns",
            namespace,
        )
        run("ip", "-n", namespace, "link", "set", "eth0", "up")
        run("ip", "-n", switch, "link", "set", f"p{host}", "up")
        run("ip", "-n", switch, "addr", "add", f"10.66.{host}.254/24", "dev", f"p{host}")
        run(
            "ip", "-n", switch, "addr", "add", f"fd66:0:0:{host}::fe/64", "dev", f"p{host}", "nodad"
        )
        for last in TRAFFIC_ADDRESSES:
            for family in (4, 6):
                run(
                    "ip",
                    "-n",
                    switch,
                    "neigh",
                    "replace",
                    address(family, host, last),
                    "lladdr",
                    mac_text(host, 1),
                    "dev",
                    f"p{host}",
                    "nud",
                    "permanent",
                )


def random_packets(rng: random.Random, count: int) -> list[dict]:
    packets = []
    for _ in range(count):
        family = rng.choice((4, 6))
        source_host, destination_host = rng.choice(HOSTS), rng.choice(HOSTS)
        protocol = rng.choice((6, 6, 17, 17, 1, 47))
        if protocol == 1 and family == 6:
            protocol = 58
        packets.append(
            {
                "source_host": source_host,
                "src": address(family, source_host, rng.choice(TRAFFIC_ADDRESSES)),
                "dst": address(family, destination_host, rng.choice(TRAFFIC_ADDRESSES)),
                "protocol": protocol,
                "sport": rng.choice(PORT_POINTS),
                "dport": rng.choice(PORT_POINTS),
                "icmp_type": rng.choice(ICMP_TYPES[family]),
                "padding": rng.randrange(0, 1000),
            }
        )
    return packets


class Receivers:
    """One frame receiver per host namespace, appending arrived packet ids to a file."""

    def __init__(self, names: dict[str, str], directory: Path):
        self.paths = {h: directory / f"arrived-h{h}.txt" for h in HOSTS}
        self.processes = []
        for host in HOSTS:
            self.paths[host].write_text("")
            process = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    names[f"h{host}"],
                    sys.executable,
                    str(FRAMES_SCRIPT),
                    "receive",
                    "eth0",
                    str(self.paths[host]),
                ],
                env=cli_env(),  # frames.py imports this checkout's microseg
                stdout=subprocess.PIPE,
                text=True,
            )
            assert process.stdout.readline().strip() == "ready"
            self.processes.append(process)

    def arrived(self) -> set[int]:
        return {int(line) for path in self.paths.values() for line in path.read_text().split()}

    def wait_for(self, expected: set[int], timeout: float = 3.0) -> set[int]:
        deadline = time.monotonic() + timeout
        while not expected <= self.arrived() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.05)  # anything that should not arrive has had its chance too
        return self.arrived()

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(timeout=5)


def send(names: dict[str, str], packets: list[dict], first_id: int, directory: Path) -> list[int]:
    """Send the packets from their hosts; returns each packet's L3 length (what nft counts)."""
    by_host: dict[int, list[bytes]] = {h: [] for h in HOSTS}
    l3_lengths = []
    for offset, packet in enumerate(packets):
        host = packet["source_host"]
        by_host[host].append(
            frames.frame(
                first_id + offset,
                packet["src"],
                packet["dst"],
                packet["protocol"],
                packet["sport"],
                packet["dport"],
                packet["icmp_type"],
                mac(host, 1),
                mac(host, 0xFE),
                packet["padding"],
            )
        )
        l3_lengths.append(len(by_host[host][-1]) - 14)
    senders = []
    for host, host_frames in by_host.items():
        path = directory / f"frames-h{host}.bin"
        frames.write_frames(str(path), host_frames)
        senders.append(
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    names[f"h{host}"],
                    sys.executable,
                    str(FRAMES_SCRIPT),
                    "send",
                    "eth0",
                    str(path),
                ],
                env=cli_env(),
            )
        )
    for sender in senders:
        assert sender.wait(timeout=30) == 0
    return l3_lengths


def check_round(
    names: dict[str, str],
    receivers: Receivers,
    intent,
    packets: list[dict],
    first_id: int,
    directory: Path,
) -> tuple[list[str], Evaluation]:
    """Load `intent` as nftables, send `packets`; every disagreement between the kernel (what
    arrived, what each counter counted) and the evaluator, as text."""
    load_ruleset(names["switch"], render_ruleset(intent), str(directory / "rules.nft"))
    evaluation = CompiledDevice(intent).evaluate(
        PacketBatch.from_fields(
            vrf="default",
            **{
                k: [p[k] for p in packets]
                for k in ("protocol", "src", "dst", "sport", "dport", "icmp_type")
            },
        )
    )
    l3_lengths = send(names, packets, first_id, directory)
    expected = {first_id + i for i in range(len(packets)) if evaluation.forwarded[i]}
    arrived = receivers.wait_for(expected)
    disagreements = []
    for i, packet in enumerate(packets):
        delivered = (first_id + i) in arrived
        if delivered != bool(evaluation.forwarded[i]):
            decision = evaluation.decision(i)
            disagreements.append(
                f"packet {packet}: kernel {'delivered' if delivered else 'dropped'}, "
                f"evaluator {decision.verdict} by {decision.match}"
            )
    default_drops = intent.policies[0].default_action == "drop"
    predicted: dict[str, tuple[int, int]] = {}
    for i, m in enumerate(evaluation.match_index):
        # A default-drop policy counts its default matches too.
        if m >= 0 or default_drops:
            name = evaluation.decision(i).match
            count, size = predicted.get(name, (0, 0))
            predicted[name] = (count + 1, size + l3_lengths[i])
    # Counters by name: each match's counter is `identifier(policy, match)` (comments, cut
    # to nft's 128 bytes, do not tell long match names apart).
    policy = intent.policies[0]
    match_of = {
        identifier(policy.name, name): name
        for name in [m.name for m in policy.matches] + ["ipv4-all-default", "ipv6-all-default"]
    }
    counted = {
        match_of[name]: counter
        for name, counter in named_counters(names["switch"]).items()
        if counter[0]
    }
    if counted != predicted:
        disagreements.append(f"kernel counters {counted} != evaluator {predicted}")
    return disagreements, evaluation


def test_evaluator_agrees_with_nftables_on_every_packet(tmp_path):
    require_root_and_nft()
    rng = random.Random(20261126)
    disagreements: list[str] = []
    total = 0
    decided_kinds: Counter = Counter()
    with namespaces("switch", *(f"h{h}" for h in HOSTS)) as names:
        build_lab(names)
        receivers = Receivers(names, tmp_path)
        try:
            for round_number in range(ROUNDS):
                policy_set = random_policy_set(
                    5000 + round_number,
                    rules=rng.randint(3, 14),
                    default_action="drop" if round_number % 3 == 2 else "forward",
                    # Every other round names groups, services, rules and the policy with
                    # `+`, `_`, `/`, `-reverse`, spaces, non-ASCII, names equal after any
                    # normalisation and names longer than nft takes.
                    adversarial_names=round_number % 2 == 1,
                )
                intent = compile_all(policy_set)["sw1"]
                packets = random_packets(rng, PACKETS_PER_ROUND)
                found, evaluation = check_round(names, receivers, intent, packets, total, tmp_path)
                disagreements += [f"round {round_number}: {text}" for text in found]
                decided_kinds.update(
                    f"default {intent.policies[0].default_action}"
                    if m < 0
                    else intent.policies[0].matches[m].action
                    for m in evaluation.match_index
                )
                total += len(packets)
        finally:
            receivers.stop()
    assert disagreements == []
    assert total >= 10_000
    # The run exercised forwards, drops and both default actions.
    kinds = ("forward", "drop", "default forward", "default drop")
    assert min(decided_kinds[k] for k in kinds) > 500, decided_kinds
    print(
        f"kernel differential: {total} packets, {ROUNDS} policies, 0 disagreements, {decided_kinds}"
    )


def test_a_group_named_a_plus_b_is_not_the_union_of_groups_a_and_b(tmp_path):
    """Issue 10 #3: set names were `+`-joined group names, sanitised, then made unique; a
    group `a+b` and a rule over `a`, `b` both became set `a_b_v4`, declared twice, and the
    `a+b` drop rule dropped 10.66.2.5 while the evaluator (and `check`) forwarded it."""
    require_root_and_nft()
    policy_set = PolicySet.model_validate(
        {
            "devices": [{"name": "sw1", "platform": "nftables"}],
            "domains": [{"name": "d1", "devices": ["sw1"]}],
            "groups": [
                {"name": "a", "prefixes": ["10.66.1.0/24"]},
                {"name": "b", "prefixes": ["10.66.2.0/24"]},
                {"name": "a+b", "prefixes": ["10.66.3.1/32"]},
            ],
            "rules": [
                {
                    "name": "drop-a+b",
                    "sources": ["a+b"],
                    "destinations": "any",
                    "services": "any",
                    "direction": "unidirectional",
                    "action": "drop",
                },
                {
                    "name": "allow-a-b",
                    "sources": ["a", "b"],
                    "destinations": "any",
                    "services": "any",
                    "direction": "unidirectional",
                },
            ],
            "policies": [
                {"name": "p1", "id": 1, "domain": "d1", "rules": ["drop-a+b", "allow-a-b"]}
            ],
        }
    )
    intent = compile_all(policy_set)["sw1"]
    ruleset = render_ruleset(intent)
    declared = [line.split()[1] for line in ruleset.splitlines() if line.startswith("\tset ")]
    assert sorted(declared) == ["v4/a.2b.b", "v4/a/b"]
    packets = [
        {
            "source_host": host,
            "src": f"10.66.{host}.{last}",
            "dst": f"10.66.{3 if host != 3 else 1}.5",
            "protocol": 17,
            "sport": 5000,
            "dport": 53,
            "icmp_type": 0,
            "padding": 10 * host + last,
        }
        for host, last in ((1, 5), (2, 5), (3, 1), (3, 2))
    ]
    with namespaces("switch", *(f"h{h}" for h in HOSTS)) as names:
        build_lab(names)
        receivers = Receivers(names, tmp_path)
        try:
            found, evaluation = check_round(names, receivers, intent, packets, 0, tmp_path)
        finally:
            receivers.stop()
    assert found == []
    # 10.66.2.5 is forwarded by allow-a-b; only 10.66.3.1 (group a+b) is dropped.
    assert [evaluation.decision(i).match for i in range(4)] == [
        "allow-a-b",
        "allow-a-b",
        "drop-a+b",
        "ipv4-all-default",
    ]
    assert list(evaluation.forwarded) == [True, True, False, True]

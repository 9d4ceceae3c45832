"""Benchmark: 1,000,000 packets against a 1,000-rule policy, vectorised engine vs per-packet loop.

The baseline is the straightforward evaluator (`microseg.evaluate.reference`): one packet at a
time, matches in order, over the same DeviceIntent; it is timed on a sample and reported per
packet. Prints one JSON line.

Run: .venv/bin/python bench/evaluate.py [--packets N] [--rules N] [--sample N]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from microseg.compile.resolve import compile_device
from microseg.evaluate import CompiledDevice, PacketBatch
from microseg.evaluate.reference import evaluate_one
from microseg.model import PolicySet


def generated_policy(rules: int, seed: int) -> PolicySet:
    """A policy like a data centre's: groups of subnets and hosts in 10/8, TCP/UDP services,
    bidirectional forward rules ending in a few broad drops."""
    rng = random.Random(seed)
    groups = []
    for index in range(rules // 4):
        prefixes = set()
        for _ in range(rng.randint(1, 4)):
            length = rng.choice((24, 26, 28, 32, 32))
            base = rng.randrange(0, 1 << 24) << 8 | rng.randrange(256)
            prefixes.add(
                str(ipaddress.ip_network((0x0A000000 | base >> 8 & 0xFFFFFF, length), strict=False))
            )
        groups.append({"name": f"group-{index:04d}", "prefixes": sorted(prefixes)})
    services = []
    for index in range(rules // 10):
        protocol = rng.choice(("tcp", "tcp", "udp"))
        low = rng.randrange(1, 60000)
        ports = [low] if rng.random() < 0.8 else [f"{low}-{low + rng.randint(1, 500)}"]
        services.append(
            {"name": f"svc-{index:03d}", "protocol": protocol, "destination_ports": ports}
        )
    rule_list = []
    for index in range(rules):
        rule_list.append(
            {
                "name": f"rule-{index:04d}",
                "sources": [rng.choice(groups)["name"]] if rng.random() < 0.8 else "any",
                "destinations": [rng.choice(groups)["name"]],
                "services": sorted(
                    {rng.choice(services)["name"] for _ in range(rng.randint(1, 2))}
                ),
                "action": "drop"
                if index >= rules - 5
                else rng.choice(("forward", "forward", "drop")),
            }
        )
    return PolicySet.model_validate(
        {
            "devices": [{"name": "leaf1", "platform": "eos"}],
            "domains": [{"name": "dc", "devices": ["leaf1"], "vrfs": ["default"]}],
            "groups": groups,
            "services": services,
            "rules": rule_list,
            "policies": [
                {
                    "name": "dc-policy",
                    "id": 1,
                    "domain": "dc",
                    "vrf": "ALL",
                    "rules": [r["name"] for r in rule_list],
                }
            ],
        }
    )


def generated_packets(policy_set: PolicySet, count: int, seed: int) -> dict[str, np.ndarray]:
    """Packets aimed at rules (a source, destination and service a rule names: 70%), the
    rest random in 10/8, so that early, late and default decisions all happen."""
    rng = np.random.default_rng(seed)
    first_host = {
        g.name: int(g.prefixes[0].network_address) + (g.prefixes[0].num_addresses > 1)
        for g in policy_set.groups
    }
    services = {s.name: s for s in policy_set.services}
    rules = policy_set.rules
    aimed_src = np.array([first_host[r.sources[0]] if r.sources else 0x0A000001 for r in rules])
    aimed_dst = np.array([first_host[r.destinations[0]] for r in rules])
    aimed_service = [services[r.services[0]] for r in rules]
    aimed_dport = np.array([s.destination_ranges[0].low for s in aimed_service])
    aimed_protocol = np.array([s.protocol_number for s in aimed_service])
    chosen = rng.integers(0, len(rules), count)
    aimed = rng.random(count) < 0.7
    return {
        "src": np.where(aimed, aimed_src[chosen], rng.integers(0x0A000000, 0x0B000000, count)),
        "dst": np.where(aimed, aimed_dst[chosen], rng.integers(0x0A000000, 0x0B000000, count)),
        "protocol": np.where(aimed, aimed_protocol[chosen], rng.choice([6, 6, 17], count)).astype(
            np.int16
        ),
        "sport": rng.integers(49152, 65536, count).astype(np.int32),
        "dport": np.where(aimed, aimed_dport[chosen], rng.integers(1, 65536, count)).astype(
            np.int32
        ),
    }


def to_batch(columns: dict[str, np.ndarray]) -> PacketBatch:
    """Integer IPv4 columns straight into a PacketBatch (no string parsing on the timed path)."""

    def as_bytes(integers: np.ndarray) -> np.ndarray:
        raw = np.zeros((len(integers), 16), dtype=np.uint8)
        raw[:, 12:] = integers.astype(">u4").view(np.uint8).reshape(-1, 4)
        return raw.view("S16").reshape(-1)

    count = len(columns["src"])
    return PacketBatch(
        vrf=np.full(count, "default"),
        family=np.full(count, 4, dtype=np.uint8),
        protocol=columns["protocol"],
        src=as_bytes(columns["src"]),
        dst=as_bytes(columns["dst"]),
        sport=columns["sport"],
        dport=columns["dport"],
        icmp_type=np.full(count, 256, dtype=np.int16),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--rules", type=int, default=1_000)
    parser.add_argument("--sample", type=int, default=2_000)
    args = parser.parse_args()
    policy_set = generated_policy(args.rules, seed=1)
    intent = compile_device(policy_set, "leaf1")
    columns = generated_packets(policy_set, args.packets, seed=2)
    batch = to_batch(columns)

    started = time.perf_counter()
    device = CompiledDevice(intent)
    prepared = time.perf_counter()
    evaluation = device.evaluate(batch)
    finished = time.perf_counter()
    engine_seconds = finished - started

    sample = range(min(args.sample, args.packets))
    loop_started = time.perf_counter()
    reference = [
        evaluate_one(
            intent,
            "default",
            int(columns["protocol"][i]),
            str(ipaddress.IPv4Address(int(columns["src"][i]))),
            str(ipaddress.IPv4Address(int(columns["dst"][i]))),
            int(columns["sport"][i]),
            int(columns["dport"][i]),
            None,
        )
        for i in sample
    ]
    loop_seconds = (time.perf_counter() - loop_started) / len(sample)
    disagreements = sum(
        (evaluation.decision(i).verdict, evaluation.decision(i).match) != (r[0], r[2])
        for i, r in zip(sample, reference, strict=True)
    )
    engine_rate = args.packets / engine_seconds
    loop_rate = 1 / loop_seconds
    print(
        json.dumps(
            {
                "bench": "evaluate",
                "packets": args.packets,
                "rules": args.rules,
                "matches": sum(len(p.matches) for p in intent.policies),
                "engine_seconds": round(engine_seconds, 3),
                "engine_prepare_seconds": round(prepared - started, 3),
                "engine_packets_per_s": round(engine_rate),
                "loop_packets_per_s": round(loop_rate, 1),
                "loop_sample": len(sample),
                "ratio": round(engine_rate / loop_rate, 1),
                "decided_by_a_rule": round(float((evaluation.match_index >= 0).mean()), 3),
                "sample_disagreements": disagreements,
            },
            sort_keys=False,
        )
    )


if __name__ == "__main__":
    main()

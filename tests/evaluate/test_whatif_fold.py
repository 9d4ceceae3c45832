"""What-if's fold in the session engine (`flows.engines.replay_rows`): rows a device cannot
tell apart (same VRF, protocol, ends and server port; client ports in one cell of the
policies' port boundaries) come back as one, and the report does not change by a byte. The
candidate drops HTTP from client ports 40000-40999 only, so a fold across that boundary
would be wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from microseg.evaluate.whatif import replay_cuts, whatif
from microseg.flows.flowstore import read_sessions
from microseg.policyfile import load_policy
from support import EXAMPLES, write_sessions

CANDIDATE = {
    "services:\n": """services:
  - name: HTTP-FROM-40K
    protocol: tcp
    destination_ports: [80]
    source_ports: [40000-40999]
""",
    "rules:\n": """rules:
  - name: no-http-from-40k
    sources: [wifi_clients]
    destinations: [web01_web02]
    services: [HTTP-FROM-40K]
    action: drop
""",
    "      - clients_to_webservers\n": "      - no-http-from-40k\n      - clients_to_webservers\n",
}
CLIENTS = ["172.18.6.10", "172.18.6.11", "172.18.6.12", "192.0.2.9", "10.100.99.51"]
SERVERS = ["10.100.99.50", "10.100.99.51", "10.100.99.52", "10.100.1.6"]
SERVICES = [("tcp", 80), ("tcp", 22), ("tcp", 4567), ("udp", 53), ("udp", 123), ("icmp", 2048)]
DAY_MS = 1_763_510_400_000


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    text = (EXAMPLES / "home-lab.yaml").read_text()
    for old, new in CANDIDATE.items():
        assert old in text
        text = text.replace(old, new, 1)
    candidate = tmp_path_factory.mktemp("whatif") / "candidate.yaml"
    candidate.write_text(text)
    return load_policy(EXAMPLES / "home-lab.yaml"), load_policy(candidate)


def _store(directory: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(1500):
        client, server = str(rng.choice(CLIENTS)), str(rng.choice(SERVERS))
        protocol, dport = SERVICES[int(rng.integers(len(SERVICES)))]
        if rng.random() < 0.5:  # a busy client on HTTP: folds of many rows
            client, server, protocol, dport = CLIENTS[0], SERVERS[1], "tcp", 80
        sport = 0 if protocol == "icmp" else int(rng.choice([rng.integers(1024, 65536),
                                                             rng.integers(39990, 41010)]))  # fmt: skip
        at = DAY_MS + int(rng.integers(0, 20)) * 1000  # many ties on first seen
        rows.append(
            {
                "vrf": "default", "protocol": protocol, "src": client, "sport": sport,
                "dst": server, "dport": dport, "fwd_packets": int(rng.integers(1, 9)),
                "fwd_bytes": int(rng.integers(60, 9000)), "rev_packets": int(rng.integers(0, 3)),
                "rev_bytes": int(rng.integers(0, 500)), "complete": 1, "half_open": 0,
                "first_seen": at, "last_seen": at + 900, "exporter": "10.0.0.1",
                "rev_exporter": "10.0.0.1", "fwd_tcp_flags": 0, "rev_tcp_flags": 0,
                "sessions": 1,
            }
        )  # fmt: skip
    return write_sessions(directory, rows)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("direction", ["tighten", "loosen"])
def test_whatif_on_the_folded_sessions_reports_every_byte_as_unfolded(
    tmp_path, policies, seed, direction
):
    base, candidate = policies if direction == "tighten" else policies[::-1]
    store = _store(tmp_path / "store", seed)
    plain = read_sessions(store)
    folded = read_sessions(store, replay_cuts=replay_cuts(base, candidate))
    assert folded.num_rows < plain.num_rows * 0.6
    expected = whatif(base, candidate, plain)
    assert json.dumps(whatif(base, candidate, folded)) == json.dumps(expected)
    assert expected["rows"] == plain.num_rows
    changed = "newly_blocked" if direction == "tighten" else "newly_allowed"
    assert {g["rule"] for g in expected[changed]["groups"]} == {"no-http-from-40k"}
    # without the boundaries of the candidate's ports the fold would be wrong
    assert whatif(base, candidate, read_sessions(store, replay_cuts=())) != expected


def test_the_cuts_are_both_policies_port_boundaries(policies):
    base, candidate = policies
    assert {40000, 41000} <= set(replay_cuts(base, candidate)) - set(replay_cuts(base, base))

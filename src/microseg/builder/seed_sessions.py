"""Sessions of the seed's two Policy Builder scenarios, as the collector writes them.

Rows carry the fields `microseg sessions list --json` prints; `src` opened the session.
Everything is generated from a seeded RNG, so a fixture is the same bytes every run.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

START = datetime(2025, 11, 19, 18, 0, tzinfo=UTC)
SWITCH_VTEP = "10.255.1.10"  # the 720XP's Loopback0, the exporter in the seed's session table
DNS_SERVERS = ("10.100.1.6", "10.100.1.7")
WEB01, WEB02, APPSERVER1 = "10.100.99.51", "10.100.99.52", "10.100.99.50"
LAPTOP = "172.18.6.138"
UBUNTU_MIRRORS = ("91.189.91.81", "185.125.190.36")  # package updates from the internet


def session(
    src: str,
    sport: int | str,
    dst: str,
    dport: int,
    protocol: str = "udp",
    *,
    at: int = 0,
    reply: bool = True,
    packets: int = 1,
    size: int = 80,
    sessions: int = 1,
) -> dict:
    """One session row; `at` seconds after the start. No reply = a half-open attempt."""
    first = START + timedelta(seconds=at)
    return {
        "vrf": "default",
        "protocol": protocol,
        "src": src,
        "sport": sport,
        "dst": dst,
        "dport": dport,
        "fwd_packets": packets * sessions,
        "fwd_bytes": packets * size * sessions,
        "rev_packets": packets * sessions if reply else 0,
        "rev_bytes": packets * (size + 60) * sessions if reply else 0,
        "complete": sessions if reply else 0,
        "half_open": 0 if reply else sessions,
        "first_seen": first.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "last_seen": (first + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "exporter": SWITCH_VTEP,
        "sessions": sessions,
    }


def wifi_clients(count: int) -> list[str]:
    return [f"172.18.6.{10 + i}" for i in range(count)]


def dns_ntp_sessions(client_count: int = 60, seed: int = 7) -> list[dict]:
    """Every wifi client asks both servers for DNS (udp/53) and NTP (udp/123)."""
    rng = random.Random(seed)
    rows = []
    for client in wifi_clients(client_count):
        for server in DNS_SERVERS:
            for _ in range(rng.randint(1, 3)):
                rows.append(
                    session(client, rng.randint(32768, 49151), server, 53, at=rng.randint(0, 3600))
                )
            rows.append(session(client, "eph", server, 53, at=rng.randint(0, 3600), sessions=4))
            rows.append(session(client, 123, server, 123, at=rng.randint(0, 3600), size=76))
    return rows


def web_app_sessions(seed: int = 11) -> list[dict]:
    """What the seed's monitor rule on web01, web02 and appserver1 collected."""
    rng = random.Random(seed)
    rows = []
    for server in (WEB01, WEB02, APPSERVER1):
        for dns in DNS_SERVERS:
            rows.append(session(server, rng.randint(32768, 60999), dns, 53, at=rng.randint(0, 600)))
            rows.append(session(server, 123, dns, 123, at=rng.randint(0, 600)))
        for mirror in UBUNTU_MIRRORS:
            rows.append(
                session(
                    server, "eph", mirror, 80, "tcp", at=rng.randint(0, 600), packets=12, sessions=3
                )
            )
    for web in (WEB01, WEB02):
        rows.append(
            session(LAPTOP, "eph", web, 80, "tcp", at=rng.randint(0, 600), packets=8, sessions=5)
        )
        for _ in range(4):
            rows.append(
                session(
                    web,
                    rng.randint(40000, 48000),
                    APPSERVER1,
                    4567,
                    "tcp",
                    at=rng.randint(0, 600),
                    packets=6,
                )
            )
    return rows


def blocked_attempts() -> list[dict]:
    """SSH and HTTP nobody answered (dropped by the policy): half-open, no reply."""
    return [
        session(LAPTOP, 51234, APPSERVER1, 22, "tcp", at=30, reply=False),
        session(LAPTOP, 51240, APPSERVER1, 22, "tcp", at=31, reply=False),
        session(WEB01, 41000, WEB02, 80, "tcp", at=40, reply=False),
    ]


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text(
        "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows), encoding="utf-8"
    )
    return path

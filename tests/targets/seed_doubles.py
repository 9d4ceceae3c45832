"""The seed lab's switch and vZTX as eAPI test doubles, with the configuration they have
besides what microseg owns."""

from __future__ import annotations

import argparse
import signal
import sys

from eapi_double import EapiDouble

# What the seed's 720XP and vZTX have besides what microseg owns (from the seed's
# listings): a routed uplink, the tunnel loopback and a route.
SWITCH_OWN_CONFIG = """\
interface Ethernet1
   description uplink to core
   no switchport
   ip address 172.18.111.1/24
!
interface Loopback0
   description vZTX_tunnel
   ip address 10.255.1.10/32
!
ip routing
!
ip route 10.255.1.11/32 172.18.111.2
!
"""
VZTX_OWN_CONFIG = """\
interface Ethernet1
   no switchport
   ip address 172.18.111.2/24
!
interface Loopback0
   ip address 10.255.1.11/32
!
firewall distributed instance
   no disabled
!
ip route 0.0.0.0/0 172.18.111.1
!
"""


def seed_switch(**options) -> EapiDouble:
    """The seed's 720XP (not started: use it as a context manager)."""
    return EapiDouble("andreasm-720xp-home", running_config=SWITCH_OWN_CONFIG, **options)


def seed_vztx(**options) -> EapiDouble:
    """The seed's vZTX monitor node (not started: use it as a context manager)."""
    return EapiDouble(
        "andreas-ztx1",
        model="CloudEOS",
        version="4.35.0F-cloud",
        running_config=VZTX_OWN_CONFIG,
        **options,
    )


def point_policy(text: str, switch_port: int, vztx_port: int) -> str:
    """A seed example's text with the switch and the vZTX reached at the doubles (http on
    127.0.0.1): plain text edits, so this works without microseg installed."""
    lines = []
    for line in text.splitlines():
        if line.strip() == "management_address: 172.18.100.201":  # the vZTX
            lines += _management("    ", vztx_port)
            continue
        lines.append(line)
        if line == "  - name: andreasm-720xp-home":
            lines += _management("    ", switch_port)
    return "\n".join(lines) + "\n"


def _management(indent: str, port: int) -> list[str]:
    return [
        f"{indent}management_address: 127.0.0.1",
        f"{indent}management_port: {port}",
        f"{indent}management_transport: http",
    ]


def main() -> None:
    """Serve the seed's switch and vZTX as eAPI test doubles until interrupted; with
    --point FILE, print that seed example pointed at them instead."""
    parser = argparse.ArgumentParser(description="eAPI test doubles of the seed's switch and vZTX")
    parser.add_argument("--switch-port", type=int, default=8443)
    parser.add_argument("--vztx-port", type=int, default=8444)
    parser.add_argument("--point", metavar="POLICY", help="print POLICY pointed at the doubles")
    args = parser.parse_args()
    if args.point:
        with open(args.point, encoding="utf-8") as file:
            print(point_policy(file.read(), args.switch_port, args.vztx_port), end="")
        return
    # Blocked before the servers' threads start (they inherit it): only sigwait sees them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    with seed_switch(port=args.switch_port) as switch, seed_vztx(port=args.vztx_port) as vztx:
        for double in (switch, vztx):
            name = double.hostname(double.running)
            print(f"eAPI test double {name} on http://127.0.0.1:{double.port} (admin / secret)")
        sys.stdout.flush()
        signal.sigwait({signal.SIGINT, signal.SIGTERM})


if __name__ == "__main__":
    main()

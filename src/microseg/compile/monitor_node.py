"""The monitor node's (vZTX) EOS configuration: GRE tunnels from the switches that mirror
to it, and distributed firewall flow tracking exporting IPFIX to microseg's collector.

The values are the seed's (`show interfaces tunnel 0`, `show flow tracking firewall
distributed` on andreas-ztx1): `Tunnel0` with source the node's Loopback0 and destination
the switch's Loopback0, GRE/IP; tracker `flowtrkr`, active interval 1800000 ms (the monitor
object's active timeout), inactive timeout 15000 ms, exporter `exp` with local interface
Loopback0, IPFIX version 10, collector address and port. The layout follows EOS's
`flow tracking` sub-modes as pyavd renders `flow tracking hardware` (tracker / record export
on inactive timeout / record export on interval / exporter / collector / format ipfix
version 10 / local interface) and `interface TunnelN` (tunnel mode gre / tunnel source
interface / tunnel destination).
"""

from __future__ import annotations

from dataclasses import dataclass

from microseg.compile.intent import DeviceIntent
from microseg.compile.resolve import CompileError
from microseg.model import PolicySet
from microseg.model.objects import IPAddress

INDENT = "   "
TRACKER = "flowtrkr"
EXPORTER = "exp"
INACTIVE_TIMEOUT_MS = 15000  # the seed's `Inactive timeout: 15000 ms`
# Marks a tunnel interface as microseg's: the EOS driver replaces such tunnels on a deploy.
TUNNEL_DESCRIPTION_PREFIX = "mirror from "


@dataclass(frozen=True)
class Collector:
    """Where the monitor node exports IPFIX: microseg's collector."""

    address: IPAddress
    port: int


def render_monitor_node(
    policy_set: PolicySet,
    node_name: str,
    intents: dict[str, DeviceIntent],
    collector: Collector | None = None,
) -> str:
    """The node's configuration for the switches in `intents` that mirror to it."""
    node = policy_set.get("monitor_nodes", node_name)
    if node is None:
        raise CompileError(f"monitor node {node_name!r} is not defined")
    collector = collector or Collector(node.collector_address, node.collector_port)
    tunnels = _tunnel_peers(policy_set, node_name, intents)
    if not tunnels:  # no switch mirrors here: nothing for microseg to configure
        return ""
    lines: list[str] = []
    for number, switch, address in tunnels:
        lines += [
            f"interface Tunnel{number}",
            f"{INDENT}description {TUNNEL_DESCRIPTION_PREFIX}{switch}",
            f"{INDENT}tunnel mode gre",
            f"{INDENT}tunnel source interface {node.loopback_interface}",
            f"{INDENT}tunnel destination {address}",
            # Binds the tracker to the tunnel: the seed's vZTX reports "Active Ingress
            # Interfaces: Tu0". Unverified on a switch: written by analogy with EOS's
            # `flow tracker hardware NAME` / `flow tracker sampled NAME` interface commands
            # (pyavd ethernet_interfaces[].flow_tracker) for `flow tracking firewall
            # distributed`; no public EOS example of this line was found.
            f"{INDENT}flow tracker firewall distributed {TRACKER}",
            "!",
        ]
    monitor_objects = [
        m
        for m in policy_set.monitor_objects
        if node_name in m.monitor_nodes
        and m.name
        in {s.monitor_object for i in intents.values() for s in i.mirror_sessions.values()}
    ] or [m for m in policy_set.monitor_objects if node_name in m.monitor_nodes]
    active = {m.active_timeout_ms for m in monitor_objects}
    exporters = {m.exporter_interface for m in monitor_objects}
    if len(active) > 1 or len(exporters) > 1:
        names = ", ".join(m.name for m in monitor_objects)
        raise CompileError(
            f"monitor node {node_name!r}: monitor objects {names} disagree on the active "
            "timeout or exporter interface; the node runs one flow tracker"
        )
    active_ms, exporter_interface = active.pop(), exporters.pop()
    lines += [
        "flow tracking firewall distributed",
        f"{INDENT}tracker {TRACKER}",
        f"{INDENT * 2}record export on inactive timeout {INACTIVE_TIMEOUT_MS}",
        f"{INDENT * 2}record export on interval {active_ms}",
        f"{INDENT * 2}exporter {EXPORTER}",
        f"{INDENT * 3}collector {collector.address} port {collector.port}",
        f"{INDENT * 3}format ipfix version 10",
        f"{INDENT * 3}local interface {exporter_interface}",
        f"{INDENT}no shutdown",
        "!",
    ]
    return "\n".join(lines) + "\n"


def _tunnel_peers(
    policy_set: PolicySet, node_name: str, intents: dict[str, DeviceIntent]
) -> list[tuple[int, str, IPAddress]]:
    """(tunnel number, switch, its tunnel source address) for every switch mirroring to the
    node, by tunnel number. A switch's number is its own (`Device.monitor_tunnel_id`), so it
    never changes when other switches come or go; two switches on one number are an error."""
    peers: dict[str, IPAddress] = {}
    for device, intent in sorted(intents.items()):
        for session in intent.mirror_sessions.values():
            if node_name not in session.monitor_nodes:
                continue
            if session.tunnel_source is None:
                raise CompileError(
                    f"device {device!r} mirrors to monitor node {node_name!r} but has no "
                    "loopback_address for the GRE tunnel"
                )
            peers[device] = session.tunnel_source
    tunnels: dict[int, tuple[int, str, IPAddress]] = {}
    for switch, address in peers.items():
        switch_device = policy_set.device(switch)
        number = switch_device.monitor_tunnel_id
        if number in tunnels:
            other = tunnels[number][1]
            given = switch_device.monitor_tunnel is not None
            how = "is given" if given else "derives from its name"
            raise CompileError(
                f"monitor node {node_name!r}: switches {other!r} and {switch!r} both get "
                f"Tunnel{number} ({switch!r} {how} {number}); set a distinct monitor_tunnel "
                "on one of them"
            )
        tunnels[number] = (number, switch, address)
    return [tunnels[number] for number in sorted(tunnels)]

"""The EOS target: traffic-policies (and the monitor node's tunnels and flow tracking),
deployed through eAPI."""

from __future__ import annotations

from typing import Any

from microseg.compile import eos
from microseg.compile.intent import DeviceIntent
from microseg.compile.monitor_node import Collector, render_monitor_node
from microseg.compile.resolve import RESERVED_MATCH_NAMES
from microseg.model import PolicySet
from microseg.targets import Driver, DriverError
from microseg.targets.target import Capabilities, Credentials, HardwareBudget, Limits, RenderOptions

# Hardware entry budgets for traffic-policy matches. These are planning figures, not
# vendor-published limits: the real number depends on the TCAM profile and on what else
# shares the ingress slices. Confirm on the switch with `show hardware tcam profile` /
# `show platform trident tcam`.
HARDWARE_BUDGETS = {
    "CCS-720XP": HardwareBudget(
        4096,
        "planning figure for the 720XP (Broadcom Trident3-X3) ingress TCAM share of the "
        "default traffic-policy profile; confirm with `show hardware tcam profile`",
    ),
    None: HardwareBudget(
        4096,
        "generic EOS planning figure (same as the 720XP); set the device's `hardware` for a "
        "platform-specific budget",
    ),
}


class EosTarget:
    name = "eos"
    description = "Arista EOS traffic-policies over eAPI"
    # EOS: traffic policies redirect (`redirect next-hop`), match VXLAN decap state
    # (`packet type vxlan decap`), mirror (`mirror session`), take IPv6 matches, and
    # forward what no match decides (the implicit `ipv4-all-default` matches).
    capabilities = Capabilities(monitor_node=True)
    limits = Limits(
        # Matches EOS creates itself in every traffic policy (the resolver refuses them
        # too, before any target renders).
        reserved_match_names=RESERVED_MATCH_NAMES,
        hardware_budgets=HARDWARE_BUDGETS,
    )
    default_verdict = "forward"

    def render(self, intent: DeviceIntent, options: RenderOptions) -> str:
        return eos.render_device(intent)

    def render_monitor_node(
        self,
        policy_set: PolicySet,
        name: str,
        intents: dict[str, DeviceIntent],
        collector: Collector | None,
    ) -> str:
        return render_monitor_node(policy_set, name, intents, collector)

    def driver(
        self,
        device: Any,
        credentials: Credentials | None,
        session: str | None = None,
        timeout: float | None = None,
    ) -> Driver:
        from microseg.model import MonitorNode
        from microseg.targets.eos.driver import EapiEndpoint, EosDriver
        from microseg.targets.eos.sections import Role

        if device.management_address is None:
            raise DriverError(device.name, "no management_address: microseg cannot reach it")
        if credentials is None:
            raise DriverError(device.name, "eAPI needs a username and password")
        role: Role = "monitor-node" if isinstance(device, MonitorNode) else "switch"
        endpoint = EapiEndpoint(
            host=str(device.management_address),
            port=device.management_port,
            transport=device.management_transport,
            ca_file=credentials.ca_file,
            **({"timeout": timeout} if timeout is not None else {}),
        )
        return EosDriver(
            device.name,
            endpoint,
            credentials.username,
            credentials.password,
            role=role,
            session=session,
        )


TARGET = EosTarget()

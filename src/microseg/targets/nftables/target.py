"""The nftables target: one atomic `nft -f` table, on the local host or in a network
namespace."""

from __future__ import annotations

from typing import Any

from microseg.compile.intent import DeviceIntent
from microseg.targets import Driver
from microseg.targets.nftables.render import render_ruleset
from microseg.targets.target import Capabilities, Credentials, HardwareBudget, Limits, RenderOptions


class NftablesTarget:
    name = "nftables"
    description = "Linux nftables (table inet microseg), local or in a network namespace"
    # nftables filters; it cannot redirect to next-hops (policy routing) and does not see
    # VXLAN decapsulation state. It mirrors through NFLOG groups (see render.py).
    capabilities = Capabilities(redirect=False, decap=False, mirror=True)
    limits = Limits(
        hardware_budgets={
            None: HardwareBudget(
                None, "software: nftables interval sets have no hardware entry limit"
            )
        }
    )
    default_verdict = "forward"

    def render(self, intent: DeviceIntent, options: RenderOptions) -> str:
        return render_ruleset(intent, omit_mirror=options.omit_mirror)

    def driver(
        self,
        device: Any,
        credentials: Credentials | None,
        session: str | None = None,
        timeout: float | None = None,
    ) -> Driver:
        """The host's nftables (as root: no credentials) or the device's namespace's.
        `timeout` does not apply: nft runs on this host."""
        from microseg.targets.nftables.driver import NftablesDriver

        return NftablesDriver(device.name, device.management_namespace, session)


TARGET = NftablesTarget()

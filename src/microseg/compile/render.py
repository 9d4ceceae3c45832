"""One entry point for every target: a device or monitor node name -> configuration text."""

from __future__ import annotations

from typing import Literal

from microseg.compile import eos
from microseg.compile.intent import DeviceIntent
from microseg.compile.monitor_node import Collector, render_monitor_node
from microseg.compile.resolve import CompileError, compile_all, compile_device
from microseg.model import PolicySet

Target = Literal["eos", "nftables"]


def render_config(
    policy_set: PolicySet,
    name: str,
    target: Target | None,
    intents: dict[str, DeviceIntent] | None = None,
    collector: Collector | None = None,
    omit_mirror: bool = False,
) -> tuple[str, Target]:
    """(configuration, target) of device or monitor node `name`.

    `intents` is `compile_all(policy_set)` when the caller has it: a monitor node's
    configuration depends on every switch that mirrors to it, a switch's only on itself. `target` None means the device's own platform.
    `omit_mirror`: nftables only, render monitored matches without the mirror action."""
    if policy_set.get("monitor_nodes", name) is not None:
        if target not in (None, "eos"):
            raise CompileError(f"monitor node {name!r} runs EOS; --target {target} does not apply")
        if intents is None:
            intents = compile_all(policy_set)
        return render_monitor_node(policy_set, name, intents, collector), "eos"
    intent = (intents or {}).get(name) or compile_device(policy_set, name)
    chosen: Target = target or intent.platform
    if chosen == "eos":
        return eos.render_device(intent), chosen
    from microseg.compile.nftables import render_ruleset

    return render_ruleset(intent, omit_mirror=omit_mirror), chosen

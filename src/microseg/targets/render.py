"""One entry point for every target: a device or monitor node -> its configuration text,
and the per-device diffs of two policies' configurations.

The target is the device's platform (or the one a caller asks for), looked up in the
registry; its capabilities are checked before it renders, so a policy it cannot enforce is
refused naming the target, the rule and the capability.
"""

from __future__ import annotations

from microseg.compile.diff import DeviceDiff, diff_text
from microseg.compile.intent import DeviceIntent
from microseg.compile.resolve import CompileError, compile_all, compile_device
from microseg.model import MicrosegError, PolicySet
from microseg.targets import registry
from microseg.targets.eos.monitor_node import Collector
from microseg.targets.target import RenderOptions, check_capabilities


def render_config(
    policy_set: PolicySet,
    name: str,
    target: str | None,
    intents: dict[str, DeviceIntent] | None = None,
    collector: Collector | None = None,
    omit_mirror: bool = False,
) -> tuple[str, str]:
    """(configuration, target name) of device or monitor node `name`.

    `intents` is `compile_all(policy_set)` when the caller has it: a monitor node's
    configuration depends on every switch that mirrors to it, a switch's only on itself.
    `target` None means the device's own platform. `omit_mirror`: render monitored
    matches without the mirror action on a target that cannot mirror."""
    node = policy_set.get("monitor_nodes", name)
    if node is not None:
        chosen = registry.get(target or node.platform)
        if not chosen.capabilities.monitor_node:
            raise CompileError(
                f"monitor node {name!r}: target {chosen.name!r} does not render monitor nodes"
            )
        if intents is None:
            intents = compile_all(policy_set)
        return chosen.render_monitor_node(policy_set, name, intents, collector), chosen.name  # type: ignore[attr-defined]
    intent = (intents or {}).get(name) or compile_device(policy_set, name)
    chosen = registry.get(target or intent.platform)
    options = RenderOptions(omit_mirror=omit_mirror)
    check_capabilities(chosen, intent, options)
    return chosen.render(intent, options), chosen.name


def device_config(
    policy_set: PolicySet,
    name: str,
    intents: dict[str, DeviceIntent],
    collector: Collector | None = None,
) -> str:
    """`name`'s configuration, or "" when the policy does not configure it at all."""
    is_node = policy_set.get("monitor_nodes", name) is not None
    if not is_node and name not in intents:
        return ""
    return render_config(policy_set, name, None, intents, collector)[0]


def configured_names(policy_set: PolicySet) -> list[str]:
    """Every device in a domain and every monitor node, sorted by name."""
    names = {d for domain in policy_set.domains for d in domain.devices}
    names |= {node.name for node in policy_set.monitor_nodes}
    return sorted(names)


def check_configured(old: PolicySet, new: PolicySet, devices: list[str] | None) -> None:
    """Refuse a device (`diff --device`) that neither policy configures."""
    known = set(configured_names(old)) | set(configured_names(new))
    unknown = [d for d in devices or [] if d not in known]
    if unknown:
        raise MicrosegError(
            f"device {unknown[0]!r} is configured by neither policy "
            f"(devices: {', '.join(sorted(known)) or 'none'})"
        )


def diff_policies(
    old: PolicySet,
    new: PolicySet,
    devices: list[str] | None = None,
    old_label: str = "old",
    new_label: str = "new",
) -> list[DeviceDiff]:
    """Per-device diffs between two policies (every configured device when None)."""
    old_intents, new_intents = compile_all(old), compile_all(new)
    names = devices or sorted(set(configured_names(old)) | set(configured_names(new)))
    return [
        diff_text(
            name,
            device_config(old, name, old_intents),
            device_config(new, name, new_intents),
            old_label,
            new_label,
        )
        for name in names
    ]


def diff_configs(old: PolicySet, new: PolicySet, device: str) -> DeviceDiff:
    """One device's diff between two policies."""
    return diff_policies(old, new, [device])[0]

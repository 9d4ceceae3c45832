"""What a target (a platform microseg renders for and deploys to) declares and does.

A target is one object honouring `Target`: its name, what it can express (`Capabilities`),
what it cannot hold (`Limits`), the verdict of traffic no policy decides, how it renders a
`DeviceIntent`, and how to reach a device (`driver`). Counters come back through the
driver (`Driver.counters()`), per (policy, match) as the intent names them. Nobody else
hard-codes a platform's limits: the compiler's refusals, lint's hardware budget, the
builder's config-line count and the CLI's `--target` choices all ask the target.

Built-in targets live in `targets/eos/` and `targets/nftables/`; third-party ones in their
own distributions, registered under the entry point group `microseg.targets` (see
`microseg.targets.registry` and the README's "Adding a platform").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from microseg.compile.intent import DeviceIntent, Match
from microseg.compile.resolve import CompileError

if TYPE_CHECKING:
    from microseg.targets import Driver


@dataclass(frozen=True)
class Capabilities:
    """What a target can express. A policy needing more is refused, naming the target, the
    rule and the capability (`capability_refusals`).

    Example: Capabilities(redirect=False, decap=False, mirror=False)
    """

    redirect: bool = True  # `action: redirect` to next-hops
    decap: bool = True  # decap types other than `allow-all`
    mirror: bool = True  # monitor rules (mirroring to a monitor node)
    ipv6: bool = True  # IPv6 matches
    default_actions: frozenset[str] = frozenset({"forward", "drop"})  # policy default_action
    monitor_node: bool = False  # renders monitor-node configuration


@dataclass(frozen=True)
class HardwareBudget:
    """How many hardware entries a device holds for its policies (None: no such limit),
    and where the figure comes from."""

    entries: int | None
    source: str


# How a budget's source begins when the device names a model its target has no figure for.
NO_FIGURE_FOR_MODEL = "no figure for hardware"


@dataclass(frozen=True)
class Limits:
    """What a target cannot hold.

    `max_name_bytes`: longest policy or match name (UTF-8 bytes), None = any;
    `reserved_match_names`: names the platform takes for itself;
    `hardware_budgets`: by the device's `hardware` model, with `None` as the fallback.
    One traffic policy per VRF is not a target limit: a DeviceIntent binds one policy per
    VRF (`DeviceIntent.policy_for_vrf`), and the compiler refuses two for every target.
    """

    max_name_bytes: int | None = None
    reserved_match_names: frozenset[str] = frozenset()
    hardware_budgets: dict[str | None, HardwareBudget] = field(
        default_factory=lambda: {None: HardwareBudget(None, "no hardware entry limit")}
    )

    def hardware_budget(self, hardware: str | None) -> HardwareBudget:
        known = self.hardware_budgets.get(hardware)
        if known is not None:
            return known
        fallback = self.hardware_budgets[None]
        models = sorted(m for m in self.hardware_budgets if m is not None)
        if hardware is None or not models:
            return fallback
        # A model the target has no figure for (a typo, or hardware it does not know): the
        # fallback, saying so, rather than the same figure as if the model were known.
        return HardwareBudget(
            fallback.entries,
            f"{NO_FIGURE_FOR_MODEL} {hardware!r} (models with one: {', '.join(models)}): "
            f"{fallback.source}",
        )


@dataclass(frozen=True)
class Credentials:
    """How microseg logs in to a device. Never stored with the policy: the caller (change
    control) reads them from the environment or the credentials file and hands them in.
    `ca_file`: the CA that signed the device's certificate (None: the system's CAs).

    Example: Credentials("admin", "secret")  # repr: Credentials(username='admin', ...)
    """

    username: str
    password: str = field(repr=False)
    ca_file: str | None = None


@dataclass(frozen=True)
class RenderOptions:
    """Choices a caller makes at render time. `omit_mirror`: render monitored matches
    without their mirror action on a target that cannot mirror (verdicts unchanged)."""

    omit_mirror: bool = False


@runtime_checkable
class Target(Protocol):
    """One platform. See the module docstring; `targets/nftables/target.py` is an example."""

    name: str
    description: str
    capabilities: Capabilities
    limits: Limits
    default_verdict: str  # what a packet no policy decides gets ("forward" on EOS)

    def render(self, intent: DeviceIntent, options: RenderOptions) -> str:
        """The device's configuration text; deterministic, byte for byte."""
        ...

    def driver(
        self,
        device: Any,
        credentials: Credentials | None,
        session: str | None = None,
        timeout: float | None = None,
    ) -> Driver:
        """A Driver for `device` (a model Device or MonitorNode). `session` names the
        change, so a later process can confirm or roll it back; `timeout` is how long to
        wait for each device request, in seconds (None: the driver's default)."""
        ...


def capability_refusals(
    target: Target, intent: DeviceIntent, options: RenderOptions | None = None
) -> list[str]:
    """Why `target` cannot enforce `intent`: one sentence per (rule, capability)."""
    options = options or RenderOptions()
    refusals: dict[tuple[str, str], str] = {}
    for policy in intent.policies:
        if policy.default_action not in target.capabilities.default_actions:
            key = (policy.name, "default action")
            refusals[key] = (
                f"target {target.name!r} cannot take policy {policy.name!r}: default_action "
                f"{policy.default_action!r} (capability: default actions "
                f"{', '.join(sorted(target.capabilities.default_actions))})"
            )
        for match in policy.matches:
            for capability, why in _match_needs(target, match, options):
                refusals.setdefault(
                    (match.rule, capability),
                    f"target {target.name!r} cannot enforce rule {match.rule!r}: {why} "
                    f"(capability: {capability})",
                )
            refusals.update(_limit_refusals(target, policy.name, match))
    return list(refusals.values())


def check_capabilities(
    target: Target, intent: DeviceIntent, options: RenderOptions | None = None
) -> None:
    """CompileError listing every refusal, or nothing."""
    refusals = capability_refusals(target, intent, options)
    if refusals:
        raise CompileError("; ".join(refusals))


def _match_needs(target: Target, match: Match, options: RenderOptions) -> Iterable[tuple[str, str]]:
    capabilities = target.capabilities
    if match.action == "redirect" and not capabilities.redirect:
        yield "redirect", "it redirects to next-hops"
    if match.decap_type != "allow-all" and not capabilities.decap:
        yield "decap", f"decap type {match.decap_type!r}"
    if match.mirror_session and not capabilities.mirror and not options.omit_mirror:
        yield (
            "mirror",
            f"it mirrors to monitor session {match.mirror_session!r} (render it without "
            "mirroring, verdicts unchanged, with --omit-mirror)",
        )
    if match.family == "ipv6" and not capabilities.ipv6:
        yield "IPv6", "it matches IPv6 traffic"


def _limit_refusals(target: Target, policy: str, match: Match) -> dict[tuple[str, str], str]:
    limits = target.limits
    refusals = {}
    if match.name in limits.reserved_match_names:
        refusals[(match.rule, "reserved name")] = (
            f"target {target.name!r} cannot take rule {match.rule!r}: match name "
            f"{match.name!r} is reserved by the platform (limit: reserved match names)"
        )
    longest = limits.max_name_bytes
    if longest is not None:
        for kind, name, owner in (("policy", policy, policy), ("match", match.name, match.rule)):
            if len(name.encode()) > longest:
                refusals[(owner, f"{kind} name length")] = (
                    f"target {target.name!r} cannot take {kind} name {name!r} "
                    f"(rule {match.rule!r}): longer than {longest} bytes (limit: name length)"
                )
    return refusals

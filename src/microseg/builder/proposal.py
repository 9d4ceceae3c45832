"""What a recommendation is: proposed rules with their evidence, new objects, attempts
blocked and measured quality; and the policy set the proposals would make."""

from __future__ import annotations

from dataclasses import dataclass, field

from microseg.builder.scope import Scope
from microseg.model import Group, PolicySet, Rule, Service

# The lowest `min_share` the builder takes unless forced. By default the builder widens
# nothing (each address its own host group); with the floor a group is used whole only when
# at least half of its addresses were seen, so a rule never allows more unseen members of a
# group than seen ones. NSX Intelligence's recommendations reuse an existing group when a
# user-set "matching ratio" of its members was seen; its documented example is 50 %
# (https://docs.vmware.com/en/VMware-NSX-Intelligence/4.0/user-guide/
# GUID-301C25CB-211D-4F4A-9091-2F620FE397CB.html).
MIN_SHARE_FLOOR = 0.5


@dataclass(frozen=True)
class BuilderOptions:
    """How to build. `categories` empty = every endpoint is its own host group.
    `min_share` below MIN_SHARE_FLOOR is refused unless `force_min_share`."""

    categories: tuple[str, ...] = ()
    scope: Scope = field(default_factory=Scope)
    min_share: float | None = None
    force_min_share: bool = False
    include_blocked: bool = False
    target_policy: str | None = None  # the policy the rules are for (into-workspace, quality)


@dataclass(frozen=True)
class SessionExample:
    vrf: str
    protocol: str
    client: str
    client_port: int | str  # `eph` for a summary row
    server: str
    server_port: int
    sessions: int
    packets: int
    bytes: int
    first_seen: str
    last_seen: str
    server_side: str  # the evidence that decided which side is the server


@dataclass(frozen=True)
class Evidence:
    sessions: int
    packets: int
    bytes: int
    first_seen: str
    last_seen: str
    host_combinations: int  # distinct (source host, destination host, service) seen
    server_side: dict[str, int]  # evidence -> sessions it decided
    examples: tuple[SessionExample, ...]


@dataclass(frozen=True)
class Widening:
    """A group used whole although only some of its addresses were seen."""

    group: str
    reason: str  # `category` or `min-share`
    observed_addresses: int
    group_addresses: int
    unseen_addresses: int  # what the rule allows beyond the evidence: group - observed


@dataclass(frozen=True)
class CurrentDecision:
    """What decides some of a proposal's sessions in the policy as it is today."""

    rule: str | None  # None: a policy's default match (its default_action), or no policy
    verdict: str
    sessions: int


@dataclass(frozen=True)
class StandingDecision:
    """Sessions an existing rule decides explicitly today, so nothing is proposed for them:
    a forward rule already allows them, or a drop / redirect rule stops them."""

    rule: str
    verdict: str  # forward, drop or redirect
    sessions: int
    examples: tuple[SessionExample, ...]


@dataclass(frozen=True)
class Unexplained:
    """Sessions no rule is proposed for because neither end is in a known group or segment."""

    sessions: int
    examples: tuple[SessionExample, ...]


@dataclass(frozen=True)
class HardwareUse:
    """A device's hardware entries (lint's estimate) without and with the proposals."""

    device: str
    entries_before: int
    entries_after: int
    budget: int | None  # None: a software target without a limit

    @property
    def over_budget(self) -> bool:
        return self.budget is not None and self.entries_after > self.budget


@dataclass(frozen=True)
class UnverifiedDevice:
    """A device whose policy does not compile (without the proposals, or with them): the
    evaluator cannot decide its packets, so its sessions are not counted as covered."""

    device: str
    reason: str  # the CompileError; "with the proposals: ..." when only they break it
    sessions: int  # evidence sessions that pass it


@dataclass(frozen=True)
class RecommendedRule:
    rule: Rule
    evidence: Evidence
    widened: tuple[Widening, ...]
    allowed_combinations: int  # (source host, destination host, service) the rule allows
    current_decisions: tuple[CurrentDecision, ...] = ()  # today's deciders of its sessions
    insert_at: int | None = None  # index in the target policy's rules it goes before
    before: str | None = None  # the existing rule it goes before; None: at the end


@dataclass(frozen=True)
class BlockedAttempt:
    """Sessions from one client to one server on one service that got no answer."""

    source: str
    destination: str
    service: str
    sessions: int
    first_seen: str
    last_seen: str
    # What stops it in the policy in force (`drop by rule R`, `drop by the default of policy
    # P`); None: the policy forwards it, so the server did not answer
    stopped_by: str | None = None


@dataclass(frozen=True)
class Quality:
    """How good the recommendation is; see the README for the exact definitions."""

    rules: int
    evidence_sessions: int
    covered_sessions: int | None  # verified by the evaluator; None when it cannot run
    # `coverage`: covered_sessions / the evidence sessions that pass no unverified device
    coverage: float | None
    config_lines: int | None  # configuration lines the proposals add, over every device
    observed_combinations: int
    allowed_combinations: int
    over_permissiveness: float
    notes: tuple[str, ...] = ()
    hardware: tuple[HardwareUse, ...] = ()
    unverified: tuple[UnverifiedDevice, ...] = ()  # coverage is of the other sessions


@dataclass(frozen=True)
class Recommendation:
    rules: tuple[RecommendedRule, ...]
    new_groups: tuple[Group, ...]
    new_services: tuple[Service, ...]
    blocked_attempts: tuple[BlockedAttempt, ...]
    quality: Quality
    scoped_sessions: int
    target_policy: str | None
    categories: tuple[str, ...]
    already_allowed: tuple[StandingDecision, ...] = ()
    blocked_by_rules: tuple[StandingDecision, ...] = ()
    unexplained: Unexplained | None = None

    def proposed_policy_set(self, base: PolicySet) -> PolicySet:
        """`base` with the proposals added and the rules placed in the target policy."""
        return proposed_policy_set(base, self)


def proposed_policy_set(base: PolicySet, recommendation: Recommendation) -> PolicySet:
    """`base` plus the new groups, services and rules, each rule inserted into the target
    policy before the existing rule at its `insert_at` (at the start when it has none; in
    the order of the recommendation among rules at one position). A recommendation without a
    target policy adds the objects only."""
    policies = list(base.policies)
    if recommendation.target_policy is not None:
        for index, policy in enumerate(policies):
            if policy.name == recommendation.target_policy:
                names: list[str] = []
                for position in range(len(policy.rules) + 1):
                    names += [
                        r.rule.name for r in recommendation.rules if (r.insert_at or 0) == position
                    ]
                    names += policy.rules[position : position + 1]
                policies[index] = policy.model_copy(update={"rules": tuple(names)})
    return PolicySet(
        **{
            **{section: getattr(base, section) for section in type(base).model_fields},
            "groups": base.groups + recommendation.new_groups,
            "services": base.services + recommendation.new_services,
            "rules": base.rules + tuple(r.rule for r in recommendation.rules),
            "policies": tuple(policies),
        }
    )

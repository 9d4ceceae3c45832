"""What a recommendation is: proposed rules with their evidence, new objects, attempts
blocked and measured quality; and the policy set the proposals would make."""

from __future__ import annotations

from dataclasses import dataclass, field

from microseg.builder.scope import Scope
from microseg.model import Group, PolicySet, Rule, Service


@dataclass(frozen=True)
class BuilderOptions:
    """How to build. `categories` empty = every endpoint is its own host group."""

    categories: tuple[str, ...] = ()
    scope: Scope = field(default_factory=Scope)
    min_share: float | None = None
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


@dataclass(frozen=True)
class CurrentDecision:
    """What decides some of a proposal's sessions in the policy as it is today."""

    rule: str | None  # None: the implicit default match (EOS forwards)
    verdict: str
    sessions: int


@dataclass(frozen=True)
class RecommendedRule:
    rule: Rule
    evidence: Evidence
    widened: tuple[Widening, ...]
    allowed_combinations: int  # (source host, destination host, service) the rule allows
    current_decisions: tuple[CurrentDecision, ...] = ()  # today's deciders of its sessions


@dataclass(frozen=True)
class BlockedAttempt:
    """Sessions from one client to one server on one service that got no answer."""

    source: str
    destination: str
    service: str
    sessions: int
    first_seen: str
    last_seen: str


@dataclass(frozen=True)
class Quality:
    """How good the recommendation is; see the README for the exact definitions."""

    rules: int
    evidence_sessions: int
    covered_sessions: int | None  # verified by the evaluator; None when it cannot run
    coverage: float | None
    config_lines: int | None  # configuration lines the proposals add, over every device
    observed_combinations: int
    allowed_combinations: int
    over_permissiveness: float
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recommendation:
    rules: tuple[RecommendedRule, ...]
    new_groups: tuple[Group, ...]
    new_services: tuple[Service, ...]
    blocked_attempts: tuple[BlockedAttempt, ...]
    quality: Quality
    scoped_sessions: int
    target_policy: str | None
    insert_at: int  # position in the target policy's rule list the rules go to
    categories: tuple[str, ...]

    def proposed_policy_set(self, base: PolicySet) -> PolicySet:
        """`base` with the proposals added and the rules placed in the target policy."""
        return proposed_policy_set(base, self)


def proposed_policy_set(base: PolicySet, recommendation: Recommendation) -> PolicySet:
    """`base` plus the new groups, services and rules, the rules inserted into the target
    policy at `insert_at` (a policy set without a target policy gets the objects only)."""
    policies = list(base.policies)
    if recommendation.target_policy is not None:
        for index, policy in enumerate(policies):
            if policy.name == recommendation.target_policy:
                names = list(policy.rules)
                at = recommendation.insert_at
                names[at:at] = [r.rule.name for r in recommendation.rules]
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

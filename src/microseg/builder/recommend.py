"""Recommended rules from sessions: the policy builder's core.

`recommend(policy_set, sessions, options)` scopes the sessions, works out each session's
server side and service, maps endpoints to groups, and aggregates with numpy (hash/sort
group-by; Python runs once per aggregated row, never per session): one bidirectional rule per
(source group, destination group) with every service seen between them; destinations a
source reached with exactly the same services share its rule; group sources reaching exactly
the same destinations on the same services share one too. Every merge is exact: each listed
source reached each listed destination on each listed service. Sessions nobody answered are
attempts blocked, reported apart and never proposed unless `include_blocked`.

Before aggregating, the sessions are replayed through the policy in force
(`builder.standing`): what an existing rule already allows is reported, not proposed again;
what an existing drop or redirect rule stops is reported, not proposed (unless
`include_blocked`). Each proposal is then placed where it changes no explicit decision
(`builder.placement`) and verified (`builder.quality`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from microseg.builder.endpoints import (
    GROUP_KINDS,
    UNMAPPED,
    EndpointMap,
    Peers,
    map_endpoints,
    unique_name,
)
from microseg.builder.proposal import (
    MIN_SHARE_FLOOR,
    BlockedAttempt,
    BuilderOptions,
    Evidence,
    Quality,
    Recommendation,
    RecommendedRule,
    SessionExample,
    StandingDecision,
    Unexplained,
    Widening,
)
from microseg.builder.scope import scope_mask
from microseg.builder.services import (
    ACK,
    EVIDENCE,
    RST,
    ServerSide,
    ServiceChoice,
    choose_services,
    server_side,
    syn_acknowledged,
)
from microseg.builder.times import iso_time
from microseg.compile import CompileError, compile_each
from microseg.flows.engines import KEPT_ROWS
from microseg.flows.session_columns import EPHEMERAL, SessionColumns, session_columns
from microseg.flows.sums import group_sums, pair_total, saturated, total
from microseg.model import MicrosegError, PolicySet, Rule
from microseg.model.objects import IPNetwork
from microseg.model.ports import PROTOCOL_NAMES, TCP

if TYPE_CHECKING:
    from microseg.builder.quality import DeviceDecisions, Replay, TodayFacts
    from microseg.builder.standing import Standing
    from microseg.compile import DeviceIntent

# examples per rule, unexplained sessions and standing decision: the engine's fold keeps
# this many sessions of each fold as they are (flows.engines.builder_rows)
EXAMPLES_PER_RULE = KEPT_ROWS
MAX_RULE_NAME = 84


def recommend(
    policy_set: PolicySet,
    sessions: SessionColumns | pa.Table,
    options: BuilderOptions | None = None,
    *,
    segments: tuple[IPNetwork, ...] | None = None,
) -> Recommendation:
    """Recommend rules for the sessions in scope. See the module docstring."""
    from microseg.builder.quality import today_facts

    options = options or BuilderOptions()
    check_options(policy_set, options)
    columns = sessions if isinstance(sessions, SessionColumns) else session_columns(sessions)
    in_scope = scope_mask(columns, options.scope)
    scoped = columns if in_scope.all() else columns.take(in_scope)
    target = target_policy(policy_set, options)
    classified = classify(policy_set, scoped, options)
    rows = ClassifiedRows(
        scoped,
        classified.side,
        classified.replay,
        classified.evidence,
        (classified.existing.stopped_by, classified.existing.stoppers),
        today_facts(classified.today, policy_set, target),
    )
    return propose(policy_set, rows, classified.reported(scoped), options, segments=segments)


@dataclass(frozen=True)
class Reported:
    """What the output lists of the sessions in scope that no rule is proposed for (the
    standing decisions), and how many sessions are in scope."""

    already_allowed: tuple[StandingDecision, ...]
    blocked_by_rules: tuple[StandingDecision, ...]
    scoped_sessions: int


@dataclass(frozen=True)
class ClassifiedRows:
    """Sessions as the builder's per-session step leaves them for the rest (the group-by
    into rules, placement, verification): with their server side, packets, whether each is
    evidence, what stops it today (an index into the texts, -1: nothing) and what the
    policy in force decides for it (`quality.today_facts`). `recommend` passes on every
    session in scope; on Spark each group-by task reads its share of the evidence and the
    unanswered this way (`groupby_spark`): the rest only count in `Reported`."""

    sessions: SessionColumns
    side: ServerSide
    replay: Replay
    evidence: np.ndarray
    stopped: tuple[np.ndarray, list[str]]
    today: TodayFacts


def propose(
    policy_set: PolicySet,
    rows: ClassifiedRows,
    reported: Reported,
    options: BuilderOptions,
    *,
    segments: tuple[IPNetwork, ...] | None = None,
) -> Recommendation:
    """The recommendation from the per-session step's rows and reports: the proposals,
    placed and verified."""
    from microseg.builder.quality import (
        decided_today,
        measure_rows,
        session_positions,
        verify,
    )

    target = target_policy(policy_set, options)
    if segments is None:
        segments = domain_segments(policy_set, target)
    draft = aggregate(
        policy_set,
        rows.sessions,
        options,
        segments,
        target,
        side=rows.side,
        evidence=rows.evidence,
        stopped=rows.stopped,
    )
    recommendation = replace(
        draft.recommendation,
        already_allowed=reported.already_allowed,
        blocked_by_rules=reported.blocked_by_rules,
        scoped_sessions=reported.scoped_sessions,
    )
    evidence = draft.evidence_rows
    decided = decided_today(
        target,
        policy_set,
        rows.today.take(session_positions(len(rows.sessions), evidence)),
        draft.membership,
        len(recommendation.rules),
        rows.sessions.sessions[evidence],
    )
    return verify(
        policy_set,
        recommendation,
        decided,
        measure_rows(rows.sessions, rows.replay, evidence),
        options.include_blocked,
    )


@dataclass(frozen=True)
class Classified:
    """Scoped sessions row by row as the policy in force sees them: each one's server side,
    packets and every device's decisions, the existing rule that allows or blocks it, and
    whether it is evidence for a proposal. Each row's class depends on that row alone
    (and, for sessions with equal ports, on the others' peers: `server_side`)."""

    side: ServerSide
    replay: Replay
    today: list[DeviceDecisions]
    existing: Standing
    allowed: np.ndarray  # bool: an existing rule already allows it
    blocked: np.ndarray  # bool: an existing drop or redirect rule stops it
    evidence: np.ndarray  # bool: what rules are proposed for

    def reported(self, scoped: SessionColumns, examples=None) -> Reported:
        """The standing decisions of these sessions; `examples(sessions, side, row)` makes
        their examples (default: `example`; the Spark engine's executors keep row numbers)."""
        existing, side, shown = self.existing, self.side, examples or example
        return Reported(
            already_allowed=existing.report(
                scoped, side, np.where(self.allowed, existing.allowed_by, -1), shown
            ),
            blocked_by_rules=existing.report(
                scoped,
                side,
                np.where(self.blocked & ~self.evidence, existing.blocked_by, -1),
                shown,
            ),
            scoped_sessions=total(scoped.sessions),
        )


Compiled = tuple[dict[str, "DeviceIntent"], dict[str, str]]  # intents, devices that fail


def compile_policy(policy_set: PolicySet) -> Compiled:
    """Every device's intent and the devices that do not compile; none at all when the
    policy set itself does not compile (`verify` then says why)."""
    try:
        return compile_each(policy_set)
    except CompileError:
        return {}, {}


def classify(
    policy_set: PolicySet,
    scoped: SessionColumns,
    options: BuilderOptions,
    compiled: Compiled | None = None,
) -> Classified:
    """The builder's work per session before it aggregates: what `recommend` runs first.
    `compiled`: the policy set's `compile_policy`, when already made (the Spark engine
    compiles once and sends it to every task)."""
    from microseg.builder.quality import decide, replay_packets
    from microseg.builder.standing import standing

    side = server_side(scoped)
    replay = replay_packets(scoped, side)
    use = np.ones(len(scoped), dtype=bool) if options.include_blocked else answered(scoped)
    intents, uncompiled = compile_policy(policy_set) if compiled is None else compiled
    try:
        today = decide(policy_set, intents, scoped, replay=replay, uncompiled=uncompiled)
    except CompileError:
        today = []  # verify() says why nothing could be measured
    existing = standing(today, len(scoped))
    allowed = use & (existing.allowed_by >= 0)
    blocked = use & (existing.blocked_by >= 0)
    evidence = use & ~allowed & (~blocked | options.include_blocked)
    return Classified(side, replay, today, existing, allowed, blocked, evidence)


@dataclass(frozen=True)
class Draft:
    """A recommendation before its placement and quality are known, and its evidence:
    the scoped session rows the rules stand on and, per row, the rule's index."""

    recommendation: Recommendation
    evidence_rows: np.ndarray
    membership: np.ndarray


def check_options(policy_set: PolicySet, options: BuilderOptions) -> None:
    known = {c.name for c in policy_set.categories} | {
        c for g in policy_set.groups for c in g.categories
    }
    unknown = [c for c in options.categories if c not in known]
    if unknown:
        raise MicrosegError(
            f"unknown categor{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known)) or 'none'})"
        )
    if options.min_share is not None and not 0 < options.min_share <= 1:
        raise MicrosegError(f"--min-share must be a share between 0 and 1, got {options.min_share}")
    if (
        options.min_share is not None
        and options.min_share < MIN_SHARE_FLOOR
        and not options.force_min_share
    ):
        raise MicrosegError(
            f"--min-share {options.min_share:g} is below the floor of {MIN_SHARE_FLOOR:g}: a rule "
            f"would allow a whole group when fewer than {MIN_SHARE_FLOOR:.0%} of its addresses "
            "were seen, more hosts that never talked than hosts that did; give a share of at "
            f"least {MIN_SHARE_FLOOR:g}, or --force-min-share (API: force_min_share) to widen anyway"
        )
    if (
        options.target_policy is not None
        and policy_set.get("policies", options.target_policy) is None
    ):
        known_policies = ", ".join(sorted(p.name for p in policy_set.policies)) or "none"
        raise MicrosegError(
            f"policy {options.target_policy!r} is not in the policy set "
            f"(policies: {known_policies})"
        )


def target_policy(policy_set: PolicySet, options: BuilderOptions) -> str | None:
    """The named policy; else the one holding the monitor rule in scope; else the only one."""
    if options.target_policy:
        return options.target_policy
    for any_of in options.scope.all_of:
        for selector in any_of:
            holders = sorted(p.name for p in policy_set.policies if selector.rule in p.rules)
            if holders:
                return holders[0]
    if len(policy_set.policies) == 1:
        return policy_set.policies[0].name
    return None


def domain_segments(policy_set: PolicySet, policy_name: str | None) -> tuple[IPNetwork, ...]:
    """Subnets of the segments of the target policy's domain (every device's without one)."""
    devices = policy_set.devices
    if policy_name is not None:
        domain = policy_set.get("domains", policy_set.policy(policy_name).domain)
        if domain is not None:
            devices = tuple(d for d in policy_set.devices if d.name in domain.devices)
    return tuple(
        subnet for device in devices for segment in device.segments for subnet in segment.subnets
    )


def answered(sessions: SessionColumns) -> np.ndarray:
    """Sessions that got a reply. A complete session did; a UDP/ICMP session with reverse
    packets did; a TCP session with reverse packets but not complete (a RST to the SYN, a
    reply the collector marked half-open) did not; a session with no reverse packets did not.
    A TCP reply without a handshake (a session that started before collection did, or a file
    without TCP flags) counts unless it was only a reset: RST, maybe with ACK, nothing else.
    A row that says nothing about a reply (see `reply_unknown`) counts as answered."""
    tcp = sessions.protocol == TCP
    replied = sessions.rev_packets > 0
    reply_flags = sessions.reply_tcp_flags
    reset_only = ((reply_flags & RST) != 0) & ((reply_flags & ~(RST | ACK)) == 0)
    return (
        (sessions.complete > 0)
        | (tcp & syn_acknowledged(sessions))
        | (replied & ~tcp)
        | (replied & tcp & (sessions.half_open == 0) & ~reset_only)
        | reply_unknown(sessions)
    )


def reply_unknown(sessions: SessionColumns) -> np.ndarray:
    """Rows without reverse packets, reply flags, `complete` or `half_open`: a file in the
    what-if format (`packets, bytes`). The collector marks every unanswered session
    half-open, so its rows are never unknown."""
    return (
        (sessions.rev_packets == 0)
        & (sessions.reply_tcp_flags == 0)
        & (sessions.complete == 0)
        & (sessions.half_open == 0)
    )


def aggregate(
    policy_set: PolicySet,
    scoped: SessionColumns,
    options: BuilderOptions,
    segments: tuple[IPNetwork, ...],
    target: str | None,
    *,
    side: ServerSide | None = None,
    evidence: np.ndarray | None = None,
    stopped: tuple[np.ndarray, list[str]] | None = None,
) -> Draft:
    """The proposals for already scoped sessions, before placement and verification.
    `evidence`: the sessions to propose rules for (default: the answered ones, or all of
    them with `include_blocked`); `stopped`: per session, what stops it in the policy in
    force (an index into the texts; -1: nothing)."""
    side = server_side(scoped) if side is None else side
    replied = answered(scoped)
    if evidence is None:
        evidence = np.ones(len(scoped), dtype=bool) if options.include_blocked else replied
    taken_services = {s.name for s in policy_set.services}
    service_index, choices = _services(policy_set, scoped, side, taken_services)
    used_addresses = np.zeros(len(scoped.addresses), dtype=bool)
    used_addresses[side.client[evidence]] = True
    used_addresses[side.server[evidence]] = True
    peers = Peers(
        side.client[evidence],
        side.server[evidence],
        service_index[evidence],
        tuple(c.name for c in choices),
    )
    endpoints = map_endpoints(
        policy_set,
        scoped.addresses,
        used_addresses,
        options.categories,
        options.min_share,
        segments,
        peers,
    )
    mapped = (endpoints.of_address[side.client] != UNMAPPED) & (
        endpoints.of_address[side.server] != UNMAPPED
    )
    use = evidence & mapped
    rules, rows, membership = _rules(
        policy_set, scoped, side, use, service_index, choices, endpoints
    )
    blocked = _blocked(scoped, side, ~replied, service_index, choices, stopped)
    recommendation = drafted(
        options,
        target,
        endpoints,
        choices,
        rules,
        Leftovers(
            blocked,
            _unexplained(scoped, side, evidence & ~mapped),
            evidence_sessions=total(scoped.sessions[use]),
            unknown_reply=total(scoped.sessions[use & reply_unknown(scoped)]),
            scoped_sessions=total(scoped.sessions),
        ),
    )
    return Draft(recommendation, rows, membership)


@dataclass(frozen=True)
class Leftovers:
    """What the output lists of the sessions besides the rules: the blocked attempts (most
    sessions first: `blocked_order`), the sessions no endpoint explains, and the sums."""

    blocked: list[BlockedAttempt]
    unexplained: Unexplained | None
    evidence_sessions: int  # saturated, as every sum here
    unknown_reply: int  # evidence sessions without reply information
    scoped_sessions: int


def drafted(
    options: BuilderOptions,
    target: str | None,
    endpoints: EndpointMap,
    choices: list[ServiceChoice],
    rules: list[RecommendedRule],
    leftovers: Leftovers,
) -> Recommendation:
    """The recommendation before placement and verification, from the group-by's results
    (whichever engine made them)."""
    used_endpoints = {name for r in rules for name in (*r.rule.sources, *r.rule.destinations)}
    used_services = {name for r in rules for name in r.rule.services}
    new_groups = tuple(
        sorted(
            (e.proposed for e in endpoints.endpoints if e.proposed and e.name in used_endpoints),
            key=lambda g: g.name.encode(),
        )
    )
    new_services = tuple(
        sorted(
            (
                service
                for c in choices
                if c.name in used_services and (service := c.proposed) is not None
            ),
            key=lambda s: s.name.encode(),
        )
    )
    observed = sum(r.evidence.host_combinations for r in rules)
    allowed = sum(r.allowed_combinations for r in rules)
    unknown = leftovers.unknown_reply
    notes = (
        (
            f"{unknown} session(s) carry no reply information (no rev_packets, complete or "
            "half_open): taken as answered",
        )
        if unknown
        else ()
    )
    quality = Quality(
        rules=len(rules),
        evidence_sessions=leftovers.evidence_sessions,
        covered_sessions=None,
        coverage=None,
        config_lines=None,
        observed_combinations=observed,
        allowed_combinations=allowed,
        over_permissiveness=(allowed - observed) / observed if observed else 0.0,
        notes=notes,
    )
    return Recommendation(
        rules=tuple(rules),
        new_groups=new_groups,
        new_services=new_services,
        blocked_attempts=tuple(leftovers.blocked),
        quality=quality,
        scoped_sessions=leftovers.scoped_sessions,
        target_policy=target,
        categories=options.categories,
        unexplained=leftovers.unexplained,
    )


def _unexplained(
    sessions: SessionColumns, side: ServerSide, selected: np.ndarray
) -> Unexplained | None:
    """Sessions between two addresses outside every known group and segment."""
    rows = np.flatnonzero(selected)
    if not len(rows):
        return None
    first = rows[np.argsort(sessions.first_seen[rows], kind="stable")][:EXAMPLES_PER_RULE]
    return Unexplained(
        sessions=total(sessions.sessions[rows]),
        examples=tuple(example(sessions, side, int(r)) for r in first),
    )


def _services(
    policy_set: PolicySet, sessions: SessionColumns, side: ServerSide, taken: set[str]
) -> tuple[np.ndarray, list[ServiceChoice]]:
    """Per session, an index into the list of service choices (one per protocol+port)."""
    keys = sessions.protocol.astype(np.int64) * 65536 + side.server_port
    unique_keys, service_index = factorize(keys)
    pairs = [divmod(int(k), 65536) for k in unique_keys.tolist()]
    choices = choose_services(pairs, policy_set, taken)
    return service_index.astype(np.int32), choices


def factorize(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys and each row's position among them. Few distinct keys among
    many rows: a hash-based unique plus a binary search beats sorting every row."""
    unique_keys = np.unique(keys)
    return unique_keys, np.searchsorted(unique_keys, keys).astype(np.int64)


def _grouped_by_time(group: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Row order by group, then time, then row (one argsort on a combined key)."""
    if not len(group):
        return np.zeros(0, dtype=np.int64)
    offset = time - time.min()
    span = int(offset.max()) + 1
    if span * (int(group.max()) + 1) < 2**62:
        return np.argsort(group * span + offset, kind="stable")
    return np.lexsort((offset, group))


def _group_by(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort-based group-by: unique keys, each row's group, and rows ordered by group."""
    unique_keys, inverse = factorize(keys)
    order = np.argsort(inverse, kind="stable")
    return unique_keys, inverse.astype(np.int64), order


def _rules(
    policy_set: PolicySet,
    sessions: SessionColumns,
    side: ServerSide,
    use: np.ndarray,
    service_index: np.ndarray,
    choices: list[ServiceChoice],
    endpoints: EndpointMap,
) -> tuple[list[RecommendedRule], np.ndarray, np.ndarray]:
    """The rules, the session rows they stand on, and per row its rule's index."""
    rows = np.flatnonzero(use)
    if not len(rows):
        return [], rows, np.zeros(0, dtype=np.int64)
    shape = (max(len(endpoints.endpoints), 1), max(len(choices), 1))
    source = endpoints.of_address[side.client[rows]].astype(np.int64)
    destination = endpoints.of_address[side.server[rows]].astype(np.int64)
    service = service_index[rows].astype(np.int64)
    triple_keys, triple_of_row = factorize((source * shape[0] + destination) * shape[1] + service)
    triples = _triples(sessions, side, rows, triple_keys, triple_of_row, service, endpoints, shape)
    seen_addresses, seen_starts = _addresses_by_triple(
        side, rows, triple_of_row, len(triple_keys), len(sessions.addresses)
    )
    rules, proposal_of_triple = rules_from_triples(
        policy_set,
        triples,
        choices,
        endpoints,
        shape,
        _seen_counts(seen_addresses, seen_starts, endpoints),
    )
    return rules, rows, proposal_of_triple[triple_of_row]


@dataclass(frozen=True)
class Triples:
    """The group-by's parts: per (source endpoint, destination endpoint, service) triple of
    the evidence, its sums, times, kinds of server-side evidence, first examples and
    distinct host combinations. `recommend` makes them with numpy from the evidence rows
    (`_triples`); `rules_from_triples` merges them into rules, whoever made them."""

    keys: np.ndarray  # int64, sorted: (source * endpoints + destination) * services + service
    sessions: list[int]  # exact, not saturated (see flows.sums)
    packets: list[int]
    bytes: list[int]
    first_seen: np.ndarray  # int64 ms
    last_seen: np.ndarray
    evidence_counts: list[list[int]]  # per triple, per kind of EVIDENCE
    host_combinations: np.ndarray  # int64: distinct (client host, server host) per triple
    # per rule (its triples' positions), its first EXAMPLES_PER_RULE sessions: by first
    # seen, then position in the session table
    first_examples: Callable[[list[list[int]]], list[tuple[SessionExample, ...]]]


# Per rule, the endpoints it uses whole (GROUP_KINDS) and its triples' positions -> per rule,
# per such endpoint, how many of its addresses the rule's sessions came from or went to.
SeenCounts = Callable[[list[tuple[list[int], list[int]]]], list[dict[int, int]]]


def rules_from_triples(
    policy_set: PolicySet,
    triples: Triples,
    choices: list[ServiceChoice],
    endpoints: EndpointMap,
    shape: tuple[int, int],
    seen_counts: SeenCounts,
) -> tuple[list[RecommendedRule], np.ndarray]:
    """The rules the triples merge into (`_merged`), narrowest first, and per triple its
    rule's index. Python runs once per triple and per rule here, never per session."""
    by_name = endpoints.by_name
    merged = [
        (names, sorted(sources, key=by_name), sorted(destinations, key=by_name), positions)
        for names, sources, destinations, positions in _merged(
            triples.keys, choices, endpoints, shape
        )
    ]
    wide = [
        [
            index
            for index in dict.fromkeys([*sources, *destinations])
            if endpoints.endpoints[index].kind in GROUP_KINDS
        ]
        for _, sources, destinations, _ in merged
    ]
    seen = seen_counts(
        [(used, positions) for used, (*_, positions) in zip(wide, merged, strict=True)]
    )
    examples = triples.first_examples([positions for *_, positions in merged])
    taken_rules = {r.name for r in policy_set.rules}
    proposals: list[RecommendedRule] = []
    proposal_of_triple = np.zeros(len(triples.keys), dtype=np.int64)
    for (service_names, sources, destinations, positions), used, observed, shown in zip(
        merged, wide, seen, examples, strict=True
    ):
        proposal_of_triple[positions] = len(proposals)
        source_groups = [endpoints.endpoints[s] for s in sources]
        destination_groups = [endpoints.endpoints[d] for d in destinations]
        rule = Rule(
            name=_rule_name(
                [s.name for s in source_groups], [d.name for d in destination_groups], taken_rules
            ),
            description="recommended by the policy builder",
            sources=tuple(s.name for s in source_groups),
            destinations=tuple(d.name for d in destination_groups),
            services=tuple(sorted(service_names, key=str.encode)),
            direction="bidirectional",
        )
        allowed = (
            sum(s.size for s in source_groups)
            * sum(d.size for d in destination_groups)
            * len(service_names)
        )
        evidence = _evidence(triples, positions, shown)
        proposals.append(
            RecommendedRule(rule, evidence, _widened(used, endpoints, observed), allowed)
        )
    # Narrower rules first: a rule is only shadowed by a rule allowing a superset, which
    # allows at least as many combinations, so ordering by allowed size (then name) leaves
    # every proposal reachable.
    rule_order = sorted(
        range(len(proposals)),
        key=lambda i: (proposals[i].allowed_combinations, proposals[i].rule.name.encode()),
    )
    renumbered = np.empty(len(rule_order), dtype=np.int64)
    renumbered[rule_order] = np.arange(len(rule_order))
    return [proposals[i] for i in rule_order], renumbered[proposal_of_triple]


def _addresses_by_triple(
    side: ServerSide, rows: np.ndarray, triple_of_row: np.ndarray, triples: int, hosts: int
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct addresses at either end of each triple's sessions: `addresses[starts[t]:
    starts[t + 1]]` are triple t's."""
    keys = np.unique(
        np.concatenate(
            (triple_of_row * hosts + side.client[rows], triple_of_row * hosts + side.server[rows])
        )
    )
    starts = np.searchsorted(keys // hosts, np.arange(triples + 1))
    return keys % hosts, starts


def _seen_counts(
    seen_addresses: np.ndarray, seen_starts: np.ndarray, endpoints: EndpointMap
) -> SeenCounts:
    """`SeenCounts` from each triple's distinct addresses (`_addresses_by_triple`)."""

    def counts(wanted: list[tuple[list[int], list[int]]]) -> list[dict[int, int]]:
        found: list[dict[int, int]] = []
        for used, positions in wanted:
            if not used:
                found.append({})
                continue
            seen = np.unique(
                np.concatenate(
                    [seen_addresses[seen_starts[p] : seen_starts[p + 1]] for p in positions]
                )
            )
            per_endpoint = np.bincount(
                endpoints.of_address[seen], minlength=len(endpoints.endpoints)
            )
            found.append({index: int(per_endpoint[index]) for index in used})
        return found

    return counts


def _widened(
    used: list[int], endpoints: EndpointMap, observed: dict[int, int]
) -> tuple[Widening, ...]:
    """Each existing group a rule uses whole (category, min-share; `used`: endpoint indices)
    beyond the addresses the rule's own sessions came from or went to (`observed`, per
    endpoint). Counted per rule: a group every address of which some rule saw still widens a
    rule that saw only some."""
    widened = []
    for index in used:
        endpoint, seen = endpoints.endpoints[index], observed.get(index, 0)
        if seen < endpoint.size:
            unseen = endpoint.size - seen
            widened.append(Widening(endpoint.name, endpoint.kind, seen, endpoint.size, unseen))
    return tuple(widened)


def _observed_combinations(
    sessions: SessionColumns,
    side: ServerSide,
    rows: np.ndarray,
    service: np.ndarray,
    endpoints: EndpointMap,
    triple_keys: np.ndarray,
    shape: tuple[int, int],
) -> np.ndarray:
    """Per triple, the distinct (client host, server host, service) seen."""
    endpoint_count, service_count = shape
    hosts = len(sessions.addresses)
    host_keys = np.unique(
        (side.client[rows].astype(np.int64) * hosts + side.server[rows]) * service_count + service
    )
    host_source = host_keys // service_count // hosts
    host_destination = (host_keys // service_count) % hosts
    host_triples = np.searchsorted(
        triple_keys,
        (
            endpoints.of_address[host_source].astype(np.int64) * endpoint_count
            + endpoints.of_address[host_destination]
        )
        * service_count
        + host_keys % service_count,
    )
    return np.bincount(host_triples, minlength=len(triple_keys))


def _merged(
    triple_keys: np.ndarray,
    choices: list[ServiceChoice],
    endpoints: EndpointMap,
    shape: tuple[int, int],
) -> list[tuple[tuple[str, ...], list[int], list[int], list[int]]]:
    """(services, sources, destinations, triple positions) of each rule: services between a
    pair together; destinations a source reached with the same services together; group
    sources reaching the same destinations on the same services together. Per-host sources
    keep a rule each: the seed's "rule for every IP"."""
    endpoint_count, service_count = shape
    pairs: dict[tuple[int, int], list[int]] = {}
    for position, key in enumerate(triple_keys.tolist()):
        pairs.setdefault(divmod(key // service_count, endpoint_count), []).append(position)
    by_source: dict[tuple[int, tuple[str, ...]], list[tuple[int, list[int]]]] = {}
    for (source, destination), positions in sorted(pairs.items()):
        names = {choices[int(triple_keys[p] % service_count)].name for p in positions}
        by_source.setdefault((source, tuple(sorted(names))), []).append((destination, positions))
    merged: dict[tuple, tuple[tuple[str, ...], list[int], list[int], list[int]]] = {}
    for (source, service_names), destinations in by_source.items():
        destination_set = tuple(sorted(d for d, _ in destinations))
        groupable = endpoints.endpoints[source].kind in GROUP_KINDS
        key = (destination_set, service_names, -1 if groupable else source)
        entry = merged.setdefault(key, (service_names, [], list(destination_set), []))
        entry[1].append(source)
        entry[3].extend(p for _, group in destinations for p in group)
    return list(merged.values())


def _rule_name(sources: list[str], destinations: list[str], taken: set[str]) -> str:
    def side(names: list[str]) -> str:
        return names[0] + (f"_and_{len(names) - 1}_more" if len(names) > 1 else "")

    name = f"allow_{side(sources)}_to_{side(destinations)}"
    if len(name) > MAX_RULE_NAME:
        # EOS names stop at 100 characters and the reverse match adds `-reverse` (and a
        # uniqueness suffix may follow): keep the base short enough for both.
        name = name[:MAX_RULE_NAME]
    return unique_name(name, taken)


def _evidence(
    triples: Triples, positions: list[int], examples: tuple[SessionExample, ...]
) -> Evidence:
    """A rule's evidence: its triples' parts merged."""
    decided = [
        saturated(sum(triples.evidence_counts[p][kind] for p in positions))
        for kind in range(len(EVIDENCE))
    ]
    return Evidence(
        sessions=saturated(sum(triples.sessions[p] for p in positions)),
        packets=saturated(sum(triples.packets[p] for p in positions)),
        bytes=saturated(sum(triples.bytes[p] for p in positions)),
        first_seen=iso_time(int(triples.first_seen[positions].min())),
        last_seen=iso_time(int(triples.last_seen[positions].max())),
        host_combinations=int(triples.host_combinations[positions].sum()),
        server_side={EVIDENCE[i]: int(n) for i, n in enumerate(decided) if n},
        examples=examples,
    )


def first_rows(
    sessions: SessionColumns, rows: np.ndarray, triple_of_row: np.ndarray
) -> list[list[int]]:
    """Per triple, its first EXAMPLES_PER_RULE rows (of `rows`, in the table's order) by
    first seen, then row."""
    order = _grouped_by_time(triple_of_row, sessions.first_seen[rows])
    ordered = rows[order]
    starts = np.flatnonzero(np.r_[True, np.diff(triple_of_row[order]) != 0])
    ends = np.r_[starts[1:], len(ordered)]
    return [
        ordered[s : min(s + EXAMPLES_PER_RULE, e)].tolist()
        for s, e in zip(starts, ends, strict=True)
    ]


def _first_examples(
    sessions: SessionColumns, side: ServerSide, candidates: list[list[int]]
) -> Callable[[list[list[int]]], list[tuple[SessionExample, ...]]]:
    """`Triples.first_examples` from each triple's first rows (a row's index is its
    position)."""

    def first(rules: list[list[int]]) -> list[tuple[SessionExample, ...]]:
        found = []
        for positions in rules:
            rows = sorted(
                (r for p in positions for r in candidates[p]),
                key=lambda r: (int(sessions.first_seen[r]), r),
            )[:EXAMPLES_PER_RULE]
            found.append(tuple(example(sessions, side, r) for r in rows))
        return found

    return first


def _triples(
    sessions: SessionColumns,
    side: ServerSide,
    rows: np.ndarray,
    triple_keys: np.ndarray,
    triple_of_row: np.ndarray,
    service: np.ndarray,
    endpoints: EndpointMap,
    shape: tuple[int, int],
) -> Triples:
    """The triples' parts of the evidence `rows` (each row's triple: `triple_of_row`, an
    index into `triple_keys`); a row's position in the table is its index."""
    triples = len(triple_keys)
    weight = sessions.sessions[rows]
    order = np.argsort(triple_of_row, kind="stable")
    ordered = rows[order]
    starts = np.flatnonzero(np.r_[True, np.diff(triple_of_row[order]) != 0])
    kinds = len(EVIDENCE)
    by_kind = group_sums(triple_of_row * kinds + side.evidence[rows], weight, triples * kinds)
    return Triples(
        keys=triple_keys,
        sessions=group_sums(triple_of_row, weight, triples),
        packets=_both_ways(
            triple_of_row, sessions.fwd_packets[rows], sessions.rev_packets[rows], triples
        ),
        bytes=_both_ways(
            triple_of_row, sessions.fwd_bytes[rows], sessions.rev_bytes[rows], triples
        ),
        first_seen=np.minimum.reduceat(sessions.first_seen[ordered], starts),
        last_seen=np.maximum.reduceat(sessions.last_seen[ordered], starts),
        evidence_counts=[by_kind[t * kinds : (t + 1) * kinds] for t in range(triples)],
        host_combinations=_observed_combinations(
            sessions, side, rows, service, endpoints, triple_keys, shape
        ),
        first_examples=_first_examples(sessions, side, first_rows(sessions, rows, triple_of_row)),
    )


def _both_ways(group: np.ndarray, request: np.ndarray, reply: np.ndarray, groups: int) -> list[int]:
    """Per group, the exact sum of request plus reply counters."""
    return [
        a + b
        for a, b in zip(
            group_sums(group, request, groups), group_sums(group, reply, groups), strict=True
        )
    ]


def example(sessions: SessionColumns, side: ServerSide, row: int) -> SessionExample:
    protocol = int(sessions.protocol[row])
    client_port = int(side.client_port[row])
    return SessionExample(
        vrf=sessions.vrf_names[int(sessions.vrf[row])],
        protocol=PROTOCOL_NAMES.get(protocol, str(protocol)),
        client=str(sessions.addresses.addresses[int(side.client[row])]),
        client_port="eph" if client_port == EPHEMERAL else client_port,
        server=str(sessions.addresses.addresses[int(side.server[row])]),
        server_port=int(side.server_port[row]),
        sessions=int(sessions.sessions[row]),
        packets=pair_total(sessions.fwd_packets, sessions.rev_packets, row),
        bytes=pair_total(sessions.fwd_bytes, sessions.rev_bytes, row),
        first_seen=iso_time(int(sessions.first_seen[row])),
        last_seen=iso_time(int(sessions.last_seen[row])),
        server_side=EVIDENCE[int(side.evidence[row])],
    )


def _stopper(stopped: tuple[np.ndarray, list[str]] | None, row: int) -> str | None:
    if stopped is None or stopped[0][row] < 0:
        return None
    return stopped[1][int(stopped[0][row])]


@dataclass(frozen=True)
class AttemptGroups:
    """Unanswered sessions grouped per (client, server, service): each group's addresses
    (indices into the table's addresses), service index, exact session sum, first and last
    seen, and the row of its earliest session in the table's order (what stops it is that
    session's)."""

    client: np.ndarray
    server: np.ndarray
    service: np.ndarray
    sessions: list[int]
    first_seen: np.ndarray
    last_seen: np.ndarray
    earliest: np.ndarray


def attempt_groups(
    sessions: SessionColumns, side: ServerSide, rows: np.ndarray, service: np.ndarray
) -> AttemptGroups:
    """`rows` (not empty) grouped per (client, server, service); `service`: each of the
    rows' service index."""
    address_count = len(sessions.addresses)
    service_count = int(service.max()) + 1
    keys = (
        side.client[rows].astype(np.int64) * address_count + side.server[rows]
    ) * service_count + service
    unique_keys, group, order = _group_by(keys)
    ordered = rows[order]
    starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
    pair, service = np.divmod(unique_keys, service_count)
    return AttemptGroups(
        client=pair // address_count,
        server=pair % address_count,
        service=service,
        sessions=group_sums(group, sessions.sessions[rows], len(unique_keys)),
        first_seen=np.minimum.reduceat(sessions.first_seen[ordered], starts),
        last_seen=np.maximum.reduceat(sessions.last_seen[ordered], starts),
        earliest=ordered[starts],
    )


def _blocked(
    sessions: SessionColumns,
    side: ServerSide,
    blocked: np.ndarray,
    service_index: np.ndarray,
    choices: list[ServiceChoice],
    stopped: tuple[np.ndarray, list[str]] | None,
) -> list[BlockedAttempt]:
    """Unanswered sessions per (client, server, service), most sessions first, each with
    what stops its earliest session in the policy in force."""
    rows = np.flatnonzero(blocked)
    if not len(rows):
        return []
    groups = attempt_groups(sessions, side, rows, service_index[rows])
    addresses = sessions.addresses.addresses
    attempts = [
        BlockedAttempt(
            source=str(addresses[client]),
            destination=str(addresses[server]),
            service=choices[service].name,
            sessions=saturated(groups.sessions[position]),
            first_seen=iso_time(int(groups.first_seen[position])),
            last_seen=iso_time(int(groups.last_seen[position])),
            stopped_by=_stopper(stopped, int(groups.earliest[position])),
        )
        for position, (client, server, service) in enumerate(
            zip(
                groups.client.tolist(), groups.server.tolist(), groups.service.tolist(), strict=True
            )
        )
    ]
    return blocked_order(attempts)


def blocked_order(attempts: list[BlockedAttempt]) -> list[BlockedAttempt]:
    """Most sessions first, then by source, destination and service."""
    return sorted(attempts, key=lambda a: (-a.sessions, a.source, a.destination, a.service))

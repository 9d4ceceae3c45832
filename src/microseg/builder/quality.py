"""Where the proposals go in the target policy, and how good they are.

Nothing here is assumed: the policy is compiled (`microseg.compile`) and the evidence
sessions are replayed through the evaluator (`microseg.evaluate`), request and reply packet
each, on every device that sees them (a device with a segment holding either end; every
device of the domain when none does). A session is covered when both packets are forwarded
on every such device: EOS traffic policies are stateless, so the reply needs its own match.
Hardware entries are lint's estimate (`evaluate.lint.hardware_report`) before and after.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace

import numpy as np

from microseg.builder.placement import placements
from microseg.builder.proposal import (
    CurrentDecision,
    HardwareUse,
    Recommendation,
    RecommendedRule,
    UnverifiedDevice,
    proposed_policy_set,
)
from microseg.builder.recommend import factorize
from microseg.builder.services import ServerSide, server_side
from microseg.compile import CompileError, DeviceIntent, compile_all, compile_each
from microseg.compile.diff import diff_text
from microseg.evaluate import VERDICTS, CompiledDevice, Evaluation, PacketBatch
from microseg.evaluate.packets import (
    NO_ICMP_TYPE,
    ephemeral_ports,
    icmp_reply_types,
    packed_addresses,
)
from microseg.flows.session_columns import EPHEMERAL, SessionColumns
from microseg.flows.sums import group_sums, saturated, total
from microseg.model import Policy, PolicySet
from microseg.model.ports import ICMP, ICMPV6, PORT_PROTOCOLS


@dataclass(frozen=True)
class Replay:
    """Request and reply packets of the evidence sessions, and who sees them."""

    request: PacketBatch
    reply: PacketBatch
    has_reply: np.ndarray  # bool: ICMP messages that are not queries have no reply packet
    client: np.ndarray
    server: np.ndarray


def replay_packets(sessions: SessionColumns, side: ServerSide | None = None) -> Replay:
    side = server_side(sessions) if side is None else side
    addresses = packed_addresses(sessions.addresses.high, sessions.addresses.low)
    vrf = np.array(sessions.vrf_names, dtype=str)[sessions.vrf]
    protocol = sessions.protocol
    family = sessions.addresses.family[side.client]
    has_ports = np.isin(protocol, PORT_PROTOCOLS)
    # A summarised client port (`eph`) stands for ports from 49152 up (RFC 6335); it
    # replays as one picked from the session's ends and service, not from its row number
    # (the engine folds rows: `flows.engines.builder_rows`).
    high, low = sessions.addresses.high, sessions.addresses.low
    replayed = ephemeral_ports(
        protocol,
        high[side.client],
        low[side.client],
        high[side.server],
        low[side.server],
        side.server_port,
    )
    client_port = np.where(side.client_port == EPHEMERAL, replayed, side.client_port)
    client_port = np.where(has_ports, client_port, 0).astype(np.int32)
    server_port = np.where(has_ports, side.server_port, 0).astype(np.int32)
    is_icmp = ((protocol == ICMP) & (family == 4)) | ((protocol == ICMPV6) & (family == 6))
    query_type = np.where(is_icmp, side.server_port, NO_ICMP_TYPE).astype(np.int16)
    reply_type = icmp_reply_types(protocol, query_type, unanswered=-1)  # -1: no reply
    reply_type = np.where(is_icmp, reply_type, NO_ICMP_TYPE).astype(np.int16)
    has_reply = ~is_icmp | (reply_type >= 0)
    request = PacketBatch(
        vrf=vrf,
        family=family,
        protocol=protocol.astype(np.int16),
        src=addresses[side.client],
        dst=addresses[side.server],
        sport=client_port,
        dport=server_port,
        icmp_type=query_type,
    )
    reply = PacketBatch(
        vrf=vrf,
        family=family,
        protocol=protocol.astype(np.int16),
        src=addresses[side.server],
        dst=addresses[side.client],
        sport=server_port,
        dport=client_port,
        icmp_type=np.maximum(reply_type, 0).astype(np.int16),
    )
    return Replay(request, reply, has_reply, side.client, side.server)


def _evaluate(device: CompiledDevice, replay: Replay, evidence: SessionColumns, rows: np.ndarray):
    """(request evaluation, reply evaluation, inverse) for the sessions `rows`: the device
    decides a packet by the cells its fields fall in (VRF, protocol, address cells, port
    cells, ICMP type), so one representative session per distinct combination is
    evaluated; `inverse` maps each of `rows` to its representative."""
    addresses = evidence.addresses
    request = replay.request
    cells = device.address_cell_index(
        addresses.family, packed_addresses(addresses.high, addresses.low)
    )
    pair = cells[replay.client[rows]] * device.address_cell_count + cells[replay.server[rows]]
    key = factorize(pair)[1]
    key = factorize(
        (key * len(evidence.vrf_names) + evidence.vrf[rows]) * 256 + request.protocol[rows]
    )[1]
    port_cell = device.ports.of_port.astype(np.int64)
    ports = len(device.ports)
    sport, dport = port_cell[request.sport[rows]], port_cell[request.dport[rows]]
    key = factorize((key * ports + sport) * ports + dport)[1]
    key = key * (NO_ICMP_TYPE + 1) + request.icmp_type[rows]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    representatives = rows[first]
    return (
        device.evaluate(request.take(representatives)),
        device.evaluate(replay.reply.take(representatives)),
        inverse.reshape(-1),
    )


@dataclass(frozen=True)
class DeviceDecisions:
    """One device's decisions for the sessions that pass it (via their representatives).
    Only those sessions are held, so memory and time grow with the sessions each device
    sees, not with sessions times devices (a fabric of hundreds of leaves)."""

    intent: DeviceIntent
    rows: np.ndarray  # int64: the sessions that pass this device (indices, unordered)
    request: Evaluation
    reply: Evaluation
    inverse: np.ndarray  # per entry of `rows`: its representative
    has_reply: np.ndarray  # per entry of `rows`: the request expects a reply packet

    def take(self, position: np.ndarray) -> DeviceDecisions:
        """The decisions for a subset of the sessions, numbered as in the subset:
        `position` maps each session to its index there, -1 when left out (`session_positions`)."""
        renumbered = position[self.rows]
        kept = renumbered >= 0
        return replace(
            self,
            rows=renumbered[kept],
            inverse=self.inverse[kept],
            has_reply=self.has_reply[kept],
        )

    def deciding_rules(self) -> list[str]:
        """Per representative, the rule that decided its request ('' for the default)."""
        names = []
        for position, match in zip(
            self.request.policy_index.tolist(), self.request.match_index.tolist(), strict=True
        ):
            decided = position >= 0 and match >= 0
            names.append(self.intent.policies[position].matches[match].rule if decided else "")
        return names


def session_positions(count: int, rows: np.ndarray) -> np.ndarray:
    """For `DeviceDecisions.take`: each of `count` sessions' index among `rows`, else -1."""
    position = np.full(count, -1, dtype=np.int64)
    position[rows] = np.arange(len(rows), dtype=np.int64)
    return position


class _ByAddress:
    """The sessions of each address on one side (client or server), found without a pass
    over every session: sessions sorted by address once, then sliced per address."""

    def __init__(self, address: np.ndarray, count: int):
        self.order = np.argsort(address, kind="stable")
        self.starts = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(np.bincount(address, minlength=count), out=self.starts[1:])

    def sessions(self, members: np.ndarray) -> np.ndarray:
        """Indices of the sessions whose address on this side is one of `members`."""
        begin, end = self.starts[members], self.starts[members + 1]
        lengths = end - begin
        shift = np.repeat(begin - np.cumsum(lengths) + lengths, lengths)
        return self.order[shift + np.arange(int(lengths.sum()), dtype=np.int64)]


def decide(
    policy_set: PolicySet,
    intents: dict[str, DeviceIntent],
    evidence: SessionColumns,
    side: ServerSide | None = None,
    replay: Replay | None = None,
    uncompiled: Collection[str] = (),
) -> list[DeviceDecisions]:
    """Every device's decisions for the sessions that pass it (`passing_sessions`).
    `replay`: the sessions' packets, when already built. `uncompiled`: devices without an
    intent (their policy does not compile): they decide nothing, but their segments still
    say where sessions go."""
    if not len(evidence) or not intents:
        return []
    replay = replay_packets(evidence, side) if replay is None else replay
    passing = passing_sessions(policy_set, [*intents, *uncompiled], evidence, replay)
    decisions = []
    for name, intent in intents.items():
        rows = passing[name]
        if not len(rows):
            continue  # no session passes this device: it decides nothing
        request, reply, inverse = _evaluate(CompiledDevice(intent), replay, evidence, rows)
        decisions.append(
            DeviceDecisions(intent, rows, request, reply, inverse, replay.has_reply[rows])
        )
    return decisions


def passing_sessions(
    policy_set: PolicySet, devices: list[str], evidence: SessionColumns, replay: Replay
) -> dict[str, np.ndarray]:
    """Per device of `devices`, the sessions (indices) that pass it: those with an end in
    one of its segments, and those with neither end in any of the devices' segments."""
    addresses = evidence.addresses
    local: dict[str, np.ndarray] = {}  # per device: its addresses (a segment holds them)
    for name in devices:
        subnets = tuple(s for seg in policy_set.device(name).segments for s in seg.subnets)
        local[name] = np.flatnonzero(addresses.in_prefixes(subnets))
    known = np.zeros(len(addresses), dtype=bool)
    for members in local.values():
        known[members] = True
    nowhere = np.flatnonzero(~(known[replay.client] | known[replay.server]))
    clients = _ByAddress(replay.client, len(addresses))
    servers = _ByAddress(replay.server, len(addresses))
    passing = {}
    for name in devices:
        here = np.zeros(len(addresses), dtype=bool)
        here[local[name]] = True
        by_server = servers.sessions(local[name])
        # a session with both ends here is among the client's already
        passing[name] = np.concatenate(
            [clients.sessions(local[name]), by_server[~here[replay.client[by_server]]], nowhere]
        )
    return passing


@dataclass(frozen=True)
class TodayFacts:
    """What the policy in force decides for each session, as far as `verify` asks: the
    positions of the target policy's rules that decide its request or reply on a device it
    passes (placement), and per device it passes the rule deciding its request ('' for a
    default match) and that request's verdict (current decisions). One entry per fact,
    numbered by session; made per session, so a part of the sessions makes its own part."""

    deciding_row: np.ndarray  # int64: the session
    deciding_rule: np.ndarray  # int64: a position in the target policy's rule list
    current_row: np.ndarray  # int64: the session, once per device it passes
    current_rule: np.ndarray  # int64: an index into current_names
    current_verdict: np.ndarray  # int64: an index into VERDICTS
    current_names: tuple[str, ...]

    def take(self, position: np.ndarray) -> TodayFacts:
        """The facts of a subset of the sessions, numbered as in the subset (`position`:
        each session's index there, -1 when left out: `session_positions`)."""
        deciding, current = position[self.deciding_row], position[self.current_row]
        kept, counted = deciding >= 0, current >= 0
        return replace(
            self,
            deciding_row=deciding[kept],
            deciding_rule=self.deciding_rule[kept],
            current_row=current[counted],
            current_rule=self.current_rule[counted],
            current_verdict=self.current_verdict[counted],
        )


def today_facts(
    today: list[DeviceDecisions], policy_set: PolicySet, target: str | None
) -> TodayFacts:
    """The facts `verify` needs of every device's decisions (`decide`) today."""
    rule_names = policy_set.policy(target).rules if target is not None else ()
    deciding_rows, deciding_rules, current_rows, current_rules, verdicts = [], [], [], [], []
    labels: dict[str, int] = {"": 0}
    for decisions in today:
        for evaluation in (decisions.request, decisions.reply):
            position = np.full(len(evaluation.verdict), -1, dtype=np.int64)
            for index, policy in enumerate(decisions.intent.policies):
                if policy.name != target:
                    continue
                here = (evaluation.policy_index == index) & (evaluation.match_index >= 0)
                for match in np.unique(evaluation.match_index[here]).tolist():
                    these = here & (evaluation.match_index == match)
                    position[these] = rule_names.index(policy.matches[match].rule)
            per_session = position[decisions.inverse]
            decided = per_session >= 0
            deciding_rows.append(decisions.rows[decided])
            deciding_rules.append(per_session[decided])
        current_rows.append(decisions.rows)
        current_rules.append(_codes(decisions, labels))
        verdicts.append(decisions.request.verdict[decisions.inverse].astype(np.int64))
    return TodayFacts(
        deciding_row=_joined(deciding_rows),
        deciding_rule=_joined(deciding_rules),
        current_row=_joined(current_rows),
        current_rule=_joined(current_rules),
        current_verdict=_joined(verdicts),
        current_names=tuple(labels),
    )


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class DecidedToday:
    """What decides the evidence sessions of each group (a triple, a proposal) today: the
    positions of the target policy's rules that decide a request or reply of them, and per
    (deciding rule or None for a default match, verdict) their sessions (exact, counted once
    per device a session passes)."""

    deciding: list[set[int]]
    current: list[Counter]


def decided_today(
    target: str | None,
    policy_set: PolicySet,
    today: TodayFacts,
    group_of: np.ndarray,
    groups: int,
    weights: np.ndarray,
) -> DecidedToday:
    """`DecidedToday` of groups of evidence sessions (`group_of`: each one's group; `today`
    and `weights` numbered as they are)."""
    deciding: list[set[int]] = [set() for _ in range(groups)]
    if target is not None:
        width = len(policy_set.policy(target).rules) + 1
        pairs = np.unique(group_of[today.deciding_row] * width + today.deciding_rule)
        for pair in pairs.tolist():
            group, rule_position = divmod(pair, width)
            deciding[group].add(rule_position)
    current: list[Counter] = [Counter() for _ in range(groups)]
    names = today.current_names
    rows = today.current_row
    keys = (group_of[rows] * len(names) + today.current_rule) * len(VERDICTS)
    unique_keys, inverse = factorize(keys + today.current_verdict)
    totals = group_sums(inverse, weights[rows], len(unique_keys))
    for key, weight in zip(unique_keys.tolist(), totals, strict=True):
        codes, verdict_code = divmod(key, len(VERDICTS))
        group, current_code = divmod(codes, len(names))
        current[group][(names[current_code] or None, VERDICTS[verdict_code])] += int(weight)
    return DecidedToday(deciding, current)


@dataclass(frozen=True)
class Measured:
    """The evidence replayed under the proposed policy: the sessions forwarded both ways on
    every device they pass and not passing a device that does not compile (`covered`), per
    device that does not compile the sessions that pass it, and the sessions that pass any
    of those. Exact sums (parts add up), saturated by `verify`."""

    covered: int
    unverified: dict[str, int]
    unverified_sessions: int


# (the proposed policy set, its devices' intents, the devices that do not compile and why)
Measure = Callable[[PolicySet, dict[str, DeviceIntent], dict[str, str]], Measured]


def measure_rows(sessions: SessionColumns, replay: Replay, rows: np.ndarray) -> Measure:
    """`Measure` of the evidence `rows` among `sessions` (whose packets `replay` holds)."""
    weights = sessions.sessions[rows]
    evidence = session_positions(len(sessions), rows)

    def measure(
        proposed: PolicySet, after: dict[str, DeviceIntent], failed: dict[str, str]
    ) -> Measured:
        tomorrow = decide(proposed, after, sessions, replay=replay, uncompiled=failed)
        unverified, unverified_rows = _unverified(
            proposed, after, failed, sessions, replay, evidence, weights
        )
        covered = _covered([d.take(evidence) for d in tomorrow], weights, unverified_rows)
        return Measured(covered, unverified, exact_total(weights[unverified_rows]))

    return measure


def verify(
    policy_set: PolicySet,
    recommendation: Recommendation,
    decided: DecidedToday,
    measure: Measure,
    include_blocked: bool,
) -> Recommendation:
    """Place the proposals, then measure: coverage (`measure`: the evaluator), config lines
    (compiler), hardware entries (lint's estimate), and for each proposal what decides its
    sessions today (`decided`, per proposal)."""
    quality = recommendation.quality
    notes = list(quality.notes)
    if not quality.evidence_sessions:
        notes.append("no sessions in scope left to propose rules for: nothing to recommend")
    target = recommendation.target_policy
    if target is None:
        notes.append("no target policy (use --policy): the rules are not bound anywhere")
    try:
        before, before_errors = compile_each(policy_set)
        placed = _Placed(recommendation, list(range(len(recommendation.rules))))
        if target is not None and recommendation.rules:
            objects = proposed_policy_set(policy_set, replace(recommendation, target_policy=None))
            positions = placements(
                objects,
                target,
                [r.rule for r in recommendation.rules],
                decided.deciding,
                keep_deciders=not include_blocked,
            )
            placed = _placed(recommendation, positions, policy_set.policy(target))
        proposed = proposed_policy_set(policy_set, placed.recommendation)
        after, after_errors = compile_each(proposed)
    except CompileError as error:
        notes.append(f"cannot compile the policy with the proposals: {error}")
        return replace(recommendation, quality=replace(quality, notes=tuple(notes)))
    # A device that does not compile costs its own verification, not the others'.
    failed = {name: f"with the proposals: {reason}" for name, reason in after_errors.items()}
    failed.update(before_errors)
    before = {name: intent for name, intent in before.items() if name not in failed}
    after = {name: intent for name, intent in after.items() if name not in failed}
    result = placed.recommendation
    measured = measure(proposed, after, failed)
    unverified = tuple(
        UnverifiedDevice(name, reason, saturated(measured.unverified.get(name, 0)))
        for name, reason in sorted(failed.items())
    )
    verifiable = quality.evidence_sessions - saturated(measured.unverified_sessions)
    covered = saturated(measured.covered)
    notes += [
        f"{u.device} not verified: its policy does not compile ({u.reason}); "
        f"evidence sessions that pass it: {u.sessions}, not counted as covered"
        for u in unverified
    ]
    config_lines, unrendered = _config_lines_added(policy_set, proposed, before, after, failed)
    notes += unrendered
    if config_lines is None and not unrendered:
        notes.append("no device in the policy: no config lines to count")
    if not quality.evidence_sessions:
        coverage: float | None = 1.0
    else:
        coverage = covered / verifiable if verifiable else None
    return replace(
        result,
        rules=_with_current_decisions(result.rules, [decided.current[i] for i in placed.order]),
        quality=replace(
            quality,
            covered_sessions=covered if coverage is not None else None,
            coverage=coverage,
            config_lines=config_lines,
            hardware=hardware_use(policy_set, proposed, before, after),
            notes=tuple(notes),
            unverified=unverified,
        ),
    )


def exact_total(values: np.ndarray) -> int:
    """The exact sum of counters (not saturated: parts add up first)."""
    return group_sums(np.zeros(len(values), dtype=np.int64), values, 1)[0] if len(values) else 0


def _unverified(
    policy_set: PolicySet,
    intents: dict[str, DeviceIntent],
    failed: dict[str, str],
    sessions: SessionColumns,
    replay: Replay,
    evidence: np.ndarray,
    weights: np.ndarray,
) -> tuple[dict[str, int], np.ndarray]:
    """Per device that does not compile, the evidence sessions that pass it (exact), and
    per evidence session whether it passes any of them. `evidence`: each session's position
    among the evidence, -1 if it is none (`session_positions`); `weights`: per position."""
    unverified = np.zeros(len(weights), dtype=bool)
    if not failed or not len(sessions):
        return {}, unverified
    passing = passing_sessions(policy_set, [*intents, *failed], sessions, replay)
    devices = {}
    for name in sorted(failed):
        positions = evidence[passing[name]]
        positions = np.unique(positions[positions >= 0])
        unverified[positions] = True
        devices[name] = exact_total(weights[positions])
    return devices, unverified


@dataclass(frozen=True)
class _Placed:
    recommendation: Recommendation
    order: list[int]  # per rule of `recommendation`, its index before placement


def _placed(recommendation: Recommendation, positions: list[int], policy: Policy) -> _Placed:
    """The rules with their positions, in policy order: by position, then narrowest first
    (the order they came in)."""
    order = sorted(range(len(positions)), key=lambda i: (positions[i], i))
    rules = tuple(
        replace(
            recommendation.rules[i],
            insert_at=positions[i],
            before=policy.rules[positions[i]] if positions[i] < len(policy.rules) else None,
        )
        for i in order
    )
    return _Placed(replace(recommendation, rules=rules), order)


def hardware_use(
    before_set: PolicySet,
    after_set: PolicySet,
    before: dict[str, DeviceIntent],
    after: dict[str, DeviceIntent],
) -> tuple[HardwareUse, ...]:
    """Per device, lint's hardware entry estimate without and with the proposals, and the
    budget its target declares (None for software targets)."""
    from microseg.evaluate.lint import hardware_report

    entries_before = {row["device"]: row["entries"] for row in hardware_report(before_set, before)}
    return tuple(
        HardwareUse(
            device=row["device"],
            entries_before=entries_before.get(row["device"], 0),
            entries_after=row["entries"],
            budget=row["budget"],
        )
        for row in hardware_report(after_set, after)
    )


def _covered(
    tomorrow: list[DeviceDecisions], weights: np.ndarray, unverified: np.ndarray | None = None
) -> int:
    """Sessions (weighted) whose request and reply are forwarded on every device they pass
    (the reply only when the request expects one); none that passes a device it cannot
    decide (`unverified`, per session)."""
    if not len(weights):
        return 0
    allowed = np.ones(len(weights), dtype=bool) if unverified is None else ~unverified
    for decisions in tomorrow:
        request = decisions.request.forwarded[decisions.inverse]
        reply = decisions.reply.forwarded[decisions.inverse]
        allowed[decisions.rows] &= request & (reply | ~decisions.has_reply)
    return total(weights[allowed])


def covered_sessions(policy_set: PolicySet, evidence: SessionColumns) -> int:
    """Evidence sessions a policy forwards (both directions) on every device they pass."""
    return _covered(decide(policy_set, compile_all(policy_set), evidence), evidence.sessions)


def _with_current_decisions(
    rules: tuple[RecommendedRule, ...], current: list[Counter]
) -> tuple[RecommendedRule, ...]:
    """Each proposal with what decides its sessions' requests today (`current`, per rule:
    `DecidedToday`): an existing rule (forward, drop, redirect) or a policy's default match
    (its default action), counted once per device a session passes."""
    return tuple(
        replace(
            r,
            current_decisions=tuple(
                CurrentDecision(rule, verdict, saturated(sessions))
                for (rule, verdict), sessions in sorted(
                    counts.items(), key=lambda item: (-item[1], str(item[0]))
                )
            ),
        )
        for r, counts in zip(rules, current, strict=True)
    )


def _codes(decisions: DeviceDecisions, labels: dict[str, int]) -> np.ndarray:
    """Per session the device sees (`rows`), the deciding rule as a code in `labels` (added as they appear)."""
    per_representative = [labels.setdefault(n, len(labels)) for n in decisions.deciding_rules()]
    return np.array(per_representative, dtype=np.int64)[decisions.inverse]


def _config_lines_added(
    before_set: PolicySet,
    after_set: PolicySet,
    before: dict[str, DeviceIntent],
    after: dict[str, DeviceIntent],
    failed: dict[str, str],
) -> tuple[int | None, list[str]]:
    """Lines the proposals add to the devices' configurations, each rendered by its own
    target and counted by the same section-aware diff `microseg diff` and `workspace build`
    print (None when the policy configures no device, or none renders), and a note per
    device whose configuration does not render: a monitor node's tunnel to a switch without
    a loopback_address is no reason to withhold the rules the traffic supports."""
    from microseg.targets.render import configured_names, device_config

    names = configured_names(after_set)
    if not names:
        return None, []
    added, notes = 0, []
    for name in names:
        if name in failed:
            notes.append(f"config lines of {name} not counted: its policy does not compile")
            continue
        try:
            old, new = (
                device_config(before_set, name, before),
                device_config(after_set, name, after),
            )
        except CompileError as error:
            notes.append(
                f"config lines of {name} not counted: its configuration does not render ({error})"
            )
            continue
        added += diff_text(name, old, new, "before", "after").added
    return (None if len(notes) == len(names) else added), notes

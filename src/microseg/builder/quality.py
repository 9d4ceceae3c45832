"""Where the proposals go in the target policy, and how good they are.

Nothing here is assumed: the policy is compiled (`microseg.compile`) and the evidence
sessions are replayed through the evaluator (`microseg.evaluate`), request and reply packet
each, on every device that sees them (a device with a segment holding either end; every
device of the domain when none does). A session is covered when both packets are forwarded
on every such device: EOS traffic policies are stateless, so the reply needs its own match.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from microseg.builder.proposal import (
    CurrentDecision,
    Recommendation,
    RecommendedRule,
    proposed_policy_set,
)
from microseg.builder.recommend import factorize
from microseg.builder.services import server_side
from microseg.compile import CompileError, DeviceIntent, compile_all
from microseg.compile.diff import diff_text
from microseg.evaluate import VERDICTS, CompiledDevice, Evaluation, PacketBatch
from microseg.evaluate.packets import (
    NO_ICMP_TYPE,
    ephemeral_ports,
    icmp_reply_types,
    packed_addresses,
)
from microseg.flows.session_columns import EPHEMERAL, SessionColumns
from microseg.model import PolicySet
from microseg.model.ports import ICMP, ICMPV6, PORT_PROTOCOLS


@dataclass(frozen=True)
class Replay:
    """Request and reply packets of the evidence sessions, and who sees them."""

    request: PacketBatch
    reply: PacketBatch
    has_reply: np.ndarray  # bool: ICMP messages that are not queries have no reply packet
    client: np.ndarray
    server: np.ndarray


def replay_packets(sessions: SessionColumns) -> Replay:
    side = server_side(sessions)
    addresses = packed_addresses(sessions.addresses.high, sessions.addresses.low)
    vrf = np.array(sessions.vrf_names, dtype=str)[sessions.vrf]
    family = sessions.addresses.family[side.client]
    protocol = sessions.protocol
    has_ports = np.isin(protocol, PORT_PROTOCOLS)
    # A summarised client port (`eph`) stands for ports from 49152 up (RFC 6335).
    client_port = np.where(
        side.client_port == EPHEMERAL, ephemeral_ports(len(sessions)), side.client_port
    )
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


def _evaluate(device: CompiledDevice, replay: Replay, evidence: SessionColumns):
    """(request evaluation, reply evaluation, inverse): the device decides a packet by the
    cells its fields fall in (VRF, protocol, address cells, port cells, ICMP type), so one
    representative session per distinct combination is evaluated; `inverse` maps every
    session to its representative."""
    addresses = evidence.addresses
    request = replay.request
    cells = device.address_cell_index(
        addresses.family, packed_addresses(addresses.high, addresses.low)
    )
    pair = cells[replay.client] * device.address_cell_count + cells[replay.server]
    key = factorize(pair)[1]
    key = factorize((key * len(evidence.vrf_names) + evidence.vrf) * 256 + request.protocol)[1]
    port_cell = device.ports.of_port.astype(np.int64)
    ports = len(device.ports)
    key = factorize((key * ports + port_cell[request.sport]) * ports + port_cell[request.dport])[1]
    key = key * (NO_ICMP_TYPE + 1) + request.icmp_type
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return (
        device.evaluate(request.take(first)),
        device.evaluate(replay.reply.take(first)),
        inverse.reshape(-1),
    )


@dataclass(frozen=True)
class DeviceDecisions:
    """One device's decisions for the evidence sessions (via their representatives)."""

    intent: DeviceIntent
    passing: np.ndarray  # bool per session: the session passes this device
    request: Evaluation
    reply: Evaluation
    inverse: np.ndarray  # session -> representative

    def deciding_rules(self) -> list[str]:
        """Per representative, the rule that decided its request ('' for the default)."""
        names = []
        for position, match in zip(
            self.request.policy_index.tolist(), self.request.match_index.tolist(), strict=True
        ):
            decided = position >= 0 and match >= 0
            names.append(self.intent.policies[position].matches[match].rule if decided else "")
        return names


def decide(
    policy_set: PolicySet, intents: dict[str, DeviceIntent], evidence: SessionColumns
) -> list[DeviceDecisions]:
    """Every device's decisions for the sessions that pass it (a device with a segment
    holding either end; every device when none does)."""
    if not len(evidence) or not intents:
        return []
    replay = replay_packets(evidence)
    addresses = evidence.addresses
    passing: dict[str, np.ndarray] = {}
    for name in intents:
        subnets = tuple(s for seg in policy_set.device(name).segments for s in seg.subnets)
        local = addresses.in_prefixes(subnets)
        passing[name] = local[replay.client] | local[replay.server]
    nowhere = ~np.logical_or.reduce(list(passing.values()))
    decisions = []
    for name, intent in intents.items():
        request, reply, inverse = _evaluate(CompiledDevice(intent), replay, evidence)
        decisions.append(DeviceDecisions(intent, passing[name] | nowhere, request, reply, inverse))
    return decisions


def insertion_point(target: str | None, policy_set: PolicySet, today: list[DeviceDecisions]) -> int:
    """Before the first rule of the target policy that decides any evidence packet today,
    so no proposal is shadowed by an existing rule; at the end when none does."""
    if target is None:
        return 0
    rule_names = policy_set.policy(target).rules
    earliest = len(rule_names)
    for decisions in today:
        seen = np.zeros(len(decisions.request), dtype=bool)
        seen[decisions.inverse[decisions.passing]] = True
        for evaluation in (decisions.request, decisions.reply):
            for position, policy in enumerate(decisions.intent.policies):
                if policy.name != target:
                    continue
                decided = seen & (evaluation.policy_index == position)
                matches = np.unique(evaluation.match_index[decided & (evaluation.match_index >= 0)])
                for match in matches.tolist():
                    earliest = min(earliest, rule_names.index(policy.matches[match].rule))
    return earliest


def verify(
    policy_set: PolicySet, recommendation: Recommendation, evidence: SessionColumns
) -> Recommendation:
    """Place the proposals, then measure: coverage (evaluator), config lines (compiler),
    and for each proposal what decides its sessions today."""
    quality = recommendation.quality
    notes = list(quality.notes)
    if not quality.evidence_sessions:
        notes.append("no answered sessions in scope: nothing to recommend")
    if recommendation.target_policy is None:
        notes.append("no target policy (use --policy): the rules are not bound anywhere")
    try:
        before = compile_all(policy_set)
        today = decide(policy_set, before, evidence)
        placed = replace(
            recommendation,
            insert_at=insertion_point(recommendation.target_policy, policy_set, today),
        )
        proposed = proposed_policy_set(policy_set, placed)
        after = compile_all(proposed)
    except CompileError as error:
        notes.append(f"cannot compile the policy with the proposals: {error}")
        return replace(recommendation, quality=replace(quality, notes=tuple(notes)))
    tomorrow = decide(proposed, after, evidence)
    covered = _covered(tomorrow, evidence)
    config_lines = _config_lines_added(policy_set, proposed, before, after)
    if config_lines is None:
        notes.append("no device in the policy: no config lines to count")
    return replace(
        placed,
        rules=_with_current_decisions(placed.rules, today, tomorrow, evidence),
        quality=replace(
            quality,
            covered_sessions=covered,
            coverage=covered / quality.evidence_sessions if quality.evidence_sessions else 1.0,
            config_lines=config_lines,
            notes=tuple(notes),
        ),
    )


def _covered(tomorrow: list[DeviceDecisions], evidence: SessionColumns) -> int:
    """Sessions (weighted) whose request and reply are forwarded on every device they pass
    (the reply only when the request expects one)."""
    if not len(evidence):
        return 0
    has_reply = replay_packets(evidence).has_reply
    allowed = np.ones(len(evidence), dtype=bool)
    for decisions in tomorrow:
        request = decisions.request.forwarded[decisions.inverse]
        reply = decisions.reply.forwarded[decisions.inverse]
        allowed &= ~decisions.passing | (request & (reply | ~has_reply))
    return int(evidence.sessions[allowed].sum())


def covered_sessions(policy_set: PolicySet, evidence: SessionColumns) -> int:
    """Evidence sessions a policy forwards (both directions) on every device they pass."""
    return _covered(decide(policy_set, compile_all(policy_set), evidence), evidence)


def _with_current_decisions(
    rules: tuple[RecommendedRule, ...],
    today: list[DeviceDecisions],
    tomorrow: list[DeviceDecisions],
    evidence: SessionColumns,
) -> tuple[RecommendedRule, ...]:
    """Each proposal with what decides its sessions' requests today: an existing rule
    (forward, drop, redirect) or the default match (forward)."""
    counts: dict[str, Counter] = {r.rule.name: Counter() for r in rules}
    labels: dict[str, int] = {"": 0}
    for before, after in zip(today, tomorrow, strict=True):
        proposal = _codes(after, labels)
        current = _codes(before, labels)
        verdict = before.request.verdict[before.inverse].astype(np.int64)
        proposed = [labels[name] for name in counts if name in labels]
        rows = np.flatnonzero(before.passing & np.isin(proposal, proposed))
        keys = (proposal[rows] * len(labels) + current[rows]) * len(VERDICTS) + verdict[rows]
        unique_keys, inverse = factorize(keys)
        weights = np.bincount(inverse, weights=evidence.sessions[rows])
        names = {code: name for name, code in labels.items()}
        for key, weight in zip(unique_keys.tolist(), weights.tolist(), strict=True):
            codes, verdict_code = divmod(key, len(VERDICTS))
            proposal_code, current_code = divmod(codes, len(labels))
            decider = names[current_code] or None
            counts[names[proposal_code]][(decider, VERDICTS[verdict_code])] += int(weight)
    return tuple(
        replace(
            r,
            current_decisions=tuple(
                CurrentDecision(rule, verdict, sessions)
                for (rule, verdict), sessions in sorted(
                    counts[r.rule.name].items(), key=lambda item: (-item[1], str(item[0]))
                )
            ),
        )
        for r in rules
    )


def _codes(decisions: DeviceDecisions, labels: dict[str, int]) -> np.ndarray:
    """Per session, the deciding rule as a code in `labels` (added as they appear)."""
    per_representative = [labels.setdefault(n, len(labels)) for n in decisions.deciding_rules()]
    return np.array(per_representative, dtype=np.int64)[decisions.inverse]


def _config_lines_added(
    before_set: PolicySet,
    after_set: PolicySet,
    before: dict[str, DeviceIntent],
    after: dict[str, DeviceIntent],
) -> int | None:
    """Lines the proposals add to the devices' configurations, each rendered by its own
    target and counted by the same section-aware diff `microseg diff` and `workspace build`
    print; None when the policy configures no device."""
    from microseg.targets.render import configured_names, device_config

    names = configured_names(after_set)
    if not names:
        return None
    return sum(
        diff_text(
            name,
            device_config(before_set, name, before),
            device_config(after_set, name, after),
            "before",
            "after",
        ).added
        for name in names
    )

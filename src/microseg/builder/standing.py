"""What the policy in force decides explicitly for each session, before anything is proposed.

A session is *blocked by* an existing rule when, on a device it passes, a drop or redirect
rule decides its request or its reply; it is *already allowed by* an existing rule when, on
every device it passes, a forward rule that mirrors nothing (not a monitor rule) decides its
request and the reply is forwarded too. Everything else is left to a policy's default or to a
monitor rule today, and is what the builder proposes rules for. The builder never proposes a
rule for a session an existing rule blocks (unless --include-blocked), nor again for one an
existing rule already allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microseg.builder.proposal import StandingDecision
from microseg.builder.quality import DeviceDecisions
from microseg.builder.services import ServerSide
from microseg.flows.engines import KEPT_ROWS
from microseg.flows.session_columns import SessionColumns
from microseg.flows.sums import total

EXAMPLES = KEPT_ROWS  # what the engine's fold keeps of each fold (flows.engines.builder_rows)


@dataclass(frozen=True)
class Standing:
    """Per session, the existing rule that blocks it or already allows it (-1: none)."""

    blocked_by: np.ndarray  # int64 index into `rules`
    allowed_by: np.ndarray
    rules: list[tuple[str, str]]  # (rule name, its verdict: forward / drop / redirect)
    stopped_by: np.ndarray  # int64 index into `stoppers`, -1: every packet is forwarded
    stoppers: list[str]  # `drop by rule R`, `drop by the default of policy P`

    def report(
        self, sessions: SessionColumns, side: ServerSide, which: np.ndarray, example
    ) -> tuple[StandingDecision, ...]:
        """One entry per deciding rule: sessions (weighted) and the first few examples."""
        rows = np.flatnonzero(which >= 0)
        entries = []
        for code in np.unique(which[rows]).tolist():
            members = rows[which[rows] == code]
            order = members[np.argsort(sessions.first_seen[members], kind="stable")]
            rule, verdict = self.rules[code]
            entries.append(
                StandingDecision(
                    rule=rule,
                    verdict=verdict,
                    sessions=total(sessions.sessions[members]),
                    examples=tuple(example(sessions, side, int(r)) for r in order[:EXAMPLES]),
                )
            )
        return tuple(sorted(entries, key=lambda e: (-e.sessions, e.rule.encode())))


def standing(decisions: list[DeviceDecisions], count: int) -> Standing:
    """Classify `count` sessions from every device's decisions about them."""
    rules: list[tuple[str, str]] = []
    codes: dict[tuple[str, str], int] = {}
    stoppers: list[str] = []
    stopped_by = np.full(count, -1, dtype=np.int64)
    blocked_by = np.full(count, -1, dtype=np.int64)
    allowed_by = np.full(count, -1, dtype=np.int64)
    allowed_everywhere = np.ones(count, dtype=bool)
    for device in decisions:
        # every array here has one entry per session the device sees (device.rows)
        rows = device.rows
        request = _explicit(device, device.request, rules, codes)
        reply = _explicit(device, device.reply, rules, codes)
        forwarded = device.request.forwarded[device.inverse]
        reply_forwarded = device.reply.forwarded[device.inverse] | ~device.has_reply
        request_code, request_plain = request[0][device.inverse], request[1][device.inverse]
        reply_code = reply[0][device.inverse]
        stops_request = (request_code >= 0) & ~forwarded
        stops_reply = device.has_reply & (reply_code >= 0) & ~reply_forwarded
        first = blocked_by[rows] < 0
        blocked_by[rows[first & stops_request]] = request_code[first & stops_request]
        first = blocked_by[rows] < 0
        blocked_by[rows[first & stops_reply]] = reply_code[first & stops_reply]
        for evaluation, stops in ((device.request, ~forwarded), (device.reply, ~reply_forwarded)):
            text = _stoppers(device, evaluation, stoppers)[device.inverse]
            unset = (stopped_by[rows] < 0) & stops
            stopped_by[rows[unset]] = text[unset]
        explicit = (request_code >= 0) & request_plain & forwarded & reply_forwarded
        allowed_everywhere[rows] &= explicit
        unset = (allowed_by[rows] < 0) & explicit
        allowed_by[rows[unset]] = request_code[unset]
    allowed_by[~allowed_everywhere | (blocked_by >= 0)] = -1
    return Standing(blocked_by, allowed_by, rules, stopped_by, stoppers)


def _stoppers(device: DeviceDecisions, evaluation, stoppers: list[str]) -> np.ndarray:
    """Per representative packet, what decides it as a sentence's code in `stoppers`: a
    rule, or a policy's default match (its `default_action`: drop in a default-deny policy)."""
    code = np.full(len(evaluation.verdict), -1, dtype=np.int64)
    for position in np.flatnonzero(~evaluation.forwarded).tolist():
        decision = evaluation.decision(position)
        if decision.rule is not None:
            text = f"{decision.verdict} by rule {decision.rule}"
        else:
            text = f"{decision.verdict} by the default of policy {decision.policy}"
        if text not in stoppers:
            stoppers.append(text)
        code[position] = stoppers.index(text)
    return code


def _explicit(
    device: DeviceDecisions, evaluation, rules: list, codes: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Per representative: the deciding rule's code (-1 for a default or no policy) and
    whether that rule mirrors nothing (a monitor rule is discovery, not a decision)."""
    code = np.full(len(evaluation.verdict), -1, dtype=np.int64)
    plain = np.zeros(len(evaluation.verdict), dtype=bool)
    decided = (evaluation.policy_index >= 0) & (evaluation.match_index >= 0)
    pairs = np.unique(
        np.stack([evaluation.policy_index[decided], evaluation.match_index[decided]]), axis=1
    )
    for policy_index, match_index in pairs.T.tolist():
        match = device.intent.policies[policy_index].matches[match_index]
        key = (match.rule, match.action)
        if key not in codes:
            codes[key] = len(rules)
            rules.append(key)
        these = decided & (evaluation.policy_index == policy_index)
        these &= evaluation.match_index == match_index
        code[these] = codes[key]
        plain[these] = match.mirror_session is None
    return code, plain

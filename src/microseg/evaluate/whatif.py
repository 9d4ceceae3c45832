"""What-if replay: which collected sessions would a candidate policy block or newly allow?

Every session is replayed as its request (client -> server) and its reply (server ->
client) on every device, under the base and under the candidate; a session gets through
when every device forwards both (EOS traffic policies are stateless). Sessions summarised
with an `eph` client port take an ephemeral port (49152 upward, RFC 6335). All of it is
vectorised over the session columns; only distinct addresses and deciding matches are
touched one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from microseg.compile.resolve import compile_all
from microseg.evaluate.cells import port_cuts
from microseg.evaluate.engine import CompiledDevice
from microseg.evaluate.packets import (
    NO_ICMP_TYPE,
    PacketBatch,
    ephemeral_ports,
    icmp_reply_types,
    packed_addresses,
)
from microseg.flows.session_columns import EPHEMERAL, icmp_types, session_columns
from microseg.flows.sums import group_sums, saturated, saturating_add, total
from microseg.model import MicrosegError, PolicySet
from microseg.model.ports import ICMP, ICMPV6, PORT_PROTOCOLS, PROTOCOL_NAMES

EXAMPLES_PER_GROUP = 3


@dataclass(frozen=True)
class SessionPackets:
    """Sessions as the replay needs them: request and reply packets plus weights."""

    table: pa.Table  # the rows as read, for the examples
    request: PacketBatch
    reply: PacketBatch
    sessions: np.ndarray  # how many sessions a row stands for
    packets: np.ndarray  # forward + reverse
    bytes: np.ndarray
    service: np.ndarray  # str label: tcp/22, udp/eph, icmp type 8


def session_packets(table: pa.Table, where: str = "sessions") -> SessionPackets:
    """Each session's request (as recorded: `src` opened it) and reply packet. The table is
    read and checked by the one session-table reader (`flows.session_columns`)."""
    columns = session_columns(table, where)
    addresses = columns.addresses
    packed = packed_addresses(addresses.high, addresses.low)
    family = addresses.family[columns.src]
    protocol = columns.protocol
    vrf = np.array(columns.vrf_names, dtype=str)[columns.vrf]
    # an `eph` port replays as one picked from the session's ends and its other port
    high, low = addresses.high, addresses.low
    ends = (protocol, high[columns.src], low[columns.src], high[columns.dst], low[columns.dst])
    sport = np.where(
        columns.sport == EPHEMERAL, ephemeral_ports(*ends, columns.dport), columns.sport
    )
    dport = np.where(
        columns.dport == EPHEMERAL, ephemeral_ports(*ends, columns.sport), columns.dport
    )
    is_icmp = ((protocol == ICMP) & (family == 4)) | ((protocol == ICMPV6) & (family == 6))
    icmp_type = icmp_types(protocol, dport)
    reply_type = icmp_reply_types(protocol, icmp_type, unanswered=icmp_type)  # else in kind
    request = PacketBatch(
        vrf=vrf,
        family=family,
        protocol=protocol,
        src=packed[columns.src],
        dst=packed[columns.dst],
        sport=np.where(is_icmp, 0, sport).astype(np.int32),
        dport=np.where(is_icmp, 0, dport).astype(np.int32),
        icmp_type=np.where(is_icmp, icmp_type, NO_ICMP_TYPE).astype(np.int16),
    )
    reply = PacketBatch(
        vrf=vrf,
        family=family,
        protocol=protocol,
        src=request.dst,
        dst=request.src,
        sport=request.dport,
        dport=request.sport,
        icmp_type=np.where(is_icmp, reply_type, NO_ICMP_TYPE).astype(np.int16),
    )
    return SessionPackets(
        table=table,
        request=request,
        reply=reply,
        sessions=columns.sessions,
        packets=saturating_add(columns.fwd_packets, columns.rev_packets),
        bytes=saturating_add(columns.fwd_bytes, columns.rev_bytes),
        service=_service_labels(protocol, dport, columns.dport == EPHEMERAL, is_icmp, icmp_type),
    )


def _service_labels(protocol, dport, dport_ephemeral, is_icmp, icmp_type) -> np.ndarray:
    """`tcp/22`, `udp/eph`, `icmp type 8`, `protocol 47`: labels built once per distinct value."""
    kind = np.where(is_icmp, 1, np.where(np.isin(protocol, PORT_PROTOCOLS), 0, 2))
    value = np.where(is_icmp, icmp_type, np.where(dport_ephemeral, -1, dport))
    key = (kind.astype(np.int64) * 256 + protocol) * 70000 + value + 1
    unique, inverse = np.unique(key, return_inverse=True)
    labels = []
    for code in unique:
        kind_code, rest = divmod(int(code), 256 * 70000)
        number, port = divmod(rest, 70000)
        port -= 1
        name = PROTOCOL_NAMES.get(number, f"protocol {number}")
        if kind_code == 0:
            labels.append(f"{name}/{'eph' if port < 0 else port}")
        elif kind_code == 1:
            labels.append(f"{name} type {port}")
        else:
            labels.append(name)
    return np.array(labels, dtype=object)[inverse.reshape(-1)]


@dataclass(frozen=True)
class Outcome:
    """A policy set's replay: per session whether it gets through and what decided it."""

    gets_through: np.ndarray  # bool
    deciding: np.ndarray  # int64 into labels: the blocking match, else the request's match
    labels: list[dict]  # {device, policy, rule, match}


def replay(policy_set: PolicySet, columns: SessionPackets, device: str | None) -> Outcome:
    intents = compile_all(policy_set)
    if device is not None:
        if device not in intents:
            raise MicrosegError(
                f"device {device!r} enforces no policy (devices: {', '.join(intents)})"
            )
        intents = {device: intents[device]}
    if not intents:
        raise MicrosegError("no device enforces a policy: add devices to a security domain")
    count = len(columns.sessions)
    gets_through = np.ones(count, dtype=bool)
    blocking = np.full(count, -1, dtype=np.int64)
    first_request = np.full(count, -1, dtype=np.int64)
    labels: list[dict] = []
    label_index: dict[tuple, int] = {}
    for intent in intents.values():
        compiled = CompiledDevice(intent)
        for direction, batch in (("request", columns.request), ("reply", columns.reply)):
            evaluation = compiled.evaluate(batch)
            codes, code_rows = np.unique(evaluation.decider_codes, return_inverse=True)
            first_rows = _first_positions(code_rows.reshape(-1), len(codes))
            per_code = []
            for row in first_rows:
                decision = evaluation.decision(int(row))
                key = (decision.device, decision.policy, decision.match)
                if key not in label_index:
                    label_index[key] = len(labels)
                    labels.append(
                        {
                            "device": decision.device,
                            "policy": decision.policy,
                            "rule": decision.rule,
                            "match": decision.match,
                        }
                    )
                per_code.append(label_index[key])
            row_label = np.array(per_code, dtype=np.int64)[code_rows.reshape(-1)]
            dropped = ~evaluation.forwarded
            newly = dropped & (blocking < 0)
            blocking[newly] = row_label[newly]
            gets_through &= ~dropped
            if direction == "request":
                unset = first_request < 0
                first_request[unset] = row_label[unset]
    deciding = np.where(blocking >= 0, blocking, first_request)
    return Outcome(gets_through, deciding, labels)


def _first_positions(groups: np.ndarray, count: int) -> np.ndarray:
    """For each group 0..count-1, the first row that belongs to it."""
    first = np.full(count, len(groups), dtype=np.int64)
    np.minimum.at(first, groups, np.arange(len(groups)))
    return first


def replay_cuts(base: PolicySet, candidate: PolicySet) -> tuple[int, ...]:
    """Where a port's cell can change under either policy: what-if's fold in the session
    engine (`flows.engines.replay_rows`) keeps client ports apart across these."""
    return tuple(sorted({*port_cuts(base), *port_cuts(candidate)}))


def whatif(
    base: PolicySet,
    candidate: PolicySet,
    sessions: pa.Table,
    device: str | None = None,
    where: str = "sessions",
) -> dict:
    """The impact report: newly blocked / newly allowed groups and candidate rule hits.
    `where` names the sessions' source in error messages."""
    columns = session_packets(sessions, where)
    before = replay(base, columns, device)
    after = replay(candidate, columns, device)
    newly_blocked = before.gets_through & ~after.gets_through
    newly_allowed = ~before.gets_through & after.gets_through
    return {
        "sessions": total(columns.sessions),
        "rows": _summary_rows(sessions),
        "newly_blocked": _changes(columns, newly_blocked, after, "blocked by"),
        "newly_allowed": _changes(columns, newly_allowed, before, "was blocked by"),
        "candidate_rule_hits": _hits(columns, after),
    }


def _summary_rows(sessions: pa.Table) -> int:
    """The rows of the session table: what-if's fold in the engine says how many each of
    its rows stands for (`summary_rows`)."""
    if "summary_rows" not in sessions.column_names:
        return sessions.num_rows
    return int(pc.sum(sessions["summary_rows"]).as_py() or 0)


def _changes(columns: SessionPackets, selected: np.ndarray, outcome: Outcome, role: str) -> dict:
    rows = np.flatnonzero(selected)
    service_codes, service_of_row = np.unique(
        columns.service[rows].astype(str), return_inverse=True
    )
    key = outcome.deciding[rows] * len(service_codes) + service_of_row.reshape(-1)
    groups, group_of_row = np.unique(key, return_inverse=True)
    group_of_row = group_of_row.reshape(-1)
    order = np.argsort(group_of_row, kind="stable")
    starts = np.searchsorted(group_of_row[order], np.arange(len(groups)))
    totals = {
        name: group_sums(group_of_row, getattr(columns, name)[rows], len(groups))
        for name in ("sessions", "packets", "bytes")
    }
    result = []
    for position, code in enumerate(groups):
        members = order[starts[position] : starts[position] + EXAMPLES_PER_GROUP]
        members = members[group_of_row[members] == position]
        label = outcome.labels[int(code // len(service_codes))]
        result.append(
            {
                **label,
                "role": role,
                "service": str(service_codes[int(code % len(service_codes))]),
                **{name: saturated(sums[position]) for name, sums in totals.items()},
                "examples": [_example(columns, int(rows[m])) for m in members],
            }
        )
    result.sort(
        key=lambda g: (-g["sessions"], -g["packets"], g["device"], str(g["match"]), g["service"])
    )
    return {
        "sessions": total(columns.sessions[rows]),
        "packets": total(columns.packets[rows]),
        "bytes": total(columns.bytes[rows]),
        "groups": result,
    }


def _example(columns: SessionPackets, row: int) -> dict:
    record = columns.table.slice(row, 1).to_pylist()[0]
    return {name: record.get(name) for name in ("vrf", "protocol", "src", "sport", "dst", "dport")}


def _hits(columns: SessionPackets, outcome: Outcome) -> list[dict]:
    """Sessions and packets per deciding match under the candidate."""
    codes, rows_of = np.unique(outcome.deciding, return_inverse=True)
    rows_of = rows_of.reshape(-1)
    sessions = group_sums(rows_of, columns.sessions, len(codes))
    packets = group_sums(rows_of, columns.packets, len(codes))
    hits = []
    for position, code in enumerate(codes):
        label = outcome.labels[int(code)]
        hits.append(
            {
                **label,
                "sessions": saturated(sessions[position]),
                "packets": saturated(packets[position]),
            }
        )
    hits.sort(key=lambda h: (-h["sessions"], h["device"], str(h["policy"]), str(h["match"])))
    return hits

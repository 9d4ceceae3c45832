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
from pathlib import Path

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
from microseg.flows.engines import SessionEngine, SessionQuery
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


def compiled_devices(policy_set: PolicySet, device: str | None) -> tuple[CompiledDevice, ...]:
    """The devices that replay sessions under a policy set (`device`: only that one)."""
    intents = compile_all(policy_set)
    if device is not None:
        if device not in intents:
            raise MicrosegError(
                f"device {device!r} enforces no policy (devices: {', '.join(intents)})"
            )
        intents = {device: intents[device]}
    if not intents:
        raise MicrosegError("no device enforces a policy: add devices to a security domain")
    return tuple(CompiledDevice(intent) for intent in intents.values())


def replay(policy_set: PolicySet, columns: SessionPackets, device: str | None) -> Outcome:
    return outcome(compiled_devices(policy_set, device), columns)


def outcome(devices: tuple[CompiledDevice, ...], columns: SessionPackets) -> Outcome:
    """Every session's request and reply on every device: whether it gets through, and the
    match that blocks it first (else the first device's match of its request)."""
    count = len(columns.sessions)
    gets_through = np.ones(count, dtype=bool)
    blocking = np.full(count, -1, dtype=np.int64)
    first_request = np.full(count, -1, dtype=np.int64)
    labels: list[dict] = []
    label_index: dict[tuple, int] = {}
    for compiled in devices:
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


# The report's changes: which sessions, and the outcome whose deciding match names them.
CHANGES = {"newly_blocked": "blocked by", "newly_allowed": "was blocked by"}
EXAMPLE_FIELDS = ("vrf", "protocol", "src", "sport", "dst", "dport")
LABEL_FIELDS = ("device", "policy", "rule", "match")


@dataclass(frozen=True)
class Replay:
    """The base and the candidate compiled for one replay (what Spark's executors are sent:
    `evaluate.whatif_spark`)."""

    base: tuple[CompiledDevice, ...]
    candidate: tuple[CompiledDevice, ...]

    @classmethod
    def of(cls, base: PolicySet, candidate: PolicySet, device: str | None = None) -> Replay:
        return cls(compiled_devices(base, device), compiled_devices(candidate, device))

    def changes(self, table: pa.Table, where: str) -> tuple[SessionPackets, dict[str, list]]:
        """The sessions, and per change its groups (`_Group`, members in table order)."""
        columns = session_packets(table, where)
        before, after = outcome(self.base, columns), outcome(self.candidate, columns)
        selected = {
            "newly_blocked": (before.gets_through & ~after.gets_through, after),
            "newly_allowed": (~before.gets_through & after.gets_through, before),
        }
        groups = {
            change: _change_groups(columns, rows, decided)
            for change, (rows, decided) in selected.items()
        }
        groups["candidate_rule_hits"] = _hit_groups(columns, after)
        return columns, groups

    def report(self, table: pa.Table, where: str = "sessions") -> dict:
        """The impact report for a session table (in its order: the examples are its first)."""
        columns, groups = self.changes(table, where)
        return whatif_report(
            total(columns.sessions),
            _summary_rows(table),
            {
                change: [
                    group.report(change, [_example(columns, int(row)) for row in group.members])
                    for group in groups[change]
                ]
                for change in CHANGES
            },
            [group.hit() for group in groups["candidate_rule_hits"]],
        )

    def parts(self, table: pa.Table, positions: np.ndarray, where: str) -> pa.RecordBatch:
        """`report`'s parts for a slice of the session table (PARTS_SCHEMA), whose rows are
        at `positions` (increasing) in the whole: its totals, its groups with their sums and
        first examples, its rule hits. Summing the groups and keeping each one's examples
        at the lowest positions makes the whole's report (`whatif_spark`)."""
        columns, groups = self.changes(table, where)
        records: list[dict] = [
            {"part": "total", "sessions": total(columns.sessions), "rows": _summary_rows(table)}
        ]
        for change in CHANGES:
            for group in groups[change]:
                key = {"part": change, **group.label, "service": group.service}
                records.append({**key, **group.saturated_sums()})
                records += [
                    {
                        **key,
                        "part": f"{change} example",
                        "position": int(positions[row]),
                        **_example(columns, int(row)),
                    }
                    for row in group.members
                ]
        for group in groups["candidate_rule_hits"]:
            records.append({"part": "candidate_rule_hits", **group.label, **group.saturated_sums()})
        return pa.RecordBatch.from_pylist(records, schema=PARTS_SCHEMA)


# `Replay.parts`: one row per total, group, example and rule hit of a slice of the sessions
PARTS_SCHEMA = pa.schema(
    [("part", pa.string())]
    + [(name, pa.string()) for name in (*LABEL_FIELDS, "service")]
    + [(name, pa.int64()) for name in ("sessions", "packets", "bytes", "rows", "position")]
    + [(name, pa.string()) for name in EXAMPLE_FIELDS]
)


@dataclass(frozen=True)
class _Group:
    """Sessions alike in their deciding match (and service): sums and first rows."""

    label: dict
    service: str | None
    sums: dict[str, int]  # exact
    members: np.ndarray  # the first EXAMPLES_PER_GROUP rows, in table order

    def saturated_sums(self) -> dict[str, int]:
        return {name: saturated(value) for name, value in self.sums.items()}

    def report(self, change: str, examples: list[dict]) -> dict:
        return change_group(self.label, change, self.service, self.saturated_sums(), examples)

    def hit(self) -> dict:
        return rule_hit(self.label, self.saturated_sums())


def change_group(label: dict, change: str, service, sums: dict, examples: list[dict]) -> dict:
    """One group of a change as the report lists it."""
    return {
        **{name: label[name] for name in LABEL_FIELDS},
        "role": CHANGES[change],
        "service": service,
        **{name: sums[name] for name in ("sessions", "packets", "bytes")},
        "examples": examples,
    }


def rule_hit(label: dict, sums: dict) -> dict:
    """One deciding match's hits under the candidate as the report lists them."""
    return {
        **{name: label[name] for name in LABEL_FIELDS},
        "sessions": sums["sessions"],
        "packets": sums["packets"],
    }


def whatif_report(sessions: int, rows: int, changes: dict[str, list], hits: list) -> dict:
    """The report from its parts, in its one order: the changes' groups by sessions, packets,
    device, match, service and policy; the hits by sessions, device, policy and match."""
    report: dict = {"sessions": sessions, "rows": rows}
    for change, groups in changes.items():
        groups = sorted(
            groups,
            key=lambda g: (
                -g["sessions"],
                -g["packets"],
                g["device"],
                str(g["match"]),
                g["service"],
                str(g["policy"]),  # two VRFs' policies on one device: the same default match
            ),
        )
        report[change] = {
            **{
                name: saturated(sum(g[name] for g in groups))
                for name in ("sessions", "packets", "bytes")
            },
            "groups": groups,
        }
    report["candidate_rule_hits"] = sorted(
        hits, key=lambda h: (-h["sessions"], h["device"], str(h["policy"]), str(h["match"]))
    )
    return report


def whatif(
    base: PolicySet,
    candidate: PolicySet,
    sessions: pa.Table,
    device: str | None = None,
    where: str = "sessions",
) -> dict:
    """The impact report: newly blocked / newly allowed groups and candidate rule hits.
    `where` names the sessions' source in error messages."""
    return Replay.of(base, candidate, device).report(sessions, where)


def whatif_sessions(
    base: PolicySet,
    candidate: PolicySet,
    source: str,
    engine: SessionEngine,
    device: str | None = None,
) -> dict:
    """The report for a session file or flow store, read by `engine` with what-if's fold.
    On Spark a store is replayed by the executors in one pass (`whatif_spark`); otherwise
    the fold comes to this process. Both policies are compiled before anything is read."""
    from microseg.flows.flowstore import read_sessions, read_store
    from microseg.flows.spark import SparkEngine

    replay = Replay.of(base, candidate, device)
    cuts = replay_cuts(base, candidate)
    if isinstance(engine, SparkEngine) and Path(source).is_dir():
        from microseg.evaluate.whatif_spark import whatif_on_spark

        spark, query = engine, SessionQuery(replay_cuts=cuts)
        return read_store(
            Path(source),
            spark,
            lambda segments: whatif_on_spark(spark, segments, query, replay, source),
        )
    return replay.report(read_sessions(source, engine=engine, replay_cuts=cuts), source)


def _summary_rows(sessions: pa.Table) -> int:
    """The rows of the session table: what-if's fold in the engine says how many each of
    its rows stands for (`summary_rows`)."""
    if "summary_rows" not in sessions.column_names:
        return sessions.num_rows
    return int(pc.sum(sessions["summary_rows"]).as_py() or 0)


def _change_groups(columns: SessionPackets, selected: np.ndarray, decided: Outcome) -> list:
    """The selected sessions grouped by the match that decided them and their service."""
    rows = np.flatnonzero(selected)
    service_codes, service_of_row = np.unique(
        columns.service[rows].astype(str), return_inverse=True
    )
    key = decided.deciding[rows] * len(service_codes) + service_of_row.reshape(-1)
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
        result.append(
            _Group(
                decided.labels[int(code // len(service_codes))],
                str(service_codes[int(code % len(service_codes))]),
                {name: sums[position] for name, sums in totals.items()},
                rows[members],
            )
        )
    return result


def _example(columns: SessionPackets, row: int) -> dict:
    record = columns.table.slice(row, 1).to_pylist()[0]
    return {name: record.get(name) for name in EXAMPLE_FIELDS}


def _hit_groups(columns: SessionPackets, decided: Outcome) -> list:
    """Sessions and packets per deciding match under the candidate."""
    codes, rows_of = np.unique(decided.deciding, return_inverse=True)
    rows_of = rows_of.reshape(-1)
    sessions = group_sums(rows_of, columns.sessions, len(codes))
    packets = group_sums(rows_of, columns.packets, len(codes))
    return [
        _Group(
            decided.labels[int(code)],
            None,
            {"sessions": sessions[position], "packets": packets[position]},
            np.zeros(0, dtype=np.int64),
        )
        for position, code in enumerate(codes)
    ]

"""The Policy Builder's group-by on Spark's executors: what `recommend --engine spark` does
with the sessions the per-session step keeps (`recommend_spark`: the evidence and the
unanswered, classified, in the view `builder_parts`), so that they stay on the cluster.

The driver runs what needs all of them at once and is small, the executors what is per
session, with the code DuckDB's path runs (`builder.recommend`, `builder.quality`):

1. the endpoint map (`map_endpoints`) from the addresses the evidence uses, in their order
   of first appearance; the outside addresses' roles (`RoleSource`) come from one pass over
   the evidence with the inside addresses' endpoints broadcast;
2. with the map broadcast, each task makes the group-by's parts of its rows (`_triples`: per
   (source endpoint, destination endpoint, service) triple its sums, times, kinds of
   evidence and first examples; its distinct host combinations and addresses; what decides
   its sessions today), its blocked attempts (per client, server and service), its
   unexplained sessions and sums; Spark merges them per triple (sums saturating as the
   store does, first 3 examples in the session table's order, distinct counts);
3. the driver merges the triples into rules (`rules_from_triples`, DuckDB's code); the
   distinct addresses each rule saw per group it uses whole (its widenings) are counted by
   Spark over the parts;
4. the proposals placed, the proposed policy is compiled and broadcast, and a second pass
   replays each task's evidence under it (`quality.measure_rows`): coverage and the devices
   that do not compile.

Only per-triple, per-rule and per-attempt rows come back, and the outside addresses' roles.
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa

from microseg.builder.endpoints import (
    GROUP_KINDS,
    UNMAPPED,
    Endpoint,
    EndpointMap,
    Role,
    category_groups,
    grouped_roles,
    map_endpoints,
)
from microseg.builder.proposal import (
    BlockedAttempt,
    BuilderOptions,
    Recommendation,
    SessionExample,
    Unexplained,
)
from microseg.builder.quality import (
    DecidedToday,
    Measured,
    decided_today,
    measure_rows,
    session_positions,
    verify,
)
from microseg.builder.recommend import (
    EXAMPLES_PER_RULE,
    ClassifiedRows,
    Leftovers,
    Reported,
    Triples,
    _triples,
    answered,
    attempt_groups,
    blocked_order,
    domain_segments,
    drafted,
    example,
    factorize,
    first_rows,
    reply_unknown,
    rules_from_triples,
)
from microseg.builder.services import ServiceChoice, choose_services
from microseg.builder.times import iso_time
from microseg.compile import DeviceIntent
from microseg.flows.engines import SPARK, saturating_sum
from microseg.flows.session_columns import AddressTable
from microseg.flows.spark import arrow_task, null_filled, spark_ddl
from microseg.flows.sums import saturated, total
from microseg.model import MicrosegError, PolicySet

_KINDS = 6  # len(services.EVIDENCE)
GROUP_SCHEMA = pa.schema(
    [
        ("part", pa.string()),
        ("key", pa.int64()),
        ("position", pa.int64()),
        ("first_seen", pa.int64()),
        ("last_seen", pa.int64()),
        ("sessions", pa.int64()),
        ("packets", pa.int64()),
        ("bytes", pa.int64()),
        *((f"kind{k}", pa.int64()) for k in range(_KINDS)),
        ("example", pa.string()),  # a SessionExample as JSON
        ("client", pa.string()),  # addresses as Python spells them (str of the parsed one)
        ("server", pa.string()),
        ("endpoint", pa.int64()),
        ("rule", pa.int64()),
        ("name", pa.string()),
        ("verdict", pa.string()),
        ("stopped", pa.string()),
        ("error", pa.string()),
    ]
)
GROUP_DDL = spark_ddl(GROUP_SCHEMA)

# Rows: the per-session step's (recommend_spark) -> the rows as the builder reads them
RowReader = Callable[[pa.Table, str], ClassifiedRows]


@dataclass(frozen=True)
class GroupStep:
    """What every task of the group-by needs, broadcast once."""

    policy_set: PolicySet
    target: str | None
    categories: tuple[str, ...]
    read: RowReader
    choice_of: dict[int, int]  # protocol * 65536 + server port -> index into the choices
    endpoints: list[Endpoint]
    # address (str) -> endpoint, for the mapped ones the driver saw: those in a category
    # group never reach it, each task maps them (`category_groups`)
    endpoint_of: dict[str, int]
    shape: tuple[int, int]

    def _state(self, table: pa.Table, where: str):
        rows = self.read(table, where)
        columns, side = rows.sessions, rows.side
        texts = np.array([str(a) for a in columns.addresses.addresses], dtype=object)
        of_address = np.array(
            [self.endpoint_of.get(t, UNMAPPED) for t in texts.tolist()], dtype=np.int32
        )
        if self.categories:
            # the category groups are the map's first endpoints, in the policy's order
            _, best = category_groups(self.policy_set, columns.addresses, self.categories)
            of_address = np.where(of_address == UNMAPPED, best, of_address).astype(np.int32)
        keys = columns.protocol.astype(np.int64) * 65536 + side.server_port
        distinct, inverse = factorize(keys)
        # -1: a service only unanswered sessions use (the blocked attempts name their own)
        service = np.array([self.choice_of.get(k, -1) for k in distinct.tolist()], dtype=np.int64)
        service = service[inverse] if len(keys) else np.zeros(0, dtype=np.int64)
        mapped = (of_address[side.client] != UNMAPPED) & (of_address[side.server] != UNMAPPED)
        return rows, texts, EndpointMap(self.endpoints, of_address), service, mapped

    def parts(self, table: pa.Table, positions: np.ndarray, where: str) -> pa.Table:
        """The group-by's parts (GROUP_SCHEMA) of a task's rows."""
        rows, texts, endpoints, service, mapped = self._state(table, where)
        columns = rows.sessions
        use = rows.evidence & mapped
        found = [
            _shaped(
                {
                    "part": ["evidence", "unknown reply"],
                    "sessions": [
                        total(columns.sessions[use]),
                        total(columns.sessions[use & reply_unknown(columns)]),
                    ],
                }
            ),
            self._triple_parts(rows, texts, endpoints, service, use, positions),
            _blocked_parts(rows, texts, self.policy_set, positions),
            _unexplained_parts(rows, rows.evidence & ~mapped, positions),
        ]
        return pa.concat_tables([part for part in found if part.num_rows])

    def _triple_parts(
        self,
        rows: ClassifiedRows,
        texts: np.ndarray,
        endpoints: EndpointMap,
        service: np.ndarray,
        use: np.ndarray,
        positions: np.ndarray,
    ) -> pa.Table:
        columns, side = rows.sessions, rows.side
        at = np.flatnonzero(use)
        if not len(at):
            return GROUP_SCHEMA.empty_table()
        width, services = self.shape
        source = endpoints.of_address[side.client[at]].astype(np.int64)
        destination = endpoints.of_address[side.server[at]].astype(np.int64)
        keys, triple_of_row = factorize((source * width + destination) * services + service[at])
        triples = _triples(
            columns, side, at, keys, triple_of_row, service[at], endpoints, self.shape
        )
        decided = decided_today(
            self.target,
            self.policy_set,
            rows.today.take(session_positions(len(columns), at)),
            triple_of_row,
            len(keys),
            columns.sessions[at],
        )
        key_list = keys.tolist()
        parts = [
            _shaped(
                {
                    "part": ["triple"] * len(keys),
                    "key": key_list,
                    "sessions": [saturated(n) for n in triples.sessions],
                    "packets": [saturated(n) for n in triples.packets],
                    "bytes": [saturated(n) for n in triples.bytes],
                    "first_seen": triples.first_seen.tolist(),
                    "last_seen": triples.last_seen.tolist(),
                    **{
                        f"kind{k}": [saturated(counts[k]) for counts in triples.evidence_counts]
                        for k in range(_KINDS)
                    },
                }
            )
        ]
        shown = [
            (key, row)
            for key, first in zip(key_list, first_rows(columns, at, triple_of_row), strict=True)
            for row in first
        ]
        parts.append(
            _shaped(
                {
                    "part": ["example"] * len(shown),
                    "key": [key for key, _ in shown],
                    "first_seen": [int(columns.first_seen[row]) for _, row in shown],
                    "position": [int(positions[row]) for _, row in shown],
                    "example": [example_json(example(columns, side, row)) for _, row in shown],
                }
            )
        )
        hosts = len(texts)
        pairs = np.unique(
            (triple_of_row * hosts + side.client[at]) * hosts + side.server[at].astype(np.int64)
        )
        parts.append(
            _shaped(
                {
                    "part": ["host"] * len(pairs),
                    "key": keys[pairs // hosts // hosts].tolist(),
                    "client": texts[(pairs // hosts) % hosts].tolist(),
                    "server": texts[pairs % hosts].tolist(),
                }
            )
        )
        wide = np.array([e.kind in GROUP_KINDS for e in self.endpoints] or [False])
        ends = np.unique(
            np.concatenate(
                (triple_of_row * hosts + side.client[at], triple_of_row * hosts + side.server[at])
            )
        )
        address = ends % hosts
        endpoint = endpoints.of_address[address]
        ends, address, endpoint = (
            ends[wide[endpoint]],
            address[wide[endpoint]],
            endpoint[wide[endpoint]],
        )
        parts.append(
            _shaped(
                {
                    "part": ["seen"] * len(ends),
                    "key": keys[ends // hosts].tolist(),
                    "client": texts[address].tolist(),
                    "endpoint": endpoint.astype(np.int64).tolist(),
                }
            )
        )
        deciding = [
            (key, rule)
            for key, rules in zip(key_list, decided.deciding, strict=True)
            for rule in sorted(rules)
        ]
        parts.append(
            _shaped(
                {
                    "part": ["deciding"] * len(deciding),
                    "key": [key for key, _ in deciding],
                    "rule": [rule for _, rule in deciding],
                }
            )
        )
        current = [
            (key, name, verdict, sessions)
            for key, counts in zip(key_list, decided.current, strict=True)
            for (name, verdict), sessions in counts.items()
        ]
        parts.append(
            _shaped(
                {
                    "part": ["current"] * len(current),
                    "key": [c[0] for c in current],
                    "name": [c[1] for c in current],
                    "verdict": [c[2] for c in current],
                    "sessions": [saturated(c[3]) for c in current],
                }
            )
        )
        return pa.concat_tables([p for p in parts if p.num_rows])

    def roles_parts(
        self, table: pa.Table, positions: np.ndarray, where: str, outside: frozenset[str]
    ) -> pa.Table:
        """Per outside address of the task's evidence, its (role, peer endpoint, service)
        sightings with an inside address (`Peers.roles`), distinct."""
        rows, texts, endpoints, service, _ = self._state(table, where)
        side, evidence = rows.side, rows.evidence
        is_outside = np.array([t in outside for t in texts.tolist()] or [False])
        found = set()
        for role, this, other in ((0, side.server, side.client), (1, side.client, side.server)):
            at = evidence & is_outside[this] & ~is_outside[other]
            for address, peer, serves in zip(
                texts[this[at]].tolist(),
                endpoints.of_address[other[at]].tolist(),
                service[at].tolist(),
                strict=True,
            ):
                found.add((address, role, peer, serves))
        ordered = sorted(found)
        return _shaped(
            {
                "part": ["role"] * len(ordered),
                "client": [f[0] for f in ordered],
                "rule": [f[1] for f in ordered],
                "endpoint": [f[2] for f in ordered],
                "key": [f[3] for f in ordered],
            }
        )

    def measured_parts(
        self,
        table: pa.Table,
        positions: np.ndarray,
        where: str,
        proposed: tuple[PolicySet, dict[str, DeviceIntent], dict[str, str]],
    ) -> pa.Table:
        """The task's evidence replayed under the proposed policy (`quality.Measure`)."""
        rows, _, _, _, mapped = self._state(table, where)
        at = np.flatnonzero(rows.evidence & mapped)
        measured = measure_rows(rows.sessions, rows.replay, at)(*proposed)
        devices = sorted(measured.unverified.items())
        return _shaped(
            {
                "part": ["covered", "unverified sessions"] + ["unverified"] * len(devices),
                "sessions": [saturated(measured.covered), saturated(measured.unverified_sessions)]
                + [saturated(n) for _, n in devices],
                "name": [None, None] + [name for name, _ in devices],
            }
        )


def _shaped(columns: dict[str, list]) -> pa.Table:
    if not columns["part"]:
        return GROUP_SCHEMA.empty_table()
    return null_filled(GROUP_SCHEMA, columns)


def example_json(shown: SessionExample) -> str:
    """An example as a part carries it to the driver."""
    return json.dumps(asdict(shown), separators=(",", ":"))


def example_from_json(text: str) -> SessionExample:
    return SessionExample(**json.loads(text))


def _blocked_parts(
    rows: ClassifiedRows, texts: np.ndarray, policy_set: PolicySet, positions: np.ndarray
) -> pa.Table:
    """Per (client, server, service) of the task's unanswered sessions: its sessions, first
    and last seen, and its earliest session (in the table's order) with what stops it. The
    service is keyed by protocol * 65536 + server port and named here: `choose_services`
    names a (protocol, port) the same whatever other ports it is given (proposed names
    differ per port, and a `-N` suffix only avoids the policy's own names), so the driver
    needs no list of every port the unanswered sessions tried."""
    columns, side = rows.sessions, rows.side
    at = np.flatnonzero(~answered(columns))
    if not len(at):
        return GROUP_SCHEMA.empty_table()
    service_keys, service = factorize(
        columns.protocol[at].astype(np.int64) * 65536 + side.server_port[at]
    )
    choices = choose_services(
        [divmod(int(k), 65536) for k in service_keys.tolist()],
        policy_set,
        {s.name for s in policy_set.services},
    )
    groups = attempt_groups(columns, side, at, service)
    codes, stoppers = rows.stopped
    return _shaped(
        {
            "part": ["blocked"] * len(groups.sessions),
            "client": texts[groups.client].tolist(),
            "server": texts[groups.server].tolist(),
            "key": service_keys[groups.service].tolist(),
            "name": [choices[i].name for i in groups.service.tolist()],
            "sessions": [saturated(n) for n in groups.sessions],
            "first_seen": groups.first_seen.tolist(),
            "last_seen": groups.last_seen.tolist(),
            "position": positions[groups.earliest].tolist(),
            "stopped": [stoppers[c] if c >= 0 else None for c in codes[groups.earliest].tolist()],
        }
    )


def _unexplained_parts(
    rows: ClassifiedRows, selected: np.ndarray, positions: np.ndarray
) -> pa.Table:
    """The task's sessions no endpoint explains: their sum and their first examples."""
    columns = rows.sessions
    at = np.flatnonzero(selected)
    if not len(at):
        return GROUP_SCHEMA.empty_table()
    first = at[np.argsort(columns.first_seen[at], kind="stable")][:EXAMPLES_PER_RULE].tolist()
    return _shaped(
        {
            "part": ["unexplained"] + ["unexplained example"] * len(first),
            "sessions": [total(columns.sessions[at])] + [None] * len(first),
            "first_seen": [None] + [int(columns.first_seen[r]) for r in first],
            "position": [None] + [int(positions[r]) for r in first],
            "example": [None] + [example_json(example(columns, rows.side, r)) for r in first],
        }
    )


class _Passes:
    """The passes over the kept rows (`builder_parts`, part 'row') and their queries."""

    def __init__(
        self, session: Any, to_driver: Callable[[Any, str], pa.Table], where: str, rows_sql: str
    ):
        self.session, self.to_driver, self.where, self.rows_sql = (
            session,
            to_driver,
            where,
            rows_sql,
        )

    def run(
        self,
        task: Callable[[pa.Table, np.ndarray, str], pa.Table],
        input_schema: pa.Schema,
        view: str,
    ) -> None:
        """The task over the kept rows, its parts computed once (a local checkpoint: the
        error check and the queries read them) into the view `view`."""
        # each task's rows in the table's order: its first examples are the whole's
        frame = self.session.sql(self.rows_sql).sortWithinPartitions("_position")
        parts = frame.mapInArrow(
            arrow_task(task, self.where, input_schema, GROUP_SCHEMA), GROUP_DDL
        ).localCheckpoint(eager=True)
        parts.createOrReplaceTempView(view)

    def query(self, sql: str, what: str) -> pa.Table:
        return self.to_driver(self.session.sql(sql), what)

    def check(self, view: str) -> None:
        errors = self.query(f"SELECT position, error FROM {view} WHERE part = 'error'", "errors")
        if errors.num_rows:
            first = int(np.argmin(errors["position"].to_numpy()))
            raise MicrosegError(errors["error"][first].as_py())


class _SparkRoles:
    """`RoleSource` over the executors: one pass over the evidence, the inside addresses'
    endpoints broadcast."""

    def __init__(
        self,
        passes: _Passes,
        step: GroupStep,
        addresses: AddressTable,
        schema: pa.Schema,
        choices: list[ServiceChoice],
    ):
        self.passes, self.step, self.addresses, self.schema = passes, step, addresses, schema
        self.service_names = tuple(c.name for c in choices)

    def roles(
        self, outside: np.ndarray, choice: np.ndarray, endpoints: list[Endpoint]
    ) -> dict[tuple[int, ...], Role]:
        texts = [str(a) for a in self.addresses.addresses]
        inside = {texts[i]: int(choice[i]) for i in np.flatnonzero(choice >= 0).tolist()}
        step = replace(self.step, endpoints=list(endpoints), endpoint_of=inside)
        outside_texts = frozenset(texts[i] for i in outside.tolist())
        shared = self.passes.session.sparkContext.broadcast((step, outside_texts))
        try:

            def task(table: pa.Table, positions: np.ndarray, where: str) -> pa.Table:
                found_step, found_outside = shared.value
                return found_step.roles_parts(table, positions, where, found_outside)

            self.passes.run(task, self.schema, "builder_roles")
            self.passes.check("builder_roles")
            found = self.passes.query(
                "SELECT DISTINCT client, rule, endpoint, key FROM builder_roles WHERE part = 'role'",
                "roles",
            )
        finally:
            shared.destroy()
            self.passes.session.catalog.dropTempView("builder_roles")
        index = {text: i for i, text in enumerate(texts)}
        return grouped_roles(
            np.array([index[t] for t in found["client"].to_pylist()], dtype=np.int64),
            found["endpoint"].to_numpy(zero_copy_only=False).astype(np.int64),
            found["key"].to_numpy(zero_copy_only=False).astype(np.int64),
            found["rule"].to_numpy(zero_copy_only=False).astype(np.int64),
            len(endpoints),
            len(self.service_names),
        )


def group_on_spark(
    session: Any,
    to_driver: Callable[[Any, str], pa.Table],
    policy_set: PolicySet,
    options: BuilderOptions,
    target: str | None,
    reported: Reported,
    read: RowReader,
    rows_sql: str,
    row_schema: pa.Schema,
    where: str,
) -> Recommendation:
    """The recommendation from the kept rows in `builder_parts`, grouped on the executors.
    `rows_sql` selects them as `read` takes them (`row_schema`, with `_position`)."""
    passes = _Passes(session, to_driver, where, rows_sql)
    # 1. the evidence's addresses outside the category groups in order of first
    # appearance, the evidence's services
    order = session.sql(
        """SELECT address, min(src_position) AS src_position, min(dst_position) AS dst_position
        FROM builder_parts WHERE part = 'address' AND address IN (
            SELECT src FROM builder_parts WHERE part = 'row' AND evidence
            UNION SELECT dst FROM builder_parts WHERE part = 'row' AND evidence)
        GROUP BY address"""
    )
    if options.categories:
        order = order.mapInArrow(_outside_categories(policy_set, options.categories), order.schema)
    addresses = _in_order(to_driver(order, "addresses"))
    services = passes.query(
        """SELECT DISTINCT protocol_number, server_port FROM builder_parts
        WHERE part = 'row' AND evidence""",
        "services",
    )
    keys = sorted(
        int(p) * 65536 + int(s)
        for p, s in zip(
            services["protocol_number"].to_pylist(),
            services["server_port"].to_pylist(),
            strict=True,
        )
    )
    choices = choose_services(
        [divmod(k, 65536) for k in keys], policy_set, {s.name for s in policy_set.services}
    )
    step = GroupStep(
        policy_set,
        target,
        options.categories,
        read,
        {k: i for i, k in enumerate(keys)},
        [],
        {},
        (1, 1),
    )
    segments = domain_segments(policy_set, target)
    endpoints = map_endpoints(
        policy_set,
        addresses,
        np.ones(len(addresses), dtype=bool),
        options.categories,
        options.min_share,
        segments,
        _SparkRoles(passes, step, addresses, row_schema, choices),
    )
    shape = (max(len(endpoints.endpoints), 1), max(len(choices), 1))
    texts = [str(a) for a in addresses.addresses]
    step = replace(
        step,
        endpoints=endpoints.endpoints,
        endpoint_of={
            texts[i]: int(endpoints.of_address[i])
            for i in np.flatnonzero(endpoints.of_address != UNMAPPED).tolist()
        },
        shape=shape,
    )
    # 2. the parts per task, merged per triple
    shared = session.sparkContext.broadcast(step)
    try:

        def task(table: pa.Table, positions: np.ndarray, where: str) -> pa.Table:
            return shared.value.parts(table, positions, where)

        passes.run(task, row_schema, "builder_groups")
    finally:
        shared.destroy()
    by_rule = _ByRule(passes)
    try:
        passes.check("builder_groups")
        triples = _merged_triples(passes, by_rule)
        # 3. the rules, their examples and widenings by Spark
        rules, proposal_of_triple = rules_from_triples(
            policy_set, triples, choices, endpoints, shape, by_rule.seen_counts
        )
        decided = by_rule.decided(proposal_of_triple)
        recommendation = drafted(
            options, target, endpoints, choices, rules, _leftovers(passes, reported)
        )
        recommendation = replace(
            recommendation,
            already_allowed=reported.already_allowed,
            blocked_by_rules=reported.blocked_by_rules,
        )
        # 4. placed, then replayed under the proposals on the executors
        return verify(
            policy_set,
            recommendation,
            decided,
            _measure(passes, step, row_schema),
            options.include_blocked,
        )
    finally:
        by_rule.drop()
        session.catalog.dropTempView("builder_groups")


def _outside_categories(
    policy_set: PolicySet, categories: tuple[str, ...]
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """A mapInArrow function keeping the addresses in no category group: only those need
    the driver (their endpoints depend on their order and on each other: host groups,
    outside groups, min-share); a category group depends on the address alone."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            texts = batch.column("address").to_pylist()
            parsed = AddressTable.of([ipaddress.ip_address(t.strip(' "\t')) for t in texts])
            _, best = category_groups(policy_set, parsed, categories)
            yield batch.filter(pa.array(best < 0))

    return run


def _in_order(order: pa.Table) -> AddressTable:
    """The addresses numbered as the builder numbers them in the whole fold
    (`session_columns`): those seen as `src` first, by their first such row, then the others
    by their first row as `dst`."""
    first: dict[Any, tuple[int, int]] = {}
    for text, src, dst in zip(
        order["address"].to_pylist(),
        order["src_position"].to_pylist(),
        order["dst_position"].to_pylist(),
        strict=True,
    ):
        address = ipaddress.ip_address(text.strip(' "\t'))
        key = (0, src) if src is not None else (1, dst)
        first[address] = min(first.get(address, key), key)
    return AddressTable.of(sorted(first, key=first.__getitem__))


def _merged_triples(passes: _Passes, by_rule: _ByRule) -> Triples:
    """The triples' parts merged per triple by Spark: sums saturating, first and last seen,
    distinct host combinations."""
    sums = ", ".join(
        saturating_sum(name, SPARK, name)
        for name in ("sessions", "packets", "bytes", *(f"kind{k}" for k in range(_KINDS)))
    )
    found = passes.query(
        f"""SELECT t.*, coalesce(h.hosts, 0) AS hosts FROM (
            SELECT key, {sums}, min(first_seen) AS first_seen, max(last_seen) AS last_seen
            FROM builder_groups WHERE part = 'triple' GROUP BY key) AS t
        LEFT JOIN (
            SELECT key, count(DISTINCT client, server) AS hosts
            FROM builder_groups WHERE part = 'host' GROUP BY key) AS h ON t.key = h.key
        ORDER BY t.key""",
        "triples",
    )
    keys = found["key"].to_numpy(zero_copy_only=False).astype(np.int64)
    by_rule.keys = keys
    kinds = [found[f"kind{k}"].to_pylist() for k in range(_KINDS)]
    return Triples(
        keys=keys,
        sessions=found["sessions"].to_pylist(),
        packets=found["packets"].to_pylist(),
        bytes=found["bytes"].to_pylist(),
        first_seen=found["first_seen"].to_numpy(zero_copy_only=False).astype(np.int64),
        last_seen=found["last_seen"].to_numpy(zero_copy_only=False).astype(np.int64),
        evidence_counts=[[kinds[k][t] for k in range(_KINDS)] for t in range(len(keys))],
        host_combinations=found["hosts"].to_numpy(zero_copy_only=False).astype(np.int64),
        first_examples=by_rule.first_examples,
    )


class _ByRule:
    """Queries per rule over the triples' parts, joined with the rules' triples (the view
    `builder_rule_triples`: each rule, numbered in `rules_from_triples`' merge order, with
    its triples' keys): only per-rule rows come back."""

    VIEW = "builder_rule_triples"

    def __init__(self, passes: _Passes):
        self.passes = passes
        self.keys = np.zeros(0, dtype=np.int64)
        self.rules: list[list[int]] | None = None

    def _register(self, rules: list[list[int]]) -> None:
        if self.rules is not None:
            return
        self.rules = rules
        pairs = [
            (rule, int(self.keys[p])) for rule, positions in enumerate(rules) for p in positions
        ]
        frame = self.passes.session.createDataFrame(pairs or [(0, -1)], "rule BIGINT, key BIGINT")
        frame.createOrReplaceTempView(self.VIEW)

    def drop(self) -> None:
        if self.rules is not None:
            self.passes.session.catalog.dropTempView(self.VIEW)

    def first_examples(self, rules: list[list[int]]) -> list[tuple[SessionExample, ...]]:
        """`Triples.first_examples`: the first 3 of each rule's triples' first examples."""
        self._register(rules)
        found: list[list[SessionExample]] = [[] for _ in rules]
        for row in self.passes.query(
            f"""SELECT rule, example FROM (
                SELECT m.rule, s.first_seen, s.position, s.example, row_number() OVER (
                    PARTITION BY m.rule ORDER BY s.first_seen, s.position) AS r
                FROM builder_groups s JOIN {self.VIEW} m ON s.key = m.key
                WHERE s.part = 'example') AS ranked
            WHERE r <= {EXAMPLES_PER_RULE} ORDER BY rule, first_seen, position""",
            "examples",
        ).to_pylist():
            found[row["rule"]].append(example_from_json(row["example"]))
        return [tuple(shown) for shown in found]

    def seen_counts(self, wanted: list[tuple[list[int], list[int]]]) -> list[dict[int, int]]:
        """`SeenCounts`: per rule and group it uses whole, the distinct addresses of its
        triples' parts ('seen')."""
        self._register([positions for _, positions in wanted])
        found: list[dict[int, int]] = [{} for _ in wanted]
        if not any(used for used, _ in wanted):
            return found
        for row in self.passes.query(
            f"""SELECT m.rule, s.endpoint, count(DISTINCT s.client) AS seen
            FROM builder_groups s JOIN {self.VIEW} m ON s.key = m.key
            WHERE s.part = 'seen' GROUP BY m.rule, s.endpoint""",
            "seen",
        ).to_pylist():
            if row["endpoint"] in wanted[row["rule"]][0]:
                found[row["rule"]][int(row["endpoint"])] = int(row["seen"])
        return found

    def decided(self, proposal_of_triple: np.ndarray) -> DecidedToday:
        """What decides each rule's sessions today (`DecidedToday`, the rules numbered as
        `rules_from_triples` returns them)."""
        rules = self.rules or []
        final = [int(proposal_of_triple[positions[0]]) for positions in rules]
        deciding: list[set[int]] = [set() for _ in rules]
        for row in self.passes.query(
            f"""SELECT DISTINCT m.rule, s.rule AS position
            FROM builder_groups s JOIN {self.VIEW} m ON s.key = m.key
            WHERE s.part = 'deciding'""",
            "deciding",
        ).to_pylist():
            deciding[final[row["rule"]]].add(int(row["position"]))
        current: list[Counter] = [Counter() for _ in rules]
        for row in self.passes.query(
            f"""SELECT m.rule, s.name, s.verdict,
                   {saturating_sum("s.sessions", SPARK, "sessions")}
            FROM builder_groups s JOIN {self.VIEW} m ON s.key = m.key
            WHERE s.part = 'current' GROUP BY m.rule, s.name, s.verdict""",
            "current",
        ).to_pylist():
            current[final[row["rule"]]][(row["name"] or None, row["verdict"])] = int(
                row["sessions"]
            )
        return DecidedToday(deciding, current)


def _leftovers(passes: _Passes, reported: Reported) -> Leftovers:
    sums = passes.query(
        f"""SELECT part, {saturating_sum("sessions", SPARK, "sessions")} FROM builder_groups
        WHERE part IN ('evidence', 'unknown reply', 'unexplained') GROUP BY part""",
        "sums",
    ).to_pylist()
    by_part = {row["part"]: int(row["sessions"] or 0) for row in sums}
    blocked = [
        BlockedAttempt(
            source=row["client"],
            destination=row["server"],
            service=row["name"],
            sessions=int(row["sessions"]),
            first_seen=iso_time(int(row["first_seen"])),
            last_seen=iso_time(int(row["last_seen"])),
            stopped_by=row["stopped"],
        )
        for row in passes.query(
            f"""SELECT client, server, key, {saturating_sum("sessions", SPARK, "sessions")},
                   min(first_seen) AS first_seen, max(last_seen) AS last_seen,
                   min_by(stopped, position) AS stopped, min(name) AS name
            FROM builder_groups WHERE part = 'blocked' GROUP BY client, server, key""",
            "blocked",
        ).to_pylist()
    ]
    unexplained = None
    if "unexplained" in by_part:
        shown = passes.query(
            f"""SELECT example FROM builder_groups WHERE part = 'unexplained example'
            ORDER BY first_seen, position LIMIT {EXAMPLES_PER_RULE}""",
            "unexplained",
        )
        unexplained = Unexplained(
            sessions=by_part["unexplained"],
            examples=tuple(example_from_json(text) for text in shown["example"].to_pylist()),
        )
    return Leftovers(
        blocked_order(blocked),
        unexplained,
        evidence_sessions=by_part.get("evidence", 0),
        unknown_reply=by_part.get("unknown reply", 0),
        scoped_sessions=reported.scoped_sessions,
    )


def _measure(passes: _Passes, step: GroupStep, row_schema: pa.Schema):
    """`quality.Measure` by a pass over the executors' evidence."""

    def measure(
        proposed: PolicySet, after: dict[str, DeviceIntent], failed: dict[str, str]
    ) -> Measured:
        shared = passes.session.sparkContext.broadcast((step, (proposed, after, failed)))
        try:

            def task(table: pa.Table, positions: np.ndarray, where: str) -> pa.Table:
                found_step, replayed = shared.value
                return found_step.measured_parts(table, positions, where, replayed)

            passes.run(task, row_schema, "builder_measured")
            passes.check("builder_measured")
            found = passes.query(
                f"""SELECT part, name, {saturating_sum("sessions", SPARK, "sessions")}
                FROM builder_measured WHERE part <> 'error' GROUP BY part, name""",
                "measured",
            ).to_pylist()
        finally:
            shared.destroy()
            passes.session.catalog.dropTempView("builder_measured")
        by_part = {(row["part"], row["name"]): int(row["sessions"]) for row in found}
        return Measured(
            covered=by_part.get(("covered", None), 0),
            unverified={name: n for (part, name), n in by_part.items() if part == "unverified"},
            unverified_sessions=by_part.get(("unverified sessions", None), 0),
        )

    return measure

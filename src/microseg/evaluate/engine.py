"""First-match evaluation of packet columns against a DeviceIntent, EOS semantics.

EOS traffic policies are stateless and ordered: the first match whose every condition holds
decides, and a packet no match takes hits the implicit `ipv4-all-default` /
`ipv6-all-default` match, which forwards (EOS "Traffic Policies" configuration guide) unless
the policy's `default_action` is `drop` (rendered as that match's actions). A packet whose VRF
has no policy is forwarded.

How it is vectorised: a match with k service field-sets is k conjunctive *terms* (protocol,
source ports, destination ports and ICMP types belong together inside one field-set). For
every header dimension (source cell, destination cell, protocol, source-port cell,
destination-port cell, ICMP type) a bit table says which terms accept each value; term t is
bit t%64 of word t//64. A packet's candidate terms are the AND of its six rows; the deciding
term is the lowest set bit of the first non-zero word. Tables are row-major, so a chunk of
packets costs three row gathers, two ANDs and an argmax: no per-packet Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from microseg.compile.intent import DeviceIntent, Match, PolicyIntent, ServiceFieldSet
from microseg.evaluate.cells import AddressCells, address_cells, port_cells
from microseg.evaluate.packets import NO_ICMP_TYPE, PacketBatch

VERDICTS = ("forward", "drop", "redirect")
VERDICT_CODES = {name: code for code, name in enumerate(VERDICTS)}
DEFAULT_MATCH = {4: "ipv4-all-default", 6: "ipv6-all-default"}
FAMILY_VERSION = {"ipv4": 4, "ipv6": 6}
ICMP_ROWS = NO_ICMP_TYPE + 1
CHUNK = 16384  # packets per step of the first-match scan


@dataclass(frozen=True)
class Decision:
    """What one packet met on one device: verdict and the match that decided it."""

    verdict: str
    device: str
    policy: str | None  # None: no traffic-policy is bound for the packet's VRF
    rule: str | None  # None: the implicit default match decided
    match: str | None  # `ssh_to_web-app_servers-reverse`, `ipv4-all-default`, or None
    reverse: bool = False

    @property
    def is_default(self) -> bool:
        return self.rule is None

    def as_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "device": self.device,
            "policy": self.policy,
            "rule": self.rule,
            "match": self.match,
            "reverse": self.reverse,
        }


@dataclass(frozen=True)
class Term:
    """One conjunction of a match: its address sides and one of its service field-sets."""

    match_index: int
    match: Match
    service: ServiceFieldSet | None  # None: any service


# The bit tables of a policy, in the order `CompiledDevice.conditions` gives a term's rows.
TABLES = ("source", "destination", "protocol", "source_port", "destination_port", "icmp")


def pack_rows(accepts: np.ndarray) -> np.ndarray:
    """bool[term, value] -> uint64[value, word]; term t is bit t % 64 of word t // 64."""
    terms, values = accepts.shape
    words = max(1, -(-terms // 64))
    padded = np.zeros((values, words * 64), dtype=bool)
    padded[:, :terms] = accepts.T
    packed = np.packbits(padded, axis=1, bitorder="little")  # uint8[value, words*8]
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64)


def lowest_set_bit(words: np.ndarray) -> np.ndarray:
    """Index of the lowest set bit of each non-zero uint64."""
    isolated = words & (~words + np.uint64(1))
    _, exponent = np.frexp(isolated.astype(np.float64))  # exact: a power of two
    return (exponent - 1).astype(np.int64)


class CompiledPolicy:
    """One PolicyIntent's matches as bit tables over the device's cells."""

    def __init__(self, device: CompiledDevice, policy: PolicyIntent):
        self.policy = policy
        terms = [
            term
            for index, match in enumerate(policy.matches)
            for term in device.terms(index, match)
        ]
        self.term_match = np.array([t.match_index for t in terms], dtype=np.int32)
        self.match_verdict = np.array(
            [VERDICT_CODES[m.action] for m in policy.matches], dtype=np.uint8
        )
        self.default_verdict = VERDICT_CODES[policy.default_action]
        (
            self.source_rows,
            self.destination_rows,
            self.protocol_rows,
            self.source_port_rows,
            self.destination_port_rows,
            self.icmp_rows,
        ) = _bit_tables(device, terms)

    def first_terms(
        self,
        source: np.ndarray,
        destination: np.ndarray,
        service: np.ndarray,
        service_rows: np.ndarray,
    ) -> np.ndarray:
        """Deciding term per packet (source cell, destination cell, service row); -1 = none.

        Tables are row-major (value, word), so a packet's candidate words are three row
        gathers and one AND; chunks keep the working set in cache."""
        decided = np.full(len(source), -1, dtype=np.int64)
        for start in range(0, len(source), CHUNK):
            stop = min(start + CHUNK, len(source))
            candidates = self.source_rows[source[start:stop]]
            candidates &= self.destination_rows[destination[start:stop]]
            candidates &= service_rows[service[start:stop]]
            nonzero = candidates != 0
            first_word = nonzero.argmax(axis=1)
            rows = np.arange(stop - start)
            hit = nonzero[rows, first_word]
            bits = candidates[rows[hit], first_word[hit]]
            decided[start:stop][hit] = first_word[hit] * 64 + lowest_set_bit(bits)
        return decided

    def service_rows(
        self, protocol: np.ndarray, sport: np.ndarray, dport: np.ndarray, icmp: np.ndarray
    ) -> np.ndarray:
        """uint64[service, word]: terms whose service conditions all accept each service."""
        return (
            self.protocol_rows[protocol]
            & self.source_port_rows[sport]
            & self.destination_port_rows[dport]
            & self.icmp_rows[icmp]
        )


def _bit_tables(device: CompiledDevice, terms: list[Term]) -> list[np.ndarray]:
    """uint64[value, word] per table of TABLES, filled one word (64 terms) at a time: the
    terms' bool rows exist for one word at once, never for the whole policy (10,000 rules
    are ~20,000 terms over ~100,000 address cells: gigabytes of bools, megabytes of bits)."""
    widths = (device.address_cell_count,) * 2 + (256,) + (len(device.ports),) * 2 + (ICMP_ROWS,)
    words = max(1, -(-len(terms) // 64))
    tables = [np.zeros((width, words), dtype=np.uint64) for width in widths]
    for word in range(words):
        block = [device.conditions(term) for term in terms[word * 64 : (word + 1) * 64]]
        if not block:
            break
        for table, rows in zip(tables, zip(*block, strict=True), strict=True):
            table[:, word] = pack_rows(np.stack(rows))[:, 0]
    return tables


class CompiledDevice:
    """A DeviceIntent prepared for evaluation: cells, field-set membership, bit tables.

    Example: CompiledDevice(intent).evaluate(PacketBatch.from_fields(...))
    """

    def __init__(self, intent: DeviceIntent):
        self.intent = intent
        self.ipv4 = address_cells(intent, "ipv4")
        self.ipv6 = address_cells(intent, "ipv6")
        self.address_cell_count = len(self.ipv4) + len(self.ipv6)
        services = intent.service_field_sets.values()
        self.ports = port_cells(
            [s.source_ports for s in services] + [s.destination_ports for s in services]
        )
        self.policies = [CompiledPolicy(self, policy) for policy in intent.policies]

    # -- building terms ------------------------------------------------------------------
    def _family_mask(self, family: str) -> np.ndarray:
        mask = np.zeros(self.address_cell_count, dtype=bool)
        if family == "ipv4":
            mask[: len(self.ipv4)] = True
        else:
            mask[len(self.ipv4) :] = True
        return mask

    def address_side(self, family: str, field_sets: tuple[str, ...]) -> np.ndarray:
        """bool[address cell]: a match side (any of the field-sets; empty = any address)."""
        if not field_sets:
            return self._family_mask(family)
        cells: AddressCells = self.ipv4 if family == "ipv4" else self.ipv6
        side = np.zeros(self.address_cell_count, dtype=bool)
        offset = 0 if family == "ipv4" else len(self.ipv4)
        side[offset : offset + len(cells)] = cells.inside(field_sets)
        return side

    def service_conditions(self, service: ServiceFieldSet | None) -> tuple[np.ndarray, ...]:
        """(protocol, source port, destination port, ICMP type) accept rows of a field-set."""
        protocol = np.ones(256, dtype=bool)
        icmp = np.ones(ICMP_ROWS, dtype=bool)
        if service is None:
            every_port = np.ones(len(self.ports), dtype=bool)
            return protocol, every_port, every_port, icmp
        if service.protocol is not None:
            protocol[:] = False
            protocol[service.protocol] = True
        if service.icmp_types:
            icmp[:] = False
            icmp[list(service.icmp_types)] = True
        return (
            protocol,
            self.ports.cells_of(service.source_ports),
            self.ports.cells_of(service.destination_ports),
            icmp,
        )

    def terms(self, match_index: int, match: Match) -> list[Term]:
        services: list[ServiceFieldSet | None] = [
            self.intent.service_field_sets[name] for name in match.service_field_sets
        ] or [None]
        return [Term(match_index, match, service) for service in services]

    def conditions(self, term: Term) -> tuple[np.ndarray, ...]:
        """A term's accept rows, one per table of TABLES: bool[address cell] twice, then
        bool[256], bool[port cell] twice, bool[257]."""
        match = term.match
        return (
            self.address_side(match.family, match.source_field_sets),
            self.address_side(match.family, match.destination_field_sets),
            *self.service_conditions(term.service),
        )

    # -- evaluation ----------------------------------------------------------------------
    def address_cell_index(self, family: np.ndarray, addresses: np.ndarray) -> np.ndarray:
        cells = np.empty(len(addresses), dtype=np.int64)
        is_v4 = family == 4
        cells[is_v4] = self.ipv4.lookup(addresses[is_v4])
        cells[~is_v4] = self.ipv6.lookup(addresses[~is_v4]) + len(self.ipv4)
        return cells

    def policy_index_of_vrfs(self, vrfs: np.ndarray) -> np.ndarray:
        """Index into intent.policies of the policy each packet's VRF meets; -1 = none."""
        if len(vrfs) and (vrfs == vrfs[0]).all():
            unique, inverse = vrfs[:1], np.zeros(len(vrfs), dtype=np.int64)
        else:
            unique, inverse = np.unique(vrfs, return_inverse=True)
        index_of = {id(p): i for i, p in enumerate(self.intent.policies)}
        per_vrf = []
        for vrf in unique:
            policy = self.intent.policy_for_vrf(str(vrf))
            per_vrf.append(-1 if policy is None else index_of[id(policy)])
        return np.array(per_vrf, dtype=np.int32)[inverse.reshape(-1)]

    def evaluate(self, packets: PacketBatch) -> Evaluation:
        count = len(packets)
        policy_index = self.policy_index_of_vrfs(packets.vrf) if count else np.zeros(0, np.int32)
        match_index = np.full(count, -1, dtype=np.int32)
        verdict = np.zeros(count, dtype=np.uint8)  # no policy for the VRF: forward
        if count:
            source = self.address_cell_index(packets.family, packets.src)
            destination = self.address_cell_index(packets.family, packets.dst)
            source_port = self.ports.of_port[packets.sport]
            destination_port = self.ports.of_port[packets.dport]
            for position, compiled in enumerate(self.policies):
                selected = np.flatnonzero(policy_index == position)
                if not len(selected):
                    continue
                matches = self._first_matches(
                    compiled,
                    source[selected],
                    destination[selected],
                    packets.protocol[selected],
                    source_port[selected],
                    destination_port[selected],
                    packets.icmp_type[selected],
                )
                match_index[selected] = matches
                decided = matches >= 0
                verdict[selected[decided]] = compiled.match_verdict[matches[decided]]
                verdict[selected[~decided]] = compiled.default_verdict
        return Evaluation(self, packets.family.copy(), policy_index, match_index, verdict)

    def _first_matches(self, compiled, source, destination, protocol, sport, dport, icmp):
        ports = len(self.ports)
        service_key = (
            (protocol.astype(np.int64) * ports + sport) * ports + dport
        ) * ICMP_ROWS + icmp
        service_unique, service_row = np.unique(service_key, return_inverse=True)
        unique_icmp = service_unique % ICMP_ROWS
        rest = service_unique // ICMP_ROWS
        unique_dport, rest = rest % ports, rest // ports
        unique_sport, unique_protocol = rest % ports, rest // ports
        service_rows = compiled.service_rows(
            unique_protocol, unique_sport, unique_dport, unique_icmp
        )
        terms = compiled.first_terms(source, destination, service_row.reshape(-1), service_rows)
        matches = np.full(len(terms), -1, dtype=np.int32)
        decided = terms >= 0
        matches[decided] = compiled.term_match[terms[decided]]
        return matches

    # -- one packet ----------------------------------------------------------------------
    def evaluate_packet(
        self,
        *,
        vrf: str,
        protocol: int | str,
        src: str,
        dst: str,
        sport: int = 0,
        dport: int = 0,
        icmp_type: int | None = None,
    ) -> Decision:
        """One packet's Decision. Example: evaluate_packet(vrf="default", protocol="tcp",
        src="172.18.6.138", dst="10.100.99.51", sport=49152, dport=22)"""
        batch = PacketBatch.from_fields(
            vrf=[vrf],
            protocol=[protocol],
            src=[src],
            dst=[dst],
            sport=[sport],
            dport=[dport],
            icmp_type=[0 if icmp_type is None else icmp_type],
        )
        return self.evaluate(batch).decision(0)


@dataclass(frozen=True)
class Evaluation:
    """Per packet: the policy met, the deciding match (-1 = default) and the verdict code."""

    device: CompiledDevice
    family: np.ndarray
    policy_index: np.ndarray  # int32, -1 = no policy for the VRF
    match_index: np.ndarray  # int32 into that policy's matches, -1 = default match
    verdict: np.ndarray  # uint8 into VERDICTS

    def __len__(self) -> int:
        return len(self.verdict)

    @property
    def forwarded(self) -> np.ndarray:
        return self.verdict == VERDICT_CODES["forward"]

    def decision(self, position: int) -> Decision:
        device = self.device.intent.device
        verdict = VERDICTS[int(self.verdict[position])]
        policy_index = int(self.policy_index[position])
        if policy_index < 0:
            return Decision(verdict, device, None, None, None)
        policy = self.device.intent.policies[policy_index]
        match_index = int(self.match_index[position])
        if match_index < 0:
            return Decision(
                verdict, device, policy.name, None, DEFAULT_MATCH[int(self.family[position])]
            )
        match = policy.matches[match_index]
        return Decision(verdict, device, policy.name, match.rule, match.name, match.reverse)

    @cached_property
    def decider_codes(self) -> np.ndarray:
        """One int64 per packet naming (policy, match or family default) for grouping."""
        width = max([len(p.matches) for p in self.device.intent.policies] + [0]) + 2
        match = np.where(self.match_index >= 0, self.match_index, width - 2 + (self.family == 6))
        return (self.policy_index.astype(np.int64) + 1) * width + match

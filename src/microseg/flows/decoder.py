"""FlowDecoder: IPFIX and NetFlow v9 datagrams in, one columnar FlowBatch out.

The per-datagram work is walking a handful of set headers; data sets are *gathered* per
template across the whole batch of datagrams and decoded with one `np.frombuffer` per
template, so no Python code runs per flow record (except for templates with
variable-length fields, which RFC 7011 7 makes sequential by nature).

Bad input never raises: a datagram that breaks the wire format is dropped whole (nothing of
it is applied) and counted. Memory is bounded: templates per exporter, streams, and data
sets waiting for their template are all capped.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from typing import NamedTuple

import numpy as np

from microseg.flows import ipfix, netflow9
from microseg.flows.batch import COLUMNS, IPV4_MAPPED, FlowBatch, address_halves
from microseg.flows.ipfix import MalformedDatagram
from microseg.flows.templates import Template, build_template, field_columns, widen

NTP_TO_UNIX_SECONDS = 2208988800  # RFC 7011 6.1.9: NTP era 0 starts 1900-01-01
SEQUENCE_MODULO = 1 << 32
UPTIME_MODULO = 1 << 32  # RFC 3954 5.1: sysUptime and *_SWITCHED are 32-bit milliseconds
NO_UPTIME = -1  # a time base without a header sysUptime (IPFIX)
LATEST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
LATEST = np.uint64(LATEST_MS)
VERSION = struct.Struct("!H")
FIRST_SET_END = 16 + 4  # IPFIX message header, then the first set's header
SHORTEST_RUN = 8  # fewer one-data-set messages in a row cost less one by one


class IpfixSequence(NamedTuple):
    """What an IPFIX stream's last message said, to check the next one's sequence number."""

    sequence: int
    records: int  # data records in the message, options records included
    flow_records: int  # data records of flow templates
    known: bool  # every data set's template was known: the record counts are exact
    inclusive: bool  # the exporter counts the message's own records (softflowd 1.1.0)


@dataclass
class ExporterCounters:
    """What one exporter (source address) has sent us."""

    datagrams: int = 0
    records: int = 0
    decode_errors: int = 0
    unknown_template_sets: int = 0
    sequence_gaps: int = 0
    lost_records: int = 0  # IPFIX: sequence numbers count data records
    lost_datagrams: int = 0  # NetFlow v9: sequence numbers count export packets


@dataclass
class DecoderCounters:
    datagrams: int = 0
    records: int = 0
    options_records: int = 0
    decode_errors: int = 0
    unknown_version: int = 0
    unknown_template_sets: int = 0  # data sets that arrived before their template
    unknown_template_decoded: int = 0  # ... of which decoded once the template arrived
    unknown_template_dropped: int = 0  # ... dropped: buffer full or waited too long
    templates: int = 0
    template_withdrawals: int = 0
    template_evictions: int = 0  # oldest templates dropped at the per-exporter/stream cap
    mixed_family_records: int = 0  # IPv6 records pairing an IPv4-mapped address: dropped
    exporters: dict[str, ExporterCounters] = field(default_factory=dict)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["exporters"] = {name: data["exporters"][name] for name in sorted(data["exporters"])}
        return data


@dataclass
class _Gather:
    """Data sets of one template collected across datagrams, decoded together."""

    template: Template
    exporter: str
    domain: int
    chunks: list = field(default_factory=list)
    # per data set, in the chunks' order: its records, and (base ms for *SysUpTime fields,
    # header sysUptime or NO_UPTIME, export ms); a run's as arrays, a single set's in lists
    count_parts: list = field(default_factory=list)
    base_parts: list = field(default_factory=list)
    counts: list = field(default_factory=list)
    time_bases: list = field(default_factory=list)
    variable_sets: list = field(default_factory=list)

    def add_fixed(self, data, start: int, end: int, time_base: tuple) -> int:
        """Queue the fixed-length records of data[start:end]; how many there are (RFC 7011
        3.3.1: what is left after the last whole record is padding)."""
        record_length = self.template.record_length
        count = (end - start) // record_length
        if count:
            self.chunks.append(data[start : start + count * record_length])
            self.counts.append(count)
            self.time_bases.append(time_base)
        return count

    def add_run(self, records: bytes, counts: np.ndarray, time_bases: np.ndarray) -> None:
        """Queue the records of several messages at once (their counts and time bases)."""
        self._seal()
        self.chunks.append(records)
        self.count_parts.append(counts)
        self.base_parts.append(time_bases)

    def records(self) -> int:
        self._seal()
        return int(sum(part.sum() for part in self.count_parts))

    def record_time_bases(self) -> np.ndarray:
        """Each record's time base (records in the chunks' order)."""
        self._seal()
        if not self.count_parts:
            return np.empty((0, 3), np.int64)
        bases = np.concatenate(self.base_parts)
        return np.repeat(bases, np.concatenate(self.count_parts), axis=0)

    def _seal(self) -> None:
        """Single data sets queued since the last run, as one part."""
        if self.counts:
            self.count_parts.append(np.array(self.counts, np.int64))
            self.base_parts.append(np.array(self.time_bases, np.int64).reshape(-1, 3))
            self.counts, self.time_bases = [], []


def _gather(gathers: dict[int, _Gather], template: Template, stream: tuple) -> _Gather:
    """The batch's gather of `template` (a stream's templates are distinct objects)."""
    gather = gathers.get(id(template))
    if gather is None:
        gather = gathers[id(template)] = _Gather(template, stream[0], stream[3])
    return gather


# A datagram and where it came from: the socket address recvfrom() gives (host, port, ...),
# or a bare address string when the source port is unknown (it then counts as port 0).
Datagram = tuple[bytes, str | tuple]


class FlowDecoder:
    """Stateful decoder: templates and sequence numbers per *stream*, (exporter address,
    source port, version, observation domain / source id, our address).

    IPFIX (RFC 7011 8): templates are scoped to the Transport Session and Observation Domain,
    and sequence numbers count per Observation Domain within a Transport Session (3.1); over
    UDP a Transport Session is what one exporter socket (source address and port) sends to
    one collector socket (destination address and port; RFC 7011 2, 10.3.1). So two
    exporters behind one address keep their templates and sequences apart, and so does one
    exporter socket sending to two of our ports. NetFlow v9 (RFC 3954 5.1): a template and
    the sequence belong to the source ID of the exporter's address; neither port nor our
    address is part of it (the stream's port is 0, its destination None).
    Counters and the stored `exporter` are per exporter *address*.
    """

    def __init__(
        self,
        max_templates_per_exporter: int = 512,
        max_streams: int = 4096,
        max_pending_sets: int = 1024,
        max_pending_bytes: int = 8 << 20,
        pending_seconds: float = 30.0,
    ):
        self.max_templates_per_exporter = max_templates_per_exporter
        self.max_streams = max_streams
        self.max_pending_sets = max_pending_sets
        self.max_pending_bytes = max_pending_bytes
        self.pending_seconds = pending_seconds
        self.counters = DecoderCounters()
        self.fast_path = True  # False: every message takes the general path (the reference)
        self.shortest_run = SHORTEST_RUN  # one-data-set messages in a row decoded as a run
        self.templates: dict[tuple, dict[int, Template]] = {}
        # per exporter, its templates oldest first: (stream, template id) -> None
        self._template_order: dict[str, dict[tuple, None]] = {}
        # per stream: NetFlow v9 the last export packet's sequence number, IPFIX the last message
        self._sequence: dict[tuple, int | IpfixSequence] = {}
        self._pending: dict[tuple, list] = {}  # (stream, template id) -> [(arrival, bytes, base)]
        self._pending_sets = 0
        self._pending_bytes = 0
        self._exporter_halves: dict[str, tuple[int, int]] = {}
        self._system_init: dict[tuple, int] = {}  # stream -> systemInitTimeMilliseconds

    # -- public -------------------------------------------------------------------------

    def decode(self, datagrams: Iterable[Datagram], destination: tuple | None = None) -> FlowBatch:
        """Decode (datagram, source) pairs into one FlowBatch; `destination`: the (address,
        port) they were sent to, our socket's (None: one socket, or unknown)."""
        gathers: dict[int, _Gather] = {}
        self._expire_pending()
        batch = datagrams if isinstance(datagrams, list) else list(datagrams)
        runs: list[tuple[int, int]] = []
        if self.fast_path and len(batch) >= self.shortest_run:
            messages = list(map(itemgetter(0), batch))
            heads, runs = ipfix.one_data_set_runs(messages, self.shortest_run)
        position = 0
        for start, end in runs:
            self._each(batch[position:start], destination, gathers)
            if not self._ipfix_run(batch[start:end], heads[start:end], destination, gathers):
                self._each(batch[start:end], destination, gathers)
            position = end
        self._each(batch[position:], destination, gathers)
        return FlowBatch.concat([self._columns(group) for group in _layouts(gathers)])

    def _each(self, datagrams: list[Datagram], destination, gathers) -> None:
        """Datagrams one by one: the general path (and the one-data-set fast path)."""
        for data, source in datagrams:
            exporter, port = (source, 0) if isinstance(source, str) else source[:2]
            self.counters.datagrams += 1
            per_exporter = self._counters_for(exporter)
            per_exporter.datagrams += 1
            try:
                version = VERSION.unpack_from(data)[0] if len(data) >= 2 else 0
                if version == ipfix.VERSION:
                    self._ipfix(data, (exporter, port), destination, per_exporter, gathers)
                elif version == netflow9.VERSION:
                    self._netflow9(data, exporter, per_exporter, gathers)
                else:
                    self.counters.unknown_version += 1
                    raise MalformedDatagram(f"unknown export version {version}")
            except (MalformedDatagram, struct.error):
                self.counters.decode_errors += 1
                per_exporter.decode_errors += 1

    def stats(self) -> dict:
        data = self.counters.as_dict()
        data["pending_sets"] = self._pending_sets
        data["streams"] = len(self.templates)
        return data

    # -- per datagram -------------------------------------------------------------------

    def _counters_for(self, exporter: str) -> ExporterCounters:
        """Per-exporter counters; past `max_streams` exporters they add up under "other"."""
        counters = self.counters.exporters.get(exporter)
        if counters is None:
            if len(self.counters.exporters) >= self.max_streams:
                exporter = "other"
            counters = self.counters.exporters.setdefault(exporter, ExporterCounters())
        return counters

    def _ipfix(self, data, source, destination, per_exporter, gathers) -> None:
        _, length, export_time, sequence, domain = ipfix.HEADER.unpack_from(data)
        if length != len(data):
            raise MalformedDatagram(f"message length {length} but datagram has {len(data)}")
        # RFC 7011 8, 10.3.1: the Transport Session (both sockets) and Observation Domain
        stream = (*source, ipfix.VERSION, domain, destination)
        if self.fast_path and self._ipfix_one_data_set(
            data, length, export_time, sequence, stream, per_exporter, gathers
        ):
            return
        sets = ipfix.walk_sets(data, ipfix.HEADER.size, length)
        # RFC 7011 8: parse every template first, apply nothing unless all of it is valid
        parsed = [
            ipfix.parse_template_records(data, start, end, set_id == ipfix.OPTIONS_TEMPLATE_SET_ID)
            if set_id < ipfix.MIN_DATA_SET_ID
            else None
            for set_id, start, end in sets
        ]
        records = flow_records = 0
        known = True
        for (set_id, start, end), templates in zip(sets, parsed, strict=True):
            if templates is not None:
                self._install(stream, templates, gathers)
                continue
            # IPFIX flow*SysUpTime counts from the exporter's systemInitTimeMilliseconds, which
            # it reports in an options record (softflowd does)
            time_base = (self._system_init.get(stream, 0), NO_UPTIME, export_time * 1000)
            count, is_options = self._data_set(stream, set_id, data, start, end, time_base, gathers)
            if count is None:
                known = False
            else:
                records += count
                flow_records += 0 if is_options else count
        per_exporter.records += flow_records
        self._track_ipfix_sequence(stream, sequence, records, flow_records, known, per_exporter)

    def _ipfix_one_data_set(
        self, data, length, export_time, sequence, stream, per_exporter, gathers
    ) -> bool:
        """The common message, taken without the general walk: one data set that fills the
        message, of a known fixed-length flow template; its sequence number is checked as
        the general path does. Anything else returns False, untouched, for the general path
        (the reference: tests/flows/test_flow_decoder_fast_path.py holds the two equal)."""
        if length < FIRST_SET_END:
            return False
        set_id, set_length = ipfix.SET_HEADER.unpack_from(data, ipfix.HEADER.size)
        if set_length != length - ipfix.HEADER.size or set_id < ipfix.MIN_DATA_SET_ID:
            return False
        templates = self.templates.get(stream)
        template = templates.get(set_id) if templates is not None else None
        if template is None or template.variable_length or template.is_options:
            return False
        time_base = (self._system_init.get(stream, 0), NO_UPTIME, export_time * 1000)
        count = _gather(gathers, template, stream).add_fixed(data, FIRST_SET_END, length, time_base)
        self.counters.records += count
        per_exporter.records += count
        self._track_ipfix_sequence(stream, sequence, count, count, True, per_exporter)
        return True

    def _ipfix_run(
        self, datagrams: list[Datagram], heads: np.ndarray, destination, gathers
    ) -> bool:
        """Consecutive messages of one data set each (ipfix.one_data_set_runs), decoded with
        numpy over their headers: no Python per message beyond taking its records' bytes.
        Exactly what `_ipfix_one_data_set` does message by message, which takes the run
        instead (returning False, nothing changed) unless every message's template is
        known, of fixed length and not an options template, and its new streams fit."""
        # per datagram only C-level map steps: these run for every datagram of the batch
        each_source = list(map(itemgetter(1), datagrams))
        sources = {source: index for index, source in enumerate(dict.fromkeys(each_source))}
        source_of = np.fromiter(map(sources.__getitem__, each_source), np.int64, len(datagrams))
        addresses = [(s, 0) if isinstance(s, str) else s[:2] for s in sources]
        streams, stream_of = _first_seen((source_of << 32) | heads["domain"].astype(np.int64))
        stream_keys = [
            (*addresses[key >> 32], ipfix.VERSION, key & 0xFFFFFFFF, destination)
            for key in streams.tolist()
        ]
        new = sum(key not in self._sequence for key in stream_keys)
        if new and len(self._sequence) + new > self.max_streams:
            return False  # the general path evicts the oldest streams one by one
        uses, use_of = _first_seen((stream_of << 16) | heads["set_id"].astype(np.int64))
        templates = []
        for key in uses.tolist():
            template = self.templates.get(stream_keys[key >> 16], {}).get(key & 0xFFFF)
            if template is None or template.variable_length or template.is_options:
                return False
            templates.append(template)
        record_length = np.array([t.record_length for t in templates], np.int64)[use_of]
        counts = (heads["set_length"].astype(np.int64) - 4) // record_length
        # counters: every datagram and record, per exporter address (in first-seen order)
        self.counters.datagrams += len(datagrams)
        self.counters.records += int(counts.sum())
        per_source_datagrams = np.bincount(source_of, minlength=len(sources)).tolist()
        per_source_records = np.bincount(source_of, counts, minlength=len(sources)).tolist()
        for (exporter, _), taken, records in zip(
            addresses, per_source_datagrams, per_source_records, strict=True
        ):
            counters = self._counters_for(exporter)
            counters.datagrams += taken
            counters.records += int(records)
        self._run_sequences(stream_keys, stream_of, heads["sequence"], counts)
        export_ms = heads["export_time"].astype(np.int64) * 1000
        for use, (key, template) in enumerate(zip(uses.tolist(), templates, strict=True)):
            stream = stream_keys[key >> 16]
            gather = _gather(gathers, template, stream)  # where its first message is, as
            rows = np.flatnonzero((use_of == use) & (counts > 0))  # one by one, even empty
            if not len(rows):
                continue
            records = _records_of(datagrams, rows, counts[rows] * template.record_length)
            bases = np.empty((len(rows), 3), np.int64)
            bases[:, 0] = self._system_init.get(stream, 0)
            bases[:, 1] = NO_UPTIME
            bases[:, 2] = export_ms[rows]
            gather.add_run(records, counts[rows], bases)
        return True

    def _run_sequences(self, stream_keys, stream_of, sequences, counts) -> None:
        """`_track_ipfix_sequence` for every message of a run, per stream: the first message
        as it does; the others at once when each follows the one before by the stream's rule
        (no gap, nothing to count), else one by one."""
        order = np.argsort(stream_of, kind="stable")
        bounds = np.cumsum(np.bincount(stream_of, minlength=len(stream_keys)))
        for stream, rows in zip(stream_keys, np.split(order, bounds[:-1]), strict=True):
            numbers, sizes = sequences[rows].astype(np.int64), counts[rows]
            counters = self._counters_for(stream[0])
            self._track_ipfix_sequence(
                stream, int(numbers[0]), int(sizes[0]), int(sizes[0]), True, counters
            )
            if len(rows) == 1:
                continue
            inclusive = self._sequence[stream].inclusive  # type: ignore[union-attr]
            step = sizes[1:] if inclusive else sizes[:-1]
            if ((numbers[:-1] + step) % SEQUENCE_MODULO == numbers[1:]).all():
                last, size = int(numbers[-1]), int(sizes[-1])
                self._sequence[stream] = IpfixSequence(last, size, size, True, inclusive)
                continue
            for number, size in zip(numbers[1:].tolist(), sizes[1:].tolist(), strict=True):
                self._track_ipfix_sequence(stream, number, size, size, True, counters)

    def _netflow9(self, data, exporter, per_exporter, gathers) -> None:
        _, _count, uptime, unix_seconds, sequence, source_id = netflow9.HEADER.unpack_from(data)
        sets = netflow9.walk_flowsets(data, netflow9.HEADER.size)
        stream = (exporter, 0, netflow9.VERSION, source_id, None)  # RFC 3954 5.1: no ports
        parsed = []
        for set_id, start, end in sets:
            if set_id == netflow9.TEMPLATE_FLOWSET_ID:
                parsed.append(netflow9.parse_template_records(data, start, end))
            elif set_id == netflow9.OPTIONS_TEMPLATE_FLOWSET_ID:
                parsed.append(netflow9.parse_options_template_records(data, start, end))
            else:
                parsed.append(None)
        # RFC 3954 5.1: switched times are sysUptime ms; the header pairs uptime and unix time
        time_base = (unix_seconds * 1000 - uptime, uptime, unix_seconds * 1000)
        flow_records = 0
        for (set_id, start, end), templates in zip(sets, parsed, strict=True):
            if templates is not None:
                self._install(stream, templates, gathers)
                continue
            count, is_options = self._data_set(stream, set_id, data, start, end, time_base, gathers)
            if count and not is_options:
                flow_records += count
        per_exporter.records += flow_records
        # RFC 3954 5.1: the sequence number counts export packets of this source id
        previous = self._sequence.get(stream)
        if isinstance(previous, int):
            expected = (previous + 1) % SEQUENCE_MODULO
            if sequence != expected:
                per_exporter.sequence_gaps += 1
                missing = (sequence - expected) % SEQUENCE_MODULO
                if missing < SEQUENCE_MODULO // 2:
                    per_exporter.lost_datagrams += missing
        self._remember_sequence(stream, sequence)

    def _track_ipfix_sequence(self, stream, sequence, records, flow_records, known, counters):
        """RFC 7011 3.1: the sequence number counts data records sent *before* this message.

        softflowd 1.1.0 counts them *including* this message (and not its options records);
        the first message that shows it counts one gap, then the stream follows that rule.
        """
        previous = self._sequence.get(stream)
        if not isinstance(previous, IpfixSequence):  # a stream key holds its version
            previous = None
        inclusive = previous is not None and previous.inclusive
        self._remember_sequence(
            stream, IpfixSequence(sequence, records, flow_records, known, inclusive)
        )
        if previous is None or not previous.known or not known:
            return
        last_sequence, last_records, last_flow_records = previous[:3]
        if inclusive:
            candidates = (last_sequence + records, last_sequence + flow_records)
        else:
            candidates = (last_sequence + last_records, last_sequence + last_flow_records)
        candidates = tuple(c % SEQUENCE_MODULO for c in candidates)
        if sequence in candidates:
            return
        counters.sequence_gaps += 1
        inclusive_candidates = {
            (last_sequence + records) % SEQUENCE_MODULO,
            (last_sequence + flow_records) % SEQUENCE_MODULO,
        }
        if not inclusive and sequence in inclusive_candidates:
            self._sequence[stream] = IpfixSequence(sequence, records, flow_records, known, True)
            return
        missing = (sequence - candidates[0]) % SEQUENCE_MODULO
        if missing < SEQUENCE_MODULO // 2:
            counters.lost_records += missing

    def _remember_sequence(self, stream: tuple, state: int | IpfixSequence) -> None:
        """Sequence state per stream, for at most `max_streams` streams (oldest dropped):
        datagrams without templates create streams too, e.g. a flood of domain ids."""
        if stream not in self._sequence and len(self._sequence) >= self.max_streams:
            del self._sequence[next(iter(self._sequence))]
        self._sequence[stream] = state

    # -- templates ----------------------------------------------------------------------

    def _install(self, stream, records, gathers) -> None:
        """Learn templates. At a cap the oldest template (or stream) is evicted, so a flood
        of bogus templates cannot lock out the exporter's real ones, which it refreshes."""
        for template_id, fields, scope_count in records:
            if fields is None:
                self._withdraw(stream, template_id)
                continue
            templates = self.templates.get(stream)
            if templates is None:
                while len(self.templates) >= self.max_streams:
                    self._evict_stream(next(iter(self.templates)))
                templates = self.templates[stream] = {}
            order = self._template_order.setdefault(stream[0], {})
            if template_id not in templates:
                while len(order) >= self.max_templates_per_exporter:
                    oldest_stream, oldest_id = next(iter(order))
                    del order[(oldest_stream, oldest_id)]
                    del self.templates[oldest_stream][oldest_id]
                    self.counters.template_evictions += 1
            order.pop((stream, template_id), None)
            order[(stream, template_id)] = None
            self.counters.templates += 1
            known = templates.get(template_id)
            if known is not None and known.fields == fields and known.scope_count == scope_count:
                continue  # RFC 7011 8: a refresh of the same template changes nothing
            templates[template_id] = build_template(template_id, fields, scope_count)
            waiting = self._pending.pop((stream, template_id), None)
            if waiting:
                self._replay_pending(stream, template_id, waiting, gathers)

    def _evict_stream(self, stream) -> None:
        order = self._template_order.get(stream[0], {})
        for template_id in self.templates.pop(stream):
            order.pop((stream, template_id), None)
            self.counters.template_evictions += 1
        if not order:
            self._template_order.pop(stream[0], None)
            self._exporter_halves.pop(stream[0], None)
        self._sequence.pop(stream, None)
        self._system_init.pop(stream, None)

    def _withdraw(self, stream, template_id) -> None:
        """RFC 7011 8.1: id 2 withdraws all templates, 3 all options templates, else one."""
        templates = self.templates.get(stream, {})
        if template_id in (ipfix.TEMPLATE_SET_ID, ipfix.OPTIONS_TEMPLATE_SET_ID):
            options = template_id == ipfix.OPTIONS_TEMPLATE_SET_ID
            doomed = [tid for tid, t in templates.items() if t.is_options == options]
        else:
            doomed = [template_id] if template_id in templates else []
        order = self._template_order.get(stream[0], {})
        for tid in doomed:
            del templates[tid]
            order.pop((stream, tid), None)
            self.counters.template_withdrawals += 1

    # -- data sets ----------------------------------------------------------------------

    def _data_set(self, stream, set_id, data, start, end, time_base, gathers):
        """Queue one data set for decoding; (records, is options) or (None, False) if unknown."""
        template = self.templates.get(stream, {}).get(set_id)
        if template is None:
            self._hold(stream, set_id, data[start:end], time_base)
            return None, False
        gather = _gather(gathers, template, stream)
        if template.variable_length:
            try:
                offsets = ipfix.variable_record_offsets(data, start, end, template.fields)
            except MalformedDatagram:
                self.counters.decode_errors += 1
                return 0, template.is_options
            gather.variable_sets.append((bytes(data[start:end]), start, offsets, time_base))
            count = len(offsets)
        else:
            count = gather.add_fixed(data, start, end, time_base)
        if template.is_options:
            self.counters.options_records += count
            if count and "system_init_ms" in template.roles and not template.variable_length:
                column = np.frombuffer(gather.chunks[-1], dtype=template.dtype)["system_init_ms"]
                value = int(widen(column[-1:])[0])
                if value < 1 << 62:  # a plausible clock (bad input must not overflow int64)
                    self._system_init[stream] = value
        else:
            self.counters.records += count
        return count, template.is_options

    def _hold(self, stream, template_id, payload: bytes, time_base) -> None:
        """Keep a data set whose template has not arrived yet (bounded, RFC 7011 8 allows it)."""
        self.counters.unknown_template_sets += 1
        self._counters_for(stream[0]).unknown_template_sets += 1
        if len(payload) > self.max_pending_bytes:
            self.counters.unknown_template_dropped += 1
            return
        while self._pending and (
            self._pending_sets >= self.max_pending_sets
            or self._pending_bytes + len(payload) > self.max_pending_bytes
        ):
            self._drop_pending(next(iter(self._pending)))
        self._pending.setdefault((stream, template_id), []).append(
            (time.monotonic(), payload, time_base)
        )
        self._pending_sets += 1
        self._pending_bytes += len(payload)

    def _drop_pending(self, key) -> None:
        waiting = self._pending.pop(key)
        self._pending_sets -= len(waiting)
        self._pending_bytes -= sum(len(payload) for _, payload, _ in waiting)
        self.counters.unknown_template_dropped += len(waiting)

    def _expire_pending(self) -> None:
        deadline = time.monotonic() - self.pending_seconds
        for key in [k for k, waiting in self._pending.items() if waiting[-1][0] < deadline]:
            self._drop_pending(key)

    def _replay_pending(self, stream, template_id, waiting, gathers) -> None:
        self._pending_sets -= len(waiting)
        self._pending_bytes -= sum(len(payload) for _, payload, _ in waiting)
        for _, payload, time_base in waiting:
            count, is_options = self._data_set(
                stream, template_id, payload, 0, len(payload), time_base, gathers
            )
            self.counters.unknown_template_decoded += 1
            if count and not is_options:
                self._counters_for(stream[0]).records += count

    # -- columns ------------------------------------------------------------------------

    def _columns(self, group: list[_Gather]) -> FlowBatch:
        """The records of gathers of one template layout (of different streams)."""
        template = group[0].template
        roles = template.roles
        if template.is_options or not (
            ("src_v4" in roles and "dst_v4" in roles) or ("src_v6" in roles and "dst_v6" in roles)
        ):
            return FlowBatch.empty()
        if template.variable_length:  # alone in its group
            values, time_base = _variable_values(group[0])
            sizes = [len(values)]
        else:
            chunks = [chunk for gather in group for chunk in gather.chunks]
            values = np.frombuffer(b"".join(chunks), dtype=template.dtype)
            time_base = np.concatenate([gather.record_time_bases() for gather in group])
            sizes = [gather.records() for gather in group]
        count = len(values)
        columns = _address_columns(values, roles)
        for role in (
            "src_port",
            "dst_port",
            "protocol",
            "icmp_type_code",
            "packets",
            "bytes",
            "rev_packets",
            "rev_bytes",
            "tcp_flags",
            "rev_tcp_flags",
            "vrf_id",
        ):
            kind = COLUMNS[role]
            columns[role] = (
                widen(values[role]).astype(kind) if role in roles else np.zeros(count, kind)
            )
        columns["direction"] = (
            widen(values["direction"]).astype(np.int8)
            if "direction" in roles
            else np.full(count, -1, np.int8)
        )
        # a clock outside years 1970..9999 is bad input; keep it printable and storable
        columns["start_ms"] = np.clip(_time_ms(values, roles, "start", time_base), 0, LATEST_MS)
        if any(role in roles for role in ("end_ms", "end_s", "end_ntp", "end_uptime")):
            columns["end_ms"] = np.clip(_time_ms(values, roles, "end", time_base), 0, LATEST_MS)
        else:
            columns["end_ms"] = columns["start_ms"].copy()
        halves = np.array([self._halves(gather.exporter) for gather in group], np.uint64)
        columns["exporter_hi"] = np.repeat(halves[:, 0], sizes)
        columns["exporter_lo"] = np.repeat(halves[:, 1], sizes)
        domains = np.array([gather.domain for gather in group], np.uint32)
        columns["observation_domain"] = np.repeat(domains, sizes)
        return self._one_family(FlowBatch(**columns))

    def _halves(self, exporter: str) -> tuple[int, int]:
        halves = self._exporter_halves.get(exporter)
        if halves is None:
            if len(self._exporter_halves) >= self.max_streams:
                self._exporter_halves.clear()  # a cache: spoofed exporters must not grow it
            halves = self._exporter_halves[exporter] = _exporter_halves(exporter)
        return halves

    def _one_family(self, batch: FlowBatch) -> FlowBatch:
        """IPv4 is kept IPv4-mapped, so an IPv6 record with a `::ffff:a.b.c.d` address
        (RFC 4291 2.5.5.2; RFC 4942 2.2: not valid on the wire) would pair an IPv4 and an
        IPv6 end: such records are dropped and counted; with both ends mapped it is IPv4."""
        if len(batch) == 0 or batch.family[0] != 6:
            return batch
        src_mapped = (batch.src_hi == 0) & ((batch.src_lo >> np.uint64(32)) == 0xFFFF)
        dst_mapped = (batch.dst_hi == 0) & ((batch.dst_lo >> np.uint64(32)) == 0xFFFF)
        batch.family[src_mapped & dst_mapped] = 4
        mixed = src_mapped != dst_mapped
        if not mixed.any():
            return batch
        self.counters.mixed_family_records += int(mixed.sum())
        return batch.take(~mixed)


def _address_columns(values, roles) -> dict[str, np.ndarray]:
    count = len(values)
    if "src_v4" in roles and "dst_v4" in roles:
        return {
            "family": np.full(count, 4, np.uint8),
            "src_hi": np.zeros(count, np.uint64),
            "src_lo": IPV4_MAPPED | values["src_v4"].astype(np.uint64),
            "dst_hi": np.zeros(count, np.uint64),
            "dst_lo": IPV4_MAPPED | values["dst_v4"].astype(np.uint64),
        }
    return {
        "family": np.full(count, 6, np.uint8),
        **{
            name: values[field].astype(np.uint64)
            for name, field in (
                ("src_hi", "src_v6_hi"),
                ("src_lo", "src_v6_lo"),
                ("dst_hi", "dst_v6_hi"),
                ("dst_lo", "dst_v6_lo"),
            )
        },
    }


def _layouts(gathers: dict[int, _Gather]) -> list[list[_Gather]]:
    """The batch's gathers, consecutive ones of one fixed-length flow template layout (one
    template sent by several exporters) grouped, to be decoded as one."""
    groups: list[list[_Gather]] = []
    for gather in gathers.values():
        template = gather.template
        if groups and not template.variable_length and not template.is_options:
            last = groups[-1][0].template
            if not last.variable_length and not last.is_options and last.dtype == template.dtype:
                groups[-1].append(gather)
                continue
        groups.append([gather])
    return groups


def _time_ms(values, roles, which: str, time_base) -> np.ndarray:
    # clamp while still unsigned: a 64-bit time past int64 must not wrap into the past
    if f"{which}_ms" in roles:
        return np.minimum(widen(values[f"{which}_ms"]), LATEST).astype(np.int64)
    if f"{which}_s" in roles:
        seconds = np.minimum(widen(values[f"{which}_s"]), LATEST // np.uint64(1000) + 1)
        return seconds.astype(np.int64) * 1000
    if f"{which}_ntp" in roles:
        ntp = widen(values[f"{which}_ntp"])
        seconds = (ntp >> np.uint64(32)).astype(np.int64) - NTP_TO_UNIX_SECONDS
        fraction_ms = ((ntp & np.uint64(0xFFFFFFFF)) * np.uint64(1000)) >> np.uint64(32)
        return seconds * 1000 + fraction_ms.astype(np.int64)
    if f"{which}_uptime" in roles:
        # unsigned32 by the RFCs; a wider field is bounded so the sum below cannot overflow
        uptime = np.minimum(widen(values[f"{which}_uptime"]), np.uint64(1 << 62)).astype(np.int64)
        base, header_uptime = time_base[:, 0], time_base[:, 1]
        # sysUptime is 32-bit ms and wraps after 49.7 days: read a switched time as the
        # nearest one to the header's uptime, modulo 2^32 (no reference for IPFIX)
        ahead = uptime - header_uptime
        wrap = np.where(ahead > UPTIME_MODULO // 2, -UPTIME_MODULO, 0)
        wrap = np.where(ahead < -(UPTIME_MODULO // 2), UPTIME_MODULO, wrap)
        return base + uptime + np.where(header_uptime == NO_UPTIME, 0, wrap)
    # no flow time in the template: the message's export time (RFC 7011 3.1, RFC 3954 5.1)
    return time_base[:, 2].copy()


def _variable_values(gather: _Gather):
    """Fields of variable-length records, gathered by computed offsets (vectorised per field)."""
    template = gather.template
    offset_rows: list[list[int]] = []  # per record, its fields' offsets in the joined payloads
    buffers: list[bytes] = []
    bases: list[tuple[int, int, int]] = []  # per record, its message's time base
    shift = 0
    for payload, start, offsets, time_base in gather.variable_sets:
        buffers.append(payload)
        offset_rows.extend([shift + o - start for o in row] for row in offsets)
        bases.extend([time_base] * len(offsets))
        shift += len(payload)
    raw = np.frombuffer(b"".join(buffers), np.uint8)
    offsets = np.array(offset_rows, np.int64).reshape(len(offset_rows), len(template.fields))
    layout = [
        (name, fmt, at, index)
        for role, index in template.roles.items()
        for name, fmt, at in field_columns(role, template.fields[index].length, 0)
    ]
    values = np.zeros(len(offsets), dtype=[(name, fmt) for name, fmt, _, _ in layout])
    for name, fmt, at, index in layout:
        size = np.dtype(fmt).itemsize
        cells = raw[offsets[:, index, None] + at + np.arange(size)]
        values[name] = np.frombuffer(cells.tobytes(), dtype=fmt)
    return values, np.array(bases, np.int64).reshape(len(bases), 3)


def _records_of(datagrams: list[Datagram], rows: np.ndarray, lengths: np.ndarray) -> bytes:
    """The records of one-data-set messages `rows` (`lengths` bytes each, after the set
    header), joined; with one length for all (the usual run), without a Python step per
    message."""
    messages = itemgetter(*rows.tolist())(datagrams) if len(rows) > 1 else [datagrams[rows[0]]]
    if (lengths == lengths[0]).all():
        cut = itemgetter(slice(FIRST_SET_END, FIRST_SET_END + int(lengths[0])))
        return b"".join(map(cut, map(itemgetter(0), messages)))
    return b"".join(
        [
            data[FIRST_SET_END : FIRST_SET_END + length]
            for (data, _), length in zip(messages, lengths.tolist(), strict=True)
        ]
    )


def _exporter_halves(exporter: str) -> tuple[int, int]:
    try:
        return address_halves(exporter)
    except ValueError:
        return 0, 0


def _first_seen(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys in the order they first occur, and each row's index among them."""
    distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return distinct[order], rank[inverse.reshape(-1)]

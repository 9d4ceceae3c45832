"""Flow store: sessions as Parquet segments in a directory, queried with DuckDB.

Layout: `STORE/segments/date=<UTC day>/collector=<id>/seg-<ms>-<id>-<pid>-<n>.parquet`, one
file per flush of one collector (several collectors share a store without locks between
them: each writes only its own partition directories, by its own collector id). A store
opened without a collector id (tests, older stores) reads and writes the flat layout
`STORE/segments/seg-<ms>-<pid>-<n>.parquet`; readers see both. A segment is written to a
`.tmp-*` file beside its final name and renamed into place (rename is atomic on POSIX), so a
reader or a crash never sees half a segment. Segment names are unique in the whole store. Compaction writes the merged segment first
(naming its sources in the Parquet metadata) and deletes the sources after; a crash in
between is repaired on the next open, and readers skip sources a compacted segment lists.
Only plain `seg-*.parquet` names count as sources: a segment cannot point outside the store.

Two lock files (flock, released by the kernel when a process dies): `STORE/.writers.lock`
is held shared while a flat-layout temporary segment is written and exclusively to remove
temporaries a crash left, so a live writer's file is never taken for one (a collector removes
the temporaries of its own partitions only, without a lock: nobody else writes there;
compaction's temporaries are `.merge-*`, removed by the next compaction); `STORE/.maintenance.lock`
serialises compaction, retention and quarantine, so two runs never merge the same segments.

A segment that cannot be read (truncated, empty, not Parquet, another schema, bad metadata,
not a regular file) is skipped and reported, never fatal; `maintain` moves it to
`STORE/quarantine/`.

Segments hold one row per session with real port numbers; the `eph` summary is a query
(`read_sessions`), so it spans segments.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import itertools
import json
import logging
import os
import re
import socket
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from microseg import duck
from microseg.flows.engines import (
    EPHEMERAL_PORT,
    OUTPUT_SCHEMA,
    AddressClass,
    DuckDBEngine,
    SessionEngine,
    SessionQuery,
    duckdb_session_table,
    quote,
)
from microseg.flows.session_columns import session_columns
from microseg.flows.sessions import SESSION_SCHEMA, sort_sessions
from microseg.model import MicrosegError

STORE_ENV = "MICROSEG_FLOW_STORE"
COMPACTED_FROM = b"microseg.compacted_from"
LAST_SEEN = b"microseg.last_seen_ms"
SEGMENT_GLOB = "seg-*.parquet"
PARTITION_GLOB = "date=*/collector=*"
MERGE_PREFIX = ".merge-"
COLLECTOR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
SEGMENTS = "segments"
QUARANTINE = "quarantine"
COUNTERS = "counters"  # the monitor's counter series (monitor.series), beside the sessions
WRITERS_LOCK = ".writers.lock"
MAINTENANCE_LOCK = ".maintenance.lock"
SMALL_SEGMENT = 8 << 20
READ_ATTEMPTS = 4  # a compaction may replace segments while we read: look again
# How segments are written (README, "Flow benchmarks": measured against Parquet's defaults,
# which dictionary-encode every column and keep statistics of every column): dictionary
# encoding where values repeat (names, addresses, ports, flags), not for counters and times,
# nearly all distinct; a dictionary past 256 KiB (~15,000 addresses) gives way to plain
# text, as one past Parquet's 1 MiB would; no min/max statistics of addresses, which span
# everything in a segment and prune nothing
COUNTERS_AND_TIMES = (
    "fwd_packets",
    "fwd_bytes",
    "rev_packets",
    "rev_bytes",
    "first_seen",
    "last_seen",
)
ADDRESSES = ("src", "dst", "exporter", "rev_exporter")
DICTIONARY_COLUMNS = [name for name in SESSION_SCHEMA.names if name not in COUNTERS_AND_TIMES]
SEGMENT_OPTIONS = dict(
    compression="zstd",
    use_dictionary=DICTIONARY_COLUMNS,
    dictionary_pagesize_limit=256 << 10,
    write_statistics=[name for name in SESSION_SCHEMA.names if name not in ADDRESSES],
)
log = logging.getLogger("microseg.flows")
_Result = TypeVar("_Result")
_counter = itertools.count()


def default_store_dir() -> Path:
    """$MICROSEG_FLOW_STORE, else the user data dir's `flows` (platformdirs)."""
    configured = os.environ.get(STORE_ENV)
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_data_dir("microseg")) / "flows"


def store_to_read(store: Path | None) -> Path:
    """The flow store a reading command was given (default: `default_store_dir()`). One the
    user names must exist: a mistyped path would otherwise read as "nothing collected" (and
    a command that prepares a store would make a new empty one there)."""
    if store is None:
        return default_store_dir()
    if not store.is_dir():
        reason = "not a directory" if store.exists() else "no such directory"
        raise MicrosegError(f"--store {store}: {reason} (a flow store is a directory)")
    check_flow_store(store)
    return store


def check_flow_store(directory: Path) -> None:
    """A directory is a flow store when it holds one of a store's directories, or nothing
    yet. Any other directory (`--store examples`) is a mistake: read, it would show no
    sessions; compacted, it would get a store's lock files and `segments/`."""
    try:
        if any((directory / entry).is_dir() for entry in (SEGMENTS, QUARANTINE, COUNTERS)):
            return
        empty = next(directory.iterdir(), None) is None
    except OSError as error:
        raise MicrosegError(f"flow store {directory}: {error.strerror}") from None
    if not empty:
        raise MicrosegError(
            f"{directory}: not a flow store (no {SEGMENTS}/ in it, and it is not empty): give "
            "the directory `microseg collect --store` writes"
        )


def check_collector_id(text: str) -> str:
    """A collector id names directories and segments: letters, digits, `.`, `_`, `-`."""
    if not COLLECTOR_ID.fullmatch(text):
        raise MicrosegError(
            f"--collector-id {text!r}: expected 1 to 63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return text


def default_collector_id(port: int) -> str:
    """`<host name>-<listen port>`: unique per listening socket on a host (port 0, which the
    kernel picks, gives the process id instead)."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip(".-_") or "host"
    return check_collector_id(f"{host[:50]}-{port or os.getpid()}")


@dataclass(frozen=True)
class BadSegment:
    """A file named like a segment that cannot be read as one, and why."""

    name: str
    reason: str
    path: Path | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


@dataclass(frozen=True)
class _Footer:
    sources: tuple[str, ...]  # microseg.compacted_from
    rows: int
    last_seen_ms: int
    size: int


@dataclass
class StoreScan:
    """One look at the segment directory."""

    directory: Path
    live: list[Path] = field(default_factory=list)  # readable, not superseded, oldest first
    bad: list[BadSegment] = field(default_factory=list)
    superseded: list[Path] = field(default_factory=list)  # a compaction's sources, still here
    ignored: list[str] = field(default_factory=list)  # unsafe compacted_from entries
    footers: dict[str, _Footer] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)  # segment name -> its file

    def rows(self, segments: list[Path]) -> int:
        return sum(self.footers[segment.name].rows for segment in segments)

    def warn(self) -> None:
        """Say what was skipped (stderr, through logging): reads go on without it."""
        if self.bad:
            log.warning(
                "warning: flow store %s: skipped %d bad segment(s): %s",
                self.directory,
                len(self.bad),
                "; ".join(map(str, self.bad)),
            )
        for entry in self.ignored:
            log.warning("warning: flow store %s: %s", self.directory, entry)


@dataclass
class Maintenance:
    """What `FlowStore.maintain` did (or, dry run, would do)."""

    quarantined: list[BadSegment] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    pruned_sessions: int = 0
    stored_sessions: int = 0  # before pruning
    merged: list[str] = field(default_factory=list)
    segments: int = 0  # live segments afterwards
    dry_run: bool = False
    refusal: str = ""  # why retention needs allow_most (--yes), if it does


class FlowStore:
    """A directory of Parquet session segments; `collector_id` makes writes go to that
    collector's partitions (date and collector), so collectors never touch each other's
    files."""

    def __init__(self, directory: Path | str, collector_id: str | None = None):
        self.directory = Path(directory)
        self.segment_dir = self.directory / SEGMENTS
        self.collector_id = None if collector_id is None else check_collector_id(collector_id)

    def open(self) -> FlowStore:
        """Create the layout if needed and repair what a crash can leave behind."""
        try:
            self.segment_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MicrosegError(f"flow store {self.directory}: {error.strerror}") from None
        self._remove_stray_temporaries()
        if self.collector_id is not None:
            # only this collector writes its partitions: its temporaries are a crash's
            pattern = f"date=*/collector={self.collector_id}/.tmp-*"
            for stray in self.segment_dir.glob(pattern):
                with contextlib.suppress(OSError):
                    stray.unlink(missing_ok=True)
        self._remove_superseded(self.scan())
        return self

    def write(
        self, sessions: pa.Table, *, day: date | None = None, in_order: bool = False
    ) -> Path | None:
        """One new segment with these sessions (SESSION_SCHEMA), atomically; None if empty.
        `day`: the UTC day of the partition (default today, as the collector writes; an
        import or `bench/scale.py` writes past days). `in_order`: the caller vouches that
        the sessions are SESSION_SCHEMA rows in sort_sessions' order already (the segment
        writer's are), so they are not sorted again.

        Raises OSError (no space, read-only...) with nothing left behind."""
        if sessions.num_rows == 0:
            return None
        if not in_order:
            sessions = sort_sessions(sessions.cast(SESSION_SCHEMA))
        return self._write_segment(sessions, {}, self._partition(day))

    def segments(self) -> list[Path]:
        """Live segments, oldest first (sources of a finished compaction and bad ones excluded)."""
        return self.scan().live

    def scan(self, known_bad: dict[str, BadSegment] | None = None) -> StoreScan:
        """Read every segment's footer: which are live, bad, superseded."""
        scan = StoreScan(self.directory)
        if not self.segment_dir.is_dir():
            return scan
        known_bad = known_bad or {}
        found = self._listing()
        # oldest first: names start with their creation time, whatever their partition
        for path in sorted(found, key=lambda path: (path.name, str(path))):
            if path.name in known_bad:
                scan.bad.append(known_bad[path.name])
                continue
            if path.name in scan.paths:
                reason = f"another segment has this name: {scan.paths[path.name]}"
                scan.bad.append(BadSegment(path.name, reason, path))
                continue
            try:
                scan.footers[path.name] = _read_footer(path)
                scan.paths[path.name] = path
            except FileNotFoundError:
                continue  # removed since we listed it (a compaction's sources)
            except _Unreadable as error:
                scan.bad.append(BadSegment(path.name, str(error), path))
        superseded = set()
        for name, footer in scan.footers.items():
            for source in footer.sources:
                if is_segment_name(source) and source != name:
                    superseded.add(source)
                else:
                    scan.ignored.append(
                        f"{name}: compacted_from entry {source!r} ignored "
                        "(only names of segments in this store count)"
                    )
        scan.bad = [bad for bad in scan.bad if bad.name not in superseded]
        for name, path in scan.paths.items():
            (scan.superseded if name in superseded else scan.live).append(path)
        return scan

    def compacted_since(self, scan: StoreScan) -> bool:
        """Whether the store holds a compacted segment `scan` did not see. A listing is not
        a snapshot: one taken while a compaction deletes its sources may hold a source and
        miss both the merged segment and a deleted source, so what was read from it may
        lack sessions. (A new collector flush names no sources: no reason to read again.)"""
        for path in self._listing():
            if path.name in scan.paths:
                continue
            try:
                if _read_footer(path).sources:
                    return True
            except (FileNotFoundError, _Unreadable):
                continue
        return False

    def _listing(self) -> list[Path]:
        """The segment files there now, flat and partitioned: one look (see compacted_since)."""
        if not self.segment_dir.is_dir():
            return []
        found = list(self.segment_dir.glob(SEGMENT_GLOB))
        return found + list(self.segment_dir.glob(f"{PARTITION_GLOB}/{SEGMENT_GLOB}"))

    def compact(self, small_bytes: int = SMALL_SEGMENT) -> int:
        """Merge every segment smaller than `small_bytes` into one; returns segments merged."""
        return len(self.maintain(small_bytes=small_bytes).merged)

    def maintain(
        self,
        *,
        retention_seconds: float | None = None,
        allow_most: bool = False,
        dry_run: bool = False,
        small_bytes: int = SMALL_SEGMENT,
        now: float | None = None,
    ) -> Maintenance:
        """Quarantine bad segments, apply retention, merge small segments; one run at a time.

        Retention deletes segments whose newest session was last seen more than
        `retention_seconds` before `now` (exporter time). If that is every segment or more
        than half of the stored sessions, it is refused (MicrosegError) unless `allow_most`.
        `dry_run` computes the same result and changes nothing."""
        with self._maintenance_lock(dry_run):
            scan = self.scan()
            done = Maintenance(dry_run=dry_run, stored_sessions=scan.rows(scan.live))
            doomed = []
            if retention_seconds is not None:
                doomed = self._retention(scan, retention_seconds, now, done)
                if done.refusal and not (allow_most or dry_run):
                    raise MicrosegError(done.refusal)  # before anything is changed
                done.pruned = [segment.name for segment in doomed]
                done.pruned_sessions = scan.rows(doomed)
            if not dry_run:
                self._remove_merge_temporaries()
                self._remove_superseded(scan)
                for segment in doomed:
                    segment.unlink(missing_ok=True)
            done.quarantined = scan.bad if dry_run else self._quarantine(scan.bad)
            live = [segment for segment in scan.live if segment not in doomed]
            small = [s for s in live if scan.footers[s.name].size < small_bytes]
            written = 0
            for partition in sorted({segment.parent for segment in small}):
                together = [segment for segment in small if segment.parent == partition]
                if len(together) < 2:
                    continue  # a partition's small segments merge with each other only
                merged = together if dry_run else self._merge(scan, together, done)
                done.merged += [segment.name for segment in merged]
                written += 1 if merged else 0
            if dry_run:
                done.segments = len(live) - len(done.merged) + written
            else:
                done.segments = len(self.scan().live)
            return done

    # -- internals ------------------------------------------------------------------------

    def _retention(self, scan, retention_seconds, now, done: Maintenance) -> list[Path]:
        cutoff_ms = ((time.time() if now is None else now) - retention_seconds) * 1000
        doomed = [s for s in scan.live if scan.footers[s.name].last_seen_ms < cutoff_ms]
        doomed_rows, stored = scan.rows(doomed), scan.rows(scan.live)
        if doomed and (len(doomed) == len(scan.live) or 2 * doomed_rows > stored):
            what = "all" if len(doomed) == len(scan.live) else "more than half of the"
            done.refusal = (
                f"retention would delete {what} stored sessions ({doomed_rows} of {stored}, "
                f"{len(doomed)} of {len(scan.live)} segments): --dry-run lists them, "
                "--yes deletes them"
            )
        return doomed

    def _merge(self, scan: StoreScan, small: list[Path], done: Maintenance) -> list[Path]:
        """Write one segment with the sessions of `small`, then delete them."""
        tables, merged = [], []
        for segment in small:
            try:
                tables.append(pq.read_table(segment).cast(SESSION_SCHEMA))
                merged.append(segment)
            except FileNotFoundError:
                continue
            except (pa.ArrowException, OSError, ValueError) as error:
                done.quarantined += self._quarantine([BadSegment(segment.name, _reason(error))])
        if len(merged) < 2:
            return []
        # the sources' own sources too: if any survived a crash they stay superseded
        names = {segment.name for segment in merged}
        names.update(s for m in merged for s in scan.footers[m.name].sources if is_segment_name(s))
        self._write_segment(
            sort_sessions(pa.concat_tables(tables)),
            {COMPACTED_FROM: json.dumps(sorted(names)).encode()},
            None if merged[0].parent == self.segment_dir else merged[0].parent,
        )
        for segment in merged:
            segment.unlink(missing_ok=True)
        return merged

    def _quarantine(self, bad: list[BadSegment]) -> list[BadSegment]:
        """Move bad segments out of the read path, into STORE/quarantine/ (kept for a look)."""
        moved = []
        for segment in bad:
            target_dir = self.directory / QUARANTINE
            try:
                target_dir.mkdir(exist_ok=True)
                target = target_dir / segment.name
                for number in itertools.count(1):
                    if not target.exists() and not target.is_symlink():
                        break
                    target = target_dir / f"{segment.name}.{number}"
                os.replace(segment.path or self.segment_dir / segment.name, target)
                moved.append(segment)
            except FileNotFoundError:
                continue
            except OSError as error:
                log.warning("warning: cannot quarantine %s: %s", segment.name, error.strerror)
        return moved

    def _remove_superseded(self, scan: StoreScan) -> None:
        for source in scan.superseded:
            with contextlib.suppress(OSError):  # gone already, or a read-only store
                source.unlink(missing_ok=True)

    def _remove_stray_temporaries(self) -> None:
        """Temporaries a crashed writer left; a live writer holds the lock shared."""
        try:
            with file_lock(self.directory / WRITERS_LOCK, fcntl.LOCK_EX | fcntl.LOCK_NB):
                for stray in self.segment_dir.glob(".tmp-*"):
                    stray.unlink(missing_ok=True)
        except OSError:  # a writer at work (EWOULDBLOCK), or a read-only store
            return

    def _remove_merge_temporaries(self) -> None:
        """What a killed compaction left; called under the maintenance lock."""
        for pattern in (f"{MERGE_PREFIX}*", f"{PARTITION_GLOB}/{MERGE_PREFIX}*"):
            for stray in self.segment_dir.glob(pattern):
                with contextlib.suppress(OSError):
                    stray.unlink(missing_ok=True)

    def _partition(self, day: date | None = None) -> Path | None:
        """This collector's directory for `day` (default today, UTC), None in the flat layout."""
        if self.collector_id is None:
            return None
        when = (day or datetime.now(UTC).date()).strftime("%Y-%m-%d")
        return self.segment_dir / f"date={when}" / f"collector={self.collector_id}"

    @contextlib.contextmanager
    def _maintenance_lock(self, dry_run: bool) -> Iterator[None]:
        try:
            descriptor = os.open(self.directory / MAINTENANCE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            if dry_run and error.errno in (errno.EROFS, errno.EACCES, errno.ENOENT):
                yield  # looking changes nothing: no lock needed
                return
            raise MicrosegError(f"flow store {self.directory}: {error.strerror}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)  # another compaction: wait for it
            yield
        finally:
            os.close(descriptor)

    def _write_segment(
        self, table: pa.Table, metadata: dict[bytes, bytes], partition: Path | None = None
    ) -> Path:
        """Write beside the final name, fsync, rename into place. `partition` None: the flat
        layout. A compaction (metadata names sources) writes `.merge-*` temporaries."""
        directory = partition or self.segment_dir
        directory.mkdir(parents=True, exist_ok=True)
        last_seen = pa.compute.max(table.column("last_seen")).cast(pa.int64()).as_py() or 0
        merging = COMPACTED_FROM in metadata
        metadata = {**metadata, LAST_SEEN: str(last_seen).encode()}
        table = table.replace_schema_metadata(metadata)
        owner = "" if partition is None else partition.name.removeprefix("collector=") + "-"
        process = f"m{os.getpid()}" if merging and owner else str(os.getpid())
        created = time.time_ns() // 1_000_000
        name = f"seg-{created:013d}-{owner}{process}-{next(_counter):06d}.parquet"
        temporary = directory / f"{MERGE_PREFIX if merging else '.tmp-'}{name}"
        final = directory / name
        flat = partition is None
        lock = file_lock(self.directory / WRITERS_LOCK, fcntl.LOCK_SH) if flat else _no_lock()
        with lock:
            try:
                pq.write_table(table, temporary, **SEGMENT_OPTIONS)
                with open(temporary, "rb") as written:
                    os.fsync(written.fileno())
                os.replace(temporary, final)
            except BaseException:
                with contextlib.suppress(OSError):  # a full disk must not keep the part
                    temporary.unlink(missing_ok=True)
                raise
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return final


@contextlib.contextmanager
def _no_lock() -> Iterator[None]:
    yield


@contextlib.contextmanager
def file_lock(path: Path, operation: int) -> Iterator[None]:
    """flock(2) `operation` on the file `path` (made if missing) while the block runs; the
    kernel releases it if the process dies. LOCK_NB: BlockingIOError when it is held."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, operation)
        yield
    finally:
        os.close(descriptor)  # releases the lock


class _Unreadable(Exception):
    """Why a file named like a segment is not one we can read."""


def is_segment_name(name: object) -> bool:
    """A plain segment file name: no directory part, so it names a file in this store."""
    return (
        isinstance(name, str)
        and name.startswith("seg-")
        and name.endswith(".parquet")
        and not any(character in name for character in "/\\\0")
    )


def _reason(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= 120 else text[:117] + "..."


def _read_footer(path: Path) -> _Footer:
    """The segment's footer, checked: a regular Parquet file of SESSION_SCHEMA with our
    metadata. Raises _Unreadable (or FileNotFoundError if it is gone)."""
    try:
        # O_NONBLOCK: a FIFO named like a segment must not hang the reader
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as error:
        if error.errno == errno.ENOENT:
            raise
        if error.errno == errno.ELOOP:
            raise _Unreadable("a symbolic link, not a segment") from None
        raise _Unreadable(error.strerror) from None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
        os.close(descriptor)
        raise _Unreadable("empty file" if stat.S_ISREG(info.st_mode) else "not a regular file")
    with os.fdopen(descriptor, "rb") as file:
        try:
            parquet = pq.ParquetFile(file)
            schema, rows = parquet.schema_arrow, parquet.metadata.num_rows
        except (pa.ArrowException, OSError, ValueError) as error:
            raise _Unreadable(f"not a readable Parquet file: {_reason(error)}") from None
    if not schema.remove_metadata().equals(SESSION_SCHEMA):
        raise _Unreadable(f"not a session segment: {_schema_difference(schema)}")
    metadata = schema.metadata or {}
    sources: list[str] = []
    if COMPACTED_FROM in metadata:
        try:
            listed = json.loads(metadata[COMPACTED_FROM])
        except ValueError:
            listed = None
        if not isinstance(listed, list) or not all(isinstance(s, str) for s in listed):
            raise _Unreadable("bad metadata: microseg.compacted_from is not a list of names")
        sources = listed
    try:
        last_seen = int(metadata.get(LAST_SEEN, b"0"))
    except ValueError:
        raise _Unreadable("bad metadata: microseg.last_seen_ms is not a number") from None
    return _Footer(tuple(sources), rows, last_seen, info.st_size)


def _schema_difference(schema: pa.Schema) -> str:
    for expected in SESSION_SCHEMA:
        index = schema.get_field_index(expected.name)
        if index < 0:
            return f"no column {expected.name}"
        if not schema.field(index).type.equals(expected.type):
            return f"column {expected.name} is {schema.field(index).type}, not {expected.type}"
    extra = [name for name in schema.names if name not in SESSION_SCHEMA.names]
    return f"extra column(s) {', '.join(extra)}" if extra else "columns in another order"


def read_sessions(
    source: Path | str | None = None,
    *,
    ephemeral_port: int | None = EPHEMERAL_PORT,
    vrf: str | None = None,
    protocol: str | None = None,
    src: str | None = None,
    dst: str | None = None,
    port: int | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    until: datetime | None = None,
    client_port_cuts: tuple[int, ...] | None = None,
    address_classes: tuple[AddressClass, ...] = (),
    replay_cuts: tuple[int, ...] | None = None,
    engine: SessionEngine | None = None,
) -> pa.Table:
    """Sessions from a flow store directory, a Parquet, CSV or JSON-lines file.

    Columns (OUTPUT_SCHEMA): vrf, protocol, src, sport, dst, dport, fwd_packets, fwd_bytes,
    rev_packets, rev_bytes, complete, half_open, first_seen, last_seen, exporter,
    rev_exporter, fwd_tcp_flags, rev_tcp_flags, sessions. `src` is the initiator (client);
    `sport`/`dport` are text: a port number, or "eph" for a summary row.

    With `ephemeral_port` (default 49152, like the vZTX) every session whose client port is
    at or above it while the server port is below it is folded into one row per
    (VRF, protocol, client, server, server port) with `sport` "eph", summed counters,
    `complete`/`half_open`/`sessions` counts and the earliest first / latest last seen;
    None keeps every session as it is. Files need at least protocol, src, dst and dport;
    `packets`/`bytes` are read as fwd_packets/fwd_bytes; missing counters are 0, a missing
    vrf is "default". Filters: exact vrf, protocol, src, dst; `port` matches either port;
    `since` keeps sessions last seen at or after it, `until` those first seen at or before it
    (both before the summary). Rows come sorted by first seen, then key; `limit` keeps the
    first rows only. `client_port_cuts` folds the summary further for the Policy Builder,
    keeping examples per `address_classes` (`flows.engines.builder_rows`); `replay_cuts`
    folds it for what-if (`flows.engines.replay_rows`: with a column `summary_rows`).

    `engine` runs the query over a store's segments (default: DuckDB, in this process); a
    session file is always read with DuckDB.
    """
    query = SessionQuery(
        ephemeral_port,
        vrf,
        protocol,
        src,
        dst,
        port,
        since,
        limit,
        until,
        client_port_cuts,
        address_classes,
        replay_cuts,
    )
    path = default_store_dir() if source is None else Path(source)
    if source is None and not path.exists():
        return OUTPUT_SCHEMA.empty_table()  # nothing collected yet
    engine = engine or DuckDBEngine()
    if path.is_dir():
        return read_store(path, engine, lambda segments: engine.table(segments, query))
    _file_engine(path, engine)
    connection = duck.connect()
    columns = _load(connection, path)
    # A session file is checked row by row, in file order, by the one session-table
    # reader before it is summarised: a bad value is an error naming its row.
    session_columns(_raw_rows(connection, path), where=str(path))
    try:
        return duckdb_session_table(connection, columns, query)
    except duckdb.Error as error:
        raise MicrosegError(f"{path}: cannot read sessions: {duck.said(error)}") from None


def session_batches(
    source: Path | str | None = None,
    *,
    ephemeral_port: int | None = EPHEMERAL_PORT,
    engine: SessionEngine | None = None,
) -> Iterator[pa.RecordBatch]:
    """`read_sessions` in bounded chunks, in the same order (OUTPUT_SCHEMA), for an export:
    with Spark the rows stream from the cluster and never sit in this process all at once.
    Bad segments are found before the first chunk (the engine sorts, so it has read every
    segment by then)."""
    engine = engine or DuckDBEngine()
    path = default_store_dir() if source is None else Path(source)
    if not path.is_dir():
        if source is not None:
            _file_engine(path, engine)
        return iter(read_sessions(source, ephemeral_port=ephemeral_port).to_batches())
    query = SessionQuery(ephemeral_port)

    def started(segments: list[Path]) -> Iterator[pa.RecordBatch]:
        """The chunks, the first one computed here (so a bad segment is found here)."""
        batches = engine.batches(segments, query)
        first = next(batches, None)
        return iter(()) if first is None else _rest(path, engine, first, batches)

    return read_store(path, engine, started)


def _rest(
    path: Path, engine: SessionEngine, first: pa.RecordBatch, batches: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    yield first
    try:
        yield from batches
    except engine.errors as error:  # the segments were read before the first chunk
        raise MicrosegError(f"{path}: cannot read sessions: {engine.describe(error)}") from None


def _file_engine(path: Path, engine: SessionEngine) -> None:
    if not path.exists():
        raise MicrosegError(f"{path}: no such session file or flow store directory")
    if not path.is_file():
        # A session file is read more than once (columns, rows, summary): a FIFO would
        # wait for a writer at every open, a device never end. As policy files are.
        raise MicrosegError(
            f"{path}: not a regular file (a FIFO, device or socket): sessions are read from "
            "files or flow store directories"
        )
    if engine.name != "duckdb":
        raise MicrosegError(
            f"{path}: --engine {engine.name} reads flow store directories; "
            "a session file is read with --engine duckdb"
        )


def read_store(path: Path, engine: SessionEngine, run: Callable[[list[Path]], _Result]) -> _Result:
    """`run` over a store's live segments. Bad segments are skipped and reported (logging);
    a segment whose pages turn out unreadable is found by reading each one, then skipped."""
    check_flow_store(path)
    store = FlowStore(path)
    known_bad: dict[str, BadSegment] = {}
    for _ in range(READ_ATTEMPTS):
        scan = store.scan(known_bad)
        if not scan.live:
            scan.warn()
            return run([])
        try:
            result = run(scan.live)
        except engine.errors as error:
            unreadable = _unreadable(scan.live)
            if not unreadable and all(segment.exists() for segment in scan.live):
                raise MicrosegError(
                    f"{path}: cannot read sessions: {engine.describe(error)}"
                ) from None
            known_bad.update(unreadable)  # and look again: a compaction may have run
            continue
        if store.compacted_since(scan):
            continue  # the listing may have missed some of its sources: read again
        scan.warn()
        return result
    raise MicrosegError(f"{path}: cannot read sessions: the segments kept changing while read")


def _unreadable(segments: list[Path]) -> dict[str, BadSegment]:
    found = {}
    for segment in segments:
        try:
            pq.read_table(segment)
        except FileNotFoundError:
            continue
        except (pa.ArrowException, OSError, ValueError) as error:
            found[segment.name] = BadSegment(segment.name, f"unreadable data: {_reason(error)}")
    return found


def _raw_rows(connection, path: Path) -> pa.Table:
    try:
        return connection.sql("SELECT * FROM raw").to_arrow_table()
    except duckdb.Error as error:
        raise MicrosegError(f"{path}: cannot read sessions: {duck.said(error)}") from None


def _load(connection, path: Path) -> list[str]:
    """Register `raw` for a session file; its column names."""
    if not path.exists():
        raise MicrosegError(f"{path}: no such session file or flow store directory")
    if path.suffix == ".parquet":
        relation = f"read_parquet('{quote(path)}')"
    elif path.suffix == ".csv":
        relation = _csv_relation(path)
    elif path.suffix in (".jsonl", ".json", ".ndjson"):
        relation = f"read_json('{quote(path)}', format = 'newline_delimited')"
    else:
        raise MicrosegError(
            f"{path}: sessions come from a store directory or a .parquet, .csv or .jsonl file"
        )
    try:
        connection.execute(f"CREATE TEMP VIEW raw AS SELECT * FROM {relation}")
        columns = [row[0] for row in connection.execute("DESCRIBE raw").fetchall()]
    except duckdb.Error as error:
        raise MicrosegError(f"{path}: cannot read sessions: {duck.said(error)}") from None
    missing = [name for name in ("protocol", "src", "dst", "dport") if name not in columns]
    if missing:
        raise MicrosegError(f"{path}: missing session field(s) {', '.join(missing)}")
    return columns


MAX_CSV_HEADER_BYTES = 1 << 20  # a header row longer than this is no session CSV's


def _csv_relation(path: Path) -> str:
    """read_csv over a session CSV: the columns its header names, each as text, and no
    dialect sniffing. DuckDB's sniffer, given a file whose last row was cut short, took
    each whole line for one column and the session fields for missing."""
    try:
        with path.open("rb") as file:
            first = file.readline(MAX_CSV_HEADER_BYTES)
        header = next(csv.reader([first.decode("utf-8-sig")]), [])
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise MicrosegError(f"{path}: cannot read its header row: {error}") from None
    if not header:
        raise MicrosegError(f"{path}: empty: a session CSV starts with a header row")
    columns = ", ".join(f"'{quote(name)}': 'VARCHAR'" for name in header)
    return (
        f"read_csv('{quote(path)}', header = true, auto_detect = false, delim = ',', "
        f"quote = '\"', escape = '\"', columns = {{{columns}}})"
    )


def iso_millis(value: datetime | None) -> str | None:
    """A session time as JSON shows it: ISO 8601 UTC with milliseconds (`...T18:52:07.120Z`)."""
    if value is None:
        return None
    return (
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    )


def session_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows for JSON: ports are numbers, or "eph"; times ISO 8601 UTC with milliseconds."""
    rows = table.to_pylist()
    for row in rows:
        for name in ("sport", "dport"):
            if row[name] is not None and row[name].isdigit():
                row[name] = int(row[name])
        row["first_seen"], row["last_seen"] = (
            iso_millis(row["first_seen"]),
            iso_millis(row["last_seen"]),
        )
    return rows

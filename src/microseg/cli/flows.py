"""Flow commands: `collect` (IPFIX / NetFlow v9 collector) and `sessions list|export|compact`."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack, closing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from microseg.cli.app import FLOWS, app, demo_step
from microseg.cli.common import (
    ENGINE_HELP,
    JSON_OPTION_HELP,
    SPARK_CONF_HELP,
    SPARK_MASTER_HELP,
    TIME_HELP,
    console,
    counted,
    err_console,
    output_name,
    output_option,
    session_engine,
    status_console,
    write_output,
)
from microseg.model import MicrosegError

if TYPE_CHECKING:
    import pyarrow as pa

STORE_HELP = "Flow store directory (default: $MICROSEG_FLOW_STORE or the user data dir)."

sessions_app = typer.Typer(
    help="The session table from collected flows.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(sessions_app, name="sessions", rich_help_panel=FLOWS)


@app.command(rich_help_panel=FLOWS)
def collect(
    listen: list[str] = typer.Option(
        ["127.0.0.1:4739"],
        "--listen",
        help="HOST:PORT to receive on; repeatable (IPFIX and NetFlow v9 on different ports).",
    ),
    store: Path | None = typer.Option(None, "--store", help=STORE_HELP),
    stats: bool = typer.Option(False, "--stats", help="Print counters at every flush."),
    as_json: bool = typer.Option(False, "--json", help="Counters as JSON lines on stdout."),
    flush_interval: float = typer.Option(
        5.0, "--flush-interval", min=0.05, help="Seconds between writes of expired sessions."
    ),
    inactive_timeout: float = typer.Option(
        15.0, "--inactive-timeout", min=0.0, help="Seconds without a record before a session ends."
    ),
    active_timeout: float = typer.Option(
        1800.0, "--active-timeout", min=0.0, help="Seconds after which a session is written out."
    ),
    max_sessions: int = typer.Option(
        1_000_000,
        "--max-sessions",
        min=1,
        help="Active sessions at most; past it the least recently updated are written out early.",
    ),
    max_unwritten: int = typer.Option(
        1_000_000,
        "--max-unwritten",
        min=0,
        help="Sessions kept in memory while the store cannot take them (full, read-only).",
    ),
    collector_id: str | None = typer.Option(
        None,
        "--collector-id",
        help="Names this collector's partitions in a shared store "
        "(default: <host name>-<listen port>).",
    ),
    metrics: str | None = typer.Option(
        None,
        "--metrics",
        help="Serve Prometheus metrics on [HOST:]PORT (default host 127.0.0.1), e.g. 9465.",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        max=64,
        help="Receive processes on each address (SO_REUSEPORT; the kernel keeps each "
        "exporter on one); 1: one process, as before.",
    ),
    receive_buffer: int = typer.Option(
        64 << 20,
        "--receive-buffer",
        min=4096,
        max=1 << 31,
        help="Socket receive buffer in bytes, per socket (what the kernel queues while "
        "the collector is busy).",
    ),
    receive_queue: int = typer.Option(
        64 << 20,
        "--receive-queue",
        min=65536,
        max=1 << 40,
        help="Bytes of datagrams read off the sockets and waiting to be decoded, at most "
        "(all workers together); past it reading pauses and the socket buffers fill.",
    ),
) -> None:
    """Receive IPFIX / NetFlow v9 until SIGINT or SIGTERM; sessions go to the flow store.

    Example: microseg collect --listen 127.0.0.1:4739 --stats --metrics 9465
    """
    from microseg.flows.collector import CollectorSettings, FlowCollector, parse_listen, run
    from microseg.flows.flowstore import (
        FlowStore,
        check_collector_id,
        check_flow_store,
        default_collector_id,
        default_store_dir,
    )
    from microseg.flows.sessions import SessionSettings
    from microseg.flows.workers import combine_stats, worker_ids

    addresses = [parse_listen(text) for text in listen]
    collector_id = (
        default_collector_id(addresses[0][1])
        if collector_id is None
        else check_collector_id(collector_id)
    )
    store_dir = store or default_store_dir()
    if store_dir.is_dir():
        check_flow_store(store_dir)  # a directory of other files is no place for segments
    settings = CollectorSettings(
        flush_interval=flush_interval,
        receive_buffer=receive_buffer,
        # memory bounds are the collector's: its workers share them
        receive_queue=max(65536, receive_queue // workers),
        max_unwritten=max_unwritten // workers,
        sessions=SessionSettings(inactive_timeout, active_timeout, max(1, max_sessions // workers)),
    )
    ids = [collector_id] if workers == 1 else worker_ids(collector_id, workers)
    flow_store = FlowStore(store_dir, ids[0])
    collector = FlowCollector(flow_store, settings)
    flow_store.scan().warn()  # bad segments: said at start, skipped by every reader

    def ready(addresses: list[tuple]) -> None:
        where = ", ".join(f"{address[0]}:{address[1]}" for address in addresses)
        names = collector_id if workers == 1 else f"{collector_id} ({workers} workers)"
        err_console.print(
            f"listening on {where}, store {store_dir}, collector {names}", markup=False
        )

    exposition = None
    supervisor = None
    with ExitStack() as stack:
        if metrics is not None:
            from microseg.monitor.metrics import (
                CollectorMetrics,
                MetricsServer,
                parse_metrics_address,
            )

            metrics_host, metrics_port = parse_metrics_address(metrics)
            exposition = CollectorMetrics(collector.stats())
            server = stack.enter_context(MetricsServer([exposition], metrics_host, metrics_port))
            err_console.print(f"metrics on {server.url}", markup=False)

        def report(current) -> None:
            figures = current.stats() if stats or exposition else {}
            if exposition is not None:
                exposition.update(figures)
            if stats:
                _print_stats(figures, as_json)

        if workers == 1:
            run(collector, addresses, on_ready=ready, on_flush=report)
            final = collector.stats()
        else:
            from microseg.flows.workers import Supervisor

            def make_collector(index: int) -> FlowCollector:
                return FlowCollector(FlowStore(store_dir, ids[index - 1]), settings)

            supervisor = Supervisor(make_collector, addresses, workers, receive_buffer)

            def worker_report(index: int, figures: dict) -> None:
                if exposition is not None:
                    exposition.update(combine_stats(list(supervisor.latest.values())))
                if stats:
                    _print_stats({"worker": ids[index - 1], **figures}, as_json)

            final = supervisor.run(on_ready=ready, on_stats=worker_report)
    if as_json:
        sys.stdout.write(json.dumps(final, sort_keys=True) + "\n")
    else:
        _print_stats(final, False)
    lost = final.get("sessions_unwritten", 0) + final.get("sessions_dropped", 0)
    write_error = supervisor.last_write_error if supervisor else collector.last_write_error
    if lost:
        raise MicrosegError(
            f"{lost} sessions could not be stored in {store_dir} "
            f"({write_error or 'see above'}); everything stored before is intact"
        )
    if supervisor and supervisor.deaths:
        raise MicrosegError(
            f"{len(supervisor.deaths)} of {workers} workers died (said above); "
            "the segments they wrote are intact"
        )


def _print_stats(stats: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(stats, sort_keys=True) + "\n")
        sys.stdout.flush()
        return
    line = (
        (f"worker {stats['worker']}: " if "worker" in stats else "")
        + f"datagrams {stats['datagrams']}  records {stats['records']}  "
        f"decode errors {stats['decode_errors']}  "
        f"unknown-template sets {stats['unknown_template_sets']}  "
        f"sessions active {stats['sessions_active']} written {stats['sessions_written']} "
        f"evicted {stats['sessions_evicted']}"
    )
    trouble = [
        f"{name.replace('_', ' ')} {stats[name]}"
        for name in (
            "sessions_unwritten",
            "write_failures",
            "sessions_dropped",
            "records_rejected",
            "counters_saturated",
            "batch_errors",
            "receive_queue_full",
        )
        if stats[name]
    ]
    if trouble:
        line += "\n  " + "  ".join(trouble)
    for exporter, counters in stats["exporters"].items():
        line += (
            f"\n  exporter {exporter}: datagrams {counters['datagrams']} records "
            f"{counters['records']} sequence gaps {counters['sequence_gaps']} "
            f"lost records {counters['lost_records']} lost datagrams {counters['lost_datagrams']}"
        )
    err_console.print(line)


@sessions_app.command("list")
def list_sessions(
    store: Path | None = typer.Option(None, "--store", help=STORE_HELP + " Or a session file."),
    vrf: str | None = typer.Option(None, "--vrf"),
    proto: str | None = typer.Option(None, "--proto", help="tcp, udp, icmp, ... or a number."),
    src: str | None = typer.Option(None, "--src", help="Client (initiator) address."),
    dst: str | None = typer.Option(None, "--dst", help="Server address."),
    port: int | None = typer.Option(None, "--port", min=0, max=65535, help="Either port."),
    since: str | None = typer.Option(None, "--since", help=f"Last seen at or after: {TIME_HELP}."),
    no_eph: bool = typer.Option(False, "--no-eph", help="Keep ephemeral client ports."),
    limit: int | None = typer.Option(
        None,
        "--limit",
        min=1,
        max=2**63 - 1,
        help="Only the first N rows, in the table's order (a page of a large store).",
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP + " (JSON lines)"),
    engine: str = typer.Option("duckdb", "--engine", help=ENGINE_HELP),
    spark_master: str | None = typer.Option(None, "--spark-master", help=SPARK_MASTER_HELP),
    spark_conf: list[str] = typer.Option([], "--spark-conf", help=SPARK_CONF_HELP),
) -> None:
    """The session table, like the vZTX's `show firewall distributed instance session-table`.

    Example: microseg sessions list --proto udp --port 53
    """
    from microseg.builder.times import parse_moment
    from microseg.flows.flowstore import EPHEMERAL_PORT, read_sessions, session_rows

    moment = None if since is None else parse_moment(since, "--since", datetime.now(UTC))
    with closing(session_engine(engine, spark_master, spark_conf)) as reader:
        _say_if_nothing_collected(store)  # after the options are checked
        table = read_sessions(
            store,
            ephemeral_port=None if no_eph else EPHEMERAL_PORT,
            vrf=vrf,
            protocol=proto,
            src=src,
            dst=dst,
            port=port,
            since=moment,
            limit=limit,
            engine=reader,
        )
    if as_json:
        for row in session_rows(table):
            sys.stdout.write(json.dumps(row) + "\n")
        return
    print_session_table(table)


def _say_if_nothing_collected(store: Path | None) -> None:
    """The default store not being there reads as an empty table (nothing collected yet); say
    where the sessions would be, on stderr, so that an empty answer is not a puzzle."""
    from microseg.flows.flowstore import default_store_dir

    default = default_store_dir()
    if store is None and not default.exists():
        err_console.print(
            f"note: no flow store at {default} yet: `microseg collect` writes "
            "there (or give --store DIR; MICROSEG_FLOW_STORE sets the default)",
            markup=False,
            highlight=False,
        )


def print_session_table(table: pa.Table) -> None:
    """Print at the table's natural width: EOS prints it unwrapped, and so do we."""
    from rich.console import Console
    from rich.measure import Measurement

    legend, grid = session_table(table)
    width = Measurement.get(console, console.options.update_width(1000), grid).maximum
    console.print(legend)
    Console(width=max(width, console.width), highlight=False).print(grid)


@sessions_app.command("export")
def export_sessions(
    parquet: str | None = output_option("--parquet", help_text="Write a Parquet file."),
    csv: str | None = output_option("--csv", help_text="Write a CSV file."),
    store: Path | None = typer.Option(None, "--store", help=STORE_HELP),
    no_eph: bool = typer.Option(False, "--no-eph", help="Keep ephemeral client ports."),
    engine: str = typer.Option("duckdb", "--engine", help=ENGINE_HELP),
    spark_master: str | None = typer.Option(None, "--spark-master", help=SPARK_MASTER_HELP),
    spark_conf: list[str] = typer.Option([], "--spark-conf", help=SPARK_CONF_HELP),
) -> None:
    """Write the session table for `whatif` and `recommend`.

    The rows are written in chunks as they come: with --engine spark they stream from Spark
    and never sit in this process all at once.

    Example: microseg sessions export --parquet sessions.parquet
    """
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from microseg.flows.flowstore import EPHEMERAL_PORT, OUTPUT_SCHEMA, session_batches

    if (parquet is None) == (csv is None):
        raise MicrosegError("sessions export: give exactly one of --parquet FILE or --csv FILE")
    rows = 0

    def write(file, writer_class, schema, convert) -> None:
        nonlocal rows
        with writer_class(file, schema) as writer:
            for batch in batches:
                writer.write(convert(batch))
                rows += batch.num_rows

    with closing(session_engine(engine, spark_master, spark_conf)) as reader:
        _say_if_nothing_collected(store)  # after the options are checked
        batches = session_batches(
            store, ephemeral_port=None if no_eph else EPHEMERAL_PORT, engine=reader
        )
        reads = ("session file", store)
        if parquet is not None:
            write_output(
                parquet,
                lambda file: write(file, pq.ParquetWriter, OUTPUT_SCHEMA, _as_table),
                reads,
                binary="Parquet",
            )
        elif csv is not None:
            write_output(
                csv,
                lambda file: write(file, pa_csv.CSVWriter, _text_times_schema(), _with_text_times),
                reads,
            )
    output = parquet or csv or ""
    status_console(output).print(f"{output_name(output)}: {rows} session rows", markup=False)


@sessions_app.command("compact")
def compact_sessions(
    store: Path | None = typer.Option(None, "--store", help=STORE_HELP),
    retention_days: float | None = typer.Option(
        None,
        "--retention-days",
        min=0.0,
        help="Also delete segments whose newest session was last seen more than N days ago.",
    ),
    yes: bool = typer.Option(
        False, "--yes", help="Let retention delete every session or more than half of them."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Say what would be done; change nothing."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Quarantine bad segments, apply retention, merge small segments into one.

    Example: microseg sessions compact --retention-days 30 --dry-run
    """
    from microseg.cli.common import emit_json
    from microseg.flows.flowstore import FlowStore, store_to_read

    flow_store = FlowStore(store_to_read(store))
    if not dry_run:
        flow_store.open()
    done = flow_store.maintain(
        retention_seconds=None if retention_days is None else retention_days * 86400,
        allow_most=yes,
        dry_run=dry_run,
    )
    if as_json:
        emit_json(
            {
                "dry_run": done.dry_run,
                "quarantined": [{"segment": b.name, "reason": b.reason} for b in done.quarantined],
                "pruned": len(done.pruned),
                "pruned_sessions": done.pruned_sessions,
                "stored_sessions": done.stored_sessions,
                "merged": len(done.merged),
                "segments": done.segments,
            }
        )
        return
    for bad in done.quarantined:
        state = "would be quarantined" if dry_run else "quarantined"
        console.print(f"{state}: {bad}", markup=False)
    if not dry_run:
        console.print(
            f"merged {len(done.merged)} segments, pruned {len(done.pruned)} "
            f"({done.pruned_sessions} of {done.stored_sessions} sessions); "
            f"{done.segments} segments now",
            markup=False,
        )
        return
    lines = [
        f"dry run: {len(done.merged)} segments would be merged, {len(done.pruned)} would be "
        f"pruned ({done.pruned_sessions} of {done.stored_sessions} sessions); "
        f"{done.segments} segments after"
    ]
    lines += [f"  would be pruned: {name}" for name in done.pruned]
    if done.refusal:
        lines.append("needs --yes: " + done.refusal.split(":")[0])
    console.print("\n".join(lines), markup=False)


def _text_times_schema() -> pa.Schema:
    """The CSV's columns: the session table's, with times as ISO 8601 text."""
    import pyarrow as pa

    from microseg.flows.flowstore import OUTPUT_SCHEMA

    return pa.schema(
        [
            field.with_type(pa.string()) if field.name in ("first_seen", "last_seen") else field
            for field in OUTPUT_SCHEMA
        ]
    )


def _as_table(batch: pa.RecordBatch) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_batches([batch])


def _with_text_times(batch: pa.RecordBatch) -> pa.Table:
    import pyarrow as pa

    from microseg.flows.flowstore import iso_millis

    table = _as_table(batch)
    for name in ("first_seen", "last_seen"):
        index = table.schema.get_field_index(name)
        texts = pa.array([iso_millis(v) for v in table.column(name).to_pylist()], pa.string())
        table = table.set_column(index, name, texts)
    return table


def session_table(table: pa.Table):
    """The vZTX session-table layout: two lines per session (forward, then reverse).

    Returns the legend text and the rich table."""
    from rich import box
    from rich.console import JustifyMethod
    from rich.markup import escape
    from rich.table import Table

    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, show_lines=False)
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("VRF", "left"),
        ("Proto", "left"),
        ("Source/\nDestination", "left"),
        ("Fwd/Rev\nSrc VTEP IP", "left"),
        ("Fwd/Rev\nPkts", "right"),
        ("Fwd/Rev\nBytes", "right"),
        ("Complete", "right"),
        ("Half-Open", "right"),
        ("Start Time", "right"),
    )
    for header, justify in columns:
        grid.add_column(header, justify=justify, no_wrap=True)
    for row in table.to_pylist():
        started = row["first_seen"]
        cells = (
            row["vrf"] or "",
            row["protocol"].upper(),
            f"{_endpoint(row['src'], row['sport'])}\n{_endpoint(row['dst'], row['dport'])}",
            f"{row['exporter']}\n{row['rev_exporter']}",
            f"{row['fwd_packets']}\n{row['rev_packets']}",
            f"{row['fwd_bytes']}\n{row['rev_bytes']}",
            str(row["complete"]),
            str(row["half_open"]),
            started.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if started else "",
        )
        grid.add_row(*map(escape, cells))  # text, not markup: `[fe80::1]:53` is no style tag
    total = sum(table.column("sessions").to_pylist()) if table.num_rows else 0
    return f"Legend\neph - Ephemeral port\n\nSessions: {total}", grid


def _endpoint(address: str, port: str) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@demo_step(50, "5. Flows: the lab's traffic -> softflowd -> IPFIX collector -> session table")
def _demo_flows(context) -> None:
    from microseg.flows.demo import SEED_LAB_IPFIX, SEED_LAB_PCAP, run_demo
    from microseg.flows.replay import softflowd_available

    source = (
        f"softflowd replays {SEED_LAB_PCAP.name} (the lab's traffic)"
        if softflowd_available()
        else f"{SEED_LAB_IPFIX.name} (softflowd's IPFIX export of the lab's traffic) is sent"
    )
    console.print(
        f"{source} to a collector on a loopback port, which writes the session table to the "
        "flow store. `microseg sessions list` prints it in the vZTX layout; in short:",
        markup=False,
    )
    print_session_summary(run_demo(context.workdir))


def print_session_summary(table: pa.Table) -> None:
    """One line per session row: client, server, packets and bytes each way, state."""
    from rich import box
    from rich.console import JustifyMethod
    from rich.markup import escape
    from rich.table import Table

    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("proto", "left"),
        ("client", "left"),
        ("server", "left"),
        ("packets", "right"),
        ("bytes", "right"),
        ("sessions", "right"),
        ("state", "left"),
    )
    for header, justify in columns:
        grid.add_column(header, justify=justify, no_wrap=True)
    for row in table.to_pylist():
        state = "complete" if row["complete"] else "half-open" if row["half_open"] else ""
        cells = (
            row["protocol"],
            _endpoint(row["src"], row["sport"]),
            _endpoint(row["dst"], row["dport"]),
            f"{row['fwd_packets']}/{row['rev_packets']}",
            f"{row['fwd_bytes']}/{row['rev_bytes']}",
            str(row["sessions"]),
            state,
        )
        grid.add_row(*map(escape, cells))
    total = sum(table.column("sessions").to_pylist()) if table.num_rows else 0
    console.print(
        f"{counted(total, 'session')} in {counted(table.num_rows, 'row')}; "
        "packets and bytes client->server/server->client; eph: an ephemeral client port",
        markup=False,
    )
    console.print(grid)

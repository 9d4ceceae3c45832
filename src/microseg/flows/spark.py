"""The Spark session engine: the session-table query as a Spark SQL job.

Spark reads the store's live segments (the list `read_sessions` picked: complete segments
only, bad ones skipped) as Parquet, runs the shared session-table SQL (`flows.engines`) and
returns the result: the whole (summarised) table as Arrow for a list, `recommend` or
`whatif`, or bounded chunks through `toLocalIterator` for an export, so the driver never
holds every row at once.

pyspark is imported only here, and only when a Spark engine is first used. The master is
`--spark-master`, else $MICROSEG_SPARK_MASTER, else `local[*]`; settings come from
$MICROSEG_SPARK_CONF (`k=v` pairs separated by blanks, shell quoting) and then `--spark-conf
k=v` (repeatable; the later wins). A local master binds the driver to 127.0.0.1 and starts no
web UI, so nothing leaves loopback; a cluster master gets what the user sets. The store must
be at the same path on the driver and every executor (a shared file system): the driver
lists and checks the segments, the executors read them.

The JVM's own output (its start-up notes, log4j) goes to an unnamed temporary file, shown
only if the JVM fails to start: the command's output stays the command's.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import os
import re
import shlex
import shutil
import sys
import tempfile
import weakref
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from microseg.flows.engines import (
    OUTPUT_SCHEMA,
    SPARK,
    SessionQuery,
    output_schema,
    session_sql_parts,
)
from microseg.flows.sessions import SESSION_SCHEMA
from microseg.model import MicrosegError

if TYPE_CHECKING:
    import numpy as np

    TaskStep = Callable[[pa.Table, np.ndarray, str], pa.Table]

MASTER_ENV = "MICROSEG_SPARK_MASTER"
CONF_ENV = "MICROSEG_SPARK_CONF"
DEFAULT_MASTER = "local[*]"
CHUNK_ROWS = 65_536  # rows per exported chunk
# spark://host:port (standalone), k8s://https://host:port (Kubernetes), yarn, local[N|*][,F]
_MASTER = re.compile(
    r"local(\[(\*|[1-9][0-9]{0,5})(,[1-9][0-9]{0,3})?\])?|yarn|(spark|k8s|mesos)://[!-~]+"
)
_KEY = re.compile(r"spark\.[A-Za-z0-9_.-]+")
# Hadoop takes these in a path for a glob pattern or a URI scheme: refused, not escaped
_PATH_SPECIALS = set("*?[]{}\\:")
_LOOPBACK = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}
_QUIET = {
    "spark.app.name": "microseg",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}
# Arrow types as Spark SQL names them
_SPARK_TYPES = {
    "string": "STRING",
    "bool": "BOOLEAN",
    "int8": "TINYINT",
    "int32": "INT",
    "int64": "BIGINT",
    "timestamp[ms, tz=UTC]": "TIMESTAMP",
    "list<item: int64>": "ARRAY<BIGINT>",
    "list<item: string>": "ARRAY<STRING>",
}
_TIMES = ("first_seen", "last_seen")


def spark_ddl(schema: pa.Schema) -> str:
    """`schema` in Spark's DDL (`name` TYPE, ...): what Spark reads or a task returns."""
    return ", ".join(f"`{f.name}` {_SPARK_TYPES[str(f.type)]}" for f in schema)


# the segments' columns as Spark reads them: no schema inference from every footer
SEGMENT_DDL = spark_ddl(SESSION_SCHEMA)


@dataclass(frozen=True)
class SparkSettings:
    """Where Spark runs and with which settings (`spark.*` keys, in order)."""

    master: str = DEFAULT_MASTER
    conf: tuple[tuple[str, str], ...] = ()

    @property
    def local(self) -> bool:
        return self.master.startswith("local")

    def spark_conf(self) -> dict[str, str]:
        """Ours first (quiet; loopback for a local master), then the user's."""
        conf = {**_QUIET, **(_LOOPBACK if self.local else {})}
        conf.update(self.conf)
        return conf


def spark_settings(master: str | None = None, conf: list[str] | None = None) -> SparkSettings:
    """Settings from the options, else the environment; a bad value is a user error."""
    if master is not None:
        where = "--spark-master"
    else:
        master, where = os.environ.get(MASTER_ENV) or DEFAULT_MASTER, f"${MASTER_ENV}"
    if not _MASTER.fullmatch(master):
        raise MicrosegError(
            f"{where} {master!r}: expected local, local[N], local[*], spark://HOST:PORT, "
            "k8s://https://HOST:PORT or yarn"
        )
    pairs = []
    environment = os.environ.get(CONF_ENV, "")
    try:
        words = shlex.split(environment)
    except ValueError as error:
        raise MicrosegError(f"${CONF_ENV}: {error}") from None
    pairs += [_pair(word, f"${CONF_ENV}") for word in words]
    pairs += [_pair(text, "--spark-conf") for text in conf or []]
    return SparkSettings(master, tuple(pairs))


def _pair(text: str, where: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not _KEY.fullmatch(key) or any(c in value for c in "\0\n\r"):
        raise MicrosegError(
            f"{where} {text!r}: expected spark.KEY=VALUE, e.g. spark.executor.memory=4g"
        )
    return key, value


class SparkEngine:
    """The session table with Spark SQL. Give `session` to use a running SparkSession (the
    tests share one); otherwise one is started on first use, from `settings`."""

    name = "spark"

    def __init__(self, settings: SparkSettings | None = None, session: Any = None):
        self.settings = settings or SparkSettings()
        self._session = session
        self._started = False
        self._summary: Any = None  # the summary a fold reads, materialised (see _frame)

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        from py4j.protocol import Py4JError
        from pyspark.errors import PySparkException

        # A driver JVM that died mid-query (most often out of heap) leaves py4j's socket
        # refusing: a ConnectionError, not a Spark error.
        return (PySparkException, Py4JError, ConnectionError)

    def describe(self, error: BaseException) -> str:
        from py4j.protocol import Py4JNetworkError

        if isinstance(error, ConnectionError | Py4JNetworkError):
            memory = dict(self.settings.spark_conf()).get("spark.driver.memory", "1g")
            return (
                f"the Spark driver stopped during the query ({_first_line(error)}); most often "
                f"it ran out of heap (spark.driver.memory is {memory}): give it more, e.g. "
                "--spark-conf spark.driver.memory=6g, or read with --engine duckdb"
            )
        return _first_line(error)

    @property
    def session(self) -> Any:
        if self._session is None:
            self._session, self._started = start_session(self.settings)
        return self._session

    def table(self, segments: list[Path], query: SessionQuery) -> pa.Table:
        schema = output_schema(query)
        if not segments:
            return schema.empty_table()
        return _to_output(self.frame(segments, query).toArrow(), schema)

    def batches(self, segments: list[Path], query: SessionQuery) -> Iterator[pa.RecordBatch]:
        if not segments:
            return iter(())
        # times as epoch microseconds: a Row's time would be a naive local datetime
        selected = [
            f"unix_micros({name}) AS {name}" if name in _TIMES else name
            for name in OUTPUT_SCHEMA.names
        ]
        return _chunks(self.frame(segments, query).selectExpr(*selected).toLocalIterator())

    def close(self) -> None:
        self._release_summary()
        if self._started and self._session is not None:
            self._session.stop()
        self._session, self._started = None, False

    def frame(self, segments: list[Path], query: SessionQuery) -> Any:
        """The query's result as a DataFrame on the cluster, in its order (not collected)."""
        paths = [os.path.abspath(segment) for segment in segments]
        for path in paths:
            special = sorted(_PATH_SPECIALS & set(path))
            if special:
                raise MicrosegError(
                    f"{path}: --engine spark cannot read a path with {' '.join(special)} in it "
                    "(Hadoop takes it for a pattern): move the flow store or use --engine duckdb"
                )
        session = self.session
        raw = session.read.schema(SEGMENT_DDL).parquet(*paths)
        raw.createOrReplaceTempView("raw")
        self._release_summary()
        sql, parameters, fold = session_sql_parts(SESSION_SCHEMA.names, query, SPARK)
        frame = session.sql(sql, args=parameters)
        if fold is None:
            return frame
        # Spark inlines a CTE at every read, and a fold reads the summary several times:
        # each read scanned and summed every session again. The summary is made once
        # instead, checkpointed on the executors' disks (a cluster's too; its lineage cut):
        # the 1 M session bench query took 100 s of JVM CPU so, 120-160 s as one statement
        # (held in executor memory it took 170 s). Released at the next query or at close.
        from pyspark import StorageLevel

        self._summary = frame.localCheckpoint(eager=True, storageLevel=StorageLevel.DISK_ONLY)
        self._summary.createOrReplaceTempView("summary")
        return session.sql(fold)

    def _release_summary(self) -> None:
        """Forget the last fold's summary: Spark's context cleaner removes its blocks once
        nothing refers to them (the checkpoint is no cached query to unpersist)."""
        if self._summary is not None:
            self.session.catalog.dropTempView("summary")
            self._summary = None


def _to_output(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Spark's Arrow (microsecond times, maybe large strings) in the output schema."""
    return table.select(schema.names).cast(schema)


def _chunks(rows: Iterator[Any]) -> Iterator[pa.RecordBatch]:
    """Rows (times as epoch microseconds) in record batches of at most CHUNK_ROWS."""
    micros = pa.timestamp("us", tz="UTC")
    while True:
        chunk = list(itertools.islice(rows, CHUNK_ROWS))
        if not chunk:
            return
        arrays = []
        for field, values in zip(OUTPUT_SCHEMA, zip(*chunk, strict=True), strict=True):
            if pa.types.is_timestamp(field.type):
                arrays.append(pa.array(values, pa.int64()).cast(micros).cast(field.type))
            else:
                arrays.append(pa.array(values, field.type))
        yield pa.RecordBatch.from_arrays(arrays, schema=OUTPUT_SCHEMA)


def arrow_task(
    step: TaskStep, where: str, rows: pa.Schema, parts: pa.Schema
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """A mapInArrow function running microseg's own code on a task's rows: `step(rows,
    positions, where)` with the task's rows (column `_position`: their place in the table's
    order) cast to `rows`, returning a table of `parts`. A MicrosegError (bad data in the
    store) becomes one `error` part naming the task's partition, so the driver reports it in
    one line instead of a Python worker's traceback."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        received = list(batches)  # a task of an empty partition gets none
        table = pa.Table.from_batches(received) if received else None
        if table is None or not table.num_rows:
            return
        positions = table["_position"].to_numpy()
        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        try:
            found = step(
                table.select(rows.names).cast(rows),
                positions,
                f"{where}, Spark partition {partition}",
            )
        except MicrosegError as error:
            found = null_filled(
                parts, {"part": ["error"], "position": [int(positions[0])], "error": [str(error)]}
            )
        yield from found.to_batches()

    return run


def null_filled(schema: pa.Schema, columns: dict[str, list | pa.Array]) -> pa.Table:
    """A table of `schema` with the given columns (of one length), every other one null."""
    rows = len(next(iter(columns.values())))
    return pa.table(
        [
            pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(rows, f.type)
            for f in schema
        ],
        schema=schema,
    )


def ship_microseg(session: Any) -> None:
    """Make this process's microseg what the executors' Python workers import: its modules
    zipped into Spark's files for this context (removed when it stops), once per context.
    So the executors run the driver's code whatever microseg they have installed, if any;
    they need its dependencies (numpy, pyarrow, pydantic, ...) and pandas."""
    from pyspark import SparkFiles

    import microseg

    context = session.sparkContext
    if context in _SHIPPED:
        return
    package = Path(microseg.__file__).parent
    folder = Path(tempfile.mkdtemp(prefix="ship-", dir=SparkFiles.getRootDirectory()))
    archive = folder / "microseg.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for module in sorted(package.rglob("*.py")):
            zipped.write(module, module.relative_to(package.parent))
    context.addPyFile(str(archive))
    _SHIPPED.add(context)


_SHIPPED: weakref.WeakSet = weakref.WeakSet()  # the SparkContexts ship_microseg served


def start_session(settings: SparkSettings) -> tuple[Any, bool]:
    """A SparkSession for these settings, and whether it was started here: one that already
    runs in this process is used as it is (Spark allows one per process). A missing pyspark
    or Java is a user error saying what to install."""
    if importlib.util.find_spec("pyspark") is None:
        raise MicrosegError(
            "--engine spark needs pyspark: pip install 'microseg[spark]' (or pyspark>=4.0)"
        )
    _check_java()
    from pyspark import SparkConf, SparkContext
    from pyspark.errors import PySparkException
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    running = SparkContext._active_spark_context
    if running is not None:
        return SparkSession(running), False
    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        logging.getLogger(name).disabled = True  # the error reaches the user once, from us
    if settings.local:
        # Spark resolves its own host name unless told: a local session stays on loopback
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("SPARK_LOCAL_HOSTNAME", "localhost")
        # the Python workers (what-if's pass) run in this interpreter, not `python3`
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf = SparkConf().setMaster(settings.master)
    for key, value in settings.spark_conf().items():
        conf.set(key, value)
    # the JVM keeps its own descriptor of this file: ours is closed once it started
    with tempfile.TemporaryFile() as jvm_output:
        try:
            gateway = launch_gateway(conf, {"stdout": jvm_output, "stderr": jvm_output})
            context = SparkContext(conf=conf, gateway=gateway)
        except (PySparkException, OSError) as error:
            jvm_output.seek(0)
            said = jvm_output.read().decode(errors="replace").strip().splitlines()[-5:]
            raise MicrosegError(
                f"Spark did not start ({_first_line(error)})"
                + "".join(f"\n  {line}" for line in said)
            ) from None
    context.setLogLevel("ERROR")
    return SparkSession(context), True


def _check_java() -> None:
    home = os.environ.get("JAVA_HOME")
    java = Path(home) / "bin" / "java" if home else shutil.which("java")
    if java is None or not Path(java).is_file():
        where = f"$JAVA_HOME/bin/java ({java})" if home else "java on the PATH"
        raise MicrosegError(
            f"--engine spark needs Java 17 or later, and found no {where}: "
            "install Debian's default-jre-headless (apt-get install default-jre-headless)"
        )


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]

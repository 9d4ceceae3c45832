"""The server's flow store: where it is, and its session table, read in one place for the
API and the web UI.

A client never learns where the store lives on the server's disk: an error about the store
names "the server's flow store" instead of its path, and the server's log keeps the path for
the operator. A store that does not exist yet is an empty session table (nothing collected),
never the CLI's default store.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request

from microseg.model import MicrosegError
from microseg.server.context import server_context

if TYPE_CHECKING:
    import pyarrow as pa

SERVER_FLOW_STORE = "the server's flow store"
log = logging.getLogger("microseg.server")


class FlowStoreUnavailable(MicrosegError):
    """The server's flow store cannot be read (503): nothing the client can change."""


def flow_store_path(request: Request) -> Path:
    """The flow store directory (or session file) the server reads: `serve --flow-store`,
    else $MICROSEG_FLOW_STORE or the user data dir, as the CLI."""
    from microseg.flows.flowstore import default_store_dir

    return server_context(request).flow_store or default_store_dir()


def server_sessions(request: Request, **query: Any) -> pa.Table:
    """The session table of the server's flow store (`read_sessions` with `query`); empty
    while nothing was collected."""
    from microseg.flows.engines import SessionQuery
    from microseg.flows.flowstore import OUTPUT_SCHEMA, read_sessions

    path = flow_store_path(request)
    if not path.exists():
        SessionQuery(**query)  # a bad filter is an error whether or not anything was collected
        return OUTPUT_SCHEMA.empty_table()
    with flow_store_errors(path):
        return read_sessions(path, **query)


@contextmanager
def flow_store_errors(path: Path) -> Iterator[None]:
    """An error naming the flow store at `path` becomes FlowStoreUnavailable without it.

    An error that does not name the store is about the request (a bad `src` filter) and
    passes unchanged: every reader of the store names the store in its errors."""
    try:
        yield
    except MicrosegError as error:
        message = str(error)
        if str(path) not in message:
            raise
        log.warning("cannot read the flow store at %s: %s", path, message)
        raise FlowStoreUnavailable(without_paths(message, path)) from None


# An absolute path left in an engine's message (a segment the store holds): from a slash
# not preceded by a word character or a dot (so a prefix length such as 10.0.0.0/24 or
# tcp/22 stays), through the following path characters.
_ABSOLUTE_PATH = re.compile(r"(?<![\w./])/[\w.@+~-]+(?:/[\w.@+~-]*)*")


def without_paths(message: str, path: Path) -> str:
    """`message` with the store's path, and any other absolute path, left out."""
    for spelling in (f"--store {path}", f"flow store {path}", str(path)):
        message = message.replace(spelling, SERVER_FLOW_STORE)
    return _ABSOLUTE_PATH.sub("(a file of the store)", message)

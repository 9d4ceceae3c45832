"""Property-based tests from the OpenAPI document (schemathesis): for every operation,
generated requests (as an admin, so every route is reached) never get a 5xx, and every
response matches the schema the document declares for it.

The store holds the seed lab pointed at a closed loopback port, its flow store the seed
lab's sessions, so a change run, drift or
a monitor poll reaches no network: their device connections are refused at once."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import schemathesis
from argon2 import PasswordHasher
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from support import EXAMPLES

pytestmark = pytest.mark.slow
EXAMPLES_PER_OPERATION = 10

TOKEN: dict[str, str] = {}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the probe is


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory) -> Iterator[object]:
    import sys

    from support import ROOT

    sys.path.insert(0, str(ROOT / "tests" / "deploy"))
    from deploy_lab import pointed_at

    from microseg.flows.flowstore import read_sessions
    from microseg.policyfile import load_policy
    from microseg.server import accounts, create_app
    from support import write_sessions

    directory = tmp_path_factory.mktemp("schemathesis")
    nowhere = SimpleNamespace(port=_closed_port())
    doubles = {"andreasm-720xp-home": nowhere, "andreas-ztx1": nowhere}
    # the seed lab's sessions in a flow store, as a collector writes them: a session file
    # cannot hold a monitor poll's counters (the poll is then a 503 before any device)
    seed = read_sessions(EXAMPLES / "seed-lab-sessions.csv", ephemeral_port=None).to_pylist()
    for row in seed:  # a summary row's client port: one of the ephemeral ones
        row["sport"] = 49152 if row["sport"] == "eph" else int(row["sport"])
    flow_store = write_sessions(directory / "flows", seed)
    app = create_app(f"sqlite:///{directory / 'store.db'}", flow_store=flow_store)
    store = app.state.context.store
    store.import_policy(
        load_policy(pointed_at("home-lab-monitor.yaml", directory, doubles)), "a", "monitor"
    )
    store.import_policy(load_policy(pointed_at("home-lab.yaml", directory, doubles)), "a", "seed")
    store.workspace_create("w", author="a")
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    store.accounts.add_user("admin", "admin", cheap.hash("correct horse battery staple"))
    TOKEN["admin"] = accounts.create_token(store, "admin", "schemathesis")[1]
    yield schemathesis.openapi.from_asgi("/api/openapi.json", app)


def test_no_operation_answers_5xx_or_off_its_schema(api_schema):
    """Each operation gets its own generated examples (positive: valid by the schema)."""
    from hypothesis import given

    checked, failures = [], []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def exercise(case) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {TOKEN['admin']}"},
                checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
            )

        try:
            exercise()
        except Exception as error:  # collect every operation's failure, then report all
            failures.append(f"{operation.label}: {str(error)[:600]}")
        checked.append(operation.label)
    assert len(checked) >= 40
    assert not failures, "\n\n".join(failures)

"""Shared fixtures: the seed examples and an in-process CLI runner."""

from __future__ import annotations

import pytest

from support import EXAMPLES, CliResult


def pytest_collection_finish(session) -> None:
    """Give Hypothesis its printer back. schemathesis (its pytest plugin, and importing it)
    swaps `hypothesis.core.RepresentationPrinter` for one that prints nothing, which made
    every failing property test of the session report `seed=,`: no example to reproduce.
    Its own property tests (tests/server/test_api_schemathesis.py) print examples only
    when they fail, so they lose nothing but the speed of a printer they do not use."""
    import hypothesis.core
    from hypothesis.vendor import pretty

    hypothesis.core.RepresentationPrinter = pretty.RepresentationPrinter  # type: ignore[misc]


@pytest.fixture
def run_cli(capsys):
    """Run `microseg ARGS...` in-process, the way a user would; returns exit code and output."""
    from microseg.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


@pytest.fixture
def home_lab():
    from microseg.policyfile import load_policy

    return load_policy(EXAMPLES / "home-lab.yaml")


@pytest.fixture(scope="session")
def spark_session():
    """One local Spark for every Spark test (a JVM takes many seconds to start), bound to
    loopback like every local session microseg starts; CLI runs in this process use it."""
    from microseg.flows.spark import SparkSettings, start_session

    session, _ = start_session(SparkSettings("local[2]"))
    yield session
    session.stop()

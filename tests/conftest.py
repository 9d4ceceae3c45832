"""Shared fixtures: the seed examples and an in-process CLI runner."""

from __future__ import annotations

import pytest

from support import EXAMPLES, CliResult


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

"""The seed's switch and vZTX as eAPI test doubles, one per test: the fixtures the target,
change-control and monitor suites share (their conftests import them from here)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eapi_double import EapiDouble
from seed_doubles import seed_switch, seed_vztx


@pytest.fixture
def switch() -> Iterator[EapiDouble]:
    with seed_switch() as double:
        yield double


@pytest.fixture
def vztx() -> Iterator[EapiDouble]:
    with seed_vztx() as double:
        yield double

"""Fixtures for the target drivers: eAPI test doubles of the seed's switch and vZTX."""

from __future__ import annotations

import warnings

import pytest
from double_fixtures import switch, vztx  # noqa: F401 (fixtures)
from eapi_double import EapiDouble

from microseg.targets.eos.driver import EosDriver, InsecureTransportWarning


@pytest.fixture
def connect():
    """connect(double, role=..., password=..., **endpoint) -> an EosDriver for the double
    (served over http, the doubles' default; the insecure-transport warning silenced)."""

    def make(
        double: EapiDouble, role: str = "switch", password: str = "secret", **endpoint
    ) -> EosDriver:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureTransportWarning)
            name = double.hostname(double.running)
            return EosDriver(name, double.endpoint(**endpoint), "admin", password, role=role)

    return make

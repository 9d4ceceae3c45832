"""Fixtures for the target drivers: eAPI test doubles of the seed's switch and vZTX."""

from __future__ import annotations

import warnings

import pytest
from eapi_double import EapiDouble

from microseg.targets.eos.driver import EosDriver, InsecureTransportWarning

# What the seed's 720XP and vZTX have besides what microseg owns (from the seed's
# listings): a routed uplink, the tunnel loopback and a route.
SWITCH_OWN_CONFIG = """\
interface Ethernet1
   description uplink to core
   no switchport
   ip address 172.18.111.1/24
!
interface Loopback0
   description vZTX_tunnel
   ip address 10.255.1.10/32
!
ip routing
!
ip route 10.255.1.11/32 172.18.111.2
!
"""
VZTX_OWN_CONFIG = """\
interface Ethernet1
   no switchport
   ip address 172.18.111.2/24
!
interface Loopback0
   ip address 10.255.1.11/32
!
firewall distributed instance
   no disabled
!
ip route 0.0.0.0/0 172.18.111.1
!
"""


@pytest.fixture
def switch():
    with EapiDouble("andreasm-720xp-home", running_config=SWITCH_OWN_CONFIG) as double:
        yield double


@pytest.fixture
def vztx():
    with EapiDouble(
        "andreas-ztx1", model="CloudEOS", version="4.35.0F-cloud", running_config=VZTX_OWN_CONFIG
    ) as double:
        yield double


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

"""The seed lab's switch and vZTX as eAPI test doubles, with the configuration they have
besides what microseg owns."""

from __future__ import annotations

from eapi_double import EapiDouble

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


def seed_switch(**options) -> EapiDouble:
    """The seed's 720XP (not started: use it as a context manager)."""
    return EapiDouble("andreasm-720xp-home", running_config=SWITCH_OWN_CONFIG, **options)


def seed_vztx(**options) -> EapiDouble:
    """The seed's vZTX monitor node (not started: use it as a context manager)."""
    return EapiDouble(
        "andreas-ztx1",
        model="CloudEOS",
        version="4.35.0F-cloud",
        running_config=VZTX_OWN_CONFIG,
        **options,
    )

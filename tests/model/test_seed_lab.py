"""The seed lab, as encoded in examples/, carries every value the seed story names."""

from __future__ import annotations

import ipaddress

from microseg.model import RateLimit
from microseg.policyfile import load_policy
from support import EXAMPLES


def test_home_lab_has_the_seed_switch_monitor_node_and_domain(home_lab):
    switch = home_lab.device("andreasm-720xp-home")
    assert switch.platform == "eos"
    assert str(switch.loopback_address) == "10.255.1.10"
    assert switch.tunnel_source_interface == "Loopback0"
    node = home_lab.monitor_node("andreas-ztx1")
    assert str(node.loopback_address) == "10.255.1.11"
    assert str(node.management_address) == "172.18.100.201"
    assert (str(node.collector_address), node.collector_port) == ("127.0.0.1", 4739)
    assert home_lab.domain("andreas-lab-domain").devices == ("andreasm-720xp-home",)


def test_home_lab_groups_hold_the_seed_prefixes(home_lab):
    def prefixes(name):
        return [str(p) for p in home_lab.group(name).prefixes]

    assert prefixes("DNS_NTP_servers") == ["10.100.1.6/32", "10.100.1.7/32"]
    assert prefixes("appserver1") == ["10.100.99.50/32"]
    assert prefixes("web-appserver1") == ["10.100.99.50/32", "10.100.99.51/32", "10.100.99.52/32"]
    assert prefixes("web01_web02") == ["10.100.99.51/32", "10.100.99.52/32"]
    assert prefixes("wifi_clients") == ["172.18.6.0/24"]
    assert home_lab.group("wifi_clients").categories == ("clients",)
    assert home_lab.group("DNS_NTP_servers").categories == ("infrastructure",)


def test_home_lab_services_resolve_to_the_seed_ports(home_lab):
    expected = {
        "DNS": ("udp", 53),
        "NTP": ("udp", 123),
        "HTTP": ("tcp", 80),
        "SSH": ("tcp", 22),
        "appserver1-tcp": ("tcp", 4567),
    }
    for name, (protocol, port) in expected.items():
        service = home_lab.service(name)
        assert service.protocol == protocol
        assert [tuple(r) for r in service.destination_ranges] == [(port, port)]
        assert service.source_ranges == ()  # source port all


def test_home_lab_policy_is_vrf_all_home_256_with_the_seed_rule_order(home_lab):
    policy = home_lab.policy("vrf_all_home")
    assert (policy.id, policy.vrf, policy.domain) == (256, "ALL", "andreas-lab-domain")
    assert policy.rules == (
        "allow_all_NTP",
        "allow_all_DNS",
        "drop_http_between_webservers",
        "clients_to_webservers",
        "ssh_to_web-app_servers",
        "web-to-appserver1",
        "drop_all_else_web-app",
    )
    drop_else = home_lab.rule("drop_all_else_web-app")
    assert (drop_else.sources, drop_else.destinations, drop_else.services) == (
        ("web-appserver1",),
        (),
        (),
    )
    assert drop_else.action == "drop"
    assert home_lab.rule("drop_http_between_webservers").description == "drop HTTP"


def test_vlan299_is_isolated_with_local_proxy_arp(home_lab):
    segments = {s.name: s for s in home_lab.device("andreasm-720xp-home").segments}
    vlan299 = segments["Vlan299"]
    assert vlan299.vlan == 299
    assert vlan299.subnets == (ipaddress.ip_network("10.100.99.0/24"),)
    assert vlan299.local_proxy_arp and vlan299.hosts_isolated and vlan299.enforces_intra_subnet
    subnets = {str(s.subnets[0]) for s in segments.values()}
    assert {"172.18.6.0/24", "10.100.5.0/24", "10.100.1.0/24"} <= subnets


def test_monitor_object_defaults_follow_the_seed(home_lab):
    monitor = home_lab.monitor_object("andreas-vztx")
    assert monitor.active_timeout_ms == 1800000
    # The seed's "Rate Limit: Default 100000" has no unit; microseg reads it as kbps.
    assert monitor.rate_limit == RateLimit(100000, "kbps")
    assert str(monitor.rate_limit) == "100000 kbps"
    assert str(monitor.tunnel_destination) == "10.255.1.11"
    assert monitor.exporter_interface == monitor.tunnel_source_interface == "Loopback0"
    assert monitor.monitor_nodes == ("andreas-ztx1",)


def test_dns_ntp_stage_has_rule72_ntp_and_rule73_dns():
    earlier = load_policy(EXAMPLES / "home-lab-dns-ntp.yaml")
    policy = earlier.policy("dns_ntp_services")
    assert policy.rules == ("rule72", "rule73")
    assert earlier.rule("rule72").services == ("NTP",)
    assert earlier.rule("rule73").services == ("DNS",)
    # Port names are preserved as written.
    assert earlier.service("DNS").destination_ports == ("domain",)
    assert earlier.service("DNS").destination_ranges == home_lab_dns_ranges()


def home_lab_dns_ranges():
    return load_policy(EXAMPLES / "home-lab.yaml").service("DNS").destination_ranges


def test_monitor_stage_monitors_web_and_app_servers_any_any():
    stage = load_policy(EXAMPLES / "home-lab-monitor.yaml")
    rule = stage.rule("web-appserver-discovery")
    assert rule.sources == ("web-appserver1",)
    assert rule.destinations == () and rule.services == ()
    assert rule.monitor == "andreas-vztx"

"""Running-config sections: what microseg owns on an EOS device, and how it is entered."""

from __future__ import annotations

import pytest

from microseg.targets.eos.sections import (
    SectionError,
    cli_commands,
    owned_sections,
    parse_sections,
    render_sections,
    replace_owned,
)
from support import EXAMPLES, REFERENCE

RUNNING = """\
! Command: show running-config
! device: leaf1 (DCS-720XP-48ZC2, EOS-4.34.2F)
!
hostname leaf1
!
interface Ethernet1
   description uplink
!
traffic-policies
   traffic-policy old
      match m ipv4
         actions
            count
            mirror session vztx-ALL
!
monitor session vztx-ALL destination tunnel mode gre source 10.0.0.1 destination 10.0.0.2
monitor session span1 destination tunnel mode gre source 10.0.0.1 destination 192.0.2.9
!
end
"""


def test_a_rendered_configuration_reads_and_prints_back_unchanged(run_cli):
    for device in ("andreasm-720xp-home", "andreas-ztx1"):
        text = run_cli(
            "compile", str(EXAMPLES / "home-lab-monitor.yaml"), "--device", device
        ).stdout
        assert render_sections(parse_sections(text)) == text


def test_a_switch_owns_its_traffic_policies_and_the_sessions_they_mirror_to():
    sections = parse_sections(RUNNING)
    owned = [s.head for s in owned_sections(sections, "switch", [])]
    assert owned == [
        "traffic-policies",
        "monitor session vztx-ALL destination tunnel mode gre source 10.0.0.1 destination 10.0.0.2",
    ]


def test_replacing_keeps_everything_else_in_its_place():
    replaced = replace_owned(RUNNING, "traffic-policies\n   traffic-policy new\n!\n", "switch")
    assert [s.head for s in replaced] == [
        "hostname leaf1",
        "interface Ethernet1",
        "monitor session span1 destination tunnel mode gre source 10.0.0.1 destination 192.0.2.9",
        "traffic-policies",
    ]


def test_a_load_carrying_a_foreign_section_is_refused():
    with pytest.raises(SectionError, match="does not own on a monitor-node: 'hostname x'"):
        replace_owned(RUNNING, "hostname x\n", "monitor-node")


def test_indentation_becomes_exits_and_mode_comments_become_comment_commands():
    commands = cli_commands(parse_sections((REFERENCE / "seed-720xp-dns-ntp.eos").read_text()))
    assert commands[:4] == [
        "traffic-policies",
        "vrf ALL",
        "traffic-policy input dns_ntp_services physical",
        "exit",
    ]
    start = commands.index("traffic-policy dns_ntp_services")
    assert commands[start : start + 9] == [
        "traffic-policy dns_ntp_services",
        {"cmd": "comment", "input": "Allow DNS and NTP requests to 10.100.1.6 and 10.100.1.7"},
        "description #policy-id=256",
        "match rule72 ipv4",
        "source prefix field-set wifi_clients",
        "destination prefix field-set DNS_NTP_servers",
        "protocol service field-set NTP",
        "actions",
        "count",
    ]
    assert commands[start + 9 : start + 12] == ["exit", "exit", "match rule72-reverse ipv4"]
    # actions, match, traffic-policy, traffic-policies: back in configuration mode
    assert commands[-5:] == ["count", "exit", "exit", "exit", "exit"]
    assert not any(isinstance(c, str) and c.startswith("!") for c in commands)


def test_an_indented_line_under_no_command_is_not_running_config():
    with pytest.raises(SectionError, match="line 1"):
        parse_sections("   description orphan\n")

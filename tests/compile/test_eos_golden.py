"""The seed switch's own running-config is the golden output of the EOS compiler."""

from __future__ import annotations

import pytest
from tests.conftest import EXAMPLES, REFERENCE

SWITCH = "andreasm-720xp-home"


@pytest.mark.parametrize(
    ("example", "reference"),
    [
        ("home-lab.yaml", "seed-720xp-web-app.eos"),
        ("home-lab-dns-ntp.yaml", "seed-720xp-dns-ntp.eos"),
    ],
)
def test_traffic_policies_match_the_seed_running_config_byte_for_byte(run_cli, example, reference):
    result = run_cli("compile", str(EXAMPLES / example), "--device", SWITCH)
    assert result.exit_code == 0, result.stderr
    expected = (REFERENCE / reference).read_text().splitlines()
    produced = result.stdout.splitlines()
    # The reference ends after the last user match; every line it has must be ours.
    assert produced[: len(expected)] == expected
    # What follows is EOS's implicit default matches, then the end of the block. (The
    # web-app listing was cut after the last match's closing `!`, the dns-ntp one before.)
    rest = produced[len(expected) :]
    if expected[-1] != "      !":
        assert rest[0] == "      !"
        rest = rest[1:]
    assert rest == [
        "      match ipv4-all-default ipv4",
        "      !",
        "      match ipv6-all-default ipv6",
        "!",
    ]


def test_seed_ports_written_as_numbers_print_as_eos_keywords(run_cli):
    # home-lab.yaml says 53/123/80/22; EOS shows domain/ntp/www/ssh.
    out = run_cli("compile", str(EXAMPLES / "home-lab.yaml"), "--device", SWITCH).stdout
    for keyword in ("domain", "ntp", "www", "ssh"):
        assert f"destination port {keyword}\n" in out
        assert f"source port {keyword} destination port all\n" in out
    assert "destination port 4567\n" in out


def test_only_field_sets_the_device_uses_are_emitted(run_cli):
    out = run_cli("compile", str(EXAMPLES / "home-lab-dns-ntp.yaml"), "--device", SWITCH).stdout
    field_sets = [
        line.strip()
        for line in out.splitlines()
        if "field-set" in line and line.startswith("   field-set")
    ]
    assert field_sets == [
        "field-set ipv4 prefix DNS_NTP_servers",
        "field-set ipv4 prefix wifi_clients",
        "field-set service DNS",
        "field-set service DNS-reverse",
        "field-set service NTP",
        "field-set service NTP-reverse",
    ]

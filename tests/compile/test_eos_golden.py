"""The seed switch's own running-config is the golden output of the EOS compiler."""

from __future__ import annotations

import pytest

from support import EXAMPLES, REFERENCE

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
    seed = (REFERENCE / reference).read_bytes()
    produced = result.stdout.encode()
    # The seed's listing ends after the last user match (the web-app one after its closing
    # `!`, the dns-ntp one before it): ours is that listing, byte for byte, then the end of
    # the last match and EOS's implicit default matches, which the listing cut off.
    assert produced.startswith(seed)
    rest = produced[len(seed) :].decode()
    if not seed.endswith(b"      !\n"):
        assert rest.startswith("      !\n")
        rest = rest.removeprefix("      !\n")
    assert (
        rest == "      match ipv4-all-default ipv4\n      !\n      match ipv6-all-default ipv6\n!\n"
    )


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

"""The seed's own observations, as `microseg check` must reproduce them (issue table)."""

from __future__ import annotations

import json

import pytest
from tests.evaluate.random_policies import replaced

from microseg.evaluate.check import check_connection
from microseg.model import PolicySet
from support import EXAMPLES

LAPTOP, MGMT = "172.18.6.138", "10.100.5.10"
APPSERVER1, WEB01, WEB02 = "10.100.99.50", "10.100.99.51", "10.100.99.52"

# (from, to, protocol, port, result, deciding match: request / reply, or the blocking match)
SEED_TABLE = [
    (
        LAPTOP,
        WEB01,
        "tcp",
        22,
        "connects",
        ("ssh_to_web-app_servers", "ssh_to_web-app_servers-reverse"),
    ),
    (MGMT, APPSERVER1, "tcp", 22, "dropped", "drop_all_else_web-app-reverse"),
    (
        LAPTOP,
        WEB02,
        "tcp",
        80,
        "connects",
        ("clients_to_webservers", "clients_to_webservers-reverse"),
    ),
    (
        WEB01,
        APPSERVER1,
        "tcp",
        4567,
        "connects",
        ("web-to-appserver1", "web-to-appserver1-reverse"),
    ),
    (LAPTOP, APPSERVER1, "tcp", 4567, "dropped", "drop_all_else_web-app-reverse"),
    (APPSERVER1, "8.8.8.8", "icmp", None, "dropped", "drop_all_else_web-app"),
    (WEB01, "8.8.8.8", "icmp", None, "dropped", "drop_all_else_web-app"),
    (APPSERVER1, "10.100.1.7", "udp", 53, "connects", ("allow_all_DNS", "allow_all_DNS-reverse")),
    (WEB01, APPSERVER1, "tcp", 22, "dropped", "drop_all_else_web-app"),
    (WEB01, WEB02, "tcp", 22, "dropped", "drop_all_else_web-app"),
    (WEB01, WEB02, "tcp", 80, "dropped", "drop_http_between_webservers"),
    (WEB02, WEB01, "tcp", 80, "dropped", "drop_http_between_webservers"),
]


@pytest.mark.parametrize(
    ("source", "destination", "protocol", "port", "result", "deciding"), SEED_TABLE
)
def test_seed_connectivity_table(home_lab, source, destination, protocol, port, result, deciding):
    checked = check_connection(home_lab, source, destination, protocol, port)
    assert checked.enforced
    assert checked.result == result
    assert checked.connects is (result == "connects")
    if result == "connects":
        assert (checked.request_decisions[0].match, checked.reply_decisions[0].match) == deciding
        assert checked.devices == ("andreasm-720xp-home",)
    else:
        assert checked.blocking.match == deciding
        assert checked.blocking.verdict == "drop"


def vlan299_not_isolated(policy_set: PolicySet) -> PolicySet:
    device = policy_set.devices[0]
    segments = tuple(
        s.model_copy(update={"hosts_isolated": False}) if s.name == "Vlan299" else s
        for s in device.segments
    )
    return replaced(policy_set, devices=(device.model_copy(update={"segments": segments}),))


def test_web01_cannot_ssh_to_web02_once_isolated(home_lab):
    checked = check_connection(home_lab, WEB01, WEB02, "tcp", 22)
    assert (checked.enforced, checked.connects, checked.blocking.match) == (
        True,
        False,
        "drop_all_else_web-app",
    )


def test_web01_ssh_to_web02_not_enforced_before_isolation(home_lab):
    checked = check_connection(vlan299_not_isolated(home_lab), WEB01, WEB02, "tcp", 22)
    assert checked.result == "not enforced — stays on the host bridge"
    assert (checked.enforced, checked.connects, checked.policy_allows) == (False, True, False)
    assert checked.bypass.segment.name == "Vlan299"
    assert "local-proxy-arp" in checked.bypass.fix() and "Vlan299" in checked.bypass.fix()
    # What the policy would do if the switch saw it is still reported.
    assert checked.blocking.match == "drop_all_else_web-app"


def test_laptop_to_web02_ssh_dropped_before_the_ssh_rule(home_lab):
    assert check_connection(home_lab, LAPTOP, WEB02, "tcp", 22).connects
    policy = home_lab.policies[0]
    without_ssh = replaced(
        home_lab,
        **{
            "policies": (
                policy.model_copy(
                    update={
                        "rules": tuple(r for r in policy.rules if r != "ssh_to_web-app_servers")
                    }
                ),
            )
        },
    )
    checked = check_connection(without_ssh, LAPTOP, WEB02, "tcp", 22)
    assert (checked.connects, checked.blocking.match) == (False, "drop_all_else_web-app-reverse")


def test_check_cli_json_and_exit_codes(run_cli, home_lab_path):
    result = run_cli(
        "check", home_lab_path, "--from", LAPTOP, "--to", WEB01, "--port", "22", "--json"
    )
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert (data["connects"], data["enforced"]) == (True, True)
    assert data["request"]["rule"] == "ssh_to_web-app_servers"
    assert data["reply"]["match"] == "ssh_to_web-app_servers-reverse"
    assert data["request"]["device"] == "andreasm-720xp-home"
    assert data["reply"]["policy"] == "vrf_all_home"

    dropped = run_cli("check", home_lab_path, "--from", MGMT, "--to", APPSERVER1, "--port", "22")
    assert dropped.exit_code == 0
    assert "result: dropped" in dropped.stdout and "drop_all_else_web-app-reverse" in dropped.stdout
    blocked = run_cli(
        "check", home_lab_path, "--from", MGMT, "--to", APPSERVER1, "--port", "22", "--exit-code"
    )
    assert blocked.exit_code == 3
    ping = run_cli(
        "check", home_lab_path, "--from", WEB01, "--to", "8.8.8.8", "--proto", "icmp", "--json"
    )
    assert json.loads(ping.stdout)["reply"]["packet"]["icmp_type"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "10.0.0.300", "--to", WEB01, "--port", "22"), "--from '10.0.0.300'"),
        (("--from", LAPTOP, "--to", WEB01), "--port is required"),
        (("--from", LAPTOP, "--to", "::1", "--port", "22"), "different address families"),
        (("--from", LAPTOP, "--to", WEB01, "--proto", "tcpx", "--port", "1"), "unknown protocol"),
        (("--from", LAPTOP, "--to", WEB01, "--port", "22", "--device", "nope"), "device 'nope'"),
        (
            ("--from", LAPTOP, "--to", WEB01, "--proto", "icmp", "--icmp-type", "bogus"),
            "unknown icmp type",
        ),
        (("--from", LAPTOP, "--to", WEB01, "--proto", "icmpv6"), "icmpv6 is ICMP for IPv6"),
        (("--from", LAPTOP, "--to", WEB01, "--port", "99999"), "--port 99999 is not 0-65535"),
        (("--from", LAPTOP, "--to", WEB01, "--port", "-1"), "--port '-1': not a number 0-65535"),
        (("--from", LAPTOP, "--to", WEB01, "--port", "shh"), "or a tcp port name (bfd, "),
        (("--from", LAPTOP, "--to", WEB01, "--proto", "udp", "--port", "ssh"), "udp port name"),
        # A VRF no domain has answered "connects" through the ALL policy's default.
        (
            ("--from", LAPTOP, "--to", WEB01, "--port", "22", "--vrf", "Default"),
            "--vrf 'Default' is a VRF of no security domain (VRFs: default)",
        ),
        (
            ("--from", "web01_web02", "--to", "appserver1", "--port", "22", "--vrf", "prod"),
            "--vrf 'prod' is a VRF of no security domain",
        ),
    ],
)
def test_check_cli_bad_input_is_a_clear_error(run_cli, home_lab_path, args, message):
    result = run_cli("check", home_lab_path, *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_check_takes_the_eos_port_names_a_policy_takes(run_cli, home_lab_path):
    """`--port ssh` is `--port 22`, as `destination_ports: [ssh]` is 22 in a service."""
    by_number, by_name = (
        run_cli("check", home_lab_path, "--from", LAPTOP, "--to", WEB01, "--port", port, "--json")
        for port in ("22", "ssh")
    )
    assert by_name.exit_code == 0, by_name.stderr
    assert json.loads(by_name.stdout) == json.loads(by_number.stdout)
    dns = run_cli("check", home_lab_path, "--from", LAPTOP, "--to", "10.100.1.7", "--proto", "udp",
                  "--port", "domain")  # fmt: skip
    assert "udp/53" in dns.stdout and "result: connects" in dns.stdout


@pytest.fixture
def home_lab_path():
    return str(EXAMPLES / "home-lab.yaml")


def test_check_and_whatif_read_stored_revisions(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MICROSEG_DATABASE_URL", f"sqlite:///{tmp_path / 'microseg.db'}")
    monkeypatch.setenv("MICROSEG_AUTHOR", "andreas")
    assert run_cli("db", "init").exit_code == 0
    for file in ("home-lab-dns-ntp.yaml", "home-lab.yaml"):
        assert run_cli("import", str(EXAMPLES / file), "-m", file).exit_code == 0
    ssh = ("--from", LAPTOP, "--to", WEB01, "--port", "22", "--json")
    # Revision 1 (DNS/NTP only) has no drop rule: ssh is forwarded by the default match.
    first = json.loads(run_cli("check", "rev:1", *ssh).stdout)
    assert (first["connects"], first["request"]["match"]) == (True, "ipv4-all-default")
    second = json.loads(run_cli("check", "rev:2", *ssh).stdout)
    assert second["request"]["rule"] == "ssh_to_web-app_servers"
    assert run_cli("check", "rev:9", *ssh).exit_code == 1


def test_web_traffic_redirected_to_a_firewall_is_not_called_connects(home_lab, run_cli, tmp_path):
    from microseg.model import RedirectObject, Rule
    from microseg.policyfile import dump_policy

    firewall = RedirectObject(name="pfsense", next_hops=["10.100.5.1"])
    inspect = Rule(
        name="inspect_web",
        sources=["wifi_clients"],
        destinations=["web01_web02"],
        services=["HTTP"],
        action="redirect",
        redirect="pfsense",
    )
    policy = home_lab.policy("vrf_all_home")
    redirected = PolicySet(
        **{
            **{section: getattr(home_lab, section) for section in type(home_lab).model_fields},
            "redirect_objects": (firewall,),
            "rules": (*home_lab.rules, inspect),
            "policies": (policy.model_copy(update={"rules": ("inspect_web", *policy.rules)}),),
        }
    )
    result = check_connection(redirected, LAPTOP, WEB01, "tcp", 80)
    assert result.redirected and not result.connects
    assert result.result.startswith("redirected")
    assert result.request_decisions[0].verdict == "redirect"

    path = tmp_path / "redirect.yaml"
    path.write_text(dump_policy(redirected))
    args = ("check", str(path), "--from", LAPTOP, "--to", WEB01, "--port", "80")
    assert run_cli(*args, "--exit-code").exit_code == 5
    assert json.loads(run_cli(*args, "--json").stdout)["redirected"] is True
    # A drop anywhere still wins over a redirect: web01 -> web02 HTTP is dropped.
    dropped = check_connection(redirected, WEB01, WEB02, "tcp", 80)
    assert not dropped.redirected and dropped.result == "dropped"

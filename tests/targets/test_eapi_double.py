"""The eAPI test double answers as the recorded EOS examples it is modelled on, and is strict.

These tests talk raw JSON-RPC, without microseg's driver, so the double is checked on its
own before the driver is checked against it.
"""

from __future__ import annotations

import base64
import http.client
import json

import pytest
from eapi_double import EapiDouble
from eos_cli import CliError, load_text, render

from support import REFERENCE

DEFAULT_MATCHES = [
    "      !",
    "      match ipv4-all-default ipv4",
    "      !",
    "      match ipv6-all-default ipv6",
]


def post(
    double: EapiDouble, body: bytes | dict, password: str = "secret"
) -> tuple[int, dict | str]:
    connection = http.client.HTTPConnection("127.0.0.1", double.port, timeout=10)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    auth = base64.b64encode(f"admin:{password}".encode()).decode()
    connection.request("POST", "/command-api", data, {"Authorization": f"Basic {auth}"})
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    return response.status, (json.loads(text) if response.status == 200 else text)


def run(double: EapiDouble, cmds: list, fmt: str = "json") -> dict:
    status, answer = post(
        double,
        {
            "jsonrpc": "2.0",
            "method": "runCmds",
            "params": {"version": 1, "cmds": cmds, "format": fmt},
            "id": "t1",
        },
    )
    assert status == 200
    return answer


def test_an_unknown_command_gets_the_error_a_veos_sent(switch):
    # arista-northwest/eapy tests/conftest.py `errored_response`, recorded from a vEOS.
    answer = run(switch, ["show hostname", "show bogus"])
    assert answer["error"] == {
        "code": 1002,
        "message": "CLI command 2 of 2 'show bogus' failed: invalid command",
        "data": [
            {"hostname": "andreasm-720xp-home", "fqdn": "andreasm-720xp-home"},
            {"errors": ["Invalid input (at token 1: 'bogus')"]},
        ],
    }
    assert answer["id"] == "t1" and "result" not in answer


def test_in_text_format_the_failed_command_also_has_its_output(switch):
    # eapy `errored_text_response`.
    answer = run(switch, ["show hostname", "show bogus"], fmt="text")
    assert answer["error"]["data"] == [
        {"output": "Hostname: andreasm-720xp-home\nFQDN:     andreasm-720xp-home\n"},
        {
            "output": "% Invalid input (at token 1: 'bogus')\n",
            "errors": ["Invalid input (at token 1: 'bogus')"],
        },
    ]


def test_malformed_requests_get_json_rpc_errors(switch):
    assert post(switch, b"{not json")[1]["error"]["code"] == -32700
    assert post(switch, {"method": "runCmds", "params": {"cmds": ["show version"]}, "id": 1})[1][
        "error"
    ] == {
        "code": -32600,
        "message": "Expected field 'jsonrpc' not specified",  # eapy `jsonrpcerr_response`
    }
    assert (
        post(switch, {"jsonrpc": "2.0", "method": "runCmds", "params": {"cmds": []}, "id": 1})[1][
            "error"
        ]["code"]
        == -32602
    )
    assert (
        post(switch, {"jsonrpc": "2.0", "method": "nope", "params": {}, "id": 1})[1]["error"][
            "code"
        ]
        == -32601
    )


def test_a_wrong_password_is_http_401(switch):
    status, _ = post(
        switch,
        {"jsonrpc": "2.0", "method": "runCmds", "params": {"cmds": ["show version"]}, "id": 1},
        password="wrong",
    )
    assert status == 401


def test_config_commands_outside_configure_mode_are_invalid_as_on_eos(switch):
    # The eAPI lab guide's example: `vlan 1000` without `configure` fails, code 1002.
    answer = run(switch, ["traffic-policies"])
    assert answer["error"]["code"] == 1002
    assert (
        answer["error"]["message"]
        == "CLI command 1 of 1 'traffic-policies' failed: invalid command"
    )


def test_a_command_the_grammar_lacks_is_refused_even_in_a_session(switch):
    answer = run(
        switch,
        ["configure session s1", "traffic-policies", "field-set ipv4 prefix A", "10.0.0.0/33x"],
    )
    assert answer["error"]["code"] == 1002
    assert len(answer["error"]["data"]) == 4  # three results, then the failed command


def test_mode_comment_lines_are_not_commands_over_eapi(switch):
    # NAPALM's EOS driver converts `!!` lines to a `comment` command: eAPI refuses them.
    answer = run(
        switch, ["configure session s1", "traffic-policies", "traffic-policy p", "!! a comment"]
    )
    assert answer["error"]["code"] == 1002
    ok = run(
        switch,
        [
            "configure session s1",
            "traffic-policies",
            "traffic-policy p",
            {"cmd": "comment", "input": "a comment"},
        ],
    )
    assert "result" in ok


def test_text_only_commands_asked_for_as_json_are_unconverted(switch):
    answer = run(switch, ["show running-config"])
    assert answer["error"]["code"] == 1003
    assert answer["error"]["data"] == [{"errors": ["This is an unconverted command"]}]


@pytest.mark.parametrize("reference", ["seed-720xp-dns-ntp.eos", "seed-720xp-web-app.eos"])
def test_the_seed_listings_read_and_print_back_with_the_implicit_default_matches(reference):
    text = (REFERENCE / reference).read_text()
    printed = render(load_text(text))
    expected = text.splitlines()
    if expected[-1] == "      !":
        expected = expected[:-1]
    assert printed == [*expected, *DEFAULT_MATCHES, "!"]


def test_reading_a_line_outside_the_grammar_fails():
    with pytest.raises(CliError, match="Invalid input"):
        load_text("traffic-policies\n   field-set ipv4 prefix A\n      not-a-prefix\n")


def test_a_session_is_diffed_against_running_and_changes_nothing_until_committed(switch):
    before = switch.running_config()
    run(switch, ["configure session s1", "interface Ethernet1", "description changed", "end"])
    assert switch.running_config() == before
    diff = run(switch, ["show session-config named s1 diffs"], fmt="text")["result"][0]["output"]
    assert diff.splitlines()[:2] == ["--- system:/running-config", "+++ session:/s1-session-config"]
    assert "-   description uplink to core" in diff and "+   description changed" in diff
    sessions = run(switch, ["show configuration sessions detail"])["result"][0]
    assert sessions["sessions"]["s1"]["state"] == "pending"
    run(switch, ["configure session s1 commit"])
    assert "   description changed" in switch.running_config()
    assert (
        run(switch, ["show configuration sessions detail"])["result"][0]["sessions"]["s1"]["state"]
        == "completed"
    )


def test_an_unconfirmed_commit_timer_really_expires_and_restores(switch):
    before = switch.running_config()
    run(switch, ["configure session s1", "interface Ethernet1", "description changed", "end"])
    run(switch, ["configure session s1 commit timer 00:00:01"])
    detail = run(switch, ["show configuration sessions detail"])["result"][0]["sessions"]["s1"]
    assert detail["state"] == "pendingCommitTimer" and detail["commitBy"] > 0
    assert "description changed" in switch.running_config()
    assert switch.wait_until(lambda d: "s1" in d.expired)
    assert switch.running_config() == before
    assert "s1" not in run(switch, ["show configuration sessions detail"])["result"][0]["sessions"]


def test_show_running_config_section_prints_whole_matching_sections(switch):
    output = run(switch, ["show running-config section Loopback"], fmt="text")["result"][0][
        "output"
    ]
    assert (
        output
        == "interface Loopback0\n   description vZTX_tunnel\n   ip address 10.255.1.10/32\n!\n"
    )

"""microseg's EOS driver against the eAPI test double: every verb, and every fault."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from eapi_double import EapiDouble, make_tls_files

from microseg.targets import (
    AuthenticationFailed,
    CommandRejected,
    DeviceUnreachable,
    Driver,
    DriverError,
    Facts,
    MatchCounters,
)
from microseg.targets.eos.driver import (
    EosDriver,
    InsecureTransportWarning,
    _match_counters,
    session_state,
)
from support import EXAMPLES, REFERENCE, SRC

DNS_NTP = (REFERENCE / "seed-720xp-dns-ntp.eos").read_text()
WEB_APP = (REFERENCE / "seed-720xp-web-app.eos").read_text()
IMPLICIT_DEFAULTS = (
    "      match ipv4-all-default ipv4\n      !\n      match ipv6-all-default ipv6\n!\n"
)
SWITCH = "andreasm-720xp-home"


def with_implicit_defaults(reference: str) -> str:
    """A seed listing as the device prints it whole: EOS's default matches close each
    traffic-policy (the listings were cut before them; see test_eos_golden)."""
    text = reference if reference.endswith("      !\n") else reference + "      !\n"
    return text + IMPLICIT_DEFAULTS


def compiled(run_cli, example: str, device: str) -> str:
    result = run_cli("compile", str(EXAMPLES / example), "--device", device)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def section(double: EapiDouble, head: str) -> str:
    """One top-level section of the double's running-config, as printed."""
    lines = double.running_config().splitlines()
    start = lines.index(head)
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" "))
    return "\n".join(lines[start:end]) + "\n"


def deploy(driver: EosDriver, config: str) -> None:
    driver.load(config)
    driver.commit()


# -- the verbs ---------------------------------------------------------------------------


def test_the_driver_honours_the_driver_protocol(switch, connect):
    assert isinstance(connect(switch), Driver)


def test_facts_are_what_the_switch_says_it_is(switch, connect):
    assert connect(switch).facts() == Facts(SWITCH, "DCS-720XP-48ZC2", "4.34.2F", "JPE00000001")


def test_a_fresh_switch_has_nothing_microseg_owns(switch, connect):
    assert connect(switch).running() == ""


@pytest.mark.parametrize("reference", [DNS_NTP, WEB_APP], ids=["dns-ntp", "web-app"])
def test_the_seed_configurations_load_into_an_empty_switch_exactly(switch, connect, reference):
    uplink = section(switch, "interface Ethernet1")
    driver = connect(switch)
    deploy(driver, reference)
    assert driver.running() == with_implicit_defaults(reference)
    assert section(switch, "interface Ethernet1") == uplink


@pytest.mark.parametrize(
    ("example", "device", "role"),
    [
        ("home-lab.yaml", SWITCH, "switch"),
        ("home-lab-monitor.yaml", SWITCH, "switch"),
        ("home-lab-monitor.yaml", "andreas-ztx1", "monitor-node"),
    ],
)
def test_what_microseg_compiles_is_what_the_device_runs_afterwards(
    switch, vztx, connect, run_cli, example, device, role
):
    config = compiled(run_cli, example, device)
    driver = connect(vztx if role == "monitor-node" else switch, role=role)
    deploy(driver, config)
    assert driver.running() == config


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        # A default-deny policy: both default matches get actions (count, drop).
        (
            (
                "    rules: [rule72, rule73]\n",
                "    rules: [rule72, rule73]\n    default_action: drop\n",
            ),
            "drop",
        ),
        # A rule with no criteria at all: its match has nothing before `actions`.
        (
            ("    rules: [rule72, rule73]\n", "    rules: [rule72, rule73, drop_rest]\n"),
            "drop_rest",
        ),
    ],
    ids=["default-drop", "criteria-less-match"],
)
def test_compiled_policies_of_other_shapes_read_back_unchanged(
    switch, connect, run_cli, tmp_path, edit, expected
):
    text = (EXAMPLES / "home-lab-dns-ntp.yaml").read_text().replace(*edit)
    text = text.replace(
        "\npolicies:\n",
        "\n  - name: drop_rest\n    sources: any\n    destinations: any\n    services: any\n    action: drop\n\npolicies:\n",
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    result = run_cli("compile", str(policy), "--device", SWITCH)
    assert result.exit_code == 0, result.stderr
    assert expected in result.stdout
    driver = connect(switch)
    deploy(driver, result.stdout)
    assert driver.running() == result.stdout


def test_a_second_load_removes_the_renamed_policy_and_leaves_the_rest(switch, connect):
    deploy(connect(switch), WEB_APP)
    untouched = switch.running_config().split("traffic-policies")[0]
    driver = connect(switch)
    driver.load(DNS_NTP)
    diff = driver.compare()
    assert "-   traffic-policy vrf_all_home\n" in diff.text
    assert "+   traffic-policy dns_ntp_services\n" in diff.text
    assert "interface Ethernet1" not in diff.text
    driver.commit()
    running = switch.running_config()
    assert "traffic-policy vrf_all_home" not in running and "field-set service HTTP" not in running
    assert driver.running() == with_implicit_defaults(DNS_NTP)
    assert running.split("traffic-policies")[0] == untouched


def test_compare_shows_only_what_changes(switch, connect):
    deploy(connect(switch), DNS_NTP)
    driver = connect(switch)
    driver.load(DNS_NTP)
    assert not driver.compare().changed
    driver.load(DNS_NTP.replace("172.18.6.0/24", "172.18.7.0/24"))
    diff = driver.compare()
    assert diff.changed and diff.device == SWITCH
    assert [line for line in diff.text.splitlines() if line[:1] in "+-"] == [
        "-      172.18.6.0/24",
        "+      172.18.7.0/24",
    ]


def test_unowned_monitor_sessions_survive_and_owned_ones_go(switch, connect, run_cli):
    with_mirror = compiled(run_cli, "home-lab-monitor.yaml", SWITCH)
    driver = connect(switch)
    # Someone's own mirror session, which no microseg traffic-policy names.
    hand_made = "monitor session span1 destination tunnel mode gre source 10.255.1.10 destination 192.0.2.9\n"
    switch.running.children.append(_node(hand_made))
    deploy(driver, with_mirror)
    assert "monitor session andreas-vztx-ALL destination" in switch.running_config()
    deploy(connect(switch), DNS_NTP)
    running = switch.running_config()
    assert "andreas-vztx-ALL" not in running
    assert hand_made.strip() in running


def _node(line: str):
    from eos_cli import load_text

    return load_text(line).children[0]


def test_the_monitor_node_loses_its_tunnels_and_tracker_when_no_switch_mirrors(
    vztx, connect, run_cli
):
    driver = connect(vztx, role="monitor-node")
    deploy(driver, compiled(run_cli, "home-lab-monitor.yaml", "andreas-ztx1"))
    before = vztx.running_config()
    deploy(connect(vztx, role="monitor-node"), "")
    after = vztx.running_config()
    assert "interface Tunnel0" in before and "interface Tunnel0" not in after
    assert "flow tracking firewall distributed" not in after
    assert "interface Loopback0\n   ip address 10.255.1.11/32\n" in after
    assert "firewall distributed instance\n   no disabled\n" in after


def test_a_load_may_carry_only_sections_microseg_owns(switch, connect):
    driver = connect(switch)
    with pytest.raises(DriverError, match="does not own on a switch: 'interface Ethernet1'"):
        driver.load(DNS_NTP + "interface Ethernet1\n   description mine now\n")
    assert not any(cmd[0].startswith("configure session") for cmd in switch.requests)


def test_one_session_is_one_change(switch, connect):
    driver = connect(switch)
    deploy(driver, DNS_NTP)
    with pytest.raises(DriverError, match="is completed; a new change needs a new session"):
        driver.load(WEB_APP)


def test_discard_drops_what_was_loaded(switch, connect):
    driver = connect(switch)
    before = switch.running_config()
    driver.load(WEB_APP)
    driver.discard()
    assert switch.running_config() == before
    assert driver.session not in switch.sessions
    with pytest.raises(DriverError, match="nothing loaded to commit"):
        driver.commit()


def test_a_confirmed_commit_stays_after_its_timer(switch, connect):
    driver = connect(switch)
    driver.load(WEB_APP)
    driver.commit(confirm_within=1)
    driver.confirm()
    assert not switch.wait_until(lambda d: driver.session in d.expired, timeout=2)
    assert driver.running() == with_implicit_defaults(WEB_APP)
    assert "traffic-policy vrf_all_home" in switch.startup  # saved with write memory


def test_an_unconfirmed_commit_is_undone_by_the_switch(switch, connect):
    driver = connect(switch)
    deploy(driver, DNS_NTP)
    second = connect(switch)
    second.load(WEB_APP)
    second.commit(confirm_within=1)
    assert second.running() == with_implicit_defaults(WEB_APP)
    assert switch.wait_until(lambda d: second.session in d.expired)
    assert second.running() == with_implicit_defaults(DNS_NTP)
    with pytest.raises(
        DriverError, match="timer expired, EOS has restored the previous configuration"
    ):
        second.confirm()


def test_no_load_or_commit_over_another_changes_unconfirmed_commit(switch, connect):
    first = connect(switch)
    first.load(DNS_NTP)
    second = connect(switch)
    second.load(WEB_APP)
    first.commit(confirm_within=600)
    with pytest.raises(DriverError, match=f"session '{first.session}' has an unconfirmed commit"):
        second.commit()
    with pytest.raises(DriverError, match=f"session '{first.session}' has an unconfirmed commit"):
        connect(switch).load(WEB_APP)
    first.confirm()
    second.commit()
    assert second.running() == with_implicit_defaults(WEB_APP)


def test_discard_during_an_unconfirmed_commit_restores_at_once(switch, connect):
    driver = connect(switch)
    before = switch.running_config()
    driver.load(WEB_APP)
    driver.commit(confirm_within=600)
    driver.discard()
    assert switch.running_config() == before


def test_rollback_restores_the_configuration_before_a_confirmed_commit(switch, connect):
    driver = connect(switch)
    deploy(driver, DNS_NTP)
    before = switch.running_config()
    second = connect(switch)
    deploy(second, WEB_APP)
    second.rollback()
    assert switch.running_config() == before
    with pytest.raises(DriverError, match="committed nothing to roll back"):
        second.rollback()


def test_rollback_of_an_unconfirmed_commit_aborts_it(switch, connect):
    driver = connect(switch)
    before = switch.running_config()
    driver.load(WEB_APP)
    driver.commit(confirm_within=600)
    driver.rollback()
    assert switch.running_config() == before


def test_confirm_timers_are_within_what_eos_takes(switch, connect):
    driver = connect(switch)
    driver.load(DNS_NTP)
    with pytest.raises(DriverError, match="1 s to 23:59:59"):
        driver.commit(confirm_within=86400)


def test_counters_per_match(switch, connect):
    driver = connect(switch)
    deploy(driver, DNS_NTP)
    switch.count("dns_ntp_services", "rule73", packets=10, bytes_=740)
    counters = driver.counters()
    assert MatchCounters("dns_ntp_services", "rule73", 10, 740) in counters
    assert [c.match for c in counters] == [
        "rule72",
        "rule72-reverse",
        "rule73",
        "rule73-reverse",
        "ipv4-all-default",
        "ipv6-all-default",
    ]


def test_counters_in_an_unknown_shape_are_an_error_not_zeros():
    with pytest.raises(DriverError, match="expected trafficPolicies"):
        _match_counters(
            "sw1", {"trafficPolicies": {"p": {"rules": [{"ruleString": "m", "pktCount": 3}]}}}
        )


def test_eos_4_32_reports_the_pending_session_at_the_top_level():
    # NAPALM `_get_pending_commits`: "Syntax change >EOS 4.32".
    output = {
        "commitTimerSessionName": "microseg-1",
        "commitTimerExpireTime": 1234.5,
        "sessions": {},
    }
    assert session_state(output, "microseg-1") == "pendingCommitTimer"
    assert (
        session_state({"sessions": {"microseg-1": {"state": "pendingCommitTimer"}}}, "microseg-1")
        == "pendingCommitTimer"
    )
    assert session_state({"sessions": {}}, "microseg-1") is None


# -- faults ------------------------------------------------------------------------------


def test_connection_refused_names_the_device():
    double = EapiDouble(SWITCH)
    endpoint = double.endpoint()
    double.close()
    with pytest.warns(InsecureTransportWarning):
        driver = EosDriver(SWITCH, endpoint, "admin", "secret")
    with pytest.raises(DeviceUnreachable) as refused:
        driver.facts()
    assert str(refused.value).startswith(
        f"device '{SWITCH}', command 'show version': http://127.0.0.1:"
    )
    assert "Connection refused" in str(refused.value)


def test_a_wrong_password_is_an_authentication_error_without_the_password(switch, connect):
    driver = connect(switch, password="hunter2")
    with pytest.raises(AuthenticationFailed) as refused:
        driver.facts()
    assert "refused the username or password (HTTP 401)" in str(refused.value)
    assert "hunter2" not in str(refused.value) and "hunter2" not in repr(driver)


def test_a_command_rejected_mid_session_aborts_it_and_changes_nothing(switch, connect):
    driver = connect(switch)
    deploy(driver, DNS_NTP)
    before = switch.running_config()
    switch.reject(r"match drop_all_else_web-app ipv4", "Hardware resources exhausted")
    second = connect(switch)
    with pytest.raises(CommandRejected) as rejected:
        second.load(WEB_APP)
    error = rejected.value
    assert error.command == "match drop_all_else_web-app ipv4" and error.code == 1000
    assert str(error).startswith(
        f"device '{SWITCH}', command 'match drop_all_else_web-app ipv4': Hardware resources exhausted"
    )
    assert "failed: could not run command" in str(error)
    assert switch.running_config() == before
    assert second.session not in switch.sessions  # aborted


def test_a_switch_that_does_not_answer_in_time(switch, connect):
    switch.hang(10)
    driver = connect(switch, timeout=0.3)
    with pytest.raises(DeviceUnreachable, match=r"did not answer within 0\.3 s"):
        driver.facts()


def test_no_traceback_reaches_the_terminal_when_a_device_fails(capfd):
    double = EapiDouble(SWITCH)
    endpoint = double.endpoint()
    double.close()
    with pytest.warns(InsecureTransportWarning):
        driver = EosDriver(SWITCH, endpoint, "admin", "secret")
    with pytest.raises(DeviceUnreachable):
        driver.facts()
    assert "Traceback" not in capfd.readouterr().err


def test_a_commit_timer_expires_when_microseg_dies_before_confirming(switch, tmp_path):
    before = switch.running_config()
    script = textwrap.dedent(
        f"""
        import sys, time, warnings
        warnings.simplefilter("ignore")
        from microseg.targets.eos.driver import EapiEndpoint, EosDriver
        driver = EosDriver("{SWITCH}", EapiEndpoint("127.0.0.1", {switch.port}, "http"), "admin", "secret",
                           session="change-42")
        driver.load(open(sys.argv[1]).read())
        driver.commit(confirm_within=2)
        print("committed", flush=True)
        time.sleep(120)
        """
    )
    config = tmp_path / "web-app.eos"
    config.write_text(WEB_APP)
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(config)],
        stdout=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    try:
        assert child.stdout.readline().strip() == "committed"
        assert "traffic-policy vrf_all_home" in switch.running_config()
        child.kill()  # SIGKILL: no confirm, no cleanup
        child.wait(timeout=30)
    finally:
        child.kill()
        child.stdout.close()
    assert switch.wait_until(lambda d: "change-42" in d.expired)
    assert switch.running_config() == before
    with pytest.warns(InsecureTransportWarning):
        restarted = EosDriver(SWITCH, switch.endpoint(), "admin", "secret", session="change-42")
    with pytest.raises(DriverError, match="no commit of configuration session 'change-42' waits"):
        restarted.confirm()


def test_tls_is_verified_against_the_given_ca(tmp_path):
    ca, certificate, key = make_tls_files(tmp_path)
    with EapiDouble(SWITCH, tls=(certificate, key)) as switch:
        trusted = EosDriver(SWITCH, switch.endpoint(ca_file=str(ca)), "admin", "secret")
        assert trusted.facts().hostname == SWITCH
        untrusted = EosDriver(SWITCH, switch.endpoint(), "admin", "secret")
        with pytest.raises(DeviceUnreachable, match=r"TLS certificate not trusted .*give the CA"):
            untrusted.facts()


def test_a_missing_ca_file_is_a_clear_error(tmp_path):
    from microseg.targets.eos.driver import EapiEndpoint

    with pytest.raises(DriverError, match=r"CA file .*nowhere\.pem"):
        EosDriver(
            SWITCH,
            EapiEndpoint("127.0.0.1", ca_file=str(tmp_path / "nowhere.pem")),
            "admin",
            "secret",
        )


def test_plain_http_warns(switch):
    with pytest.warns(InsecureTransportWarning, match="unencrypted"):
        EosDriver(SWITCH, switch.endpoint(), "admin", "secret")

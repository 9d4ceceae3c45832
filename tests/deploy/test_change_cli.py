"""`microseg change` and `microseg drift` as a user runs them, against the seed's switch and
vZTX eAPI test doubles: the seed story, four-eyes, every verb, and the device faults."""

from __future__ import annotations

import json

import pytest
from deploy_lab import (
    DNS_NTP,
    SWITCH,
    VZTX,
    WEB_APP,
    hand_edit,
    owned,
    with_implicit_defaults,
)

from support import EXAMPLES


def ok(result):
    assert result.exit_code == 0, result.stderr
    return result


def as_json(result):
    return json.loads(ok(result).stdout)


def deploy(run_cli, policy, *run_options, approver="bob"):
    """import -> change create -> approve -> run; the change's number and run result."""
    ok(run_cli("import", str(policy)))
    change = as_json(run_cli("change", "create", "--json"))["id"]
    ok(run_cli("change", "approve", str(change), "--author", approver))
    result = run_cli("change", "run", str(change), "--json", *run_options)
    return change, json.loads(result.stdout) if result.stdout else None, result


def show(run_cli, change):
    return as_json(run_cli("change", "show", str(change), "--json"))


# -- the seed story -----------------------------------------------------------------------


def test_the_seed_story_ends_with_the_seeds_running_configurations(
    store_env, lab, switch, vztx, run_cli
):
    uplink = "interface Ethernet1\n   description uplink to core\n   no switchport\n"
    _first, result, _ = deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    assert result["state"] == "succeeded", result
    assert owned(switch) == with_implicit_defaults(DNS_NTP)
    # The vZTX is configured by the policy, but no switch mirrors to it yet.
    assert [(d["device"], d["state"]) for d in result["devices"]] == [
        (VZTX, "unchanged"),
        (SWITCH, "confirmed"),
    ]

    _second, result, _ = deploy(run_cli, lab("home-lab-monitor.yaml"))
    assert result["state"] == "succeeded", result
    monitor = ok(run_cli("compile", "rev:2", "--device", VZTX)).stdout
    assert "interface Tunnel0" in monitor
    assert owned(vztx, "monitor-node") == monitor

    _third, result, _ = deploy(run_cli, lab("home-lab.yaml"))
    assert result["state"] == "succeeded", result
    assert owned(switch) == with_implicit_defaults(WEB_APP)
    assert owned(vztx, "monitor-node") == ""
    assert uplink in switch.running_config()  # nothing microseg does not own is touched
    assert "traffic-policy vrf_all_home" in switch.startup  # confirmed commits are saved
    assert [c["state"] for c in as_json(run_cli("change", "list", "--json"))] == ["succeeded"] * 3


def test_a_workspace_submitted_with_change_creates_the_change(store_env, lab, run_cli):
    ok(run_cli("import", str(lab("home-lab.yaml"))))
    ok(run_cli("workspace", "create", "narrow"))
    narrow = lab("home-lab.yaml").with_name("narrow-web.yaml")
    narrow.write_text(
        "rules:\n  - name: clients_to_webservers\n    sources: [wifi_clients]\n"
        "    destinations: [web01_web02]\n    services: [HTTP]\n"
    )
    ok(run_cli("workspace", "set", "narrow", "--file", str(narrow)))
    submitted = ok(run_cli("workspace", "submit", "narrow", "--change"))
    assert "workspace 'narrow' submitted as revision 2" in submitted.stdout
    assert "change 1 created: deploy revision 2" in submitted.stdout
    change = show(run_cli, 1)
    assert change["revision"] == 2 and change["state"] == "pending-approval"


def test_create_plans_only_devices_whose_configuration_changes(
    store_env, lab, switch, vztx, run_cli
):
    deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    ok(run_cli("import", str(lab("home-lab.yaml"))))
    change = as_json(run_cli("change", "create", "--json"))
    # The vZTX gets nothing in either revision: it is not part of the change.
    assert [d["device"] for d in change["devices"]] == [SWITCH]
    planned = change["devices"][0]["planned_diff"]
    assert "--- change 1 andreasm-720xp-home" in planned
    assert "+   traffic-policy vrf_all_home" in planned
    ok(run_cli("import", str(lab("home-lab.yaml"))))
    nothing = run_cli("change", "create", "--revision", "2")
    assert nothing.exit_code == 0  # revision 2 is not deployed yet either
    deploy_again = run_cli("change", "create", "--device", "nowhere")
    assert deploy_again.exit_code == 1
    assert "device 'nowhere' is not configured by this revision" in deploy_again.stderr


# -- review: approve, four-eyes, cancel ---------------------------------------------------


def test_four_eyes_refuses_the_authors_own_approval(store_env, lab, switch, vztx, run_cli):
    ok(run_cli("db", "init"))  # reading the setting never creates a store
    assert ok(run_cli("change", "four-eyes")).stdout.startswith("four-eyes is off")
    on = ok(run_cli("change", "four-eyes", "on", "--author", "admin"))
    assert "four-eyes is on (set by admin, " in on.stdout
    ok(run_cli("import", str(lab("home-lab-dns-ntp.yaml"))))
    ok(run_cli("change", "create"))
    refused = run_cli("change", "approve", "1")
    assert refused.exit_code == 1
    assert "four-eyes is on: change 1 was created by 'andreas'" in refused.stderr
    assert show(run_cli, 1)["state"] == "pending-approval"
    assert run_cli("change", "run", "1").exit_code == 1  # not approved: nothing runs
    assert switch.requests == [] and vztx.requests == []
    ok(run_cli("change", "approve", "1", "--author", "bob", "--comment", "diff reviewed"))
    change = show(run_cli, 1)
    assert change["state"] == "approved"
    assert [(a["approver"], a["comment"]) for a in change["approvals"]] == [
        ("bob", "diff reviewed")
    ]
    trail = [(e["actor"], e["kind"]) for e in change["events"]]
    assert trail == [("andreas", "created"), ("bob", "approval"), ("bob", "approved")]
    assert all(e["at"] for e in change["events"])


def test_without_four_eyes_the_author_may_approve(store_env, lab, run_cli):
    ok(run_cli("import", str(lab("home-lab-dns-ntp.yaml"))))
    ok(run_cli("change", "create"))
    assert "approved by andreas" in ok(run_cli("change", "approve", "1")).stdout


def test_a_cancelled_change_never_runs(store_env, lab, switch, run_cli):
    ok(run_cli("import", str(lab("home-lab-dns-ntp.yaml"))))
    ok(run_cli("change", "create"))
    ok(run_cli("change", "approve", "1"))
    ok(run_cli("change", "cancel", "1", "--author", "carol"))
    refused = run_cli("change", "run", "1")
    assert refused.exit_code == 1 and "change 1 is cancelled" in refused.stderr
    assert run_cli("change", "approve", "1").exit_code == 1
    again = run_cli("change", "cancel", "1")
    assert again.exit_code == 1 and again.stderr == (
        "error: change 1 is cancelled: it must be pending-approval or approved or interrupted "
        "to become cancelled\n"
    )
    assert show(run_cli, 1)["events"][-1]["actor"] == "carol"
    assert switch.requests == []


def test_an_unknown_change_is_a_user_error(store_env, run_cli):
    ok(run_cli("db", "init"))
    for verb in ("show", "approve", "run", "cancel", "rollback"):
        result = run_cli("change", verb, "7")
        assert result.exit_code == 1, verb
        assert "no change 7 (there are none yet" in result.stderr


# -- run ----------------------------------------------------------------------------------


def test_a_dry_run_shows_the_devices_diff_and_changes_nothing(
    store_env, lab, switch, vztx, run_cli
):
    ok(run_cli("import", str(lab("home-lab-dns-ntp.yaml"))))
    ok(run_cli("change", "create"))
    before = switch.running_config()
    dry = ok(run_cli("change", "run", "1", "--dry-run"))  # before approval: a review aid
    assert f"device diff {SWITCH}:" in dry.stdout
    assert "+   traffic-policy dns_ntp_services" in dry.stdout
    assert "dry run of change 1: 1 unchanged, 1 would change" in dry.stdout
    assert switch.running_config() == before and not switch.sessions
    assert show(run_cli, 1)["state"] == "pending-approval"


def test_progress_goes_to_stderr_one_line_per_step(store_env, lab, switch, vztx, run_cli):
    _, _, run = deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    lines = run.stderr.splitlines()
    assert f"{SWITCH}: committed (confirm within 300 s)" in lines
    assert f"{SWITCH}: confirmed" in lines
    assert f"{VZTX}: unchanged" in lines
    assert any(
        line.startswith(f"{SWITCH}: warning (device '{SWITCH}': eAPI over plain http")
        for line in lines
    )


def test_the_per_device_log_is_kept_with_the_change(store_env, lab, switch, vztx, run_cli):
    change, _, _ = deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    record = show(run_cli, change)
    device = record["devices"][1]
    assert device["device"] == SWITCH and device["state"] == "confirmed"
    assert device["session"] == f"microseg-change-{change}-1"
    assert "+   traffic-policy dns_ntp_services" in device["device_diff"]
    log = [e["message"] for e in record["events"] if e["device"] == SWITCH]
    assert log[-2].startswith("committed; the device restores it unless confirmed within 300 s")
    assert log[-1] == "confirmed"
    text = ok(run_cli("change", "show", str(change))).stdout
    assert f"  {SWITCH} (eos): confirmed" in text
    assert "running" in text and "succeeded" in text


def test_a_rejected_command_fails_the_device_and_rolls_back_the_others(
    store_env, lab, switch, vztx, run_cli
):
    before_vztx = owned(vztx, "monitor-node")
    before_switch = switch.running_config()
    switch.reject(r"match web-appserver-discovery ipv4", "Hardware resources exhausted")
    change, result, run = deploy(run_cli, lab("home-lab-monitor.yaml"))
    assert run.exit_code == 1
    assert result["state"] == "failed"
    states = {d["device"]: d for d in result["devices"]}
    assert states[VZTX]["state"] == "rolled-back"
    assert states[SWITCH]["state"] == "failed"
    assert (
        "load: device 'andreasm-720xp-home', command 'match web-appserver-discovery ipv4': "
        "Hardware resources exhausted" in states[SWITCH]["error"]
    )
    assert owned(vztx, "monitor-node") == before_vztx  # its tunnel is gone again
    assert switch.running_config() == before_switch and not switch.sessions
    assert show(run_cli, change)["state"] == "failed"


def test_a_failed_device_stops_the_devices_after_it(store_env, lab, switch, vztx, run_cli):
    vztx.reject(r"interface Tunnel0")
    before = switch.running_config()
    _change, result, _ = deploy(run_cli, lab("home-lab-monitor.yaml"))
    assert [(d["device"], d["state"]) for d in result["devices"]] == [
        (VZTX, "failed"),
        (SWITCH, "skipped"),
    ]
    assert switch.running_config() == before
    assert not any(c[0].startswith("configure session") for c in switch.requests)


def test_continue_on_error_deploys_and_keeps_the_other_devices(
    store_env, lab, switch, vztx, run_cli
):
    vztx.reject(r"interface Tunnel0")
    _change, result, run = deploy(run_cli, lab("home-lab-monitor.yaml"), "--continue-on-error")
    assert run.exit_code == 1
    assert [(d["device"], d["state"]) for d in result["devices"]] == [
        (VZTX, "failed"),
        (SWITCH, "confirmed"),
    ]
    assert "monitor session andreas-vztx-ALL" in owned(switch)


def test_an_unreachable_device_touches_no_device(store_env, lab, switch, vztx, run_cli):
    policy = lab("home-lab-monitor.yaml")
    vztx.close()  # connection refused from now on
    before = switch.running_config()
    _change, result, _ = deploy(run_cli, policy)
    assert result["state"] == "failed"
    failed = result["devices"][0]
    assert failed["device"] == VZTX and "Connection refused" in failed["error"]
    assert result["devices"][1]["state"] == "skipped"
    assert switch.running_config() == before


def test_a_wrong_password_fails_without_showing_it(
    store_env, lab, switch, vztx, run_cli, tmp_path, monkeypatch
):
    credentials = tmp_path / "credentials.toml"
    credentials.write_text(
        '[default]\nusername = "admin"\npassword = "secret"\n\n'
        f'[devices.{SWITCH}]\nusername = "admin"\npassword = "hunter2"\n'
    )
    credentials.chmod(0o600)
    monkeypatch.delenv("MICROSEG_DEVICE_USERNAME")
    monkeypatch.delenv("MICROSEG_DEVICE_PASSWORD")
    monkeypatch.setenv("MICROSEG_CREDENTIALS_FILE", str(credentials))
    change, result, run = deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    switch_outcome = result["devices"][1]
    assert switch_outcome["state"] == "failed"
    assert "refused the username or password (HTTP 401)" in switch_outcome["error"]
    shown = ok(run_cli("change", "show", str(change), "--json")).stdout
    assert "hunter2" not in run.stdout + run.stderr + shown


def test_a_device_that_does_not_answer_in_time(store_env, lab, switch, vztx, run_cli):
    policy = lab("home-lab-dns-ntp.yaml")
    switch.hang(10)
    _, result, _ = deploy(run_cli, policy, "--timeout", "0.3")
    assert result["state"] == "failed"
    assert "did not answer within 0.3 s" in result["devices"][1]["error"]


@pytest.mark.slow
def test_a_commit_whose_timer_expires_before_the_confirm_is_undone(
    store_env, lab, switch, vztx, run_cli
):
    before = switch.running_config()
    # The switch answers 3 s late once the commit is in: its 1 s timer expires first.
    switch.hang_after(r"configure session \S+ commit timer .*", 3)
    change, result, _ = deploy(run_cli, lab("home-lab-dns-ntp.yaml"), "--confirm-within", "1")
    assert result["state"] == "failed"
    error = result["devices"][1]["error"]
    assert "read back:" in error or "confirm:" in error, error
    assert switch.wait_until(lambda d: f"microseg-change-{change}-1" in d.expired)
    switch.hang(0)
    assert switch.running_config() == before


# -- rollback ----------------------------------------------------------------------------


def test_rollback_deploys_the_previous_revision_again(store_env, lab, switch, vztx, run_cli):
    deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    second, _result, _ = deploy(run_cli, lab("home-lab.yaml"))
    assert owned(switch) == with_implicit_defaults(WEB_APP)
    created = ok(run_cli("change", "rollback", str(second)))
    assert "change 3 created: roll back change 2 by deploying revision 1" in created.stdout
    ok(run_cli("change", "approve", "3", "--author", "bob"))
    assert as_json(run_cli("change", "run", "3", "--json"))["state"] == "succeeded"
    assert owned(switch) == with_implicit_defaults(DNS_NTP)
    assert show(run_cli, second)["state"] == "rolled-back"
    assert show(run_cli, 3)["rollback_of"] == second
    refused = run_cli("change", "rollback", "1")
    assert refused.exit_code == 1 and "first deploy" in refused.stderr


# -- drift and hand edits ------------------------------------------------------------------


def test_drift_before_the_first_deploy_shows_what_would_be_replaced(
    store_env, lab, switch, vztx, run_cli
):
    ok(run_cli("import", str(lab("home-lab-dns-ntp.yaml"))))
    before = run_cli("drift", "--device", SWITCH)
    assert before.exit_code == 1
    assert f"{SWITCH}: drift\n" in before.stdout
    assert "+   traffic-policy dns_ntp_services" in before.stdout


def test_a_hand_edit_is_drift_and_is_not_overwritten_without_force(
    store_env, lab, switch, vztx, run_cli
):
    deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    assert ok(run_cli("drift")).stdout == f"{VZTX}: in sync\n{SWITCH}: in sync\n"
    hand_edit(switch, "traffic-policies", "field-set ipv4 prefix printers", "10.100.7.0/24")
    drifted = run_cli("drift", "--json")
    assert drifted.exit_code == 1
    report = {d["device"]: d for d in json.loads(drifted.stdout)["devices"]}
    assert report[SWITCH]["hand_edited"] and not report[SWITCH]["in_sync"]
    assert "-   field-set ipv4 prefix printers" in report[SWITCH]["diff"]
    assert report[VZTX]["in_sync"]

    edited = switch.running_config()
    change, _result, run = deploy(run_cli, lab("home-lab.yaml"))
    assert run.exit_code == 1
    assert "edited outside microseg on andreasm-720xp-home" in run.stderr
    assert switch.running_config() == edited
    assert show(run_cli, change)["state"] == "approved"
    forced = as_json(run_cli("change", "run", str(change), "--force", "--json"))
    assert forced["state"] == "succeeded"
    assert owned(switch) == with_implicit_defaults(WEB_APP)
    assert ok(run_cli("drift")).stdout.endswith(f"{SWITCH}: in sync\n")


def test_a_first_deploy_does_not_replace_configuration_it_never_deployed(
    store_env, lab, switch, vztx, run_cli
):
    hand_edit(switch, "traffic-policies", "field-set ipv4 prefix printers", "10.100.7.0/24")
    _, _, run = deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    assert run.exit_code == 1 and "edited outside microseg on andreasm-720xp-home" in run.stderr
    assert "field-set ipv4 prefix printers" in switch.running_config()


@pytest.mark.parametrize("parallel", ["1", "2"])
def test_a_second_run_of_a_finished_change_is_refused(
    store_env, lab, switch, vztx, run_cli, parallel
):
    change, result, _ = deploy(run_cli, lab("home-lab-dns-ntp.yaml"), "--parallel", parallel)
    assert result["state"] == "succeeded"
    again = run_cli("change", "run", str(change))
    assert again.exit_code == 1 and f"change {change} is succeeded" in again.stderr


def test_ctrl_c_during_a_run_says_what_was_left_and_what_to_do(
    store_env, lab, switch, vztx, run_cli
):
    import signal
    import subprocess

    from support import cli_command, cli_env

    ok(run_cli("import", str(lab("home-lab-dns-ntp.yaml"))))
    change = as_json(run_cli("change", "create", "--json"))["id"]
    ok(run_cli("change", "approve", str(change), "--author", "bob"))
    switch.hang_after(r"configure session \S+", 60)  # stuck in the middle of its load
    run = subprocess.Popen(
        cli_command("change", "run", str(change)),
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal delivers it: a suite started in the background by a
        # non-interactive shell ignores SIGINT, and its children inherit that (POSIX,
        # "Asynchronous Lists"), so Python would install no KeyboardInterrupt handler
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    said = []
    try:
        assert switch.wait_until(lambda double: double.hanging)
        run.send_signal(signal.SIGINT)
        for line in run.stderr:  # said at once, while the device is still in its step
            said.append(line)
            if "interrupted" in line:
                break
    finally:
        switch.hang(0)  # the request in flight is answered: the run's step ends
        _, rest = run.communicate(timeout=60)
    stderr = "".join(said) + rest
    assert run.returncode == 130
    assert f"change {change} interrupted (Ctrl-C): no other device is started" in said[-1]
    assert f"microseg change run {change} runs it again" in stderr
    assert "Traceback" not in stderr
    assert show(run_cli, change)["state"] == "interrupted"


def test_a_rollback_that_fails_is_on_the_devices_record_not_only_in_the_progress(
    store_env, lab, switch, vztx, run_cli
):
    switch.reject(r"match web-appserver-discovery ipv4", "Hardware resources exhausted")
    vztx.hang_after(r"configure session \S+ commit", 5)  # unreachable once it confirmed
    ok(run_cli("import", str(lab("home-lab-monitor.yaml"))))
    change = as_json(run_cli("change", "create", "--json"))["id"]
    ok(run_cli("change", "approve", str(change), "--author", "bob"))
    try:
        run = run_cli("change", "run", str(change), "--timeout", "0.5")
    finally:
        vztx.hang(0)
    assert run.exit_code == 1
    assert run.stdout == (
        f"change {change} failed (rollback failed, still running it: {VZTX}): "
        "1 confirmed, 1 failed\n"
    )
    states = {d["device"]: d for d in show(run_cli, change)["devices"]}
    assert states[VZTX]["state"] == "confirmed"  # it runs this change's configuration
    assert states[VZTX]["error"].startswith(
        "rollback failed, the device keeps this change's configuration: device 'andreas-ztx1'"
    )


def test_change_list_limit_shows_only_the_newest(store_env, run_cli):
    from microseg.store import open_store

    ok(run_cli("import", str(EXAMPLES / "home-lab.yaml")))
    with open_store() as store:
        for number in range(5):
            store.changes.create(1, None, "andreas", f"change {number + 1}", [])
    listed = as_json(run_cli("change", "list", "-n", "2", "--json"))
    assert [c["id"] for c in listed] == [5, 4]
    assert run_cli("change", "list", "-n", "0").exit_code == 1


def test_four_eyes_shows_its_setting_as_json_as_the_api_does(store_env, run_cli):
    ok(run_cli("db", "init"))
    assert as_json(run_cli("change", "four-eyes", "--json")) == {
        "on": False,
        "set_by": None,
        "set_at": None,
    }
    shown = as_json(run_cli("change", "four-eyes", "on", "--author", "admin", "--json"))
    assert (shown["on"], shown["set_by"]) == (True, "admin") and shown["set_at"].endswith("+00:00")

"""microseg killed (SIGKILL) in the middle of a multi-device `change run`: the change is
reported `interrupted`, no device is left half-configured, and the change runs again."""

from __future__ import annotations

import json
import subprocess

import pytest
from deploy_lab import SWITCH, VZTX, owned, pointed_at
from seed_doubles import seed_switch

from support import EXAMPLES, cli_command, cli_env

LEAF3 = "leaf3"


def three_device_lab(directory, doubles):
    """The seed's monitor stage with a second switch, `leaf3`, in the domain."""
    from microseg.policyfile import dump_policy, load_policy

    policy_set = load_policy(EXAMPLES / "home-lab-monitor.yaml")
    switch = policy_set.device(SWITCH)
    leaf3 = switch.model_copy(
        update={"name": LEAF3, "loopback_address": "10.255.1.12", "monitor_tunnel": 1}
    )
    domain = policy_set.domains[0]
    grown = policy_set.model_copy(
        update={
            "devices": (*policy_set.devices, leaf3),
            "domains": (domain.model_copy(update={"devices": (*domain.devices, LEAF3)}),),
        }
    )
    source = directory / "three-devices.yaml"
    source.write_text(dump_policy(grown))
    return pointed_at(source, directory, doubles)


@pytest.fixture
def leaf3():
    with seed_switch() as double:
        yield double


def cli(store_env, *args):
    env = cli_env(
        MICROSEG_DATABASE_URL=store_env,
        MICROSEG_AUTHOR="andreas",
        MICROSEG_DEVICE_USERNAME="admin",
        MICROSEG_DEVICE_PASSWORD="secret",
    )
    return subprocess.Popen(
        cli_command(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize(
    "killed_after",
    [r"configure session \S+ commit timer .*", "rollback clean-config"],
    ids=["committed-not-confirmed", "loaded-not-committed"],
)
def test_a_run_killed_mid_way_is_interrupted_and_runs_again(
    store_env, tmp_path, switch, vztx, leaf3, run_cli, killed_after
):
    policy = three_device_lab(tmp_path, {SWITCH: switch, VZTX: vztx, LEAF3: leaf3})
    assert run_cli("import", str(policy)).exit_code == 0
    assert run_cli("change", "create").exit_code == 0
    assert run_cli("change", "approve", "1").exit_code == 0
    before_switch = switch.running_config()
    before_leaf3 = leaf3.running_config()

    # The switch (second of three) stops answering right after `killed_after`.
    switch.hang_after(killed_after, 120)
    runner = cli(store_env, "change", "run", "1", "--parallel", "1", "--confirm-within", "5")
    try:
        assert switch.wait_until(lambda d: d.hanging, timeout=60), "the run never got there"
        runner.kill()  # SIGKILL: no cleanup, no confirm
        runner.wait(timeout=30)
    finally:
        runner.kill()
        runner.communicate()

    shown = json.loads(run_cli("change", "show", "1", "--json").stdout)
    assert shown["state"] == "interrupted"
    states = {d["device"]: d["state"] for d in shown["devices"]}
    assert states == {VZTX: "confirmed", SWITCH: "interrupted", LEAF3: "pending"}
    assert shown["events"][-1]["kind"] == "interrupted"
    assert "interface Tunnel0" in owned(vztx, "monitor-node")  # confirmed before the kill

    if killed_after != "rollback clean-config":
        # Not confirmed: the switch restores its configuration by itself.
        assert switch.wait_until(lambda d: "microseg-change-1-1" in d.expired, timeout=60)
    switch.hang(0)
    assert switch.running_config() == before_switch  # not half-configured
    assert leaf3.running_config() == before_leaf3  # never started

    again = run_cli("change", "run", "1", "--json")
    assert again.exit_code == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["state"] == "succeeded"
    assert [(d["device"], d["state"]) for d in result["devices"]] == [
        (VZTX, "confirmed"),
        (SWITCH, "confirmed"),
        (LEAF3, "confirmed"),
    ]
    for name, double in ((SWITCH, switch), (LEAF3, leaf3)):
        assert owned(double) == run_cli("compile", "rev:1", "--device", name).stdout
    assert "monitor session andreas-vztx-ALL" in owned(switch)
    assert not switch.sessions.get("microseg-change-1-1")  # the dead run's session is gone

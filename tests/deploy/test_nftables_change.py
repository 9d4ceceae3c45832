"""Change control to a real nftables device: the seed lab's switch as a network namespace,
deployed through `microseg change`, enforced for real packets, and drift after a hand edit."""

from __future__ import annotations

import json

import pytest
from deploy_lab import SWITCH, VZTX, pointed_at
from tests.evaluate.netns import in_ns
from tests.evaluate.test_seed_lab_kernel import replay
from tests.targets.test_nftables_driver import ROWS, expected
from tests.targets.test_nftables_driver import lab as nft_lab  # noqa: F401 (a fixture)

from microseg.policyfile import dump_policy, load_policy
from support import EXAMPLES

pytestmark = pytest.mark.system


def nftables_lab(example: str, namespace: str, directory):
    """The seed example with the switch as an nftables device in `namespace`."""
    policy_set = load_policy(EXAMPLES / example)
    switch = policy_set.device(SWITCH).model_copy(
        update={"platform": "nftables", "management_namespace": namespace}
    )
    path = directory / example
    path.write_text(dump_policy(policy_set.model_copy(update={"devices": (switch,)})))
    return path, policy_set


def ok(result):
    assert result.exit_code == 0, result.stderr
    return result


def test_a_change_deploys_to_an_nftables_namespace_and_drift_sees_a_hand_edit(
    nft_lab,  # noqa: F811 (the fixture imported above)
    store_env,
    run_cli,
    tmp_path,
    monkeypatch,
):
    lab = nft_lab
    namespace = lab["switch"]
    in_ns(namespace, "nft", "flush", "ruleset")
    monkeypatch.delenv("MICROSEG_DEVICE_USERNAME")  # nftables on this host needs no login
    monkeypatch.delenv("MICROSEG_DEVICE_PASSWORD")
    for example in ("home-lab-dns-ntp.yaml", "home-lab.yaml"):
        policy, policy_set = nftables_lab(example, namespace, tmp_path)
        ok(run_cli("import", str(policy)))
        change = json.loads(ok(run_cli("change", "create", "--device", SWITCH, "--json")).stdout)
        ok(run_cli("change", "approve", str(change["id"])))
        result = json.loads(
            ok(
                run_cli("change", "run", str(change["id"]), "--confirm-within", "60", "--json")
            ).stdout
        )
        assert [(d["device"], d["state"]) for d in result["devices"]] == [(SWITCH, "confirmed")]
        assert replay(lab, ROWS) == expected(policy_set)
    assert ok(run_cli("drift", "--device", SWITCH)).stdout == f"{SWITCH}: in sync\n"

    in_ns(namespace, "nft", "add", "rule", "inet", "microseg", "forward", "counter", "accept")
    drifted = run_cli("drift", "--device", SWITCH, "--json")
    assert drifted.exit_code == 1
    (report,) = json.loads(drifted.stdout)["devices"]
    assert report["hand_edited"] and not report["in_sync"]


def test_a_run_killed_mid_way_over_a_namespace_and_eapi_doubles_runs_again(
    nft_lab,  # noqa: F811 (the fixture imported above)
    store_env,
    run_cli,
    tmp_path,
    vztx,
):
    """Three devices: the vZTX (eAPI double), the switch as an nftables namespace, and a
    second switch `leaf3` (eAPI double) on which microseg is killed after its commit."""
    from seed_doubles import seed_switch
    from test_crash import cli

    namespace = nft_lab["switch"]
    in_ns(namespace, "nft", "flush", "ruleset")
    policy_set = load_policy(EXAMPLES / "home-lab-dns-ntp.yaml")
    seed = policy_set.device(SWITCH)
    nft_switch = seed.model_copy(update={"platform": "nftables", "management_namespace": namespace})
    leaf3 = seed.model_copy(
        update={"name": "leaf3", "loopback_address": "10.255.1.12", "monitor_tunnel": 1}
    )
    domain = policy_set.domains[0]
    grown = policy_set.model_copy(
        update={
            "devices": (nft_switch, leaf3),
            "domains": (domain.model_copy(update={"devices": (SWITCH, "leaf3")}),),
        }
    )
    source = tmp_path / "mixed.yaml"
    source.write_text(dump_policy(grown))
    with seed_switch() as leaf3_double:
        policy = pointed_at(source, tmp_path, {VZTX: vztx, "leaf3": leaf3_double}, "lab.yaml")
        ok(run_cli("import", str(policy)))
        ok(run_cli("change", "create"))
        ok(run_cli("change", "approve", "1"))
        before_leaf3 = leaf3_double.running_config()
        leaf3_double.hang_after(r"configure session \S+ commit timer .*", 120)
        runner = cli(store_env, "change", "run", "1", "--confirm-within", "5")
        try:
            assert leaf3_double.wait_until(lambda d: d.hanging, timeout=120)
            runner.kill()
            runner.wait(timeout=30)
        finally:
            runner.kill()
            runner.communicate()

        shown = json.loads(ok(run_cli("change", "show", "1", "--json")).stdout)
        assert shown["state"] == "interrupted"
        assert {d["device"]: d["state"] for d in shown["devices"]} == {
            VZTX: "unchanged",
            SWITCH: "confirmed",
            "leaf3": "interrupted",
        }
        assert leaf3_double.wait_until(lambda d: "microseg-change-1-1" in d.expired, timeout=60)
        leaf3_double.hang(0)
        assert leaf3_double.running_config() == before_leaf3  # restored by its timer
        assert replay(nft_lab, ROWS) == expected(grown)  # the namespace enforces already

        again = json.loads(ok(run_cli("change", "run", "1", "--json")).stdout)
        assert again["state"] == "succeeded"
        assert [d["state"] for d in again["devices"]] == ["unchanged", "confirmed", "confirmed"]
        assert "traffic-policy dns_ntp_services" in leaf3_double.running_config()

"""Change control to a real nftables device: the seed lab's switch as a network namespace,
deployed through `microseg change`, enforced for real packets, and drift after a hand edit."""

from __future__ import annotations

import json

import pytest
from deploy_lab import SWITCH
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

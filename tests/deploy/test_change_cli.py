"""`microseg change` as a user runs it, against the seed's switch and vZTX doubles."""

from __future__ import annotations

import json

from conftest import SWITCH, VZTX


def ok(result):
    assert result.exit_code == 0, result.stderr
    return result


def test_the_seed_story_deploys_through_change_control(store_env, lab, switch, vztx, run_cli):
    ok(run_cli("import", str(lab("home-lab-dns-ntp.yaml")), "-m", "DNS and NTP"))
    created = ok(run_cli("change", "create", "--json"))
    change = json.loads(created.stdout)
    assert change["state"] == "pending-approval"
    assert [d["device"] for d in change["devices"]] == [VZTX, SWITCH]
    ok(run_cli("change", "approve", "1", "--comment", "reviewed"))
    run = ok(run_cli("change", "run", "1", "--json"))
    result = json.loads(run.stdout)
    assert result["state"] == "succeeded", result
    print(switch.running_config())

"""`microseg monitor` against the seed's switch as an eAPI test double: the double's
`show traffic-policy interface counters` (ANTA's observed shape, see eapi_double.py) counts
what the test says traffic hit, and `monitor rules` reports exactly that per rule."""

from __future__ import annotations

import json
import subprocess

import pytest
from deploy_lab import SWITCH

from support import cli_command, cli_env

POLICY = "dns_ntp_services"


def ok(result):
    assert result.exit_code == 0, result.stderr
    return result


def deploy(run_cli, policy) -> int:
    ok(run_cli("import", str(policy)))
    change = json.loads(ok(run_cli("change", "create", "--json")).stdout)["id"]
    ok(run_cli("change", "approve", str(change), "--author", "bob"))
    ok(run_cli("change", "run", str(change), "--json"))
    return change


def rules(run_cli, store) -> dict:
    listing = json.loads(ok(run_cli("monitor", "rules", "--store", str(store), "--json")).stdout)
    return {(r["policy"], r["rule"]): r for r in listing["rules"]}, listing["policies"]


def test_monitor_rules_reports_what_the_switch_counted_per_rule(
    store_env, lab, switch, vztx, run_cli, tmp_path
):
    store = tmp_path / "flows"
    change = deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    polled = ok(run_cli("monitor", "poll", "--once", "--store", str(store)))
    assert f"{SWITCH}: " in polled.stdout and f"(change {change})" in polled.stdout
    switch.count(POLICY, "rule72", 10, 800)
    switch.count(POLICY, "rule72-reverse", 10, 1200)
    switch.count(POLICY, "ipv4-all-default", 5, 500)
    ok(run_cli("monitor", "poll", "--once", "--store", str(store)))
    switch.count(POLICY, "rule72", 3, 240)
    ok(run_cli("monitor", "poll", "--once", "--store", str(store)))

    by_rule, policies = rules(run_cli, store)
    assert (by_rule[(POLICY, "rule72")]["packets"], by_rule[(POLICY, "rule72")]["bytes"]) == (
        23,
        2240,
    )
    assert by_rule[(POLICY, "rule72")]["last_hit"] is not None
    assert by_rule[(POLICY, "rule73")]["packets"] == 0
    assert by_rule[(POLICY, "rule73")]["note"] == "no hit in window"
    assert by_rule[(POLICY, "ipv4-all-default")]["default"] is True
    (share,) = policies
    assert (share["packets"], share["default_packets"]) == (28, 5)
    assert share["default_share"] == round(5 / 28, 4)
    table = ok(run_cli("monitor", "rules", "--store", str(store))).stdout
    assert f"{POLICY}: default match share 17.9% of 28 packets" in table


def test_monitor_devices_shows_the_deploy_drift_budget_and_counter_age(
    store_env, lab, switch, vztx, run_cli, tmp_path
):
    store = tmp_path / "flows"
    change = deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    before = json.loads(ok(run_cli("monitor", "devices", "--store", str(store), "--json")).stdout)
    assert [d["counters_age_s"] for d in before if d["device"] == SWITCH] == [None]
    ok(run_cli("monitor", "poll", "--once", "--store", str(store)))
    states = json.loads(ok(run_cli("monitor", "devices", "--store", str(store), "--json")).stdout)
    (state,) = [d for d in states if d["device"] == SWITCH]
    assert state["reachable"] and state["drift"] is False
    assert state["last_change"] == change
    assert state["hardware_entries"] > 0
    assert state["counters_age_s"] is not None and state["counters_age_s"] >= 0


def test_an_unreachable_device_is_reported_and_poll_exits_1(
    store_env, lab, switch, vztx, run_cli, tmp_path
):
    store = tmp_path / "flows"
    deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    switch.close()
    polled = run_cli("monitor", "poll", "--once", "--timeout", "2", "--store", str(store))
    assert polled.exit_code == 1
    assert f"{SWITCH}: not polled:" in polled.stderr
    states = json.loads(ok(run_cli("monitor", "devices", "--store", str(store), "--json")).stdout)
    (state,) = [d for d in states if d["device"] == SWITCH]
    assert not state["reachable"] and state["drift"] is None and state["error"]


@pytest.mark.slow
def test_rules_and_devices_json_are_the_same_bytes_whatever_the_hash_seed_and_time_zone(
    store_env, lab, switch, vztx, run_cli, tmp_path
):
    store = str(tmp_path / "flows")
    deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    ok(run_cli("monitor", "poll", "--once", "--store", store))
    switch.count(POLICY, "rule72", 3, 240)
    switch.count(POLICY, "ipv4-all-default", 1, 60)
    ok(run_cli("monitor", "poll", "--once", "--store", store))

    def output(command: str, seed: str, zone: str) -> str:
        argv = ["monitor", command, "--json", "--store", store]
        if command == "rules":
            argv += ["--since", "2000-01-01T00:00"]  # a fixed window: the same on every run
        done = subprocess.run(
            cli_command(*argv),
            env=cli_env(PYTHONHASHSEED=seed, TZ=zone),
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    runs = [("1", "UTC"), ("2", "Asia/Tokyo")]
    rules_runs = {output("rules", seed, zone) for seed, zone in runs}
    assert len(rules_runs) == 1
    listing = json.loads(rules_runs.pop())
    assert listing["since"] == "2000-01-01T00:00:00Z"
    assert [r["rule"] for r in listing["rules"]] == sorted(r["rule"] for r in listing["rules"])
    # Everything but the age, which counts from the moment of the run.
    devices_runs = set()
    for seed, zone in runs:
        states = json.loads(output("devices", seed, zone))
        assert all(s.pop("counters_age_s") is not None for s in states if s["device"] == SWITCH)
        devices_runs.add(json.dumps(states))
    assert len(devices_runs) == 1
    (state,) = [s for s in json.loads(devices_runs.pop()) if s["device"] == SWITCH]
    assert state["counters_polled_at"].endswith("Z")


def test_a_poller_loads_and_compiles_each_revision_once_for_all_its_polls(
    store_env, lab, switch, vztx, run_cli, tmp_path, monkeypatch
):
    from microseg.monitor import CounterSeries, Revisions, poll
    from microseg.store import Store, open_store

    deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    loads: list[int] = []
    load = Store.revision_policy
    monkeypatch.setattr(
        Store,
        "revision_policy",
        lambda store, revision: loads.append(revision) or load(store, revision),
    )
    revisions, series = Revisions(), CounterSeries(tmp_path / "flows")
    for _ in range(3):
        with open_store() as store:
            (outcome,) = [o for o in poll(store, series, revisions=revisions) if o.device == SWITCH]
            assert outcome.error is None and outcome.matches > 0
    assert loads == [1]  # revision 1: head and deployed, loaded by the first poll only
    assert len(series.segments()) == 3


def test_a_poller_merges_its_segments_every_compact_after_polls(
    store_env, lab, switch, vztx, run_cli, tmp_path, monkeypatch
):
    import importlib

    from microseg.monitor import CounterSeries, Revisions, poll
    from microseg.store import open_store

    # (the package's `poll` is the function: the module by its name)
    monkeypatch.setattr(importlib.import_module("microseg.monitor.poll"), "COMPACT_AFTER", 4)
    deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    revisions, counters = Revisions(), CounterSeries(tmp_path / "flows")
    files = []
    for _ in range(9):
        switch.count(POLICY, "rule72", 1, 80)
        with open_store() as store:
            poll(store, counters, revisions=revisions)
        files.append(len(list(counters.directory.glob("seg-*.parquet"))))
    assert files == [1, 2, 3, 1, 2, 3, 1, 2, 3]  # 4 polls -> 1, then that one and 3 -> 1
    by_rule, _ = rules(run_cli, tmp_path / "flows")
    assert by_rule[(POLICY, "rule72")]["packets"] == 8  # 9 polls: a baseline, then 8 deltas


def test_a_compaction_that_fails_does_not_fail_the_poll(
    store_env, lab, switch, vztx, run_cli, tmp_path, monkeypatch, caplog
):
    import errno
    import logging

    from microseg.monitor import CounterSeries, poll
    from microseg.store import open_store

    def full(self, at_least=2, small_bytes=0):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(CounterSeries, "compact", full)
    deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    counters = CounterSeries(tmp_path / "flows")
    with open_store() as store, caplog.at_level(logging.WARNING, logger="microseg.monitor"):
        (outcome,) = [o for o in poll(store, counters) if o.device == SWITCH]
    assert outcome.error is None and len(counters.segments()) == 1
    assert "not compacted: No space left on device" in caplog.text


@pytest.mark.parametrize("where", ["a-file", "a-file/below", "not-a-store"])
def test_a_store_that_cannot_hold_the_counters_is_refused_before_any_device_is_asked(
    store_env, lab, switch, vztx, run_cli, tmp_path, where
):
    deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    (tmp_path / "a-file").write_text("not a directory\n")
    (tmp_path / "not-a-store").mkdir()
    (tmp_path / "not-a-store" / "notes.txt").write_text("mine\n")
    asked = len(switch.requests)
    polled = run_cli("monitor", "poll", "--once", "--store", str(tmp_path / where))
    assert polled.exit_code == 1
    assert polled.stdout == ""
    assert polled.stderr.startswith(
        ("error: flow store ", "error: --store ", f"error: {tmp_path / where}: not a")
    )
    assert len(switch.requests) == asked
    assert not (tmp_path / "not-a-store" / "counters").exists()
    if where != "a-file/below":  # one not made yet is fine: no poll has made it
        devices = run_cli("monitor", "devices", "--store", str(tmp_path / where))
        assert devices.exit_code == 1 and devices.stdout == ""
        assert polled.stderr.splitlines()[0] == devices.stderr.splitlines()[0]

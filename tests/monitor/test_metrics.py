"""The Prometheus exposition: `monitor poll --metrics` and `collect --metrics` serve the same
figures as `monitor rules|devices` and the collector's stats, scraped over real HTTP on
loopback and read with prometheus_client's own parser."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.request

from deploy_lab import SWITCH
from flows_traffic import exported_flow_count, seed_lab_traffic
from prometheus_client.parser import text_string_to_metric_families
from test_monitor_eapi import POLICY, deploy, ok

from microseg.flows.demo import SEED_LAB_IPFIX
from microseg.flows.replay import read_ipfix_file, send_datagrams
from microseg.monitor.metrics import CollectorMetrics, MonitorMetrics
from microseg.monitor.poll import DevicePoll
from microseg.monitor.report import DeviceState, PolicyShare
from microseg.monitor.series import CounterRow
from support import ROOT, cli_command, cli_env


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """sample name and labels -> value, as Prometheus would read the endpoint."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def rule(device: str, rule_name: str, action: str = "forward") -> tuple[tuple[str, str], ...]:
    labels = {"device": device, "policy": POLICY, "rule": rule_name, "action": action}
    return tuple(sorted(labels.items()))


def start(*args: str) -> tuple[subprocess.Popen, str]:
    """A microseg process serving metrics; its scrape URL (its first stderr line)."""
    process = subprocess.Popen(
        cli_command(*args), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    first = process.stderr.readline()
    found = re.match(r"metrics on (http://127\.0\.0\.1:\d+/metrics)$", first.strip())
    if not found:
        process.kill()
        raise AssertionError(f"no metrics address: {first!r} {process.communicate()}")
    return process, found.group(1)


def next_poll(poller: subprocess.Popen) -> str:
    """Block until the poller reports its next poll of the switch."""
    assert poller.stdout is not None
    while True:
        line = poller.stdout.readline()
        assert line, f"the poller stopped: {poller.communicate()}"
        if line.startswith(f"{SWITCH}: "):
            return line


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.communicate(timeout=20)
    finally:
        process.kill()


def test_the_poller_serves_per_rule_counters_device_state_and_default_share(
    store_env, lab, switch, vztx, run_cli, tmp_path
):
    store = str(tmp_path / "flows")
    change = deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    poller, url = start(
        "monitor", "poll", "--interval", "1", "--metrics", "127.0.0.1:0", "--store", store
    )
    try:
        next_poll(poller)  # the baseline
        switch.count(POLICY, "rule72", 10, 800)
        switch.count(POLICY, "rule72-reverse", 10, 1200)
        switch.count(POLICY, "ipv4-all-default", 5, 500)
        next_poll(poller)
        next_poll(poller)  # this one began after the traffic was counted
        figures = scrape(url)
    finally:
        stop(poller)

    # The device's own cumulative counters, the rule's match and -reverse match summed.
    assert figures["microseg_rule_packets_total", rule(SWITCH, "rule72")] == 20
    assert figures["microseg_rule_bytes_total", rule(SWITCH, "rule72")] == 2000
    assert figures["microseg_rule_packets_total", rule(SWITCH, "rule73")] == 0
    assert figures["microseg_rule_packets_total", rule(SWITCH, "ipv4-all-default")] == 5
    # The same share `monitor rules` prints, for the same window.
    listing = json.loads(ok(run_cli("monitor", "rules", "--json", "--store", store)).stdout)
    (share,) = listing["policies"]
    assert share["default_share"] == round(5 / 25, 4)
    assert figures["microseg_policy_default_match_share", (("policy", POLICY),)] == 0.2
    # Device state as `monitor devices` says it.
    states = json.loads(ok(run_cli("monitor", "devices", "--json", "--store", store)).stdout)
    (state,) = [s for s in states if s["device"] == SWITCH]
    device = (("device", SWITCH),)
    assert figures["microseg_device_reachable", device] == 1
    assert figures["microseg_device_drift", device] == 0
    assert figures["microseg_device_hardware_entries", device] == state["hardware_entries"] > 0
    assert figures["microseg_device_hardware_budget", device] == state["hardware_budget"]
    assert figures["microseg_device_last_change", device] == change
    assert figures["microseg_device_counters_age_seconds", device] >= 0


def test_an_unreachable_switch_keeps_its_last_counters_and_says_it_is_unreachable(
    store_env, lab, switch, vztx, run_cli, tmp_path
):
    store = str(tmp_path / "flows")
    deploy(run_cli, lab("home-lab-dns-ntp.yaml"))
    switch.count(POLICY, "rule73", 4, 300)
    poller, url = start(
        "monitor", "poll", "--interval", "1", "--timeout", "1", "--metrics", "127.0.0.1:0",
        "--store", store,
    )  # fmt: skip
    try:
        next_poll(poller)
        switch.close()
        assert poller.stderr is not None
        while "not polled" not in poller.stderr.readline():
            pass
        figures = scrape(url)
    finally:
        stop(poller)
    device = (("device", SWITCH),)
    assert figures["microseg_device_reachable", device] == 0
    assert ("microseg_device_drift", device) not in figures  # unknown, not "no drift"
    assert figures["microseg_rule_packets_total", rule(SWITCH, "rule73")] == 4


def test_the_collector_serves_its_counters(tmp_path):
    store = tmp_path / "flows"
    collector, url = start(
        "collect", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--store", str(store),
        "--flush-interval", "0.1", "--inactive-timeout", "0",
    )  # fmt: skip
    try:
        assert collector.stderr is not None
        port = int(collector.stderr.readline().split()[2].rsplit(":", 1)[1].rstrip(","))
        messages = read_ipfix_file(SEED_LAB_IPFIX)
        send_datagrams([*messages, b"\x00\x0a\x00\x05"], "127.0.0.1", port)  # + a broken one
        deadline = time.monotonic() + 30
        figures = scrape(url)
        while figures["microseg_collector_sessions_written_total", ()] == 0:
            assert time.monotonic() < deadline, figures
            time.sleep(0.1)
            figures = scrape(url)
    finally:
        collector.send_signal(signal.SIGINT)
        collector.communicate(timeout=30)
    lab = seed_lab_traffic()
    assert figures["microseg_collector_datagrams_total", ()] == len(messages) + 1
    assert figures["microseg_collector_decode_errors_total", ()] == 1
    assert figures["microseg_collector_records_total", ()] == exported_flow_count(lab)
    assert figures["microseg_collector_sessions_written_total", ()] == len(lab.sessions)
    assert figures["microseg_collector_segments_written_total", ()] >= 1
    assert figures["microseg_collector_sessions_active", ()] == 0
    assert figures["microseg_collector_sessions_evicted_total", ()] == 0
    exporter = (("exporter", "127.0.0.1"),)
    assert figures["microseg_collector_exporter_records_total", exporter] == exported_flow_count(
        lab
    )
    assert figures["microseg_collector_exporter_lost_records_total", exporter] == 0
    # The same figures the collector keeps in its stats file.
    [stats_file] = store.glob("collector-stats-*.json")  # one collector, its own id
    stats = json.loads(stats_file.read_text())
    assert stats["datagrams"] == len(messages) + 1 and stats["decode_errors"] == 1


def test_bad_metrics_addresses_are_clear_errors(run_cli, tmp_path, store_env):
    result = run_cli("collect", "--metrics", "localhost", "--store", str(tmp_path))
    assert result.exit_code == 1
    assert "--metrics 'localhost': expected HOST:PORT, e.g. 127.0.0.1:9464" in result.stderr
    result = run_cli("monitor", "poll", "--once", "--metrics", "127.0.0.1:99999")
    assert result.exit_code == 1 and "--metrics '127.0.0.1:99999'" in result.stderr
    collector, url = start("collect", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
    try:
        taken = url.rsplit(":", 1)[1].split("/")[0]
        result = run_cli("monitor", "poll", "--once", "--metrics", taken)
        assert result.exit_code == 1
        assert f"--metrics: cannot listen on 127.0.0.1:{taken}" in result.stderr
    finally:
        collector.send_signal(signal.SIGINT)
        collector.communicate(timeout=30)


def exposed_names() -> set[str]:
    """Every sample name the two collectors expose once they hold one of everything."""
    now = "2026-11-30T12:00:00Z"
    row = CounterRow(None, "sw", 1, "p", "r", "r", "forward", 1, 1)  # type: ignore[arg-type]
    monitor = MonitorMetrics()
    state = DeviceState("sw", True, None, 1, now, False, 3, 4096, "x", now, 0.0)
    monitor.update([DevicePoll("sw", 1, 1, None, (row,))], [state], [PolicyShare("p", 10, 1)])
    collector = CollectorMetrics({"exporters": {"127.0.0.1": {}}})
    return {
        sample.name
        for exposition in (monitor, collector)
        for family in exposition.collect()
        for sample in family.samples
    }


def test_every_metric_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`(microseg_[a-z_]+)`", readme))
    names = exposed_names()
    assert len(names) == 30
    assert names <= documented, names - documented

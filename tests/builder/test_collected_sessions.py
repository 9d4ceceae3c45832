"""End to end with the real collector: softflowd replays the web-app stage as IPFIX, the
collector writes the flow store, `microseg recommend --store` reads it."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from microseg.builder.seed_sessions import APPSERVER1, LAPTOP, UBUNTU_MIRRORS, WEB01, WEB02
from microseg.flows.collector import BackgroundCollector, CollectorSettings, FlowCollector
from microseg.flows.flowstore import FlowStore
from microseg.flows.replay import softflowd_replay

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(not shutil.which("softflowd"), reason="softflowd not installed"),
]
TESTS = Path(__file__).resolve().parents[1]
EXAMPLES = TESTS.parent / "examples"


def _flows_traffic():
    """The flow collector's pcap builder (tests/flows/flows_traffic.py), reused as it is."""
    if "flows_traffic" in sys.modules:
        return sys.modules["flows_traffic"]
    spec = importlib.util.spec_from_file_location(
        "flows_traffic", TESTS / "flows" / "flows_traffic.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


def web_app_pcap(path: Path) -> Path:
    traffic = _flows_traffic()
    lab = traffic.LabTraffic()
    get = b"GET / HTTP/1.1\r\nHost: web\r\n\r\n"
    for number, server in enumerate((WEB01, WEB02, APPSERVER1)):
        lab.dns_lookup(server, 40100 + number, "10.100.1.6", "archive.ubuntu.com.", "91.189.91.81")
        lab.ntp_exchange(server, "10.100.1.7")
        lab.tcp_conversation(server, 50100 + number, UBUNTU_MIRRORS[0], 80, get, b"deb" * 200)
    for number, web in enumerate((WEB01, WEB02)):
        lab.tcp_conversation(LAPTOP, 50500 + number, web, 80, get, b"<html>" * 50)
        lab.tcp_conversation(web, 41000 + number, APPSERVER1, 4567, b"query", b"rows" * 30)
    lab.ping(APPSERVER1, "8.8.8.8")  # is the internet there?
    lab.unanswered_syn(LAPTOP, 50600, APPSERVER1, 22)  # dropped: SSH to the app server
    return traffic.write_pcap(lab, path)


def test_recommend_reads_what_softflowd_exported_through_the_collector(tmp_path, run_cli):
    pcap = web_app_pcap(tmp_path / "web-app.pcap")
    store = FlowStore(tmp_path / "flows")
    collector = FlowCollector(store, CollectorSettings(flush_interval=0.1))
    with BackgroundCollector(collector) as running:
        softflowd_replay(pcap, "127.0.0.1", running.address[1], version=10)
    assert collector.stats()["decode_errors"] == 0

    result = run_cli(
        "recommend",
        str(EXAMPLES / "home-lab-monitor.yaml"),
        "--store",
        str(store.directory),
        "--monitor-rule",
        "web-appserver-discovery",
        "--categories",
        "clients,infrastructure",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    proposed = {
        (tuple(r["sources"]), tuple(r["destinations"]), tuple(r["services"])) for r in data["rules"]
    }
    web01, web02 = "host-10-100-99-51", "host-10-100-99-52"
    # DNS and NTP are allowed already by allow_all_DNS / allow_all_NTP
    assert {a["rule"] for a in data["already_allowed"]} == {"allow_all_DNS", "allow_all_NTP"}
    assert proposed == {
        (("wifi_clients",), (web01, web02), ("HTTP",)),
        ((web01,), ("appserver1",), ("appserver1-tcp",)),
        ((web02,), ("appserver1",), ("appserver1-tcp",)),
        # outside hosts: the mirror all three fetch from, and the ping of 8.8.8.8
        ((web01,), ("external-91-189-91-81",), ("HTTP",)),
        ((web02,), ("external-91-189-91-81",), ("HTTP",)),
        (("appserver1",), ("external-91-189-91-81",), ("HTTP",)),
        (("appserver1",), ("external-8-8-8-8",), ("icmp-echo",)),
    }
    assert [s["name"] for s in data["new_services"]] == ["icmp-echo"]
    assert data["blocked_attempts"] == [
        {
            "source": LAPTOP,
            "destination": APPSERVER1,
            "service": "SSH",
            "sessions": 1,
            "first_seen": data["blocked_attempts"][0]["first_seen"],
            "last_seen": data["blocked_attempts"][0]["last_seen"],
            "stopped_by": None,  # the monitor rule forwards it: appserver1 did not answer
        }
    ]
    assert data["quality"]["coverage"] == 1.0
    http = next(r for r in data["rules"] if r["sources"] == ["wifi_clients"])
    assert http["evidence"]["sessions"] == 2
    assert http["evidence"]["server_side"] == {"tcp-handshake": 2}

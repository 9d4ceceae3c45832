"""The seed story on the live lab, as the README tells it and `microseg demo --live` runs it:
watch DNS/NTP, traffic, sessions, the builder's rules into a workspace, submit, change,
approve, run, the web-app policy, the seed's table, and the Ooops without isolation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid

import pytest

from microseg.lab.story import STORY
from support import EXAMPLES, ROOT, cli_command, cli_env

ISOLATED_TABLE = """\
source      destination  service   real      check
laptop      web01        tcp/22    connects  connects
mgmt        appserver1   tcp/22    blocked   dropped
laptop      web02        tcp/80    connects  connects
web01       appserver1   tcp/4567  connects  connects
laptop      appserver1   tcp/4567  blocked   dropped
appserver1  8.8.8.8      icmp      blocked   dropped
web01       8.8.8.8      icmp      blocked   dropped
appserver1  10.100.1.7   udp/53    connects  connects
laptop      10.100.1.6   udp/123   connects  connects
web01       appserver1   tcp/22    blocked   dropped
web01       web02        tcp/22    blocked   dropped
web01       web02        tcp/80    blocked   dropped
web02       web01        tcp/80    blocked   dropped
"""
NOT_ENFORCED = "not enforced — stays on the host bridge"


def test_the_readme_tells_the_story_demo_live_runs():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### The seed story, live") :]
    block = section[section.index("```sh\n") + 6 : section.index("```\n", section.index("```sh"))]
    commands = [
        line.removeprefix("sudo ") for line in block.splitlines() if line.startswith("sudo ")
    ]
    assert commands == [step.command() for step in STORY]


def test_demo_live_says_why_it_cannot_run_and_changes_nothing(tmp_path):
    env = cli_env(PATH=str(tmp_path / "no-tools"), MICROSEG_LAB_DIR=str(tmp_path / "state"))
    result = subprocess.run(cli_command("demo", "--live"), env=env, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    reason = "the lab needs root" if os.geteuid() else "the lab needs ip, bridge, nft, softflowd"
    assert f"demo --live cannot run here: {reason}" in result.stderr
    assert "`microseg demo` tells the same story offline" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.system
@pytest.mark.slow
def test_the_seed_story_on_the_live_lab(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("the live story needs root (CI runs as root; see scripts/setup.sh)")
    env = cli_env(
        MICROSEG_LAB_DIR=str(tmp_path / "state"),
        MICROSEG_LAB_NAME=f"mss{uuid.uuid4().hex[:5]}",
        MICROSEG_DATABASE_URL=f"sqlite:///{tmp_path / 'microseg.db'}",
        MICROSEG_AUTHOR="andreas",
        MICROSEG_FLOW_STORE=str(tmp_path / "flows"),
    )

    def run(*arguments: str) -> str:
        arguments = tuple(
            str(EXAMPLES / a.removeprefix("examples/")) if a.startswith("examples/") else a
            for a in arguments
        )
        result = subprocess.run(cli_command(*arguments), env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{arguments}: {result.stdout}{result.stderr}"
        return result.stdout

    try:
        shown = [run(*step.arguments) for step in STORY]
        sessions = [json.loads(line) for line in run("sessions", "list", "--json").splitlines()]
    finally:
        subprocess.run(cli_command("lab", "down"), env=env, capture_output=True)
    said = dict(zip((step.command() for step in STORY), shown, strict=True))
    up, _traffic, listed, recommended, submitted, created, _approved, ran = shown[:8]
    assert "policy deployed by change 1" in up
    # The monitor node saw what the watching rule mirrors, and only that: the laptop's DNS
    # and NTP to the two servers, both directions (the other hosts' queries and all the
    # rest of the mix are not from the wifi clients, so not mirrored).
    assert re.search(r"Sessions: \d+", listed)
    assert sessions
    assert all(
        s["src"] == "172.18.6.138"
        and s["dst"] in ("10.100.1.6", "10.100.1.7")
        and (s["protocol"], s["dport"]) in (("udp", 53), ("udp", 123))
        and s["complete"]
        for s in sessions
    ), sessions
    # Every query of the 3 rounds, none lost to the flush (4 a round: DNS and NTP to each).
    assert sum(s["sessions"] for s in sessions) == 3 * 4, sessions
    assert {(s["dst"], s["dport"]) for s in sessions} == {
        (server, port) for server in ("10.100.1.6", "10.100.1.7") for port in (53, 123)
    }
    # The builder proposes the seed's rule by category (wifi_clients -> DNS_NTP_servers).
    assert "wifi_clients │ DNS_NTP_servers │ DNS, NTP" in recommended
    assert "wrote 2 objects into workspace builder-1" in recommended
    assert "submitted as revision 2" in submitted
    assert "change 2 created: deploy revision 2 to andreasm-720xp-home" in created
    assert "change 2 succeeded: 1 confirmed" in ran
    assert "deployed by change 3" in said["microseg lab deploy examples/home-lab.yaml"]
    isolated, not_isolated = (
        out for cmd, out in zip(STORY, shown, strict=True) if cmd.arguments == ("lab", "test")
    )
    assert isolated == ISOLATED_TABLE
    rows = {tuple(line.split()[:3]): line for line in not_isolated.splitlines()[1:]}
    for key in (("web01", "web02", "tcp/22"), ("web01", "web02", "tcp/80"),
                ("web02", "web01", "tcp/80"), ("web01", "appserver1", "tcp/4567")):  # fmt: skip
        assert rows[key].split()[3] == "connects" and rows[key].endswith(NOT_ENFORCED)
    assert rows[("laptop", "appserver1", "tcp/4567")].split()[3:5] == ["blocked", "dropped"]


def test_traffic_and_deploy_without_a_lab_say_so_and_change_nothing(tmp_path):
    env = cli_env(
        MICROSEG_LAB_DIR=str(tmp_path / "state"),
        MICROSEG_DATABASE_URL=f"sqlite:///{tmp_path / 'microseg.db'}",
    )
    for arguments in (("lab", "traffic", "--count", "1"), ("lab", "deploy", "examples/x.yaml")):
        result = subprocess.run(cli_command(*arguments), env=env, capture_output=True, text=True)
        assert result.returncode == 1, result.stderr
        if os.geteuid() == 0:
            assert "no lab is up: run `microseg lab up` first" in result.stderr
        assert "Traceback" not in result.stderr
    both = subprocess.run(
        cli_command("lab", "traffic", "--count", "2", "--minutes", "1"),
        env=env,
        capture_output=True,
        text=True,
    )
    assert both.returncode == 1 and "--count and --minutes: give one of them" in both.stderr
    assert not (tmp_path / "state").exists() and not (tmp_path / "microseg.db").exists()


def test_lab_status_json_says_which_labs_are_up(tmp_path):
    state = tmp_path / "state"
    (state / "other").mkdir(parents=True)
    (state / "other" / "lab.json").write_text("{}")
    env = cli_env(MICROSEG_LAB_DIR=str(state))
    env.pop("MICROSEG_LAB_NAME", None)  # the default name
    result = subprocess.run(
        cli_command("lab", "status", "--json"), env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "name": "microseg",
        "up": False,
        "state": str(state / "microseg" / "lab.json"),
        "items": [],
        "labs_up": ["other"],
    }


def test_a_mirror_the_lab_cannot_honour_is_refused_before_anything_is_built(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("lab up checks root first (CI runs as root)")
    text = (EXAMPLES / "home-lab-monitor.yaml").read_text()
    policy = tmp_path / "elsewhere.yaml"
    policy.write_text(
        text.replace("tunnel_destination: 10.255.1.11", "tunnel_destination: 10.9.9.9")
    )
    env = cli_env(
        MICROSEG_LAB_DIR=str(tmp_path / "state"),
        MICROSEG_LAB_NAME=f"mss{uuid.uuid4().hex[:5]}",
        MICROSEG_DATABASE_URL=f"sqlite:///{tmp_path / 'microseg.db'}",
    )
    result = subprocess.run(
        cli_command("lab", "up", str(policy)), env=env, capture_output=True, text=True
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "mirror session andreas-vztx-ALL: tunnel destination 10.9.9.9, but the lab's monitor "
        "node is 10.255.1.11"
    ) in result.stderr
    assert not (tmp_path / "state" / env["MICROSEG_LAB_NAME"] / "lab.json").exists()
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert env["MICROSEG_LAB_NAME"] not in listing

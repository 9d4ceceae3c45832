"""The nftables driver for real: the seed lab in network namespaces, real packets.

The lab's "switch" namespace is the nftables device. Each test starts from a switch with no
`microseg` table but with a table microseg does not own (`ip operator`), which every verb
must leave exactly as it was.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.evaluate.netns import in_ns, namespaces, require_root_and_nft
from tests.evaluate.test_check import APPSERVER1, LAPTOP, MGMT, WEB01, WEB02
from tests.evaluate.test_seed_lab_kernel import HOSTS, build_seed_lab, replay, start_servers

from microseg.compile.resolve import compile_device
from microseg.evaluate.check import check_connection
from microseg.policyfile import load_policy
from microseg.targets import (
    CommandRejected,
    DeviceUnreachable,
    Driver,
    DriverError,
    Facts,
    MatchCounters,
)
from microseg.targets.nftables.driver import NftablesDriver, canonical_ruleset
from microseg.targets.nftables.render import render_ruleset
from support import EXAMPLES, SRC

pytestmark = pytest.mark.system
SWITCH = "andreasm-720xp-home"
DNS_NTP = load_policy(EXAMPLES / "home-lab-dns-ntp.yaml")
HOME_LAB = load_policy(EXAMPLES / "home-lab.yaml")
# A table microseg does not own: an operator's own rule with a counter that sees traffic.
OPERATOR_TABLE = """\
table ip operator {
	counter seen {
	}

	chain input {
		type filter hook input priority filter; policy accept;
		icmp type echo-request counter name "seen" accept
	}
}
"""
# Connections on which the two seed stages differ, and some on which they agree.
ROWS = [
    (LAPTOP, WEB01, "tcp", 22),
    (MGMT, APPSERVER1, "tcp", 22),
    (LAPTOP, APPSERVER1, "tcp", 4567),
    (WEB01, APPSERVER1, "tcp", 22),
    (APPSERVER1, "10.100.1.7", "udp", 53),
    (WEB01, WEB02, "tcp", 80),
]


def ruleset(policy_set) -> str:
    return render_ruleset(compile_device(policy_set, SWITCH))


def expected(policy_set) -> list[str]:
    """What `microseg check` says of ROWS under `policy_set`."""
    return [
        "connects" if check_connection(policy_set, *row).connects else "blocked" for row in ROWS
    ]


def wait_until(condition, what: str, limit: float = 60.0) -> None:
    """Poll until `condition()`; the limit only stops a broken test from hanging."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def lab():
    require_root_and_nft()
    with namespaces("switch", *HOSTS) as names:
        build_seed_lab(names, isolated=True)
        servers = start_servers(names)
        try:
            yield names
        finally:
            for server in servers:
                server.kill()
                server.wait()


@pytest.fixture
def switch(lab, tmp_path):
    """The lab's switch with the operator's table and no microseg table."""
    namespace = lab["switch"]
    in_ns(namespace, "nft", "flush", "ruleset")
    (tmp_path / "operator.nft").write_text(OPERATOR_TABLE)
    in_ns(namespace, "nft", "-f", str(tmp_path / "operator.nft"))
    yield namespace
    assert operator_table(namespace) == OPERATOR_TABLE


def operator_table(namespace: str) -> str:
    return in_ns(namespace, "nft", "-s", "list", "table", "ip", "operator").stdout


@pytest.fixture
def driver(switch, tmp_path):
    return NftablesDriver(SWITCH, namespace=switch, state_dir=tmp_path / "state")


def deploy(driver: NftablesDriver, policy_set, confirm_within: int | None = None) -> None:
    driver.load(ruleset(policy_set))
    driver.commit(confirm_within)


def helper_gone(pid: int) -> bool:
    try:
        return b"confirm_timer" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


# -- the verbs ---------------------------------------------------------------------------


def test_the_driver_honours_the_driver_protocol(driver):
    assert isinstance(driver, Driver)


def test_facts_are_the_hosts_kernel_and_nft(driver):
    nft = subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout
    facts = driver.facts()
    assert facts == Facts(
        hostname=os.uname().nodename,
        model=f"nftables {nft.split()[1].removeprefix('v')}",
        version=f"Linux {os.uname().release}",
        serial=facts.serial,
    )


def test_a_fresh_switch_has_nothing_microseg_owns(driver):
    assert driver.running() == ""


def test_the_seed_policy_deployed_is_enforced_as_check_says(lab, driver):
    deploy(driver, HOME_LAB)
    assert driver.running() == canonical_ruleset(SWITCH, ruleset(HOME_LAB))
    assert replay(lab, ROWS) == expected(HOME_LAB)


def test_counters_name_the_policy_and_match_a_packet_hit(lab, driver):
    deploy(driver, HOME_LAB)
    replay(lab, [(LAPTOP, WEB01, "tcp", 22), (MGMT, APPSERVER1, "tcp", 22)])
    counted = {(c.policy, c.match): c for c in driver.counters()}
    names = {(p.name, m.name) for p in compile_device(HOME_LAB, SWITCH).policies for m in p.matches}
    assert set(counted) == names
    assert counted["vrf_all_home", "ssh_to_web-app_servers"].packets >= 1
    assert counted["vrf_all_home", "ssh_to_web-app_servers-reverse"].packets >= 1
    assert counted["vrf_all_home", "drop_all_else_web-app-reverse"].packets >= 1
    assert counted["vrf_all_home", "allow_all_DNS"] == MatchCounters(
        "vrf_all_home", "allow_all_DNS", 0, 0
    )


def test_compare_is_the_diff_of_the_owned_table_and_empty_once_deployed(driver):
    deploy(driver, DNS_NTP)
    driver.load(ruleset(HOME_LAB))
    diff = driver.compare()
    assert diff.changed
    assert '+\t\tcomment "vrf_all_home"' in diff.text.splitlines()
    assert not any("operator" in line for line in diff.text.splitlines())
    driver.commit()
    driver.load(ruleset(HOME_LAB))
    assert driver.compare().text == ""


def test_a_policy_removed_removes_the_table_and_nothing_else(driver, switch):
    deploy(driver, HOME_LAB)
    driver.load("")
    assert driver.compare().changed
    driver.commit()
    assert driver.running() == ""
    tables = in_ns(switch, "nft", "list", "tables").stdout.split("\n")
    assert [t for t in tables if t] == ["table ip operator"]


def test_a_configuration_touching_another_table_is_refused_before_anything_changes(driver):
    deploy(driver, DNS_NTP)
    before = driver.running()
    for config in (
        ruleset(HOME_LAB) + "table ip operator {\n\tchain extra {\n\t}\n}\n",
        "flush ruleset\ntable ip operator {\n}\n",
    ):
        with pytest.raises(DriverError, match="table ip operator; microseg owns only"):
            driver.load(config)
    with pytest.raises(DriverError, match="nothing loaded"):
        driver.commit()
    assert driver.running() == before


def test_a_configuration_nft_rejects_names_the_error(driver):
    with pytest.raises(CommandRejected, match="syntax error") as error:
        driver.load("table inet microseg {\n\tchain forward {\n\t\tbogus\n\t}\n}\n")
    assert error.value.device == SWITCH


def test_a_missing_namespace_is_unreachable(tmp_path):
    require_root_and_nft()
    missing = NftablesDriver(SWITCH, namespace="msnone-does-not-exist", state_dir=tmp_path)
    with pytest.raises(DeviceUnreachable, match="'msnone-does-not-exist' does not exist"):
        missing.running()


def test_rollback_restores_the_ruleset_from_before_the_last_commit(lab, driver):
    deploy(driver, DNS_NTP)
    dns_ntp = driver.running()
    deploy(driver, HOME_LAB)
    driver.rollback()
    assert driver.running() == dns_ntp
    assert replay(lab, ROWS) == expected(DNS_NTP)


# -- commit-confirm ------------------------------------------------------------------------


def test_the_two_stages_differ_on_the_rows_the_timer_tests_replay():
    assert expected(DNS_NTP) != expected(HOME_LAB)


def test_a_confirmed_commit_stays(lab, driver):
    deploy(driver, DNS_NTP)
    deploy(driver, HOME_LAB, confirm_within=600)
    pending = driver.pending()
    assert pending is not None and pending.session == driver.session
    driver.confirm()
    assert driver.pending() is None
    wait_until(lambda: helper_gone(pending.helper_pid), "the timer to stop")
    assert replay(lab, ROWS) == expected(HOME_LAB)


def test_an_unconfirmed_commit_times_out_and_the_old_behaviour_is_back(lab, driver):
    deploy(driver, DNS_NTP)
    dns_ntp = driver.running()
    deploy(driver, HOME_LAB, confirm_within=1)
    wait_until(lambda: driver.pending() is None, "the confirm timer")
    assert driver.running() == dns_ntp
    assert replay(lab, ROWS) == expected(DNS_NTP)
    with pytest.raises(DriverError, match="expired; the previous ruleset was restored"):
        driver.confirm()


def test_a_timer_restores_a_switch_that_had_no_microseg_table(driver):
    deploy(driver, HOME_LAB, confirm_within=1)
    wait_until(lambda: driver.pending() is None, "the confirm timer")
    assert driver.running() == ""


def test_the_deploying_process_killed_before_confirming_does_not_keep_the_change(
    lab, driver, tmp_path
):
    deploy(driver, DNS_NTP)
    dns_ntp = driver.running()
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from microseg.targets.nftables.driver import NftablesDriver
        driver = NftablesDriver({SWITCH!r}, namespace={driver.namespace!r},
                                session="change-7", state_dir=Path({str(driver.state_dir)!r}))
        driver.load(sys.stdin.read())
        driver.commit(confirm_within=2)
        print("committed", flush=True)
        time.sleep(3600)
        """
    )
    deployer = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    deployer.stdin.write(ruleset(HOME_LAB))
    deployer.stdin.close()
    assert deployer.stdout.readline().strip() == "committed"
    assert driver.running() != dns_ntp
    deployer.send_signal(signal.SIGKILL)
    deployer.wait()
    wait_until(lambda: driver.pending() is None, "the confirm timer")
    assert driver.running() == dns_ntp
    assert replay(lab, ROWS) == expected(DNS_NTP)


def test_another_process_confirms_by_session_name(driver, tmp_path):
    deploy(driver, DNS_NTP, confirm_within=600)
    other = NftablesDriver(SWITCH, driver.namespace, "someone-else", driver.state_dir)
    with pytest.raises(DriverError, match=f"is session '{driver.session}', not 'someone-else'"):
        other.confirm()
    same = NftablesDriver(SWITCH, driver.namespace, driver.session, driver.state_dir)
    same.confirm()
    assert driver.pending() is None


def test_a_second_commit_waits_for_the_first_to_be_confirmed(driver):
    deploy(driver, DNS_NTP, confirm_within=600)
    other = NftablesDriver(SWITCH, driver.namespace, state_dir=driver.state_dir)
    other.load(ruleset(HOME_LAB))
    with pytest.raises(DriverError, match="waits for confirmation; confirm or discard it"):
        other.commit()
    driver.confirm()


def test_discard_during_an_unconfirmed_commit_restores_at_once(lab, driver):
    deploy(driver, DNS_NTP)
    deploy(driver, HOME_LAB, confirm_within=600)
    pending = driver.pending()
    driver.discard()
    assert driver.pending() is None
    wait_until(lambda: helper_gone(pending.helper_pid), "the timer to stop")
    assert replay(lab, ROWS) == expected(DNS_NTP)


def test_confirm_without_a_commit_is_an_error(driver):
    with pytest.raises(DriverError, match=r"no commit of session .* waits for confirmation"):
        driver.confirm()
    with pytest.raises(DriverError, match="no commit to roll back"):
        driver.rollback()

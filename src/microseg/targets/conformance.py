"""The conformance suite every target passes, built-in or plug-in (NAPALM runs one getter
suite over every driver the same way).

Plain functions that raise AssertionError with a message, so a target's own tests call
them from pytest (or anything else):

    from microseg.targets import conformance, registry

    def test_my_target_renders_deterministically():
        conformance.check_render_determinism(registry.get("junos"), conformance.sample_policy("junos"))

* `check_render_determinism(target, policy_set)` -- every device renders to the same bytes
  twice in this process and in two fresh interpreters with different hash seeds;
* `check_capability_refusals(target)` -- for every capability the target lacks, a policy
  needing it is refused with an error naming the target, the rule and the capability,
  and one it has renders;
* `check_driver_verbs(connect, first, second)` -- the verbs on the target's test device:
  load/compare/commit replace the owned configuration, compare after commit is empty,
  discard drops a load, rollback restores the configuration before the last commit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from microseg.compile.resolve import CompileError, compile_all
from microseg.model import PolicySet
from microseg.policyfile import load_policy_text
from microseg.targets import Driver
from microseg.targets.render import render_config
from microseg.targets.target import Target

SAMPLE_DEVICE = "dut"

# One policy per capability: a rule named after it that needs it, on device `dut`.
_SAMPLE = """\
devices:
  - name: dut
    platform: {platform}
    loopback_address: 10.255.0.1
    segments:
      - {{name: eth1, vrf: default, subnets: [10.0.1.0/24]}}
monitor_nodes:
  - {{name: collector1, loopback_address: 10.255.0.2}}
domains:
  - {{name: lab, devices: [dut]}}
groups:
  - {{name: clients, prefixes: [10.0.1.0/24]}}
  - {{name: servers, prefixes: [10.0.2.0/24]}}
  - {{name: servers6, prefixes: ['2001:db8:2::/64']}}
  - {{name: clients6, prefixes: ['2001:db8:1::/64']}}
services:
  - {{name: ssh, protocol: tcp, destination_ports: [22]}}
redirect_objects:
  - {{name: firewall, next_hops: [10.0.9.1]}}
monitor_objects:
  - {{name: watch, tunnel_destination: 10.255.0.2, monitor_nodes: [collector1]}}
rules:
  - {{name: allow-ssh, sources: [clients], destinations: [servers], services: [ssh], action: forward}}
  - {{name: needs-redirect, sources: [clients], destinations: [servers], services: any, action: redirect, redirect: firewall}}
  - {{name: needs-decap, sources: [clients], destinations: [servers], services: any, action: forward, decap_type: vxlan-decap-only}}
  - {{name: needs-mirror, sources: [clients], destinations: [servers], services: any, action: forward, monitor: watch}}
  - {{name: needs-ipv6, sources: [clients6], destinations: [servers6], services: any, action: drop}}
policies:
  - {{name: lab-policy, id: 1, domain: lab, vrf: ALL, default_action: {default_action}, rules: [{rules}]}}
"""
CAPABILITY_RULES = {
    "redirect": "needs-redirect",
    "decap": "needs-decap",
    "mirror": "needs-mirror",
    "IPv6": "needs-ipv6",
}


def sample_policy(
    platform: str, rules: tuple[str, ...] = ("allow-ssh",), default_action: str = "forward"
) -> PolicySet:
    """A small policy for device `dut` of `platform`, with the given rules in order."""
    text = _SAMPLE.format(platform=platform, rules=", ".join(rules), default_action=default_action)
    return load_policy_text(text, f"<conformance sample for {platform}>")


def check_render_determinism(
    target: Target, policy_set: PolicySet, env: dict[str, str] | None = None
) -> None:
    """Same intent, same bytes: twice here, and under hash seeds 0 and 1 in new processes.

    `env` is the subprocesses' environment (it must let them import the target)."""
    intents = compile_all(policy_set)
    for device in sorted(intents):
        first = render_config(policy_set, device, target.name, intents)[0]
        again = render_config(policy_set, device, target.name, compile_all(policy_set))[0]
        assert first == again, (
            f"target {target.name!r}: device {device!r} renders differently twice"
        )
        for seed in ("0", "1"):
            other = _render_in_subprocess(target.name, policy_set, device, seed, env)
            assert other == first, (
                f"target {target.name!r}: device {device!r} renders differently under "
                f"PYTHONHASHSEED={seed}"
            )


def check_capability_refusals(target: Target) -> None:
    """Each missing capability refused by name; each present one renders."""
    capabilities = target.capabilities
    present = {
        "redirect": capabilities.redirect,
        "decap": capabilities.decap,
        "mirror": capabilities.mirror,
        "IPv6": capabilities.ipv6,
    }
    for capability, rule in CAPABILITY_RULES.items():
        policy_set = sample_policy(target.name, ("allow-ssh", rule))
        if present[capability]:
            render_config(policy_set, SAMPLE_DEVICE, target.name)
            continue
        try:
            render_config(policy_set, SAMPLE_DEVICE, target.name)
        except CompileError as error:
            message = str(error)
            for word in (repr(target.name), repr(rule), f"capability: {capability}"):
                assert word in message, f"refusal {message!r} does not name {word}"
        else:
            raise AssertionError(
                f"target {target.name!r} lacks {capability} but rendered rule {rule!r}"
            )
    for action in ("forward", "drop"):
        policy_set = sample_policy(target.name, default_action=action)
        if action in capabilities.default_actions:
            render_config(policy_set, SAMPLE_DEVICE, target.name)
            continue
        try:
            render_config(policy_set, SAMPLE_DEVICE, target.name)
        except CompileError as error:
            assert "default_action" in str(error) and repr(target.name) in str(error), str(error)
        else:
            raise AssertionError(f"target {target.name!r} rendered default_action {action}")


def check_driver_verbs(connect: Callable[[], Driver], first: str, second: str) -> None:
    """The verbs on a test device whose owned configuration starts empty. `connect()`
    gives a new driver (a new session, as each change gets) for the device; `first` and
    `second` are two different rendered configurations."""
    driver = connect()
    assert isinstance(driver, Driver), f"{driver!r} does not honour the Driver protocol"
    assert driver.facts().hostname, "facts() gave no hostname"
    empty = driver.running()
    driver.load(first)
    assert driver.compare().changed, "compare() shows no change for a new configuration"
    driver.commit()
    after_first = driver.running()
    assert after_first != empty, "commit() did not change the running configuration"
    again = connect()
    again.load(first)
    assert not again.compare().changed, "compare() shows a change after committing it"
    again.discard()
    other = connect()
    other.load(second)
    assert other.compare().changed, "compare() shows no change for a different configuration"
    other.discard()
    assert other.running() == after_first, "discard() changed the running configuration"
    last = connect()
    last.load(second)
    last.commit()
    assert last.running() != after_first, "the second commit changed nothing"
    last.rollback()
    assert last.running() == after_first, "rollback() did not restore the previous configuration"
    assert isinstance(last.counters(), list)


def _render_in_subprocess(
    target: str, policy_set: PolicySet, device: str, seed: str, env: dict[str, str] | None
) -> str:
    import microseg
    from microseg.policyfile import dump_policy

    environment = dict(env if env is not None else os.environ)
    package_root = str(Path(microseg.__file__).resolve().parents[1])
    environment["PYTHONPATH"] = package_root + os.pathsep + environment.get("PYTHONPATH", "")
    environment["PYTHONHASHSEED"] = seed
    script = textwrap.dedent(
        f"""
        import sys
        from microseg.policyfile import load_policy_text
        from microseg.targets.render import render_config
        policy_set = load_policy_text(sys.stdin.read(), "<stdin>")
        sys.stdout.write(render_config(policy_set, {device!r}, {target!r})[0])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=dump_policy(policy_set),
        capture_output=True,
        text=True,
        env=environment,
    )
    assert result.returncode == 0, f"rendering under PYTHONHASHSEED={seed} failed: {result.stderr}"
    return result.stdout

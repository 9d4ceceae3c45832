"""A third-party target, registered only through the `microseg.targets` entry point, is
used by `compile` and `lint` without any edit to microseg's own code.

The target (`plugin_target/microseg_toyfw`) is made an installed distribution the way pip
would leave it: a `microseg_toyfw-0.1.dist-info` with METADATA and entry_points.txt in a
directory on the import path.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from microseg.model import PolicyError
from microseg.model.platforms import platform_names
from microseg.policyfile import load_policy_text
from microseg.targets import conformance, registry
from support import cli_command, cli_env

PLUGIN_SOURCE = Path(__file__).parent / "plugin_target"
ENTRY_POINTS = "[microseg.targets]\ntoyfw = microseg_toyfw:TARGET\n"


def install_plugin(site: Path, entry_points: str = ENTRY_POINTS) -> Path:
    info = site / "microseg_toyfw-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: microseg-toyfw\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    return site


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The toy target installed for this process; its site directory."""
    site = install_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(PLUGIN_SOURCE))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("TOYFW_DEVICES", str(tmp_path / "devices"))
    return site


def plugin_env(site: Path) -> dict[str, str]:
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(PLUGIN_SOURCE), env["PYTHONPATH"]])
    return env


def run(site: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(*args), capture_output=True, text=True, env=plugin_env(site))


def toy_policy(tmp_path: Path, rules: tuple[str, ...] = ("allow-ssh",)) -> Path:
    path = tmp_path / "toy.yaml"
    from microseg.policyfile import dump_policy

    path.write_text(dump_policy(conformance.sample_policy("toyfw", rules)))
    return path


def test_without_the_plugin_the_platform_is_refused_where_it_is_written(tmp_path):
    assert "toyfw" not in platform_names()
    with pytest.raises(PolicyError, match="platform 'toyfw' is not a known target"):
        load_policy_text("devices:\n  - {name: dut, platform: toyfw}\n", "toy.yaml")


def test_the_entry_point_registers_the_target(plugin):
    assert registry.names() == ["eos", "nftables", "toyfw"]
    assert registry.get("toyfw").description == "a toy firewall: one line per match"


def test_compile_renders_with_the_plugin(plugin, tmp_path):
    result = run(plugin, "compile", str(toy_policy(tmp_path)), "--device", "dut", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "device": "dut",
        "target": "toyfw",
        "config": "toyfw dut\npolicy lab-policy vrf ALL\n"
        "  allow-ssh clients -> servers permit\n"
        "  allow-ssh-reverse servers -> clients permit\n",
    }


def test_compile_refuses_what_the_plugin_cannot_express(plugin, tmp_path):
    result = run(plugin, "compile", str(toy_policy(tmp_path, ("needs-ipv6",))), "-d", "dut")
    assert result.returncode == 1
    assert result.stderr == (
        "error: target 'toyfw' cannot enforce rule 'needs-ipv6': it matches IPv6 traffic "
        "(capability: IPv6)\n"
    )


def test_another_device_can_be_compiled_for_the_plugin_target(plugin, tmp_path):
    from support import EXAMPLES

    result = run(
        plugin,
        "compile",
        str(EXAMPLES / "home-lab-dns-ntp.yaml"),
        "-d",
        "andreasm-720xp-home",
        "--target",
        "toyfw",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("toyfw andreasm-720xp-home\npolicy ")


def test_lint_uses_the_plugins_hardware_budget(plugin, tmp_path):
    result = run(plugin, "lint", str(toy_policy(tmp_path)), "--json")
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    (row,) = report["hardware"]
    assert (row["platform"], row["budget"], row["budget_source"]) == (
        "toyfw",
        8,
        "toyfw holds 8 entries",
    )


def test_the_plugin_passes_the_conformance_suite(plugin, tmp_path):
    target = registry.get("toyfw")
    conformance.check_render_determinism(
        target, conformance.sample_policy("toyfw"), env=plugin_env(plugin)
    )
    conformance.check_capability_refusals(target)
    device = conformance.sample_policy("toyfw").device("dut")
    (tmp_path / "devices" / "dut").mkdir(parents=True)
    first = target.render(conformance_intent("allow-ssh"), None)
    second = target.render(conformance_intent("allow-ssh", "needs-ipv6"), None)
    conformance.check_driver_verbs(lambda: target.driver(device, None), first, second)


def conformance_intent(*rules: str):
    from microseg.compile import compile_device

    return compile_device(conformance.sample_policy("toyfw", rules), "dut")


def test_a_broken_plugin_is_a_clear_error(tmp_path, monkeypatch):
    site = install_plugin(tmp_path / "site", "[microseg.targets]\ntoyfw = no_such_module:TARGET\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(registry.UnknownTarget, match="does not load: ModuleNotFoundError"):
        registry.get("toyfw")
    result = subprocess.run(
        cli_command("compile", str(toy_policy(tmp_path)), "-d", "dut"),
        capture_output=True,
        text=True,
        env={**cli_env(), "PYTHONPATH": f"{site}{os.pathsep}{cli_env()['PYTHONPATH']}"},
    )
    assert result.returncode == 1
    assert "target 'toyfw' (no_such_module:TARGET) does not load" in result.stderr

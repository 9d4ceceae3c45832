"""The shared conformance suite over every built-in target (a plug-in runs the same
functions: see test_plugin.py): render determinism, capability refusals, driver verbs
against each target's test device (EOS: the eAPI test double; nftables: a namespace)."""

from __future__ import annotations

import pytest
from tests.evaluate.netns import namespaces, require_root_and_nft

from microseg.compile import compile_device
from microseg.policyfile import load_policy
from microseg.targets import conformance, registry
from microseg.targets.nftables.driver import NftablesDriver
from microseg.targets.target import RenderOptions
from support import EXAMPLES

BUILT_IN = ["eos", "nftables"]


def test_the_built_in_targets_are_registered():
    assert registry.names()[:2] == BUILT_IN
    for name in BUILT_IN:
        assert registry.get(name).name == name


@pytest.mark.parametrize("name", BUILT_IN)
@pytest.mark.parametrize("example", ["home-lab-dns-ntp.yaml", "home-lab.yaml"])
def test_rendering_is_deterministic(name, example):
    conformance.check_render_determinism(registry.get(name), load_policy(EXAMPLES / example))


@pytest.mark.parametrize("name", BUILT_IN)
def test_missing_capabilities_are_refused_by_name(name):
    conformance.check_capability_refusals(registry.get(name))


def test_an_unknown_target_names_the_known_ones():
    with pytest.raises(
        registry.UnknownTarget, match=r"target 'junos' is not known .*eos, nftables"
    ):
        registry.get("junos")


def sample_configs(name: str) -> tuple[str, str]:
    target = registry.get(name)
    first = compile_device(conformance.sample_policy(name, ("allow-ssh",)), "dut")
    second = compile_device(conformance.sample_policy(name, ("allow-ssh", "needs-ipv6")), "dut")
    return target.render(first, RenderOptions()), target.render(second, RenderOptions())


def test_eos_driver_verbs_against_the_eapi_double(switch, connect):
    conformance.check_driver_verbs(lambda: connect(switch), *sample_configs("eos"))


@pytest.mark.system
def test_nftables_driver_verbs_in_a_namespace(tmp_path):
    require_root_and_nft()
    with namespaces("dut") as names:
        conformance.check_driver_verbs(
            lambda: NftablesDriver("dut", names["dut"], state_dir=tmp_path),
            *sample_configs("nftables"),
        )


def test_the_eos_target_needs_an_address_and_credentials_to_drive_a_device():
    from microseg.model import Device
    from microseg.targets import DriverError
    from microseg.targets.target import Credentials

    target = registry.get("eos")
    with pytest.raises(DriverError, match="no management_address"):
        target.driver(Device(name="leaf1"), Credentials("admin", "secret"))
    with pytest.raises(DriverError, match="needs a username and password"):
        target.driver(Device(name="leaf1", management_address="192.0.2.1"), None)


@pytest.mark.system
def test_the_nftables_target_drives_the_devices_namespace():
    require_root_and_nft()
    from microseg.model import Device

    with namespaces("dut") as names:
        device = Device(name="dut", platform="nftables", management_namespace=names["dut"])
        driver = registry.for_device(device).driver(device, None, session="change-1")
        assert (driver.namespace, driver.session) == (names["dut"], "change-1")
        assert driver.running() == ""

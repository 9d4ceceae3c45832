"""Which devices a revision configures, what each gets, and how microseg reaches it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from microseg.compile.diff import configured_names, device_config
from microseg.compile.resolve import compile_all
from microseg.deploy.credentials import Credentials
from microseg.model import MicrosegError, PolicySet
from microseg.model.objects import Device, MonitorNode
from microseg.targets import Driver, DriverError

DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Intended:
    """What a revision gives one device: its platform and owned configuration."""

    device: str
    platform: str
    config: str


def intended_configs(policy_set: PolicySet, names: list[str] | None = None) -> list[Intended]:
    """Every configured device (switches in a domain, monitor nodes) of `policy_set`, by
    name, or only `names` (each must be configured: an unknown name is an error)."""
    configured = configured_names(policy_set)
    if names:
        unknown = sorted(set(names) - set(configured))
        if unknown:
            raise MicrosegError(
                f"device {unknown[0]!r} is not configured by this revision "
                f"(configured: {', '.join(configured) or 'none'})"
            )
        configured = sorted(set(names))
    intents = compile_all(policy_set)
    return [
        Intended(
            name,
            managed_device(policy_set, name).platform,
            device_config(policy_set, name, intents),
        )
        for name in configured
    ]


def managed_device(policy_set: PolicySet, name: str) -> Device | MonitorNode:
    found = policy_set.get("devices", name) or policy_set.get("monitor_nodes", name)
    if found is None:
        raise MicrosegError(f"device {name!r} is not in this revision")
    return found


def open_driver(
    device: Device | MonitorNode,
    credentials: Credentials,
    session: str,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> tuple[Driver, list[str]]:
    """The driver for `device`, and the warnings opening it gave (plain http).

    The one place change control picks a driver by platform; the target registry's
    `Target.driver(device, credentials, session)` replaces it once it lands."""
    if device.platform != "eos":
        raise DriverError(
            device.name, f"platform {device.platform!r}: change control deploys EOS devices only"
        )
    from microseg.targets.eos.driver import EapiEndpoint, EosDriver

    if device.management_address is None:
        raise DriverError(device.name, "no management_address: microseg cannot reach it")
    endpoint = EapiEndpoint(
        host=str(device.management_address),
        port=device.management_port,
        transport=device.management_transport,
        ca_file=credentials.ca_file,
        timeout=timeout,
    )
    role = "monitor-node" if isinstance(device, MonitorNode) else "switch"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        driver = EosDriver(
            device.name,
            endpoint,
            credentials.username,
            credentials.password,
            role=role,
            session=session,
        )
    return driver, [str(warning.message) for warning in caught]

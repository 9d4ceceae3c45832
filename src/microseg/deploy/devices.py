"""Which devices a revision configures, what each gets, and how microseg reaches it."""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

from microseg.compile.resolve import compile_all
from microseg.deploy.credentials import CredentialsError, CredentialStore
from microseg.model import MicrosegError, PolicySet
from microseg.model.objects import Device, MonitorNode
from microseg.targets import Driver, DriverError, registry
from microseg.targets.render import configured_names, device_config
from microseg.targets.target import Credentials

DEFAULT_TIMEOUT_S = 30.0
_OPENING = threading.Lock()


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
    credentials: Credentials | None,
    session: str,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> tuple[Driver, list[str]]:
    """The driver of `device`'s target (the registry's), and the warnings opening it gave
    (eAPI over plain http)."""
    target = registry.for_device(device)
    # catch_warnings changes process-wide state: one thread at a time (opening a driver
    # sends nothing to the device, so this costs nothing worth measuring).
    with _OPENING, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        driver = target.driver(device, credentials, session, timeout=timeout)
    return driver, [str(warning.message) for warning in caught]


def open_device(
    policy_set: PolicySet,
    name: str,
    credentials: CredentialStore,
    session: str,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> tuple[Driver, list[str]]:
    """`open_driver` for device `name` of `policy_set`, with its login. A device with no
    login is still opened (an nftables host needs none); if its target wants one, the
    error says where logins come from."""
    device = managed_device(policy_set, name)
    try:
        login: Credentials | None = credentials.for_device(name)
    except CredentialsError as missing:
        try:
            return open_driver(device, None, session, timeout)
        except DriverError:
            raise missing from None
    return open_driver(device, login, session, timeout)

"""How microseg logs in to devices: never from the policy or the store.

Two sources, in this order:

1. `MICROSEG_DEVICE_USERNAME` and `MICROSEG_DEVICE_PASSWORD`: one login for every device
   (the credentials file is then not read);
2. the credentials file, `$MICROSEG_CREDENTIALS_FILE` or
   `~/.config/microseg/credentials.toml` (`$XDG_CONFIG_HOME` honoured), which must be
   readable by its owner only (mode 0600 or 0400, like ssh's private keys):

       [default]                       # every device not named below
       username = "microseg"
       password = "..."

       [domains.andreas-lab-domain]    # every device of that security domain
       username = "netops"
       password = "..."

       [devices.andreasm-720xp-home]   # one device or monitor node
       username = "admin"
       password = "..."
       ca_file = "/etc/microseg/lab-ca.pem"   # optional: the CA that signed its certificate

The most specific entry wins: device, then domain, then default. A password is never
printed, logged or stored: `Credentials` (`microseg.targets.target`) leaves it out of its
repr, and messages name the file, section and key, never the value.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

import platformdirs

from microseg.model import MicrosegError, PolicySet
from microseg.targets.target import Credentials

USERNAME_ENV = "MICROSEG_DEVICE_USERNAME"
PASSWORD_ENV = "MICROSEG_DEVICE_PASSWORD"
CA_FILE_ENV = "MICROSEG_DEVICE_CA_FILE"
CREDENTIALS_FILE_ENV = "MICROSEG_CREDENTIALS_FILE"
_ENTRY_KEYS = frozenset({"username", "password", "ca_file"})


class CredentialsError(MicrosegError):
    """No usable login for a device, or a credentials file microseg refuses to read."""


def credentials_path() -> Path:
    """$MICROSEG_CREDENTIALS_FILE, else credentials.toml in microseg's user config dir."""
    given = os.environ.get(CREDENTIALS_FILE_ENV, "").strip()
    if given:
        return Path(given).expanduser()
    return Path(platformdirs.user_config_dir("microseg")) / "credentials.toml"


class CredentialStore:
    """Where each device's login comes from (see the module docstring).

    Read once per command; `for_device` answers per device, so a missing login is the
    error of the device that needs it, not of the whole run.
    """

    def __init__(self, policy_set: PolicySet) -> None:
        self._policy_set = policy_set
        username = os.environ.get(USERNAME_ENV)
        password = os.environ.get(PASSWORD_ENV)
        self._from_env: Credentials | None = None
        self._file: dict[str, Any] | None = None
        self._path = credentials_path()
        if username or password:
            if not (username and password):
                missing = PASSWORD_ENV if username else USERNAME_ENV
                raise CredentialsError(
                    f"{USERNAME_ENV} and {PASSWORD_ENV} go together: {missing} is not set"
                )
            ca_file = os.environ.get(CA_FILE_ENV, "").strip() or None
            self._from_env = Credentials(username, password, ca_file)
        elif self._path.exists():
            self._file = _read_file(self._path)

    def for_device(self, name: str) -> Credentials:
        if self._from_env is not None:
            return self._from_env
        if self._file is None:
            raise CredentialsError(
                f"device {name!r}: no credentials: set {USERNAME_ENV} and {PASSWORD_ENV}, "
                f"or write them to {self._path} (mode 0600)"
            )
        candidates = [("devices", name)]
        candidates += [
            ("domains", domain.name)
            for domain in self._policy_set.domains
            if name in domain.devices
        ]
        for table, key in candidates:
            entry = self._file.get(table, {}).get(key)
            if entry is not None:
                return _credentials(entry, self._path, f"[{table}.{key}]")
        if "default" in self._file:
            return _credentials(self._file["default"], self._path, "[default]")
        raise CredentialsError(
            f"device {name!r}: {self._path} has no [devices.{name}], no [domains.NAME] of a "
            "domain it is in, and no [default]"
        )


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            status = os.fstat(file.fileno())
            _check_private(path, status)
            data = tomllib.load(file)
    except OSError as error:
        raise CredentialsError(f"cannot read {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise CredentialsError(f"{path}: not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"{path}: not valid TOML: not UTF-8 text") from None
    unknown = sorted(set(data) - {"default", "domains", "devices"})
    if unknown:
        raise CredentialsError(
            f"{path}: unknown table [{unknown[0]}] (expected [default], [domains.NAME], "
            "[devices.NAME])"
        )
    for table in ("domains", "devices"):
        if not isinstance(data.get(table, {}), dict) or not all(
            isinstance(entry, dict) for entry in data.get(table, {}).values()
        ):
            raise CredentialsError(f"{path}: [{table}] holds one table per name, [{table}.NAME]")
    return data


def _check_private(path: Path, status: os.stat_result) -> None:
    """Readable by its owner only, and that owner is us (ssh refuses a private key otherwise)."""
    if not stat.S_ISREG(status.st_mode):
        raise CredentialsError(f"{path}: not a regular file")
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o077:
        raise CredentialsError(
            f"{path} has mode {mode:04o}: a credentials file must be readable by its owner only; "
            f"run: chmod 600 {path}"
        )
    if status.st_uid != os.getuid():
        raise CredentialsError(
            f"{path} belongs to uid {status.st_uid}, not to you (uid {os.getuid()}): refused"
        )


def _credentials(entry: Any, path: Path, where: str) -> Credentials:
    if not isinstance(entry, dict):
        raise CredentialsError(f"{path} {where}: expected a table with username and password")
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise CredentialsError(
            f"{path} {where}: unknown key {unknown[0]!r} (expected username, password, ca_file)"
        )
    for key in ("username", "password"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise CredentialsError(f"{path} {where}: {key} is missing or not a string")
    ca_file = entry.get("ca_file")
    if ca_file is not None and not isinstance(ca_file, str):
        raise CredentialsError(f"{path} {where}: ca_file must be a path (a string)")
    return Credentials(entry["username"], entry["password"], ca_file)

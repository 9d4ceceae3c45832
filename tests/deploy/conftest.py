"""Change control against eAPI test doubles of the seed's switch and vZTX.

Every test gets its own SQLite store (MICROSEG_DATABASE_URL), author, and device login in
the environment; policies are the seed's examples pointed at the doubles' loopback ports.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from support import EXAMPLES, ROOT

sys.path.insert(0, str(ROOT / "tests" / "targets"))

from seed_doubles import seed_switch, seed_vztx

SWITCH = "andreasm-720xp-home"
VZTX = "andreas-ztx1"


@pytest.fixture
def store_env(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'microseg.db'}"
    monkeypatch.setenv("MICROSEG_DATABASE_URL", url)
    monkeypatch.setenv("MICROSEG_AUTHOR", "andreas")
    monkeypatch.setenv("MICROSEG_DEVICE_USERNAME", "admin")
    monkeypatch.setenv("MICROSEG_DEVICE_PASSWORD", "secret")
    monkeypatch.delenv("MICROSEG_CREDENTIALS_FILE", raising=False)
    return url


@pytest.fixture
def switch():
    with seed_switch() as double:
        yield double


@pytest.fixture
def vztx():
    with seed_vztx() as double:
        yield double


def pointed_at(
    example: str | Path, directory: Path, doubles: dict, name: str | None = None
) -> Path:
    """The example policy with each named device reached at its double (http on loopback)."""
    from microseg.policyfile import dump_policy, load_policy

    policy_set = load_policy(EXAMPLES / example if isinstance(example, str) else example)
    updates = {}
    for section in ("devices", "monitor_nodes"):
        updates[section] = tuple(
            obj.model_copy(
                update={
                    "management_address": "127.0.0.1",
                    "management_port": doubles[obj.name].port,
                    "management_transport": "http",
                }
            )
            if obj.name in doubles
            else obj
            for obj in getattr(policy_set, section)
        )
    path = directory / (name or Path(example).name)
    path.write_text(dump_policy(policy_set.model_copy(update=updates)))
    return path


@pytest.fixture
def lab(tmp_path, switch, vztx):
    """lab(example) -> the example's policy file, pointed at the seed doubles."""
    doubles = {SWITCH: switch, VZTX: vztx}

    def make(example: str) -> Path:
        return pointed_at(example, tmp_path, doubles)

    return make

"""Revisions never change once stored: the server keeps the last few it read, parsed and
compiled, so reading or checking a 5,000-rule revision does not validate and resolve it
again on every request. Workspaces change, and are read from the store each time."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from microseg.compile import compile_all
from microseg.compile.intent import DeviceIntent
from microseg.evaluate.engine import CompiledDevice
from microseg.model import PolicySet
from microseg.policyfile import policy_document
from microseg.store import Store

CACHED_REVISIONS = 4
# policy, intents, evaluators, document and a few devices' configurations per revision
MAX_ENTRIES_PER_REVISION = 16


class RevisionCache:
    """A revision's PolicySet, DeviceIntents and evaluators; least recently used out."""

    def __init__(self, store: Store, size: int = CACHED_REVISIONS):
        self._store = store
        self._size = size
        self._entries: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def policy(self, revision: int) -> PolicySet:
        found: PolicySet = self._get(
            ("policy", revision), lambda: self._store.revision_policy(revision)
        )
        return found

    def intents(self, revision: int) -> dict[str, DeviceIntent]:
        found: dict[str, DeviceIntent] = self._get(
            ("intents", revision), lambda: compile_all(self.policy(revision))
        )
        return found

    def engines(self, revision: int) -> dict[str, CompiledDevice]:
        """Each device's evaluator (its bit tables are built once, on first use)."""
        found: dict[str, CompiledDevice] = self._get(
            ("engines", revision),
            lambda: {
                name: CompiledDevice(intent) for name, intent in self.intents(revision).items()
            },
        )
        return found

    def document_json(self, revision: int) -> bytes:
        """The revision as a policy document, serialized (`GET /api/revisions/N/objects`)."""
        found: bytes = self._get(
            ("document", revision),
            lambda: json.dumps(
                policy_document(self.policy(revision)), ensure_ascii=False, separators=(",", ":")
            ).encode(),
        )
        return found

    def config(
        self, revision: int, device: str, target: str | None, omit_mirror: bool
    ) -> tuple[str, str]:
        """(configuration, target) of one device, as `render_config` gives it."""
        from microseg.targets.render import render_config

        found: tuple[str, str] = self._get(
            ("config", revision, device, target or "", omit_mirror),
            lambda: render_config(
                self.policy(revision),
                device,
                target,
                self.intents(revision),
                omit_mirror=omit_mirror,
            ),
        )
        return found

    def _get(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = make()  # outside the lock: two requests may both make it; both are right
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > MAX_ENTRIES_PER_REVISION * self._size:
                self._entries.popitem(last=False)
        return value

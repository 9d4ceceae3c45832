"""A store writer for the fault-injection tests: writes until it is killed.

    python store_fault_writer.py URL import|submit

Prints `ready` once loaded, then `committed N` after each revision N is committed (flushed:
the parent knows which revisions the store has promised to keep). `import` stores the seed's
stages in turn, each with a description of its own (an import the head already holds makes
no revision); `submit` opens a workspace, sets a rule in it and submits it, so a kill can
land in any of those transactions.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

from microseg.policyfile import load_policy
from microseg.store import open_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STAGES = ("home-lab-dns-ntp.yaml", "home-lab-monitor.yaml", "home-lab.yaml")


def main(url: str, mode: str) -> None:
    policies = [load_policy(EXAMPLES / name) for name in STAGES]
    with open_store(url) as store:
        print("ready", flush=True)
        for number in itertools.count(1):
            if mode == "import" or store.head() is None:
                # Each import differs from the head (an unchanged one makes no revision).
                stage = policies[number % 3]
                first, *rest = stage.rules
                changed = first.model_copy(update={"description": f"import {os.getpid()}-{number}"})
                stage = stage.model_copy(update={"rules": (changed, *rest)})
                revision = store.import_policy(stage, "writer", f"import {number}").revision
            else:
                workspace = f"w{os.getpid()}-{number}"
                store.workspace_create(workspace, author="writer")
                head = store.revision_policy(store.head())
                rule = head.rules[number % len(head.rules)]
                store.workspace_set(
                    workspace,
                    "rules",
                    rule.model_copy(update={"description": f"change {os.getpid()}-{number}"}),
                )
                revision = store.workspace_submit(workspace, "writer", f"submit {number}")
            print(f"committed {revision}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

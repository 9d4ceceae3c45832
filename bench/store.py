"""Benchmark: the versioned store on a data-centre-sized policy and its history.

Part 1 (embedded SQLite): import a 10,000-object policy and read it back, against the same
policy as its canonical YAML file (`dump_policy` / `load_policy`, the policy-as-code path),
as ratios; a workspace change (validated against the whole effective policy), its diff and
its submit in seconds.

Part 2 (SQLite and PostgreSQL): the history. The policy is the first revision, then
`--revisions` revisions each change one object (a rule's description, a group's prefix or a
service's port, in turn). The first `--submits` of them go through a workspace (create, set,
submit; their mean submit time is reported); the others through the revision writer that
import and submit end with, in the same write transaction, without validating the whole
policy again (0.5-1 s per revision at this size, the same on any layout): the rows written
are the same. Every revision read back is validated. Reported per backend: the database size after the
first revision and after the history, as a ratio (target <= 3x: a revision stores what
changed, not a copy), and the time to read revisions spread over the history against the
time to read the head, as ratios (target <= 2x), both for `revision_policy` (the objects
read and validated) and for the stored bodies alone (the part the layout decides). Sizes:
SQLite's file after a WAL checkpoint; PostgreSQL's store tables with their indexes and
TOAST (pg_total_relation_size), not the catalog of an empty database. PostgreSQL is a
throwaway server (tests/store/postgres_cluster.py), or `--postgres-url` of an empty database.

Prints one JSON line. Run: .venv/bin/python bench/store.py [--groups N] [--rules N]
[--revisions N] [--backends sqlite,postgresql] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "store"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from postgres_cluster import postgres_database
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.orm import Session

from microseg.model import PolicySet
from microseg.policyfile import dump_policy, load_policy
from microseg.store import Store, open_store
from microseg.store.schema import Base
from microseg.store.snapshot import object_body
from microseg.store.store import _add_revision, _revision_bodies


def generated_policy(groups: int, rules: int) -> PolicySet:
    """Groups of /24s in 10/8, a service per 10 rules, one policy listing every rule."""
    group_list = [
        {"name": f"group-{i:05d}", "prefixes": [f"10.{i // 256 % 256}.{i % 256}.0/24"]}
        for i in range(groups)
    ]
    services = [
        {"name": f"svc-{i:04d}", "protocol": "tcp", "destination_ports": [1024 + i]}
        for i in range(max(1, rules // 10))
    ]
    rule_list = [
        {
            "name": f"rule-{i:05d}",
            "sources": [group_list[i % groups]["name"]],
            "destinations": [group_list[(i * 7 + 3) % groups]["name"]],
            "services": [services[i % len(services)]["name"]],
        }
        for i in range(rules)
    ]
    return PolicySet.model_validate(
        {
            "devices": [{"name": "leaf1", "platform": "eos"}],
            "domains": [{"name": "dc", "devices": ["leaf1"], "vrfs": ["default"]}],
            "groups": group_list,
            "services": services,
            "rules": rule_list,
            "policies": [
                {"name": "dc", "id": 1, "domain": "dc", "rules": [r["name"] for r in rule_list]}
            ],
        }
    )


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def fastest(functions: dict[int, Callable[[], object]], rounds: int = 5) -> dict[int, float]:
    """Each function's best time over `rounds` rounds that run them all in turn, so that
    other work on the machine slows them alike (the ratios are what matter)."""
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(rounds):
        for key, function in functions.items():
            best[key] = min(best[key], timed(function)[0])
    return best


def one_object_changed(policy_set: PolicySet, step: int) -> tuple[str, BaseModel]:
    """The object revision `step` changes: a rule, a group or a service, in turn."""
    kind, index = step % 3, step // 3
    if kind == 0:
        rule = policy_set.rules[index % len(policy_set.rules)]
        return "rules", rule.model_copy(update={"description": f"change {step}"})
    if kind == 1:
        group = policy_set.groups[index % len(policy_set.groups)]
        return "groups", group.model_copy(update={"prefixes": (f"172.16.{step % 256}.0/24",)})
    service = policy_set.services[index % len(policy_set.services)]
    return "services", service.model_copy(update={"destination_ports": (20000 + step,)})


def sqlite_size(path: Path) -> Callable[[Store], int]:
    def size(_store: Store) -> int:
        with contextlib.closing(sqlite3.connect(path)) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wal = path.with_name(path.name + "-wal")
        return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    return size


def postgresql_size(store: Store) -> int:
    tables = [*Base.metadata.tables, "alembic_version"]
    with store._engine.connect() as connection:
        return sum(
            connection.scalar(text("SELECT pg_total_relation_size(:t)"), {"t": table}) or 0
            for table in tables
        )


def write_revision(store: Store, section: str, obj: BaseModel, message: str) -> None:
    """One revision changing one object, as submit writes it, without whole-policy validation."""
    with store._writing() as (session, mainline):
        assert mainline.head_revision_id is not None
        head = _revision_bodies(session, mainline.head_revision_id)
        bodies = {**head, (section, obj.name): object_body(section, obj)}
        _add_revision(session, mainline, head, bodies, "bench", message)


def history(
    url: str, policy_set: PolicySet, revisions: int, submits: int, size: Callable[[Store], int]
) -> dict:
    """The policy as revision 1, `revisions` one-object revisions, then sizes and read times."""
    with open_store(url) as store:
        store.import_policy(policy_set, "bench", "the data centre")
        size_first = size(store)
        submit_s = 0.0
        for step in range(revisions):
            section, obj = one_object_changed(policy_set, step)
            workspace = f"change-{step}"
            if step >= submits:
                write_revision(store, section, obj, workspace)
                continue
            store.workspace_create(workspace, author="bench")
            store.workspace_set(workspace, section, obj)
            submit_s += timed(lambda w=workspace: store.workspace_submit(w, "bench", w))[0]
        head = store.head()
        assert head == revisions + 1
        size_after = size(store)

        def read_bodies(number: int) -> None:
            with Session(store._engine) as session:
                _revision_bodies(session, number)

        spread = sorted({1, 2, *(1 + head * k // 4 for k in range(1, 4)), head - 1, head})
        reads = fastest({n: lambda n=n: store.revision_policy(n) for n in spread})
        bodies = fastest({n: lambda n=n: read_bodies(n) for n in spread})
        head_read, head_bodies = reads.pop(head), bodies.pop(head)
        assert len(store.revision_policy(1).objects()) == len(policy_set.objects())
    return {
        "revisions": head,
        "size_after_first_revision_bytes": size_first,
        "size_after_history_bytes": size_after,
        "size_vs_first_revision": round(size_after / size_first, 2),
        "bytes_per_one_object_revision": round((size_after - size_first) / revisions),
        "workspace_submits": min(submits, revisions),
        "submit_one_object_mean_s": round(submit_s / max(1, min(submits, revisions)), 3),
        "head_read_s": round(head_read, 3),
        "revision_read_s": {str(n): round(t, 3) for n, t in reads.items()},
        "worst_revision_read_vs_head": round(max(reads.values()) / head_read, 2),
        "head_bodies_read_s": round(head_bodies, 4),
        "revision_bodies_read_s": {str(n): round(t, 4) for n, t in bodies.items()},
        "worst_revision_bodies_read_vs_head": round(max(bodies.values()) / head_bodies, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=4500)
    parser.add_argument("--rules", type=int, default=5000)
    parser.add_argument("--revisions", type=int, default=1000)
    parser.add_argument("--submits", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", help="an empty PostgreSQL database to use")
    args = parser.parse_args()
    backends = args.backends.split(",")
    policy_set = generated_policy(args.groups, args.rules)
    objects = len(policy_set.objects())
    with tempfile.TemporaryDirectory(prefix="microseg-bench-store-") as workdir:
        policy_file = Path(workdir) / "policy.yaml"
        yaml_write_s, _ = timed(lambda: policy_file.write_text(dump_policy(policy_set)))
        yaml_read_s, from_yaml = timed(lambda: load_policy(policy_file))
        with open_store(f"sqlite:///{workdir}/microseg.db") as store:
            import_s, revision = timed(
                lambda: store.import_policy(policy_set, "bench", "dc").revision
            )
            read_s, from_store = timed(lambda: store.revision_policy(revision))
            assert dump_policy(from_store) == dump_policy(from_yaml)
            store.workspace_create("change")
            rule = from_store.rule("rule-00000").model_copy(update={"services": ("svc-0001",)})
            set_s, _ = timed(lambda: store.workspace_set("change", "rules", rule))
            diff_s, diff = timed(lambda: store.workspace_diff("change"))
            assert len(diff) == 1
            submit_s, _ = timed(lambda: store.workspace_submit("change", "bench", "one rule"))
        histories = {}
        if "sqlite" in backends:
            database = Path(workdir) / "history.db"
            histories["sqlite"] = history(
                f"sqlite:///{database}",
                policy_set,
                args.revisions,
                args.submits,
                sqlite_size(database),
            )
        if "postgresql" in backends:
            with postgres_database(args.postgres_url) as url:
                histories["postgresql"] = history(
                    url, policy_set, args.revisions, args.submits, postgresql_size
                )
    figures = {
        "bench": "store",
        "objects": objects,
        "baseline": "canonical YAML file (dump_policy / load_policy)",
        "import_s": round(import_s, 3),
        "yaml_write_s": round(yaml_write_s, 3),
        "import_vs_yaml_write": round(import_s / yaml_write_s, 2),
        "revision_read_s": round(read_s, 3),
        "yaml_read_s": round(yaml_read_s, 3),
        "revision_read_vs_yaml_read": round(read_s / yaml_read_s, 2),
        "workspace_set_one_object_s": round(set_s, 3),
        "workspace_diff_s": round(diff_s, 3),
        "workspace_submit_s": round(submit_s, 3),
        "history": histories,
        "targets": {"size_vs_first_revision": 3.0, "worst_revision_read_vs_head": 2.0},
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

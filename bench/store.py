"""Benchmark: the versioned store (embedded SQLite) on a data-centre-sized policy.

Baseline: the same policy as its canonical YAML file — writing it with `dump_policy` and
reading it with `load_policy`, the policy-as-code path. The store's import and revision read
are reported as ratios to that baseline; a workspace change (validated against the whole
effective policy) and its submit are reported in seconds. Prints one JSON line.

Run: .venv/bin/python bench/store.py [--groups N] [--rules N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from microseg.model import PolicySet
from microseg.policyfile import dump_policy, load_policy
from microseg.store import open_store


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=2000)
    parser.add_argument("--rules", type=int, default=2000)
    args = parser.parse_args()
    policy_set = generated_policy(args.groups, args.rules)
    objects = len(policy_set.objects())
    with tempfile.TemporaryDirectory(prefix="microseg-bench-store-") as workdir:
        policy_file = Path(workdir) / "policy.yaml"
        yaml_write_s, _ = timed(lambda: policy_file.write_text(dump_policy(policy_set)))
        yaml_read_s, from_yaml = timed(lambda: load_policy(policy_file))
        with open_store(f"sqlite:///{workdir}/microseg.db") as store:
            import_s, revision = timed(lambda: store.import_policy(policy_set, "bench", "dc"))
            read_s, from_store = timed(lambda: store.revision_policy(revision))
            assert dump_policy(from_store) == dump_policy(from_yaml)
            store.workspace_create("change")
            rule = from_store.rule("rule-00000").model_copy(update={"services": ("svc-0001",)})
            set_s, _ = timed(lambda: store.workspace_set("change", "rules", rule))
            diff_s, diff = timed(lambda: store.workspace_diff("change"))
            assert len(diff) == 1
            submit_s, _ = timed(lambda: store.workspace_submit("change", "bench", "one rule"))
    figures = {
        "bench": "store",
        "backend": "sqlite",
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
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

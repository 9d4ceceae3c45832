"""Compile benchmark: microseg vs Aerleon's arista_tp generator on the same policy.

For N = 100, 1000, 5000 rules (each rule with its own source and destination group of five
prefixes and one tcp/udp service), both compilers start from plain Python dicts and produce
EOS traffic-policy text in the same run:

* microseg: `compile_s` = compile_all + EOS rendering of a validated PolicySet;
  `validate_s` = building that PolicySet from the dicts (pydantic validation, parsing
  50 000 prefixes), reported separately;
* Aerleon: `aerleon_s` = naming.Naming from the definitions dict + aerleon.api.Generate
  with an `arista_tp` target (its public Python API, no files), i.e. its parsing and its
  generator. Its two stages are also timed apart, in a separate run that repeats what
  Generate does (aerleon/api.py `_GenerateACL`) and must produce the same text:
  `aerleon_parse_s` (naming + policy.FromBuilder) and `aerleon_generate_s` (the arista_tp
  generator on a deep copy of the parsed policy, as Generate runs it, and its text).

What compares with what: a user who starts from dicts (or files) pays validation on our
side and parsing on Aerleon's, so `ratio_with_validation` = aerleon_s / (validate_s +
compile_s) is the like-for-like end-to-end figure. `ratio` = aerleon_s / compile_s is the
figure issue #3 sets the target on (our compile step against Aerleon's whole run), and
`ratio_generate_only` = aerleon_generate_s / compile_s compares the compile steps alone.

Rules are unidirectional so both emit one match (term) per rule. Prints one JSON line per
N; each figure is the best of `--repeat` runs.
Run: `python bench/compile.py [--sizes 100,1000,5000] [--repeat 3]`.
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import json
import logging
import sys
import time
from pathlib import Path

# Measure the checkout this file is in, not whichever microseg the virtualenv has installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from microseg.compile import compile_all
from microseg.model import PolicySet
from microseg.targets.eos.render import render_device

PREFIXES_PER_GROUP = 5


def _prefixes(rule: int, side: int) -> list[str]:
    base = int(ipaddress.ip_address("10.0.0.0")) + (rule * 2 + side) * 256
    return [str(ipaddress.ip_network((base + 16 * k, 28))) for k in range(PREFIXES_PER_GROUP)]


def _service(rule: int) -> tuple[str, int]:
    return ("tcp" if rule % 2 else "udp"), 1024 + rule % 60000


def microseg_policy(n_rules: int) -> dict:
    groups, services, rules = [], [], []
    for rule in range(n_rules):
        groups.append({"name": f"src{rule}", "prefixes": _prefixes(rule, 0)})
        groups.append({"name": f"dst{rule}", "prefixes": _prefixes(rule, 1)})
        protocol, port = _service(rule)
        services.append({"name": f"svc{rule}", "protocol": protocol, "destination_ports": [port]})
        rules.append(
            {
                "name": f"rule{rule}",
                "sources": [f"src{rule}"],
                "destinations": [f"dst{rule}"],
                "services": [f"svc{rule}"],
                "direction": "unidirectional",
                "action": "drop" if rule % 3 == 0 else "forward",
            }
        )
    return {
        "devices": [{"name": "leaf1"}],
        "domains": [{"name": "dc", "devices": ["leaf1"], "vrfs": ["default"]}],
        "groups": groups,
        "services": services,
        "rules": rules,
        "policies": [
            {
                "name": "bench",
                "id": 1,
                "domain": "dc",
                "vrf": "ALL",
                "rules": [r["name"] for r in rules],
            }
        ],
    }


def aerleon_inputs(n_rules: int) -> tuple[dict, dict]:
    networks, services, terms = {}, {}, []
    for rule in range(n_rules):
        networks[f"SRC{rule}"] = {"values": [{"address": p} for p in _prefixes(rule, 0)]}
        networks[f"DST{rule}"] = {"values": [{"address": p} for p in _prefixes(rule, 1)]}
        protocol, port = _service(rule)
        services[f"SVC{rule}"] = [{"port": port, "protocol": protocol}]
        terms.append(
            {
                "name": f"rule{rule}",
                "source-address": f"SRC{rule}",
                "destination-address": f"DST{rule}",
                "destination-port": f"SVC{rule}",
                "protocol": protocol,
                "action": "deny" if rule % 3 == 0 else "accept",
            }
        )
    policy = {
        "filename": "bench",
        "filters": [{"header": {"targets": {"arista_tp": "bench inet"}}, "terms": terms}],
    }
    return policy, {"networks": networks, "services": services}


def time_microseg(document: dict) -> tuple[float, float, str]:
    start = time.perf_counter()
    policy_set = PolicySet.model_validate(document)
    validated = time.perf_counter()
    intents = compile_all(policy_set)
    text = render_device(intents["leaf1"])
    return validated - start, time.perf_counter() - validated, text


def time_aerleon(policy: dict, definitions: dict) -> tuple[float, str]:
    from aerleon import api
    from aerleon.lib import naming

    start = time.perf_counter()
    naming_object = naming.Naming()
    naming_object.ParseDefinitionsObject(definitions, "")
    configs = api.Generate([policy], naming_object)
    elapsed = time.perf_counter() - start
    return elapsed, next(iter(configs.values()))


def time_aerleon_stages(policy: dict, definitions: dict) -> tuple[float, float, str]:
    """(parse seconds, generate seconds, text): Generate's steps for one arista_tp target
    (aerleon/api.py `_GenerateACL`, without includes, optimize or shade check)."""
    from aerleon.lib import naming, plugin_supervisor, policy_builder
    from aerleon.lib import policy as aerleon_policy

    start = time.perf_counter()
    naming_object = naming.Naming()
    naming_object.ParseDefinitionsObject(definitions, "")
    parsed_policy = aerleon_policy.FromBuilder(
        policy_builder.PolicyBuilder(policy, naming_object, False, False)
    )
    parsed = time.perf_counter()
    plugin_supervisor.PluginSupervisor.Start()
    generator = plugin_supervisor.PluginSupervisor.generators["arista_tp"]
    text = str(generator(copy.deepcopy(parsed_policy), 2))
    return parsed - start, time.perf_counter() - parsed, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # Aerleon logs every term it renders at INFO/WARNING
    for n_rules in (int(n) for n in args.sizes.split(",")):
        document = microseg_policy(n_rules)
        policy, definitions = aerleon_inputs(n_rules)
        validations, compiles, theirs, parses, generates = [], [], [], [], []
        for _ in range(args.repeat):
            validate_s, compile_s, text = time_microseg(document)
            validations.append(validate_s)
            compiles.append(compile_s)
            assert text.count("\n      match rule") == n_rules
            seconds, text = time_aerleon(policy, definitions)
            theirs.append(seconds)
            assert text.count("match rule") >= n_rules
            parse_s, generate_s, staged_text = time_aerleon_stages(policy, definitions)
            assert staged_text == text, "the staged Aerleon run must match api.Generate"
            parses.append(parse_s)
            generates.append(generate_s)
        validate_s, compile_s, aerleon_s = min(validations), min(compiles), min(theirs)
        aerleon_parse_s, aerleon_generate_s = min(parses), min(generates)
        print(
            json.dumps(
                {
                    "bench": "compile",
                    "n_rules": n_rules,
                    "compile_s": round(compile_s, 4),
                    "validate_s": round(validate_s, 4),
                    "aerleon_s": round(aerleon_s, 4),
                    "aerleon_parse_s": round(aerleon_parse_s, 4),
                    "aerleon_generate_s": round(aerleon_generate_s, 4),
                    "ratio": round(aerleon_s / compile_s, 1),
                    "ratio_with_validation": round(aerleon_s / (validate_s + compile_s), 1),
                    "ratio_generate_only": round(aerleon_generate_s / compile_s, 1),
                    "compile_us_per_rule": round(compile_s / n_rules * 1e6, 1),
                    "aerleon_us_per_rule": round(aerleon_s / n_rules * 1e6, 1),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()

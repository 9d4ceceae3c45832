"""Random policies over small address pools, so overlaps, shadowing and both families happen.

Pool addresses live on three "hosts": 10.66.H.1-4 and fd66:0:0:H::1-4 for H in 1..3; the
kernel differential test routes between exactly these.
"""

from __future__ import annotations

import ipaddress
import random

from microseg.model import SECTIONS, PolicySet

HOSTS = (1, 2, 3)
HOST_ADDRESSES = (1, 2, 3, 4)
PORTS = (22, 53, 80, 443, 1000, 1500, 2000, 5000)


def pool_addresses() -> list[str]:
    addresses = [f"10.66.{h}.{a}" for h in HOSTS for a in HOST_ADDRESSES]
    return addresses + [f"fd66:0:0:{h}::{a}" for h in HOSTS for a in HOST_ADDRESSES]


def host_of(address: str) -> int:
    return int(address.split(".")[2]) if "." in address else int(address.split(":")[3])


def _prefix(rng: random.Random, family: int) -> str:
    host = rng.choice(HOSTS)
    kind = rng.choice(("host", "host", "pair", "subnet", "all"))
    if family == 4:
        return {
            "host": f"10.66.{host}.{rng.choice(HOST_ADDRESSES)}/32",
            "pair": f"10.66.{host}.{rng.choice((0, 2))}/31",
            "subnet": f"10.66.{host}.0/24",
            "all": "10.66.0.0/16",
        }[kind]
    return {
        "host": f"fd66:0:0:{host}::{rng.choice(HOST_ADDRESSES)}/128",
        "pair": f"fd66:0:0:{host}::{rng.choice((0, 2))}/127",
        "subnet": f"fd66:0:0:{host}::/64",
        "all": "fd66::/32",
    }[kind]


def _group(rng: random.Random, index: int) -> dict:
    families = rng.choice(((4,), (6,), (4, 6), (4, 6)))
    prefixes = sorted({_prefix(rng, f) for f in families for _ in range(rng.randint(1, 3))})
    group = {"name": f"g{index}", "prefixes": prefixes}
    wide = [p for p in prefixes if not p.endswith(("/32", "/128")) or p == "fd66::/32"]
    if wide and rng.random() < 0.4:
        base = ipaddress.ip_network(rng.choice(wide))
        inside = [a for a in pool_addresses() if ipaddress.ip_address(a) in base]
        if inside:
            excluded = ipaddress.ip_address(rng.choice(inside))
            group["except_prefixes"] = [f"{excluded}/{excluded.max_prefixlen}"]
    return group


def _service(rng: random.Random, index: int) -> dict:
    protocol = rng.choice(("tcp", "tcp", "udp", "udp", "icmp", "icmpv6"))
    service: dict = {"name": f"s{index}", "protocol": protocol}
    if protocol in ("tcp", "udp"):
        ports = []
        for _ in range(rng.randint(1, 2)):
            low = rng.choice(PORTS)
            ports.append(low if rng.random() < 0.7 else f"{low}-{low + rng.choice((10, 600))}")
        service["destination_ports"] = ports
        if rng.random() < 0.2:
            service["source_ports"] = [f"{rng.choice(PORTS)}-65535"]
    elif rng.random() < 0.5:
        service["icmp_types"] = ["echo-request" if protocol == "icmpv6" else "echo"]
    return service


# Names that broke, or could break, generated identifiers (issue 10 #3): separators we use
# (`+`, `_`, `/`, `.`), suffixes we add (`-reverse`, `-ipv6`, `_v4`), names equal after
# replacing punctuation with `_`, an escape lookalike (`a.2b.b` is how `a+b` is encoded),
# non-ASCII, digits first, and names longer than nft's 255-byte identifiers.
ADVERSARIAL_GROUPS = (
    "a", "b", "a+b", "a_b", "a b", "a-b", "a/b", "a.2b.b", "b_v4", "x-reverse", "1",
    "g" * 300, "g" * 299 + "h",
)  # fmt: skip
ADVERSARIAL_SERVICES = ("s", "s+t", "s_t", "s t", "t-ipv6", "ü")
ADVERSARIAL_RULES = (
    "r", "r+1", "r_1", "r 1", "r/1", "q-reverse", "é", "2r", "a+b",
    "0" + "y" * 260, "1" + "y" * 260, "r.2b.1", "r-1", "p-ipv6",
)  # fmt: skip
ADVERSARIAL_POLICY = "p+1 / ☃"


def random_policy_set(
    seed: int, rules: int = 8, default_action: str = "forward", adversarial_names: bool = False
) -> PolicySet:
    """A one-device, one-policy PolicySet with `rules` random rules (VRF ALL).

    `adversarial_names`: the same policy, with its objects named from the ADVERSARIAL_
    lists instead of `g0`, `s0`, `r0`, `p1`."""
    rng = random.Random(seed)
    groups = [_group(rng, i) for i in range(rng.randint(3, 6))]
    services = [_service(rng, i) for i in range(rng.randint(2, 5))]
    rule_list = []
    for index in range(rules):
        rule = {
            "name": f"r{index}",
            "sources": _names(rng, groups),
            "destinations": _names(rng, groups),
            "services": _names(rng, services, any_chance=0.25),
            "direction": rng.choice(("bidirectional", "unidirectional")),
            "action": rng.choice(("forward", "drop", "drop")),
        }
        rule_list.append(rule)
    if adversarial_names:
        groups, services, rule_list = _renamed(groups, services, rule_list)
    policy_set = PolicySet.model_validate(
        {
            "devices": [{"name": "sw1", "platform": "nftables"}],
            "domains": [{"name": "d1", "devices": ["sw1"], "vrfs": ["default"]}],
            "groups": groups,
            "services": services,
            "rules": rule_list,
            "policies": [
                {
                    "name": ADVERSARIAL_POLICY if adversarial_names else "p1",
                    "id": 1,
                    "domain": "d1",
                    "vrf": "ALL",
                    "rules": [r["name"] for r in rule_list],
                    "default_action": default_action,
                }
            ],
        }
    )
    return _compilable(policy_set)


def _renamed(groups: list[dict], services: list[dict], rules: list[dict]) -> tuple:
    """The objects renamed from the ADVERSARIAL_ lists, references followed."""
    group_names = {g["name"]: ADVERSARIAL_GROUPS[i] for i, g in enumerate(groups)}
    service_names = {s["name"]: ADVERSARIAL_SERVICES[i] for i, s in enumerate(services)}
    rule_names = {r["name"]: ADVERSARIAL_RULES[i] for i, r in enumerate(rules)}

    def refs(value, names):
        return value if value == "any" else sorted(names[v] for v in value)

    return (
        [{**g, "name": group_names[g["name"]]} for g in groups],
        [{**s, "name": service_names[s["name"]]} for s in services],
        [
            {
                **r,
                "name": rule_names[r["name"]],
                "sources": refs(r["sources"], group_names),
                "destinations": refs(r["destinations"], group_names),
                "services": refs(r["services"], service_names),
            }
            for r in rules
        ],
    )


def _names(rng: random.Random, objects: list[dict], any_chance: float = 0.2) -> list[str] | str:
    if rng.random() < any_chance:
        return "any"
    return sorted({rng.choice(objects)["name"] for _ in range(rng.randint(1, 2))})


def _compilable(policy_set: PolicySet) -> PolicySet:
    """Drop the rules whose groups and services share no address family (a compile error)."""
    from microseg.compile.resolve import CompileError, compile_all

    keep = []
    for rule in policy_set.rules:
        trial = replaced(
            policy_set,
            **{
                "rules": (rule,),
                "policies": (policy_set.policies[0].model_copy(update={"rules": (rule.name,)}),),
            },
        )
        try:
            compile_all(trial)
        except CompileError:
            continue
        keep.append(rule)
    return replaced(
        policy_set,
        **{
            "rules": tuple(keep),
            "policies": (
                policy_set.policies[0].model_copy(update={"rules": tuple(r.name for r in keep)}),
            ),
        },
    )


def replaced(policy_set: PolicySet, **sections) -> PolicySet:
    """A new PolicySet with some sections replaced. Not `model_copy(update=...)`: that would
    carry over the original's cached name index (`PolicySet._index`), so lookups by name
    would still return the old objects."""
    fields = {section: getattr(policy_set, section) for section in SECTIONS}
    return PolicySet(**{**fields, **sections})

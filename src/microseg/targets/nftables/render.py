"""DeviceIntent -> one atomic `nft -f` ruleset enforcing the same first-match semantics.

Layout (`table inet microseg`, ours alone):

* The file first creates then deletes the table and defines it again: `nft -f` applies a
  file as one transaction, so a load is atomic and idempotent and never touches other
  tables.
* One named interval set per address side: `v4/<group>` / `v6/<group>` holding the group's
  prefixes minus its except-prefixes, computed exactly (several groups on one side get one
  set with the union, `v4/<g1>/<g2>`).
* One named counter per match (`<policy>/<match>`), commented with the policy's name, and
  every nft rule of that match carries `counter name ...` and `comment "<match name>"`, so
  `nft -j list table` tells which match of which policy a packet hit (the kernel keeps both
  comments; nft 1.0.6's JSON omits chain comments). Chains are `policy/<policy>`. Every
  name goes through `identifier`, which is injective: no two sets, counters or chains can
  share a name, whatever the group, rule and policy names hold (`+`, `_`, `/`, `-reverse`,
  spaces, non-ASCII).
* One chain per (VRF, policy), the matches in order. A match with several services becomes
  one nft rule per service (same counter, same verdict): the first that fits decides, which
  is the match's OR of services. Verdicts: forward -> `accept`, drop -> `drop`. The same
  stateless forward / `-reverse` expansion as EOS (no conntrack).
* The base chain `forward` (hook forward, policy accept = EOS's forwarding default matches)
  dispatches each packet to exactly one policy chain with `goto` (so a policy's end falls
  through to the default accept, never into another policy). A policy whose
  `default_action` is `drop` ends its chain with one counted `drop` rule per family,
  commented `ipv4-all-default` / `ipv6-all-default` like the EOS matches it stands for (a
  regular chain has no policy of its own; the base chain's is shared by every policy).

VRFs: nftables has no VRF match. A packet's VRF is the VRF of the segment it arrives on:
the device's segment names are taken as Linux interface names (`meta iifname`), and a policy
bound to VRF V applies to packets whose ingress interface is a segment of V. A policy bound
to `ALL` applies to every other forwarded packet. As on EOS, a VRF's own policy replaces
the `ALL` policy for that VRF. A VRF with no segment on the device has no interface to key
on, so its policy never applies here (the renderer says so in a comment line).

Mirroring (a rule with a monitor object): nftables has no GRE mirror, and its `dup`
statement exists only in `ip`/`ip6`/`netdev` tables, not in `inet`. A monitored match logs
each packet it decides to an NFLOG group (`log group N`, non-terminal: the verdict follows),
one group per mirror session numbered from 1 in session-name order (`mirror_groups`); the
file's head names each group's session and tunnel. A process listening on the group sends
the packets on to the monitor node (`microseg.lab.mirror` does, GRE-encapsulated, in the
lab). Like EOS, this mirrors exactly the packets the monitored match decides, in both
directions of a bidirectional rule. `omit_mirror=True` renders monitored matches without it.

Not expressible in nftables, and refused with a CompileError rather than silently dropped:
redirect to next-hops (policy routing, not a filter verdict), VXLAN decap types other than
`allow-all`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re

from microseg.compile.intent import (
    DeviceIntent,
    Family,
    Match,
    PolicyIntent,
    PortRange,
    PrefixFieldSet,
    ServiceFieldSet,
)
from microseg.compile.resolve import CompileError
from microseg.model.objects import IPNetwork, is_one_line
from microseg.model.ports import ICMP, ICMPV6, PROTOCOL_NUMBERS, TCP, UDP

TABLE = "microseg"
INDENT = "\t"
_ADDRESS_TYPE = {"ipv4": "ipv4_addr", "ipv6": "ipv6_addr"}
_ADDRESS_MATCH = {"ipv4": "ip", "ipv6": "ip6"}
# nft's `meta l4proto` names for the protocols a policy names; others print as numbers.
_PROTOCOL_NAMES = {number: name for name, number in PROTOCOL_NUMBERS.items()}
# Characters an nft identifier keeps as they are (nft's scanner also takes `.` and `/`
# inside identifiers, and `.` first: we keep those two for escapes and separators).
_PLAIN = re.compile(r"[A-Za-z0-9_-]")
_FIRST_PLAIN = re.compile(r"[A-Za-z_]")
# nft's limits (libnftnl/kernel): set, chain and object names under 256 bytes
# (NFT_SET_MAXNAMELEN, NFT_CHAIN_MAXNAMELEN, NFT_OBJ_MAXNAMELEN), comments at most 128 bytes
# (NFTNL_UDATA_COMMENT_MAXLEN).
MAX_IDENTIFIER = 255
MAX_COMMENT_BYTES = 128
# What `default_log` writes before each logged packet (kernel log, `nft ... log prefix`).
_LOG_PREFIX = "microseg default drop: "
# A Linux interface name (what `meta iifname` compares): at most 15 bytes (IFNAMSIZ 16), no
# whitespace, '/' or ':' (the kernel's dev_valid_name; ':' is taken by alias labels).
MAX_INTERFACE_NAME = 15
_NOT_INTERFACE_NAME = re.compile(r"[\s/:]")


def render_ruleset(intent: DeviceIntent, omit_mirror: bool = False) -> str:
    """The device's ruleset as `nft -f` input."""
    builder = _Ruleset(intent, omit_mirror)
    return builder.render()


def mirror_groups(intent: DeviceIntent) -> dict[str, int]:
    """The NFLOG group of each mirror session of `intent`: 1, 2, ... in name order."""
    return {name: number for number, name in enumerate(sorted(intent.mirror_sessions), 1)}


class _Ruleset:
    def __init__(self, intent: DeviceIntent, omit_mirror: bool):
        self.intent = intent
        self.omit_mirror = omit_mirror
        self.groups = {} if omit_mirror else mirror_groups(intent)
        self.sets: dict[tuple[Family, tuple[str, ...]], str] = {}
        self.set_lines: list[str] = []
        self.counters: list[tuple[str, str]] = []  # (counter, policy name)

    def render(self) -> str:
        policies = sorted(self.intent.policies, key=lambda p: (p.vrf == "ALL", p.vrf.encode()))
        chains = [self._policy_chain(policy) for policy in policies]
        lines = [f"# microseg ruleset for {self.intent.device}: load with `nft -f`"]
        for name, group in self.groups.items():
            session = self.intent.mirror_sessions[name]
            lines.append(
                f"# mirror session {name}: nflog group {group}, GRE from "
                f"{session.tunnel_source or session.tunnel_source_interface} to "
                f"{session.tunnel_destination}"
            )
        lines += [
            f"table inet {TABLE}",
            f"delete table inet {TABLE}",
            f"table inet {TABLE} {{",
        ]
        lines += self.set_lines
        lines += [
            f"{INDENT}counter {name} {{ comment {_quote(_comment(policy))}; }}"
            for name, policy in self.counters
        ]
        lines += self._forward_chain(policies)
        for chain in chains:
            lines += chain
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _forward_chain(self, policies: list[PolicyIntent]) -> list[str]:
        lines = [
            f"{INDENT}chain forward {{",
            f"{INDENT * 2}type filter hook forward priority filter; policy accept;",
        ]
        for policy in policies:
            chain = identifier("policy", policy.name)
            if policy.vrf == "ALL":
                lines.append(f"{INDENT * 2}goto {chain}")
                continue
            interfaces = self.intent.vrf_interfaces.get(policy.vrf, ())
            if not interfaces:
                lines.append(
                    f"{INDENT * 2}# policy {policy.name}: VRF {policy.vrf} has no segment "
                    "on this device, so no interface to key on"
                )
                continue
            for interface in interfaces:
                _check_interface_name(interface, policy.vrf)
            names = ", ".join(_quote(i) for i in interfaces)
            lines.append(f"{INDENT * 2}meta iifname {{ {names} }} goto {chain}")
        lines.append(f"{INDENT}}}")
        return lines

    def _policy_chain(self, policy: PolicyIntent) -> list[str]:
        chain = identifier("policy", policy.name)
        lines = [
            f"{INDENT}chain {chain} {{",
            f"{INDENT * 2}# policy {policy.name} (id {policy.policy_id}), VRF {policy.vrf}",
        ]
        for match in policy.matches:
            counter = identifier(policy.name, match.name)
            self.counters.append((counter, policy.name))
            for rule in self._rules(match, counter):
                lines.append(INDENT * 2 + rule)
        if policy.default_action == "drop":
            for family in ("ipv4", "ipv6"):
                default_match = f"{family}-all-default"
                counter = identifier(policy.name, default_match)
                self.counters.append((counter, policy.name))
                log = f'log prefix "{_LOG_PREFIX}" ' if policy.default_log else ""
                lines.append(
                    f"{INDENT * 2}meta nfproto {family} counter name {counter} {log}drop "
                    f"comment {_quote(default_match)}"
                )
        lines.append(f"{INDENT}}}")
        return lines

    def _rules(self, match: Match, counter: str) -> list[str]:
        if match.action == "redirect":
            raise CompileError(
                f"rule {match.rule!r}: nftables cannot redirect to next-hops (that is policy "
                "routing, not a filter verdict); compile this device for EOS"
            )
        if match.decap_type != "allow-all":
            raise CompileError(
                f"rule {match.rule!r}: decap type {match.decap_type!r} has no nftables form "
                "(nftables does not see VXLAN decapsulation state)"
            )
        family = match.family
        head = [f"meta nfproto {family}"]
        address = _ADDRESS_MATCH[family]
        if match.source_field_sets:
            head.append(f"{address} saddr @{self._set(family, match.source_field_sets)}")
        if match.destination_field_sets:
            head.append(f"{address} daddr @{self._set(family, match.destination_field_sets)}")
        verdict = "drop" if match.action == "drop" else "accept"
        mirror = ""
        if match.mirror_session and not self.omit_mirror:
            mirror = f"log group {self.groups[match.mirror_session]} "
        tail = f"counter name {counter} {mirror}{verdict} comment {_quote(_comment(match.name))}"
        services = [self.intent.service_field_sets[s] for s in match.service_field_sets]
        if not services:
            return [" ".join([*head, tail])]
        return [" ".join([*head, *_service_terms(service), tail]) for service in services]

    def _set(self, family: Family, groups: tuple[str, ...]) -> str:
        key = (family, groups)
        if key in self.sets:
            return self.sets[key]
        name = identifier(family.replace("ipv", "v"), *groups)
        self.sets[key] = name
        field_sets = [self.intent.prefix_field_sets[(family, g)] for g in groups]
        elements = ", ".join(str(n) for n in _exact_networks(field_sets))
        self.set_lines += [
            f"{INDENT}set {name} {{",
            f"{INDENT * 2}# {family} {' + '.join(groups)}",
            f"{INDENT * 2}type {_ADDRESS_TYPE[family]}; flags interval;",
        ]
        if elements:
            self.set_lines.append(f"{INDENT * 2}elements = {{ {elements} }}")
        self.set_lines.append(f"{INDENT}}}")
        return name


def identifier(*parts: str) -> str:
    """The nft identifier of a set, counter or chain named by `parts`, injectively.

    Letters, digits, `_` and `-` are kept; every other character becomes `.<hex code>.`
    (so `a+b` is `a.2b.b`), parts are joined by `/`, which no escaped part contains, and a
    first character nft would not take first (a digit, `-`) is escaped too. Two different
    part lists therefore never share an identifier: a group named `a+b` and the union of
    groups `a` and `b` get `v4/a.2b.b` and `v4/a/b`. The `/` also keeps every identifier
    clear of nft keywords (`drop`, `counter`). An identifier longer than nft takes (255
    bytes) keeps its first 160 bytes, cut before an escape, and ends in `..` plus the
    SHA-256 of the whole (`..` never occurs otherwise): content-addressed."""
    encoded = "/".join(_escape(part) for part in parts)
    if not _FIRST_PLAIN.match(encoded[:1]):
        encoded = f".{ord(encoded[0]):x}.{encoded[1:]}"
    if len(encoded) <= MAX_IDENTIFIER:
        return encoded
    head = encoded[:160]
    if head.count(".") % 2:  # inside an escape: cut before it
        head = head[: head.rindex(".")]
    return f"{head}..{hashlib.sha256(encoded.encode()).hexdigest()}"


def _escape(part: str) -> str:
    return "".join(ch if _PLAIN.match(ch) else f".{ord(ch):x}." for ch in part)


def _service_terms(service: ServiceFieldSet) -> list[str]:
    protocol = service.protocol
    if protocol is None:
        return []
    name = _PROTOCOL_NAMES.get(protocol, str(protocol))
    terms = [f"meta l4proto {name}"]
    if protocol in (TCP, UDP):
        if service.source_ports:
            terms.append(f"th sport {_port_set(service.source_ports)}")
        if service.destination_ports:
            terms.append(f"th dport {_port_set(service.destination_ports)}")
    elif protocol in (ICMP, ICMPV6) and service.icmp_types:
        types = ", ".join(str(t) for t in service.icmp_types)
        terms.append(f"{name} type {{ {types} }}")
    return terms


def _port_set(ranges: tuple[PortRange, ...]) -> str:
    items = [str(low) if low == high else f"{low}-{high}" for low, high in ranges]
    return f"{{ {', '.join(items)} }}"


def _exact_networks(field_sets: list[PrefixFieldSet]) -> list:
    """The union of each set's prefixes minus its except-prefixes, as disjoint networks."""
    networks = []
    for field_set in field_sets:
        remaining = list(field_set.prefixes)
        for excluded in field_set.except_prefixes:
            next_remaining: list[IPNetwork] = []
            for network in remaining:
                if excluded.subnet_of(network):  # type: ignore[arg-type]
                    next_remaining.extend(network.address_exclude(excluded))  # type: ignore[arg-type]
                elif not network.subnet_of(excluded):  # type: ignore[arg-type]
                    next_remaining.append(network)
            remaining = next_remaining
        networks.extend(remaining)
    # One IP version per call (the field-sets of one family); typeshed wants one class.
    return list(ipaddress.collapse_addresses(networks))  # type: ignore[type-var]


def _check_interface_name(name: str, vrf: str) -> None:
    if len(name.encode()) > MAX_INTERFACE_NAME or _NOT_INTERFACE_NAME.search(name):
        raise CompileError(
            f"segment {name!r} (VRF {vrf}): nftables keys the VRF on the ingress interface, "
            f"but this is not a Linux interface name (at most {MAX_INTERFACE_NAME} bytes, no "
            "whitespace, '/' or ':'); name the segment after its interface"
        )


def _comment(text: str) -> str:
    """`text` cut to nft's comment limit (UTF-8 bytes, never inside a character)."""
    encoded = text.encode()
    if len(encoded) <= MAX_COMMENT_BYTES:
        return text
    return encoded[:MAX_COMMENT_BYTES].decode(errors="ignore")


def _quote(text: str) -> str:
    # nft(8): a comment is "a single word or a double-quoted (\") multi-word string"; the
    # quoted string ends at the next quote. Any other character
    # (UTF-8, `#`, `;`) is the string's own; a line break would end the rule.
    if '"' in text or not is_one_line(text):
        raise CompileError(
            f"{text!r}: nftables names and comments cannot contain quotes or line breaks"
        )
    return f'"{text}"'

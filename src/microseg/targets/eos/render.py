"""DeviceIntent -> Arista EOS configuration text, laid out as `show running-config` prints it.

Layout only: every decision about what to match was made in `resolve`. The golden files in
`../shared/reference/` (the seed switch's own running-config) fix the format:

* three-space indentation per level;
* inside `traffic-policies`, a `   !` line before every sub-mode block (vrf, field-set,
  traffic-policy) except the first, none before a plain command (`transforms ...`);
* field-sets sorted by name in byte order, IPv4 then IPv6 then service;
* `!! <description>` comment lines, `description #policy-id=<id>`;
* every match ends with `!` + `actions` (always `count`).

After the last user match EOS prints its implicit default matches, which forward:
`match ipv4-all-default ipv4` / `!` / `match ipv6-all-default ipv6` (the layout pyavd's
eos_cli_config_gen reproduces from EOS, templates/eos/traffic-policies.j2). A policy whose
`default_action` is `drop` gives both default matches `actions` / `count` / `drop` (and
`log` with `default_log`): AVD's schema carries a policy's default verdict as
`traffic_policies.policies[].default_actions.ipv4|ipv6` (`count`, `drop`, `log`, the last
"only supported when action is set to drop"), rendered under the default match with no
`!` before `actions`, as EOS prints it (openconfig/featureprofiles' EOS CLI: `match
ipv4-all-default ipv4` / `actions` / `count` / `redirect next-hop group ...`).
"""

from __future__ import annotations

import re
from ipaddress import IPv4Network
from operator import attrgetter

from microseg.compile.intent import (
    DeviceIntent,
    Match,
    MirrorSession,
    PolicyIntent,
    PortRange,
    PrefixFieldSet,
    ServiceFieldSet,
)
from microseg.compile.resolve import CompileError
from microseg.gc_pause import paused_garbage_collector
from microseg.model.objects import IPNetwork, is_one_line
from microseg.model.ports import ICMP, ICMPV6, PORT_NAMES, PROTOCOL_NUMBERS, TCP, UDP

INDENT = "   "
# Required by MSS on the switch (MSS deployment guide p. 13, quoted by the seed); EOS prints
# it after the field-sets, before the traffic policies (seed reference).
TRANSFORMS = "transforms interface prefix common source-destination"
# EOS keywords for IP protocols in `protocol ...` lines; other protocols print as numbers.
# EOS's protocol keywords are the names a policy takes; other protocols print as numbers.
_PROTOCOL_KEYWORDS = {number: name for name, number in PROTOCOL_NUMBERS.items()}
# Rule decap types as EOS `packet type` sub-mode lines (traffic-policy match, EOS 4.26+:
# `vxlan decap` matches decapsulated VXLAN traffic, `vxlan decap exclude` everything else;
# pyavd schema traffic_policies.policies[].matches[].packet_type.vxlan). `allow-all` needs
# no line: the match applies whether or not the packet was decapsulated.
_DECAP_LINES = {"vxlan-decap-only": "vxlan decap", "no-vxlan-decap": "vxlan decap exclude"}
# Names EOS takes as one CLI token: printable ASCII without whitespace or `?` (which the
# CLI reads as a help request). 100 characters is our conservative cap: we found no
# documented EOS limit for traffic-policy, field-set or match names.
_EOS_NAME = re.compile(r"^[!-~]+$")
MAX_NAME_LENGTH = 100
# Names joined by line breaks (which the model keeps out of names): printable, no space, no ?.
_EOS_NAMES = re.compile(r"[!->@-~\n]*")


def check_eos_name(kind: str, name: str) -> None:
    """CompileError if EOS cannot take `name` for a `kind` (`field-set`, `match`, ...)."""
    if not _EOS_NAME.match(name) or "?" in name:
        raise CompileError(
            f"{kind} {name!r}: EOS names are one word of printable ASCII without spaces or '?'"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise CompileError(
            f"{kind} {name!r}: {len(name)} characters; EOS takes at most {MAX_NAME_LENGTH}"
        )


def render_device(intent: DeviceIntent) -> str:
    """The switch's configuration: traffic-policies, then its monitor sessions."""
    if intent.platform != "eos":
        raise CompileError(
            f"device {intent.device!r} is platform {intent.platform!r}, not eos; "
            "use --target nftables"
        )
    with paused_garbage_collector():
        lines = render_traffic_policies(intent)
    lines.append("!")
    sessions = render_monitor_sessions(intent)
    if sessions:
        lines.extend(sessions)
        lines.append("!")
    return "\n".join(lines) + "\n"


def render_traffic_policies(intent: DeviceIntent) -> list[str]:
    """The `traffic-policies` block, one line per list item."""
    _check_names(intent)
    lines = ["traffic-policies"]
    separator = INDENT + "!"
    for index, vrf in enumerate(sorted({p.vrf for p in intent.policies}, key=str.encode)):
        if index:
            lines.append(separator)
        lines.append(f"{INDENT}vrf {vrf}")
        lines += [
            f"{INDENT * 2}traffic-policy input {p.name} physical"
            for p in intent.policies
            if p.vrf == vrf
        ]
    # Names are printable ASCII (checked above), so sorting by str is sorting by bytes.
    prefix_sets = sorted(intent.prefix_field_sets.values(), key=_NAME)
    for family in ("ipv4", "ipv6"):
        for field_set in prefix_sets:
            if field_set.family == family:
                if len(lines) > 1:
                    lines.append(separator)
                _add_prefix_field_set(lines, field_set)
    for name in sorted(intent.service_field_sets, key=str.encode):
        if len(lines) > 1:
            lines.append(separator)
        service_set = intent.service_field_sets[name]
        lines += [f"{INDENT}field-set service {name}", INDENT * 2 + _protocol_line(service_set)]
    lines.append(INDENT + TRANSFORMS)  # a plain command: no `!` before it
    for policy in sorted(intent.policies, key=lambda p: p.name.encode()):
        lines.append(separator)
        lines.extend(_traffic_policy(policy))
    return lines


_NAME = attrgetter("name")


def _add_prefix_field_set(lines: list[str], field_set: PrefixFieldSet) -> None:
    lines.append(f"{INDENT}field-set {field_set.family} prefix {field_set.name}")
    lines.append(INDENT * 2 + prefixes_text(field_set.prefixes))
    if field_set.except_prefixes:
        # EOS: `except` inside a prefix field-set removes those prefixes from the set
        # (pyavd traffic_policies.field_sets.ipv4[].except).
        lines.append(f"{INDENT * 2}except {prefixes_text(field_set.except_prefixes)}")


_OCTETS = [str(octet) for octet in range(256)]
_IPV4_PREFIX_LENGTHS = [str(length) for length in range(33)]


def prefixes_text(prefixes: tuple[IPNetwork, ...]) -> str:
    """`10.1.2.0/24 10.1.3.0/24`: " ".join(map(str, prefixes)), several times faster for
    IPv4 (the hot path: every prefix of every field-set)."""
    octets, lengths = _OCTETS, _IPV4_PREFIX_LENGTHS
    texts = []
    for prefix in prefixes:
        if type(prefix) is IPv4Network:
            value = int(prefix.network_address)
            texts.append(
                f"{octets[value >> 24]}.{octets[(value >> 16) & 255]}."
                f"{octets[(value >> 8) & 255]}.{octets[value & 255]}/{lengths[prefix.prefixlen]}"
            )
        else:
            texts.append(str(prefix))
    return " ".join(texts)


def prefix_text(prefix: IPNetwork) -> str:
    """`10.1.2.0/24`, as str(prefix)."""
    return prefixes_text((prefix,))


def _protocol_line(field_set: ServiceFieldSet) -> str:
    protocol = field_set.protocol
    if protocol is None:
        raise CompileError(f"service {field_set.name!r}: protocol any has no field-set form")
    keyword = _PROTOCOL_KEYWORDS.get(protocol, str(protocol))
    if protocol in (TCP, UDP):
        source = _ports(field_set.source_ports, keyword)
        destination = _ports(field_set.destination_ports, keyword)
        return f"protocol {keyword} source port {source} destination port {destination}"
    if protocol in (ICMP, ICMPV6) and field_set.icmp_types:
        # EOS: `protocol icmpv6 type echo-reply neighbor-advertisement code all`, types
        # separated by spaces (pyavd traffic-policies.j2; openconfig/featureprofiles' EOS
        # CLI for traffic policies). Aerleon's arista_tp joins them with commas instead.
        types = " ".join(str(t) for t in field_set.icmp_types)
        return f"protocol {keyword} type {types} code all"
    return f"protocol {keyword}"


def _ports(ranges: tuple[PortRange, ...], protocol: str) -> str:
    """`all`, or ports separated by spaces, well-known ports by their EOS keyword.

    EOS prints a port it has a keyword for by the keyword (the seed entered 53 and the
    running-config shows `domain`); ranges print as `low-high` (Aerleon arista_tp `_Group`).
    """
    if not ranges:
        return "all"
    keywords = _PORT_KEYWORDS.get(protocol, {})
    if len(ranges) == 1:
        low, high = ranges[0]
        return keywords.get(low, str(low)) if low == high else f"{low}-{high}"
    return " ".join(
        keywords.get(low, str(low)) if low == high else f"{low}-{high}" for low, high in ranges
    )


def _keywords_by_port(names: dict[str, int]) -> dict[int, str]:
    by_port: dict[int, str] = {}
    for name, port in names.items():
        by_port.setdefault(port, name)  # the table lists the keyword EOS prints first
    return by_port


_PORT_KEYWORDS = {protocol: _keywords_by_port(names) for protocol, names in PORT_NAMES.items()}


_POLICY = INDENT
_MATCH = INDENT * 2
_CRITERION = INDENT * 3
_ACTION = INDENT * 4
_ACTIONS_HEADER = [f"{_CRITERION}actions", f"{_ACTION}count"]
_SUB_MODE_SEPARATOR = f"{_CRITERION}!"


def _traffic_policy(policy: PolicyIntent) -> list[str]:
    """The `traffic-policy` block, indented as inside `traffic-policies` (the hot path)."""
    lines = [f"{_POLICY}traffic-policy {policy.name}"]
    if policy.description:
        lines.append(f"{_MATCH}!! {policy.description}")
    lines.append(f"{_MATCH}description #policy-id={policy.policy_id}")
    separator = _MATCH + "!"
    for match in policy.matches:
        lines.append(separator)
        _add_match(lines, match)
    # EOS's implicit default matches: without actions they forward.
    default_actions = _DEFAULT_ACTIONS[policy.default_action]
    if policy.default_log:
        default_actions = [*default_actions, f"{_ACTION}log"]  # pyavd: after `drop`
    lines += [
        separator,
        f"{_MATCH}match ipv4-all-default ipv4",
        *default_actions,
        separator,
        f"{_MATCH}match ipv6-all-default ipv6",
        *default_actions,
    ]
    return lines


_DEFAULT_ACTIONS = {
    "forward": [],
    "drop": [f"{_CRITERION}actions", f"{_ACTION}count", f"{_ACTION}drop"],
}


def _add_match(lines: list[str], match: Match) -> None:
    lines.append(f"{_MATCH}match {match.name} {match.family}")
    first = len(lines)
    if match.comment:
        lines.append(f"{_CRITERION}!! {match.comment}")
    # The field-sets of one line are a set (any of them matches); EOS keeps them sorted,
    # as pyavd renders `source prefix field-set A B` from a sorted list.
    if match.source_field_sets:
        lines.append(f"{_CRITERION}source prefix field-set {_sorted(match.source_field_sets)}")
    if match.destination_field_sets:
        names = _sorted(match.destination_field_sets)
        lines.append(f"{_CRITERION}destination prefix field-set {names}")
    if match.service_field_sets:
        names = _sorted(match.service_field_sets)
        lines.append(f"{_CRITERION}protocol service field-set {names}")
    # EOS prints `!` before a sub-mode block (`packet type`, `actions`) only after other
    # lines of the match: a match with no criteria starts with `actions`, as a default
    # match with actions does (see the module docstring).
    decap = _DECAP_LINES.get(match.decap_type)
    if decap:
        if len(lines) > first:
            lines.append(_SUB_MODE_SEPARATOR)
        lines += [f"{_CRITERION}packet type", f"{_ACTION}{decap}"]
    if len(lines) > first:
        lines.append(_SUB_MODE_SEPARATOR)
    lines += _ACTIONS_HEADER
    if match.action == "drop":
        lines.append(f"{_ACTION}drop")
    elif match.action == "redirect":
        # EOS: `redirect next-hop A [B ...]` (pyavd actions.redirect.next_hop.ipv4_addresses).
        next_hops = " ".join(str(a) for a in match.redirect_next_hops)
        lines.append(f"{_ACTION}redirect next-hop {next_hops}")
    if match.mirror_session:
        # EOS reports this action as `Mirror session NAME` (the seed's `show traffic-policy`).
        lines.append(f"{_ACTION}mirror session {match.mirror_session}")


def _sorted(names: tuple[str, ...]) -> str:
    if len(names) == 1:
        return names[0]
    return " ".join(sorted(names, key=str.encode))


def render_monitor_sessions(intent: DeviceIntent) -> list[str]:
    """GRE mirror destinations for monitored matches (EOS `monitor session NAME destination
    tunnel mode gre source A destination B`, the "mirroring to GRE tunnel" feature)."""
    lines = []
    for session in intent.mirror_sessions.values():
        lines.extend(_monitor_session(intent.device, session))
    return lines


def _monitor_session(device: str, session: MirrorSession) -> list[str]:
    if session.tunnel_source is None:
        raise CompileError(
            f"device {device!r}: monitor object {session.monitor_object!r} mirrors from "
            f"{session.tunnel_source_interface}, but the device has no loopback_address"
        )
    prefix = f"monitor session {session.name}"
    return [
        f"{prefix} destination tunnel mode gre source {session.tunnel_source} "
        f"destination {session.tunnel_destination}",
        # EOS `monitor session NAME rate-limit per-ingress-chip RATE bps|kbps|mbps` (pyavd
        # monitor_sessions[].rate_limit_per_ingress_chip: "Ratelimit and unit as string").
        f"{prefix} rate-limit per-ingress-chip {session.rate_limit.value} "
        f"{session.rate_limit.unit}",
    ]


def _check_names(intent: DeviceIntent) -> None:
    for policy in intent.policies:
        _check_one_line(f"policy {policy.name!r} description", policy.description)
        for match in policy.matches:
            _check_one_line(f"rule {match.rule!r} description", match.comment)
    # One regex over all names at once; only when it fails, find the culprit (hot path).
    names: list[str] = []
    for policy in intent.policies:
        names += (policy.name, policy.vrf)
        names += [match.name for match in policy.matches]
    names += [name for _, name in intent.prefix_field_sets]
    names += intent.service_field_sets
    names += intent.mirror_sessions
    if (
        _EOS_NAMES.fullmatch("\n".join(names))
        and max(map(len, names), default=0) <= MAX_NAME_LENGTH
    ):
        return
    for kind, name in _named(intent):
        check_eos_name(kind, name)


def _named(intent: DeviceIntent) -> list[tuple[str, str]]:
    """Every name the configuration uses, with what it names, in configuration order."""
    named: list[tuple[str, str]] = []
    for policy in intent.policies:
        named += [("policy", policy.name), ("VRF", policy.vrf)]
        named += [("match", match.name) for match in policy.matches]
    named += [("group", name) for _, name in intent.prefix_field_sets]
    named += [("service", name) for name in intent.service_field_sets]
    named += [("monitor session", name) for name in intent.mirror_sessions]
    return named


def _check_one_line(what: str, text: str) -> None:
    # A `!!` comment ends at the end of its line (EOS mode comments, as NAPALM's EOS driver
    # `_mode_comment_convert` reads them: one `!!` line each). Anything splitlines() breaks
    # a line at (U+2028, NEL, VT, ...) would make the rest of the text configuration lines:
    # refused here too, for a policy set built without validation.
    if not is_one_line(text):
        raise CompileError(
            f"{what}: EOS comments are one line; remove the line break, line separator or "
            "control character"
        )

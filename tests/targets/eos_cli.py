"""The configuration model of the eAPI test double: EOS configuration modes, the commands
each accepts, and the running-config tree they build (see `eapi_double.py`).

It is written independently of microseg's EOS driver and renderer, so a mistake in
either shows up as a disagreement with this model. Where it copies EOS behaviour it says
from where:

* **Grammar.** Only the commands below exist; anything else is `Invalid input`, as on the
  device. The commands are those of the seed's switch and vZTX listings
  (`examples/seed-720xp-*.eos`, `shared/seed/arista-mss-lab-blog.md`), of pyavd's
  `eos_cli_config_gen` templates for traffic-policies, monitor sessions and flow
  tracking, and of microseg's monitor-session and monitor-node output.
* **Modes.** A command opening a mode (`traffic-policies`, `match X ipv4`, `interface
  Tunnel0`) leaves the CLI in it; `exit` goes up one mode. A command not valid in the
  current mode is tried in the enclosing modes, innermost first: EOS does this, which
  is why NAPALM's EOS driver can send a configuration with its indentation stripped.
* **Replacing.** Re-entering a command replaces the line with the same key (`description
  ...`, `ip address ...`); re-entering a mode command enters the existing block; `no`
  plus a command removes it.
* **Comments.** `comment` with input text sets a mode's `!!` comment, printed first in the
  mode (the seed's `!! Allow DNS and NTP ...` under `traffic-policy`); eAPI does not take
  `!!` lines as commands (NAPALM `_mode_comment_convert`).
* **Implicit matches.** A new traffic-policy has EOS's default matches `match
  ipv4-all-default ipv4` and `match ipv6-all-default ipv6`, printed after the user's
  matches (pyavd traffic-policies template; Aerleon's arista_tp doc: "EOS will still, by
  default, create an 'ipvX-default-all' term").
* **Layout.** Three spaces per level; a `!` line before every sub-mode block but a
  mode's first child, as the seed's traffic-policies listing shows (`vrf ALL` first
  under `traffic-policies` without one, `!` before each field-set, policy and match, and
  before `actions` after a match's criteria) and as openconfig/featureprofiles' EOS
  configuration shows for a default match (`match ipv4-all-default ipv4` directly
  followed by `actions`); in flow tracking only between consecutive blocks, as pyavd
  prints it. Children print in the order
  they were entered: real EOS prints its own canonical order, which the seed's listings
  show and microseg's renderer reproduces.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

INDENT = "   "
_NAME = r"[!-~]+"
_NAMES = rf"{_NAME}(?: {_NAME})*"
_IPV4 = r"\d{1,3}(?:\.\d{1,3}){3}"
_IP = rf"(?:{_IPV4}|[0-9A-Fa-f]*:[0-9A-Fa-f:.]+)"
_PREFIX = rf"{_IP}/\d{{1,3}}"
_PREFIXES = rf"{_PREFIX}(?: {_PREFIX})*"
_PORT = r"(?:\d{1,5}(?:-\d{1,5})?|[a-z][a-z0-9-]*)"
_PORTS = rf"(?:all|{_PORT}(?: {_PORT})*)"
_INTERFACE = r"(?:Ethernet|Loopback|Management|Tunnel|Vlan|Port-Channel)\d+(?:/\d+)*"
_DEFAULT_MATCHES = ("ipv4-all-default ipv4", "ipv6-all-default ipv6")


@dataclass(frozen=True)
class Rule:
    """One command of a mode. `mode`: the sub-mode it opens. The key that decides which
    line it replaces: the `key` group, else the rule itself (`single`), else the line."""

    name: str
    pattern: re.Pattern[str]
    mode: str | None = None
    single: bool = False

    @property
    def literal_words(self) -> list[str]:
        words = []
        for word in self.pattern.pattern.split(" "):
            if re.search(r"[\\()\[\]?*+|{}^$.]", word):
                break
            words.append(word)
        return words


def _rule(name: str, pattern: str, mode: str | None = None, single: bool = False) -> Rule:
    return Rule(name, re.compile(pattern), mode, single)


@dataclass(frozen=True)
class Mode:
    rules: tuple[Rule, ...]
    # When a `!` precedes a sub-mode block: "none", "not-first" (unless it is the
    # mode's first child), "after-block" (only after another block).
    separator: str = "none"


MODES: dict[str, Mode] = {
    "config": Mode(
        (
            _rule("hostname", rf"hostname {_NAME}", single=True),
            _rule("interface", rf"interface (?P<key>{_INTERFACE})", "interface"),
            _rule("ip-routing", r"ip routing", single=True),
            _rule("ip-route", rf"ip route (?P<key>{_PREFIX}) {_IP}"),
            _rule("traffic-policies", r"traffic-policies", "traffic-policies", single=True),
            _rule(
                "monitor-destination",
                rf"monitor session (?P<key>{_NAME}) destination tunnel mode gre source {_IP} destination {_IP}",
            ),
            _rule(
                "monitor-rate-limit",
                rf"monitor session (?P<key>{_NAME}) rate-limit per-ingress-chip \d+ kbps",
            ),
            _rule(
                "flow-tracking", r"flow tracking firewall distributed", "flow-tracking", single=True
            ),
            _rule(
                "firewall-instance",
                r"firewall distributed instance",
                "firewall-instance",
                single=True,
            ),
            _rule("management-api", r"management api http-commands", "management-api", single=True),
        )
    ),
    "interface": Mode(
        (
            _rule("description", r"description .+", single=True),
            _rule("switchport", r"no switchport", single=True),
            _rule("ip-address", rf"ip address {_PREFIX}", single=True),
            _rule("local-proxy-arp", r"ip local-proxy-arp", single=True),
            _rule("tunnel-mode", r"tunnel mode gre", single=True),
            _rule("tunnel-source", rf"tunnel source interface {_INTERFACE}", single=True),
            _rule("tunnel-destination", rf"tunnel destination {_IP}", single=True),
            # microseg's monitor-node output; by analogy with pyavd's `flow tracker
            # hardware|sampled NAME` interface lines, not seen on a device (see README).
            _rule(
                "flow-tracker",
                rf"flow tracker firewall distributed {_NAME}",
                single=True,
            ),
            _rule("shutdown", r"(?:no )?shutdown", single=True),
        )
    ),
    "traffic-policies": Mode(
        (
            _rule("vrf", rf"vrf (?P<key>{_NAME})", "policies-vrf"),
            _rule(
                "field-set-prefix",
                rf"field-set (?P<key>(?:ipv4|ipv6) prefix {_NAME})",
                "field-set-prefix",
            ),
            _rule("field-set-service", rf"field-set (?P<key>service {_NAME})", "field-set-service"),
            _rule(
                "transforms", r"transforms interface prefix common source-destination", single=True
            ),
            _rule("traffic-policy", rf"traffic-policy (?P<key>{_NAME})", "traffic-policy"),
        ),
        separator="not-first",
    ),
    "policies-vrf": Mode((_rule("input", rf"traffic-policy input {_NAME} physical", single=True),)),
    "field-set-prefix": Mode(
        (
            _rule("prefixes", _PREFIXES, single=True),
            _rule("except", rf"except {_PREFIXES}", single=True),
        )
    ),
    "field-set-service": Mode(
        (
            _rule("ports", rf"protocol (?:tcp|udp) source port {_PORTS} destination port {_PORTS}"),
            _rule("icmp", r"protocol (?:icmp|icmpv6)(?: type \d+(?: \d+)* code all)?"),
            _rule("protocol", r"protocol \d{1,3}"),
        )
    ),
    "traffic-policy": Mode(
        (
            _rule("description", r"description .+", single=True),
            _rule("match", rf"match (?P<key>{_NAME} (?:ipv4|ipv6))", "match"),
        ),
        separator="not-first",
    ),
    "match": Mode(
        (
            _rule("source", rf"source prefix field-set {_NAMES}", single=True),
            _rule("destination", rf"destination prefix field-set {_NAMES}", single=True),
            _rule("service", rf"protocol service field-set {_NAMES}", single=True),
            _rule("packet-type", r"packet type", "packet-type", single=True),
            _rule("actions", r"actions", "actions", single=True),
        ),
        separator="not-first",
    ),
    "packet-type": Mode((_rule("vxlan", r"vxlan decap(?: exclude)?", single=True),)),
    "actions": Mode(
        (
            _rule("count", rf"count(?: {_NAME})?", single=True),
            _rule("drop", r"drop", single=True),
            _rule("redirect", rf"redirect next-hop {_IP}(?: {_IP})*", single=True),
            _rule("mirror", rf"mirror session {_NAME}", single=True),
        )
    ),
    "flow-tracking": Mode(
        (
            _rule("tracker", rf"tracker (?P<key>{_NAME})", "tracker"),
            _rule("shutdown", r"(?:no )?shutdown", single=True),
        ),
        separator="after-block",
    ),
    "tracker": Mode(
        (
            _rule("inactive", r"record export on inactive timeout \d+", single=True),
            _rule("interval", r"record export on interval \d+", single=True),
            _rule("exporter", rf"exporter (?P<key>{_NAME})", "exporter"),
        ),
        separator="after-block",
    ),
    "exporter": Mode(
        (
            _rule("collector", rf"collector (?P<key>{_IP})(?: port \d+)?"),
            _rule("format", r"format ipfix version 10", single=True),
            _rule("local", rf"local interface {_INTERFACE}", single=True),
        )
    ),
    "firewall-instance": Mode((_rule("disabled", r"no disabled", single=True),)),
    "management-api": Mode((_rule("shutdown", r"(?:no )?shutdown", single=True),)),
}


class CliError(Exception):
    """A command EOS would refuse: its eAPI error `code` and the `summary` EOS puts in the
    error message (`CLI command 2 of 2 'show bogus' failed: invalid command`, code 1002:
    the vEOS response in arista-northwest/eapy's tests/conftest.py)."""

    def __init__(self, message: str, code: int = 1002, summary: str = "invalid command") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.summary = summary


def invalid_input(text: str, modes: list[str], commands: tuple[str, ...] = ()) -> CliError:
    """EOS's `Invalid input (at token N: 'word')`: N is the first word that no command of
    the modes (or of `commands`) continues with, 0-based (the eapy fixture shows token 1
    for `show bogus`)."""
    words = text.split()
    known = [rule.literal_words for mode in modes for rule in MODES[mode].rules]
    known += [command.split() for command in commands]
    token = 0
    for literal in known:
        same = 0
        while same < min(len(words), len(literal)) and words[same] == literal[same]:
            same += 1
        token = max(token, same)
    token = min(token, len(words) - 1) if words else 0
    word = words[token] if words else ""
    return CliError(f"Invalid input (at token {token}: '{word}')")


@dataclass
class Node:
    """One configuration line and, for a mode command, what was entered under it."""

    line: str
    mode: str | None
    key: tuple[str, ...]
    children: list[Node] = field(default_factory=list)
    comment: list[str] = field(default_factory=list)

    def copy(self) -> Node:
        return copy.deepcopy(self)

    def child(self, key: tuple[str, ...]) -> Node | None:
        return next((c for c in self.children if c.key == key), None)


def new_root() -> Node:
    return Node("", "config", ())


def _parse(mode: str, text: str) -> tuple[Rule, tuple[str, ...]] | None:
    for rule in MODES[mode].rules:
        found = rule.pattern.fullmatch(text)
        if found:
            if "key" in rule.pattern.groupindex:
                return rule, (rule.name, found.group("key"))
            return rule, (rule.name,) if rule.single else (rule.name, text)
    return None


def apply(node: Node, text: str) -> Node | bool | None:
    """Enter `text` in `node`'s mode. Returns the block entered (a mode command), True for
    a plain command or a removal, None when the mode has no such command."""
    assert node.mode is not None
    parsed = _parse(node.mode, text)
    if parsed is None and text.startswith("no "):
        removed = _parse(node.mode, text[3:])
        if removed is None:
            return None
        node.children = [c for c in node.children if c.key != removed[1]]
        return True
    if parsed is None:
        return None
    rule, key = parsed
    existing = node.child(key)
    if rule.mode is not None:
        if existing is not None:
            return existing
        block = Node(text, rule.mode, key)
        if rule.mode == "traffic-policy":
            block.children = [Node(f"match {m}", "match", ("match", m)) for m in _DEFAULT_MATCHES]
        _insert(node, block)
        return block
    if existing is not None:
        existing.line = text
    else:
        _insert(node, Node(text, None, key))
    return True


def _insert(parent: Node, child: Node) -> None:
    """Append; a traffic-policy's implicit default matches stay last."""
    defaults = [
        i for i, c in enumerate(parent.children) if c.key[1:] and c.key[1] in _DEFAULT_MATCHES
    ]
    if parent.mode == "traffic-policy" and defaults:
        parent.children.insert(defaults[0], child)
    else:
        parent.children.append(child)


def load_text(text: str) -> Node:
    """A tree from running-config text, by its indentation (`configure replace`, and the
    double's starting configuration). CliError on any line the grammar lacks."""
    root = new_root()
    stack = [root]
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if (
            not stripped
            or stripped == "end"
            or (stripped.startswith("!") and not stripped.startswith("!!"))
        ):
            continue
        level = (len(raw) - len(raw.lstrip(" "))) // len(INDENT)
        if level >= len(stack):
            raise CliError(f"line {number}: {stripped!r} is indented under no mode")
        del stack[level + 1 :]
        if stripped.startswith("!!"):
            stack[-1].comment.append(stripped[2:].strip())
            continue
        entered = apply(stack[-1], stripped)
        if entered is None:
            raise invalid_input(stripped, [stack[-1].mode or "config"])
        if isinstance(entered, Node):
            stack.append(entered)
    return root


def render(root: Node) -> list[str]:
    """The tree as `show running-config` prints its sections (no header, no `end`)."""
    lines: list[str] = []
    top = root.children
    for index, node in enumerate(top):
        _render_node(node, 0, lines)
        following = top[index + 1] if index + 1 < len(top) else None
        if following is None or not _grouped(node, following):
            lines.append("!")
    return lines


def _grouped(first: Node, second: Node) -> bool:
    plain = first.mode is None and second.mode is None
    return plain and first.line.split()[:2] == second.line.split()[:2]


def _render_node(node: Node, level: int, lines: list[str]) -> None:
    lines.append(INDENT * level + node.line)
    inner = INDENT * (level + 1)
    lines.extend(f"{inner}!! {text}" for text in node.comment)
    separator = MODES[node.mode].separator if node.mode else "none"
    previous: Node | None = None
    for index, child in enumerate(node.children):
        if child.mode is not None and (
            (separator == "not-first" and (index > 0 or node.comment))
            or (separator == "after-block" and previous is not None and previous.mode is not None)
        ):
            lines.append(f"{inner}!")
        _render_node(child, level + 1, lines)
        previous = child


def sections_matching(root: Node, pattern: str) -> list[str]:
    """`show running-config section REGEX`: the top-level sections with a line matching
    REGEX, whole (NAPALM's mocked `show running-config | section router bgp` output is the
    whole `router bgp` block)."""
    regex = re.compile(pattern)
    kept = new_root()
    for node in root.children:
        block: list[str] = []
        _render_node(node, 0, block)
        if any(regex.search(line) for line in block):
            kept.children.append(node)
    return render(kept)


def traffic_policies(root: Node) -> dict[str, list[str]]:
    """Every traffic-policy's match names, in order (for the counters)."""
    block = root.child(("traffic-policies",))
    policies: dict[str, list[str]] = {}
    for child in block.children if block else []:
        if child.mode == "traffic-policy":
            policies[child.key[1]] = [
                m.key[1].split()[0] for m in child.children if m.mode == "match"
            ]
    return policies

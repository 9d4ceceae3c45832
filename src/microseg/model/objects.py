"""Policy objects, named as in CloudVision Network Security and the seed lab.

Every object is immutable and validates its own fields; references between objects are
checked by `PolicySet`. Validation messages name the value that is wrong.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import socket
import unicodedata
import zlib
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from microseg.model.platforms import check_platform
from microseg.model.ports import ICMP_TYPE_NAMES_BY_PROTOCOL, PORT_NAMES, PROTOCOL_NUMBERS

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _short(value: Any) -> str:
    """repr(value), cut to a readable length (a bad value may be megabytes long)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_unscoped(text: str) -> None:
    # Python's ipaddress takes `fe80::1%eth0` (RFC 4007 zone); a zone names an interface of
    # one host, which no switch or nftables rule can match (nft silently drops it).
    if "%" in text:
        zone = text.split("%", 1)[1].split("/", 1)[0]
        raise ValueError(
            f"{_short(text)}: a scoped IPv6 address (zone %{_short(zone)[1:-1]}) cannot be "
            "matched by a switch; remove the zone"
        )


# An IPv4 prefix as ipaddress itself would print it: decimal octets without leading zeros, a
# prefix length without one. ASCII digits only (`\d` would take `٣`, which ipaddress refuses).
_CANONICAL_IPV4_PREFIX = re.compile(
    r"((?:(?:0|[1-9][0-9]{0,2})\.){3}(?:0|[1-9][0-9]{0,2}))/(0|[1-9][0-9]?)"
)
# (netmask, length) by length, as ipaddress's constructor takes them.
_IPV4_NETMASKS = [
    ipaddress.IPv4Network._make_netmask(length)  # type: ignore[attr-defined]
    for length in range(33)
]


def _assembled_ipv4_network(address: int, length: int) -> ipaddress.IPv4Network:
    """IPv4Network((address, length)) for a valid network up to /30, assembled from its parts
    as ipaddress's own constructor leaves them (which checks and converts them all again)."""
    network_address = object.__new__(ipaddress.IPv4Address)
    network_address._ip = address  # type: ignore[attr-defined]
    network = object.__new__(ipaddress.IPv4Network)
    network.network_address = network_address
    network.netmask, network._prefixlen = _IPV4_NETMASKS[length]  # type: ignore[attr-defined]
    return network


def _ipv4_network_maker() -> Any:
    """`_assembled_ipv4_network` if it makes what the constructor makes on this Python (the
    same attributes), else the constructor itself."""
    sample = (0x0A000100, 24)
    assembled, constructed = _assembled_ipv4_network(*sample), ipaddress.IPv4Network(sample)
    if vars(assembled) == vars(constructed) and assembled == constructed:
        return _assembled_ipv4_network
    return lambda address, length: ipaddress.IPv4Network((address, length))


_make_ipv4_network = _ipv4_network_maker()


def _canonical_ipv4_prefix(text: str) -> ipaddress.IPv4Network | None:
    """The network a canonical, valid IPv4 prefix names (as ipaddress prints it: decimal
    octets without leading zeros, a length without one), made at a third of what
    `ipaddress.ip_network` costs; None for anything else, which `_parse_prefix` then judges
    the slow way. Big policies are tens of thousands of prefixes (bench/cli_compile.py)."""
    match = _CANONICAL_IPV4_PREFIX.fullmatch(text)
    if match is None:
        return None
    address_text, length_text = match.groups()
    length = int(length_text)
    if length > 32:
        return None
    try:
        # The pattern leaves four decimal octets: inet_aton refuses only one above 255.
        address = int.from_bytes(socket.inet_aton(address_text))
    except OSError:
        return None
    if address & (0xFFFFFFFF >> length):  # host bits set
        return None
    if length >= 31:  # the constructor gives these their own `hosts`
        return ipaddress.IPv4Network((address, length))
    return _make_ipv4_network(address, length)


def _parse_prefix(value: Any) -> IPNetwork:
    if type(value) is str and (network := _canonical_ipv4_prefix(value)) is not None:
        return network
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        _check_unscoped(str(value))
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a prefix such as 10.0.0.0/24, got {_short(value)}")
    text = value.strip()
    _check_unscoped(text)
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{_short(text)} is not a valid IPv4 or IPv6 prefix") from None
    raise ValueError(f"{text} has host bits set (did you mean {loose}?)")


def _parse_address(value: Any) -> IPAddress:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        _check_unscoped(str(value))
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected an address such as 10.0.0.1, got {_short(value)}")
    text = str(value).strip()
    _check_unscoped(text)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{_short(value)} is not a valid IPv4 or IPv6 address") from None


Prefix = Annotated[
    IPNetwork,
    BeforeValidator(_parse_prefix),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "description": "IPv4 or IPv6 prefix, e.g. 10.0.0.0/24"}),
]
Address = Annotated[
    IPAddress,
    BeforeValidator(_parse_address),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "description": "IPv4 or IPv6 address"}),
]


# Unicode categories a one-line name or label may not hold: control characters (NUL, ESC,
# NEL, ...), line and paragraph separators (YAML folds them: the name would not load back the
# same; PostgreSQL text cannot hold NUL) and lone surrogates (not encodable as UTF-8).
_NOT_ONE_LINE = frozenset({"Cc", "Cs", "Zl", "Zp"})


def is_one_line(text: str) -> bool:
    """No control character, line or paragraph separator, or lone surrogate in `text`."""
    # str.isprintable() is False for every category above (and for some harmless ones).
    return text.isprintable() or not any(unicodedata.category(ch) in _NOT_ONE_LINE for ch in text)


def _check_one_line(value: str, what: str) -> None:
    if not is_one_line(value):
        raise ValueError(f"{value!r}: {what} may not contain control characters or line separators")


# Unicode's explicit bidirectional embeddings, overrides and isolates (UAX #9): they make
# text display in another order than it reads, so a reviewer of a diff would approve a
# name other than the one they see ("Trojan Source", CVE-2021-42574).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _check_displayed_as_read(value: str, what: str) -> None:
    if not _BIDI_CONTROLS.isdisjoint(value):
        raise ValueError(
            f"{value!r}: {what} may not contain bidirectional override or isolate characters "
            "(U+202A-U+202E, U+2066-U+2069): it would display in another order than it reads"
        )


# RFC 3986 §5.2.4: clients remove these path segments (`.../groups/..` is `.../`), so an
# object or workspace of that name could not be addressed in a URL.
DOT_SEGMENTS = frozenset({".", ".."})


def _check_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"a name must be a string, got {value!r}")
    if not value or value != value.strip():
        raise ValueError(f"{value!r}: a name may not be empty or start/end with whitespace")
    if value in DOT_SEGMENTS:
        raise ValueError(f"{value!r}: a name may not be '.' or '..' (URLs drop them)")
    if value.isprintable():  # no control, format (bidi) or separator character: nothing below
        return value
    if any(ch in value for ch in "\n\r\t"):
        raise ValueError(f"{value!r}: a name may not contain tabs or line breaks")
    _check_one_line(value, "a name")
    _check_displayed_as_read(value, "a name")
    return value


ObjectName = Annotated[
    str,
    BeforeValidator(_check_name),
    WithJsonSchema({"type": "string", "minLength": 1}),
]


def _check_description(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"a description must be a string, got {value!r}")
    if not is_one_line(value):
        # Line and paragraph separators too (U+2028, U+2029): Python's splitlines(), which
        # reads a configuration back into lines and commands, breaks a line at them, so the
        # rest of the `!!` comment would reach the switch as configuration commands.
        raise ValueError(
            "a description may not contain control characters, line breaks or line separators"
        )
    _check_displayed_as_read(value, "a description")
    return value


# One line of free text: EOS renders it as a `!!` comment line.
Description = Annotated[str, BeforeValidator(_check_description)]


def _check_label(value: Any) -> Any:
    if isinstance(value, str):
        _check_one_line(value, "a hardware model or interface name")
    return value


# A hardware model or an interface name: one line of text.
Label = Annotated[str, BeforeValidator(_check_label)]


def _check_interface_name(value: Any) -> Any:
    _check_label(value)
    if isinstance(value, str) and (not value or any(ch.isspace() or ch == "?" for ch in value)):
        # Rendered into commands (`tunnel source interface NAME`, `local interface NAME`): a
        # space would make the rest further words of the command, `?` asks the CLI for help.
        raise ValueError(f"{value!r}: an interface name is one word (e.g. Loopback0), no '?'")
    return value


# An interface the configuration names (Loopback0, Ethernet1/1): one word.
InterfaceName = Annotated[str, BeforeValidator(_check_interface_name)]

ANY = "any"


def _whole_number(value: Any) -> Any:
    """YAML `true` is not 1: pydantic would take a boolean for an int; we do not."""
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {str(value).lower()}")
    return value


# On every integer field: refuses booleans.
NOT_BOOL = BeforeValidator(_whole_number)


def _any_or_names(value: Any) -> Any:
    """`any` means every address / service: stored as the empty tuple.

    Only the word `any` says so. An empty list (or no value) is refused: read as "nothing"
    it would match no packet, read as "any" an allow rule would allow everything; the
    writer has to say which they mean."""
    if value == ANY:
        return ()
    if isinstance(value, str):
        # `sources: web` is not a shorthand the policy format has: a list, or `any`.
        raise ValueError(f"expected a list (or `any`), got {value!r}: write [{value}]")
    if value is None or (isinstance(value, list | tuple) and not value):
        written = "no value" if value is None else "an empty list"
        raise ValueError(f"{written} is not `any`: write `any` to match everything, or names")
    return value


def _serialize_any_or_names(value: tuple[str, ...]) -> str | list[str]:
    return ANY if not value else list(value)


NameRefs = Annotated[
    tuple[ObjectName, ...],
    BeforeValidator(_any_or_names),
    PlainSerializer(_serialize_any_or_names),
    WithJsonSchema(
        {
            "anyOf": [
                {"const": ANY},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ]
        }
    ),
]


class PolicyObject(BaseModel):
    """What every object of a policy is: frozen, strict about its keys, and named."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    if TYPE_CHECKING:
        # Each object type declares `name` itself, first among its fields (the canonical
        # dump's order); declared here for the type checker only.
        name: str


class PortRange(NamedTuple):
    low: int
    high: int


_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
PORT_SPEC_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": 65535},
        {
            "type": "string",
            "description": "EOS port name (domain, ntp, www, ssh) or a range 1024-65535",
        },
    ]
}
PortSpec = Annotated[int | str, NOT_BOOL, WithJsonSchema(PORT_SPEC_SCHEMA)]


def _resolve_port(spec: int | str, protocol: str) -> PortRange:
    """One port spec (`53`, `domain`, `1024-65535`) as a numeric range, or ValueError."""
    if isinstance(spec, bool):
        raise ValueError(f"{spec!r} is not a port")
    if isinstance(spec, int):
        if not 0 <= spec <= 65535:
            raise ValueError(f"port {_short(spec)} is out of range 0-65535")
        return PortRange(spec, spec)
    text = spec.strip()
    if text.isdecimal():  # not isdigit(): it accepts `²`, which int() refuses
        return _resolve_port(_port_number(text), protocol)
    match = _RANGE.match(text)
    if match:
        low, high = _port_number(match[1]), _port_number(match[2])
        for port in (low, high):
            if port > 65535:
                raise ValueError(
                    f"port {_short(port)} in range {_short(text)} is out of range 0-65535"
                )
        if low > high:
            raise ValueError(f"port range {text!r} is reversed (low > high)")
        return PortRange(low, high)
    names = PORT_NAMES.get(protocol, {})
    if text in names:
        return PortRange(names[text], names[text])
    raise ValueError(f"unknown {protocol} port name {_short(text)}")


def _port_number(digits: str) -> int:
    """int(digits), refusing a number too long for any port before int() would (past
    Python's 4,300-digit limit it raises a ValueError of its own)."""
    if len(digits) > 6:
        shown = digits if len(digits) <= 20 else digits[:17] + "..."
        raise ValueError(f"port {shown} is out of range 0-65535")
    return int(digits)


def _canonical_port(spec: int | str, protocol: str) -> int | str:
    """A valid port spec as stored: a number, `low-high`, or the EOS name as written.

    `"53"` is stored as 53, so equal services have equal dumps and equal store bodies."""
    port = _resolve_port(spec, protocol)
    if isinstance(spec, int):
        return spec
    text = spec.strip()
    if text.isdecimal():
        return port.low
    if _RANGE.match(text):
        return f"{port.low}-{port.high}"
    return text


def _is_port_name(spec: int | str) -> bool:
    return isinstance(spec, str) and not (spec.strip().isdecimal() or _RANGE.match(spec))


def merge_ranges(ranges: list[PortRange]) -> tuple[PortRange, ...]:
    """Sorted, overlapping and adjacent ranges merged."""
    merged: list[PortRange] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1].high + 1:
            merged[-1] = PortRange(merged[-1].low, max(merged[-1].high, high))
        else:
            merged.append(PortRange(low, high))
    return tuple(merged)


def _ports_or_all(value: Any) -> Any:
    if value == "all":
        return ()
    if value is None or (isinstance(value, list | tuple) and not value):
        # As for a rule's `any`: every port is only ever said with the word, never by
        # leaving the list out or empty (a service on "no port" would match every port).
        written = "no value" if value is None else "an empty list"
        raise ValueError(f"{written} is not `all`: write `all` for every port, or list ports")
    if isinstance(value, int | str) and not isinstance(value, bool):
        # `destination_ports: 53` is not a shorthand the policy format has: a list, or `all`.
        raise ValueError(f"expected a list (or `all`), got {value!r}: write [{value}]")
    return value


Ports = Annotated[
    tuple[PortSpec, ...],
    BeforeValidator(_ports_or_all),
    PlainSerializer(lambda ports: "all" if not ports else list(ports)),
    WithJsonSchema(
        {
            "anyOf": [
                {"const": "all"},
                {"type": "array", "items": PORT_SPEC_SCHEMA, "minItems": 1},
            ]
        }
    ),
]

PROTOCOL_WORDS = ("tcp", "udp", "icmp", "icmpv6", "any")


PROTOCOLS_TAKEN = "give tcp, udp, icmp, icmpv6, any or an IP protocol number 0-255"


def _known_protocol(value: Any) -> Any:
    """What is not a protocol is refused saying what is taken: the union's own errors name
    the words only, as if 47 were not a protocol, also for 300 or `true`."""
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a protocol: {PROTOCOLS_TAKEN}")
    number = value.isascii() and value.isdigit() if isinstance(value, str) else False
    if (isinstance(value, int) and not 0 <= value <= 255) or (
        number and (len(value) > 3 or int(value) > 255)
    ):
        text = str(value)
        raise ValueError(f"protocol number {text if len(text) <= 20 else text[:17] + '...'} "
                         "is not 0-255")  # fmt: skip
    if isinstance(value, str) and value not in PROTOCOL_WORDS and not number:
        close = difflib.get_close_matches(value.lower(), PROTOCOL_WORDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown protocol {value!r}: {hint}{PROTOCOLS_TAKEN}")
    return value


Protocol = Annotated[
    Literal["tcp", "udp", "icmp", "icmpv6", "any"] | Annotated[int, Field(ge=0, le=255), NOT_BOOL],
    BeforeValidator(_known_protocol),
]


class Service(PolicyObject):
    """A transport service, as EOS `field-set service` sees it.

    Example: Service(name="DNS", protocol="udp", destination_ports=["domain"])
    Ports are written as numbers, ranges (`1024-65535`) or EOS port names; `all` (the
    default) matches every port. ICMP services may list ICMP types (`echo`, `8`).
    """

    name: ObjectName
    description: Description = ""
    protocol: Protocol
    destination_ports: Ports = ()
    source_ports: Ports = ()
    icmp_types: tuple[Annotated[int | str, NOT_BOOL], ...] = ()

    @field_validator("protocol", mode="before")
    @classmethod
    def _lowercase_protocol(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("destination_ports", "source_ports")
    @classmethod
    def _check_ports(cls, ports: tuple, info: ValidationInfo) -> tuple:
        protocol = info.data.get("protocol")
        if ports and protocol is not None and protocol not in ("tcp", "udp"):
            raise ValueError(f"ports need protocol tcp or udp, not {protocol!r}")
        errors = []
        canonical = []
        for spec in ports:
            if protocol is None and _is_port_name(spec):
                # The protocol itself is invalid (reported there): names cannot be checked.
                canonical.append(spec)
                continue
            try:
                canonical.append(_canonical_port(spec, str(protocol)))
            except ValueError as error:
                errors.append(str(error))
        if errors:
            raise ValueError("; ".join(errors))
        return tuple(canonical)

    @field_validator("icmp_types")
    @classmethod
    def _icmp_type_numbers_as_numbers(cls, icmp_types: tuple) -> tuple:
        # `"8"` is type 8, as `"53"` is port 53.
        return tuple(
            int(t) if isinstance(t, str) and t.strip().isdecimal() and len(t) < 10 else t
            for t in icmp_types
        )

    @model_validator(mode="after")
    def _check_icmp_types(self) -> Service:
        if self.icmp_types and self.protocol not in ("icmp", "icmpv6"):
            raise ValueError(f"icmp_types need protocol icmp or icmpv6, not {self.protocol!r}")
        for icmp_type in self.icmp_types:
            self._resolve_icmp_type(icmp_type)
        return self

    def _resolve_icmp_type(self, icmp_type: int | str) -> int:
        if isinstance(icmp_type, int) and not isinstance(icmp_type, bool) and 0 <= icmp_type <= 255:
            return icmp_type
        names = ICMP_TYPE_NAMES_BY_PROTOCOL[str(self.protocol)]
        if isinstance(icmp_type, str) and icmp_type in names:
            return names[icmp_type]
        raise ValueError(f"unknown {self.protocol} type {_short(icmp_type)}")

    @property
    def protocol_number(self) -> int | None:
        """The IP protocol number; None for `any`."""
        if isinstance(self.protocol, int):
            return self.protocol
        return PROTOCOL_NUMBERS.get(self.protocol)

    @property
    def destination_ranges(self) -> tuple[PortRange, ...]:
        """Destination ports as merged numeric ranges; empty means all ports."""
        return merge_ranges([_resolve_port(p, str(self.protocol)) for p in self.destination_ports])

    @property
    def source_ranges(self) -> tuple[PortRange, ...]:
        return merge_ranges([_resolve_port(p, str(self.protocol)) for p in self.source_ports])

    @property
    def icmp_type_numbers(self) -> tuple[int, ...]:
        return tuple(sorted({self._resolve_icmp_type(t) for t in self.icmp_types}))


class Category(PolicyObject):
    """A label on groups; the policy builder aggregates endpoints by it."""

    name: ObjectName
    description: Description = ""


class Group(PolicyObject):
    """A static IP group: IPv4 and IPv6 prefixes, minus except-prefixes.

    Example: Group(name="DNS_NTP_servers", prefixes=["10.100.1.6/32", "10.100.1.7/32"])
    """

    name: ObjectName
    description: Description = ""
    prefixes: tuple[Prefix, ...] = ()
    except_prefixes: tuple[Prefix, ...] = ()
    categories: tuple[ObjectName, ...] = ()

    @model_validator(mode="after")
    def _excepts_inside_prefixes(self) -> Group:
        for excluded in self.except_prefixes:
            if not any(
                excluded.version == prefix.version and excluded.subnet_of(prefix)  # type: ignore[arg-type]
                for prefix in self.prefixes
            ):
                raise ValueError(f"except prefix {excluded} is not inside any prefix of the group")
        return self

    def prefixes_of(self, version: int) -> tuple[IPNetwork, ...]:
        return tuple(p for p in self.prefixes if p.version == version)

    def except_prefixes_of(self, version: int) -> tuple[IPNetwork, ...]:
        return tuple(p for p in self.except_prefixes if p.version == version)


class Segment(PolicyObject):
    """A VLAN / subnet routed by a device's SVI.

    `hosts_isolated`: hosts on it cannot reach each other at L2 (bridge port isolation,
    PVLAN), so intra-subnet traffic must hairpin through the switch; it only does when the
    SVI also answers ARP for them (`ip local-proxy-arp`). The seed learned this the hard way.
    """

    name: ObjectName
    description: Description = ""
    vlan: Annotated[int, Field(ge=1, le=4094), NOT_BOOL] | None = None
    vrf: ObjectName = "default"
    subnets: tuple[Prefix, ...] = ()
    local_proxy_arp: bool = False
    hosts_isolated: bool = False

    @property
    def enforces_intra_subnet(self) -> bool:
        return self.hosts_isolated and self.local_proxy_arp


# Tunnel interface numbers microseg gives switches on a monitor node: a conservative range
# (we found no documented EOS limit for `interface TunnelN`; 0-255 is accepted everywhere).
MONITOR_TUNNEL_IDS = 256

# iproute2 keeps a named network namespace as the file /run/netns/NAME: one path component.
NAMESPACE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _check_namespace(value: Any) -> Any:
    if isinstance(value, str) and not NAMESPACE_NAME.fullmatch(value):
        raise ValueError(f"{value!r}: a network namespace name is 1-64 of A-Z a-z 0-9 _ . -")
    return value


# A Linux network namespace as `ip netns` names it.
NamespaceName = Annotated[str, BeforeValidator(_check_namespace)]


# A target that implements the device's platform (model/platforms.py: built-ins and plug-ins).
Platform = Annotated[
    str,
    AfterValidator(check_platform),
    WithJsonSchema({"type": "string", "minLength": 1}),
]


# How microseg reaches a device's management API (EOS eAPI). `http` is for labs and test
# doubles only: credentials and configuration would cross the network in clear, so change
# control warns for every device that uses it.
ManagementTransport = Literal["https", "http"]
ManagementPort = Annotated[int, Field(ge=1, le=65535), NOT_BOOL]


class Device(PolicyObject):
    """A switch (or Linux router) that enforces policies.

    `monitor_tunnel`: the number of this switch's GRE tunnel interface (`TunnelN`) on the
    monitor nodes it mirrors to. Unset, it is derived from the switch's name alone, so
    adding or removing another switch never renumbers this one's tunnel.

    `management_address`/`management_port`/`management_transport`: where change control
    reaches the device's API (default https on 443). Credentials are never part of a policy.
    `management_namespace`: an nftables device inside the named network namespace on the
    microseg host (`ip netns exec NAME nft ...`); none = the local host's own nftables.
    """

    name: ObjectName
    description: Description = ""
    platform: Platform = "eos"
    hardware: Label | None = None
    management_address: Address | None = None
    management_port: ManagementPort = 443
    management_transport: ManagementTransport = "https"
    management_namespace: NamespaceName | None = None
    tunnel_source_interface: InterfaceName = "Loopback0"
    loopback_address: Address | None = None
    monitor_tunnel: Annotated[int, Field(ge=0, lt=MONITOR_TUNNEL_IDS), NOT_BOOL] | None = None
    segments: tuple[Segment, ...] = ()

    @property
    def monitor_tunnel_id(self) -> int:
        """`monitor_tunnel`, or a number derived from the name (CRC-32, stable across
        Python runs and releases, unlike hash())."""
        if self.monitor_tunnel is not None:
            return self.monitor_tunnel
        return zlib.crc32(self.name.encode()) % MONITOR_TUNNEL_IDS


class MonitorNode(PolicyObject):
    """A flow monitor (the vZTX): terminates the mirror tunnel, exports IPFIX to microseg."""

    name: ObjectName
    description: Description = ""
    platform: Literal["eos"] = "eos"
    management_address: Address | None = None
    management_port: ManagementPort = 443
    management_transport: ManagementTransport = "https"
    loopback_interface: InterfaceName = "Loopback0"
    loopback_address: Address
    collector_address: Address = Field(default_factory=lambda: ipaddress.ip_address("127.0.0.1"))
    collector_port: Annotated[int, Field(ge=1, le=65535), NOT_BOOL] = 4739


class RateLimit(NamedTuple):
    """A mirror rate limit: a whole number and its unit, as EOS `rate-limit per-ingress-chip
    <rate> bps|kbps|mbps` takes it (AVD: "Ratelimit and unit as string", e.g. `100 kbps`)."""

    value: int
    unit: Literal["bps", "kbps", "mbps"]

    def __str__(self) -> str:
        return f"{self.value} {self.unit}"


RATE_UNITS = ("bps", "kbps", "mbps")
# Twelve digits are far beyond any port speed, and keep int() away from Python's limit on
# the length of the numbers it converts.
_RATE = re.compile(r"^\s*(\d{1,12})\s*(\S+)\s*$")


def _parse_rate_limit(value: Any) -> Any:
    if isinstance(value, RateLimit):
        return value
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a rate with its unit such as `100000 kbps`, got {value!r}")
    if isinstance(value, int):
        raise ValueError(f"{value} needs a unit: write `{value} kbps` (or bps, mbps)")
    match = _RATE.match(value)
    if not match or match[2] not in RATE_UNITS:
        raise ValueError(
            f"{value!r} is not a rate: a whole number and a unit, one of {', '.join(RATE_UNITS)} "
            "(e.g. `100000 kbps`)"
        )
    if int(match[1]) < 1:
        raise ValueError(f"{value!r}: a rate limit must be at least 1")
    return RateLimit(int(match[1]), match[2])  # type: ignore[arg-type]


Rate = Annotated[
    RateLimit,
    BeforeValidator(_parse_rate_limit),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\s*\d{1,12}\s*(bps|kbps|mbps)\s*$",
            "description": "rate and unit, e.g. 100000 kbps",
        }
    ),
]
# MSS's monitor object default "Rate Limit: 100000" (the seed) carries no unit; we read it as
# kbps, the unit microseg always rendered it in (100 Mbit/s of mirrored traffic per chip).
DEFAULT_RATE_LIMIT = RateLimit(100000, "kbps")


class MonitorObject(PolicyObject):
    """How monitored traffic reaches the monitor nodes (GRE mirror + flow export)."""

    name: ObjectName
    description: Description = ""
    exporter_interface: InterfaceName = "Loopback0"
    active_timeout_ms: Annotated[int, Field(ge=1000), NOT_BOOL] = 1800000
    tunnel_destination: Address
    tunnel_source_interface: InterfaceName = "Loopback0"
    rate_limit: Rate = Field(
        DEFAULT_RATE_LIMIT, json_schema_extra={"default": str(DEFAULT_RATE_LIMIT)}
    )
    monitor_nodes: tuple[ObjectName, ...] = ()


class RedirectObject(PolicyObject):
    """An external firewall to redirect traffic to (next-hop addresses)."""

    name: ObjectName
    description: Description = ""
    next_hops: tuple[Address, ...] = Field(min_length=1)


class SecurityDomain(PolicyObject):
    """A set of switches sharing rules and policies (a site, a building, a DC)."""

    name: ObjectName
    description: Description = ""
    devices: tuple[ObjectName, ...] = ()
    vrfs: tuple[ObjectName, ...] = ("default",)


Direction = Literal["unidirectional", "bidirectional"]
DecapType = Literal["allow-all", "vxlan-decap-only", "no-vxlan-decap"]
Action = Literal["forward", "drop", "redirect"]
# What a policy does with a packet none of its rules matches (EOS: the actions of the
# implicit `ipv4-all-default` / `ipv6-all-default` matches).
DefaultAction = Literal["forward", "drop"]


class Rule(PolicyObject):
    """Sources -> destinations on services, and what to do with matching traffic.

    `sources`, `destinations` and `services` are required: `any` or a non-empty list of
    names (an empty list is an error, never "any"). A bidirectional rule also matches the
    return traffic (EOS traffic policies are stateless).

    Example: Rule(name="dns", sources="any", destinations=["dns_servers"], services=["DNS"])
    """

    name: ObjectName
    description: Description = ""
    sources: NameRefs
    destinations: NameRefs
    services: NameRefs
    direction: Direction = "bidirectional"
    decap_type: DecapType = "allow-all"
    action: Action = "forward"
    redirect: ObjectName | None = None
    monitor: ObjectName | None = None

    @model_validator(mode="after")
    def _redirect_needs_object(self) -> Rule:
        if self.action == "redirect" and self.redirect is None:
            raise ValueError("action redirect needs a redirect object (redirect: NAME)")
        if self.action != "redirect" and self.redirect is not None:
            raise ValueError(f"redirect object given but action is {self.action!r}")
        return self


class Policy(PolicyObject):
    """An ordered rule list bound to a security domain and a VRF (or ALL).

    `default_action` decides a packet no rule matches: `forward` (EOS's own default, the
    seed's) or `drop` (default-deny, without an any-to-any drop rule). `default_log` also
    logs what the default drops (EOS takes `log` only with `drop`).

    Example: Policy(name="office", id=10, domain="site", rules=["dns"], default_action="drop")
    """

    name: ObjectName
    description: Description = ""
    id: Annotated[int, Field(ge=1, le=2**31 - 1), NOT_BOOL]
    domain: ObjectName
    vrf: ObjectName = "ALL"
    rules: tuple[ObjectName, ...] = ()
    default_action: DefaultAction = "forward"
    default_log: bool = False

    @model_validator(mode="after")
    def _log_needs_drop(self) -> Policy:
        # AVD traffic_policies default_actions.ipv4.log: "Only supported when action is set
        # to drop".
        if self.default_log and self.default_action != "drop":
            raise ValueError("default_log needs default_action: drop (EOS logs only drops)")
        return self

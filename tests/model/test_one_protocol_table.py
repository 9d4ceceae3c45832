"""One protocol table and one ephemeral-port constant (`microseg.model.ports`): no module
keeps its own copy of protocol numbers and names or of 49152."""

from __future__ import annotations

import ast

from microseg.model.ports import (
    EPHEMERAL_PORT_START,
    PORT_PROTOCOLS,
    PROTOCOL_NAMES,
    PROTOCOL_NUMBERS,
)
from support import SRC

PORTS_MODULE = SRC / "microseg" / "model" / "ports.py"
PROTOCOL_WORDS = {"icmp", "tcp", "udp", "icmpv6", "sctp"}


def _code_outside_the_table():
    for path in sorted((SRC / "microseg").rglob("*.py")):
        if path != PORTS_MODULE:
            yield path, ast.parse(path.read_text(encoding="utf-8"))


def _constant(node):
    return node.value if isinstance(node, ast.Constant) else None


def test_no_module_maps_protocol_numbers_to_names_itself():
    copies = []
    for path, tree in _code_outside_the_table():
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                pairs = [
                    (_constant(k), _constant(v))
                    for k, v in zip(node.keys, node.values, strict=True)
                ]
                if any(
                    {key, value} & PROTOCOL_WORDS and {type(key), type(value)} == {int, str}
                    for key, value in pairs
                ):
                    copies.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert copies == []


def test_no_module_spells_out_the_ephemeral_port_or_protocol_number_tuples():
    copies = []
    for path, tree in _code_outside_the_table():
        for node in ast.walk(tree):
            if _constant(node) == EPHEMERAL_PORT_START and type(_constant(node)) is int:
                copies.append(f"{path.relative_to(SRC)}:{node.lineno}: 49152")
            if isinstance(node, ast.Tuple) and {_constant(e) for e in node.elts} in (
                {6, 17},
                {6, 17, 132},
                {1, 58},
            ):
                copies.append(f"{path.relative_to(SRC)}:{node.lineno}: protocol numbers")
    assert copies == []


def test_the_table_is_iana_and_consistent():
    assert PROTOCOL_NUMBERS == {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}
    assert all(PROTOCOL_NAMES[number] == name for name, number in PROTOCOL_NUMBERS.items())
    assert PROTOCOL_NAMES[132] == "sctp" and 132 in PORT_PROTOCOLS
    assert EPHEMERAL_PORT_START == 49152  # RFC 6335, section 6

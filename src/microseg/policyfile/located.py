"""YAML text -> plain mappings and lists that remember where each value was written.

libyaml (PyYAML's C parser) composes the node graph, which carries every node's position;
building the values ourselves from it keeps those positions and is several times faster than
a pure-Python round-trip parser on large policies. Duplicate keys are errors, merge keys
(`<<: *defaults`) work as in YAML 1.1, and aliases may reuse values but not multiply them
("billion laughs"): a document may expand to at most its own length plus an allowance.

Most policies use none of anchors, aliases, merges or tags. Those are built straight from
libyaml's events (`_EventBuilder`), five times faster than composing nodes, whose Python
objects and per-node resolver calls are most of a big file's load time (bench/cli_compile.py).
The event builder gives up on anything else, and on any problem, and the node builder then
reads the document: so it alone decides what is refused and says where.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# A document without aliases has fewer values than characters; aliases may add this many
# more. Nested aliases can multiply a small file into billions of values.
ALIAS_EXPANSION_ALLOWANCE = 100_000
# A policy nests five levels deep at most (sections, objects, segments, fields, lists).
MAX_DEPTH = 64
_MERGE_TAG = "tag:yaml.org,2002:merge"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Position = tuple[int, int]  # 1-based line and column


class LocatedMap(dict):
    """A mapping with the position of itself, of each key and of each value."""

    __slots__ = ("key_positions", "position", "value_positions")

    def __init__(self, position: Position):
        super().__init__()
        self.position = position
        self.key_positions: dict[Any, Position] = {}
        self.value_positions: dict[Any, Position] = {}


class LocatedList(list):
    """A sequence with the position of itself and of each item."""

    __slots__ = ("item_positions", "position")

    def __init__(self, position: Position):
        super().__init__()
        self.position = position
        self.item_positions: list[Position] = []


class YamlProblem(Exception):
    """The text is not YAML we accept; `position` is where, when known."""

    def __init__(self, message: str, position: Position | None = None):
        super().__init__(message)
        self.message = message
        self.position = position


def load_located(text: str) -> Any:
    """The document's value (None for an empty one), built of LocatedMap / LocatedList."""
    budget = len(text) + ALIAS_EXPANSION_ALLOWANCE
    try:
        return _EventBuilder(budget).load(text)
    except Exception:  # not the plain subset, or a problem: the node builder says which
        return load_composed(text)


def load_composed(text: str) -> Any:
    """`load_located` through PyYAML's composer: every feature, every problem located."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise YamlProblem(f"invalid YAML: {error.problem or error.context}", _at(mark)) from None
    except yaml.YAMLError as error:
        raise YamlProblem(f"invalid YAML: {error}") from None
    if root is None:
        return None
    return _Builder(budget=len(text) + ALIAS_EXPANSION_ALLOWANCE).build(root)


def _at(mark: Any) -> Position | None:
    """Where a parser error is, when the error says (its marks may be None)."""
    return (mark.line + 1, mark.column + 1) if mark is not None else None


def _start(node: Node) -> Position:
    """Where a composed node starts: the composer marks every node."""
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, budget: int):
        self.budget = budget
        self.built = 0
        self.depth = 0
        self.scalars = yaml.constructor.SafeConstructor()

    def build(self, node: Node) -> Any:
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise YamlProblem(
                f"invalid YAML: nested too deeply (more than {MAX_DEPTH} levels)",
                _start(node),
            )
        try:
            return self._collection(node)
        finally:
            self.depth -= 1

    def _scalar(self, node: ScalarNode) -> Any:
        self._count()
        try:
            return self.scalars.construct_object(node)
        except yaml.MarkedYAMLError as error:
            raise YamlProblem(f"invalid YAML: {error.problem}", _start(node)) from None
        except ValueError:
            # int() past Python's 4,300-digit limit (CVE-2020-10735); no field takes it.
            raise YamlProblem(
                f"a number of {len(node.value)} characters is longer than any field takes",
                _start(node),
            ) from None

    def _count(self, values: int = 1) -> None:
        self.built += values
        if self.built > self.budget:
            raise YamlProblem(
                f"the YAML aliases expand to more than {self.budget} values "
                "(anchors and aliases may reuse values, not multiply them)"
            )

    def _collection(self, node: Node) -> Any:
        self._count()
        if isinstance(node, MappingNode):
            return self._mapping(node)
        if isinstance(node, SequenceNode):
            items = LocatedList(_start(node))
            for item in node.value:
                items.append(self.build(item))
                items.item_positions.append(_start(item))
            return items
        raise YamlProblem(f"invalid YAML: unexpected node {node.tag}", _start(node))

    def _mapping(self, node: MappingNode) -> LocatedMap:
        mapping = LocatedMap(_start(node))
        merged: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged += self._merge_sources(value_node, (node,))
                continue
            key = self._key(key_node)
            if key in mapping:
                raise YamlProblem(f"invalid YAML: found duplicate key {key!r}", _start(key_node))
            self._set(mapping, key, key_node, value_node)
        # YAML 1.1 merge keys: keys written in the mapping win over merged ones.
        for key_node, value_node in merged:
            key = self._key(key_node)
            if key not in mapping:
                self._set(mapping, key, key_node, value_node)
        return mapping

    def _set(self, mapping: LocatedMap, key: Any, key_node: Node, value_node: Node) -> None:
        mapping[key] = self.build(value_node)
        mapping.key_positions[key] = _start(key_node)
        mapping.value_positions[key] = _start(value_node)

    def _key(self, key_node: Node) -> Any:
        if not isinstance(key_node, ScalarNode):
            raise YamlProblem("invalid YAML: a mapping key must be a plain value", _start(key_node))
        return self.build(key_node)

    def _merge_sources(
        self, value_node: Node, expanding: tuple[MappingNode, ...]
    ) -> list[tuple[Node, Node]]:
        """The (key, value) pairs `<<: value_node` merges, nested merges included.

        `expanding` is the chain of mappings being merged into: a mapping that merges itself
        (`x: &a {<<: *a}`) is refused, the chain is as deep as nesting may be, and every pair
        counts against the alias budget as it is collected, so merges cannot multiply values
        (`<<: [*a, *a, ...]` over and over) any more than aliases can."""
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        pairs: list[tuple[Node, Node]] = []
        for source in sources:
            if not isinstance(source, MappingNode):
                raise YamlProblem("invalid YAML: `<<` merges mappings only", _start(source))
            if any(source is outer for outer in expanding):
                raise YamlProblem(
                    "invalid YAML: `<<` merges a mapping into itself", _start(value_node)
                )
            if len(expanding) >= MAX_DEPTH:
                raise YamlProblem(
                    f"invalid YAML: merges nested too deeply (more than {MAX_DEPTH} levels)",
                    _start(value_node),
                )
            self._count(len(source.value))
            pairs += [(k, v) for k, v in source.value if k.tag != _MERGE_TAG]
            for key_node, nested in source.value:
                if key_node.tag == _MERGE_TAG:
                    pairs += self._merge_sources(nested, (*expanding, source))
        return pairs


class _GivenUp(Exception):
    """The event builder leaves this document to the node builder."""


_STR_TAG = "tag:yaml.org,2002:str"


class _EventBuilder:
    """Located values from parser events, for documents of plain mappings, sequences and
    scalars (no anchor, alias, merge key or explicit tag, one document). It builds what
    `_Builder` builds from the composed nodes: the composer resolves a scalar's tag from its
    text and style with the same resolver, and a node's position is its first event's mark.
    """

    def __init__(self, budget: int):
        self.budget = budget
        self.built = 0
        self.scalars = yaml.constructor.SafeConstructor()
        self.resolved: dict[tuple[str, tuple[bool, bool]], str] = {}

    def load(self, text: str) -> Any:
        parser = _Loader(text)
        try:
            parser.get_event()  # StreamStartEvent
            if parser.check_event(yaml.StreamEndEvent):
                return None
            parser.get_event()  # DocumentStartEvent
            value = self._value(parser, parser.get_event(), 1)
            parser.get_event()  # DocumentEndEvent
            if not isinstance(parser.get_event(), yaml.StreamEndEvent):
                raise _GivenUp("more than one document")
            return value
        finally:
            parser.dispose()

    def _value(self, parser: Any, event: Any, depth: int) -> Any:
        if event.anchor is not None or event.tag not in (None, "!"):
            raise _GivenUp("anchor, alias or tag")
        self.built += 1
        if self.built > self.budget:
            raise _GivenUp("over the budget")
        if type(event) is yaml.ScalarEvent:
            tag = self._tag(event)
            if tag == _STR_TAG:  # what SafeConstructor.construct_yaml_str returns
                return event.value
            mark: Any = event.start_mark  # libyaml's Mark, which the constructor only reports
            return self.scalars.construct_object(ScalarNode(tag, event.value, mark))
        if depth > MAX_DEPTH:
            raise _GivenUp("too deep")
        if type(event) is yaml.SequenceStartEvent:
            items = LocatedList(_mark(event))
            while type(item := parser.get_event()) is not yaml.SequenceEndEvent:
                items.append(self._value(parser, item, depth + 1))
                items.item_positions.append(_mark(item))
            return items
        if type(event) is yaml.MappingStartEvent:
            return self._mapping(parser, event, depth)
        raise _GivenUp(type(event).__name__)

    def _mapping(self, parser: Any, event: Any, depth: int) -> LocatedMap:
        mapping = LocatedMap(_mark(event))
        while type(key_event := parser.get_event()) is not yaml.MappingEndEvent:
            if type(key_event) is not yaml.ScalarEvent or self._tag(key_event) == _MERGE_TAG:
                raise _GivenUp("a merge key or a key that is not a scalar")
            key = self._value(parser, key_event, depth + 1)
            if key in mapping:
                raise _GivenUp("a duplicate key")
            value_event = parser.get_event()
            mapping[key] = self._value(parser, value_event, depth + 1)
            mapping.key_positions[key] = _mark(key_event)
            mapping.value_positions[key] = _mark(value_event)
        return mapping

    def _tag(self, event: Any) -> str:
        """The tag PyYAML's composer gives a scalar without an explicit one: a quoted one,
        or a plain one whose first character starts no implicit type, is a string."""
        value = event.value
        if not event.implicit[0] or (value and value[0] not in _TYPED_FIRST_CHARACTERS):
            return _STR_TAG
        key = (value, event.implicit)
        tag = self.resolved.get(key)
        if tag is None:
            tag = _RESOLVER.resolve(ScalarNode, value, event.implicit)
            if len(self.resolved) < 100_000:
                self.resolved[key] = tag
        return tag


_RESOLVER = yaml.resolver.Resolver()
# yaml.resolver: implicit types (bool, int, float, null, timestamp, merge...) are tried by
# the plain scalar's first character; the others are strings.
_TYPED_FIRST_CHARACTERS = frozenset(k for k in _RESOLVER.yaml_implicit_resolvers if k)


def _mark(event: Any) -> Position:
    return (event.start_mark.line + 1, event.start_mark.column + 1)

"""YAML text -> plain mappings and lists that remember where each value was written.

libyaml (PyYAML's C parser) composes the node graph, which carries every node's position;
building the values ourselves from it keeps those positions and is several times faster than
a pure-Python round-trip parser on large policies. Duplicate keys are errors, merge keys
(`<<: *defaults`) work as in YAML 1.1, and aliases may reuse values but not multiply them
("billion laughs"): a document may expand to at most its own length plus an allowance.

Most policies use none of anchors, aliases, merges or tags. Those are built straight from
libyaml's events (`_EventBuilder`), five times faster than composing nodes, whose Python
objects and per-node resolver calls are most of a big file's load time (bench/cli_compile.py).
A file written as `yaml.dump` and microseg's own dumper write it (block mappings and
sequences, one-line scalars, ASCII) is read faster still line by line (`_LineBuilder`), with
no parser events at all. Each fast builder gives up on anything else, and on any problem, and
the next one reads the document; the node builder, last, alone decides what is refused and
says where.
"""

from __future__ import annotations

import re
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
    try:
        return _LineBuilder(text).load()
    except Exception:  # not the block subset: libyaml's events
        pass
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
        # Both halves: "expected a single document in the stream, but found another
        # document" says what "but found another document" alone does not.
        said = ", ".join(part for part in (error.context, error.problem) if part)
        if "tab" not in said and _character_at(text, mark) == "\t":
            # YAML 1.2, 6.1: "tab characters must not be used in indentation"
            said += " (a tab: YAML indents with spaces only)"
        raise YamlProblem(f"invalid YAML: {said}", _at(mark)) from None
    except yaml.YAMLError as error:
        raise YamlProblem(f"invalid YAML: {error}") from None
    if root is None:
        return None
    return _Builder(budget=len(text) + ALIAS_EXPANSION_ALLOWANCE).build(root)


def _character_at(text: str, mark: Any) -> str:
    lines = text.splitlines()
    if mark is None or not 0 <= mark.line < len(lines):
        return ""
    return lines[mark.line][mark.column : mark.column + 1]


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
        self.scalars = _Scalars()

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
            return self.scalars.value(event.value, event.implicit, event.start_mark)
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
            if (
                type(key_event) is not yaml.ScalarEvent
                or self.scalars.tag(key_event.value, key_event.implicit) == _MERGE_TAG
            ):
                raise _GivenUp("a merge key or a key that is not a scalar")
            key = self._value(parser, key_event, depth + 1)
            if key in mapping:
                raise _GivenUp("a duplicate key")
            value_event = parser.get_event()
            mapping[key] = self._value(parser, value_event, depth + 1)
            mapping.key_positions[key] = _mark(key_event)
            mapping.value_positions[key] = _mark(value_event)
        return mapping


class _Scalars:
    """Scalars without an explicit tag, typed as PyYAML's composer and SafeConstructor type
    them: the composer resolves the tag from the text and whether it was plain (`implicit`:
    plain, quoted), with the same resolver."""

    def __init__(self) -> None:
        self.constructor = yaml.constructor.SafeConstructor()
        self.resolved: dict[tuple[str, tuple[bool, bool]], str] = {}

    def tag(self, value: str, implicit: tuple[bool, bool]) -> str:
        """A quoted scalar is a string; so is a plain one whose first character starts no
        implicit type, or that holds a `/`, which no implicit type's pattern takes (a prefix;
        tests/policyfile/test_located_events.py checks the patterns)."""
        if not implicit[0] or (value and (value[0] not in _TYPED_FIRST_CHARACTERS or "/" in value)):
            return _STR_TAG
        key = (value, implicit)
        tag = self.resolved.get(key)
        if tag is None:
            tag = _RESOLVER.resolve(ScalarNode, value, implicit)
            if len(self.resolved) < 100_000:
                self.resolved[key] = tag
        return tag

    def value(self, value: str, implicit: tuple[bool, bool], mark: Any) -> Any:
        """`mark` (where the scalar starts) is only reported in a construction error."""
        tag = self.tag(value, implicit)
        if tag == _STR_TAG:  # what SafeConstructor.construct_yaml_str returns
            return value
        return self.constructor.construct_object(ScalarNode(tag, value, mark))


_RESOLVER = yaml.resolver.Resolver()
# yaml.resolver: implicit types (bool, int, float, null, timestamp, merge...) are tried by
# the plain scalar's first character; the others are strings.
_TYPED_FIRST_CHARACTERS = frozenset(k for k in _RESOLVER.yaml_implicit_resolvers if k)


def plain_is_string(value: str) -> bool:
    """Whether `value` written as a plain (unquoted) scalar reads back as this string here:
    YAML 1.1 types `yes`, `on`, `off`, `1:20` and `0o17` (a YAML 1.2 writer leaves them plain)."""
    return _WRITTEN.tag(value, _PLAIN_SCALAR) == _STR_TAG


_WRITTEN = _Scalars()  # the dumper asks once per string it writes


def _mark(event: Any) -> Position:
    return (event.start_mark.line + 1, event.start_mark.column + 1)


# One line of a block-style document: indentation, an optional `- `, then `key:`, `key: value`
# or a value. Keys are identifiers; values are one-line plain scalars that start with a letter,
# digit, `_`, `.`, `/` or `~` (no `: ` or ` #` inside, no trailing space), or quoted scalars without
# escapes. ASCII only. Anything else (flow collections, block scalars, comments after a value,
# multi-line scalars, anchors, tags...) is for the event builder.
_PLAIN = r"[A-Za-z0-9_./~](?:[!-9;-~]|:(?=[!-~])| (?=[!\"$-~]))*"
_SINGLE_QUOTED = r"'(?:[ -&(-~]|'')*'"
_DOUBLE_QUOTED = r'"[ !#-\[\]-~]*"'
_LINE = re.compile(
    rf"( *)(- )?(?:([A-Za-z_][A-Za-z0-9_]*):(?: +({_PLAIN}|{_SINGLE_QUOTED}|{_DOUBLE_QUOTED}))?"
    rf"|({_PLAIN}|{_SINGLE_QUOTED}|{_DOUBLE_QUOTED}))\Z"
)
# Lines YAML skips: blank, or a comment of printable ASCII.
_SKIPPED = re.compile(r" *(?:#[ -~]*)?\Z")
# First characters of a plain scalar that is a string whatever follows (no implicit type
# starts with one), and of no quoted one.
_STRING_FIRST_CHARACTERS = frozenset(
    chr(code) for code in range(33, 127) if chr(code) not in _TYPED_FIRST_CHARACTERS | {"'", '"'}
)
_PLAIN_SCALAR = (True, False)  # `implicit` of a plain scalar event
_QUOTED_SCALAR = (False, True)
# Far below MAX_DEPTH: deeper documents are the event builder's to judge.
_LINE_DEPTH = 16


class _LineBuilder:
    """Located values from a block-style document, line by line, as the event builder would
    build them from libyaml's events (tests/policyfile/test_located_events.py checks both
    agree). Gives up (raises) on any line or structure outside that subset.

    Open collections are a stack of (collection, column): a mapping's column is its keys', a
    sequence's its `- `s'. A line closes every collection right of it, then must be the next
    key of the mapping at its column or the next item of the sequence at its column."""

    def __init__(self, text: str):
        if not text.isascii() or "\r" in text:
            raise _GivenUp("not ASCII with \\n line breaks")
        self.text = text
        self.scalars = _Scalars()
        self.keys: dict[str, Any] = {}

    def _key(self, text: str) -> Any:
        key = self.keys.get(text)
        if key is None:
            key = self.keys[text] = self.scalars.value(text, _PLAIN_SCALAR, None)
        return key

    def _scalar(self, text: str) -> Any:
        first = text[0]
        if first == "'":
            return text[1:-1].replace("''", "'")
        if first == '"':
            return text[1:-1]
        if first not in _TYPED_FIRST_CHARACTERS:
            return text
        return self.scalars.value(text, _PLAIN_SCALAR, None)

    def load(self) -> LocatedMap:
        lines = self.text.split("\n")
        first, root = self._root(lines)
        stack: list[tuple[Any, int]] = [(root, 0)]
        top: Any = root  # the innermost open collection, and its column
        top_column = 0
        # A key written without a value (`key:`): its mapping, key and line.
        pending: tuple[LocatedMap, Any, int] | None = None
        line_match, skipped = _LINE.match, _SKIPPED.match
        keys, strings, scalar = self.keys, _STRING_FIRST_CHARACTERS, self._scalar
        for number, line in enumerate(lines[first - 1 :], first):
            match = line_match(line)
            if match is None:
                if skipped(line):
                    continue
                raise _GivenUp(f"line {number}")
            spaces, dash, key_text, key_value, value = match.groups()
            column = len(spaces)
            if pending is not None:
                mapping, key, key_line = pending
                pending = None
                if dash and column >= top_column:
                    top = LocatedList((number, column + 1))
                elif not dash and column > top_column:
                    top = LocatedMap((number, column + 1))
                else:
                    raise _GivenUp(f"line {key_line}: an empty value")
                if len(stack) > _LINE_DEPTH:
                    raise _GivenUp("deep")
                mapping[key] = top
                mapping.key_positions[key] = (key_line, top_column + 1)
                mapping.value_positions[key] = (number, column + 1)
                top_column = column
                stack.append((top, column))
            elif column != top_column or (type(top) is LocatedList) is not bool(dash):
                while top_column > column:
                    stack.pop()
                    top, top_column = stack[-1]
                if not dash and top_column == column and type(top) is LocatedList:
                    stack.pop()  # a key after the sequence written at its mapping's column
                    top, top_column = stack[-1]
                if top_column != column or (type(top) is LocatedList) is not bool(dash):
                    raise _GivenUp(f"line {number}: continued or misplaced")
            if dash:
                if key_text is None:
                    top.append(value if value[0] in strings else scalar(value))
                    top.item_positions.append((number, column + 3))
                    continue
                column += 2
                item = LocatedMap((number, column + 1))
                top.append(item)
                top.item_positions.append((number, column + 1))
                if len(stack) > _LINE_DEPTH:
                    raise _GivenUp("deep")
                top, top_column = item, column
                stack.append((item, column))
            elif key_text is None:
                raise _GivenUp(f"line {number}: a value where a key belongs")
            key = keys.get(key_text)
            if key is None:
                key = self._key(key_text)
            if key in top:
                raise _GivenUp(f"line {number}: a duplicate key")
            if key_value is None:
                top[key] = None  # taken, for the duplicate check; set by the next line
                pending = (top, key, number)
                continue
            top[key] = key_value if key_value[0] in strings else scalar(key_value)
            top.key_positions[key] = (number, column + 1)
            top.value_positions[key] = (number, len(line) - len(key_value) + 1)
        if pending is not None:
            raise _GivenUp("an empty value at the end")
        return root

    @staticmethod
    def _root(lines: list[str]) -> tuple[int, LocatedMap]:
        """The first line that is not blank or a comment (its number), which must start a
        mapping at the left margin, and that mapping (empty yet)."""
        for number, line in enumerate(lines, 1):
            match = _LINE.match(line)
            if match is None and _SKIPPED.match(line):
                continue
            if match is None or match[1] or match[2] or match[3] is None:
                raise _GivenUp("not a mapping at the left margin")
            return number, LocatedMap((number, 1))
        raise _GivenUp("no document")

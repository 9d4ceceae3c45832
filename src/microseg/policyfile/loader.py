"""YAML policy files -> PolicySet, reporting every problem with file, line and column.

A policy is one YAML file or a directory of them (`*.yaml`, `*.yml`, recursively but not
hidden ones, read in path order and merged), unless the directory is a *collection* of
standalone policies (`collection_members`): then it is no one policy, and loading it is a
problem that names its members. Every command reads directories through this rule. Each file is a mapping of sections (`groups:`,
`rules:`, ...) to lists of objects. Unknown keys are errors, never silently dropped.

Two steps: `read_policy_source` parses the YAML into located objects (plain mappings with
their YAML nodes); `load_policy` validates them into a PolicySet. `PolicySource.locate`
puts file:line:column on any Problem about one of its objects, wherever it was found.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from microseg.gc_pause import paused_garbage_collector
from microseg.model import SECTIONS, PolicyError, PolicySet, Problem
from microseg.model.errors import UNKNOWN_KEY, validation_problems
from microseg.model.policyset import reference_problems, references_of
from microseg.policyfile.located import LocatedList, LocatedMap, YamlProblem, load_located


@dataclass(frozen=True)
class SourceObject:
    """One object as written: its section, plain mapping, YAML node and file."""

    section: str
    data: dict[str, Any]
    node: LocatedMap
    file: str

    @property
    def name(self) -> str | None:
        name = self.data.get("name")
        return name if isinstance(name, str) else None


@dataclass
class PolicySource:
    """Objects read from YAML, and the problems with the files' shape (syntax, sections)."""

    objects: list[SourceObject] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    sections: set[str] = field(default_factory=set)  # the sections the files hold
    files_defining_policies: list[str] = field(default_factory=list)

    def locate(self, problem: Problem) -> Problem:
        """`problem` with the file:line:column of what it is about, if it is in this source.

        A duplicate is reported at its last definition; anything else at its first."""
        if problem.file is not None or len(problem.path) < 2:
            return problem
        section, name = problem.path[:2]
        found = [o for o in self.objects if o.section == section and o.name == name]
        if not found:
            found = self._unnamed(section, name)
        if not found:
            return problem
        source = found[-1] if problem.message.startswith("duplicate") else found[0]
        return _located_in(source, problem)

    def locate_all(self, problems: list[Problem]) -> list[Problem]:
        """Every problem located, in file, line and column order."""
        return sorted((self.locate(problem) for problem in problems), key=_problem_order)

    def _unnamed(self, section: Any, label: Any) -> list[SourceObject]:
        # An object without a name is labelled `#N`: the Nth object of this source.
        number = label[1:] if isinstance(label, str) and label.startswith("#") else ""
        if not (number.isascii() and number.isdigit()) or not 0 < int(number) <= len(self.objects):
            return []
        unnamed = self.objects[int(number) - 1]
        return [unnamed] if unnamed.section == section and unnamed.name is None else []


def _located_in(source: SourceObject, problem: Problem) -> Problem:
    """`problem`, about `source` (path: section, name, fields...), at its file:line:column."""
    line, column = _position(source.node, tuple(problem.path[2:]), problem.message == UNKNOWN_KEY)
    return problem.located(source.file, line, column)


def policy_files(path: Path) -> list[Path]:
    """The YAML files that make up the policy at `path`, in a deterministic order.

    Hidden files and directories (`.github/`, `.pre-commit-config.yaml`) are not part of it."""
    if path.is_dir():
        files = [
            p
            for p in path.rglob("*")
            if p.suffix in (".yaml", ".yml")
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
            and p.is_file()
        ]
        return sorted(files, key=lambda p: p.relative_to(path).as_posix().encode())
    return [path]


def _is_collection(directory: Path, files_defining_policies: list[str]) -> bool:
    """The one rule for what a directory is: a collection of standalone policies when two or
    more of its top-level files each define `policies:` (as examples/ does), else one policy."""
    return sum(Path(file).parent == directory for file in files_defining_policies) >= 2


def collection_members(path: Path) -> list[Path]:
    """The standalone policies of the collection `path`: each top-level file and each
    top-level subdirectory (read by the same rule); [] when `path` is one policy."""
    if not path.is_dir():
        return []
    files = policy_files(path)
    top_level = [p for p in files if p.parent == path]
    probe = PolicySource()
    for file in top_level:
        _read_file(file, probe)
    if not _is_collection(path, probe.files_defining_policies):
        return []
    subdirectories = sorted({path / p.relative_to(path).parts[0] for p in files} - set(top_level))
    return top_level + subdirectories


def standalone_policies(path: Path) -> list[Path]:
    """`path` itself when it is one policy, else every policy of the collection, nested
    collections expanded (what `microseg validate PATH` checks)."""
    members = collection_members(path)
    if not members:
        return [path]
    return [policy for member in members for policy in standalone_policies(member)]


def read_policy_source(path: str | Path) -> PolicySource:
    """Parse a policy file or directory into located objects (not validated yet)."""
    source = PolicySource()
    if "\x00" in str(path):
        source.problems.append(Problem(f"{str(path)!r}: a path cannot contain a NUL character"))
        return source
    path = Path(path)
    if not path.exists():
        source.problems.append(Problem(f"no such file or directory: {path}"))
        return source
    files = policy_files(path)
    if not files:
        source.problems.append(Problem(f"no .yaml or .yml files under {path}"))
    for file in files:
        _read_file(file, source)
    if path.is_dir() and _is_collection(path, source.files_defining_policies):
        members = collection_members(path)
        names = ", ".join(member.name for member in members)
        message = (
            f"a collection of {len(members)} standalone policies ({names}), not one policy: "
            f"give one of them, e.g. {members[-1]} (`microseg validate {path}` checks them all)"
        )
        return PolicySource(problems=[Problem(message, file=str(path))])
    return source


def _read_file(file: Path, source: PolicySource) -> None:
    try:
        text = _read_policy_file(file)
    except (OSError, UnicodeDecodeError) as error:
        source.problems.append(Problem(f"cannot read: {error}", file=str(file)))
        return
    except PolicyFileRefused as refused:
        source.problems.append(Problem(str(refused), file=str(file)))
        return
    _read_document(text, str(file), source)


# A 5,000-rule policy is about 4 MB of YAML; a file eight times that is not a policy.
MAX_POLICY_FILE_BYTES = 32 * 2**20


class PolicyFileRefused(Exception):
    """A path that is not a policy file to read: a FIFO, a device, a file too large."""


def _read_policy_file(file: Path) -> str:
    """The text of a regular file of at most MAX_POLICY_FILE_BYTES.

    Opened without blocking and checked on the open descriptor: a FIFO would wait forever
    for a writer, and /dev/zero or /dev/urandom would be read until memory runs out."""
    descriptor = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise PolicyFileRefused(
                "not a regular file (a FIFO, device or socket): policies are read from files"
            )
        # In chunks: read(MAX + 1) would allocate the whole cap for a small file.
        chunks, size = [], 0
        while chunk := handle.read(2**20):
            size += len(chunk)
            if size > MAX_POLICY_FILE_BYTES:
                raise PolicyFileRefused(
                    f"larger than {MAX_POLICY_FILE_BYTES // 2**20} MiB: not read as a policy file"
                )
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8")


def read_policy_source_text(text: str, filename: str = "<string>") -> PolicySource:
    source = PolicySource()
    _read_document(text, filename, source)
    return source


def load_policy(path: str | Path) -> PolicySet:
    """Load and validate a policy file or directory. Raises PolicyError with every problem."""
    return build_policy(read_policy_source(path))


def load_policy_text(text: str, filename: str = "<string>") -> PolicySet:
    """Load a policy from YAML text (used by the API and tests)."""
    return build_policy(read_policy_source_text(text, filename))


@paused_garbage_collector()
def build_policy(source: PolicySource) -> PolicySet:
    """Validate every object, then the references between them; every problem at once.

    The set whose references were checked is the result: validating it again would only
    repeat `reference_problems` (PolicySet's own validator), already run here."""
    problems = list(source.problems)
    sections: dict[str, list[BaseModel]] = {section: [] for section in SECTIONS}
    unvalidated: dict[str, list[Any]] = {section: [] for section in SECTIONS}
    definitions: dict[tuple[str, str], int] = {}
    for number, obj in enumerate(source.objects, 1):
        label = obj.name or f"#{number}"
        if obj.name is not None:
            key = (obj.section, obj.name)
            definitions[key] = definitions.get(key, 0) + 1
        try:
            sections[obj.section].append(SECTIONS[obj.section].model_validate(obj.data))
        except ValidationError as error:
            if obj.name is not None:
                unvalidated[obj.section].append(references_of(obj.section, obj.name, obj.data))
            # Located here, by the object itself: one without a name cannot be found later.
            problems += [
                _located_in(obj, problem)
                for problem in validation_problems(obj.section, label, obj.data, error)
            ]
    # Duplicates are counted over every definition, valid or not.
    for (section, name), count in definitions.items():
        if count > 1:
            problems.append(
                Problem(f"duplicate name: defined {count} times", (section, name, "name"))
            )
    candidate = PolicySet.model_construct(None, **{s: tuple(o) for s, o in sections.items()})
    problems += [
        problem
        for problem in reference_problems(candidate, unvalidated)
        if not problem.message.startswith("duplicate name")
    ]
    if problems:
        raise PolicyError(source.locate_all(problems))
    return candidate


def _problem_order(problem: Problem) -> tuple:
    return (problem.file or "", problem.line or 0, problem.column or 0, problem.message)


@paused_garbage_collector()
def _read_document(text: str, filename: str, source: PolicySource) -> None:
    try:
        document = load_located(text)
    except YamlProblem as problem:
        source.problems.append(Problem(problem.message, (), filename, *(problem.position or ())))
        return
    if document is None:
        return
    if not isinstance(document, LocatedMap):
        message = "a policy file must be a mapping of sections (groups:, rules:, ...)"
        source.problems.append(Problem(message, (), filename, 1))
        return
    for section, items in document.items():
        line, column = document.key_positions[section]
        if section not in SECTIONS:
            message = f"unknown section {section!r} (known: {', '.join(SECTIONS)})"
            source.problems.append(Problem(message, (), filename, line, column))
        elif isinstance(items, LocatedList):
            source.sections.add(section)
            if section == "policies":
                source.files_defining_policies.append(filename)
            _read_items(section, items, filename, source)
        elif items is not None:
            message = f"section {section!r} must be a list of objects"
            source.problems.append(Problem(message, (section,), filename, line, column))


def _read_items(section: str, items: LocatedList, filename: str, source: PolicySource) -> None:
    for index, item in enumerate(items):
        if isinstance(item, LocatedMap):
            source.objects.append(SourceObject(section, _plain(item), item, filename))
        else:
            line, column = items.item_positions[index]
            message = f"item {index + 1} must be a mapping with a name"
            source.problems.append(Problem(message, (section,), filename, line, column))


def _plain(node: Any) -> Any:
    """Located containers -> plain dicts and lists."""
    if isinstance(node, dict):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    return node


def _position(node: Any, path: tuple, at_key: bool) -> tuple[int, int]:
    """Line and column of the value at `path` under an object's node (of the key, for a key
    that should not be there); as deep as the path exists in the document."""
    line, column = node.position
    for depth, part in enumerate(path, 1):
        if isinstance(node, LocatedMap) and part in node:
            on_key = at_key and depth == len(path)
            line, column = (node.key_positions if on_key else node.value_positions)[part]
        elif isinstance(node, LocatedList) and isinstance(part, int) and 0 <= part < len(node):
            line, column = node.item_positions[part]
        else:
            break
        node = node[part]
    return line, column

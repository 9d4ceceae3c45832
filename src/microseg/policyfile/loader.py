"""YAML policy files -> PolicySet, reporting every problem with file, line and column.

A policy is one YAML file or a directory of them (`*.yaml`, `*.yml`, recursively, read in
path order and merged). Each file is a mapping of sections (`groups:`, `rules:`, ...) to
lists of objects. Unknown keys are errors, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from microseg.model import REFERENCES, SECTIONS, PolicyError, PolicySet, Problem
from microseg.model.policyset import reference_problems

Location = tuple[str, int | None, int | None]


@dataclass
class _Collected:
    objects: dict[str, list[BaseModel]] = field(default_factory=lambda: {s: [] for s in SECTIONS})
    # Objects that failed validation, reduced to their name and references: references to
    # them are not reported as dangling, and their own references are still checked.
    unvalidated: dict[str, list[SimpleNamespace]] = field(
        default_factory=lambda: {s: [] for s in SECTIONS}
    )
    # (section, name) -> the YAML node of the object and its file, for locating problems.
    nodes: dict[tuple[str, str], list[tuple[str, CommentedMap]]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def policy_files(path: Path) -> list[Path]:
    """The YAML files that make up the policy at `path`, in a deterministic order."""
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()]
        return sorted(files, key=lambda p: p.relative_to(path).as_posix().encode())
    return [path]


def load_policy(path: str | Path) -> PolicySet:
    """Load and validate a policy file or directory. Raises PolicyError with every problem."""
    path = Path(path)
    if not path.exists():
        raise PolicyError([Problem(f"no such file or directory: {path}")])
    files = policy_files(path)
    if not files:
        raise PolicyError([Problem(f"no .yaml or .yml files under {path}")])
    collected = _Collected()
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            collected.problems.append(Problem(f"cannot read: {error}", file=str(file)))
            continue
        _collect_document(text, str(file), collected)
    return _build(collected)


def load_policy_text(text: str, filename: str = "<string>") -> PolicySet:
    """Load a policy from YAML text (used by the API and tests)."""
    collected = _Collected()
    _collect_document(text, filename, collected)
    return _build(collected)


def _build(collected: _Collected) -> PolicySet:
    candidate = PolicySet.model_construct(
        **{section: tuple(objs) for section, objs in collected.objects.items()}
    )
    problems = list(collected.problems)
    # Duplicates are counted over every definition, valid or not.
    for (section, name), occurrences in collected.nodes.items():
        if len(occurrences) > 1:
            problem = Problem(
                f"duplicate name: defined {len(occurrences)} times", (section, name, "name")
            )
            problems.append(_locate(problem, collected))
    for problem in reference_problems(candidate, collected.unvalidated):
        if not problem.message.startswith("duplicate name"):
            problems.append(_locate(problem, collected))
    if problems:
        raise PolicyError(sorted(problems, key=_problem_order))
    return PolicySet(**{section: tuple(objs) for section, objs in collected.objects.items()})


def _problem_order(problem: Problem) -> tuple:
    return (problem.file or "", problem.line or 0, problem.column or 0, problem.message)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def _collect_document(text: str, filename: str, collected: _Collected) -> None:
    try:
        document = _yaml().load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        message = f"invalid YAML: {error.problem or error.context}"
        collected.problems.append(Problem(message, file=filename, line=line, column=column))
        return
    except YAMLError as error:
        collected.problems.append(Problem(f"invalid YAML: {error}", file=filename))
        return
    if document is None:
        return
    if not isinstance(document, CommentedMap):
        collected.problems.append(
            Problem(
                "a policy file must be a mapping of sections (groups:, rules:, ...)",
                file=filename,
                line=1,
            )
        )
        return
    for section, items in document.items():
        line, column = _key_position(document, section)
        if section not in SECTIONS:
            known = ", ".join(SECTIONS)
            collected.problems.append(
                Problem(
                    f"unknown section {section!r} (known: {known})",
                    file=filename,
                    line=line,
                    column=column,
                )
            )
            continue
        if items is None:
            continue
        if not isinstance(items, CommentedSeq):
            collected.problems.append(
                Problem(
                    f"section {section!r} must be a list of objects",
                    (section,),
                    filename,
                    line,
                    column,
                )
            )
            continue
        for index, item in enumerate(items):
            _collect_object(section, items, index, item, filename, collected)


def _collect_object(
    section: str, items: CommentedSeq, index: int, item: Any, filename: str, collected: _Collected
) -> None:
    line, column = _item_position(items, index)
    if not isinstance(item, CommentedMap):
        collected.problems.append(
            Problem(
                f"item {index + 1} must be a mapping with a name",
                (section,),
                filename,
                line,
                column,
            )
        )
        return
    name = item.get("name")
    label = name if isinstance(name, str) else f"#{index + 1}"
    if isinstance(name, str):
        collected.nodes.setdefault((section, name), []).append((filename, item))
    try:
        obj = SECTIONS[section].model_validate(_plain(item))
    except ValidationError as error:
        if isinstance(name, str):
            collected.unvalidated[section].append(_references_of(section, name, item))
        seen: set[tuple] = set()
        for detail in error.errors():
            loc = _document_loc(item, detail["loc"])
            if loc in seen:
                continue
            seen.add(loc)
            at_key = detail["type"] == "extra_forbidden"
            where = _node_position(item, loc, at_key) or (line, column)
            message = _message(detail)
            collected.problems.append(Problem(message, (section, label, *loc), filename, *where))
        return
    collected.objects[section].append(obj)


def _references_of(section: str, name: str, item: CommentedMap) -> SimpleNamespace:
    """The name and reference fields of an object that failed validation."""
    fields: dict[str, Any] = {}
    for (ref_section, ref_field), _ in REFERENCES.items():
        if ref_section != section:
            continue
        value = item.get(ref_field)
        if isinstance(value, list):
            value = tuple(v for v in value if isinstance(v, str))
        elif value == "any" or not isinstance(value, str):
            value = () if ref_field.endswith("s") else None
        fields[ref_field] = value
    return SimpleNamespace(name=name, **fields)


def _plain(node: Any) -> Any:
    """ruamel round-trip containers -> plain dicts and lists."""
    if isinstance(node, dict):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    return node


def _message(detail: dict) -> str:
    message = detail["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if detail["type"] == "extra_forbidden":
        return "unknown key (not a field of this object)"
    if detail["type"] == "missing":
        return "required field is missing"
    value = detail.get("input")
    if detail["type"] not in ("value_error", "assertion_error") and not isinstance(
        value, dict | list
    ):
        message = f"{message} (got {value!r})"
    return message


def _document_loc(node: Any, loc: tuple) -> tuple:
    """Keep the parts of a pydantic error location that exist in the document.

    Pydantic adds union-member tags (`literal['tcp',...]`, `int`) that are not keys."""
    kept: list[Any] = []
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            node = node[part]
            kept.append(part)
    return tuple(kept)


def _node_position(node: Any, loc: tuple, at_key: bool = False) -> tuple[int, int] | None:
    """Line and column of the value at `loc` (of its key, for a key that should not be there)."""
    position = None
    for depth, part in enumerate(loc, 1):
        if isinstance(node, CommentedMap):
            on_key = at_key and depth == len(loc)
            line, column = node.lc.key(part) if on_key else node.lc.value(part)
            position = (line + 1, column + 1)
            node = node[part]
        elif isinstance(node, CommentedSeq):
            line, column = node.lc.item(part)
            position = (line + 1, column + 1)
            node = node[part]
    return position


def _key_position(node: CommentedMap, key: Any) -> tuple[int, int]:
    line, column = node.lc.key(key)
    return line + 1, column + 1


def _item_position(node: CommentedSeq, index: int) -> tuple[int, int]:
    line, column = node.lc.item(index)
    return line + 1, column + 1


def _locate(problem: Problem, collected: _Collected) -> Problem:
    """Attach file:line:column to a reference problem found on the assembled policy."""
    section, name, *rest = problem.path
    occurrences = collected.nodes.get((section, name), [])
    if not occurrences:
        return problem
    # A duplicate is reported at its second definition; anything else at its only one.
    filename, node = occurrences[-1] if problem.message.startswith("duplicate") else occurrences[0]
    position = _node_position(node, tuple(rest)) or _object_position(node)
    return problem.located(filename, *position)


def _object_position(node: CommentedMap) -> tuple[int, int]:
    line, column = node.lc.line, node.lc.col
    return line + 1, column + 1

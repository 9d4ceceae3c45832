"""Policy text in request bodies: JSON (which is YAML) or YAML, read by the policy-file
loader so problems are located (line, column) in the body as they are in a file, plus a
JSON pointer to the field (RFC 6901) for clients that built the body as data."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from microseg.model import SECTIONS, PolicyError, Problem
from microseg.policyfile import PolicySource, read_policy_source_text
from microseg.server.problems import ApiProblem, policy_problem

BODY_NAME = "request body"
POLICY_MEDIA_TYPES = ("application/json", "application/yaml", "text/yaml", "application/x-yaml")

# OpenAPI: a policy document, as a policy file holds it (sections of objects with a name).
POLICY_DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {section: {"type": "array", "items": {"type": "object"}} for section in SECTIONS},
    "additionalProperties": False,
}
OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
}


def request_body_doc(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body itself."""
    content = {media: {"schema": schema} for media in ("application/json", "application/yaml")}
    return {"requestBody": {"required": True, "description": description, "content": content}}


async def body_text(request: Request) -> str:
    media = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if media not in POLICY_MEDIA_TYPES:
        raise ApiProblem(
            415, f"content type {media!r}: send application/json or application/yaml", "media-type"
        )
    body = await request.body()  # at most MAX_REQUEST_BODY_BYTES (server.limits)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiProblem(
            400, f"{BODY_NAME}: not UTF-8 (byte {error.start})", "invalid-request"
        ) from None


def policy_source(text: str) -> PolicySource:
    return read_policy_source_text(text, BODY_NAME)


def object_source(section: str, text: str) -> PolicySource:
    """One object (the body of a PUT) read as the only object of `section`. Its problems
    keep their place in the body: the wrapper adds nothing before the body's first line
    but the prefix, which is taken off the columns of line 1."""
    prefix = f'{{"{section}": ['
    source = read_policy_source_text(f"{prefix}{text}\n]}}", BODY_NAME)
    shift = len(prefix)

    def unwrap(problem: Problem) -> Problem:
        if problem.line == 1 and problem.column is not None:
            return problem.located(problem.file, problem.line, max(1, problem.column - shift))
        return problem

    original = source.locate

    def locate(problem: Problem) -> Problem:
        return unwrap(original(problem))

    source.locate = locate  # type: ignore[method-assign]
    source.problems = [unwrap(problem) for problem in source.problems]
    return source


def invalid_policy(error: PolicyError, source: PolicySource, single: bool = False) -> ApiProblem:
    """422 with one entry per problem: object, field, message, line and column in the body,
    and the JSON pointer (`#/groups/0/prefixes/1`; for one object, `#/prefixes/1`)."""
    positions: dict[tuple[str, str], int] = {}
    counts: dict[str, int] = {}
    for obj in source.objects:
        index = counts.get(obj.section, 0)
        counts[obj.section] = index + 1
        if obj.name is not None:
            positions.setdefault((obj.section, obj.name), index)
    errors = []
    for problem in error.problems:
        entry = policy_problem(problem)
        if len(problem.path) >= 2:
            section, name = str(problem.path[0]), str(problem.path[1])
            position = positions.get((section, name))
            if position is not None:
                fields = "".join(f"/{part}" for part in problem.path[2:])
                entry["pointer"] = f"#{fields}" if single else f"#/{section}/{position}{fields}"
        errors.append(entry)
    return ApiProblem(422, str(error), "invalid-policy", errors=errors)

"""JSON Schema validation with errors placed on the line of the offending key."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from checks.errors import UsageError
from checks.yamlsafe import Document, Mark

# The tool's own repository: its schema/ and policy.yaml are the defaults for a
# --root that does not carry its own.
TOOL_ROOT = Path(__file__).resolve().parent.parent


def resource(root: Path, relative: str) -> Path:
    """*relative* under *root* when the repository has it, else the tool's own copy."""
    candidate = root / relative
    return candidate if candidate.exists() else TOOL_ROOT / relative


@cache
def validator(path: Path) -> jsonschema.protocols.Validator:
    """The validator of the schema at *path*, built once per process; UsageError for a broken schema."""
    try:
        raw = path.read_bytes()
        schema = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read the schema: {exc}") from None
    # Checking a schema against the meta-schema costs about 20 ms a run. The tool's own
    # schemas are checked by the test suite, so a byte-identical copy is checked only there.
    if raw != _bundled(path.name):
        try:
            Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise UsageError(f"{path}: not a valid JSON Schema (2020-12): {exc.message}") from None
    return _Validator(schema)


# A schema's patterns are ECMA-262 regular expressions, in which $ matches only at the very end of the text.
# Python's $ also matches before a final line break, so jsonschema would let "2027-02-10\n" or "all-staff\n" pass a
# pattern ending in $. Read as ECMA-262 means it: every $ that is not escaped is \Z.
_DOLLAR = re.compile(r"(?<!\\)\$")


@cache
def _whole(pattern: str) -> re.Pattern[str]:
    return re.compile(_DOLLAR.sub(r"\\Z", pattern))


def _pattern(
    validator: jsonschema.protocols.Validator, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and _whole(pattern).search(instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(Draft202012Validator, {"pattern": _pattern})


def _bundled(name: str) -> bytes | None:
    try:
        return (TOOL_ROOT / "schema" / name).read_bytes()
    except OSError:
        return None


def _describe(error: jsonschema.ValidationError) -> tuple[tuple[str | int, ...], str]:
    """Path to point at and a message in the requester's words."""
    path = tuple(error.absolute_path)
    where = ".".join(str(p) for p in path) or "the top level"
    v = error.validator
    if v == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extras = sorted(k for k in error.instance if k not in allowed)
        if extras:
            key = extras[0]
            known = ", ".join(sorted(allowed))
            return (*path, key), f"unknown field '{key}' in {where}; allowed fields are: {known}"
    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return path, f"{where} is missing the required field '{missing}'"
    if v == "type":
        return path, f"{where} must be of type {error.validator_value}, not {type_name(error.instance)}"
    if v == "enum":
        options = ", ".join(json.dumps(o) for o in error.validator_value)
        return path, f"{where} must be one of {options}, not {json.dumps(error.instance)}"
    if v == "pattern":
        hint = error.schema.get("x-hint") or f"the pattern {error.validator_value}"
        return path, f"{where} value {json.dumps(error.instance)} does not match {hint}"
    if v == "oneOf" and not error.context and error.schema.get("x-hint"):
        return path, f"{where} {error.schema['x-hint']}"  # more than one alternative fits
    if v in ("minLength", "minItems", "minProperties"):
        return path, f"{where} must not be empty"
    description = error.schema.get("description")
    suffix = f" ({description})" if description and v not in ("oneOf", "anyOf") else ""
    return path, f"{where}: {error.message}{suffix}"


def type_name(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "nothing (null)" if value is None else names.get(type(value), type(value).__name__)


def schema_errors(path: Path, doc: Document) -> Iterator[tuple[Mark, str]]:
    """Every schema violation in *doc*, each once, at the mark of the offending key."""
    seen: set[tuple[int, int, str]] = set()
    for error in sorted(validator(path).iter_errors(doc.data), key=lambda e: list(map(str, e.absolute_path))):
        for leaf in _leaves(error):
            where, message = _describe(leaf)
            mark = doc.mark(where)
            ident = (mark.line, mark.column, message)
            if ident not in seen:
                seen.add(ident)
                yield mark, message


def _leaves(error: jsonschema.ValidationError) -> Iterator[jsonschema.ValidationError]:
    """For oneOf/anyOf, the most relevant sub-errors instead of a vague summary."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        best = jsonschema.exceptions.best_match(error.context)
        yield best
    else:
        yield error

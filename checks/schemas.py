"""JSON Schema validation with errors placed on the line of the offending key."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

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


PathT = tuple[str | int, ...]


class Said(NamedTuple):
    """One schema problem in the requester's words: the field it concerns (a missing field's own path) and where
    to point (the field, else the nearest part of the file that is there)."""

    path: PathT
    message: str
    at: PathT | None = None  # where to point, when not at *path* itself


# What each JSON type is called in the requester's terms, and how it is written in the file.
_EXPECTED = {
    "array": "a list, one entry per line starting with '- '",
    "object": "a group of fields on the lines below it, each indented and written as name: value",
    "string": "text",
    "boolean": "true or false",
    "integer": "a whole number",
    "number": "a number",
    "null": "left empty",
}


def what_it_is(value: Any) -> str:
    """What a YAML value is, in the requester's words."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"{str(value).lower()}, which is read as yes or no"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a group of fields"
    return "something else"


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 21st ..."""
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def field_name(path: PathT, top: str = "the file") -> str:
    """A field as people read it: recipients.lists; 'file' in the 2nd entry of recipients.lists; *top* for the
    whole file. Entries are counted from 1."""
    if not path:
        return top
    last_entry = max((i for i, part in enumerate(path) if isinstance(part, int)), default=-1)
    if last_entry == -1:
        return ".".join(str(part) for part in path)
    number = path[last_entry]
    assert isinstance(number, int)
    entry = f"the {ordinal(number + 1)} entry of {field_name(path[:last_entry], top)}"
    rest = path[last_entry + 1 :]
    return entry if not rest else f"{'.'.join(str(part) for part in rest)} in {entry}"


def _shown(value: Any) -> str:
    """A value as it would be written in the file."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"'{value}'" if len(value) <= 60 else f"'{value[:57]}...'"
    if isinstance(value, (int, float)):
        return str(value)
    return what_it_is(value)


def _about(schema: Any) -> str:
    """' (the field's description)' for a message, when the schema has one."""
    description = schema.get("description") if isinstance(schema, dict) else None
    return f" ({description.rstrip('.')})" if isinstance(description, str) and description else ""


def _properties(schema: Any, root: Any) -> dict[str, Any]:
    """The fields a schema describes, following a local $ref."""
    schema = _resolved(schema, root)
    found = schema.get("properties") if isinstance(schema, dict) else None
    return found if isinstance(found, dict) else {}


def _resolved(schema: Any, root: Any) -> Any:
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return target
    return schema


def _belongs_under(key: str, root: Any) -> str | None:
    """The field (one level down from the top) whose fields include *key*: where a field written too far left most
    likely belongs."""
    for name, sub in _properties(root, root).items():
        sub = _resolved(sub, root)
        if isinstance(sub, dict) and sub.get("type") == "array":
            sub = _resolved(sub.get("items", {}), root)
        if key in _properties(sub, root):
            return str(name)
    return None


def _unknown(path: PathT, key: str, allowed: list[str], root: Any, top: str) -> Said:
    where = "" if not path else f" in {field_name(path, top)}"
    lowered = {name.lower().replace("-", "_").replace(" ", "_"): name for name in allowed}
    close = lowered.get(key.lower().replace("-", "_").replace(" ", "_")) or next(
        iter(difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)), None
    )
    if close is not None:
        return Said((*path, key), f"unknown field '{key}'{where} (did you mean '{close}'?)")
    home = _belongs_under(key, root) if not path else None
    if home is not None:
        return Said(
            (*path, key),
            f"unknown field '{key}' at the top level: '{key}' is a field of '{home}'; indent it under {home}:",
        )
    known = ", ".join(sorted(allowed)) if allowed else "none"
    return Said((*path, key), f"unknown field '{key}'{where}; the fields that can stand here are: {known}")


def _type(error: jsonschema.ValidationError, path: PathT, top: str) -> Said:
    wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
    expected = " or ".join(_EXPECTED.get(str(kind), str(kind)) for kind in wanted)
    name, value = field_name(path, top), error.instance
    message = f"{name} must be {expected}; here it is {what_it_is(value)}"
    if "string" in wanted and isinstance(value, (bool, int, float)):
        key = path[-1] if path and isinstance(path[-1], str) else None
        example = f'{key}: "{_shown(value)}"' if key else f'"{_shown(value)}"'
        message += f": put the value in quotes ({example}) so that it is read as text, as written"
    elif value is None and ("array" in wanted or "object" in wanted):
        message += f": write its {'entries' if 'array' in wanted else 'fields'} on the lines below {name}, indented"
    return Said(path, message + _about(error.schema))


def describe(error: jsonschema.ValidationError, root: Any, top: str = "the file") -> list[Said]:
    """What *error* means in the requester's words: no schema terms, entries counted from 1."""
    path: PathT = tuple(error.absolute_path)
    name = field_name(path, top)
    v, value, schema = error.validator, error.instance, error.schema
    if v in ("additionalProperties", "unevaluatedProperties") and isinstance(value, dict):
        allowed = [str(key) for key in _properties(schema, root)]
        return [_unknown(path, str(key), allowed, root, top) for key in value if key not in allowed]
    if v == "required":
        missing = next((key for key in error.validator_value if isinstance(value, dict) and key not in value), "")
        field = _properties(schema, root).get(missing, {})
        about = _about(field) or _about(_resolved(field, root))
        return [Said((*path, missing), f"{name} has no '{missing}'; add it{about}", at=path)]
    if v == "dependentRequired" and isinstance(value, dict):
        for key, needed in error.validator_value.items():
            absent = [n for n in needed if key in value and n not in value]
            if absent:
                return [Said((*path, key), f"{field_name((*path, key), top)} needs '{absent[0]}' as well; add it")]
    if "propertyNames" in error.absolute_schema_path:  # a field's name, not its value, is what is wrong
        hint = schema.get("x-hint") if isinstance(schema, dict) else None
        rule = f": the fields of {name} are named as {hint}" if hint else ""
        return [Said((*path, str(value)), f"'{value}' cannot be a field of {name}{rule}")]
    if v == "type":
        return [_type(error, path, top)]
    if v in ("enum", "const"):
        options = error.validator_value if v == "enum" else [error.validator_value]
        written = " or ".join(_shown(option).strip("'") for option in options)
        return [Said(path, f"{name} must be {written}; here it is {_shown(value)}")]
    if v == "pattern":
        hint = schema.get("x-hint")
        if hint:
            return [Said(path, f"{name} must be {hint}; here it is {_shown(value)}")]
        return [Said(path, f"{name} is not written as this field needs; here it is {_shown(value)}{_about(schema)}")]
    if v in ("oneOf", "anyOf") and error.context and all(e.validator == "required" for e in error.context):
        names = " or ".join(f"'{key}'" for e in error.context for key in e.validator_value)
        return [Said(path, f"{name} has no {names}; add one of them{_about(schema)}")]
    if v == "oneOf" and not error.context:  # more than one alternative fits
        if not isinstance(value, dict):
            return []  # only because the alternatives ask nothing of a value of this shape: the type is the problem
        if schema.get("x-hint"):
            return [Said(path, f"{name} {schema['x-hint']}")]
    if v in ("minLength", "minItems", "minProperties"):
        if value in ("", [], {}) or (isinstance(value, str) and not value.strip()):
            return [Said(path, f"{name} is empty; fill it in{_about(schema)}")]
        unit = {"minLength": "characters", "minItems": "entries", "minProperties": "fields"}[v]
        return [Said(path, f"{name} is too short: it needs at least {error.validator_value} {unit}")]
    if v in ("maxLength", "maxItems", "maxProperties"):
        unit = {"maxLength": "character", "maxItems": "entry", "maxProperties": "field"}[v]
        unit = unit if error.validator_value == 1 else "entries" if unit == "entry" else f"{unit}s"
        size = len(value) if isinstance(value, (str, list, dict)) else 0
        extra = (
            ": write each on its own entry, on a line starting with '- '"
            if v == "maxProperties" and error.validator_value == 1
            else ""
        )
        return [
            Said(path, f"{name} may have at most {error.validator_value} {unit}, not {size}{extra}{_about(schema)}")
        ]
    if v == "uniqueItems" and isinstance(value, list):
        seen: list[Any] = []
        for number, item in enumerate(value):
            if item in seen:
                return [Said((*path, number), f"{_shown(item)} is in {name} twice; keep it once")]
            seen.append(item)
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        words = {
            "minimum": "at least",
            "exclusiveMinimum": "more than",
            "maximum": "at most",
            "exclusiveMaximum": "less than",
        }[v]
        return [Said(path, f"{name} must be {words} {error.validator_value}; here it is {_shown(value)}")]
    return [Said(path, f"{name} {_shown(value)} is not valid here{_about(schema)}")]


def schema_findings(path: Path, doc: Document, top: str = "the file") -> Iterator[tuple[Said, Mark]]:
    """Every schema problem in *doc*, each once, with where to point: the offending field, or for a missing one the
    field it belongs in."""
    check = validator(path)
    seen: set[tuple[int, int, str]] = set()
    for error in sorted(check.iter_errors(doc.data), key=lambda e: list(map(str, e.absolute_path))):
        for leaf in _leaves(error):
            for said in describe(leaf, check.schema, top):
                mark = doc.mark(said.at if said.at is not None else said.path)
                ident = (mark.line, mark.column, said.message)
                if ident not in seen:
                    seen.add(ident)
                    yield said, mark


def schema_errors(path: Path, doc: Document, top: str = "the file") -> Iterator[tuple[Mark, str]]:
    """Every schema problem in *doc*, each once, at the mark of the offending field."""
    for said, mark in schema_findings(path, doc, top):
        yield mark, said.message


def _leaves(error: jsonschema.ValidationError) -> Iterator[jsonschema.ValidationError]:
    """For oneOf/anyOf, the most relevant sub-error instead of a vague summary."""
    if (
        error.validator in ("oneOf", "anyOf")
        and error.context
        and all(e.validator == "required" for e in error.context)
    ):
        yield error  # none of the alternatives' fields is there: describe() names them all
    elif error.validator in ("oneOf", "anyOf") and error.context:
        yield jsonschema.exceptions.best_match(error.context)
    else:
        yield error

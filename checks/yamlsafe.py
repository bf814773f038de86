"""A strict, safe YAML reader for untrusted request files.

PyYAML's own composer resolves YAML 1.1 scalars (``no`` is false, ``010`` is
octal, dates become ``datetime.date``), follows aliases (alias bombs) and
recurses per nesting level.  Requests are untrusted, so we walk PyYAML's
*event stream* ourselves: iteratively, refusing anchors, aliases and explicit
tags, resolving plain scalars the YAML 1.2 core way, and recording the line
and column of every key and value so that problems can point at them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from checks.yamlwords import explain

Path_ = tuple[str | int, ...]

MAX_DEPTH = 64

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1023-core-schema).
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT10 = re.compile(r"^[-+]?[0-9]+$")
_INT8 = re.compile(r"^0o[0-7]+$")
_INT16 = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")


@dataclass(frozen=True)
class Mark:
    """1-based line and column of a node."""

    line: int
    column: int


@dataclass
class Document:
    """A parsed YAML document and where each of its parts stands."""

    data: Any
    # path -> mark of the mapping key that introduced it (absent for list items)
    key_marks: dict[Path_, Mark] = field(default_factory=dict)
    # path -> mark of the value itself
    value_marks: dict[Path_, Mark] = field(default_factory=dict)

    def mark(self, path: Path_) -> Mark:
        """Where to point for *path*: its key, else its value, else the nearest parent."""
        while True:
            if path in self.key_marks:
                return self.key_marks[path]
            if path in self.value_marks:
                return self.value_marks[path]
            if not path:
                return Mark(1, 1)
            path = path[:-1]


class YamlError(Exception):
    """The document cannot be used; carries the position of the problem."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


def _mark(event: yaml.Event) -> Mark:
    return Mark(event.start_mark.line + 1, event.start_mark.column + 1)


# Longer numbers are refused: no field needs one, and Python converts decimal numbers of over 4,300 digits neither
# from nor to text, so such a value would fail later, wherever a message or a digest shows it.
MAX_NUMBER_DIGITS = 100
_TOO_LONG = (
    "this number is {digits:,} digits long, longer than any field takes; if it is text (a phone or reference "
    "number), put it in quotes"
)
_NOT_FINITE = "this number is infinite or not a number, which no field takes; write a number or put the text in quotes"


class _NumberError(ValueError):
    """A plain scalar that reads as a number no field can use (the message says why)."""


def resolve_plain(text: str) -> Any:
    """Resolve an untagged plain scalar as the YAML 1.2 core schema does; _NumberError for a number too long to
    convert or not finite."""
    if _NULL.match(text):
        return None
    if _BOOL.match(text):
        return text.lower() == "true"
    if _INT10.match(text):
        return int(_short(text), 10)
    if _INT8.match(text):
        return int(_short(text)[2:], 8)
    if _INT16.match(text):
        return int(_short(text)[2:], 16)
    if _FLOAT.match(text):
        number = float(_short(text))
        if number in (float("inf"), float("-inf")):
            raise _NumberError(_NOT_FINITE)
        return number
    if _INF.match(text) or _NAN.match(text):
        raise _NumberError(_NOT_FINITE)
    return text


def _short(number: str) -> str:
    """*number*, a plain scalar that reads as a number; _NumberError when it has more than MAX_NUMBER_DIGITS
    digits."""
    digits = sum(c.isalnum() for c in number)
    if digits > MAX_NUMBER_DIGITS:
        raise _NumberError(_TOO_LONG.format(digits=digits))
    return number


# UTF-16 halves: a "\\uD83D\\uDE00" escape in a double-quoted string leaves two of them, which are joined into the
# one character they stand for; one alone (or a pair in the wrong order) is no character and cannot be written as
# UTF-8, so it is refused where it stands.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


# Control characters other than tab and line breaks: the YAML reader refuses them written as they are, but a quoted
# string's escapes (\\0, \\e, \\x1b) still make them. No field needs one, and in a subject, a file name or a message
# printed to a terminal they hide or rewrite text; refused where they stand.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f]")


def _whole_characters(text: str, event: yaml.Event) -> str:
    """*text* with surrogate pairs joined; YamlError at the scalar for a lone half or a control character."""
    control = _CONTROL.search(text)
    if control is not None:
        m = _mark(event)
        raise YamlError(
            f"an escape in this quoted text gives the control character U+{ord(control[0]):04X}, which no field "
            "takes; remove it (write a line break as a new line in a | block instead)",
            m.line,
            m.column,
        )
    if _SURROGATE.search(text) is None:
        return text
    try:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeDecodeError:
        lone = _lone_surrogate(text)
        m = _mark(event)
        raise YamlError(
            f"a \\u escape gives U+{lone:04X}, half of a character that takes two \\u escapes in the right order "
            "(or one \\U escape with 8 digits, e.g. \\U0001F600); write the character itself or fix the escape",
            m.line,
            m.column,
        ) from None


def _lone_surrogate(text: str) -> int:
    """The first surrogate of *text* that is not part of a high-low pair."""
    i = 0
    while i < len(text):
        c = ord(text[i])
        if 0xD800 <= c <= 0xDBFF and i + 1 < len(text) and 0xDC00 <= ord(text[i + 1]) <= 0xDFFF:
            i += 2
            continue
        if 0xD800 <= c <= 0xDFFF:
            return c
        i += 1
    return 0xFFFD  # not reached: decoding failed on one


class _Container:
    """A mapping or sequence being built, with the state needed to fill it."""

    __slots__ = ("path", "pending_key", "value")

    def __init__(self, value: dict[str, Any] | list[Any], path: Path_) -> None:
        self.value = value
        self.path = path
        self.pending_key: tuple[str, Mark] | None = None


def _refuse_extras(event: yaml.Event) -> None:
    anchor = getattr(event, "anchor", None)
    if anchor is not None:
        m = _mark(event)
        raise YamlError(
            f"&{anchor} at the start of a value marks it to be repeated elsewhere, which a request cannot do; write "
            "each value out in full, and if & belongs to the text, put the whole value in quotes",
            m.line,
            m.column,
        )
    tag = getattr(event, "tag", None)
    # Quoted scalars carry the non-specific tag '!' implicitly; anything else was written.
    if tag is not None and tag != "!":
        m = _mark(event)
        written = "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org,2002:") else tag
        raise YamlError(
            f"{written} at the start of a value would change how it is read, which a request cannot do; remove it, "
            "and if ! belongs to the text, put the whole value in quotes",
            m.line,
            m.column,
        )


_NAME_NOT_PLAIN = (
    "a field's name must be a plain word before its colon, not a list or a group of fields; check this line's "
    "colons and brackets"
)


# libyaml's parser, where PyYAML was built with it, gives the same events many times faster. It differs from
# PyYAML's own parser where these characters occur (tabs as separators, a byte order mark or a Unicode line break
# inside the text, a lone surrogate, which it cannot even encode) and in where it marks an empty value, so such
# texts, and every text it refuses, are parsed by PyYAML's own parser, whose errors checks.yamlwords puts in plain
# words.
_FAST_LOADER: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)
_FAST_UNSAFE = re.compile("[\t\ufeff\x85\u2028\u2029\ud800-\udfff]")


class _Refused(Exception):
    """The fast parser cannot be relied on for this text: PyYAML's own parser is to read it."""


def loads(text: str) -> Document:
    """Parse one YAML document from *text*; raise YamlError on anything unsafe or malformed."""
    if _FAST_LOADER is not None and _FAST_UNSAFE.search(text) is None:
        try:
            return _build(text, _FAST_LOADER)
        except _Refused:
            pass
    return _build(text, yaml.SafeLoader)


def _build(text: str, loader: type[yaml.SafeLoader]) -> Document:
    doc = Document(data=None)
    stack: list[_Container] = []
    documents = 0
    root_set = False

    def place(value: Any, event: yaml.Event) -> Path_ | None:
        """Attach a finished node to its parent; return the node's path (None for keys)."""
        nonlocal root_set
        m = _mark(event)
        if not stack:
            doc.data = value
            root_set = True
            doc.value_marks[()] = m
            return ()
        top = stack[-1]
        if isinstance(top.value, list):
            path = (*top.path, len(top.value))
            top.value.append(value)
            doc.value_marks[path] = m
            return path
        if top.pending_key is None:
            if not isinstance(value, str):
                if isinstance(value, (dict, list)):
                    raise YamlError(_NAME_NOT_PLAIN, m.line, m.column)
                value = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
            if value in top.value:
                first = doc.key_marks[(*top.path, value)]
                raise YamlError(
                    f"'{value}' is written twice here (first on line {first.line}); keep only one of them",
                    m.line,
                    m.column,
                )
            top.pending_key = (value, m)
            return None
        key, key_mark = top.pending_key
        top.pending_key = None
        path = (*top.path, key)
        assert isinstance(top.value, dict)
        top.value[key] = value
        doc.key_marks[path] = key_mark
        doc.value_marks[path] = m
        return path

    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    m = _mark(event)
                    raise YamlError(
                        "a line '---' here starts a second request in the same file; a mailing.yaml holds one: "
                        "remove the '---' line (and anything after it that is not part of this request)",
                        m.line,
                        m.column,
                    )
            elif isinstance(event, yaml.AliasEvent):
                m = _mark(event)
                raise YamlError(
                    f"*{event.anchor} at the start of a value repeats another part of the file, which a request "
                    "cannot do; write the value out in full, and if * belongs to the text, put the whole value in "
                    "quotes",
                    m.line,
                    m.column,
                )
            elif isinstance(event, yaml.ScalarEvent):
                _refuse_extras(event)
                plain = event.implicit[0] and not event.style  # libyaml says '' for plain, PyYAML None
                if plain and not event.value and loader is not yaml.SafeLoader:
                    raise _Refused  # libyaml marks an empty value on the next line, PyYAML after its colon
                try:
                    value = resolve_plain(event.value) if plain else _whole_characters(event.value, event)
                except _NumberError as exc:
                    m = _mark(event)
                    raise YamlError(str(exc), m.line, m.column) from None
                place(value, event)
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                _refuse_extras(event)
                if len(stack) >= MAX_DEPTH:
                    m = _mark(event)
                    raise YamlError(
                        f"fields are indented under each other more than {MAX_DEPTH} levels deep here; a request "
                        "needs a few levels at most: check the indentation",
                        m.line,
                        m.column,
                    )
                container: dict[str, Any] | list[Any] = {} if isinstance(event, yaml.MappingStartEvent) else []
                if stack and isinstance(stack[-1].value, dict) and stack[-1].pending_key is None:
                    m = _mark(event)
                    raise YamlError(_NAME_NOT_PLAIN, m.line, m.column)
                path = place(container, event)
                stack.append(_Container(container, path if path is not None else ()))
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                stack.pop()
    except yaml.YAMLError as exc:
        if loader is not yaml.SafeLoader:
            raise _Refused from None
        told = explain(exc, text)
        raise YamlError(told.message, told.line, told.column) from None
    if not root_set:
        raise YamlError(
            "the file is empty; write the request's fields in it, one per line as name: value (mailings new ID "
            "writes a template)"
        )
    return doc

"""PyYAML's errors said in words a person who has never seen YAML can act on.

PyYAML reports what its parser expected ("expected <block end>, but found '-'") and where. The mistakes behind
those reports are few: a tab, a colon inside a value, a line indented to no level above it, an unclosed quote, a
list entry where a field was expected. This module tells them apart by the error's problem and context and by
the lines of the file around its mark, and says what to change, naming the fields involved.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

import yaml


class Told(NamedTuple):
    """A message and the 1-based line and column it is about."""

    message: str
    line: int
    column: int


# A line that starts a field: indentation, an optional list dash, the field's name, a colon and a space or the end.
_FIELD = re.compile(
    r"^(?P<indent> *)(?P<dash>- +)?(?P<key>[^\s:#'\"\[\]{}&*!|>%@`-][^:#]*?|'[^']*'|\"[^\"]*\") *:(?= |$)"
)
_ITEM = re.compile(r"^(?P<indent> *)- ")
# What makes a value need quotes, for the hint that ends a message no case recognises.
_QUOTES_WHEN = "when it contains ': ' or ' #', or begins with one of [ ] { } & * ! | > ' \" % @ `"


def explain(exc: yaml.YAMLError, text: str) -> Told:
    """*exc*, raised while parsing *text*, as a message that says what to change, at its line and column."""
    lines = text.split("\n")
    if isinstance(exc, yaml.reader.ReaderError):
        return _character(exc, text)
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return Told(f"this file cannot be read; write each field as name: value on its own line{_fallback()}", 1, 1)
    problem, context = exc.problem or "", exc.context or ""
    line, column = exc.problem_mark.line, exc.problem_mark.column  # 0-based
    context_at = (exc.context_mark.line, exc.context_mark.column) if exc.context_mark is not None else (line, column)
    # A mark can stand past the last line (the end of the text): the cases read the lines around it.
    lines += [""] * (max(line, context_at[0]) + 2 - len(lines))
    for case in (
        _tab,
        _cannot_start,
        _colon_in_value,
        _quote_not_closed,
        _escape,
        _flow_not_closed,
        _block_text,
        _dash_in_value,
        _no_colon,
        _list_entry_where_field,
        _text_after_value,
        _indentation,
    ):
        told = case(problem, context, lines, line, column, context_at)
        if told is not None:
            return told
    return Told(f"line {line + 1} cannot be read as it is written{_fallback()}", line + 1, column + 1)


def _fallback() -> str:
    return (
        "; each field is name: value on its own line, a list entry starts with '- ', fields under another field are "
        f"indented by the same number of spaces, and a value is put in quotes {_QUOTES_WHEN}"
    )


def _character(exc: yaml.reader.ReaderError, text: str) -> Told:
    before = text[: exc.position]
    line = before.count("\n") + 1
    column = exc.position - (before.rfind("\n") + 1) + 1
    code = exc.character if isinstance(exc.character, int) else 0
    return Told(
        f"the invisible character U+{code:04X} cannot stand in this file (it may have come with text pasted from "
        "another program); delete it",
        line,
        column,
    )


# Each case below: (problem, context, lines, 0-based line and column of the problem, 0-based context mark) -> Told.


def _tab(problem: str, context: str, lines: list[str], line: int, column: int, _: tuple[int, int]) -> Told | None:
    if "'\\t'" not in problem:
        return None
    text = _at(lines, line)
    tab = text.find("\t")
    at = tab if tab >= 0 else column
    if not text[:at].strip():
        return Told(
            f"line {line + 1} is indented with a tab character; indent with spaces instead (tabs cannot be used for "
            "indenting in this file)",
            line + 1,
            at + 1,
        )
    return Told("a tab character where a space is expected; use a space instead", line + 1, at + 1)


def _cannot_start(
    problem: str, context: str, lines: list[str], line: int, column: int, _: tuple[int, int]
) -> Told | None:
    found = re.match(r"found character '(.)' that cannot start any token", problem)
    if found is None:
        return None
    return Told(
        f"a value cannot begin with {found[1]}; put the whole value in quotes: {_quoted_example(lines, line)}",
        line + 1,
        column + 1,
    )


def _colon_in_value(
    problem: str, context: str, lines: list[str], line: int, column: int, _: tuple[int, int]
) -> Told | None:
    if problem != "mapping values are not allowed here":
        return None
    text = _at(lines, line)
    field = _FIELD.match(text)
    if field is None or field.end() >= column:
        return None  # the colon is the first of its line: a field that cannot stand where it is
    key = _name(field["key"])
    return Told(
        f"the value of '{key}' contains ': ', which would start another field; put the whole value in quotes: "
        f"{_quoted_example(lines, line)}",
        line + 1,
        column + 1,
    )


def _quote_not_closed(
    problem: str, context: str, lines: list[str], line: int, column: int, context_at: tuple[int, int]
) -> Told | None:
    if "quoted scalar" not in context or "end of stream" not in problem:
        return None
    opened, at = context_at
    quote = _at(lines, opened)[at : at + 1] or '"'
    return Told(
        f"the quote {quote} that begins this value is never closed; end the value with {quote} on the same line",
        opened + 1,
        at + 1,
    )


def _escape(problem: str, context: str, lines: list[str], line: int, column: int, _: tuple[int, int]) -> Told | None:
    found = re.match(r"found unknown escape character '?(.)", problem)
    if found is None:
        return None
    return Told(
        f"\\{found[1]} inside double quotes is read as a special character; write the backslash twice (\\\\), or put "
        "the value in single quotes instead",
        line + 1,
        column,
    )


def _flow_not_closed(
    problem: str, context: str, lines: list[str], line: int, column: int, context_at: tuple[int, int]
) -> Told | None:
    kind = "sequence" if "flow sequence" in context else "mapping" if "flow mapping" in context else None
    if kind is None:
        return None
    opened, at = context_at
    if kind == "sequence":
        what = "a list in brackets, such as [sv, en], and is not closed with ] on its line"
    else:
        what = "a group of fields in braces, such as {unit: it}, and is not closed with } on its line"
    return Told(
        f"the value that begins with {'[' if kind == 'sequence' else '{'} is read as {what}; close it, or, if it is "
        f"text, put the whole value in quotes: {_quoted_example(lines, opened)}",
        opened + 1,
        at + 1,
    )


def _block_text(
    problem: str, context: str, lines: list[str], line: int, column: int, context_at: tuple[int, int]
) -> Told | None:
    if "block scalar" not in context:
        return None
    opened, at = context_at
    sign = _at(lines, opened)[at : at + 1] or "|"
    return Told(
        f"a value that begins with {sign} starts a block of text on the lines below; to write text that begins with "
        f"{sign}, put the whole value in quotes: {_quoted_example(lines, opened)}",
        opened + 1,
        at + 1,
    )


def _dash_in_value(
    problem: str, context: str, lines: list[str], line: int, column: int, _: tuple[int, int]
) -> Told | None:
    if problem != "sequence entries are not allowed here":
        return None
    return Told(
        "a value on the same line as its field cannot begin with '- '; put the value in quotes, or write the list "
        "with each entry on its own line below the field, indented, starting with '- '",
        line + 1,
        column + 1,
    )


def _no_colon(problem: str, context: str, lines: list[str], line: int, column: int, _: tuple[int, int]) -> Told | None:
    """A colon that is the first of its line, after a line that is not name: value."""
    if problem != "mapping values are not allowed here" and "could not find expected ':'" not in problem:
        return None
    above = _above(lines, line)
    if above is None and "could not find" not in problem:
        return None
    number = above if above is not None else line
    text = _at(lines, number)
    if _FIELD.match(text) or _ITEM.match(text) or text.rstrip().endswith(":"):
        return None
    tight = re.match(r"^ *(?:- +)?([^\s:#]+):(\S.*)$", text)
    if tight is not None:
        return Told(
            f"put a space after the colon on line {number + 1}: {tight[1]}: {tight[2]}",
            number + 1,
            text.find(":") + 2,
        )
    words = text.strip()
    return Told(
        f"line {number + 1} ({_clip(words)}) is not written as name: value; put a colon and a space after the "
        "field's name, or, if it continues the text of the line above it, put that whole value in quotes",
        number + 1,
        _indent(text) + 1,
    )


def _list_entry_where_field(
    problem: str, context: str, lines: list[str], line: int, column: int, context_at: tuple[int, int]
) -> Told | None:
    if "but found '-'" not in problem:
        return None
    text = _at(lines, line)
    entry = _clip(text.strip())
    owner = _owner(lines, context_at[0], context_at[1])
    where = f"a field of '{owner}'" if owner else "a field"
    earlier = _earlier_item(lines, line, _indent(text))
    if earlier is not None:
        item_line, listed = earlier
        return Told(
            f"the list entry {entry} stands where {where} (name: value) was expected: the entries of "
            f"'{listed}' must follow one another; move it up to the other entries of '{listed}' (line {item_line + 1})",
            line + 1,
            column + 1,
        )
    return Told(
        f"the list entry {entry} stands where {where} (name: value) was expected; write it as name: value, or, if "
        "it belongs to a list, put it right below the list's name and indent it",
        line + 1,
        column + 1,
    )


def _text_after_value(
    problem: str, context: str, lines: list[str], line: int, column: int, _: tuple[int, int]
) -> Told | None:
    """Something after a value that ended before the end of its line: a closing quote or bracket."""
    if "but found '<scalar>'" not in problem and "but found '<block mapping start>'" not in problem:
        return None
    text = _at(lines, line)
    if column <= _indent(text):
        return None  # at the start of the line: an indentation problem
    before = text[:column].rstrip()
    end = before[-1:] if before else ""
    opened = _open_quote_above(lines, line, end) if end in "\"'" and before.count(end) % 2 == 1 else None
    if opened is not None:
        return Told(
            f"the quote {end} that begins the value on line {opened + 1} is not closed on that line; close it there",
            opened + 1,
            _at(lines, opened).find(end) + 1,
        )
    field = _FIELD.match(text)
    key = _name(field["key"]) if field else "this field"
    if end in "\"'":
        other = '"' if end == "'" else "'"
        return Told(
            f"the value of '{key}' ends at its second {end}, so the text after it cannot be read; put the whole value "
            f"in quotes, and if it contains {end} itself, use {other} around it: {_quoted_example(lines, line)}",
            line + 1,
            column + 1,
        )
    if end in "]}":
        return Told(
            f"the value of '{key}' begins with {'[' if end == ']' else '{'}, which makes the part up to {end} a "
            f"list or a group of fields, and the text after it cannot be read; put the whole value in quotes: "
            f"{_quoted_example(lines, line)}",
            line + 1,
            column + 1,
        )
    return None


def _indentation(
    problem: str, context: str, lines: list[str], line: int, column: int, context_at: tuple[int, int]
) -> Told | None:
    """A line indented to no level of the lines above it, or further than a field that already has a value."""
    text = _at(lines, line)
    if problem == "mapping values are not allowed here":
        return _further(lines, line)
    if "expected <block end>" not in problem or column > _indent(text):
        return None
    if text.lstrip().startswith(":"):
        return Told(f"line {line + 1} begins with ':'; write the field's name before it", line + 1, column + 1)
    field = _FIELD.match(text)
    if field is not None and not field["dash"]:
        name = f"'{_name(field['key'])}'"
    elif _ITEM.match(text):
        name = f"the list entry {_clip(text.strip())}"
    else:
        name = f"line {line + 1}"
    levels = _levels(lines, line)
    deeper = next(((k, n) for k, n, _ in levels if k > column), None)  # the nearest level on each side
    shallower = next(((k, n) for k, n, _ in reversed(levels) if k < column), None)
    if deeper is None:
        further = _further(lines, line)
        if further is not None:
            return further
    choices: list[str] = []
    if deeper is not None:
        home = _owner(lines, _line_of(levels, deeper), deeper[0])
        under = f", under '{home}'" if home else ""
        choices.append(f"by {deeper[0]} spaces, as {deeper[1]} is{under}")
    if shallower is not None:
        home = _owner(lines, _line_of(levels, shallower), shallower[0])
        under = f"under '{home}'" if home else "at the top level of the file"
        choices.append(f"by {shallower[0]} spaces, as {shallower[1]} is, {under}")
    spaces = f"{column} space{'s' if column != 1 else ''}"
    return Told(
        f"{name} is indented by {spaces}, which lines up with none of the lines above it; indent it "
        + "; or ".join(choices or ["as far as the fields it belongs with"]),
        line + 1,
        column + 1,
    )


def _further(lines: list[str], line: int) -> Told | None:
    """The field on *line* indented further than the field above it, which has a value of its own."""
    text = _at(lines, line)
    above = _above(lines, line)
    field = _FIELD.match(text)
    prior = _FIELD.match(_at(lines, above)) if above is not None else None
    if field is None or prior is None or above is None or _key_column(field) <= _key_column(prior):
        return None
    if not _at(lines, above)[prior.end() :].strip():
        return None  # the field above has no value: this one may well belong under it
    name, prior_name = _name(field["key"]), _name(prior["key"])
    prior_column = _key_column(prior)
    owner = _owner(lines, above, prior_column)
    purpose = f", to make it a field of '{owner}' as '{prior_name}' is" if owner else ""
    empty = _empty_field_above(lines, above, prior_column)
    if empty is not None:
        # "sender:" with its fields written flush left under it: they belong under it, both of them.
        purpose += (
            f"; or, if both belong under '{empty}' on the line above, indent '{prior_name}' and '{name}' alike, "
            f"by {prior_column + 2} spaces"
        )
    return Told(
        f"'{name}' is indented further than '{prior_name}' on line {above + 1}, as if it belonged under "
        f"'{prior_name}', which already has a value; indent '{name}' by {prior_column} spaces{purpose}",
        line + 1,
        _indent(text) + 1,
    )


def _open_quote_above(lines: list[str], line: int, quote: str) -> int | None:
    """The nearest line above *line* whose value begins with *quote* and leaves it open."""
    return next((number for number, text in _content_above(lines, line) if _opens_quote(text, quote)), None)


def _empty_field_above(lines: list[str], line: int, column: int) -> str | None:
    """The field right above *line* at the same *column* that has no value of its own, if there is one."""
    above = _above(lines, line)
    field = _FIELD.match(_at(lines, above)) if above is not None else None
    if field is None or above is None or _key_column(field) != column or _at(lines, above)[field.end() :].strip():
        return None
    return _name(field["key"])


def _opens_quote(text: str, quote: str) -> bool:
    """Whether the value on *text* begins with *quote* and does not end with it: a quote left open."""
    field = _FIELD.match(text)
    value = text[field.end() :].strip() if field else ""
    return value.startswith(quote) and (len(value) == 1 or not value.endswith(quote))


def _levels(lines: list[str], line: int) -> list[tuple[int, str, int]]:
    """The columns at which the fields above *line* start, each with the nearest field there: (column, 'name',
    line), from the leftmost."""
    found: dict[int, tuple[str, int]] = {}
    limit = None
    for number, text in _content_above(lines, line):
        field = _FIELD.match(text)
        item = _ITEM.match(text)
        if field is not None:
            column = _key_column(field)
            if (limit is None or column <= limit) and column not in found:
                found[column] = (f"'{_name(field['key'])}'", number)
            if field["dash"] and (limit is None or _indent(text) <= limit):
                found.setdefault(_indent(text), (f"the list entry on line {number + 1}", number))
        elif item is not None and (limit is None or _indent(text) <= limit) and _indent(text) not in found:
            found[_indent(text)] = (f"the list entry on line {number + 1}", number)
        limit = min(limit, _indent(text)) if limit is not None else _indent(text)
        if limit == 0 and 0 in found:
            break
    return [(column, name, number) for column, (name, number) in sorted(found.items())]


def _line_of(levels: list[tuple[int, str, int]], level: tuple[int, str]) -> int:
    return next(number for column, name, number in levels if (column, name) == level)


def _owner(lines: list[str], line: int, column: int) -> str | None:
    """The field that the line *line*, whose content starts at *column*, stands under; None at the top level."""
    for _, text in _content_above(lines, line):
        field = _FIELD.match(text)
        if field is not None and _key_column(field) < column and _indent(text) < column:
            return _name(field["key"])
        if _indent(text) < column and _ITEM.match(text) is None and field is None:
            return None
    return None


def _earlier_item(lines: list[str], line: int, indent: int) -> tuple[int, str] | None:
    """An earlier list entry at *indent*, with the name of its list, when a field stands between it and *line*."""
    for number, text in _content_above(lines, line):
        if _indent(text) < indent:
            return None
        if _indent(text) == indent and _ITEM.match(text):
            listed = _owner(lines, number, indent + 1)
            return (number, listed) if listed else None
    return None


def _above(lines: list[str], line: int) -> int | None:
    """The nearest line above *line* with content other than a comment."""
    return next((number for number, _ in _content_above(lines, line)), None)


def _content_above(lines: list[str], line: int) -> Iterator[tuple[int, str]]:
    """The lines above *line* with content other than a comment, nearest first, each with its 0-based number."""
    for number in range(line - 1, -1, -1):
        text = lines[number]
        if text.strip() and not text.lstrip().startswith("#"):
            yield number, text


def _quoted_example(lines: list[str], line: int) -> str:
    """The line *line* with its value in quotes, as an example of the fix."""
    text = _at(lines, line).strip()
    field = _FIELD.match(text)
    if field is None:
        return f'"{_clip(text)}"'
    value = text[field.end() :].strip()
    if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]  # quoted already, wrongly: quote it anew
    if '"' in value and "'" not in value:
        quoted = f"'{value}'"
    else:
        quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _clip(f"{field['dash'] or ''}{field['key']}: {quoted}", 100)


def _at(lines: list[str], line: int) -> str:
    return lines[line] if 0 <= line < len(lines) else ""


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def _key_column(field: re.Match[str]) -> int:
    return len(field["indent"]) + len(field["dash"] or "")


def _name(key: str) -> str:
    return key.strip().strip("'\"")


def _clip(text: str, size: int = 60) -> str:
    return text if len(text) <= size else text[: size - 3] + "..."

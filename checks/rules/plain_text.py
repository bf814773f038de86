"""[plain-text] Bodies are plain text: no formatting, no colours, no markup.

A body is UTF-8 without a byte-order mark, with LF line endings and no
control characters but the newline (a tab is a warning). ANSI terminal codes,
HTML tags and entities, and Markdown markup (emphasis and strong, inline
links and images, ``#`` headings, code spans and fences, strikethrough),
found by parsing the body with markdown-it-py, are errors: recipients would
see them as stray characters. A line over 998 octets is an error (the mail
format's limit), over 78 characters a warning.

Plain-text habits are fine: ``-`` and ``1.`` lists, separator lines
(``----``, ``====``, ``****``), an underlined title, underscores inside words
and addresses (``first_name``, ``user_name@kth.se``), a lone asterisk, bare
addresses and ``<https://...>``, quoted (``>``) and indented text.

Passes::

    Hello!

    - Book travel at https://www.kth.se/travel
    - Questions: first_name.last_name@kth.se
    ----

Fails::

    **Important**: read <b>this</b> &amp; [the page](https://www.kth.se/x)
    # New system
    ```
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from checks.bodies import BOM, body_text, sent_bodies, split_lines
from checks.model import Body, Context, Finding, Level, Loc, Mailing, Stage, error, warning
from checks.policy import Policy

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

ID = "plain-text"
STAGES: tuple[Stage, ...] = ("submit", "send")

MAX_LINE_OCTETS = 998  # RFC 5322 section 2.1.1: a hard limit
MAX_LINE_CHARS = 78  # RFC 5322 section 2.1.1: what every mail program shows unwrapped

# Every piece of markup the rule reports is made of one of these: emphasis and strong (* _), strikethrough
# and fences (~ `), code spans, headings, links and images ([, "![" holds it too), HTML tags and entities.
# A body with none of them has no markup to find, and is not parsed (loading markdown-it-py is most of the
# rule's time on such a body).
MARKUP_CHARACTERS = frozenset("*_~`#[<&")


@cache
def _markdown() -> MarkdownIt:
    """CommonMark plus strikethrough, with three changes so that plain text reads as plain text:
    indented lines are text (not code blocks), "[1]: https://..." footnotes are text (not link
    definitions), and HTML is only ever inline, so that a line that looks like a tag cannot hide
    the lines below it from the checks."""
    from markdown_it import MarkdownIt

    return (
        MarkdownIt("commonmark", {"html": True})
        .enable("strikethrough")
        .disable(["code", "reference", "html_block", "text_join"])
    )


_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_]?)")
_TAG_NAME = re.compile(r"</?([A-Za-z][A-Za-z0-9-]*)")

# Tags that a browser or mail program would render; "<your name>" in a text is a placeholder, not HTML.
_ELEMENT_NAMES = """
    a abbr address area article aside audio b base bdi bdo big blink blockquote body br button canvas caption
    center cite code col colgroup data datalist dd del details dfn dialog dir div dl dt em embed fieldset figcaption
    figure font footer form frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr html i iframe img input ins kbd
    label legend li link main map mark marquee menu meta meter nav noscript object ol optgroup option output p param
    picture pre progress q rp rt ruby s samp script section select small source span strike strong style sub summary
    sup svg table tbody td template textarea tfoot th thead time title tr track tt u ul var video wbr
"""
HTML_ELEMENTS = frozenset(_ELEMENT_NAMES.split())

_EMPHASIS = {
    "em_open": "Markdown emphasis",
    "strong_open": "Markdown bold",
    "s_open": "Markdown strikethrough",
}


@dataclass(frozen=True)
class _Spot:
    """A problem found in a body, before it is placed in its file."""

    line: int  # 1-based
    column: int  # 1-based, in characters
    level: Level
    message: str


def check(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    for body in sent_bodies(mailing):
        for spot in body_spots(body):
            loc = Loc(body.file, spot.line, spot.column)
            yield error(loc, spot.message) if spot.level == "error" else warning(loc, spot.message)


def body_spots(body: Body) -> Iterator[_Spot]:
    raw = body.raw
    if raw.startswith(BOM):
        yield _Spot(
            1, 1, "error", "the file starts with a byte-order mark (BOM); save it as UTF-8 without BOM (plain UTF-8)"
        )
    yield from _encoding(raw.removeprefix(BOM))
    text = body_text(raw)
    yield from _line_endings(text)
    lines = split_lines(text)
    for number, line in enumerate(lines, start=1):
        yield from _characters(number, line)
        yield from _length(number, line)
    yield from _markup(lines)


def _encoding(raw: bytes) -> Iterator[_Spot]:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(raw[: exc.start].decode("utf-8"))
        yield _Spot(
            line,
            column,
            "error",
            f"the text is not valid UTF-8 from here on (byte 0x{raw[exc.start]:02X}); save the file with the "
            "UTF-8 encoding",
        )


def _position(prefix: str) -> tuple[int, int]:
    """Line and column just after *prefix*, counted as split_lines counts lines."""
    lines = split_lines(prefix)
    return len(lines), len(lines[-1]) + 1


def _line_endings(text: str) -> Iterator[_Spot]:
    # Once per file: every line of a Windows file would otherwise be reported.
    at = text.find("\r")
    if at < 0:
        return
    line, column = _position(text[:at])
    kind = "Windows (CRLF)" if text.startswith("\r\n", at) else "carriage-return (CR)"
    yield _Spot(line, column, "error", f"the file has {kind} line endings; save it with LF (Unix) line endings")


def _characters(number: int, line: str) -> Iterator[_Spot]:
    """The first tab, ANSI code and other control character on a line, one of each."""
    seen: set[str] = set()
    index = 0
    while index < len(line):
        found = _character(line, index)
        if found is not None and found[0] not in seen:
            seen.add(found[0])
            yield _Spot(number, index + 1, found[1], found[2])
        # An ANSI code is one problem, not one per character it holds.
        code = _ANSI.match(line, index) if line[index] == "\x1b" else None
        index = code.end() if code is not None and code.end() > index else index + 1


def _character(line: str, index: int) -> tuple[str, Level, str] | None:
    """(kind, level, message) when the character at *index* does not belong in plain text."""
    ch = line[index]
    if ch == "\t":
        return "tab", "warning", _TAB
    if ch == "\x1b":
        code = _ANSI.match(line, index)
        shown = _visible(code.group(0) if code else ch)
        return "ansi", "error", _ANSI_MESSAGE.format(shown)
    if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
        return "control", "error", _CONTROL.format(ord(ch))
    return None


def _visible(code: str) -> str:
    """An escape sequence as it can be printed, shortened: ESC[31m."""
    code = code if len(code) <= 24 else code[:21] + "..."
    return "".join(
        "ESC" if ch == "\x1b" else f"\\x{ord(ch):02x}" if unicodedata.category(ch) == "Cc" else ch for ch in code
    )


_TAB = "a tab character; mail programs show tabs at different widths: use spaces"
_ANSI_MESSAGE = (
    "an ANSI terminal code ({}) sets colours or formatting, which a plain-text mailing cannot have; remove it "
    "(copy the text from an editor, not from a terminal)"
)
_CONTROL = "the invisible control character U+{:04X}; remove it, a body may hold only text, newlines and spaces"


def _length(number: int, line: str) -> Iterator[_Spot]:
    octets = len(line.encode("utf-8", errors="replace"))
    if octets > MAX_LINE_OCTETS:
        column = _column_at_octet(line, MAX_LINE_OCTETS)
        yield _Spot(
            number,
            column,
            "error",
            f"the line is {octets} bytes long; mail cannot carry lines over {MAX_LINE_OCTETS} bytes: break it into "
            f"lines of at most {MAX_LINE_CHARS} characters",
        )
    elif len(line) > MAX_LINE_CHARS:
        yield _Spot(
            number,
            MAX_LINE_CHARS + 1,
            "warning",
            f"the line is {len(line)} characters long; break it at {MAX_LINE_CHARS} characters so that every mail "
            "program shows it as written",
        )


def _column_at_octet(line: str, limit: int) -> int:
    """The column of the first character that ends beyond *limit* octets."""
    used = 0
    for index, ch in enumerate(line):
        used += len(ch.encode("utf-8", errors="replace"))
        if used > limit:
            return index + 1
    return len(line) + 1


# Markup found by markdown-it-py. Inline tokens carry no positions, so each one is found in the
# source by walking its block's text in token order with a cursor.


def _markup(lines: list[str]) -> Iterator[_Spot]:
    source = "\n".join(lines).replace("\0", "\ufffd")  # as markdown-it-py normalises it
    if not MARKUP_CHARACTERS.isdisjoint(source):
        yield from parsed_markup(source, lines)


def parsed_markup(source: str, lines: list[str]) -> Iterator[_Spot]:
    """The markup markdown-it-py finds in *source*, the body's *lines* joined."""
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    seen: set[tuple[int, str]] = set()
    for token in _markdown().parse(source):
        if token.map is None:
            continue
        first = token.map[0]
        if token.type == "heading_open" and token.markup.startswith("#"):
            yield _Spot(first + 1, lines[first].find("#") + 1, "error", _HEADING)
        elif token.type == "fence":
            yield _Spot(first + 1, lines[first].find(token.markup) + 1, "error", _FENCE.format(token.markup))
        elif token.type == "inline" and token.children:
            end = starts[token.map[1]] if token.map[1] < len(starts) else len(source)
            for offset, message in _inline(source, (starts[first], end), token.children):
                line = bisect.bisect_right(starts, offset) - 1
                if (line, message) not in seen:  # the same markup once per line is enough to act on
                    seen.add((line, message))
                    yield _Spot(line + 1, offset - starts[line] + 1, "error", message)


_HEADING = (
    "a Markdown heading ('#'); recipients see the hash marks: write the heading as a line of its own "
    "(underline it with ==== if you like)"
)
_FENCE = "a Markdown code fence ({}); recipients see the fence: remove the fence lines"


def _inline(source: str, block: tuple[int, int], children: list[Token]) -> Iterator[tuple[int, str]]:
    """(offset in *source*, message) for each piece of markup among an inline token's children."""
    cursor, limit = block
    for token in children:
        span = _locate(source, cursor, limit, token)
        if span is None:
            continue
        start, cursor = span
        message = _inline_message(token)
        if message is not None:
            yield start, message


def _locate(source: str, cursor: int, limit: int, token: Token) -> tuple[int, int] | None:
    """Where *token* was written, searching from *cursor* up to *limit*: (start, end) offsets, or None."""
    kind, autolink = token.type, token.markup == "autolink"
    if kind in ("text", "html_inline"):
        needle = token.content
    elif kind == "link_open":
        needle = "<" if autolink else "["  # <https://...> is how plain text marks an address
    elif kind == "link_close" and autolink:
        needle = ">"
    elif kind == "image":
        needle = "!["
    elif kind == "link_close":
        needle = "]("
    else:
        needle = token.markup  # emphasis, code spans, escapes and entities: the markup as written
    start = source.find(needle, cursor, limit) if needle else -1
    if start < 0:
        return None
    end = start + len(needle)
    if kind == "code_inline":
        closing = source.find(needle, end + len(token.content), limit)
        end = closing + len(needle) if closing >= 0 else end
    elif kind in ("image", "link_close") and not autolink:
        end = _after_destination(source, source.find("](", start, limit), limit)
    return start, max(end, start + 1)


def _inline_message(token: Token) -> str | None:
    kind = token.type
    if kind == "html_inline" and _is_html(token.content):
        return _html_message(token.content)
    if kind == "text_special" and token.info == "entity":
        return _ENTITY.format(token.markup)
    if kind in _EMPHASIS:
        return _EMPHASIS_MESSAGE.format(_EMPHASIS[kind], token.markup)
    if kind == "code_inline":
        return _CODE
    if kind == "link_open" and token.markup != "autolink":
        return _LINK
    if kind == "image":
        return _IMAGE
    return None


def _after_destination(source: str, at: int, limit: int) -> int:
    """Just after the ')' that closes a link destination starting at *at* ('](')."""
    if at < 0:
        return -1
    depth = 0
    index = at + 1
    while index < limit:
        ch = source[index]
        if ch == "\\":
            index += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return -1


def _is_html(content: str) -> bool:
    if content.startswith(("<!", "<?")):
        return True  # comments, declarations, processing instructions
    name = _TAG_NAME.match(content)
    return name is not None and name.group(1).lower() in HTML_ELEMENTS


def _html_message(content: str) -> str:
    shown = content if len(content) <= 30 else content[:27] + "..."
    what = "an HTML comment" if content.startswith("<!--") else "HTML"
    return (
        f"{what} ({shown}); a mass mailing is plain text and recipients would see the markup as written: "
        "remove it and write the text alone"
    )


_ENTITY = "the HTML entity '{}'; plain text shows it as written: type the character itself instead"
_EMPHASIS_MESSAGE = (
    "{} ('{}'); a mass mailing is plain text and recipients see the markers as written: remove them "
    "(write emphasis in words, or in CAPITALS sparingly)"
)
_CODE = "a Markdown code span (`...`); recipients see the backticks: remove them"
_LINK = (
    "a Markdown link [text](address); recipients see the brackets: write the text, then the address itself "
    "(Read more: https://...)"
)
_IMAGE = "a Markdown image ![...](...); mass mailings have no images: remove it, or link to a web page that shows it"

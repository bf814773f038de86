"""[plain-text] Bodies are plain text: no formatting, no colours, no markup, nothing hidden.

A body is UTF-8 without a byte-order mark, with no control characters but
the newline (a tab is a warning). Windows (CRLF) line endings are fine: the
lines are read, and sent, the same either way; a lone carriage return (old
Mac line endings) is an error. ANSI terminal codes, HTML tags and entities,
and Markdown markup (emphasis and strong, inline links and images, ``#``
headings, code spans and fences, strikethrough), found by parsing the body
with markdown-it-py, are errors: recipients would see them as stray
characters.

Invisible formatting is shown as ``U+XXXX`` at its line and column. Errors:
bidirectional controls of every kind (U+061C, U+200E, U+200F,
U+202A-U+202E, U+2066-U+2069), which make mail programs show the text in
another order than it was reviewed in, and tag characters
(U+E0000-U+E007F), which hide text from readers. Warnings: zero-width
characters (U+200B, U+200C, U+200D, U+2060, U+FEFF; a joiner inside an emoji
is part of it), the soft hyphen U+00AD, every other format character and the
Hangul fillers (letters that show as nothing). Each is reported once per
line; a run of tag characters once, with the text it hides.

A line over 78 characters is a warning; so is a line over 998 octets (the
mail format's limit), which the sender encodes as quoted-printable.

Plain-text habits are fine: ``-`` and ``1.`` lists, separator lines
(``----``, ``====``, ``****``), an underlined title, underscores inside words
and addresses (``first_name``, ``user_name@kth.se``), a lone asterisk, bare
addresses and ``<https://...>``, quoted (``>``) and indented text, emoji.

Passes::

    Hello!\\r\\n                          (CRLF line endings)

    - Book travel at https://www.kth.se/travel
    - Questions: first_name.last_name@kth.se
    ----

Fails::

    **Important**: read <b>this</b> &amp; [the page](https://www.kth.se/x)
    # New system
    ```
    Pay to account 1234\\u202e5678      (error: U+202E, right-to-left override)
    Hello\\U000e0068\\U000e0069          (error: tag characters hiding "hi")
    Log\\u00adin at\\u200bhttps://...     (warnings: U+00AD, U+200B)
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

MAX_LINE_OCTETS = 998  # RFC 5322 section 2.1.1: longer lines must be encoded
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
    # Windows (CRLF) line endings are read and sent as LF; a lone CR is not a line ending any editor of today
    # writes. Once per file: every line of such a file would otherwise be reported.
    found = _LONE_CR.search(text)
    if found is None:
        return
    line, column = _position(text[: found.start()])
    yield _Spot(
        line,
        column,
        "error",
        "the file has carriage-return (CR) line endings, as old Macs wrote them; save it with LF (Unix) or CRLF "
        "(Windows) line endings",
    )


_LONE_CR = re.compile(r"\r(?!\n)")


# Every character _character may report: control characters, line and paragraph separators, format
# characters (Unicode category Cf, as of Unicode 15.1) and the Hangul fillers. A line without any is not
# looked at character by character.
_SUSPECT = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160"
    "\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\u3164\ufeff\uffa0\ufff9-\ufffb\U000110bd"
    "\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e007f]"
)
# The same without the control characters: what invisible_in looks for.
_INVISIBLE = re.compile(
    "[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\u3164\ufeff\uffa0\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e007f]"
)

BIDI_CONTROLS = frozenset({0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)})
ZERO_WIDTH = frozenset({0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF})
SOFT_HYPHEN = 0x00AD
TAGS = range(0xE0000, 0xE0080)
HANGUL_FILLERS = frozenset({0x115F, 0x1160, 0x3164, 0xFFA0})
_ZWJ = "\u200d"
_RETYPE = "type the text again, or paste it as plain text"


@dataclass(frozen=True)
class Invisible:
    """A character (or a run of tag characters) that readers cannot see, in words for a message."""

    start: int  # index in the text
    end: int
    level: Level
    what: str  # "the invisible character U+202E (right-to-left override)"
    why: str  # what it does, and what to do


def invisible_in(text: str) -> Iterator[Invisible]:
    """Every invisible formatting character in *text*, a run of tag characters as one."""
    found = _INVISIBLE.search(text)
    while found is not None:
        spot = invisible_at(text, found.start())
        if spot is not None:
            yield spot
        found = _INVISIBLE.search(text, spot.end if spot is not None else found.start() + 1)


def invisible_at(text: str, index: int) -> Invisible | None:
    """The invisible character at *index* of *text*, or None (a visible one, or a joiner inside an emoji)."""
    ch = text[index]
    point = ord(ch)
    name = _name(ch)
    if point in BIDI_CONTROLS:
        return Invisible(
            index,
            index + 1,
            "error",
            f"the invisible character U+{point:04X} ({name})",
            "it changes the order in which mail programs show the text, so that recipients may read something "
            f"other than what the reviewers read: remove it ({_RETYPE})",
        )
    if point in TAGS:
        return _tags(text, index)
    if point in ZERO_WIDTH:
        if ch == _ZWJ and _joins_emoji(text, index):
            return None
        return Invisible(
            index,
            index + 1,
            "warning",
            f"the invisible character U+{point:04X} ({name})",
            "recipients cannot see it, but it splits or joins words where the text shows nothing, so that "
            "searching, copying and links go wrong: remove it (delete the characters around it and type them again)",
        )
    if point == SOFT_HYPHEN:
        return Invisible(
            index,
            index + 1,
            "warning",
            f"the invisible soft hyphen U+{point:04X}",
            "mail programs show it as a hyphen or not at all, each as it pleases: remove it (delete the word and "
            "type it again)",
        )
    if point in HANGUL_FILLERS:
        return Invisible(
            index,
            index + 1,
            "warning",
            f"the character U+{point:04X} ({name})",
            "a letter that shows as nothing: remove it",
        )
    if unicodedata.category(ch) == "Cf":
        return Invisible(
            index,
            index + 1,
            "warning",
            f"the formatting character U+{point:04X} ({name})",
            "mail programs show it differently or not at all: remove it unless the text needs it",
        )
    return None


def _name(ch: str) -> str:
    return unicodedata.name(ch, "unnamed").lower()


def _tags(text: str, start: int) -> Invisible:
    """A run of tag characters: they spell ASCII text that readers do not see, but programs do."""
    end = start
    while end < len(text) and ord(text[end]) in TAGS:
        end += 1
    hidden = "".join(chr(ord(ch) - 0xE0000) for ch in text[start:end] if 0xE0020 <= ord(ch) <= 0xE007E)
    shown = hidden if len(hidden) <= 40 else hidden[:37] + "..."
    first, last = ord(text[start]), ord(text[end - 1])
    what = (
        f"the invisible tag character U+{first:04X}"
        if end - start == 1
        else f"{end - start} invisible tag characters (U+{first:04X} to U+{last:04X})"
    )
    hides = (
        f"they hide the text {shown!r} from readers, while programs that read the mail see it"
        if hidden
        else ("they hide text from readers, while programs that read the mail see it")
    )
    return Invisible(start, end, "error", what, f"{hides}: remove them ({_RETYPE})")


def _joins_emoji(text: str, index: int) -> bool:
    """True for a zero-width joiner between two parts of one emoji (a family, a profession: 👩‍💻)."""
    if index == 0 or index + 1 >= len(text):
        return False
    before, after = text[index - 1], text[index + 1]
    emoji_before = unicodedata.category(before) in ("So", "Sk") or before == "\ufe0f"  # VS16: shown as emoji
    return emoji_before and unicodedata.category(after) == "So"


def _characters(number: int, line: str) -> Iterator[_Spot]:
    """The first tab, ANSI code and other control character on a line, one of each, and each invisible
    character once."""
    seen: set[str] = set()
    found = _SUSPECT.search(line)
    while found is not None:
        index = found.start()
        end = index + 1
        if line[index] == "\x1b":  # an ANSI code is one problem, not one per character it holds
            code = _ANSI.match(line, index)
            end = code.end() if code is not None and code.end() > index else end
        control = _character(line, index)
        if control is not None:
            if control[0] not in seen:
                seen.add(control[0])
                yield _Spot(number, index + 1, control[1], control[2])
        else:
            spot = invisible_at(line, index)
            if spot is not None:
                end = spot.end
                if spot.what not in seen:
                    seen.add(spot.what)
                    yield _Spot(number, index + 1, spot.level, f"{spot.what}; {spot.why}")
        found = _SUSPECT.search(line, end)


def _character(line: str, index: int) -> tuple[str, Level, str] | None:
    """(kind, level, message) when the character at *index* is a control character."""
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
    if len(line) <= MAX_LINE_CHARS:
        return  # not even 78 characters can be more than 998 octets (4 octets a character at most)
    octets = len(line.encode("utf-8", errors="replace"))
    if octets > MAX_LINE_OCTETS:
        # The sender encodes such a line (quoted-printable), so it arrives whole; but it is a wall of text.
        yield _Spot(
            number,
            _column_at_octet(line, MAX_LINE_OCTETS),
            "warning",
            f"the line is {octets} bytes long, more than the {MAX_LINE_OCTETS} a line of mail may have, so the sender "
            f"has to encode it; break it into lines of at most {MAX_LINE_CHARS} characters so that every mail program "
            "shows it as written",
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

"""Markdown that shows untrusted text literally, for the reviewer's plan and the markdown reporter.

Everything a request says is somebody's text, so none of it reaches the Markdown
raw: inline text has every ASCII punctuation mark backslash-escaped and its line
breaks flattened (so it cannot open HTML, a link, an image, a heading or a
checklist item), invisible characters are shown as ``[U+XXXX]``, literal values
sit in code spans, and whole messages in fenced blocks whose fence is longer
than any backtick run inside.
"""

from __future__ import annotations

import re
import unicodedata

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_LINE_BREAKS = frozenset("\n\r\t\v\f\x1c\x1d\x1e\x85\u2028\u2029")
_BACKTICKS = re.compile(r"`+")


def visible(value: str) -> str:
    """*value* on one line, with invisible and control characters shown as [U+XXXX]."""
    out: list[str] = []
    for ch in value:
        if ch in _LINE_BREAKS:
            out.append(" ")
        elif unicodedata.category(ch).startswith("C"):
            out.append(f"[U+{ord(ch):04X}]")
        else:
            out.append(ch)
    return "".join(out)


def text(value: str) -> str:
    """Inline Markdown that shows *value* literally: no markup of its own can take effect."""
    return _PUNCTUATION.sub(r"\\\1", visible(value))


def code(value: str) -> str:
    """A code span showing *value* literally, delimited by more backticks than it holds in a row."""
    flat = visible(value)
    longest = max((len(run) for run in _BACKTICKS.findall(flat)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {flat} {fence}"


def fenced(body: str, info: str = "text") -> str:
    """A fenced code block that nothing in *body* can close early."""
    body = body.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")
    lines = [_visible_keep_tabs(line) for line in body.split("\n")]
    longest = max((len(run) for run in _BACKTICKS.findall(body)), default=0)
    fence = "`" * max(3, longest + 1)
    return "\n".join([f"{fence}{info}", *lines, fence])


def _visible_keep_tabs(line: str) -> str:
    return "\t".join(visible(part) for part in line.split("\t"))

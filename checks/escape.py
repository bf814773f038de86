"""One way to print a name that came from a request: escaped.

Mailing ids (directory names), file names, subjects, reasons and the like are untrusted text. Printed as they are,
a line break would forge a line of a log or a commit message, an ANSI escape would rewrite a terminal, and a
bidirectional control would reorder what a reviewer reads. Every printing point (check's reports, plan's text
outside Markdown, status, send, commit messages, logs) passes such text through `escaped`.
"""

from __future__ import annotations


def escaped(text: str) -> str:
    """*text* with every character that is not printable written as its escape: line breaks as ``\\n``, control
    characters and ANSI escapes as ``\\x1b``, invisible formatting and lone surrogates as ``\\u202e``. Printable
    text, the usual case, comes back as it is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)

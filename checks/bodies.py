"""Body text as the rules read it: which bodies are sent, decoded, split into lines.

The content, plain-text and links rules share these so that a line number
means the same in all of their messages.
"""

from __future__ import annotations

from checks.model import Body, Mailing

BOM = b"\xef\xbb\xbf"


def sent_bodies(mailing: Mailing) -> list[Body]:
    """The bodies of the declared languages, in their declared order.

    While mailing.yaml cannot be read the languages are unknown; then every
    body is checked, so that its problems are not hidden behind the YAML one.
    """
    if mailing.doc is None:
        return [mailing.bodies[lang] for lang in sorted(mailing.bodies)]
    return [mailing.bodies[lang] for lang in dict.fromkeys(mailing.languages) if lang in mailing.bodies]


def body_text(raw: bytes) -> str:
    """The text of a body: a leading BOM dropped, bytes that are not UTF-8 shown as U+FFFD."""
    return raw.removeprefix(BOM).decode("utf-8", errors="replace")


def split_lines(text: str) -> list[str]:
    """Lines as an editor shows them: LF, CRLF and a lone CR all end a line."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")

"""A message as a mail client shows it: From, To, Subject and Date, then the body soft-wrapped.

Shared by the reviewer's plan and the calendar site. A `Letter` is the message decoded (every header in order,
the body as text); `client_lines` is what a reader sees in a mail program: the four headers a client shows, the
date in the organisation's time zone, and the body wrapped at about 76 columns the way a client soft-wraps a
long line (format=flowed, RFC 3676): at spaces only, so a link is never broken, with a quoted line's '>' marks
carried onto its continuations. `raw_text` keeps every header and the body as sent, line for line.

Nothing here builds or sends a message: sender.message makes the Letter (`preview_letter`).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import AddressHeader
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

from checks.calendar import MONTHS, WEEKDAYS

WIDTH = 76  # where a client's soft wrap falls, within format=flowed's 72-78
SHOWN_HEADERS = ("From", "To", "Subject", "Date")


@dataclass(frozen=True)
class Letter:
    """A message decoded for reading: every header (name, decoded value) in order, and the body as text."""

    headers: tuple[tuple[str, str], ...]
    body: str  # decoded, "\n" line ends
    # What a client shows in To: an undisclosed group as its name alone; what stands there otherwise.
    to_shown: str = ""

    def header(self, name: str) -> str | None:
        """The first header called *name* (any case), decoded; None when there is none."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


def letter(message: EmailMessage, *, to: str | None = None) -> Letter:
    """*message* decoded; *to* replaces its To (a preview of individual delivery, where each recipient sees their
    own address)."""
    headers = tuple((name, str(value)) for name, value in message.items())
    if to is not None:
        headers = tuple((name, to if name.lower() == "to" else value) for name, value in headers)
    content = message.get_content() if not message.is_multipart() else ""
    body = content.replace("\r\n", "\n") if isinstance(content, str) else ""
    return Letter(headers, body, to if to is not None else _to_shown(message))


def _to_shown(message: EmailMessage) -> str:
    header = message.get("To")
    if isinstance(header, AddressHeader):
        parts = [
            group.display_name if group.display_name is not None and not group.addresses else str(group)
            for group in header.groups
        ]
        return ", ".join(part for part in parts if part)
    return str(header or "")


def raw_text(mail: Letter) -> str:
    """Every header, then a blank line and the body, unwrapped: the message as sent, decoded."""
    return "\n".join(f"{name}: {value}" for name, value in mail.headers) + "\n\n" + mail.body


def client_headers(mail: Letter, tz: ZoneInfo) -> list[tuple[str, str]]:
    """The headers a mail client shows, in its order: From, To, Subject, and the Date in *tz*."""
    date = mail.header("Date")
    return [
        ("From", mail.header("From") or ""),
        ("To", mail.to_shown or mail.header("To") or ""),
        ("Subject", mail.header("Subject") or ""),
        ("Date", client_date(date, tz) if date else ""),
    ]


def client_date(value: str, tz: ZoneInfo) -> str:
    """'Wednesday 10 Feb 2027 09:00 CET' from a Date header, in *tz*; the header itself when it does not parse."""
    try:
        moment: datetime = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return value
    if moment.tzinfo is None:
        return value
    local = moment.astimezone(tz)
    return (
        f"{WEEKDAYS[local.weekday()]} {local.day} {MONTHS[local.month - 1][:3]} {local.year} "
        f"{local.strftime('%H:%M')} {local.tzname()}"
    )


def client_lines(mail: Letter, tz: ZoneInfo, width: int = WIDTH) -> list[str]:
    """The message as a client shows it: the four headers, a blank line, the body soft-wrapped at *width*."""
    return [f"{name}: {value}" for name, value in client_headers(mail, tz)] + ["", *wrap(mail.body, width)]


def wrap(body: str, width: int = WIDTH) -> list[str]:
    """*body*'s lines soft-wrapped at *width* as a client does: at spaces only (a link or any long word stays
    whole, on a line of its own), blank lines kept, a quoted line's '>' marks repeated on each continuation."""
    out: list[str] = []
    for line in body.rstrip("\n").split("\n"):
        line = line.rstrip()
        if len(line) <= width:
            out.append(line)
            continue
        quote = _quote_marks(line)
        wrapper = textwrap.TextWrapper(
            width=width,
            initial_indent="",
            subsequent_indent=quote,
            break_long_words=False,
            break_on_hyphens=False,
            replace_whitespace=False,
            drop_whitespace=True,
            expand_tabs=False,
        )
        out.extend(wrapper.wrap(line) or [line])
    return out


def _quote_marks(line: str) -> str:
    """The '> > ' that begins a quoted line, to repeat on its continuations."""
    end = 0
    while end < len(line) and line[end] in "> ":
        end += 1
    marks = line[:end]
    return marks if ">" in marks else ""

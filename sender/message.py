"""The message a mailing sends: built once per mailing as a template of pre-encoded bytes.

Per message only To, Date and Message-ID change, so `render` is a bytes join. The header fields are encoded
with the standard library's email package (RFC 2047 encoded-words where the text is not ASCII), the body as
7bit when it is ASCII with short lines and as quoted-printable otherwise: every header is ASCII and no line is
longer than 998 octets. Every header value comes from text the content rule checked; it is checked again here,
and a value that could add a header is refused with MessageError.
"""

from __future__ import annotations

import binascii
import email
import email.policy
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address, Group
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Literal, cast

from checks.bodies import body_text, split_lines
from checks.mailview import Letter, letter, raw_text
from checks.model import ID_PATTERN, Loc, Mailing
from checks.policy import Policy
from checks.rules.content import header_problems
from sender.verp import return_path

DIVIDER = "-" * 40
MAX_LINE = 998
CRLF = b"\r\n"
MAILING_ID_HEADER = "X-Mailing-Id"
# A test copy (`mailings preview --to`) says what it is, in its subject and in a header filters can match.
TEST_COPY_PREFIX = "[TEST COPY] "
TEST_COPY_HEADER = "X-Mailings-Test-Copy"

Delivery = Literal["bulk", "individual"]

_POLICY = email.policy.SMTP  # CRLF, 78-column folding, encoded-words for non-ASCII (utf8=False)
# What may stand in an envelope or a Message-ID: no space, no control character, no angle bracket.
_UNSAFE_ID = re.compile(r"[\x00-\x20<>\x7f]")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")


class MessageError(ValueError):
    """A mailing that cannot become a safe message (a header value with a line break, a missing body, ...)."""


@dataclass(frozen=True)
class MessageTemplate:
    """One mailing's message, pre-encoded: `render` adds To, Date and Message-ID."""

    mailing_id: str
    envelope_from: str  # the return path (sender.verp) or else the from address, ASCII (an IDN domain as its A-label)
    domain: str  # the from address's domain, for Message-IDs
    group_to: str  # the To value of a bulk message: the recipient group, undisclosed
    head: bytes  # From and Subject lines
    tail: bytes  # the MIME and list headers, the blank line and the encoded body
    text: str  # the body as the recipient reads it
    bounce_address: str | None = None  # the policy's, ASCII: individual mode adds a token per recipient (sender.verp)


def delivery_mode(mailing: Mailing, policy: Policy) -> Delivery:
    """The mailing's `delivery.mode`, else the policy's."""
    mode = mailing.get("delivery", "mode", kind=str)
    if mode == "bulk" or mode == "individual":
        return mode
    return policy.sending.delivery


def build_template(mailing: Mailing, policy: Policy, *, test_copy: bool = False) -> MessageTemplate:
    """The message of *mailing*; MessageError when a part is missing or unsafe (the checks report why first).

    test_copy: the message of one test copy, marked in its Subject (TEST_COPY_PREFIX) and by TEST_COPY_HEADER.
    The marks are part of the template, so a real send pays nothing for them per message."""
    if not ID_PATTERN.fullmatch(mailing.id):
        raise MessageError(f"mailing id {mailing.id!r} cannot go into a header")
    languages = mailing.languages
    if not languages:
        raise MessageError(f"{mailing.yaml_file}: no languages are declared")
    from_address = ascii_address(mailing.get("from_address", kind=str) or policy.default_from_address)
    domain = from_address.rpartition("@")[2]
    unit = mailing.get("sender", "unit", kind=str) or ""
    if unit not in policy.units:
        raise MessageError(f"{mailing.yaml_file}: sender.unit {unit!r} is not a unit in the policy")
    subject = " / ".join(_subject(mailing, lang) for lang in languages)
    if test_copy:
        subject = TEST_COPY_PREFIX + subject  # encoded with the rest by _field, so it decodes back exactly
    group = _checked("recipients.group", mailing.get("recipients", "group", kind=str) or "Recipients")
    text = _body(mailing, languages)
    cte, encoded = _encode_body(text)
    head = _field("From", Address(display_name=_checked("unit name", policy.units[unit]), addr_spec=from_address))
    head += _field("Reply-To", _reply_to(mailing))
    head += _field("Subject", subject)
    tail = b"".join(
        (
            b"MIME-Version: 1.0\r\n",
            b'Content-Type: text/plain; charset="utf-8"\r\n',
            b"Content-Transfer-Encoding: " + cte + CRLF,
            _field("Content-Language", ", ".join(languages)),
            b"Auto-Submitted: auto-generated\r\n",
            b"Precedence: bulk\r\n",
            f"{MAILING_ID_HEADER}: {mailing.id}\r\n".encode("ascii"),
            f"{TEST_COPY_HEADER}: yes\r\n".encode("ascii") if test_copy else b"",
            CRLF,
            encoded,
        )
    )
    bounce = ascii_address(policy.bounce_address) if policy.bounce_address else None
    envelope_from = return_path(bounce, mailing.id) if bounce else from_address
    return MessageTemplate(mailing.id, envelope_from, domain, undisclosed_to(group), head, tail, text, bounce)


def _reply_to(mailing: Mailing) -> Address:
    """Replies go to the request's reply_to, else to the contact person (by name): never to the return path."""
    reply_to = mailing.get("reply_to", kind=str)
    if reply_to:
        return Address(addr_spec=ascii_address(reply_to))
    email = mailing.get("contact", "email", kind=str)
    if not email:
        raise MessageError(f"{mailing.yaml_file}: contact.email is missing")
    name = mailing.get("contact", "name", kind=str) or ""
    return Address(display_name=_checked("contact.name", name.strip()), addr_spec=ascii_address(email))


def render(template: MessageTemplate, *, to: str, message_id: str, date: datetime) -> bytes:
    """The message for one transaction: *to* an address or undisclosed_to()'s value, CRLF line endings."""
    return b"".join(
        (
            template.head,
            b"To: ",
            _to_bytes(to),
            b"\r\nDate: ",
            format_datetime(date).encode("ascii"),
            b"\r\nMessage-ID: ",
            _id_bytes(message_id),
            CRLF,
            template.tail,
        )
    )


class DataReady(bytes):
    """A message that can go after DATA as it is: CRLF line endings only, no line that starts with a dot, a CRLF
    at the end. `Renderer` makes them, having checked the template's fixed parts once, so that the SMTP
    transport need not scan every message for line endings and dots (about 3 us of a 1.3 kB message)."""


def is_data_ready(data: bytes) -> bool:
    """True if *data* needs no change to be sent after DATA: CRLF line endings only, no line that starts with
    a dot. (It may also have to end with a CRLF; that is the caller's to check.)"""
    lines = data.count(b"\n")
    return data.count(b"\r") == lines and data.count(CRLF) == lines and not data.startswith(b".") and b"\n." not in data


class Renderer:
    """`render` for one run: the Date (the same for every message of a run) and the Message-ID's fixed parts
    encoded once, so each message is a digest and a bytes join."""

    def __init__(self, template: MessageTemplate, date: datetime) -> None:
        self.template = template
        sample = make_message_id(template.mailing_id, "", template.domain)  # checks the id and the domain
        self._id_start = sample[: sample.index(".") + 1]
        self._id_end = sample[sample.rindex("@") :]
        self._digest = hashlib.sha256(f"{template.mailing_id}\x00".encode())
        self._before_to = template.head + b"To: "
        self._after_to = b"\r\nDate: " + format_datetime(date).encode("ascii") + b"\r\nMessage-ID: "
        self._tail = CRLF + template.tail
        # Each part checked alone is enough: only the last ends with a line break, so no line starts where two
        # meet, as long as the parts added per message (the To address, the Message-ID) have no line break.
        self._data_ready = (
            all(is_data_ready(part) for part in (self._before_to, self._after_to, self._tail))
            and self._tail.endswith(CRLF)
            and not self._before_to.endswith((b"\r", b"\n"))
            and not self._after_to.endswith((b"\r", b"\n"))
        )

    def message_id(self, key: str) -> str:
        """make_message_id(template.mailing_id, *key*, template.domain)."""
        digest = self._digest.copy()
        digest.update(key.encode())
        return self._id_start + digest.hexdigest()[:32] + self._id_end

    def render(self, *, to: str, key: str) -> bytes:
        """render(template, to=*to*, message_id=self.message_id(*key*), date=the run's date)."""
        # The Message-ID is built from checked parts and hex digits: it needs no second look.
        message_id = self.message_id(key).encode("ascii")
        to_bytes = _to_bytes(to)
        message = b"".join((self._before_to, to_bytes, self._after_to, message_id, self._tail))
        variable = to_bytes + message_id
        if self._data_ready and b"\r" not in variable and b"\n" not in variable:
            return DataReady(message)
        return message  # a folded group, or a body line that starts with a dot: the transport looks at it


def make_message_id(mailing_id: str, key: str, domain: str) -> str:
    """'<mailing-id.digest@domain>', the same for the same (mailing id, key): a retry keeps its Message-ID.

    The key (a batch number, a recipient's address) enters only as a digest, so no address shows in it."""
    if not ID_PATTERN.fullmatch(mailing_id):
        raise MessageError(f"mailing id {mailing_id!r} cannot go into a Message-ID")
    digest = hashlib.sha256(f"{mailing_id}\x00{key}".encode()).hexdigest()[:32]
    return f"<{mailing_id}.{digest}@{_ascii_domain(domain)}>"


def copy_message_id(mailing_id: str, token: str, domain: str) -> str:
    """'<mailing-id.test-copy.token@domain>': the Message-ID of one test copy, *token* (hex) unique to it.

    A real send's Message-IDs (make_message_id) have one dot before the '@' and a mailing id has none, so no
    real message of any mailing can have this one: a recipient's duplicate filter never drops the real
    message for a test copy seen before."""
    if not ID_PATTERN.fullmatch(mailing_id):
        raise MessageError(f"mailing id {mailing_id!r} cannot go into a Message-ID")
    if not re.fullmatch(r"[0-9a-f]{8,64}", token):
        raise MessageError(f"test copy token {token!r} must be 8 to 64 lower-case hex digits")
    return f"<{mailing_id}.test-copy.{token}@{_ascii_domain(domain)}>"


def undisclosed_to(group: str) -> str:
    """The To value of a bulk message: the group's description as an empty address group ('Name:;').

    Encoded and folded as needed; ASCII, lines joined by CRLF and a space."""
    folded = _field("To", Group(display_name=_checked("recipients.group", group), addresses=()))
    return folded.decode("ascii").removeprefix("To: ").removesuffix("\r\n")


# In a preview of individual delivery, To stands for every recipient's own address.
INDIVIDUAL_TO = "(each recipient's own address)"


def preview_letter(mailing: Mailing, policy: Policy, now: datetime) -> Letter:
    """The message a recipient gets, decoded for reading (checks.mailview); Date is *now*."""
    template = build_template(mailing, policy)
    individual = delivery_mode(mailing, policy) == "individual"
    to = f"recipient@{template.domain}" if individual else template.group_to
    raw = render(template, to=to, message_id=make_message_id(mailing.id, "preview", template.domain), date=now)
    return letter(parse(raw), to=INDIVIDUAL_TO if individual else None)


def preview_text(mailing: Mailing, policy: Policy, now: datetime) -> str:
    """The message a recipient gets, with its headers and body decoded for reading; Date is *now*."""
    return raw_text(preview_letter(mailing, policy, now))


def ascii_address(address: str) -> str:
    """*address* with an internationalised domain as its A-label; MessageError if the local part is not ASCII."""
    _single_line("address", address)
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not local.isascii() or _UNSAFE_ID.search(local):
        raise MessageError(f"{address!r} cannot be written as a plain ASCII address")
    return f"{local}@{_ascii_domain(domain)}"


def _ascii_domain(domain: str) -> str:
    try:
        ascii_domain = domain.strip().rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        raise MessageError(f"domain {domain!r} is not a valid host name") from None
    if not _DOMAIN.fullmatch(ascii_domain):
        raise MessageError(f"domain {domain!r} is not a valid host name")
    return ascii_domain.lower()


def _subject(mailing: Mailing, lang: str) -> str:
    subject = mailing.get("subject", lang, kind=str)
    if not subject or not subject.strip():
        raise MessageError(f"{mailing.yaml_file}: subject.{lang} is missing")
    return _checked(f"subject.{lang}", subject.strip())


def _body(mailing: Mailing, languages: list[str]) -> str:
    parts: list[str] = []
    for lang in languages:
        body = mailing.bodies.get(lang)
        text = "\n".join(line.rstrip() for line in split_lines(body_text(body.raw))).strip("\n") if body else ""
        if not text.strip():
            raise MessageError(f"{mailing.directory}/body.{lang}.txt is missing or empty")
        parts.append(text)
    return f"\n\n{DIVIDER}\n\n".join(parts) + "\n"


def _encode_body(text: str) -> tuple[bytes, bytes]:
    """(Content-Transfer-Encoding, body bytes with CRLF): 7bit for short ASCII lines, else quoted-printable."""
    data = text.encode("utf-8")
    if data.isascii() and all(len(line) <= MAX_LINE for line in data.split(b"\n")):
        return b"7bit", data.replace(b"\n", CRLF)
    return b"quoted-printable", binascii.b2a_qp(data, istext=True).replace(b"\n", CRLF)


def _field(name: str, value: str | Address | Group) -> bytes:
    """One header field, encoded and folded by the email package: ASCII, CRLF line endings."""
    try:
        folded = _POLICY.header_factory(name, value).fold(policy=_POLICY)
    except (HeaderParseError, ValueError, IndexError) as exc:
        raise MessageError(f"{name}: {value!s} cannot be encoded as a header: {exc}") from None
    data = folded.encode("ascii")  # the folder writes encoded-words for every non-ASCII character
    if any(len(line) > MAX_LINE for line in data.split(CRLF)):
        raise MessageError(f"{name}: a header line would be longer than {MAX_LINE} octets")
    return data


def _checked(field: str, value: str) -> str:
    """*value* if it may go into a header (one line, no control character, no encoded-word)."""
    problem = next(header_problems(Loc(""), field, value), None)
    if problem is not None:
        raise MessageError(problem.message)
    return value


def _single_line(field: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise MessageError(f"{field} {value!r} contains a line break, which could add mail headers")


def _to_bytes(to: str) -> bytes:
    if to.isascii() and "\r" not in to and "\n" not in to:
        return to.encode("ascii")  # the common case: a plain address
    if to.isascii() and _is_folded(to):
        return to.encode("ascii")  # undisclosed_to()'s folded group
    _single_line("To", to)
    return ascii_address(to).encode("ascii")


def _is_folded(value: str) -> bool:
    """True if every line break in *value* is CRLF followed by a space or tab (a folded header)."""
    lines = value.split("\r\n")
    return all("\r" not in line and "\n" not in line for line in lines) and all(
        line[:1] in (" ", "\t") for line in lines[1:]
    )


def _id_bytes(message_id: str) -> bytes:
    if not (message_id.startswith("<") and message_id.endswith(">") and message_id.isascii()):
        raise MessageError(f"Message-ID {message_id!r} must be ASCII in angle brackets")
    if _UNSAFE_ID.search(message_id[1:-1]):
        raise MessageError(f"Message-ID {message_id!r} contains a space, a control character or an angle bracket")
    return message_id.encode("ascii")


def parse(data: bytes) -> EmailMessage:
    """A rendered message as the email package reads it (for preview and tests)."""
    return cast(EmailMessage, email.message_from_bytes(data, policy=email.policy.default))

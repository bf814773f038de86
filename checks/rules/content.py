"""[content] Every declared language has a body and a subject; the text is the requester's own; header text
cannot inject headers.

Each language in ``languages`` needs a non-empty ``body.<lang>.txt`` and a
``subject.<lang>``; a subject for a language that is not declared is an error
too. Text that ends up in a mail header (the subjects, ``contact.name`` and
``recipients.group``) must be a single line without control characters,
bidirectional controls or tag characters, and without an RFC 2047
encoded-word (``=?...?=``), so that it can never add or disguise a header;
a zero-width character, a soft hyphen or another invisible formatting
character in it is a warning. Each is named as ``U+XXXX`` with its place
in the field.

The request template's placeholder text (``templates/request/``: the
purpose, the contact person, the recipient group and why, the subjects, the
bodies' instructions and signature) left in a request is an error: the
mailing would go out with it.

Warnings: a subject longer than the policy's ``max_subject_chars`` (78), a
body longer than ``max_body_words`` (400), and what a mail program leaves in
copied text, in the bodies and subjects: ``[cid:...]`` image marks,
``{{...}}`` and ``«...»`` merge fields (the sender fills in nothing), and
mentions of an attached file in Swedish or English ("see the attached
file", "se bifogad fil", "bifogat"): a mass mailing has no attachments.

Passes::

    languages: [sv, en]
    subject:
      sv: Nytt system för resebokning
      en: New travel booking system
    # body.sv.txt and body.en.txt hold the message; "attached to the
    # department" and "bifoga intyget" (attach the certificate) are fine

Fails::

    languages: [sv, en]               # body.en.txt missing or empty: error
    subject:
      sv: "Resor\\r\\nBcc: all@kth.se"  # a line break: error
      en: "=?utf-8?q?Urgent?="         # an encoded-word: error
      de: Neues Reisesystem            # 'de' is not declared: error
    purpose: Replace this with one or two sentences.     # the template's: error
    # body: Write the message here as plain text ...     (error)
    # body: Hello {{first_name}}, see the attached file.  (warnings)
    # body: [cid:image001.png@01D9A1B2.C3D4E5F0]          (warning)
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Callable, Iterator

from checks.bodies import body_text, sent_bodies
from checks.loader import MAX_BODY_BYTES
from checks.model import Body, Context, Finding, Loc, Mailing, Stage, error, warning
from checks.policy import Policy
from checks.rules.plain_text import invisible_in

ID = "content"
STAGES: tuple[Stage, ...] = ("submit", "send")

# The fields of mailing.yaml that the sender copies into header fields.
HEADER_FIELDS: tuple[tuple[str, ...], ...] = (("contact", "name"), ("recipients", "group"))

# Everything str.splitlines() breaks on: any of them could end a header line somewhere.
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
# Mail programs decode =?charset?encoding?text?= anywhere; any =?...?= is refused, not only well-formed ones.
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[^?]*\?.*?\?=|=\?.*?\?=", re.DOTALL)
_LANGUAGE = re.compile(r"[a-z]{2}")

# The placeholders of the request template (templates/request/mailing.yaml), each with what to write instead.
# tests/rules/test_content.py compares them with the template, so that a change there is noticed here.
TEMPLATE_FIELDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("purpose",): (
        "Replace this with one or two sentences.",
        "write in one or two sentences what the mailing is for",
    ),
    ("contact", "name"): ("Your Name", "write the name of the person who answers questions about the mailing"),
    ("contact", "email"): ("your.name@kth.se", "write that person's own address"),
    ("contact", "phone"): ("+46 8 790 00 00", "write that person's telephone number"),
    ("recipients", "group"): (
        "Describe the recipient group",
        "say in a few words who receives the mailing (it becomes the To: line)",
    ),
    ("recipients", "why"): (
        "Explain why everyone in the group must know about it, react to it or benefit from it.",
        "explain why the mailing matters to exactly this group",
    ),
    ("subject", "sv"): ("Ämnesrad på svenska", "write the subject line in Swedish"),
    ("subject", "en"): ("Subject line in English", "write the subject line in English"),
}
# The template bodies' instructions and signature (templates/request/body.*.txt), found in any body.
TEMPLATE_BODY_TEXT: tuple[tuple[str, str], ...] = (
    ("Write the message here as plain text: no formatting, no attachments.", "replace it with the message"),
    (
        "Keep it short. Links to pages outside KTH go through a stopover page on kth.se.",
        "replace it with the message",
    ),
    ("Your name, your unit", "sign with your name and unit"),
    ("Skriv meddelandet här som ren text: ingen formatering, inga bilagor.", "replace it with the message"),
    (
        "Håll det kort. Länkar till sidor utanför KTH går via en mellanlandningssida på kth.se.",
        "replace it with the message",
    ),
    ("Ditt namn, din enhet", "sign with your name and unit"),
)


def _phrase(text: str) -> re.Pattern[str]:
    """*text* found case-insensitively as whole words ("Your Name", not "Your Namesake"), however the lines are
    broken and spaced."""
    words = r"\s+".join(re.escape(word) for word in text.split())
    return re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)


_TEMPLATE_BODY = tuple((_phrase(text), text, fix) for text, fix in TEMPLATE_BODY_TEXT)

# What a mail program leaves in text copied from it.
_CID = re.compile(r"\[cid:[^\]\n]*\]", re.IGNORECASE)
_MERGE_FIELD = re.compile(r"\{\{[^{}\n]{0,60}\}\}|«[A-Za-z_][A-Za-z0-9_]{0,40}»")
# A mention of an attached file, in the languages of the template. "attached to the department" and "bifoga
# intyget" (attach the certificate: the reader is asked to) are not.
_ATTACHED_EN = (
    r"\b(?:see|find|open|read|check|view)\s+(?:the\s+|my\s+|our\s+)?attach(?:ed|ment|ments)\b(?!\s+to\b)"
    r"|\battached\s+(?:is|are|please|you\s+will|file|files|document|documents|pdf|form|invitation|programme|program"
    r"|agenda|schedule|list|image|picture|photo|poster|presentation|slides)\b"
    r"|\b(?:is|are|been|i\s+have|we\s+have|i've|we've)\s+attached\b(?!\s+to\b)"
    r"|\b(?:in|from)\s+the\s+attachment\b|\bas\s+an?\s+attachment\b"
)
_ATTACHED_SV = (
    r"\bse\s+bifogad(?:e)?\b|\bbifogat\b|\bbifogar\b|\bbifogade?\s+(?:fil|filen|filer|filerna|dokument"
    r"|dokumentet|pdf|blankett|blanketten|inbjudan|program|programmet|schema|schemat|lista|listan|bild|bilden"
    r"|affisch|affischen|presentation|presentationen)\b|\bi\s+(?:den\s+)?bifogade\b|\bi\s+bilagan\b"
    r"|\bse\s+bilaga(?:n)?\b"
)
_ATTACHED = re.compile(f"{_ATTACHED_EN}|{_ATTACHED_SV}", re.IGNORECASE)
_SHOWN = 40  # longest piece of text quoted in full in a message


def check(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    if mailing.doc is None:
        return
    declared = _declared(mailing)
    for index, lang in declared:
        yield from _body(mailing, index, lang, policy)
    yield from _subjects(mailing, [lang for _, lang in declared], policy)
    for path in HEADER_FIELDS:
        value = mailing.get(*path, kind=str)
        if value is not None:
            yield from header_problems(mailing.at(*path), ".".join(path), value)
            yield from header_invisible(mailing.at(*path), ".".join(path), value)
    yield from _template_fields(mailing)
    for body in sent_bodies(mailing):
        yield from _body_text(body)


def _declared(mailing: Mailing) -> list[tuple[int, str]]:
    """(index in the languages list, code) of each valid language code, first occurrence only."""
    seen: dict[str, int] = {}
    for index, lang in enumerate(mailing.get("languages", kind=list) or []):
        if isinstance(lang, str) and _LANGUAGE.fullmatch(lang) and lang not in seen:
            seen[lang] = index
    return [(index, lang) for lang, index in seen.items()]


def _body(mailing: Mailing, index: int, lang: str, policy: Policy) -> Iterator[Finding]:
    name = f"body.{lang}.txt"
    body = mailing.bodies.get(lang)
    if body is None:
        entry = next((e for e in mailing.entries if e.name == name), None)
        if entry is None:
            yield error(
                mailing.at("languages", index),
                f"language '{lang}' is declared but {name} is missing; write the message in {mailing.directory}/"
                f"{name}, or remove '{lang}' from languages",
            )
        elif entry.kind == "file":
            yield error(
                Loc(f"{mailing.directory}/{name}"),
                f"{name} cannot be read; a body must be a readable text file of at most "
                f"{MAX_BODY_BYTES // 1024} KiB: shorten it or fix its permissions",
            )
        # Any other kind (a directory, a symbolic link) is reported by the attachments rule.
        return
    words = len(body_text(body.raw).split())
    if words == 0:
        yield error(Loc(body.file), f"{name} is empty; write the message in language '{lang}' in it")
    elif words > policy.max_body_words:
        yield warning(
            Loc(body.file),
            f"{name} has {words} words; mass mailings must be concise: keep it to {policy.max_body_words} words "
            "or fewer, and link to a web page for the details",
        )


def _subjects(mailing: Mailing, declared: list[str], policy: Policy) -> Iterator[Finding]:
    subjects = mailing.get("subject", kind=dict)
    if subjects is None:
        return  # absent or not a mapping: the schema rule says so
    for lang in declared:
        if lang not in subjects:
            yield error(
                mailing.at("subject"),
                f"language '{lang}' is declared but has no subject; add subject.{lang} with the subject line "
                f"in that language",
            )
    for lang, value in subjects.items():
        where, field = mailing.at("subject", lang), f"subject.{lang}"
        if lang not in declared and mailing.languages_readable:
            yield error(
                where,
                f"{field} is for a language that languages does not declare; add '{lang}' to languages "
                f"(with body.{lang}.txt), or remove {field}",
            )
        if not isinstance(value, str):
            continue  # the schema rule reports a subject that is not text
        if not value.strip():
            yield error(where, f"{field} is empty; write the subject line in that language")
            continue
        yield from header_problems(where, field, value)
        yield from header_invisible(where, field, value)
        yield from _residue(value, _at(where), field)
        if len(value) > policy.max_subject_chars:
            yield warning(
                where,
                f"{field} is {len(value)} characters long; keep it to {policy.max_subject_chars} or fewer so that "
                "mail programs show it whole",
            )


def header_problems(where: Loc, field: str, value: str) -> Iterator[Finding]:
    """Why *value* may not go into a mail header: line breaks, control characters, encoded-words."""
    if any(ch in _LINE_BREAKS for ch in value):
        yield error(
            where,
            f"{field} must be a single line: it contains a line break, which could add mail headers; "
            "write it on one line",
        )
    control = next((ch for ch in value if ch not in _LINE_BREAKS and unicodedata.category(ch) == "Cc"), None)
    if control is not None:
        yield error(
            where,
            f"{field} contains the invisible control character U+{ord(control):04X}; remove it "
            "(copy the text from a plain editor)",
        )
    encoded = _ENCODED_WORD.search(value)
    if encoded is not None:
        shown = encoded.group(0) if len(encoded.group(0)) <= 40 else encoded.group(0)[:37] + "..."
        yield error(
            where,
            f"{field} contains {shown!r}, which mail programs decode as an RFC 2047 encoded-word (=?...?=) and "
            "could disguise the text; write the text itself, the sender encodes it",
        )


def header_invisible(where: Loc, field: str, value: str) -> Iterator[Finding]:
    """The invisible characters in *value*: bidirectional controls and tag characters (errors), zero-width
    characters and soft hyphens (warnings).

    Not part of header_problems: they cannot add a header, so the sender can still build the message that the
    plan shows the reviewer (with each one made visible); this rule's errors stop the send."""
    for spot in invisible_in(value):
        report = error if spot.level == "error" else warning
        yield report(where, f"{field} contains {spot.what} at character {spot.start + 1}; {spot.why}")


def _template_fields(mailing: Mailing) -> Iterator[Finding]:
    for path, (placeholder, fix) in TEMPLATE_FIELDS.items():
        value = mailing.get(*path, kind=str)
        if value is not None and _phrase(placeholder).search(value):
            field = ".".join(path)
            yield error(
                mailing.at(*path),
                f"{field} still holds the template's text ({_quoted(placeholder)}); {fix}",
            )


def _body_text(body: Body) -> Iterator[Finding]:
    """The template's text and mail-program residue in a body, each where it stands."""
    text = body_text(body.raw).replace("\r\n", "\n").replace("\r", "\n")  # lines as checks.bodies counts them
    starts = [0, *(index + 1 for index, ch in enumerate(text) if ch == "\n")]

    def loc(offset: int) -> Loc:
        line = bisect.bisect_right(starts, offset) - 1
        return Loc(body.file, line + 1, offset - starts[line] + 1)

    name = body.file.rsplit("/", 1)[-1]
    for pattern, placeholder, fix in _TEMPLATE_BODY:
        found = pattern.search(text)
        if found is not None:
            yield error(loc(found.start()), f"{name} still holds the template's text ({_quoted(placeholder)}); {fix}")
    yield from _residue(text, loc, name)


def _residue(text: str, loc: Callable[[int], Loc], where: str) -> Iterator[Finding]:
    """What a mail program leaves in copied text: image marks, merge fields, mentions of an attachment."""
    for found in _CID.finditer(text):
        yield warning(
            loc(found.start()),
            f"{where} has {_quoted(found.group(0))}, the mark of an image left by the mail program the text was "
            "copied from; a mass mailing has no images: remove it",
        )
    for found in _MERGE_FIELD.finditer(text):
        yield warning(
            loc(found.start()),
            f"{where} has the merge field {_quoted(found.group(0))}, but the sender fills in nothing: every recipient "
            "gets the same text, brackets and all; write the text itself",
        )
    for found in _ATTACHED.finditer(text):
        yield warning(
            loc(found.start()),
            f"{where} mentions an attachment ({_quoted(' '.join(found.group(0).split()))}), but a mass mailing has "
            "no attachments; put the document on a page within the university and link to it, or remove the mention",
        )


def _at(where: Loc) -> Callable[[int], Loc]:
    """Every offset at *where*: a field's place in mailing.yaml."""
    return lambda _offset: where


def _quoted(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "...")

"""[content] Every declared language has a body and a subject; header text cannot inject headers.

Each language in ``languages`` needs a non-empty ``body.<lang>.txt`` and a
``subject.<lang>``; a subject for a language that is not declared is an error
too. Text that ends up in a mail header (the subjects, ``contact.name`` and
``recipients.group``) must be a single line without control characters and
without an RFC 2047 encoded-word (``=?...?=``), so that it can never add or
disguise a header. Warnings: a subject longer than the policy's
``max_subject_chars`` (78), a body longer than ``max_body_words`` (400).

Passes::

    languages: [sv, en]
    subject:
      sv: Nytt system för resebokning
      en: New travel booking system
    # body.sv.txt and body.en.txt hold the message

Fails::

    languages: [sv, en]               # body.en.txt missing or empty: error
    subject:
      sv: "Resor\\r\\nBcc: all@kth.se"  # a line break: error
      en: "=?utf-8?q?Urgent?="         # an encoded-word: error
      de: Neues Reisesystem            # 'de' is not declared: error
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from checks.bodies import body_text
from checks.loader import MAX_BODY_BYTES
from checks.model import Context, Finding, Loc, Mailing, Stage, error, warning
from checks.policy import Policy

ID = "content"
STAGES: tuple[Stage, ...] = ("submit", "send")

# The fields of mailing.yaml that the sender copies into header fields.
HEADER_FIELDS: tuple[tuple[str, ...], ...] = (("contact", "name"), ("recipients", "group"))

# Everything str.splitlines() breaks on: any of them could end a header line somewhere.
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
# Mail programs decode =?charset?encoding?text?= anywhere; any =?...?= is refused, not only well-formed ones.
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[^?]*\?.*?\?=|=\?.*?\?=", re.DOTALL)
_LANGUAGE = re.compile(r"[a-z]{2}")


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
        if lang not in declared:
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

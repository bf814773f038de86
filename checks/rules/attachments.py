"""[attachments] Mass mailings have no attachments: a request directory holds only its own files.

Allowed are ``mailing.yaml``, ``body.<lang>.txt`` for each declared language,
the recipient list files that ``recipients.lists`` names, and the send log
(``sendlog.jsonl``). Anything else is an error at its path: a PDF, an image,
a body for an undeclared language, a subdirectory, a symbolic link, a FIFO.
A request directory that is itself a symbolic link (to a directory) is an
error, and so is a list file whose path leaves the directory (``../x``,
``/etc/passwd``, ``sub/x.txt``), at its entry in mailing.yaml. Any other link
directly under ``mailings/`` (to a file, or to nothing) is no request: the
layout rule reports it.

The recipients rule reports list files that are missing or cannot be read;
mailing.yaml itself is the yaml rule's.

Passes::

    mailings/2027-02-10-travel/
        mailing.yaml  body.sv.txt  body.en.txt  recipients.txt

Fails::

    mailings/2027-02-10-travel/
        programme.pdf              # an attachment
        body.de.txt                # 'de' is not in languages
        images/                    # a subdirectory
        staff.txt -> /etc/passwd   # a symbolic link
    recipients: {lists: [{file: ../other/recipients.txt}]}
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.model import (
    BODY_PATTERN,
    MAILING_FILE,
    SENDLOG_FILE,
    Context,
    DirEntry,
    Finding,
    Loc,
    Mailing,
    Stage,
    error,
)
from checks.policy import Policy

ID = "attachments"
STAGES: tuple[Stage, ...] = ("submit", "send")

# How the loader says that a list file's path is not a plain name in the request directory.


def check(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    if mailing.is_symlink:
        yield error(
            Loc(mailing.directory),
            f"the request directory {mailing.directory} is a symbolic link; make it a real directory that holds "
            "the request's files",
        )
        return
    lists = {lst.name for lst in mailing.lists if lst.kind == "file" and lst.problem != "outside"}
    for entry in mailing.entries:
        message = _entry_problem(mailing, entry, lists)
        if message is not None:
            yield error(Loc(f"{mailing.directory}/{entry.name}"), message)
    for lst in mailing.lists:
        if lst.kind == "file" and lst.problem == "outside":
            yield error(
                mailing.at("recipients", "lists", lst.index, "file"),
                f"the list file '{lst.name}' is not a file in this request's directory; put the list in "
                f"{mailing.directory}/ and give its name alone (e.g. file: recipients.txt)",
            )


def _entry_problem(mailing: Mailing, entry: DirEntry, lists: set[str]) -> str | None:
    """Why *entry* may not be in the request directory, or None."""
    name = entry.name
    if name == MAILING_FILE:
        return None  # the yaml rule reports a mailing.yaml it cannot read
    if entry.kind == "symlink":
        what = "the recipient list" if name in lists else "the file"
        return (
            f"{what} {name} is a symbolic link; a request holds only real files: put the file itself here "
            "instead of the link, or remove it"
        )
    if entry.kind in ("dir", "other") and name in lists:
        return None  # the recipients rule reports a list it cannot read
    if entry.kind == "dir":
        return (
            f"{name}/ is a directory; a request holds no subdirectories and mass mailings have no attachments: "
            "remove it"
        )
    if entry.kind == "other":
        return f"{name} is not a regular file (a named pipe, socket or device); remove it"
    if mailing.doc is None:
        return None  # without mailing.yaml, which languages and lists belong here is unknown
    return _file_problem(mailing, name, lists)


def _file_problem(mailing: Mailing, name: str, lists: set[str]) -> str | None:
    body = BODY_PATTERN.match(name)
    if body is not None:  # a body is judged as a body even when a list entry names it
        lang = body[1]
        if lang in mailing.languages:
            return None
        return (
            f"{name} is a body for language '{lang}', which languages does not declare; add '{lang}' to languages "
            f"(with subject.{lang}), or remove the file"
        )
    if name == SENDLOG_FILE or name in lists:
        return None
    return (
        f"{name} is not part of the request: mass mailings have no attachments. Remove it; to share a document, "
        "publish it on a university web page and link to that page"
    )

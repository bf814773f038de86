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
    warning,
)
from checks.policy import Policy
from checks.strays import LIST_EXTENSIONS, WORD_PROCESSOR, Stray, classify, extension

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
        finding = _entry_problem(mailing, entry, lists)
        if finding is not None:
            yield finding
    for lst in mailing.lists:
        if lst.kind == "file" and lst.problem == "outside":
            yield error(
                mailing.at("recipients", "lists", lst.index, "file"),
                f"the list file '{lst.name}' is not a file in this request's directory; put the list in "
                f"{mailing.directory}/ and give its name alone (e.g. file: recipients.txt)",
            )


def _entry_problem(mailing: Mailing, entry: DirEntry, lists: set[str]) -> Finding | None:
    """Why *entry* may not be in the request directory, or None."""
    name = entry.name
    loc = Loc(f"{mailing.directory}/{name}")
    if name == MAILING_FILE:
        return None  # the yaml rule reports a mailing.yaml it cannot read
    if entry.kind == "symlink":
        what = "the recipient list" if name in lists else "the file"
        return error(
            loc,
            f"{what} {name} is a symbolic link; a request holds only real files: put the file itself here "
            "instead of the link, or remove it",
        )
    if entry.kind in ("dir", "other") and name in lists:
        return None  # the recipients rule reports a list it cannot read
    if entry.kind == "dir":
        return error(
            loc,
            f"{name}/ is a directory; a request holds no subdirectories and mass mailings have no attachments: "
            "remove it",
        )
    if entry.kind == "other":
        return error(loc, f"{name} is not a regular file (a named pipe, socket or device); remove it")
    if mailing.doc is None:
        # Without mailing.yaml, which languages and lists belong here is unknown; a file named much like it is
        # most likely the request itself.
        stray = classify(name)
        return error(loc, _advice(mailing, name, stray)) if stray.kind == "yaml" else None
    return _file_problem(mailing, name, lists)


def _file_problem(mailing: Mailing, name: str, lists: set[str]) -> Finding | None:
    loc = Loc(f"{mailing.directory}/{name}")
    body = BODY_PATTERN.match(name)
    if body is not None:  # a body is judged as a body even when a list entry names it
        lang = body[1]
        if lang in mailing.languages or not mailing.languages_readable:
            return None  # declared; or languages cannot be read, which the schema rule reports
        return error(
            loc,
            f"{name} is a body for language '{lang}', which languages does not declare; add '{lang}' to languages "
            f"(with subject.{lang}), or remove the file",
        )
    if name == SENDLOG_FILE or name in lists:
        return None
    stray = classify(name)
    if stray.kind == "junk":
        return warning(
            loc,
            f"{name} is {stray.what}; it is not part of the request and is ignored (never sent): delete it from the "
            "pull request",
        )
    if stray.kind in ("list", "workbook") and not _lists_readable(mailing):
        return None  # which files recipients.lists names is unknown until the schema rule's problem is fixed
    return error(loc, _advice(mailing, name, stray))


def _advice(mailing: Mailing, name: str, stray: Stray) -> str:
    """What to do with the file *name*, which is not part of the request, by what it most likely is."""
    present = {entry.name for entry in mailing.entries}
    if stray.kind == "body":
        right = stray.what
        if extension(name) in WORD_PROCESSOR:
            return (
                f"{name} looks like a message body saved as a {extension(name)} document; a body is plain text: put "
                f"its text in {right} (in Word: File > Save As > Plain Text (*.txt), encoding UTF-8), then remove "
                f"{name}"
            )
        if right in present:
            return (
                f"{name} looks like a second copy of {right}; remove it (if its text is the one to send, put it "
                f"in {right})"
            )
        doubled = (
            " (the name ends in .txt twice: Windows hides the last extension; show file name extensions in "
            "Explorer's View menu to see it)"
            if name.lower().endswith(".txt.txt")
            else ""
        )
        return f"{name} is not read as a body: did you mean {right}? Rename it to {right}{doubled}"
    if stray.kind == "yaml":
        if MAILING_FILE in present:
            return f"{name} looks like a second copy of {MAILING_FILE}, which is the one read; remove {name}"
        return f"{name} is not read: did you mean {MAILING_FILE}? Rename it to {MAILING_FILE}"
    if stray.kind == "list" and extension(name) in LIST_EXTENSIONS:
        return (
            f"{name} is not named in recipients.lists; if it is a list of recipients, name it there "
            f"(- file: {name}), otherwise remove it"
        )
    if stray.kind in ("list", "workbook"):
        return (
            f"{name} looks like a list of people, which a request can use only as a plain list of addresses: save "
            "the addresses as CSV UTF-8 (in Excel: File > Save As > CSV UTF-8 (Comma delimited) (*.csv)) or as a "
            f".txt file with one address per line, name that file in recipients.lists, and remove {name}"
        )
    if stray.kind == "document":
        return (
            f"{name} is not part of the request: mass mailings have no attachments. Remove it; to share a document, "
            "publish it on a university web page and link to that page"
        )
    if stray.kind == "image":
        return (
            f"{name} is an image; mass mailings are plain text, without images or attachments: remove it (to show "
            "the picture, publish it on a university web page and link to that page)"
        )
    return (
        f"{name} is not part of the request, which holds only {MAILING_FILE}, a body.<lang>.txt for each language "
        "and the recipient lists that recipients.lists names: remove it"
    )


def _lists_readable(mailing: Mailing) -> bool:
    """Whether recipients.lists says which files are lists: a list whose every entry names a file or a special
    list."""
    entries = mailing.get("recipients", "lists", kind=list)
    return bool(entries) and all(
        isinstance(entry, dict) and any(isinstance(entry.get(key), str) for key in ("file", "special"))
        for entry in entries
    )

"""[layout] Directly under ``mailings/`` stand only the request directories and ``README.md``.

Git reads some files in a folder as instructions about that folder
(``.gitignore``, ``.gitattributes``): one directly under ``mailings/`` could
stop the dispatch job's send logs from being committed, or change what is
recorded, so the next run would take a sent mailing for unsent and send it
again. So anything here but a request directory and a plain ``README.md`` is
an error at its path: a plain file, a symbolic link to a file (or to nothing),
a named pipe; and ``mailings`` itself must be a real directory. A file that
an operating system writes into every folder it shows (``.DS_Store``,
``Thumbs.db``, ``desktop.ini``) is harmless to git, and only a warning.

It judges the folder as a whole, not one request, so every ``mailings check``
and ``mailings plan`` runs it, whatever they check: with named paths, and with
``--changed-since REF`` also when no request changed.

A symbolic link to a directory is a linked request: [attachments] reports it
(``the request directory ... is a symbolic link``), so this rule leaves it
alone and a link is reported once.

Passes::

    mailings/
        README.md
        2027-02-10-travel/
        2027-03-01-survey/

Fails::

    mailings/
        .gitignore                   # a plain file
        .gitattributes               # a plain file
        notes.txt                    # a plain file
        old -> 2027-02-10-travel/sendlog.jsonl   # a symbolic link to a file
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.model import Context, DirEntry, Finding, Layout, Loc, Stage, error, warning
from checks.policy import Policy
from checks.strays import junk

ID = "layout"
STAGES: tuple[Stage, ...] = ("submit", "send")

README_FILE = "README.md"

_BELONG = "only request directories and README.md belong directly under mailings/"


def check(layout: Layout, policy: Policy, context: Context) -> Iterator[Finding]:
    if layout.kind is None:
        return  # no requests at all: nothing to record
    if layout.kind != "dir":
        what = "a symbolic link" if layout.kind == "symlink" else "not a directory"
        yield error(
            Loc(layout.directory),
            f"{layout.directory} is {what}, so git would not record the send logs inside it; make it a real "
            "directory that holds the request directories",
        )
        return
    for entry in layout.entries:
        where = Loc(f"{layout.directory}/{entry.name}")
        made_by = junk(entry.name) if entry.kind == "file" else None
        if made_by is not None:
            # A folder's own files of Finder or Explorer say nothing to git: harmless, but no part of the requests.
            yield warning(where, f"{entry.name} is {made_by}; it is ignored: delete it from the pull request")
            continue
        message = _entry_problem(entry, layout)
        if message is not None:
            yield error(where, message)


def _entry_problem(entry: DirEntry, layout: Layout) -> str | None:
    """Why *entry* may not stand directly under mailings/, or None."""
    if entry.kind == "dir" or entry.name in layout.linked_dirs:
        return None  # a request; the request's own rules judge it
    if entry.kind == "file":
        if entry.name == README_FILE:
            return None
        return (
            f"{_BELONG}; a file here could change how git records the send logs: remove it (a request's files "
            "go in its own directory, mailings/<id>/)"
        )
    if entry.kind == "symlink":
        return (
            f"{entry.name} is a symbolic link; {_BELONG}, and a link here could change how git records the send "
            "logs: remove it"
        )
    return f"{entry.name} is not a regular file (a named pipe, socket or device); {_BELONG}: remove it"

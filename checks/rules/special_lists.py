"""[special-lists] IT's list files in the repository are encrypted, and no plain copy stands beside them.

This rule owns the files that ``policy.yaml`` names as special lists'
sources (``source: {file: lists/all-students.txt.age}``); [recipients] owns
a request's use of the lists, and blocks a mailing whose list the sender
could not decrypt. A list file holds thousands of people's addresses, and
everyone who can read the repository can read what is committed in it: so a
file the policy expects to be encrypted with age that is plain text, and a
plain file next to it that bears its name less ``.age`` (what ``age`` or
``mailings lists encrypt`` read), are errors at that file. A symbolic link
there is an error too (it would be followed to a file nobody reviewed). A
file the policy names that does not exist is an error at ``policy.yaml``:
every mailing to that list would be blocked.

Like [layout], it judges the repository, not one request: every ``mailings
check`` and ``mailings plan`` runs it, whatever requests they check, so a
pull request that changes only a list is checked too.

Passes::

    lists/all-students.txt.age      # begins with age-encryption.org/v1, or its ASCII armour

Fails::

    lists/all-students.txt.age      # one address per line: plain text under an encrypted name
    lists/all-students.txt          # the plain list next to its encrypted file
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.model import Context, Finding, Layout, ListFile, Loc, Stage, error
from checks.policy import POLICY_FILE, Policy

ID = "special-lists"
STAGES: tuple[Stage, ...] = ("submit", "send")


def check(layout: Layout, policy: Policy, context: Context) -> Iterator[Finding]:
    for found in layout.list_files:
        yield from _file(found)


def _file(found: ListFile) -> Iterator[Finding]:
    encrypt = f"mailings lists encrypt PLAIN {found.path}"
    if found.kind is None:
        yield error(
            Loc(POLICY_FILE),
            f"the special list {found.list_id} comes from {found.path}, which does not exist, so every mailing to "
            f"it would be blocked; add it (`{encrypt}`) or correct its source in {POLICY_FILE}",
        )
    elif found.kind != "file":
        what = "a symbolic link" if found.kind == "symlink" else "not a regular file"
        yield error(
            Loc(found.path),
            f"the encrypted file of the special list {found.list_id} is {what}; commit the encrypted file itself "
            f"(`{encrypt}`)",
        )
    elif not found.encrypted:
        yield error(
            Loc(found.path),
            f"the special list {found.list_id} must be encrypted with age, but {found.path} is not: whoever can "
            f"read the repository can read these addresses. Encrypt it (`{encrypt}`), and remove the plain text "
            "from the history of every branch that has it",
        )
    if found.plain_beside is not None:
        yield error(
            Loc(found.plain_beside),
            f"{found.plain_beside} stands next to {found.path}, the encrypted special list {found.list_id}, and "
            "is most likely its plain text; delete it (and from the history, if it was pushed), and keep plain "
            "lists outside the repository (`mailings lists edit` works on a private temporary copy)",
        )

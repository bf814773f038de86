"""[immutable] A sent mailing is history, and only the dispatch job writes send logs.

Runs with ``mailings check --changed-since REF`` alone (in a pull request, REF
is its base); without a base it has nothing to compare and finds nothing.

- Adding, changing, deleting or renaming any file of a mailing whose
  ``sendlog.jsonl`` shows that sending started is an error: the log describes
  the mailing as it stands there. Make a new request instead. The log counts
  on REF and on the mailing's claim branch (``mailings-sending/<id>``, local
  or any remote's as last fetched), where the dispatch job records a claim
  before the first message and its progress while it sends, before the log
  reaches main.
- Sending started (checks.model.dispatched) when the log holds an attempt or
  an outcome (accepted, failed, deferred, unknown), a claim or start with no
  later end of the same run (that run may be sending now, or was killed), an
  end that counts anything attempted, or a line that is not a JSON object or
  names an unknown event (fail closed). A run that claimed, started and ended
  having attempted nothing (the relay could not be reached), and a log that
  records only why the mailing was not sent (blocked, missed, quota), leave the
  request open to a fix or a new date.
- Adding, changing, deleting or renaming a ``sendlog.jsonl`` is an error in
  any mailing: the dispatch job writes send logs on the main branch, never a
  pull request, so a forged log cannot mark a mailing as sent (or unsent).

The control fields of ``mailing.yaml`` (``hold``, ``cancel``, ``resume_at``,
``resume_unknown``) are the exception: an edit of a sent mailing's
``mailing.yaml`` that adds, changes or removes only them (comments and layout
aside) passes. Removing ``cancel`` is an error in any mailing: a cancellation
on the main branch is final.

A rename changes both paths, so moving a sent mailing to a new id fails at the
old one. A deleted path counts whatever now stands there: a sent mailing's
directory replaced by a file or a link (to a directory, a file or nothing) is
an error at each file it held and at the new entry; a file replaced by a
directory or a link is one too. Each error stands at the changed path, line 1.

Passes: a new request ``mailings/2027-03-01-survey/`` beside a sent one;
editing a request that has no send log on REF nor on its claim branch, or
whose log there holds only ``claim``, ``start`` and ``end`` of a run that
attempted nothing.

Fails: editing ``mailings/2027-02-10-travel/body.en.txt`` when
``mailings/2027-02-10-travel/sendlog.jsonl`` on REF holds an attempt, or on
``origin/mailings-sending/2027-02-10-travel`` a claim with no end; deleting that
directory, or putting a file or a link in its place; making its
``body.en.txt`` a link; adding ``mailings/2027-03-01-survey/sendlog.jsonl``.
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.model import SENDLOG_FILE, Context, FileChange, Finding, Loc, Mailing, Stage, error
from checks.policy import Policy

ID = "immutable"
STAGES: tuple[Stage, ...] = ("submit",)

_UNDO = {
    "added": "remove it",
    "copied": "remove it",
    "modified": "restore it as it is on {base}",
    "type-changed": "restore it as it is on {base}",
    "deleted": "restore it from {base}",
    "renamed": "undo the rename",
}


def check(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    if context.base is None:
        return
    sent_on = context.sent_on_base.get(mailing.id)
    for change in context.changes:
        for path in change.paths:
            if path != mailing.directory and not path.startswith(f"{mailing.directory}/"):
                continue
            if path.rsplit("/", 1)[-1] == SENDLOG_FILE:
                yield error(
                    Loc(path),
                    f"this change {_what(change, path, 'send log')}, but only the dispatch job writes send logs, "
                    f"on the main branch: {_undo(change, context.base)}",
                )
            elif (edit := context.yaml_edits.get(path)) is not None and edit.cancel_removed:
                yield error(
                    Loc(path),
                    "this change removes `cancel` from the mailing; a cancellation on the main branch is final: "
                    f"restore `cancel` as it is on {context.base} (to send the content again, make a new request)",
                )
            elif sent_on is not None and edit is not None and edit.control_only:
                continue  # hold, cancel, resume_at, resume_unknown: the controls of a mailing that was sent
            elif sent_on is not None:
                yield error(
                    Loc(path),
                    f"mailing {mailing.id} was sent, or the dispatch job tried to send it (its {SENDLOG_FILE} is on "
                    f"{sent_on}); a sent mailing is history, but this change {_what(change, path, 'file')}: "
                    f"{_undo(change, context.base)}, and make a new request instead (mailings new ID)",
                )


def _what(change: FileChange, path: str, noun: str) -> str:
    """What the change does to *path*, in words."""
    if change.status == "renamed":
        return f"moves this {noun} to {change.path}" if path == change.old_path else f"moves {change.old_path} here"
    verb = {
        "added": "adds",
        "copied": "adds",
        "modified": "edits",
        "type-changed": "changes the type of",
        "deleted": "deletes",
    }[change.status]
    return f"{verb} this {noun}"


def _undo(change: FileChange, base: str) -> str:
    return _UNDO[change.status].format(base=base)

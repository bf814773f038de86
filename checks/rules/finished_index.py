"""[finished-index] Only the dispatch job writes the index of finished mailings, ``finished-mailings.jsonl``.

The index (sender.finished) tells `mailings send` and `mailings status` which mailings are finished, so that a
scheduled run need not read their send logs. Like a send log, it is written by the dispatch job on the main
branch, never by a pull request: an entry added by hand could make a mailing that is still to be sent look
finished (the sender trusts an entry only while the log has exactly the size it names, but that size is no
secret). So with ``--changed-since REF`` (in a pull request, REF is its base), adding, changing, deleting or
renaming the file is an error at its path, line 1. It judges the repository, not a request, so it runs whatever
requests the check names, also when no request changed; without a base it has nothing to compare and finds
nothing.

Passes: a pull request that adds ``mailings/2027-03-01-survey/`` and leaves ``finished-mailings.jsonl`` alone.

Fails: a pull request that adds a line to ``finished-mailings.jsonl``, deletes it, or renames it.
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.model import FINISHED_INDEX_FILE, Context, Finding, Layout, Loc, Stage, error
from checks.policy import Policy

ID = "finished-index"
STAGES: tuple[Stage, ...] = ("submit",)

_UNDO = {
    "added": "remove it from the pull request",
    "copied": "remove it from the pull request",
    "renamed": "undo the rename",
    "deleted": "restore it as it is on {base}",
}


def check(layout: Layout, policy: Policy, context: Context) -> Iterator[Finding]:
    if context.base is None:
        return
    for change in context.changes:
        if FINISHED_INDEX_FILE not in change.paths:
            continue
        undo = _UNDO.get(change.status, "restore it as it is on {base}").format(base=context.base)
        yield error(
            Loc(FINISHED_INDEX_FILE),
            "this change touches the index of finished mailings, which only the dispatch job writes, on the main "
            f"branch (an entry could make a mailing still to be sent look finished): {undo}",
        )
        return

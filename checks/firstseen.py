"""When each request's send_at got its value in the pull request, from a source the requester cannot set.

The lead time counts from then, not from when the pull request was opened, so that an old pull request cannot
carry a new date past the rule. Commit dates are the requester's to write, so they are never read. What counts:

1. git says which commits of the pull request (the merge base to HEAD) hold the request's current send_at without
   a change since: the commit that gave it this value and every commit after it. A value the working tree has and
   HEAD has not is seen now; a value the merge base already had is as old as the pull request (--submitted).
2. GitHub says when it received each of those commits: the created_at of the check workflow's runs for them on a
   pull_request event (one run per push, for the commit pushed last). The earliest such run is when the value
   arrived; a run of another pull request that had the same commit earlier does not count from before this one
   was opened (--submitted bounds it from below). No run yet (the first check of this push): now.

A rebase or force-push gives the commits new ids, so it restarts the count for the values it carries; a merge of
the base keeps the old commits and their runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from checks.changes import git, read_at
from checks.errors import UsageError
from checks.loader import MAILINGS_DIR
from checks.model import MAILING_FILE
from checks.yamlsafe import YamlError, loads

# More commits than this since a value changed: the oldest are not asked about (the count can only start later).
MAX_COMMITS = 100


class Runs(Protocol):
    """When GitHub created the runs of a workflow for one commit (sender.github.GitHub.workflow_runs)."""

    def __call__(self, head_sha: str) -> list[datetime] | str: ...


def holding(root: Path, merge_base: str, mailing_id: str) -> list[str] | None:
    """The commits between *merge_base* and HEAD that hold the request's current send_at without a change since,
    newest first; [] when the working tree's value is not committed; None when the merge base had it already."""
    path = f"{MAILINGS_DIR}/{mailing_id}/{MAILING_FILE}"
    try:
        current = _send_at((root / path).read_bytes())
    except OSError:
        return []
    if _send_at(read_at(root, merge_base, path)) == current and current is not None:
        return None
    commits = git(root, "rev-list", "--topo-order", f"{merge_base}..HEAD").decode("ascii").split()
    found: list[str] = []
    for commit in commits[:MAX_COMMITS]:
        if _send_at(read_at(root, commit, path)) != current:
            break
        found.append(commit)
    return found


def first_seen(
    root: Path,
    merge_base: str,
    mailing_ids: Iterable[str],
    runs: Runs,
    *,
    submitted: date,
    now: datetime,
    tz: ZoneInfo,
) -> dict[str, date]:
    """For each request, the day (in *tz*) its current send_at arrived in the pull request, never before
    *submitted* (see the module's docstring); UsageError when GitHub cannot be asked."""
    seen: dict[str, date] = {}
    asked: dict[str, list[datetime]] = {}
    for mailing_id in mailing_ids:
        commits = holding(root, merge_base, mailing_id)
        if commits is None:
            seen[mailing_id] = submitted
            continue
        created: list[datetime] = []
        for commit in commits:
            if commit not in asked:
                answer = runs(commit)
                if isinstance(answer, str):
                    raise UsageError(f"cannot tell when send_at got its value: GitHub: {answer}")
                asked[commit] = answer
            created += asked[commit]
        arrived = min(created) if created else now
        seen[mailing_id] = max(submitted, arrived.astimezone(tz).date())
    return seen


def _send_at(raw: bytes | None) -> str | None:
    """A mailing.yaml's send_at as written (any value, compared as text), or None."""
    if raw is None:
        return None
    try:
        data = loads(raw.decode("utf-8-sig")).data
    except (UnicodeDecodeError, YamlError):
        return None
    value = data.get("send_at") if isinstance(data, dict) else None
    return None if value is None else repr(value)

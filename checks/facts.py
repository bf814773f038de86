"""The facts a reviewer approves, derived from a mailing, now or at an earlier commit, and what moved between two.

`facts(mailing, policy)` reduces a loaded request to what decides whether it may go out: when, to how many
through which lists, with which subjects, links and languages, from whom, about which event. `facts_at` does the
same for the request as it stood in a commit (the last approved one, or the base of a new request): its files are
read with git's plumbing into a temporary directory and loaded by the same loader, so a request is never read
a second way, and nothing is checked out. Both sides are judged under the policy of the checkout (the special
lists' approximate sizes, the time zone), so a difference is a change of the request, not of the policy.

`alarms` names what a reviewer must not miss: the dispatch moved earlier, the audience grew, a list was added,
addresses are new, the mailing became a crisis mailing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Set
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from checks.addresses import mailbox, recipient_count
from checks.changes import export_tree, renamed_from
from checks.loader import MAILINGS_DIR, MAX_LIST_BYTES, load_mailing
from checks.model import Mailing, RecipientList
from checks.policy import Policy
from checks.rules.links import mailing_links

# The event's fields, in the order the plan shows them.
EVENT_FIELDS = ("date", "time", "venue", "registration", "registration_deadline")


@dataclass(frozen=True)
class Facts:
    """What a reviewer approves of one mailing. Addresses are kept only to count what is new; never shown."""

    send_at: datetime | None
    recipients: int  # unique addresses, IT's lists at their approximate size
    lists: tuple[tuple[str, int], ...]  # (label, unique valid addresses; a special list at its approximate size)
    addresses: frozenset[str]  # the list files' unique addresses, normalised
    subjects: tuple[tuple[str, str], ...]  # (language, subject)
    links: tuple[str, ...]  # as written, each once, in order
    languages: tuple[str, ...]
    sender: str
    event: tuple[tuple[str, str], ...]  # (field, value) of the fields given
    crisis: bool


def list_label(lst: RecipientList) -> str:
    """How the plan names a list: its file name, or 'special <id>'."""
    return lst.name if lst.kind == "file" else f"special {lst.name}"


def list_size(lst: RecipientList, policy: Policy, invalid: Set[str] = frozenset()) -> int:
    """Unique valid addresses of one list (*invalid*: the mailing's addresses that are not); an unread special list
    at its approximate size."""
    if lst.kind == "special" and not lst.resolved:
        special = policy.special_lists.get(lst.name)
        return special.approximate_size if special is not None else 0
    return len({mailbox(entry.address) for entry in lst.addresses if entry.address not in invalid})


def facts(mailing: Mailing, policy: Policy) -> Facts:
    unique = mailing.recipients.unique
    invalid = {bad.entry.address for verdict in mailing.recipients.lists.values() for bad in verdict.invalid}
    subjects = mailing.get("subject", kind=dict) or {}
    unit = mailing.get("sender", "unit", kind=str) or "?"
    role = mailing.get("sender", "role", kind=str)
    address = mailing.get("from_address", kind=str) or policy.default_from_address
    event = [(name, mailing.get("event", name, kind=str)) for name in EVENT_FIELDS]
    return Facts(
        send_at=mailing.send_at,
        recipients=recipient_count(mailing, policy),
        lists=tuple((list_label(lst), list_size(lst, policy, invalid)) for lst in mailing.lists),
        addresses=frozenset(unique),
        subjects=tuple((lang, str(value)) for lang, value in subjects.items() if isinstance(value, str)),
        links=tuple(dict.fromkeys(link.written for link in mailing_links(mailing))),
        languages=tuple(mailing.languages),
        sender=f"{unit}{f' as {role}' if role else ''} from {address}",
        event=tuple((name, value) for name, value in event if value is not None),
        crisis=mailing.is_crisis,
    )


def facts_at(root: Path, commit: str, mailing_id: str, policy: Policy) -> Facts | None:
    """The facts of mailings/<mailing_id> as it stands in *commit*; None when it is not there."""
    with tempfile.TemporaryDirectory(prefix="mailings-facts-") as tmp:
        where = Path(tmp)
        if not export_tree(root, commit, f"{MAILINGS_DIR}/{mailing_id}", where, MAX_LIST_BYTES):
            return None
        return facts(load_mailing(where, where / MAILINGS_DIR / mailing_id, policy), policy)


def facts_before(root: Path, commit: str, mailing_id: str, policy: Policy) -> tuple[str, Facts] | None:
    """The id the request had in *commit* and its facts there: under the same id, or under the one its directory
    was renamed from since (a request renamed to match a new date is the same request); None when it was not
    there."""
    then = facts_at(root, commit, mailing_id, policy)
    if then is not None:
        return mailing_id, then
    old = renamed_from(root, commit, mailing_id)
    then = facts_at(root, commit, old, policy) if old is not None else None
    return (old, then) if old is not None and then is not None else None


def alarms(before: Facts, after: Facts) -> list[str]:
    """What moved that a reviewer must not miss, in words (plain text; the caller escapes it)."""
    found: list[str] = []
    if before.send_at is not None and after.send_at is not None and after.send_at < before.send_at:
        found.append(f"the dispatch moved earlier, by {_duration(before.send_at - after.send_at)}")
    if after.recipients > before.recipients:
        found.append(
            f"the audience grew from {before.recipients:,} to {after.recipients:,} recipients "
            f"(+{after.recipients - before.recipients:,})"
        )
    added = [label for label, _ in after.lists if label not in dict(before.lists)]
    if added:
        found.append(f"list{'s' if len(added) != 1 else ''} added: {', '.join(added)}")
    new = len(after.addresses - before.addresses)
    if new:
        found.append(
            f"{new:,} address{'es' if new != 1 else ''} in the list files that the earlier version did not have"
        )
    if after.crisis and not before.crisis:
        found.append("it became a crisis mailing (exempt from the lead time and the blackout periods)")
    return found


def _duration(delta: timedelta) -> str:
    days, seconds = delta.days, delta.seconds
    hours, minutes = seconds // 3600, seconds % 3600 // 60
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if minutes:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return " ".join(parts) or "less than a minute"

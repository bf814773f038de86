"""The mailings around one: those scheduled within a few working days of it, and how many recipients they share.

Read from mailings/ of the checkout (main plus the pull request): each request's send_at, and only those within the
window are loaded in full. A finished mailing's send_at comes from the index of finished mailings (sender.finished)
while its entry holds, so that years of sent mailings cost a stat each rather than a read of their mailing.yaml;
every other request's is read from its mailing.yaml. Shared recipients are counted on keyed hashes
(checks.audience.digests, with a key made for the run), so no address is held for the comparison or shown. IT's
special lists cannot be read by the check: two mailings that both use one count it as shared at its approximate
size, and a special list used by one of them only is left out of the count (the plan says so).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from checks.addresses import recipient_count
from checks.audience import digests
from checks.loader import MAILINGS_DIR, MAX_YAML_BYTES, listing, load_mailing, read_regular
from checks.model import MAILING_FILE, SENDLOG_FILE, Mailing, parse_local_datetime
from checks.policy import Policy
from checks.yamlsafe import YamlError, loads

if TYPE_CHECKING:
    from sender.finished import Entry

WINDOW_WORKING_DAYS = 3
# A neighbour that reaches at least this share of this mailing's recipients overlaps heavily: warned of.
HEAVY_SHARE = 0.25


@dataclass(frozen=True)
class Neighbour:
    """Another mailing scheduled near this one."""

    id: str
    send_at: datetime
    sender: str  # the unit's id as the request gives it
    recipients: int  # unique addresses, IT's lists at their approximate size
    state: str  # scheduled, held, cancelled, sent
    shared: int  # recipients both reach: list files compared on keyed hashes, common special lists at their size
    shared_special: tuple[str, ...]  # special lists both use
    days: int  # calendar days from this mailing (negative: earlier)
    delivered: tuple[int, int] | None = None  # sent: (delivered, accepted), from its send and bounce logs

    @property
    def state_text(self) -> str:
        if self.delivered is None:
            return self.state
        delivered, accepted = self.delivered
        return f"{self.state}: {delivered:,} delivered of {accepted:,} accepted"

    def heavy(self, own: int) -> bool:
        return own > 0 and self.state != "cancelled" and self.shared >= HEAVY_SHARE * own


@dataclass(frozen=True)
class _Other:
    """What the comparison needs of another mailing, kept for the run."""

    sender: str
    recipients: int
    state: str
    digests: frozenset[bytes]
    special: frozenset[str]
    delivered: tuple[int, int] | None = None


class Schedule:
    """The requests under mailings/ by dispatch time, read once for a run: each one's send_at (a finished one's from
    the index of finished mailings), and a request near one of the plan's in full, once however many of them it is
    near."""

    def __init__(self, root: Path, policy: Policy, key: bytes) -> None:
        self.root, self.policy, self.key = root, policy, key
        self._dates: list[tuple[str, datetime]] | None = None
        self._others: dict[str, _Other] = {}
        self._near: dict[tuple[date, date], bool] = {}

    def neighbours(self, mailing: Mailing) -> list[Neighbour]:
        """The other requests whose send_at falls within WINDOW_WORKING_DAYS working days of *mailing*'s, by
        dispatch time; nothing when *mailing* has no send_at."""
        if mailing.send_at is None:
            return []
        day = mailing.send_at.date()
        own = self._summary(mailing).digests
        mine = {lst.name for lst in mailing.lists if lst.kind == "special" and not lst.resolved}
        found: list[Neighbour] = []
        for mailing_id, when in self._scheduled():
            if mailing_id == mailing.id:
                continue
            pair = (day, when.date())
            if pair not in self._near:
                self._near[pair] = _near(self.policy, *pair)
            if not self._near[pair]:
                continue
            other = self._other(mailing_id)
            common = tuple(sorted(other.special & mine))
            shared = len(own & other.digests) + sum(
                self.policy.special_lists[name].approximate_size for name in common if name in self.policy.special_lists
            )
            days = (when.date() - day).days
            found.append(
                Neighbour(
                    mailing_id, when, other.sender, other.recipients, other.state, shared, common, days, other.delivered
                )
            )
        return sorted(found, key=lambda n: (n.send_at, n.id))

    def _scheduled(self) -> list[tuple[str, datetime]]:
        if self._dates is None:
            from sender.finished import read_index

            # Names from one scandir, and a path only for what is read: years of sent mailings cost little each.
            names, links = listing(self.root)
            index = read_index(self.root)
            base = os.path.join(self.root, MAILINGS_DIR)
            self._dates = []
            for name in names:
                if name in links:
                    continue
                entry = index.get(name)
                when = _indexed_send_at(entry, os.path.join(base, name, SENDLOG_FILE), self.policy) if entry else None
                when = when or _send_at(self.root / MAILINGS_DIR / name, self.policy)
                if when is not None:
                    self._dates.append((name, when))
        return self._dates

    def _other(self, mailing_id: str) -> _Other:
        other = self._others.get(mailing_id)
        if other is None:
            other = self._summary(load_mailing(self.root, self.root / MAILINGS_DIR / mailing_id, self.policy))
        if other.state == "sent" and other.delivered is None:  # read once, for a neighbour only
            other = self._others[mailing_id] = replace(other, delivered=_delivered(self.root, mailing_id))
        return other

    def _summary(self, mailing: Mailing) -> _Other:
        """What the comparison needs of *mailing*, kept for the run: a plan's own mailing, already loaded, is not
        loaded or hashed again when it is another's neighbour."""
        if mailing.id not in self._others:
            self._others[mailing.id] = _Other(
                sender=mailing.get("sender", "unit", kind=str) or "?",
                recipients=recipient_count(mailing, self.policy),
                state=_state(mailing),
                digests=digests(mailing.recipients.unique, self.key),
                special=frozenset(lst.name for lst in mailing.lists if lst.kind == "special"),
            )
        return self._others[mailing.id]


def _send_at(directory: Path, policy: Policy) -> datetime | None:
    """A request's send_at from its mailing.yaml alone; None when it has none that reads."""
    try:
        data = loads(read_regular(directory / MAILING_FILE, MAX_YAML_BYTES).decode("utf-8-sig")).data
    except (OSError, ValueError, YamlError):
        return None
    value = data.get("send_at") if isinstance(data, dict) else None
    return parse_local_datetime(value, policy.timezone, policy.default_send_time) if isinstance(value, str) else None


def _indexed_send_at(entry: Entry, log: str, policy: Policy) -> datetime | None:
    """A finished mailing's send_at as the index has it, while its entry holds for the send log at *log*
    (sender.finished.holds): a sent request cannot change ([immutable]), so it is the one its mailing.yaml gives.
    None otherwise."""
    from sender.finished import holds

    if entry.send_at is None or not holds(entry, log):
        return None
    try:
        when = datetime.fromisoformat(entry.send_at)
    except ValueError:
        return None
    return when.astimezone(policy.timezone) if when.tzinfo is not None else None


def _near(policy: Policy, day: date, other: date) -> bool:
    """Within WINDOW_WORKING_DAYS working days: weekdays that are no holiday. Blackout days count here (unlike for
    the lead time): two mailings on either side of a long blackout period are weeks apart for their readers."""
    first, last = min(day, other), max(day, other)
    if (last - first).days > 3 * WINDOW_WORKING_DAYS:  # more weekends and holidays than a few days can hold
        return False
    found, current = 0, first
    while current < last:
        current += timedelta(days=1)
        if current.weekday() < 5 and policy.calendar.holiday(current) is None:
            found += 1
    return found <= WINDOW_WORKING_DAYS


def _delivered(root: Path, mailing_id: str) -> tuple[int, int]:
    """(delivered, accepted) of a sent mailing: accepted less its hard bounces (sender.bounces)."""
    from sender.bounces import delivery_counts

    counts = delivery_counts(root, mailing_id)
    return counts["delivered"], counts["accepted"]


def _state(mailing: Mailing) -> str:
    if mailing.dispatched:
        return "sent"
    if mailing.get("cancel") is not None:
        return "cancelled"
    if mailing.get("hold") is not None:
        return "held"
    return "scheduled"

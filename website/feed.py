"""The iCalendar feed of the mailings: one event per mailing with a send time, to subscribe to.

Each event's UID is the mailing's id under the organisation's first internal domain: the same on every build,
so a calendar that subscribes updates an event instead of adding another. No address: the summary is the
subject, the description the sender, the recipient group, the count and the state.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from icalendar import Calendar, Event

from checks.policy import Policy
from sender.state import MailingState
from website.facts import MailingFacts

PRODID = "-//mailings as code//calendar site//EN"


def uid(mailing_id: str, policy: Policy) -> str:
    domain = policy.internal_domains[0] if policy.internal_domains else "mailings.invalid"
    return f"mailing-{mailing_id}@{domain}"


def feed(facts: Sequence[MailingFacts], policy: Policy, now: datetime, page_url: dict[str, str]) -> bytes:
    """The feed as bytes; *page_url* maps mailing ids to their page's address, when the site's is known."""
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", f"Mass mailings, {policy.organisation}")
    stamp = now.astimezone(UTC)
    for f in facts:
        if f.send_at is None:
            continue
        event = Event()
        event.add("uid", uid(f.id, policy))
        event.add("dtstamp", stamp)
        event.add("dtstart", f.send_at.astimezone(UTC))  # UTC: no VTIMEZONE for a client to get wrong
        event.add("summary", f"Mass mailing: {f.subject}")
        event.add("description", _description(f))
        event.add("status", "CANCELLED" if f.state is MailingState.CANCELLED else "CONFIRMED")
        event.add("transp", "TRANSPARENT")  # a mailing takes nobody's time
        event.add("categories", [f.state.value])
        if f.id in page_url:
            event.add("url", page_url[f.id])
        calendar.add_component(event)
    return calendar.to_ical()


def _description(f: MailingFacts) -> str:
    return "\n".join(
        (
            f"Sender: {f.sender}",
            f"To: {f.group}",
            f"Recipients: {f.counts.recipients}",
            f"State: {f.state.value} ({f.reason})",
        )
    )

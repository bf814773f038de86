"""[event] An event is fully described, and its dates fit the dispatch.

The policy asks every mailing about an event for its date, time, venue,
registration procedure and latest registration date; each missing one is an
error. The event may not be before the dispatch date, and the registration
deadline must fall between the dispatch date and the event, both inclusive.
Dates that are not real dates are reported by the schema rule.

Passes (with ``send_at: "2027-02-10 09:00"``)::

    event:
      date: "2027-03-01"
      time: "13:00-15:00"
      venue: Aula Magna, KTH Campus
      registration: Register at https://www.kth.se/event/123
      registration_deadline: "2027-02-20"

Fails::

    event:
      date: "2027-02-09"                  # before the dispatch
      venue: Aula Magna                   # time, registration and registration_deadline missing
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

from checks.model import Context, Finding, Mailing, Stage, error, parse_date
from checks.policy import Policy

ID = "event"
STAGES: tuple[Stage, ...] = ("submit", "send")

# Each field the policy asks for, with an example of what to write.
REQUIRED = {
    "date": 'date: "2027-03-01"',
    "time": 'time: "13:00-15:00"',
    "venue": "venue: Aula Magna, KTH Campus",
    "registration": "registration: Register at https://www.kth.se/event/123",
    "registration_deadline": 'registration_deadline: "2027-02-20"',
}


def check(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    event = mailing.get("event", kind=dict)
    if event is None:
        return  # no event, or one of the wrong shape, which the schema rule reports
    yield from _missing(mailing, event)
    dispatch = mailing.send_at.date() if mailing.send_at is not None else None
    held = parse_date(event.get("date"))
    deadline = parse_date(event.get("registration_deadline"))
    yield from _dates(mailing, dispatch, held, deadline)


def _missing(mailing: Mailing, event: dict[str, Any]) -> Iterator[Finding]:
    for field, example in REQUIRED.items():
        if field not in event:
            yield error(
                mailing.at("event"),
                f"the event has no {field}; add it, e.g. {example} (the policy asks for the date, time, venue, "
                "registration procedure and latest registration date of every event)",
            )


def _dates(mailing: Mailing, dispatch: date | None, held: date | None, deadline: date | None) -> Iterator[Finding]:
    if dispatch is not None and held is not None and held < dispatch:
        yield error(
            mailing.at("event", "date"),
            f"the event on {held.isoformat()} is before the dispatch on {dispatch.isoformat()}; "
            "move send_at before the event, or correct event.date",
        )
    if deadline is None:
        return
    if dispatch is not None and deadline < dispatch:
        yield error(
            mailing.at("event", "registration_deadline"),
            f"registration_deadline {deadline.isoformat()} is before the dispatch on {dispatch.isoformat()}, so "
            f"nobody could register; set it on or after {dispatch.isoformat()}",
        )
    if held is not None and deadline > held:
        yield error(
            mailing.at("event", "registration_deadline"),
            f"registration_deadline {deadline.isoformat()} is after the event on {held.isoformat()}; "
            f"set it on or before {held.isoformat()}",
        )

"""[blackout] Nothing is sent in a blackout period (July; Christmas to Epiphany).

Allowed only for a crisis mailing, or with a ``blackout_exception`` when the
request was submitted at least the lead time in working days before the
period began ("agreed and approved well in advance"). At send time, and for
a mailing a run has started sending, the exception is honoured as merged: its
timing was judged at submission, and later there is no submission date.

At send time the moment of sending is judged as well: a mailing due on 30 June that a run reaches only on
1 July is not sent (unless it is a crisis mailing or has an exception).

Passes: ``send_at: "2027-07-05"`` with a blackout_exception, submitted 2027-05-03.

Fails: ``send_at: "2027-07-05"`` without an exception, or with one submitted 2027-06-28.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from checks.model import Context, Finding, Mailing, Stage, error
from checks.policy import Policy

ID = "blackout"
STAGES: tuple[Stage, ...] = ("submit", "send")


def check(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    if mailing.send_at is None or mailing.is_crisis:
        return
    calendar = policy.calendar
    day = mailing.send_at.date()
    span = calendar.blackout(day)
    if span is None:
        if context.stage == "send":
            yield from _now_in_blackout(mailing, policy, context)
        return
    period = f"the blackout period {span.period.name} ({span.first.isoformat()} to {span.last.isoformat()})"
    if mailing.get("blackout_exception", kind=dict) is None:
        yield error(
            mailing.at("send_at"),
            f"send_at {day.isoformat()} is in {period}, when no mailings are sent; choose a date outside it, "
            "or add a blackout_exception agreed well in advance",
        )
        return
    if context.stage == "send" or mailing.dispatched:
        return
    lead = policy.lead_time_working_days
    ahead = calendar.working_days_between(context.submitted, span.first - timedelta(days=1))
    if ahead < lead:
        latest = calendar.latest_submission(span.first, lead)
        yield error(
            mailing.at("blackout_exception"),
            f"a blackout_exception must be agreed at least {lead} working days before {period} begins; "
            f"this request was submitted on {context.submitted.isoformat()}, {max(ahead, 0)} working days before "
            f"(the last day to submit was {latest.isoformat()}). Choose a date outside the period",
        )


def _now_in_blackout(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    """At send time the moment of sending counts too: a send_at just before a blackout period, reached by a run
    only after the period began, would send inside it."""
    span = policy.calendar.blackout(context.now.date())
    if span is None or mailing.get("blackout_exception", kind=dict) is not None:
        return
    yield error(
        mailing.at("send_at"),
        f"it is now {context.now.date().isoformat()}, inside the blackout period {span.period.name} "
        f"({span.first.isoformat()} to {span.last.isoformat()}), when no mailings are sent, although send_at "
        f"{mailing.send_at.date().isoformat() if mailing.send_at else ''} was before it; nothing is sent: give the "
        "mailing a date after the period",
    )

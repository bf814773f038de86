"""[send-time] Warnings for a dispatch time that recipients or reviewers will not welcome.

``send_at`` on a weekend or a holiday, or outside the policy's send window
(08:00-17:00 local time), is a warning. So is a ``send_at`` that has passed
or is less than a day ahead of the check: the sender sends a mailing that is
due as soon as it is merged (one that is more than the policy's
``sending.max_lateness_hours`` late it does not send at all, and records it
as missed). A date in the request's id that is not ``send_at``'s date is a
warning too: the id is how people find the mailing.

Judged at submission only: its findings are warnings, which never stop a
send, so the sender does not judge them again. A mailing that is held,
cancelled or already being sent is not warned about its send_at's moment.

Passes: ``send_at: "2027-02-10 09:00"`` (a Wednesday morning) in
``mailings/2027-02-10-travel``, checked on 2027-01-11.

Fails (warning): ``send_at: "2027-02-13 09:00"`` (Saturday),
``"2027-02-10 18:30"``; checked at 2027-02-10 10:00, ``"2027-02-10 09:00"``
(passed: merging sends it at once) and ``"2027-02-10 16:00"`` (less than a
day ahead); ``send_at: "2027-02-12 09:00"`` in ``mailings/2027-02-10-travel``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta

from checks.model import Context, Finding, Mailing, Stage, parse_date, warning
from checks.policy import Policy

ID = "send-time"
STAGES: tuple[Stage, ...] = ("submit",)

# Less notice than this, and the reviewers may merge after send_at: the mailing then goes out at once.
NOTICE = timedelta(days=1)
_ID_DATE = re.compile(r"(?<!\d)\d{4}-\d{2}-\d{2}(?!\d)")


def check(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    if mailing.send_at is None:
        return
    day, at = mailing.send_at.date(), mailing.send_at.time()
    if day.weekday() >= 5:
        yield warning(
            mailing.at("send_at"),
            f"send_at {day.isoformat()} is a {day.strftime('%A')}; choose a working day so that recipients read it",
        )
    else:
        holiday = policy.calendar.holiday(day)
        if holiday:
            yield warning(
                mailing.at("send_at"),
                f"send_at {day.isoformat()} is a holiday ({holiday}); choose a working day",
            )
    start, end = policy.send_window
    if not start <= at <= end:
        yield warning(
            mailing.at("send_at"),
            f"send_at {at.strftime('%H:%M')} is outside the send window {start.strftime('%H:%M')}-"
            f"{end.strftime('%H:%M')} ({policy.timezone.key}); choose a time within it",
        )
    yield from _soon(mailing, policy, context)
    yield from _id_date(mailing, day)


def _soon(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    """send_at passed or less than a day ahead: merging would send it at once (or never)."""
    send_at = mailing.send_at
    if send_at is None or mailing.dispatched or _steered(mailing):
        return
    now = context.now.astimezone(policy.timezone)
    shown, now_shown = _moment(send_at), _moment(now)
    # As sender.state.decide judges a mailing that is due: from send_at until max_lateness_hours after it.
    late = timedelta(hours=policy.sending.max_lateness_hours)
    if now > send_at + late:
        yield warning(
            mailing.at("send_at"),
            f"send_at {shown} is more than {policy.sending.max_lateness_hours:g} hours ago (it is now {now_shown}); "
            "the sender does not send a mailing that late, it records it as missed: set send_at to when the mailing "
            "should go out",
        )
    elif now >= send_at:
        yield warning(
            mailing.at("send_at"),
            f"send_at {shown} has passed (it is now {now_shown}); merging sends the mailing at once: if it should "
            "go out later, set send_at to that time",
        )
    elif send_at - now < NOTICE:
        yield warning(
            mailing.at("send_at"),
            f"send_at {shown} is less than a day ahead (it is now {now_shown}); if the pull request is merged after "
            "that time, merging sends the mailing at once: give the reviewers a day, or set a later send_at",
        )


def _steered(mailing: Mailing) -> bool:
    """Held or cancelled: merging sends nothing whatever send_at says."""
    return mailing.get("hold") is not None or mailing.get("cancel") is not None


def _id_date(mailing: Mailing, day: date) -> Iterator[Finding]:
    found = _ID_DATE.search(mailing.id)
    named = parse_date(found.group(0)) if found else None
    if found is None or named is None or named == day:
        return
    rest = mailing.id[found.end() :]
    rename = (
        f"rename the directory to {day.isoformat()}{rest}"
        if found.start() == 0
        else f"correct the date in the directory's name to {day.isoformat()}"
    )
    yield warning(
        mailing.at("send_at"),
        f"the request's id {mailing.id} says {named.isoformat()}, but send_at is {day.isoformat()}; {rename}, or "
        "correct send_at, so that the id says when the mailing goes out",
    )


def _moment(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")

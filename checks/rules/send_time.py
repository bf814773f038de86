"""[send-time] Warnings for a dispatch time that recipients will not welcome.

``send_at`` on a weekend or a holiday, or outside the policy's send window
(08:00-17:00 local time), is a warning.

Judged at submission only: its findings are warnings, which never stop a
send, so the sender does not judge them again.

Passes: ``send_at: "2027-02-10 09:00"`` (a Wednesday morning).

Fails (warning): ``send_at: "2027-02-13 09:00"`` (Saturday), ``"2027-02-10 18:30"``.
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.model import Context, Finding, Mailing, Stage, warning
from checks.policy import Policy

ID = "send-time"
STAGES: tuple[Stage, ...] = ("submit",)


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

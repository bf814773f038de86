"""[lead-time] Requests arrive at least the lead time (10 working days) before dispatch.

Working days are Monday to Friday minus public and de facto holidays and minus
every day in a blackout period. The earliest allowed dispatch date is the
lead-time-th working day strictly after the submitted date. Crisis mailings
are exempt. Judged at submission only, so never again for a mailing whose
send log shows that a run started sending it.

Passes: submitted 2027-01-11 (Monday), ``send_at: "2027-01-25 09:00"``.

Fails: submitted 2027-01-11, ``send_at: "2027-01-22 09:00"`` (9 working days).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from checks.calendar import Skipped
from checks.model import Context, Finding, Mailing, Stage, error
from checks.policy import Policy

ID = "lead-time"
STAGES: tuple[Stage, ...] = ("submit",)


def check(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    if mailing.send_at is None or mailing.is_crisis or mailing.dispatched:
        return
    calendar = policy.calendar
    earliest, skipped = calendar.earliest_dispatch(context.submitted)
    wanted = mailing.send_at.date()
    if wanted >= earliest:
        return
    days = calendar.working_days_between(context.submitted, wanted)
    yield error(
        mailing.at("send_at"),
        f"send_at {wanted.isoformat()} is {days} working day{'s' if days != 1 else ''} after submission on "
        f"{context.submitted.isoformat()}; the earliest allowed date is {earliest.isoformat()}"
        f"{describe_skipped(skipped)}. Move send_at to {earliest.isoformat()} or later "
        "(only crisis mailings are exempt)",
    )


def describe_skipped(skipped: Sequence[Skipped]) -> str:
    """' (skipped: weekends, Epiphany 2027-01-06, ...)' for a message."""
    if not skipped:
        return ""
    parts: list[str] = []
    if any(s.reason == "weekend" for s in skipped):
        parts.append("weekends")
    blackouts: dict[str, list[Skipped]] = {}
    for s in skipped:
        if s.reason.startswith("blackout: "):
            blackouts.setdefault(s.reason.removeprefix("blackout: "), []).append(s)
        elif s.reason != "weekend":
            parts.append(f"{s.reason} {s.day.isoformat()}")
    for name, days in blackouts.items():
        parts.append(f"blackout period {name} {days[0].day.isoformat()} to {days[-1].day.isoformat()}")
    return f" (skipped: {', '.join(parts)})"

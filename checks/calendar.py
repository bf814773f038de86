"""Working days: weekends, holidays and blackout periods, all from the policy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from checks.policy import BlackoutPeriod, Policy

# The days and months as the messages, the plan and the site name them (in English, whatever the locale).
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


@dataclass(frozen=True)
class Skipped:
    day: date
    reason: str  # "weekend", a holiday's name, or "blackout: <period>"


@dataclass(frozen=True)
class BlackoutSpan:
    """One occurrence of a blackout period, with real dates."""

    period: BlackoutPeriod
    first: date
    last: date


class WorkCalendar:
    """Answers "is this a working day, and if not, why" for one policy."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._earliest: dict[date, tuple[date, tuple[Skipped, ...]]] = {}

    def holiday(self, day: date) -> str | None:
        """The holiday's name, or None (weekends themselves are not holidays here)."""
        # Weekends are judged before holidays, so a country that lists every
        # Sunday as a holiday (Sweden does) changes nothing here.
        names = [n for n in str(self.policy.holidays.get(day) or "").split("; ") if n and n != "Sunday"]
        return "; ".join(names) or None

    def blackout(self, day: date) -> BlackoutSpan | None:
        """The blackout occurrence that contains *day*, or None."""
        for period in self.policy.blackout_periods:
            for year in (day.year - 1, day.year):
                span = _span(period, year)
                if span and span.first <= day <= span.last:
                    return span
        return None

    def why_not_working(self, day: date) -> str | None:
        """None on a working day, else why it is not one."""
        span = self.blackout(day)
        if span is not None:
            return f"blackout: {span.period.name}"
        if day.weekday() >= 5:
            return "weekend"
        return self.holiday(day)

    def is_working_day(self, day: date) -> bool:
        return self.why_not_working(day) is None

    def earliest_dispatch(self, submitted: date) -> tuple[date, tuple[Skipped, ...]]:
        """The earliest allowed dispatch date for a request submitted on *submitted*: the lead-time-th working
        day strictly after it, and the days skipped on the way. Every mailing of a run shares one submitted
        date, so the answer is kept."""
        if submitted not in self._earliest:
            day, found, skipped = submitted, 0, []
            while found < self.policy.lead_time_working_days:
                day += timedelta(days=1)
                reason = self.why_not_working(day)
                if reason is None:
                    found += 1
                else:
                    skipped.append(Skipped(day, reason))
            self._earliest[submitted] = (day, tuple(skipped))
        return self._earliest[submitted]

    def latest_submission(self, before: date, count: int) -> date:
        """The last day on which a request can be submitted with *count* working days left before *before*."""
        day, found = before, 0
        while found < count:
            day -= timedelta(days=1)
            if self.is_working_day(day):
                found += 1
        return day - timedelta(days=1)

    def working_days_between(self, after: date, until: date) -> int:
        """Working days strictly after *after*, up to and including *until*."""
        count, day = 0, after
        while day < until:
            day += timedelta(days=1)
            if self.is_working_day(day):
                count += 1
        return count


def _span(period: BlackoutPeriod, year: int) -> BlackoutSpan | None:
    """The occurrence of *period* that starts in *year* (None if its start is not a real date)."""
    try:
        first = date(year, *period.start)
        wraps = period.end < period.start
        last = date(year + 1 if wraps else year, *period.end)
    except ValueError:  # e.g. 02-29 in a common year
        return None
    return BlackoutSpan(period, first, last)

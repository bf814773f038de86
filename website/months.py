"""The months the site shows: each day with what the policy says of it and the mailings sent on it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from checks.calendar import MONTHS, WorkCalendar
from website.facts import MailingFacts


@dataclass(frozen=True)
class Label:
    kind: str  # "holiday", "blackout", "earliest" or "today": a CSS class, never the only cue
    text: str


@dataclass(frozen=True)
class Day:
    day: date
    labels: tuple[Label, ...]
    mailings: tuple[MailingFacts, ...]

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(label.kind for label in self.labels)

    @property
    def weekend(self) -> bool:
        return self.day.weekday() >= 5


@dataclass(frozen=True)
class Month:
    first: date
    days: tuple[Day, ...]

    @property
    def slug(self) -> str:
        return f"{self.first.year:04d}-{self.first.month:02d}"

    @property
    def title(self) -> str:
        return f"{MONTHS[self.first.month - 1]} {self.first.year}"

    @property
    def mailings(self) -> list[MailingFacts]:
        return [m for day in self.days for m in day.mailings]


def month_of(day: date) -> date:
    return day.replace(day=1)


def next_month(first: date) -> date:
    return (first + timedelta(days=32)).replace(day=1)


def span(facts: Sequence[MailingFacts], today: date, earliest: date) -> list[date]:
    """The first day of every month from the earliest to the latest of: the mailings, today, the earliest
    allowed dispatch date. No gap: every page links to the month before and after it."""
    firsts = {month_of(today), month_of(earliest)}
    firsts.update(month_of(f.send_at.date()) for f in facts if f.send_at is not None)
    months, first = [], min(firsts)
    while first <= max(firsts):
        months.append(first)
        first = next_month(first)
    return months


def build_months(facts: Sequence[MailingFacts], calendar: WorkCalendar, today: date, earliest: date) -> list[Month]:
    """Every month of span(), its days labelled: holidays and blackout periods (the same calendar the lead-time
    rule counts working days by), today, and the earliest allowed dispatch date for a request submitted today."""
    by_day: dict[date, list[MailingFacts]] = defaultdict(list)
    for f in facts:
        if f.send_at is not None:
            by_day[f.send_at.date()].append(f)
    months = []
    for first in span(facts, today, earliest):
        days, day = [], first
        while day.month == first.month:
            days.append(Day(day, _labels(day, calendar, today, earliest), tuple(by_day.get(day, ()))))
            day += timedelta(days=1)
        months.append(Month(first, tuple(days)))
    return months


def _labels(day: date, calendar: WorkCalendar, today: date, earliest: date) -> tuple[Label, ...]:
    labels = []
    if day == today:
        labels.append(Label("today", "Today"))
    if day == earliest:
        labels.append(Label("earliest", "Earliest allowed dispatch date for a request submitted today"))
    span = calendar.blackout(day)
    if span is not None:
        labels.append(Label("blackout", f"Blackout: {span.period.name}"))
    holiday = calendar.holiday(day)
    if holiday is not None:
        labels.append(Label("holiday", f"Holiday: {holiday}"))
    return tuple(labels)

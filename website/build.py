"""Writes the site: a page per month (index.html is the current one), a page per mailing, the stylesheet and
the iCalendar feed. HTML comes from Jinja2 templates with autoescaping on: every text of a request is
somebody's input, and a subject may hold markup."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from checks.calendar import WEEKDAYS
from checks.loader import discover
from checks.plan import local_time, long_date
from checks.policy import Policy
from sender.dispatch import Brake
from website.facts import NO_BRAKE, read_all
from website.feed import feed
from website.months import build_months, month_of

HERE = Path(__file__).resolve().parent
STYLESHEET = "site.css"
FEED = "mailings.ics"
MAILING_DIR = "mailings"
INDEX = "index.html"
# From this many mailings on, reading them in several processes saves more than starting the processes costs.
PARALLEL_FROM = 100
# Language names in their own language, for the body's heading and its lang attribute's reader.
LANGUAGES = {"sv": "Svenska", "en": "English", "fi": "Suomi", "de": "Deutsch", "fr": "Français", "es": "Español"}


@dataclass(frozen=True)
class Built:
    out: Path
    months: int
    mailings: int


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(long_date=long_date, WEEKDAYS=WEEKDAYS, LANGUAGES=LANGUAGES)
    env.filters["short_day"] = lambda day: f"{WEEKDAYS[day.weekday()][:3]} {day.day}"
    env.filters["hhmm"] = lambda moment: moment.strftime("%H:%M")
    return env


def month_page(first: date) -> str:
    return f"{first.year:04d}-{first.month:02d}.html"


def mailing_page(mailing_id: str) -> str:
    return f"{MAILING_DIR}/{mailing_id}.html"


def build(
    root: Path,
    policy: Policy,
    now: datetime,
    out: Path,
    base_url: str | None = None,
    workers: int = 1,
    brake: Brake = NO_BRAKE,
) -> Built:
    """Write the site of the repository at *root* as it stands at *now* into *out* (created if missing); with
    *workers* over 1, a repository of PARALLEL_FROM mailings or more is read by that many processes."""
    directories = discover(root)
    facts = read_all(root, directories, policy, now, workers if len(directories) >= PARALLEL_FROM else 1, brake)
    today = now.date()
    earliest, _ = policy.calendar.earliest_dispatch(today)
    months = build_months(facts, policy.calendar, today, earliest)
    env = environment()
    common = {
        "organisation": policy.organisation,
        "now": now,
        "today": today,
        "earliest": earliest,
        "lead_days": policy.lead_time_working_days,
        "months": months,
        "current": month_page(month_of(today)),
        "month_page": month_page,
        "mailing_page": mailing_page,
        "feed": FEED,
        "stylesheet": STYLESHEET,
        "undated": [f for f in facts if f.send_at is None],
    }
    (out / MAILING_DIR).mkdir(parents=True, exist_ok=True)
    written: set[Path] = set()
    shutil.copyfile(HERE / "static" / STYLESHEET, out / STYLESHEET)
    month_template = env.get_template("month.html")
    for index, month in enumerate(months):
        neighbours = {
            "previous": months[index - 1] if index > 0 else None,
            "next": months[index + 1] if index + 1 < len(months) else None,
        }
        html = month_template.render(common, base="", month=month, **neighbours)
        written.add(_write(out / month_page(month.first), html))
        if month.first == month_of(today):
            _write(out / INDEX, html)
    mailing_template = env.get_template("mailing.html")
    month_by_first = {m.first: m for m in months}
    for f in facts:
        its_month = month_by_first.get(month_of(f.send_at.date())) if f.send_at else None
        html = mailing_template.render(
            common, base="../", m=f, month=its_month, send_time=local_time(f.send_at, policy) if f.send_at else None
        )
        written.add(_write(out / mailing_page(f.id), html))
    urls = {f.id: f"{base_url.rstrip('/')}/{mailing_page(f.id)}" for f in facts} if base_url else {}
    (out / FEED).write_bytes(feed(facts, policy, now, urls))
    _remove_stale(out, written)
    return Built(out, len(months), len(facts))


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="\n")
    return path


def _remove_stale(out: Path, written: set[Path]) -> None:
    """Remove the pages an earlier build wrote for a month or a mailing that this one has not (a request that is
    gone): only files named as this module names its pages, nothing else in *out*."""
    candidates = [*out.glob("[0-9][0-9][0-9][0-9]-[0-9][0-9].html"), *(out / MAILING_DIR).glob("*.html")]
    for path in candidates:
        if path not in written and path.is_file() and not path.is_symlink():
            path.unlink()

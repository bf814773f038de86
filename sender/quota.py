"""Quota: how many recipients the relay still takes today (policy.sending.recipients_per_day), and when a mailing
that the quota cut short continues.

The day is a calendar day in the policy's time zone, and what it used is read from the send logs, never kept in
memory: every recipient of every `attempt` event of that day, in every mailing, counts (a recipient tried again
counts again, as the relay counts what it is handed). An attempt belongs to the day of its run's "now" (the
`day` of its start event), so that a run given --now counts what it and the runs of its day sent; an attempt of
a run that recorded no day counts by its time stamp. A log whose last event is of an earlier day is skipped
after reading its last line, so the cost follows the mailings that sent today, not the history. It reads the
logs and never writes them, and never talks to a relay.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from checks.loader import MAILINGS_DIR
from checks.model import SENDLOG_FILE

QUOTA_REASON = "the day's recipient quota is reached"
_TAIL = 4096  # enough for the last line of a log (an attempt of 1,000 recipients is longer: then all is read)
_ATTEMPT = b'"event":"attempt"'
_START = b'"event":"start"'


@dataclass(frozen=True)
class Quota:
    """The day's quota as a run finds it before a mailing."""

    limit: int  # recipients a day
    used: int  # attempted today, over every mailing's log
    day: date  # today, in the policy's time zone

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)


def day_of(now: datetime, tz: ZoneInfo) -> tuple[date, datetime, datetime]:
    """The calendar day of *now* in *tz*, with its first moment and the next day's."""
    local = now.astimezone(tz)
    start = datetime.combine(local.date(), time(0), tzinfo=tz)
    end = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=tz)
    return local.date(), start, end


def today(root: Path, now: datetime, tz: ZoneInfo, limit: int) -> Quota:
    """The quota of *now*'s day: *limit*, and what every send log under *root* attempted that day."""
    day = day_of(now, tz)[0]
    return Quota(limit, sum(attempted_on(path, now, tz) for path in _logs(root)), day)


def continues_at(day: date, start: datetime | None, tz: ZoneInfo) -> datetime:
    """When a mailing the quota stopped on *day* goes on: the next day, at the local time of day of its own start
    (send_at, or resume_at), the hour its requester chose and the checks approved."""
    hour = start.astimezone(tz).time() if start is not None else time(0)
    return datetime.combine(day + timedelta(days=1), hour, tzinfo=tz)


def attempted_on(path: Path, now: datetime, tz: ZoneInfo) -> int:
    """Recipients of the attempts in the log at *path* that belong to *now*'s day."""
    day, start, end = day_of(now, tz)
    today = day.isoformat()
    try:
        with path.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - _TAIL))
            tail = file.read()
            last = _last_event(tail if size > _TAIL else b"\n" + tail)
            if last is not None and _earlier(last, today, start):
                return 0  # nothing of this log is from today: the usual finished mailing
            file.seek(0)
            data = file.read()
    except OSError:
        return 0
    days: dict[object, str] = {}  # run -> the day of its start
    count = 0
    for line in data.split(b"\n"):
        starts = _START in line
        if not starts and _ATTEMPT not in line:
            continue
        event = _event(line)
        if event is None:
            continue
        if starts and event.get("event") == "start" and isinstance(event.get("day"), str):
            days[event.get("run")] = str(event["day"])
            continue
        if event.get("event") != "attempt":
            continue
        run_day = days.get(event.get("run"))
        if run_day is not None:
            if run_day != today:
                continue
        else:
            moment = _time(event.get("time"))
            if moment is None or not start <= moment < end:
                continue
        rcpt = event.get("rcpt")
        count += 1 if isinstance(rcpt, str) else len(rcpt) if isinstance(rcpt, list) else 0
    return count


def _earlier(event: dict[str, object], today: str, start: datetime) -> bool:
    """True when *event*, a log's last, says the log holds nothing of today: its run's day (end and quota
    events name it) is earlier, or, without one, its time stamp is."""
    day = event.get("day")
    if isinstance(day, str):
        return day < today
    moment = _time(event.get("time"))
    return moment is not None and moment < start


def _logs(root: Path) -> Iterator[Path]:
    for path in sorted((root / MAILINGS_DIR).glob(f"*/{SENDLOG_FILE}")):
        if not path.is_symlink() and path.is_file():
            yield path


def _last_event(tail: bytes) -> dict[str, object] | None:
    """The last complete event in *tail* (which starts at a line's beginning only if it starts with a newline);
    None when there is none, and the whole log is read."""
    lines = [line for line in tail.split(b"\n")[1:] if line.strip()]
    for line in reversed(lines):
        event = _event(line)
        if event is not None:
            return event
    return None


def _event(line: bytes) -> dict[str, object] | None:
    try:
        event = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None  # a torn write
    return event if isinstance(event, dict) else None


def _time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None

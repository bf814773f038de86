"""[lead-time]: 10 working days strictly after submission; weekends, holidays and blackouts skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Repo


def lead(repo: Repo, send_at: str, submitted: str, **changes: object) -> list[str]:
    repo.add(changes={"send_at": send_at, **changes})
    return repo.messages(submitted=submitted, rule="lead-time")


def test_exact_message_names_the_earliest_date(repo: Repo) -> None:
    assert lead(repo, "2027-01-22 09:00", "2027-01-11") == [
        "mailing.yaml:1:1: error [lead-time] send_at 2027-01-22 is 9 working days after submission on 2027-01-11; "
        "the earliest allowed date is 2027-01-25 (skipped: weekends). "
        "Move send_at to 2027-01-25 or later (only crisis mailings are exempt)"
    ]


@pytest.mark.parametrize(
    ("submitted", "earliest", "why"),
    [
        ("2027-01-11", "2027-01-25", "plain weeks"),
        ("2027-03-22", "2027-04-07", "Good Friday and Easter Monday inside the lead time"),
        ("2027-06-14", "2027-06-29", "Midsummer Eve (de facto holiday) inside the lead time"),
        ("2027-06-21", "2027-08-05", "July blackout inside the lead time"),
        ("2027-01-16", "2027-01-29", "submitted on a Saturday"),
        ("2026-12-28", "2027-01-20", "submitted inside the Christmas blackout"),
        ("2026-12-18", "2027-01-15", "Christmas to Epiphany skipped"),
    ],
)
def test_edges(repo: Repo, submitted: str, earliest: str, why: str) -> None:
    from datetime import date, timedelta

    day_before = (date.fromisoformat(earliest) - timedelta(days=1)).isoformat()
    repo.add("on-the-day", changes={"send_at": f"{earliest} 09:00"})
    repo.add("day-before", changes={"send_at": f"{day_before} 09:00"})
    assert repo.messages("on-the-day", submitted=submitted, rule="lead-time") == [], why
    (problem,) = repo.messages("day-before", submitted=submitted, rule="lead-time")
    assert f"the earliest allowed date is {earliest}" in problem, why


def test_holiday_named_in_skipped_days(repo: Repo) -> None:
    (problem,) = lead(repo, "2027-04-06 09:00", "2027-03-22")
    assert "Good Friday 2027-03-26" in problem and "Easter Monday 2027-03-29" in problem


def test_blackout_named_in_skipped_days(repo: Repo) -> None:
    (problem,) = lead(repo, "2027-08-04 09:00", "2027-06-21")
    assert "blackout period July 2027-07-01 to 2027-07-31" in problem


def test_date_without_time_uses_the_date(repo: Repo) -> None:
    assert lead(repo, "2027-01-25", "2027-01-11") == []


def test_submitted_as_pull_request_time(repo: Repo) -> None:
    # 2027-01-10T23:30Z is 2027-01-11 00:30 in Stockholm: the local date counts.
    repo.add(changes={"send_at": "2027-01-22 09:00"})
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from checks.options import parse_submitted

    assert parse_submitted("2027-01-10T23:30:00Z", ZoneInfo("Europe/Stockholm")) == datetime(2027, 1, 11).date()


def test_crisis_is_exempt(repo: Repo) -> None:
    assert lead(repo, "2027-01-12 09:00", "2027-01-11", crisis=True) == []


def test_not_judged_at_send_time(repo: Repo) -> None:
    repo.add(changes={"send_at": "2027-01-12 09:00"})
    assert repo.messages(submitted="2027-01-11", stage="send", rule="lead-time") == []


def test_invalid_send_at_is_left_to_the_schema(repo: Repo) -> None:
    assert lead(repo, "soon", "2027-01-11") == []


@pytest.mark.parametrize(
    ("log", "judged"),
    [
        ('{"event": "start", "run": "r1"}\n{"event": "attempt", "run": "r1"}\n', False),
        ("{not json\n", False),
        ('{"event": "blocked", "reason": "x"}\n{"event": "missed", "reason": "y"}\n', True),
        ("", True),
    ],
)
def test_a_mailing_a_run_started_sending_is_not_judged_again(repo: Repo, log: str, judged: bool) -> None:
    # Checked later, a sent mailing would always look too late: its lead time was judged at submission.
    repo.add(changes={"send_at": "2027-01-12 09:00"}, files={"sendlog.jsonl": log})
    assert bool(repo.messages(submitted="2027-01-11", rule="lead-time")) is judged


def test_a_symlinked_send_log_does_not_count_as_sent(repo: Repo, tmp_path: Path) -> None:
    fake = tmp_path / "elsewhere.jsonl"
    fake.write_text('{"event": "start"}\n')
    directory = repo.add(changes={"send_at": "2027-01-12 09:00"})
    (directory / "sendlog.jsonl").symlink_to(fake)
    assert repo.messages(submitted="2027-01-11", rule="lead-time")

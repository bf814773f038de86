"""[send-time]: warnings for weekends, holidays and hours outside the send window."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Repo


@pytest.mark.parametrize(
    ("send_at", "expected"),
    [
        ("2027-02-10 09:00", None),
        ("2027-02-10 08:00", None),
        ("2027-02-10 17:00", None),
        (
            "2027-02-10 07:59",
            "send_at 07:59 is outside the send window 08:00-17:00 (Europe/Stockholm); choose a time within it",
        ),
        (
            "2027-02-10 17:01",
            "send_at 17:01 is outside the send window 08:00-17:00 (Europe/Stockholm); choose a time within it",
        ),
        ("2027-02-13 09:00", "send_at 2027-02-13 is a Saturday; choose a working day so that recipients read it"),
        ("2027-05-06 09:00", "send_at 2027-05-06 is a holiday (Ascension Day); choose a working day"),
        ("2027-12-31 10:00", "send_at 2027-12-31 is a holiday (New Year's Eve); choose a working day"),
    ],
)
def test_warnings(repo: Repo, send_at: str, expected: str | None) -> None:
    repo.add("travel", changes={"send_at": send_at})  # an id without a date: see test_date_in_the_id
    found = repo.messages("travel", submitted="2027-01-04", rule="send-time")
    assert found == ([] if expected is None else [f"mailing.yaml:1:1: warning [send-time] {expected}"])


def test_date_alone_uses_default_time(repo: Repo) -> None:
    repo.add(changes={"send_at": "2027-02-10"})
    assert repo.messages(submitted="2027-01-04", rule="send-time") == []


def test_not_judged_at_send_time(repo: Repo) -> None:
    # Warnings never stop a send; the sender judges only what can.
    repo.add(changes={"send_at": "2027-02-13 18:30"})
    found = repo.messages(submitted="2027-01-04", now="2027-02-13T18:31:00+01:00", stage="send", rule="send-time")
    assert found == []


# --- a send_at that has passed or is near -------------------------------------------------------------------------

PASSED = (
    "warning [send-time] send_at 2027-02-10 09:00 has passed (it is now {now}); merging sends the mailing at once: "
    "if it should go out later, set send_at to that time"
)
NEAR = (
    "warning [send-time] send_at 2027-02-10 09:00 is less than a day ahead (it is now {now}); if the pull request "
    "is merged after that time, merging sends the mailing at once: give the reviewers a day, or set a later send_at"
)
MISSED = (
    "warning [send-time] send_at 2027-02-10 09:00 is more than 24 hours ago (it is now {now}); the sender does not "
    "send a mailing that late, it records it as missed: set send_at to when the mailing should go out"
)


@pytest.mark.parametrize(
    ("now", "expected", "shown"),
    [
        ("2027-02-09T08:59:00+01:00", None, ""),  # a day and a minute ahead
        ("2027-02-09T09:00:00+01:00", None, ""),  # exactly a day ahead
        ("2027-02-09T09:01:00+01:00", NEAR, "2027-02-09 09:01"),
        ("2027-02-10T08:59:59+01:00", NEAR, "2027-02-10 08:59"),
        ("2027-02-10T07:59:00+00:00", NEAR, "2027-02-10 08:59"),  # "now" in another zone, shown in the policy's
        ("2027-02-10T09:00:00+01:00", PASSED, "2027-02-10 09:00"),
        ("2027-02-11T09:00:00+01:00", PASSED, "2027-02-11 09:00"),  # the last moment the sender still sends it
        ("2027-02-11T09:01:00+01:00", MISSED, "2027-02-11 09:01"),
    ],
)
def test_send_at_that_has_passed_or_is_near_is_a_warning(
    repo: Repo, now: str, expected: str | None, shown: str
) -> None:
    repo.add(changes={"send_at": "2027-02-10 09:00"})
    found = repo.messages(submitted="2027-01-04", now=now, rule="send-time")
    assert found == ([] if expected is None else [f"mailing.yaml:1:1: {expected.format(now=shown)}"])


@pytest.mark.parametrize(
    "changes",
    [{"hold": {"reason": "Waiting for the press release"}}, {"cancel": {"reason": "The event is off"}}],
)
def test_held_or_cancelled_mailing_is_not_warned_about_its_moment(repo: Repo, changes: dict[str, Any]) -> None:
    repo.add(changes={"send_at": "2027-02-10 09:00", **changes})
    assert repo.messages(submitted="2027-01-04", now="2027-02-10T10:00:00+01:00", rule="send-time") == []


def test_sent_mailing_is_not_warned_about_its_moment(repo: Repo) -> None:
    directory = repo.add(changes={"send_at": "2027-02-10 09:00"})
    (directory / "sendlog.jsonl").write_text('{"event": "start", "run": "r1"}\n', encoding="utf-8")
    assert repo.messages(submitted="2027-01-04", now="2027-02-12T10:00:00+01:00", rule="send-time") == []


# --- the date in the id -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mailing_id", "send_at", "expected"),
    [
        ("2027-02-10-travel", "2027-02-10 09:00", None),
        ("2027-02-10-travel", "2027-02-10", None),
        ("travel", "2027-02-11 09:00", None),
        ("2027-13-40-travel", "2027-02-11 09:00", None),  # not a date: nothing to compare
        ("20270210-travel", "2027-02-11 09:00", None),
        (
            "2027-02-10-travel",
            "2027-02-11 09:00",
            "the request's id 2027-02-10-travel says 2027-02-10, but send_at is 2027-02-11; rename the directory to "
            "2027-02-11-travel, or correct send_at, so that the id says when the mailing goes out",
        ),
        (
            "travel-2027-02-10",
            "2027-02-11 09:00",
            "the request's id travel-2027-02-10 says 2027-02-10, but send_at is 2027-02-11; correct the date in the "
            "directory's name to 2027-02-11, or correct send_at, so that the id says when the mailing goes out",
        ),
    ],
)
def test_date_in_the_id(repo: Repo, mailing_id: str, send_at: str, expected: str | None) -> None:
    repo.add(mailing_id, changes={"send_at": send_at})
    found = repo.messages(mailing_id, submitted="2027-01-04", rule="send-time")
    assert found == ([] if expected is None else [f"mailing.yaml:1:1: warning [send-time] {expected}"])

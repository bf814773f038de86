"""[send-time]: warnings for weekends, holidays and hours outside the send window."""

from __future__ import annotations

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
    repo.add(changes={"send_at": send_at})
    found = repo.messages(submitted="2027-01-04", rule="send-time")
    assert found == ([] if expected is None else [f"mailing.yaml:1:1: warning [send-time] {expected}"])


def test_date_alone_uses_default_time(repo: Repo) -> None:
    repo.add(changes={"send_at": "2027-02-10"})
    assert repo.messages(submitted="2027-01-04", rule="send-time") == []


def test_not_judged_at_send_time(repo: Repo) -> None:
    # Warnings never stop a send; the sender judges only what can.
    repo.add(changes={"send_at": "2027-02-13 18:30"})
    assert repo.messages(submitted="2027-01-04", stage="send", rule="send-time") == []

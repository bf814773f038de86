"""[blackout]: nothing in July or Christmas to Epiphany unless crisis or agreed well in advance."""

from __future__ import annotations

import pytest

from tests.conftest import Repo

EXCEPTION = {"reason": "Exam schedule changes", "agreed_with": "CBL, Eva Ek, 2027-04-01"}


@pytest.mark.parametrize(
    ("send_at", "blocked"),
    [
        ("2027-06-30 09:00", False),
        ("2027-07-01 09:00", True),
        ("2027-07-31 09:00", True),
        ("2027-08-01 09:00", False),
        ("2027-12-23 09:00", False),
        ("2027-12-24 09:00", True),
        ("2028-01-01 09:00", True),
        ("2028-01-06 09:00", True),
        ("2028-01-07 09:00", False),
    ],
)
def test_period_edges(repo: Repo, send_at: str, blocked: bool) -> None:
    repo.add(changes={"send_at": send_at})
    assert bool(repo.messages(submitted="2027-03-01", rule="blackout")) is blocked


def test_exact_message(repo: Repo) -> None:
    repo.add(changes={"send_at": "2027-07-05 09:00"})
    assert repo.messages(submitted="2027-03-01", rule="blackout") == [
        "mailing.yaml:1:1: error [blackout] send_at 2027-07-05 is in the blackout period July "
        "(2027-07-01 to 2027-07-31), when no mailings are sent; choose a date outside it, "
        "or add a blackout_exception agreed well in advance"
    ]


def test_exception_agreed_in_time(repo: Repo) -> None:
    # The 10th working day before 2027-07-01 is 2027-06-16 (Midsummer Eve skipped): the 15th is the last day.
    repo.add(changes={"send_at": "2027-07-05 09:00", "blackout_exception": EXCEPTION})
    assert repo.messages(submitted="2027-06-15", rule="blackout") == []


def test_exception_agreed_too_late(repo: Repo) -> None:
    repo.add(changes={"send_at": "2027-07-05 09:00", "blackout_exception": EXCEPTION})
    (problem,) = repo.messages(submitted="2027-06-16", rule="blackout")
    assert problem.startswith("mailing.yaml:")
    assert "[blackout] a blackout_exception must be agreed at least 10 working days before" in problem
    assert "submitted on 2027-06-16, 9 working days before (the last day to submit was 2027-06-15)" in problem


def test_exception_submitted_inside_the_period(repo: Repo) -> None:
    repo.add(changes={"send_at": "2028-01-05 09:00", "blackout_exception": EXCEPTION})
    (problem,) = repo.messages(submitted="2027-12-27", rule="blackout")
    assert "0 working days before" in problem and "the last day to submit was 2027-12-09" in problem


def test_crisis_is_exempt(repo: Repo) -> None:
    repo.add(changes={"send_at": "2027-07-05 09:00", "crisis": True})
    assert repo.messages(submitted="2027-07-05", rule="blackout") == []


def test_also_judged_at_send_time(repo: Repo) -> None:
    repo.add(changes={"send_at": "2027-07-05 09:00"})
    assert repo.messages(submitted="2027-03-01", stage="send", rule="blackout")


def test_exception_is_honoured_at_send_time(repo: Repo) -> None:
    # The sender has no submission date: the exception's timing was judged when the request was checked.
    repo.add(changes={"send_at": "2027-07-05 09:00", "blackout_exception": EXCEPTION})
    assert repo.messages(submitted="2027-07-05", stage="send", rule="blackout") == []

"""[event] every field the policy asks for, and dates that fit the dispatch (send_at 2027-02-10)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.conftest import EVENT, VALID, Repo

# The event key lands after `subject` in the written mailing.yaml; its fields follow in EVENT's order.
AT_EVENT = "mailing.yaml:20:1"
AT_DATE = "mailing.yaml:21:3"
AT_DEADLINE = "mailing.yaml:25:3"
POLICY_ASKS = (
    "(the policy asks for the date, time, venue, registration procedure and latest registration date of every event)"
)


def event(
    repo: Repo, send_at: str = "2027-02-10 09:00", mailing_id: str = "2027-02-10-travel", **fields: Any
) -> list[str]:
    """Messages for a request with the example event, its fields changed by *fields* (None removes one)."""
    value = {k: v for k, v in {**EVENT, **fields}.items() if v is not None}
    repo.add(mailing_id, changes={"send_at": send_at, "event": value})
    return repo.messages(mailing_id, rule="event")


def test_a_complete_event_passes(repo: Repo) -> None:
    assert event(repo) == []


def test_a_mailing_without_event_passes(repo: Repo) -> None:
    repo.add()
    assert repo.messages(rule="event") == []


@pytest.mark.parametrize(
    ("field", "example"),
    [
        ("date", 'date: "2027-03-01"'),
        ("time", 'time: "13:00-15:00"'),
        ("venue", "venue: Aula Magna, KTH Campus"),
        ("registration", "registration: Register at https://www.kth.se/event/123"),
        ("registration_deadline", 'registration_deadline: "2027-02-20"'),
    ],
)
def test_each_missing_field_is_an_error_at_the_event(repo: Repo, field: str, example: str) -> None:
    assert event(repo, **{field: None}) == [
        f"{AT_EVENT}: error [event] the event has no {field}; add it, e.g. {example} {POLICY_ASKS}"
    ]


def test_an_empty_event_misses_all_five(repo: Repo) -> None:
    repo.add(changes={"event": {}})
    found = repo.messages(rule="event")
    assert [m.split(";")[0] for m in found] == [
        f"{AT_EVENT}: error [event] the event has no {field}"
        for field in ("date", "registration", "registration_deadline", "time", "venue")
    ]


@pytest.mark.parametrize("value", [None, "on 1 March", ["2027-03-01"]])
def test_an_event_of_the_wrong_shape_is_left_to_the_schema(repo: Repo, value: Any) -> None:
    text = yaml.safe_dump({**VALID, "event": value}, sort_keys=False, allow_unicode=True)
    repo.add(yaml_text=text)
    assert repo.messages(rule="event") == []


# --- the event and the dispatch ----------------------------------------------------------------------------------


def test_an_event_on_the_dispatch_day_passes(repo: Repo) -> None:
    assert event(repo, date="2027-02-10", registration_deadline="2027-02-10") == []


def test_an_event_the_day_before_the_dispatch_is_an_error(repo: Repo) -> None:
    assert event(repo, date="2027-02-09", registration_deadline="2027-02-09") == [
        f"{AT_DATE}: error [event] the event on 2027-02-09 is before the dispatch on 2027-02-10; move send_at "
        "before the event, or correct event.date",
        f"{AT_DEADLINE}: error [event] registration_deadline 2027-02-09 is before the dispatch on 2027-02-10, so "
        "nobody could register; set it on or after 2027-02-10",
    ]


def test_the_dispatch_day_is_the_local_date_of_send_at(repo: Repo) -> None:
    late = {"date": "2027-02-10", "registration_deadline": "2027-02-10"}
    assert event(repo, send_at="2027-02-10 23:30", **late) == []
    assert [m.split(": error")[0] for m in event(repo, send_at="2027-02-11 00:00", mailing_id="next-day", **late)] == [
        AT_DATE,
        AT_DEADLINE,
    ]


# --- the registration deadline -----------------------------------------------------------------------------------


def test_a_deadline_on_the_dispatch_day_passes(repo: Repo) -> None:
    assert event(repo, registration_deadline="2027-02-10") == []


def test_a_deadline_the_day_before_the_dispatch_is_an_error(repo: Repo) -> None:
    assert event(repo, registration_deadline="2027-02-09") == [
        f"{AT_DEADLINE}: error [event] registration_deadline 2027-02-09 is before the dispatch on 2027-02-10, so "
        "nobody could register; set it on or after 2027-02-10"
    ]


def test_a_deadline_on_the_event_day_passes(repo: Repo) -> None:
    assert event(repo, registration_deadline="2027-03-01") == []


def test_a_deadline_the_day_after_the_event_is_an_error(repo: Repo) -> None:
    assert event(repo, registration_deadline="2027-03-02") == [
        f"{AT_DEADLINE}: error [event] registration_deadline 2027-03-02 is after the event on 2027-03-01; "
        "set it on or before 2027-03-01"
    ]


# --- dates the schema rule reports -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["2027-02-30", "next week", "1 March", "2027-3-1", ""])
def test_dates_that_are_not_dates_are_left_to_the_schema(repo: Repo, bad: str) -> None:
    assert event(repo, date=bad, registration_deadline=bad) == []


def test_without_a_valid_send_at_only_the_deadline_and_the_event_are_compared(repo: Repo) -> None:
    assert event(repo, send_at="soon", registration_deadline="2027-03-02") == [
        f"{AT_DEADLINE}: error [event] registration_deadline 2027-03-02 is after the event on 2027-03-01; "
        "set it on or before 2027-03-01"
    ]

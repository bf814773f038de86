"""[contact] a valid contact e-mail address (error) and a phone number with digits (warning)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Repo

PERSON = {"name": "Anna Andersson", "email": "anna.andersson@kth.se", "phone": None}


def contact(repo: Repo, value: dict[str, Any]) -> list[str]:
    """Messages for the default contact with the fields of *value* (None removes one)."""
    repo.add(changes={"contact": value})
    return repo.messages(rule="contact")


def test_a_complete_contact_passes(repo: Repo) -> None:
    assert contact(repo, {**PERSON, "phone": "+46 8 790 60 00"}) == []


@pytest.mark.parametrize("phone", ["08-790 60 00", "+46 (0)8 790 60 00", "ext. 6000", "0046 8 7906000"])
def test_phone_numbers_in_any_notation_pass(repo: Repo, phone: str) -> None:
    assert contact(repo, {**PERSON, "phone": phone}) == []


def test_a_missing_phone_is_a_warning_at_the_contact(repo: Repo) -> None:
    assert contact(repo, PERSON) == [
        "mailing.yaml:5:1: warning [contact] contact.phone is missing; the policy asks for a telephone number for "
        'questions about the mailing: add one, e.g. phone: "+46 8 790 60 00"'
    ]


@pytest.mark.parametrize("phone", ["ask the switchboard", "-", "+", "²³"])
def test_a_phone_without_digits_is_a_warning(repo: Repo, phone: str) -> None:
    assert contact(repo, {**PERSON, "phone": phone}) == [
        f"mailing.yaml:8:3: warning [contact] contact.phone '{phone}' has no digits; give a number people can "
        'call, e.g. phone: "+46 8 790 60 00"'
    ]


def test_an_invalid_email_is_an_error_at_its_line(repo: Repo) -> None:
    assert contact(repo, {**PERSON, "email": "anna.andersson(at)kth.se", "phone": "08-790 60 00"}) == [
        "mailing.yaml:7:3: error [contact] contact.email 'anna.andersson(at)kth.se' is not a valid e-mail "
        "address: An email address must have an @-sign. Give the contact person's own address, e.g. "
        "anna.andersson@kth.se"
    ]


@pytest.mark.parametrize(
    "email",
    [
        "anna",
        "anna@kth",
        "anna@kth.se.",
        "anna@@kth.se",
        "Anna Andersson <anna@kth.se>",
        "аnna@kth.se",  # Cyrillic а
        "anna@kth.se\r\nBcc: x@evil.com",
    ],
)
def test_invalid_emails_are_errors(repo: Repo, email: str) -> None:
    found = contact(repo, {**PERSON, "email": email, "phone": "08-790 60 00"})
    assert len(found) == 1
    assert found[0].startswith("mailing.yaml:7:3: error [contact] contact.email '")
    assert " is not a valid e-mail address: " in found[0]
    assert "\n" not in found[0]


def test_an_external_contact_address_is_fine(repo: Repo) -> None:
    assert contact(repo, {**PERSON, "email": "anna@example.org", "phone": "08-790 60 00"}) == []


def test_a_missing_contact_is_left_to_the_schema(repo: Repo) -> None:
    repo.add(changes={"contact": None})
    assert repo.messages(rule="contact") == []


def test_fields_of_the_wrong_type_are_left_to_the_schema(repo: Repo) -> None:
    assert contact(repo, {"name": "Anna", "email": 42, "phone": 87906000}) == []


def test_reply_to_must_be_an_address(repo: Repo) -> None:
    repo.add(changes={"reply_to": "travel desk", "contact": {"phone": "08-790 60 00"}})
    [message] = repo.messages(rule="contact")
    assert message.startswith("mailing.yaml:") and "error [contact] reply_to 'travel desk' is not a valid" in message
    assert message.endswith("or leave reply_to out to send them to the contact person")


def test_reply_to_is_judged_without_a_contact_too(repo: Repo) -> None:
    repo.add(changes={"reply_to": "travel desk", "contact": None})
    [message] = repo.messages(rule="contact")
    assert "error [contact] reply_to 'travel desk' is not a valid" in message


def test_a_valid_reply_to_passes(repo: Repo) -> None:
    repo.add(changes={"reply_to": "travel-desk@kth.se", "contact": {"phone": "08-790 60 00"}})
    assert repo.messages(rule="contact") == []

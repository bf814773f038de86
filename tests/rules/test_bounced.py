"""[bounced] list addresses that hard-bounced in earlier mailings: a warning per list file and month, with the key."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

from checks.linter import check_mailing
from checks.loader import load_mailing
from checks.model import Bounced, Context
from checks.rules import RULES
from sender.journal import make_hasher
from tests.conftest import Repo, addresses

KEY = "rule-test-log-key-0123456789abcdef0123"
MAILING = "2027-02-10-travel"


def bounced(months: Mapping[str, str], key: str = KEY) -> Bounced:
    """Recorded hard bounces: address -> month, as keyed hashes only."""
    hasher = make_hasher(key)
    return Bounced((hasher.of_all_normalised,), {hasher(address): month for address, month in months.items()})


def messages(repo: Repo, recorded: Bounced | None) -> list[str]:
    mailing = load_mailing(repo.root, repo.root / "mailings" / MAILING, repo.policy)
    now = datetime.fromisoformat("2027-01-11T10:00:00+01:00")
    context = Context(submitted=date(2027, 1, 11), now=now, bounced=recorded)
    problems = check_mailing(mailing, repo.policy, context, [RULES["bounced"]])
    return [f"{p.file.removeprefix(f'mailings/{MAILING}/')}:{p.line}: {p.level} {p.message}" for p in problems]


def test_a_list_without_bounced_addresses_passes(repo: Repo) -> None:
    repo.add()
    assert messages(repo, bounced({"someone.else@kth.se": "2027-01"})) == []
    assert messages(repo, None) == []  # no key: nothing to match


def test_bounced_addresses_are_one_warning_per_file_and_month_with_their_lines(repo: Repo) -> None:
    repo.add(
        changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"file": "doktorander.csv"}]}},
        files={"doktorander.csv": "email\n" + addresses(3, prefix="phd")},
    )
    recorded = {
        "user3@kth.se": "2027-01",
        "USER7@kth.se": "2027-01",
        "user9@kth.se": "2026-12",
        "phd1@kth.se": "2027-01",
    }
    assert messages(repo, bounced(recorded)) == [
        "doktorander.csv:3: warning 1 address in 'doktorander.csv' bounced in January 2027 (the mail came back for "
        "good: line 3): remove it",
        "recipients.txt:4: warning 2 addresses in 'recipients.txt' bounced in January 2027 (the mail came back for "
        "good: lines 4, 8): remove them",
        "recipients.txt:10: warning 1 address in 'recipients.txt' bounced in December 2026 (the mail came back for "
        "good: line 10): remove it",
    ]


def test_many_lines_are_summed_up(repo: Repo) -> None:
    repo.add()
    warning = messages(repo, bounced({f"user{n}@kth.se": "2027-02" for n in range(25)}))
    assert warning == [
        "recipients.txt:1: warning 25 addresses in 'recipients.txt' bounced in February 2027 (the mail came back "
        "for good: lines 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 15 more): remove them"
    ]


def test_another_key_matches_nothing(repo: Repo) -> None:
    repo.add()
    hasher = make_hasher("another-key-0123456789abcdef0123456789")
    assert messages(repo, Bounced((hasher.of_all_normalised,), bounced({"user1@kth.se": "2027-02"}).months)) == []

"""checks.mailview: a message as a mail client shows it, from the message the sender builds."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from checks.loader import load_mailing
from checks.mailview import client_lines, raw_text, wrap
from sender.message import INDIVIDUAL_TO, preview_letter, preview_text
from tests.conftest import Repo

SENT = datetime(2027, 7, 1, 9, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
MAILING = "2027-02-10-travel"


def test_the_four_headers_a_client_shows(repo: Repo) -> None:
    repo.add(MAILING, changes={"recipients": {"group": "Alla anställda på KTH"}})
    mailing = load_mailing(repo.root, repo.root / "mailings" / MAILING, repo.policy)
    letter = preview_letter(mailing, repo.policy, SENT)
    assert client_lines(letter, ZoneInfo("UTC"))[:5] == [
        "From: KTH IT <noreply@kth.se>",
        "To: Alla anställda på KTH",  # the undisclosed group by its name, decoded
        "Subject: Nytt system för resebokning / New travel booking system",
        "Date: Thursday 1 Jul 2027 07:00 UTC",  # in the zone asked for
        "",
    ]
    assert raw_text(letter) == preview_text(mailing, repo.policy, SENT)


def test_individual_delivery_shows_each_recipients_own_address(repo: Repo) -> None:
    repo.add(MAILING, changes={"delivery": {"mode": "individual"}})
    mailing = load_mailing(repo.root, repo.root / "mailings" / MAILING, repo.policy)
    lines = client_lines(preview_letter(mailing, repo.policy, SENT), repo.policy.timezone)
    assert lines[1] == f"To: {INDIVIDUAL_TO}"
    assert lines[3] == "Date: Thursday 1 Jul 2027 09:00 CEST"


def test_wrapping_as_a_client_wraps() -> None:
    link = "https://www.kth.se/" + "x" * 90
    body = "Short line.\n\n" + "word " * 20 + link + " end\n> " + "quoted text " * 10 + "\n    indented " + "a " * 40
    assert wrap(body, 40) == [
        "Short line.",
        "",
        "word word word word word word word word",
        "word word word word word word word word",
        "word word word word",
        link,  # never broken
        "end",
        "> quoted text quoted text quoted text",
        "> quoted text quoted text quoted text",
        "> quoted text quoted text quoted text",
        "> quoted text",
        "    indented a a a a a a a a a a a a a a",
        "a a a a a a a a a a a a a a a a a a a a",
        "a a a a a a",
    ]
    assert all(len(line) <= 40 for line in wrap(body, 40) if line != link)

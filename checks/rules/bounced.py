"""[bounced] A list file holds no address whose mail came back for good (a hard bounce) in an earlier mailing.

`mailings bounces` records, per mailing, the recipients whose mail bounced,
as the send log's keyed hashes (HMAC-SHA-256 with MAILINGS_LOG_KEY), never
the address. This rule hashes every address of a request's list files with
the same key and warns, per list file and month, how many of them hard-
bounced before, at the first one's line, naming the lines. Requesters then
clean their lists, and the next mailing reaches people instead of dead
mailboxes.

Only with the key: the rule speaks only when the command that runs it has
MAILINGS_LOG_KEY (the check of a trusted push, the pre-commit hook of IT
staff, the dispatch job). A hash that could be checked without a secret
could be reversed by anyone who guesses addresses (names at a known domain),
so without the key it says nothing; the pull-request check, which holds no
secrets, is one of those. Bounces recorded with another key (before a key
rotation) are matched while that key is kept in MAILINGS_LOG_KEY_PREVIOUS.
A request whose sending started is history and is not judged.

Passes::

    recipients.txt      # no address that hard-bounced before

Warns::

    doktorander.csv     # 37 addresses in doktorander.csv bounced in February 2027 (lines 4, 9, ...): remove them
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import PurePosixPath

from checks.addresses import shown
from checks.calendar import MONTHS
from checks.model import Context, Finding, Loc, Mailing, Stage, warning
from checks.policy import Policy

ID = "bounced"
STAGES: tuple[Stage, ...] = ("submit",)

SHOWN_LINES = 10


def check(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    bounced = context.bounced
    if bounced is None or not bounced.months or mailing.dispatched:
        return
    unique = mailing.recipients.unique
    months: list[str | None] = [None] * len(unique)
    for hash_all in bounced.hashes:  # each key held: a rotation leaves bounces recorded with the old one
        for index, hashed in enumerate(hash_all(unique)):
            months[index] = months[index] or bounced.months.get(hashed)
    found: dict[tuple[str, str], list[int]] = defaultdict(list)
    for entry, month in zip(unique.values(), months, strict=True):
        if month is not None:
            found[(entry.file, month)].append(entry.line)
    for (file, month), lines in sorted(found.items()):
        lines.sort()
        name = shown(PurePosixPath(file).name)
        listed = ", ".join(str(n) for n in lines[:SHOWN_LINES])
        more = f" and {len(lines) - SHOWN_LINES} more" if len(lines) > SHOWN_LINES else ""
        many = len(lines) != 1
        yield warning(
            Loc(file, lines[0]),
            f"{len(lines)} address{'es' if many else ''} in {name} bounced in {_month(month)} (the mail came "
            f"back for good: line{'s' if many else ''} {listed}{more}): remove {'them' if many else 'it'}",
        )


def _month(month: str) -> str:
    year, _, number = month.partition("-")
    if number.isdigit() and 1 <= int(number) <= 12:
        return f"{MONTHS[int(number) - 1]} {year}"
    return month

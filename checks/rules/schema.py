"""[schema] mailing.yaml follows schema/mailing.schema.json; the directory name is a valid id.

Unknown keys, missing fields and values of the wrong shape are errors at the
line of the offending key. ``send_at`` and the event's dates must be real
calendar dates.

Passes: ``mailings/2027-02-10-travel-booking/`` with every required field.

Fails::

    mailings/Travel Booking/          # id must match ^[a-z0-9][a-z0-9-]*$
    send_at: "2027-02-30 09:00"       # no such day
    colour: red                       # unknown field
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, time

from checks.model import ID_PATTERN, Context, Finding, Loc, Mailing, Stage, error, parse_date, parse_local_datetime
from checks.policy import Policy

ID = "schema"
STAGES: tuple[Stage, ...] = ("submit", "send")
# Shapes the schema accepts; a value of the right shape can still be no real day (2027-02-30).
_SEND_AT_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2})?$")
_DATE_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def check(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    if not ID_PATTERN.fullmatch(mailing.id):
        yield error(
            Loc(mailing.yaml_file),
            f"the directory name '{mailing.id}' is not a valid id; rename it to lower-case letters, "
            "digits and hyphens, starting with a letter or digit (e.g. 2027-02-10-travel-booking)",
        )
    if mailing.doc is None:
        return
    for said, mark in mailing.schema_problems:
        yield error(Loc(mailing.yaml_file, mark.line, mark.column), said.message)
    send_at = mailing.get("send_at", kind=str)
    if send_at is not None and mailing.send_at is None and _SEND_AT_SHAPE.match(send_at):
        yield error(mailing.at("send_at"), f"send_at {send_at!r} is not a real date and time; fix the day or hour")
    # a control field: one that is no real time would be passed over silently by the sender
    resume_at = mailing.get("resume_at", kind=str)
    if (
        resume_at is not None
        and _SEND_AT_SHAPE.match(resume_at)
        and parse_local_datetime(resume_at, UTC, time()) is None
    ):
        yield error(
            mailing.at("resume_at"), f"resume_at {resume_at!r} is not a real date and time; fix the day or hour"
        )
    for key in ("date", "registration_deadline"):
        value = mailing.get("event", key, kind=str)
        if value is not None and _DATE_SHAPE.match(value) and parse_date(value) is None:
            yield error(mailing.at("event", key), f"event.{key} {value!r} is not a real date")

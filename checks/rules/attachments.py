"""[attachments] (being written)."""

from __future__ import annotations

from collections.abc import Iterator

from checks.model import Context, Finding, Mailing, Stage
from checks.policy import Policy

ID = "attachments"
STAGES: tuple[Stage, ...] = ("submit", "send")


def check(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    yield from ()

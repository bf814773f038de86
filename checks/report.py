"""Check many mailings and summarise each (`check`), and the mailings/ folder as a whole (`check` and `plan`)."""

from __future__ import annotations

from pathlib import Path

from checks.addresses import recipient_count
from checks.linter import check_layout, check_mailing
from checks.loader import load_layout, load_mailing
from checks.model import Context, Mailing, Problem
from checks.policy import Policy
from checks.reporters import Summary


def summarise(mailing: Mailing, policy: Policy, context: Context, problems: list[Problem]) -> Summary:
    earliest = None if mailing.is_crisis else policy.calendar.earliest_dispatch(context.submitted)[0].isoformat()
    return Summary(
        id=mailing.id,
        directory=mailing.directory,
        send_at=mailing.send_at.isoformat() if mailing.send_at else None,
        earliest=earliest,
        languages=mailing.languages,
        recipients=recipient_count(mailing, policy),
        crisis=mailing.is_crisis,
        errors=sum(p.level == "error" for p in problems),
        warnings=sum(p.level == "warning" for p in problems),
    )


def check_all(root: Path, targets: list[Path], policy: Policy, context: Context) -> tuple[list[Problem], list[Summary]]:
    problems: list[Problem] = []
    summaries: list[Summary] = []
    for directory in targets:
        mailing = load_mailing(root, directory, policy)
        found = check_mailing(mailing, policy, context)
        problems.extend(found)
        summaries.append(summarise(mailing, policy, context, found))
    return sorted(problems), summaries


def check_repository(root: Path, policy: Policy, context: Context) -> list[Problem]:
    """Problems of the mailings/ folder as a whole ([layout]) and of IT's list files ([special-lists]). Every
    command reports them, whatever requests it checks: such a file concerns every request, and a pull request may
    add one and change no request."""
    return check_layout(load_layout(root, policy), policy, context)

"""Check many mailings and summarise each (`check`), and the mailings/ folder as a whole (`check` and `plan`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from checks.addresses import recipient_count
from checks.linter import check_layout, check_mailing
from checks.loader import load_layout, load_mailing
from checks.model import BasePolicy, Context, Mailing, Problem
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


def judge(root: Path, directory: Path, policy: Policy, context: Context) -> tuple[Mailing, list[Problem]]:
    """A request loaded and checked: against the policy, and against the base's as well when the checkout
    changes the policy or the schema (context.base_policy)."""
    context = context.for_mailing(directory.name)
    mailing = load_mailing(root, directory, policy)
    problems = check_mailing(mailing, policy, context)
    if context.base_policy is not None:
        problems = sorted(problems + only_under_new(root, directory, problems, context.base_policy, context))
    return mailing, problems


def only_under_new(
    root: Path, directory: Path, problems: list[Problem], base: BasePolicy, context: Context
) -> list[Problem]:
    """The errors the base's policy and schema find in the request where this checkout's find none (at the same
    file, line and rule), as errors that say so: a pull request cannot relax the rules it is judged by."""
    mailing = replace(load_mailing(root, directory, base.policy), schema_root=base.schema_root)
    then = replace(context, base_policy=None)
    errors_now = {(p.file, p.line, p.rule) for p in problems if p.level == "error"}
    changes = " and ".join(base.changed)
    return [
        Problem(
            p.file,
            p.line,
            p.column,
            "error",
            p.rule,
            f"passes only with the {changes} changes in this pull request: {p.message}",
        )
        for p in check_mailing(mailing, base.policy, then)
        if p.level == "error" and (p.file, p.line, p.rule) not in errors_now
    ]


def check_all(root: Path, targets: list[Path], policy: Policy, context: Context) -> tuple[list[Problem], list[Summary]]:
    problems: list[Problem] = []
    summaries: list[Summary] = []
    for directory in targets:
        mailing, found = judge(root, directory, policy, context)
        problems.extend(found)
        summaries.append(summarise(mailing, policy, context.for_mailing(mailing.id), found))
    return sorted(problems), summaries


def check_repository(root: Path, policy: Policy, context: Context) -> list[Problem]:
    """Problems of the mailings/ folder as a whole ([layout]) and of IT's list files ([special-lists]). Every
    command reports them, whatever requests it checks: such a file concerns every request, and a pull request may
    add one and change no request."""
    return check_layout(load_layout(root, policy), policy, context)

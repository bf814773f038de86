"""Runs every rule on a mailing and stamps each finding with its rule id."""

from __future__ import annotations

from collections.abc import Iterable

from checks.model import Context, Mailing, Problem
from checks.policy import Policy
from checks.rules import RULES, Rule


def check_mailing(
    mailing: Mailing,
    policy: Policy,
    context: Context,
    rules: Iterable[Rule] | None = None,
) -> list[Problem]:
    """All problems of *mailing*, sorted by file and position; never stops at the first."""
    problems: list[Problem] = []
    for rule in rules if rules is not None else RULES.values():
        if context.stage not in rule.STAGES:
            continue
        for finding in rule.check(mailing, policy, context):
            loc = finding.loc
            problems.append(Problem(loc.file, loc.line, loc.column, finding.level, rule.ID, finding.message))
    return sorted(set(problems))

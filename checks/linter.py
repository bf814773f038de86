"""Runs the rules on a mailing, or on the mailings/ folder, and stamps each finding with its rule id."""

from __future__ import annotations

from collections.abc import Iterable

from checks.model import Context, Finding, Layout, Mailing, Problem
from checks.policy import Policy
from checks.rules import LAYOUT_RULES, RULES, Rule


def check_mailing(
    mailing: Mailing,
    policy: Policy,
    context: Context,
    rules: Iterable[Rule] | None = None,
) -> list[Problem]:
    """All problems of *mailing*, sorted by file and position; never stops at the first."""
    chosen = rules if rules is not None else RULES.values()
    return _stamped((rule.ID, rule.check(mailing, policy, context)) for rule in chosen if context.stage in rule.STAGES)


def check_layout(layout: Layout, policy: Policy, context: Context) -> list[Problem]:
    """All problems of what stands directly under mailings/, sorted."""
    return _stamped(
        (rule.ID, rule.check(layout, policy, context)) for rule in LAYOUT_RULES.values() if context.stage in rule.STAGES
    )


def _stamped(found: Iterable[tuple[str, Iterable[Finding]]]) -> list[Problem]:
    problems: list[Problem] = []
    for rule_id, findings in found:
        for finding in findings:
            loc = finding.loc
            problems.append(Problem(loc.file, loc.line, loc.column, finding.level, rule_id, finding.message))
    return sorted(set(problems))

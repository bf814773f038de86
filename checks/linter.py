"""Runs the rules on a mailing, or on the mailings/ folder, and stamps each finding with its rule id."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
    found = _stamped((rule.ID, rule.check(mailing, policy, context)) for rule in chosen if context.stage in rule.STAGES)
    if not any(problem.rule == "schema" for problem in found):
        return found
    return _without_follow_ons(found, mailing)


# Rules whose findings are never follow-ons of a value of the wrong shape: the file as it reads, its shape, and
# whether it may change at all.
_FIRST = frozenset({"yaml", "schema", "immutable"})


def _without_follow_ons(problems: list[Problem], mailing: Mailing) -> list[Problem]:
    """*problems* less what other rules say of a value in mailing.yaml that the schema rule found of the wrong shape:
    such a value is one message to act on, not one per rule that reads it (the schema's error fails the request
    either way). A field that is missing is no value another rule could have read, so it hides nothing."""
    shaped = {(mark.line, mark.column) for said, mark in mailing.schema_problems if said.at is None}
    return [p for p in problems if p.rule in _FIRST or p.file != mailing.yaml_file or (p.line, p.column) not in shaped]


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


# Findings of one rule with one message shape in one file that are shown one by one; the rest become one finding.
# GitHub shows 10 error and 10 warning annotations per step, and a job summary holds at most 1 MiB: a list
# pasted wrongly must neither hide the other problems nor push the report past those limits.
REPEATS_SHOWN = 5
# What varies between findings of one shape: quoted text (addresses, names) and numbers (lines, counts).
_VARYING = re.compile(r"'[^']*'|\d[\d,]*")


@dataclass(frozen=True)
class Condensed:
    """Problems as every report shows them: repeats past the first few summed up in one, the counts of all."""

    problems: tuple[Problem, ...]  # by file and position
    by_use: tuple[Problem, ...]  # the same, most useful first: errors; the first of each kind before its repeats
    errors: int  # every error found, the summed-up ones included
    warnings: int


def condense(problems: Sequence[Problem], shown: int = REPEATS_SHOWN) -> Condensed:
    """*problems* with each run of the same rule and message shape in one file cut to its first *shown*, and the
    rest as one problem at the first of them: "and 2,991 more lines like this (lines 12-3,020)"."""
    groups: dict[tuple[str, str, str, str], list[Problem]] = {}
    for p in sorted(problems):
        groups.setdefault((p.file, p.level, p.rule, _VARYING.sub("'...'", p.message)), []).append(p)
    rank: dict[Problem, int] = {}  # 0: the first of its kind, 1: a repeat, 2: the sum of the rest
    for group in groups.values():
        # Summing up one problem would not make the report shorter.
        head, rest = (group, []) if len(group) <= shown + 1 else (group[:shown], group[shown:])
        for number, p in enumerate(head):
            rank[p] = min(number, 1)
        if rest:
            first = rest[0]
            rank[Problem(first.file, first.line, first.column, first.level, first.rule, _more(rest))] = 2
    kept = sorted(rank)
    errors = sum(p.level == "error" for p in problems)
    return Condensed(
        tuple(kept), tuple(sorted(kept, key=lambda p: (p.level != "error", rank[p], p))), errors, len(problems) - errors
    )


def _more(rest: Sequence[Problem]) -> str:
    lines = sorted({p.line for p in rest})
    where = f"line {lines[0]:,}" if len(lines) == 1 else f"lines {lines[0]:,}-{lines[-1]:,}"
    more = (
        f"{len(rest):,} more lines like this ({where})"
        if len(lines) == len(rest)
        else f"{len(rest):,} more like this ({where})"
    )
    return f"and {more}, not listed one by one; the first of them: {rest[0].message}"

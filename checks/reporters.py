"""Reporters turn problems into text for people, GitHub or machines; picked by name."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from itertools import groupby
from typing import Any, TextIO

from checks.escape import escaped
from checks.linter import Condensed, condense
from checks.model import Problem


@dataclass(frozen=True)
class Summary:
    """What the json reporter says of each mailing besides its problems."""

    id: str
    directory: str
    send_at: str | None
    earliest: str | None
    languages: list[str]
    recipients: int
    crisis: bool
    errors: int
    warnings: int


Reporter = Callable[[Sequence[Problem], Sequence[Summary], TextIO], None]


def _count_line(report: Condensed, summaries: Sequence[Summary]) -> str:
    errors, warnings, checked = report.errors, report.warnings, len(summaries)
    return (
        f"{checked} mailing{'s' if checked != 1 else ''} checked: "
        f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}\n"
    )


def _line(p: Problem) -> str:
    return f"{escaped(p.file)}:{p.line}:{p.column}: {p.level} [{p.rule}] {escaped(p.message)}\n"


def text(problems: Sequence[Problem], summaries: Sequence[Summary], out: TextIO) -> None:
    report = condense(problems)
    out.writelines(_line(p) for p in report.problems)
    out.write(_count_line(report, summaries))


def _escape_data(value: str) -> str:
    # escaped first: a line break or a control character in a name becomes visible text (\n), not a new command,
    # so no line break is left for the workflow-command encoding (%0A) to carry
    return escaped(value).replace("%", "%25")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def github(problems: Sequence[Problem], summaries: Sequence[Summary], out: TextIO) -> None:
    """Workflow commands that GitHub shows as annotations on the pull request's files, grouped per file.

    GitHub shows only the first 10 errors and 10 warnings of a step, so the most useful come first: errors before
    warnings, and the first of each kind of problem before its repeats; a run of files follows that order.
    """
    report = condense(problems)
    for file, group in groupby(report.by_use, key=lambda p: p.file):
        out.write(f"::group::{_escape_data(file)}\n")
        for p in group:
            out.write(
                f"::{p.level} file={_escape_property(p.file)},line={p.line},col={p.column},"
                f"title={_escape_property(p.rule)}::{_escape_data(p.message)}\n"
            )
        out.write("::endgroup::\n")
    out.write(_count_line(report, summaries))


def markdown(problems: Sequence[Problem], summaries: Sequence[Summary], out: TextIO) -> None:
    """Markdown for a job summary or a comment: the problems grouped per file, all text escaped."""
    from checks.markdown import code, text

    report = condense(problems)
    out.write("## mailings check\n\n")
    for file, group in groupby(report.problems, key=lambda p: p.file):
        out.write(f"### {code(file)}\n\n")
        for p in group:
            out.write(f"- **{p.level}** line {p.line}, column {p.column}, {code(p.rule)}: {text(p.message)}\n")
        out.write("\n")
    out.write(_count_line(report, summaries))


def json_report(problems: Sequence[Problem], summaries: Sequence[Summary], out: TextIO) -> None:
    report = condense(problems)
    doc: dict[str, Any] = {
        "problems": [asdict(p) for p in report.problems],
        "mailings": [asdict(s) for s in summaries],
    }
    json.dump(doc, out, ensure_ascii=False, indent=2)
    out.write("\n")


REPORTERS: dict[str, Reporter] = {"text": text, "github": github, "json": json_report, "markdown": markdown}

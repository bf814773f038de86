"""Repeated findings are summed up once for every report: a list pasted wrongly gives a few lines, not thousands,
while the counts and the exit code still count every finding."""

from __future__ import annotations

import json
import re

import pytest

from checks.cli import main
from checks.linter import REPEATS_SHOWN, condense
from checks.model import Problem
from tests.conftest import Repo, addresses, git

MID = "2027-02-10-travel"
LIST = f"mailings/{MID}/recipients.txt"
# 3,000 lines as an Outlook paste of bare names gives them: not one of them an address.
BAD = "".join(f"Anna Andersson {i}\n" for i in range(3000))


def invalid(line: int, name: str = "x") -> Problem:
    return Problem(LIST, line, 1, "error", "recipients", f"'{name}{line}' is not a valid e-mail address: no @")


def test_the_first_few_of_a_kind_are_kept_and_the_rest_summed_up_in_one() -> None:
    found = [invalid(line) for line in range(12, 3012)]
    report = condense(found)
    assert report.problems[:REPEATS_SHOWN] == tuple(found[:REPEATS_SHOWN])
    assert len(report.problems) == REPEATS_SHOWN + 1
    rest = report.problems[-1]
    assert (rest.file, rest.line, rest.level, rest.rule) == (LIST, 17, "error", "recipients")
    assert rest.message == (
        "and 2,995 more lines like this (lines 17-3,011), not listed one by one; the first of them: "
        "'x17' is not a valid e-mail address: no @"
    )
    assert (report.errors, report.warnings) == (3000, 0)


def test_one_more_than_the_few_is_shown_as_it_is() -> None:
    found = [invalid(line) for line in range(1, REPEATS_SHOWN + 2)]
    assert condense(found).problems == tuple(found)


def test_kinds_are_kept_apart_by_rule_level_file_and_message_shape() -> None:
    other_shape = [Problem(LIST, n, 1, "error", "recipients", f"'y{n}' is too long") for n in range(100, 110)]
    other_file = [
        Problem("other.txt", n, 1, "error", "recipients", f"'z{n}' is not a valid e-mail address: no @")
        for n in range(1, 11)
    ]
    warnings = [Problem(LIST, n, 1, "warning", "recipients", f"'w{n}' is listed already on line 1") for n in range(10)]
    report = condense([invalid(n) for n in range(1, 11)] + other_shape + other_file + warnings)
    assert len(report.problems) == 4 * (REPEATS_SHOWN + 1)
    assert (report.errors, report.warnings) == (30, 10)


def test_the_most_useful_come_first_errors_and_one_of_each_kind_before_repeats() -> None:
    warnings = [Problem("a.txt", n, 1, "warning", "recipients", f"'w{n}' is listed already") for n in range(1, 9)]
    errors = [invalid(n) for n in range(1, 9)]
    other = Problem(LIST, 50, 1, "error", "recipients", "'q' is too long")
    order = condense([*warnings, *errors, other]).by_use
    assert [(p.level, p.line) for p in order[:3]] == [("error", 1), ("error", 50), ("error", 2)]
    assert order[REPEATS_SHOWN + 1].message.startswith("and 3 more lines like this (lines 6-8)")
    assert [p.level for p in order] == ["error"] * 7 + ["warning"] * 6


def request(repo: Repo) -> None:
    source = {"text": "pasted from Outlook", "date": "2027-01-05"}  # a large list names its source
    repo.add(
        changes={"recipients": {"lists": [{"file": "recipients.txt", "source": source}]}},
        recipients=addresses(600) + BAD,
    )


def check(repo: Repo, capsys: pytest.CaptureFixture[str], fmt: str) -> tuple[int, str]:
    code = main(["check", "--root", str(repo.root), "--submitted", "2027-01-11", "--format", fmt])
    return code, capsys.readouterr().out


def test_3000_bad_lines_give_a_short_text_report_that_counts_them_all(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    request(repo)
    code, out = check(repo, capsys, "text")
    lines = out.splitlines()
    assert code == 1
    assert len(lines) == REPEATS_SHOWN + 2
    assert lines[REPEATS_SHOWN].startswith(
        f"{LIST}:606:1: error [recipients] and 2,995 more lines like this (lines 606-3,600), not listed one by one; "
        "the first of them: 'Anna Andersson 5' is not a valid e-mail address"
    )
    assert lines[-1] == "1 mailing checked: 3000 errors, 0 warnings"


def test_github_annotations_stay_within_what_github_shows(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    request(repo)
    code, out = check(repo, capsys, "github")
    annotations = [line for line in out.splitlines() if line.startswith("::error") or line.startswith("::warning")]
    assert code == 1
    assert len(annotations) == REPEATS_SHOWN + 1 <= 10
    assert out.splitlines()[-1] == "1 mailing checked: 3000 errors, 0 warnings"


@pytest.mark.parametrize("fmt", ["markdown", "json"])
def test_every_format_is_summed_up(repo: Repo, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    request(repo)
    code, out = check(repo, capsys, fmt)
    assert code == 1
    assert len(out) < 10_000
    if fmt == "json":
        doc = json.loads(out)
        assert len(doc["problems"]) == REPEATS_SHOWN + 1
        assert doc["mailings"][0]["errors"] == 3000
    else:
        assert out.endswith("1 mailing checked: 3000 errors, 0 warnings\n")


def test_the_plan_of_3000_bad_lines_stays_small(
    repo: Repo, plain_git: None, capsys: pytest.CaptureFixture[str]
) -> None:
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "Policy and schema")
    git(repo.root, "switch", "--quiet", "--create", "request")
    request(repo)
    code = main(["plan", "--root", str(repo.root), "--changed-since", "main", "--submitted", "2027-01-11"])
    out = capsys.readouterr().out
    assert code == 0
    assert len(out.encode()) < 50_000  # GitHub's job summary holds at most 1 MiB
    assert f"` mailings/{MID} `: 3000 errors" in out
    assert len(re.findall(r"^- error ", out, re.MULTILINE)) == REPEATS_SHOWN + 1
    assert "and 2\\,995 more lines like this \\(lines 606\\-3\\,600\\)" in out

"""A pull request that changes policy.yaml or schema/ is judged against the base's policy and schema as well: a
request that passes only under the new ones is an error that says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checks.cli import main
from tests.conftest import Repo, git

MAILING = "2027-02-10-travel"
ONLY = "passes only with the {} changes in this pull request: "


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def check(repo: Repo, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[dict[str, object]]]:
    code = main(
        ["check", "--root", str(repo.root), "--changed-since", "main", "--submitted", "2027-01-11", "--format",
         "json", *extra]
    )  # fmt: skip
    return code, json.loads(capsys.readouterr().out)["problems"]


def errors(problems: list[dict[str, object]]) -> list[tuple[object, str]]:
    return [(p["rule"], str(p["message"])) for p in problems if p["level"] == "error"]


def only_error(repo: Repo, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[object, str]:
    """The rule and message of the one error of a check that fails."""
    code, problems = check(repo, capsys, *extra)
    assert code == 1
    ((rule, message),) = errors(problems)
    return rule, message


def test_a_shorter_lead_time_in_the_same_pull_request_does_not_let_a_request_through(
    branch: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(branch.root / "policy.yaml", "lead_time_working_days: 10", "lead_time_working_days: 2")
    branch.add(MAILING, changes={"send_at": "2027-01-14 09:00"})
    rule, message = only_error(branch, capsys)
    assert rule == "lead-time"
    assert message.startswith(ONLY.format("policy.yaml") + "send_at 2027-01-14 is 3 working days after submission")


def test_adding_oneself_to_a_roles_authors_does_not_confirm_ones_claim(
    branch: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(branch.root / "policy.yaml", "{name: President, authors: []}", "{name: President, authors: [mallory]}")
    branch.add(MAILING, changes={"sender": {"unit": "management", "role": "president"}})
    rule, message = only_error(branch, capsys, "--author", "mallory")
    assert rule == "sender"
    assert message.startswith(ONLY.format("policy.yaml") + "sender.role president (President) is claimed by")


def test_a_relaxed_schema_is_judged_against_the_base_schema(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    schema = branch.root / "schema" / "mailing.schema.json"
    data = json.loads(schema.read_text(encoding="utf-8"))
    data["additionalProperties"] = True
    schema.write_text(json.dumps(data, indent=2), encoding="utf-8")
    branch.add(MAILING, changes={"bcc": "everyone@kth.se"})
    rule, message = only_error(branch, capsys)
    assert rule == "schema"
    assert message.startswith(ONLY.format("schema/mailing.schema.json") + "unknown field 'bcc'")


def test_a_request_that_passes_both_policies_passes(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    edit(branch.root / "policy.yaml", "lead_time_working_days: 10", "lead_time_working_days: 2")
    edit(branch.root / "policy.yaml", "max_subject_chars: 78", "max_subject_chars: 60")
    branch.add(MAILING)
    code, problems = check(branch, capsys)
    assert (code, errors(problems)) == (0, [])


def test_a_stricter_policy_judges_on_its_own(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    edit(branch.root / "policy.yaml", "lead_time_working_days: 10", "lead_time_working_days: 25")
    branch.add(MAILING)
    rule, message = only_error(branch, capsys)
    assert rule == "lead-time" and not message.startswith("passes only")


def test_an_unchanged_policy_is_read_once(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    # the base's policy is the same: no request is judged twice, and a lead-time error says nothing of changes
    branch.add(MAILING, changes={"send_at": "2027-01-14 09:00"})
    rule, message = only_error(branch, capsys)
    assert rule == "lead-time" and message.startswith("send_at 2027-01-14 is 3 working days")


def test_the_plan_shows_the_error_too(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    edit(branch.root / "policy.yaml", "lead_time_working_days: 10", "lead_time_working_days: 2")
    branch.add(MAILING, changes={"send_at": "2027-01-14 09:00"})
    assert main(["plan", "--root", str(branch.root), "--changed-since", "main", "--submitted", "2027-01-11"]) == 0
    out = capsys.readouterr().out
    assert "passes only with the policy\\.yaml changes in this pull request" in out, out


def test_the_base_is_read_with_git_and_nothing_is_checked_out(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    edit(branch.root / "policy.yaml", "lead_time_working_days: 10", "lead_time_working_days: 2")
    branch.add(MAILING, changes={"send_at": "2027-01-14 09:00"})
    check(branch, capsys)
    assert git(branch.root, "rev-parse", "--abbrev-ref", "HEAD") == "request"
    assert "lead_time_working_days: 2" in (branch.root / "policy.yaml").read_text(encoding="utf-8")


def test_a_base_policy_that_does_not_load_leaves_the_new_one_to_judge(
    branch: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    # main's policy is broken; the pull request fixes it
    edit(branch.root / "policy.yaml", "lead_time_working_days: 10", "lead_time_working_days: ten")
    git(branch.root, "switch", "--quiet", "main")
    git(branch.root, "commit", "--quiet", "-am", "A broken policy")
    git(branch.root, "switch", "--quiet", "request")  # its policy.yaml is the one that loads
    branch.add(MAILING)
    code, problems = check(branch, capsys)
    assert (code, errors(problems)) == (0, [])

"""The required check `approvals` (checks.approvals): a member of each team in policy.yaml approves the latest
commit of a pull request that changes mailings/; against a local GitHub that records every request."""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.approvals import add_arguments, cmd_approvals
from checks.cli import main as mailings
from checks.policy import load_policy
from tests.conftest import PROJECT, Repo
from tests.fakegithub import OWNER, REPO, FakeGitHub

OLD = "1" * 40
HEAD = "2" * 40
REQUEST = ["mailings/2027-02-10-travel/mailing.yaml", "mailings/2027-02-10-travel/body.en.txt"]
TEAMS = {
    "communication": {"name": "Communication office", "members": ["Cecilia-CBL", "carl"]},
    "it": {"name": "IT department", "members": ["ivar", "ines"]},
}
PREFIX = f"/repos/{OWNER}/{REPO}"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    yield fake
    fake.stop()


def set_teams(repo: Repo, teams: dict[str, Any] | None) -> None:
    path = repo.root / "policy.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.pop("approvals", None)
    if teams is not None:
        data["approvals"] = {"teams": teams}
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


@pytest.fixture
def policy_repo(repo: Repo) -> Repo:
    set_teams(repo, TEAMS)
    return repo


def approvals(github: FakeGitHub, root: Path, *extra: str, number: int = 7) -> tuple[int, str]:
    """`mailings approvals` as the workflow runs it (the environment passed in as on GitHub)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--pr", str(number), "--root", str(root), *extra])
    out = io.StringIO()
    code = cmd_approvals(args, github.env(), out)
    return code, out.getvalue()


def test_an_approval_from_each_office_on_the_latest_commit_passes(policy_repo: Repo, github: FakeGitHub) -> None:
    github.add_pull(7, "requester", HEAD, REQUEST)
    github.review(7, "ivar", "APPROVED", HEAD)
    github.review(7, "carl", "APPROVED", HEAD)
    code, out = approvals(github, policy_repo.root)
    assert code == 0, out
    assert "  approved  Communication office (communication): by @carl" in out
    assert "  approved  IT department (it): by @ivar" in out
    assert out.splitlines()[-1] == "passed: every office has approved the latest commit"
    assert [f"{r.method} {r.path}" for r in github.requests] == [
        f"GET {PREFIX}/pulls/7",
        f"GET {PREFIX}/pulls/7/files?per_page=100",
        f"GET {PREFIX}/pulls/7/reviews?per_page=100",
    ]
    assert github.writes() == []


def test_two_approvals_from_it_are_not_both_offices(policy_repo: Repo, github: FakeGitHub) -> None:
    github.add_pull(7, "requester", HEAD, REQUEST)
    github.review(7, "ivar", "APPROVED", HEAD)
    github.review(7, "ines", "APPROVED", HEAD)
    github.review(7, "outsider", "APPROVED", HEAD)  # in no team
    code, out = approvals(github, policy_repo.root)
    assert code == 1
    assert "  missing   Communication office (communication): no approval of commit 222222222222 yet from " in out
    assert "@Cecilia-CBL, @carl" in out
    assert "still missing: Communication office (communication)" in out
    assert out.splitlines()[-1] == (
        "::error title=approvals::still missing an approval of commit 222222222222 from Communication office"
    )


def test_a_push_after_the_approvals_voids_them(policy_repo: Repo, github: FakeGitHub) -> None:
    github.add_pull(7, "requester", OLD, REQUEST)
    github.review(7, "ivar", "APPROVED", OLD)
    github.review(7, "carl", "APPROVED", OLD)
    assert approvals(github, policy_repo.root)[0] == 0
    github.pulls[7].head_sha = HEAD  # a later push moved the dispatch earlier
    code, out = approvals(github, policy_repo.root)
    assert code == 1
    assert "@carl approved an older commit (111111111111); the push since needs a new approval" in out
    assert "@ivar approved an older commit (111111111111)" in out
    assert "still missing: Communication office (communication), IT department (it)" in out
    github.review(7, "ivar", "APPROVED", HEAD)
    github.review(7, "carl", "APPROVED", HEAD)
    assert approvals(github, policy_repo.root)[0] == 0


def test_changes_requested_after_an_approval_voids_it_and_a_comment_does_not(
    policy_repo: Repo, github: FakeGitHub
) -> None:
    github.add_pull(7, "requester", HEAD, REQUEST)
    github.review(7, "ivar", "APPROVED", HEAD)
    github.review(7, "carl", "APPROVED", HEAD)
    github.review(7, "ivar", "COMMENTED", HEAD)
    assert approvals(github, policy_repo.root)[0] == 0
    github.review(7, "carl", "CHANGES_REQUESTED", HEAD)
    code, out = approvals(github, policy_repo.root)
    assert code == 1 and "@carl requested changes" in out
    assert "still missing: Communication office (communication)" in out
    github.review(7, "carl", "APPROVED", HEAD)  # and approved again after the fix
    assert approvals(github, policy_repo.root)[0] == 0


def test_a_dismissed_approval_does_not_count(policy_repo: Repo, github: FakeGitHub) -> None:
    github.add_pull(7, "requester", HEAD, REQUEST)
    github.review(7, "ivar", "APPROVED", HEAD)
    approval = github.review(7, "carl", "APPROVED", HEAD)
    github.dismiss(approval)
    code, out = approvals(github, policy_repo.root)
    assert code == 1 and "@carl's review was dismissed" in out


def test_the_author_cannot_approve_for_a_team(policy_repo: Repo, github: FakeGitHub) -> None:
    """GitHub refuses an author's approval; were one recorded (an admin's API call), it still would not count."""
    github.add_pull(7, "Carl", HEAD, REQUEST)
    github.review(7, "carl", "APPROVED", HEAD)
    github.review(7, "ines", "APPROVED", HEAD)
    code, out = approvals(github, policy_repo.root)
    assert code == 1
    assert "@carl opened the pull request and cannot approve it" in out
    github.review(7, "cecilia-cbl", "APPROVED", HEAD)  # logins are compared without regard to case
    code, out = approvals(github, policy_repo.root)
    assert code == 0 and "by @cecilia-cbl" in out


def test_one_person_in_both_teams_approves_for_one_of_them(repo: Repo, github: FakeGitHub) -> None:
    set_teams(
        repo,
        {
            "communication": {"name": "Communication office", "members": ["both"]},
            "it": {"name": "IT department", "members": ["both", "ivar"]},
        },
    )
    github.add_pull(7, "requester", HEAD, REQUEST)
    github.review(7, "both", "APPROVED", HEAD)
    code, out = approvals(github, repo.root)
    assert code == 1
    assert "@both's approval counts for Communication office; one person approves for one team" in out
    github.review(7, "ivar", "APPROVED", HEAD)
    code, out = approvals(github, repo.root)
    assert code == 0, out
    assert "Communication office (communication): by @both" in out and "IT department (it): by @ivar" in out


def test_a_pull_request_that_changes_nothing_under_mailings_passes_saying_so(
    policy_repo: Repo, github: FakeGitHub
) -> None:
    github.add_pull(7, "developer", HEAD, ["checks/plan.py", "README.md", "mailings.md", "docs/mailings/x.md"])
    code, out = approvals(github, policy_repo.root)
    assert code == 0
    assert out.splitlines()[0] == (
        "pull request #7 at 222222222222 changes nothing under mailings/: the offices' approvals are not "
        "needed (code owners' review applies)"
    )


def test_moving_a_request_out_of_mailings_or_a_list_cut_short_needs_both_offices(
    policy_repo: Repo, github: FakeGitHub
) -> None:
    pull = github.add_pull(7, "developer", HEAD, ["attic/2027-02-10-travel/mailing.yaml"])
    pull.renamed_from["attic/2027-02-10-travel/mailing.yaml"] = "mailings/2027-02-10-travel/mailing.yaml"
    code, out = approvals(github, policy_repo.root)
    assert code == 1 and "changes mailings/" in out
    # GitHub lists 3,000 files at most; a larger pull request may hide a request among the rest
    github.add_pull(8, "developer", HEAD, [f"docs/{n}.md" for n in range(3001)])
    code, out = approvals(github, policy_repo.root, number=8)
    assert code == 1 and "changes mailings/" in out


def test_files_and_reviews_are_read_page_after_page(policy_repo: Repo) -> None:
    github = FakeGitHub(max_per_page=2)
    try:
        github.add_pull(7, "requester", HEAD, ["README.md", "checks/plan.py", "tests/x.py", *REQUEST])
        github.review(7, "ivar", "APPROVED", HEAD)
        github.review(7, "anna", "COMMENTED", HEAD)
        github.review(7, "bob", "COMMENTED", HEAD)
        github.review(7, "carl", "APPROVED", HEAD)
        github.review(7, "carl", "CHANGES_REQUESTED", HEAD)  # on the third page: it must be read
        code, out = approvals(github, policy_repo.root)
        assert code == 1 and "@carl requested changes" in out
        paths = [r.path for r in github.requests]
        assert f"{PREFIX}/pulls/7/files?per_page=2&page=3" in paths
        assert f"{PREFIX}/pulls/7/reviews?per_page=2&page=3" in paths
    finally:
        github.stop()


def test_a_policy_without_teams_lets_no_request_pass(repo: Repo, github: FakeGitHub) -> None:
    set_teams(repo, None)
    github.add_pull(7, "requester", HEAD, REQUEST)
    github.review(7, "ivar", "APPROVED", HEAD)
    code, out = approvals(github, repo.root)
    assert code == 1
    assert "policy.yaml names no teams under approvals.teams, so nobody can approve" in out
    github.add_pull(8, "developer", HEAD, ["README.md"])
    assert approvals(github, repo.root, number=8)[0] == 0


def test_a_run_for_an_older_commit_fails(policy_repo: Repo, github: FakeGitHub) -> None:
    github.add_pull(7, "requester", HEAD, REQUEST)
    github.review(7, "ivar", "APPROVED", HEAD)
    github.review(7, "carl", "APPROVED", HEAD)
    code, out = approvals(github, policy_repo.root, "--head-sha", OLD)
    assert code == 1 and "is now at 222222222222, not 111111111111" in out


def test_the_repository_can_be_named_on_the_command_line(
    policy_repo: Repo, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mailings approvals --repo OWNER/NAME --pr N` away from GitHub Actions: the token and API from the
    environment, the repository from the option."""
    github.add_pull(7, "requester", HEAD, REQUEST)
    github.review(7, "ivar", "APPROVED", HEAD)
    env = github.env()
    monkeypatch.setenv("GITHUB_API_URL", env["GITHUB_API_URL"])
    monkeypatch.setenv("GITHUB_TOKEN", env["GITHUB_TOKEN"])
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    code = mailings(["approvals", "--repo", f"{OWNER}/{REPO}", "--pr", "7", "--root", str(policy_repo.root)])
    assert code == 1
    assert "still missing: Communication office (communication)" in capsys.readouterr().out
    assert github.requests[0].path == f"{PREFIX}/pulls/7"


def test_github_failing_fails_the_check(policy_repo: Repo, github: FakeGitHub) -> None:
    code, out = approvals(github, policy_repo.root, number=99)
    assert code == 1 and "::error title=approvals::cannot read the pull request from GitHub" in out
    assert "HTTP 404" in out


def test_the_policy_schema_checks_the_teams(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    set_teams(repo, {"it": {"name": "IT", "members": ["@ivar"]}})
    code = mailings(["approvals", "--pr", "7", "--root", str(repo.root)])
    assert code == 2
    err = capsys.readouterr().err
    assert "the policy file is invalid" in err and "policy.yaml:" in err
    assert "approvals.teams.it.members" in err and "@ivar" in err
    assert mailings(["earliest", "--root", str(repo.root)]) == 2  # every command reads the same policy


def test_the_projects_policy_names_both_offices() -> None:
    teams = load_policy(PROJECT).approval_teams
    assert {team.id for team in teams} == {"communication", "it"}
    assert all(team.members for team in teams)

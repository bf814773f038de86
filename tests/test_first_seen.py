"""The lead time counts from when a request's send_at got its value in the pull request: the first run of the check
workflow that GitHub created for a commit holding that value (never a commit date), with real git histories and a
local stand-in for GitHub's Actions API."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from email.message import Message
from urllib.parse import parse_qs, urlsplit

import pytest

from checks.cli import build_parser
from tests.conftest import GIT_ENV, Repo, git
from tests.localhttp import JSONServer, Reply

MAILING = "2027-02-10-travel"
TOKEN = "ghs_firstSeenTestToken"
RUNS_PATH = "/repos/kth/mailings/actions/workflows/check.yml/runs"
OPENED = "2027-01-11T08:00:00Z"  # the pull request's creation


class Actions:
    """GET /repos/kth/mailings/actions/workflows/check.yml/runs?event=pull_request&head_sha=SHA: the runs a test
    recorded for SHA (their created_at), answered as GitHub does; every request is kept."""

    def __init__(self) -> None:
        self.runs: dict[str, list[str]] = {}
        self.requests: list[str] = []
        self.fail = False
        self.server = JSONServer(self._answer)
        self.url = self.server.url

    def _answer(self, method: str, path: str, headers: Message, body: bytes) -> Reply:
        self.requests.append(path)
        parts = urlsplit(path)
        query = parse_qs(parts.query)
        if self.fail:  # as GitHub answers a token without actions: read
            return 403, {"message": "Resource not accessible by integration"}, {}
        if method != "GET" or headers.get("Authorization") != f"Bearer {TOKEN}" or parts.path != RUNS_PATH:
            return 404, {"message": "Not Found"}, {}
        sha = query["head_sha"][0]
        assert query["event"] == ["pull_request"]
        runs = [{"id": i, "head_sha": sha, "created_at": at} for i, at in enumerate(self.runs.get(sha, []))]
        return 200, {"total_count": len(runs), "workflow_runs": runs}, {}

    def env(self) -> dict[str, str]:
        return {"GITHUB_API_URL": self.url, "GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": "kth/mailings"}


@pytest.fixture
def actions() -> Iterator[Actions]:
    server = Actions()
    yield server
    server.server.stop()


def commit(repo: Repo, message: str, date: str = "2027-01-11T09:00:00+01:00") -> str:
    """Commit everything with *date* as both dates (a requester can write any); the commit's id."""
    env = {**os.environ, **GIT_ENV, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    for args in (["add", "--all"], ["commit", "--quiet", "-m", message]):
        subprocess.run(["git", *args], cwd=repo.root, env=env, check=True, capture_output=True)
    return git(repo.root, "rev-parse", "HEAD")


def set_send_at(repo: Repo, value: str) -> None:
    path = repo.root / "mailings" / MAILING / "mailing.yaml"
    text = path.read_text(encoding="utf-8")
    start = text.index("send_at: ")
    end = text.index("\n", start)
    path.write_text(f"{text[:start]}send_at: '{value}'{text[end:]}", encoding="utf-8")


def check(repo: Repo, actions: Actions, now: str, *extra: str) -> tuple[int, str]:
    import io

    args = build_parser().parse_args(
        ["check", "--root", str(repo.root), "--changed-since", "main", "--submitted", OPENED, "--now", now,
         "--lead-time-from-runs", "check.yml", *extra]
    )  # fmt: skip
    out = io.StringIO()
    return args.func(args, actions.env(), out), out.getvalue()


def lead_time(out: str) -> list[str]:
    return [line.split(" [lead-time] ")[1] for line in out.splitlines() if "[lead-time]" in line]


def test_a_send_at_changed_today_in_an_old_pull_request_is_judged_from_today(branch: Repo, actions: Actions) -> None:
    branch.add(MAILING)
    first = commit(branch, "Request: travel booking")
    actions.runs[first] = ["2027-01-11T08:01:00Z"]
    # opened on 11 January: 10 February is far enough ahead
    assert check(branch, actions, "2027-01-11T09:30:00+01:00") == (0, "1 mailing checked: 0 errors, 0 warnings\n")

    # three weeks later a new date, committed with a date that says 11 January
    set_send_at(branch, "2027-02-12 09:00")
    second = commit(branch, "Request: another date")
    actions.requests.clear()
    actions.runs[second] = ["2027-02-01T10:00:00Z"]
    code, out = check(branch, actions, "2027-02-01T11:05:00+01:00")
    assert code == 1
    assert lead_time(out) == [
        "send_at 2027-02-12 is 9 working days after submission on 2027-02-01; the earliest allowed date is "
        "2027-02-15 (skipped: weekends). Move send_at to 2027-02-15 or later (only crisis mailings are exempt)"
    ]
    # GitHub was asked about the commit that holds the value, never about the one before it
    asked = [parse_qs(urlsplit(path).query)["head_sha"][0] for path in actions.requests]
    assert second in asked and first not in asked


def test_an_edit_that_keeps_send_at_keeps_the_day_it_got_its_value(branch: Repo, actions: Actions) -> None:
    branch.add(MAILING)
    first = commit(branch, "Request: travel booking")
    actions.runs[first] = ["2027-01-11T08:01:00Z"]
    (branch.root / "mailings" / MAILING / "body.en.txt").write_text("Hello!\n\nA typo fixed.\n", encoding="utf-8")
    second = commit(branch, "Request: a typo", date="2027-02-03T09:00:00+01:00")
    actions.runs[second] = ["2027-02-03T08:00:00Z"]
    _, out = check(branch, actions, "2027-02-03T09:05:00+01:00")
    assert lead_time(out) == []


def test_a_value_no_run_has_seen_counts_from_now(branch: Repo, actions: Actions) -> None:
    branch.add(MAILING)
    commit(branch, "Request: travel booking")  # pushed just now: this check is the first to see it
    code, out = check(branch, actions, "2027-02-01T11:05:00+01:00")
    assert code == 1 and lead_time(out)[0].startswith(
        "send_at 2027-02-10 is 7 working days after submission on 2027-02-01"
    )


def test_an_uncommitted_value_counts_from_now(branch: Repo, actions: Actions) -> None:
    branch.add(MAILING)
    first = commit(branch, "Request: travel booking")
    actions.runs[first] = ["2027-01-11T08:01:00Z"]
    set_send_at(branch, "2027-02-11 09:00")
    code, out = check(branch, actions, "2027-02-01T11:05:00+01:00")
    assert code == 1 and "after submission on 2027-02-01" in lead_time(out)[0]


def test_a_run_before_the_pull_request_was_opened_counts_from_its_opening(branch: Repo, actions: Actions) -> None:
    # the same commit checked in another pull request long before: this one counts from its own opening
    branch.add(MAILING, changes={"send_at": "2027-01-22 09:00"})
    first = commit(branch, "Request: travel booking")
    actions.runs[first] = ["2026-12-01T08:00:00Z", "2027-01-11T08:01:00Z"]
    code, out = check(branch, actions, "2027-01-11T09:30:00+01:00")
    assert code == 1 and "after submission on 2027-01-11" in lead_time(out)[0]


def test_a_value_the_base_had_counts_from_the_pull_requests_opening(branch: Repo, actions: Actions) -> None:
    branch.add(MAILING)
    git(branch.root, "switch", "--quiet", "main")
    commit(branch, "Request: travel booking, merged")
    git(branch.root, "switch", "--quiet", "--create", "edit")
    (branch.root / "mailings" / MAILING / "body.en.txt").write_text("Hello!\n\nA typo fixed.\n", encoding="utf-8")
    commit(branch, "Request: a typo")
    _, out = check(branch, actions, "2027-02-01T11:05:00+01:00")
    assert lead_time(out) == [] and actions.requests == []


def test_github_failing_is_a_usage_error_that_masks_the_token(
    branch: Repo, actions: Actions, capsys: pytest.CaptureFixture[str]
) -> None:
    from checks.cli import main

    branch.add(MAILING)
    commit(branch, "Request: travel booking")
    actions.fail = True
    argv = ["check", "--root", str(branch.root), "--changed-since", "main", "--lead-time-from-runs", "check.yml"]
    for name, value in actions.env().items():
        os.environ[name] = value
    try:
        assert main(argv) == 2
    finally:
        for name in actions.env():
            del os.environ[name]
    err = capsys.readouterr().err
    assert "cannot tell when send_at got its value: GitHub: GET " in err and TOKEN not in err
    assert main(argv) == 2
    assert "--lead-time-from-runs asks GitHub, but" in capsys.readouterr().err
    assert main(["check", "--root", str(branch.root), "--lead-time-from-runs", "check.yml"]) == 2
    assert "needs --changed-since" in capsys.readouterr().err

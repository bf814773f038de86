"""[layout]: directly under mailings/ stand only request directories and README.md, in every mode of every command."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest

from checks.cli import main
from checks.linter import check_layout
from checks.loader import discover, load_layout
from checks.markdown import text as markdown_text
from checks.model import Context
from tests.conftest import Repo, git

MID = "2027-02-10-travel"
BELONG = "only request directories and README.md belong directly under mailings/"
FILE_MESSAGE = (
    f"{BELONG}; a file here could change how git records the send logs: remove it (a request's files go in its own "
    "directory, mailings/<id>/)"
)
GITIGNORE = f"mailings/.gitignore:1:1: error [layout] {FILE_MESSAGE}"
ESCAPED = markdown_text(FILE_MESSAGE)


def layout_messages(repo: Repo) -> list[str]:
    context = Context(submitted=datetime(2027, 1, 11).date(), now=datetime.fromisoformat("2027-01-11T10:00:00+01:00"))
    return [
        f"{p.file}:{p.line}:{p.column}: {p.level} [{p.rule}] {p.message}"
        for p in check_layout(load_layout(repo.root), repo.policy, context)
    ]


def check(repo: Repo, capsys: pytest.CaptureFixture[str], *extra: str, fmt: str = "text") -> tuple[int, str]:
    code = main(["check", "--root", str(repo.root), "--submitted", "2027-01-11", "--format", fmt, *extra])
    return code, capsys.readouterr().out


def test_requests_and_a_readme_pass(repo: Repo) -> None:
    repo.add(MID)
    repo.add("2027-03-01-survey")
    (repo.root / "mailings" / "README.md").write_text("Requests live here.\n", encoding="utf-8")
    assert layout_messages(repo) == []


def test_no_mailings_folder_passes(repo: Repo) -> None:
    (repo.root / "mailings").rmdir()
    assert layout_messages(repo) == []


@pytest.mark.parametrize("name", [".gitignore", ".gitattributes", "notes.txt", "sendlog.jsonl"])
def test_a_plain_file_directly_under_mailings_is_an_error(repo: Repo, name: str) -> None:
    repo.add(MID)
    (repo.root / "mailings" / name).write_text("*\n", encoding="utf-8")
    assert layout_messages(repo) == [f"mailings/{name}:1:1: error [layout] {FILE_MESSAGE}"]


@pytest.mark.parametrize(
    ("name", "made_by"),
    [(".DS_Store", "a file that macOS writes into every folder it shows"), ("Thumbs.db", "a file that Windows writes")],
)
def test_an_operating_systems_own_file_is_only_a_warning(repo: Repo, name: str, made_by: str) -> None:
    repo.add()
    (repo.root / "mailings" / name).write_bytes(b"\x00\x00\x00\x01Bud1")
    (message,) = layout_messages(repo)
    assert message.startswith(f"mailings/{name}:1:1: warning [layout] {name} is {made_by}")
    assert message.endswith("; it is ignored: delete it from the pull request")


@pytest.mark.parametrize("target", [f"{MID}/mailing.yaml", "nowhere"])
def test_a_link_to_a_file_or_to_nothing_is_an_error(repo: Repo, target: str) -> None:
    repo.add(MID)
    os.symlink(target, repo.root / "mailings" / ".gitattributes")
    assert layout_messages(repo) == [
        f"mailings/.gitattributes:1:1: error [layout] .gitattributes is a symbolic link; {BELONG}, and a link here "
        "could change how git records the send logs: remove it"
    ]


def test_a_readme_that_is_a_link_is_an_error(repo: Repo) -> None:
    (repo.root / "README.md").write_text("x\n", encoding="utf-8")
    os.symlink("../README.md", repo.root / "mailings" / "README.md")
    assert [m.split(": error")[0] for m in layout_messages(repo)] == ["mailings/README.md:1:1"]


def test_a_named_pipe_is_an_error(repo: Repo) -> None:
    os.mkfifo(repo.root / "mailings" / "pipe")
    assert layout_messages(repo) == [
        f"mailings/pipe:1:1: error [layout] pipe is not a regular file (a named pipe, socket or device); {BELONG}: "
        "remove it"
    ]


@pytest.mark.parametrize("kind", ["link", "file"])
def test_the_mailings_folder_itself_must_be_a_directory(repo: Repo, tmp_path: Path, kind: str) -> None:
    (repo.root / "mailings").rmdir()
    if kind == "link":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        os.symlink(elsewhere, repo.root / "mailings")
    else:
        (repo.root / "mailings").write_text("", encoding="utf-8")
    what = "a symbolic link" if kind == "link" else "not a directory"
    assert layout_messages(repo) == [
        f"mailings:1:1: error [layout] mailings is {what}, so git would not record the send logs inside it; make it a "
        "real directory that holds the request directories"
    ]


def test_a_linked_request_directory_is_reported_once_by_attachments(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    real = repo.add("elsewhere")
    os.symlink(real, repo.root / "mailings" / MID)
    assert layout_messages(repo) == []
    code, out = check(repo, capsys)
    linked = [line for line in out.splitlines() if line.startswith(f"mailings/{MID}")]
    assert code == 1
    assert linked == [
        f"mailings/{MID}:1:1: error [attachments] the request directory mailings/{MID} is a symbolic link; make it a "
        "real directory that holds the request's files"
    ]


def test_a_link_to_a_file_is_no_request_and_is_reported_once(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.add(MID)
    os.symlink(f"{MID}/mailing.yaml", repo.root / "mailings" / "old")
    assert [p.name for p in discover(repo.root)] == [MID]
    code, out = check(repo, capsys)
    assert code == 1
    assert [line.split(": error")[0] for line in out.splitlines() if ": error [" in line] == ["mailings/old:1:1"]


def test_check_reports_it_beside_the_named_requests(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.add(MID)
    (repo.root / "mailings" / ".gitignore").write_text("sendlog.jsonl\n", encoding="utf-8")
    named = str(repo.root / "mailings" / MID)
    assert check(repo, capsys, named) == (1, f"{GITIGNORE}\n1 mailing checked: 1 error, 0 warnings\n")


def test_naming_the_file_itself_checks_no_request_but_reports_it(
    repo: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """pre-commit passes the changed files: a file directly under mailings/ is no request, and no usage error."""
    repo.add(MID)
    (repo.root / "mailings" / ".gitignore").write_text("sendlog.jsonl\n", encoding="utf-8")
    monkeypatch.chdir(repo.root)
    assert check(repo, capsys, "mailings/.gitignore") == (1, f"{GITIGNORE}\n0 mailings checked: 1 error, 0 warnings\n")


@pytest.fixture
def only_a_gitignore(repo: Repo, plain_git: None) -> Repo:
    """main holds a request; the branch adds mailings/.gitignore and changes no request."""
    repo.add(MID)
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "A request")
    git(repo.root, "switch", "--quiet", "--create", "ignore")
    (repo.root / "mailings" / ".gitignore").write_text("sendlog.jsonl\n", encoding="utf-8")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "Ignore the send logs")
    return repo


def test_a_pull_request_that_adds_only_a_gitignore_fails(
    only_a_gitignore: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(only_a_gitignore, capsys, "--changed-since", "main") == (
        1,
        f"{GITIGNORE}\n0 mailings checked: 1 error, 0 warnings\n",
    )


def test_every_reporter_shows_it(only_a_gitignore: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(only_a_gitignore, capsys, "--changed-since", "main", fmt="github")
    assert code == 1
    assert out.splitlines()[:3] == [
        "::group::mailings/.gitignore",
        f"::error file=mailings/.gitignore,line=1,col=1,title=layout::{FILE_MESSAGE}",
        "::endgroup::",
    ]
    code, out = check(only_a_gitignore, capsys, "--changed-since", "main", fmt="json")
    assert code == 1
    assert json.loads(out) == {
        "problems": [
            {
                "file": "mailings/.gitignore",
                "line": 1,
                "column": 1,
                "level": "error",
                "rule": "layout",
                "message": FILE_MESSAGE,
            }
        ],
        "mailings": [],
    }
    code, out = check(only_a_gitignore, capsys, "--changed-since", "main", fmt="markdown")
    assert code == 1
    assert f"### ` mailings/.gitignore `\n\n- **error** line 1, column 1, ` layout `: {ESCAPED}\n" in out


def test_the_plan_shows_it_among_the_problems(only_a_gitignore: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["plan", "--root", str(only_a_gitignore.root), "--submitted", "2027-01-11", "--changed-since", "main"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[4:] == [
        "No mailing changed.",
        "",
        "### ❌ ` mailings/ `: 1 error, 0 warnings",
        "",
        "#### Problems",
        "",
        f"- error ` mailings/.gitignore:1:1 ` \\[layout\\] {ESCAPED}",
    ]


def test_removing_the_file_again_passes(only_a_gitignore: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """Deleting a stray file directly under mailings/ is no removed request."""
    git(only_a_gitignore.root, "switch", "--quiet", "--create", "tidy")
    git(only_a_gitignore.root, "rm", "--quiet", "mailings/.gitignore")
    git(only_a_gitignore.root, "commit", "--quiet", "-m", "Tidy up")
    assert check(only_a_gitignore, capsys, "--changed-since", "ignore") == (
        0,
        "0 mailings checked: 0 errors, 0 warnings\n",
    )
    main(["plan", "--root", str(only_a_gitignore.root), "--submitted", "2027-01-11", "--changed-since", "ignore"])
    assert "No mailing changed." in capsys.readouterr().out

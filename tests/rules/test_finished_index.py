"""[finished-index]: only the dispatch job writes finished-mailings.jsonl; a pull request that touches it fails.
Real git in a tmp dir."""

from __future__ import annotations

import pytest

from checks.cli import main
from tests.conftest import Repo, git

SENT = "2027-02-10-travel"
OPEN = "2027-03-01-survey"
INDEX = "finished-mailings.jsonl"
ENTRY = '{"id": "2027-02-10-travel", "size": 120, "state": "sent", "failed": 0, "send_at": "2027-02-10T09:00+01:00"}\n'
FORGED = '{"id": "2027-03-01-survey", "size": 40, "state": "sent", "failed": 0, "send_at": "2027-03-01T09:00+01:00"}\n'


@pytest.fixture
def branch(repo: Repo, plain_git: None) -> Repo:
    """main holds a sent mailing, its index entry and one not sent yet; HEAD is a requester's branch."""
    repo.add(SENT, files={"sendlog.jsonl": '{"event": "start"}\n'})
    repo.add(OPEN, changes={"send_at": "2027-03-01 09:00"})
    (repo.root / INDEX).write_text(ENTRY, encoding="utf-8")
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    commit(repo, "Two requests, one sent")
    git(repo.root, "switch", "--quiet", "--create", "request")
    return repo


def commit(repo: Repo, message: str) -> None:
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "--allow-empty", "-m", message)


def check(repo: Repo, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[str]]:
    code = main(["check", "--root", str(repo.root), "--submitted", "2027-01-11", "--format", "text", *extra])
    return code, [line for line in capsys.readouterr().out.splitlines() if "[finished-index]" in line]


def message(undo: str) -> str:
    return (
        f"{INDEX}:1:1: error [finished-index] this change touches the index of finished mailings, which only the "
        "dispatch job writes, on the main branch (an entry could make a mailing still to be sent look finished): "
        f"{undo}"
    )


@pytest.mark.parametrize(
    ("change", "undo"),
    [
        ("append", "restore it as it is on main"),
        ("delete", "restore it as it is on main"),
        ("rename", "undo the rename"),
    ],
)
def test_a_pull_request_that_touches_the_index_fails(
    branch: Repo, capsys: pytest.CaptureFixture[str], change: str, undo: str
) -> None:
    index = branch.root / INDEX
    if change == "append":
        index.write_text(ENTRY + FORGED, encoding="utf-8")  # the open mailing made to look finished
    elif change == "delete":
        index.unlink()
    else:
        git(branch.root, "mv", INDEX, "finished.jsonl")
    commit(branch, f"{change} the index")
    # Reported although no request changed: the rule judges the repository, whatever requests the check names.
    assert check(branch, capsys, "--changed-since", "main") == (1, [message(undo)])


def test_adding_the_index_in_a_pull_request_fails(
    repo: Repo, plain_git: None, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.add(OPEN, changes={"send_at": "2027-03-01 09:00"})
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    commit(repo, "One request")
    git(repo.root, "switch", "--quiet", "--create", "request")
    (repo.root / INDEX).write_text(FORGED, encoding="utf-8")  # untracked counts too
    assert check(repo, capsys, "--changed-since", "main") == (1, [message("remove it from the pull request")])


def test_a_request_beside_the_index_passes_and_without_a_base_nothing_is_found(
    branch: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    branch.add("2027-03-02-news", changes={"send_at": "2027-03-02 09:00"})
    commit(branch, "A new request")
    assert check(branch, capsys, "--changed-since", "main")[1] == []
    (branch.root / INDEX).write_text(ENTRY + FORGED, encoding="utf-8")
    assert check(branch, capsys)[1] == []  # no base: nothing to compare

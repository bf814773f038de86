"""The loader: a broken file is a value that travels; nothing unsafe is followed or blocks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from checks.errors import UsageError
from checks.loader import discover, load_mailing, resolve_targets
from tests.conftest import Repo


def load(repo: Repo, mailing_id: str = "2027-02-10-travel"):  # type: ignore[no-untyped-def]
    return load_mailing(repo.root, repo.root / "mailings" / mailing_id, repo.policy)


def test_model_of_a_valid_request(repo: Repo) -> None:
    repo.add()
    mailing = load(repo)
    assert mailing.directory == "mailings/2027-02-10-travel"
    assert mailing.languages == ["sv", "en"]
    assert sorted(mailing.bodies) == ["en", "sv"]
    assert mailing.send_at is not None and mailing.send_at.isoformat() == "2027-02-10T09:00:00+01:00"
    (lst,) = mailing.lists
    assert (lst.kind, lst.name, lst.resolved, lst.error, len(lst.addresses)) == (
        "file",
        "recipients.txt",
        True,
        None,
        600,
    )
    assert (lst.addresses[0].file, lst.addresses[0].line) == ("mailings/2027-02-10-travel/recipients.txt", 1)


def test_send_at_date_alone_takes_the_default_hour_and_dst(repo: Repo) -> None:
    repo.add(changes={"send_at": "2027-07-05"})
    assert load(repo).send_at.isoformat() == "2027-07-05T09:00:00+02:00"  # type: ignore[union-attr]


def test_text_list_skips_comments_and_blank_lines(repo: Repo) -> None:
    repo.add(recipients="# header\n\n  a@kth.se  \n#b@kth.se\nc@kth.se\n")
    addresses = load(repo).lists[0].addresses
    assert [(a.address, a.line) for a in addresses] == [("a@kth.se", 3), ("c@kth.se", 5)]


def test_csv_list_by_email_column_with_bom_and_quotes(repo: Repo) -> None:
    csv = '\ufeffName,E-mail,EMAIL\n"Berg, Björn",x,bjorn@kth.se\n\nAnna,y,anna@kth.se\n'
    repo.add(changes={"recipients": {"lists": [{"file": "list.csv"}]}}, files={"list.csv": csv})
    (lst,) = load(repo).lists
    assert [(a.address, a.line) for a in lst.addresses] == [("bjorn@kth.se", 2), ("anna@kth.se", 4)]


def test_csv_without_email_column(repo: Repo) -> None:
    repo.add(changes={"recipients": {"lists": [{"file": "list.csv"}]}}, files={"list.csv": "name,phone\na,b@kth.se\n"})
    assert load(repo).lists[0].error == "has no e-mail column in its header line"


@pytest.mark.parametrize("name", ["../other/recipients.txt", "/etc/passwd", "sub/list.txt", "..", "~root"])
def test_list_paths_that_leave_the_directory_are_not_read(repo: Repo, name: str) -> None:
    repo.add(changes={"recipients": {"lists": [{"file": name}]}})
    (lst,) = load(repo).lists
    assert lst.addresses == () and lst.error is not None and lst.error.startswith("leaves the request directory")
    assert lst.problem == "outside"


def test_symlinked_list_is_not_followed(repo: Repo, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("ceo@kth.se\n")
    directory = repo.add(changes={"recipients": {"lists": [{"file": "link.txt"}]}})
    (directory / "link.txt").symlink_to(secret)
    (lst,) = load(repo).lists
    assert lst.addresses == () and "symbolic link" in (lst.error or "")
    assert lst.problem == "symlink"


def test_fifo_does_not_block(repo: Repo) -> None:
    directory = repo.add(changes={"recipients": {"lists": [{"file": "pipe.txt"}]}})
    os.mkfifo(directory / "pipe.txt")
    os.remove(directory / "body.en.txt")
    os.mkfifo(directory / "body.en.txt")
    mailing = load(repo)
    assert mailing.lists[0].error == "cannot be read: it is not a regular file"
    assert "en" not in mailing.bodies


def test_fifo_as_mailing_yaml(repo: Repo) -> None:
    directory = repo.add()
    os.remove(directory / "mailing.yaml")
    os.mkfifo(directory / "mailing.yaml")
    mailing = load(repo)
    assert mailing.doc is None and mailing.yaml_problem is not None
    assert mailing.yaml_problem.message == "mailing.yaml cannot be read: it is not a regular file"


def test_symlinked_mailing_directory_is_flagged_not_followed(repo: Repo, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (repo.root / "mailings" / "linked").symlink_to(elsewhere)
    mailing = load(repo, "linked")
    assert mailing.is_symlink and mailing.doc is None


def test_special_lists_resolve_only_when_given(repo: Repo, tmp_path: Path) -> None:
    repo.add(changes={"recipients": {"lists": [{"special": "all-employees"}, {"special": "nobody"}]}})
    unresolved, unknown = load(repo).lists
    assert (unresolved.resolved, unresolved.error) == (False, None)
    assert unknown.error == "is not a special list in the policy"
    staff = tmp_path / "staff.txt"
    staff.write_text("a@kth.se\nb@kth.se\n")
    mailing = load_mailing(
        repo.root, repo.root / "mailings" / "2027-02-10-travel", repo.policy, {"all-employees": staff}
    )
    assert mailing.lists[0].resolved and [a.address for a in mailing.lists[0].addresses] == ["a@kth.se", "b@kth.se"]


def test_discover_lists_directories_only(repo: Repo) -> None:
    repo.add("b")
    repo.add("a")
    (repo.root / "mailings" / "README.md").write_text("requests live here\n")
    assert [p.name for p in discover(repo.root)] == ["a", "b"]


def test_resolve_targets_accepts_files_inside_a_request(repo: Repo) -> None:
    repo.add("a")
    found = resolve_targets(repo.root, ["mailings/a/body.sv.txt", "mailings/a"], repo.root)
    assert found == [repo.root / "mailings" / "a"]
    with pytest.raises(UsageError):
        resolve_targets(repo.root, ["policy.yaml"], repo.root)

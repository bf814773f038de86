"""[special-lists]: IT's list files are encrypted with age and have no plain twin; and the policy's sources."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.cli import main
from checks.errors import UsageError
from checks.linter import check_layout
from checks.loader import load_layout
from checks.model import Context
from checks.policy import EnvSource, FileSource, LdapSource, load_policy
from tests.conftest import Repo

PATH = "lists/all-students.txt.age"
ARMOURED = b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdlLWVuY3J5cHRpb24ub3JnL3YxCg==\n-----END AGE ENCRYPTED FILE-----\n"
BINARY = b"age-encryption.org/v1\n-> X25519 abc\n--- def\n\x00\x01"


def with_sources(repo: Repo, **sources: Any) -> None:
    """Give the test repository's special lists these sources (None: no source), and recipients for the files."""
    path = repo.root / "policy.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for list_id, source in sources.items():
        entry = data["special_lists"][list_id.replace("_", "-")]
        if source is None:
            entry.pop("source", None)
        else:
            entry["source"] = source
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    repo._policy = None


def messages(repo: Repo) -> list[str]:
    context = Context(submitted=datetime(2027, 1, 11).date(), now=datetime.fromisoformat("2027-01-11T10:00:00+01:00"))
    return [
        f"{p.file}:{p.line}:{p.column}: {p.level} [{p.rule}] {p.message}"
        for p in check_layout(load_layout(repo.root, repo.policy), repo.policy, context)
        if p.rule == "special-lists"
    ]


def write(repo: Repo, path: str, content: bytes) -> Path:
    target = repo.root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    return target


@pytest.mark.parametrize("content", [ARMOURED, BINARY, b"\n  " + ARMOURED])
def test_an_age_file_passes(repo: Repo, content: bytes) -> None:
    with_sources(repo, all_students={"file": PATH})
    write(repo, PATH, content)
    assert messages(repo) == []


def test_lists_from_the_directory_or_the_environment_have_no_file_to_judge(repo: Repo) -> None:
    with_sources(repo, all_students={"ldap": {"base": "ou=people,dc=kth,dc=se", "filter": "(mail=*)"}})
    write(repo, "lists/all-students.txt", b"anna@kth.se\n")  # not named by the policy: not this rule's
    assert messages(repo) == []


def test_a_plain_list_under_the_encrypted_name_is_an_error(repo: Repo) -> None:
    with_sources(repo, all_students={"file": PATH})
    write(repo, PATH, b"anna@kth.se\nbo@kth.se\n")
    assert messages(repo) == [
        f"{PATH}:1:1: error [special-lists] the special list all-students must be encrypted with age, but {PATH} is "
        "not: whoever can read the repository can read these addresses. Encrypt it (`mailings lists encrypt PLAIN "
        f"{PATH}`), and remove the plain text from the history of every branch that has it"
    ]


def test_the_plain_list_beside_its_encrypted_file_is_an_error(repo: Repo) -> None:
    with_sources(repo, all_students={"file": PATH})
    write(repo, PATH, ARMOURED)
    write(repo, "lists/all-students.txt", b"anna@kth.se\n")
    assert messages(repo) == [
        "lists/all-students.txt:1:1: error [special-lists] lists/all-students.txt stands next to "
        f"{PATH}, the encrypted special list all-students, and is most likely its plain text; delete it (and from "
        "the history, if it was pushed), and keep plain lists outside the repository (`mailings lists edit` works "
        "on a private temporary copy)"
    ]


def test_a_link_or_a_missing_file_is_an_error(repo: Repo, tmp_path: Path) -> None:
    with_sources(repo, all_students={"file": PATH}, all_employees={"file": "lists/staff.age"})
    (repo.root / "lists").mkdir()
    (repo.root / PATH).symlink_to(write(repo, "elsewhere.age", ARMOURED))
    assert messages(repo) == [
        f"{PATH}:1:1: error [special-lists] the encrypted file of the special list all-students is a symbolic "
        f"link; commit the encrypted file itself (`mailings lists encrypt PLAIN {PATH}`)",
        "policy.yaml:1:1: error [special-lists] the special list all-employees comes from lists/staff.age, which "
        "does not exist, so every mailing to it would be blocked; add it (`mailings lists encrypt PLAIN "
        "lists/staff.age`) or correct its source in policy.yaml",
    ]


def test_every_check_runs_it_whatever_requests_it_checks(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    with_sources(repo, all_students={"file": PATH})
    write(repo, PATH, b"anna@kth.se\n")
    repo.add("2027-02-10-travel")
    request = str(repo.root / "mailings" / "2027-02-10-travel")
    code = main(["check", "--root", str(repo.root), "--submitted", "2027-01-11", request])
    out = capsys.readouterr().out
    assert code == 1 and out.startswith(f"{PATH}:1:1: error [special-lists] the special list all-students must be")
    main(["plan", "--root", str(repo.root), "--submitted", "2027-01-11"])
    out = capsys.readouterr().out
    assert "### ❌ ` lists/ `: 1 error, 0 warnings" in out and "\\[special\\-lists\\]" in out


# --- the policy's sources --------------------------------------------------------------------------------------


def test_without_a_source_a_list_comes_from_its_mailings_list_variable(repo: Repo) -> None:
    special = repo.policy.special_lists["all-employees"]
    assert special.source == EnvSource("MAILINGS_LIST_ALL_EMPLOYEES")
    assert (special.tolerance, special.bounds) == (0.30, (3850, 7150))


def test_each_kind_of_source_is_read(repo: Repo) -> None:
    with_sources(
        repo,
        all_employees={"env": "STAFF_LIST"},
        all_students={"ldap": {"base": "ou=people,dc=kth,dc=se", "filter": "(employeeType=student)", "scope": "one"}},
    )
    policy = load_policy(repo.root)
    assert policy.special_lists["all-employees"].source == EnvSource("STAFF_LIST")
    assert policy.special_lists["all-students"].source == LdapSource(
        "ou=people,dc=kth,dc=se", "(employeeType=student)", "mail", "one"
    )
    with_sources(repo, all_students={"file": PATH})
    assert load_policy(repo.root).special_lists["all-students"].source == FileSource(PATH)


def test_a_size_outside_the_tolerance_names_both_figures(repo: Repo) -> None:
    special = repo.policy.special_lists["all-students"]
    assert special.size_problem(13_300) is None and special.size_problem(24_700) is None
    assert special.size_problem(13_299) == (
        "it has 13299 addresses, but policy.yaml expects about 19000 (within 30%: 13300 to 24700); a list that far "
        "off may be truncated or stale: check its source, or correct approximate_size in policy.yaml if the list "
        "really changed"
    )
    assert special.size_problem(0) is not None


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ({"file": "lists/all-students.txt"}, "file must be a path in the repository (not under mailings/) ending"),
        ({"file": "../outside.age"}, "must be a path in the repository"),
        ({"file": "mailings/x/list.age"}, "must be a path in the repository"),
        ({"ldap": {"base": "dc=kth,dc=se", "filter": "mail=*"}}, "filter must be an LDAP filter in parentheses"),
        ({"ldap": {"filter": "(mail=*)"}}, "source.ldap has no 'base'; add it"),
        ({"env": "lower_case"}, "source.env must be an environment variable name in capitals"),
        ({"file": PATH, "env": "LIST"}, "special_lists.all-students.source"),
        ({}, "special_lists.all-students.source is empty; fill it in"),
    ],
)
def test_a_wrong_source_is_a_policy_error(repo: Repo, source: dict[str, Any], said: str) -> None:
    with_sources(repo, all_students=source)
    with pytest.raises(UsageError, match="the policy file is invalid") as caught:
        load_policy(repo.root)
    assert said in str(caught.value)


def test_the_recipients_of_list_files_are_age_public_keys(repo: Repo) -> None:
    path = repo.root / "policy.yaml"
    key = "age1" + "q" * 58
    path.write_text(path.read_text() + f"special_lists_recipients: [{key}]\n", encoding="utf-8")
    assert load_policy(repo.root).list_recipients == (key,)
    path.write_text(path.read_text().replace(key, "ssh-ed25519 AAAA"), encoding="utf-8")
    with pytest.raises(UsageError, match="must be an age public key"):
        load_policy(repo.root)

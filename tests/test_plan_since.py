"""`mailings plan --since REV`: the facts a reviewer approved at REV against the request now, in real git histories."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from checks.cli import main
from checks.facts import facts, facts_at
from checks.loader import load_mailing
from tests.conftest import EVENT, VALID, Repo, addresses, git, merge

MAILING = "2027-02-10-travel"


@pytest.fixture
def approved(repo: Repo, plain_git: None) -> tuple[Repo, str]:
    """main with the policy; a request branch whose first commit adds the request (approved there)."""
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "Policy and schema")
    git(repo.root, "switch", "--quiet", "--create", "request")
    repo.add(MAILING, changes={"event": EVENT})
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "Request")
    return repo, git(repo.root, "rev-parse", "HEAD")


def edit(repo: Repo, changes: dict[str, object]) -> None:
    path = repo.root / "mailings" / MAILING / "mailing.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    path.write_text(yaml.safe_dump(merge(data, changes), sort_keys=False, allow_unicode=True), encoding="utf-8")


def plan(repo: Repo, capsys: pytest.CaptureFixture[str], since: str) -> str:
    code = main(
        ["plan", "--root", str(repo.root), "--changed-since", "main", "--since", since, "--submitted", "2027-01-11"]
    )
    captured = capsys.readouterr()
    assert (code, captured.err) == (0, "")
    return captured.out


def section(out: str) -> list[str]:
    return out.split("#### Changed since ")[1].split("\n- **Dispatch:**")[0].splitlines()


def test_a_later_push_that_moves_the_dispatch_earlier_and_adds_a_list(
    approved: tuple[Repo, str], capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commit = approved
    edit(
        repo,
        {
            "send_at": "2027-02-08 08:30",
            "recipients": {"lists": [{"file": "recipients.txt"}, {"special": "all-students"}]},
            "subject": {"en": "The new travel booking system"},
            "event": {"venue": "Aula Magna, KTH Campus, Stockholm"},
        },
    )
    (repo.root / "mailings" / MAILING / "recipients.txt").write_text(
        addresses(590) + addresses(15, prefix="extra"), encoding="utf-8"
    )
    (repo.root / "mailings" / MAILING / "body.en.txt").write_text(
        "Hello!\n\nBook at https://www.kth.se/en/travel-new\n", encoding="utf-8"
    )
    git(repo.root, "commit", "--quiet", "--all", "-m", "Earlier, and to every student")
    status = git(repo.root, "status", "--porcelain")
    head = git(repo.root, "rev-parse", "HEAD")
    out = plan(repo, capsys, commit[:10])
    # nothing was checked out: the branch, the working tree and the index are as they were
    assert (git(repo.root, "rev-parse", "HEAD"), git(repo.root, "status", "--porcelain")) == (head, status)
    (heading,) = [line for line in out.splitlines() if line.startswith(f"### ⚠️ ` mailings/{MAILING} `: ")]
    assert heading.endswith(f" warnings; ⚠ 4 changes to look at since ` {commit[:12]} `")
    assert section(out) == [
        f"` {commit[:12]} `",
        "",
        "- **⚠ Look at this:** the dispatch moved earlier\\, by 2 days 30 minutes",
        "- **⚠ Look at this:** the audience grew from 600 to 19\\,605 recipients \\(\\+19\\,005\\)",
        "- **⚠ Look at this:** list added\\: special all\\-students",
        "- **⚠ Look at this:** 15 addresses in the list files that the earlier version did not have",
        "",
        "| Fact | Then | Now |",
        "| --- | --- | --- |",
        "| Dispatch | Wednesday 10 February 2027\\, 09\\:00 CET \\(UTC\\+01\\:00\\, Europe\\/Stockholm\\) "
        "| Monday 8 February 2027\\, 08\\:30 CET \\(UTC\\+01\\:00\\, Europe\\/Stockholm\\) |",
        "| Recipients | 600 | 19\\,605 |",
        "| List recipients\\.txt | 600 | 605 |",
        "| List special all\\-students | none | 19\\,000 |",
        "| Addresses in the list files | 10 not there now | 15 new |",
        "| Subject en | New travel booking system | The new travel booking system |",
        "| Link | https\\:\\/\\/www\\.kth\\.se\\/en\\/travel | removed |",
        "| Link | none | https\\:\\/\\/www\\.kth\\.se\\/en\\/travel\\-new |",
        "| Event venue | Aula Magna\\, KTH Campus | Aula Magna\\, KTH Campus\\, Stockholm |",
    ]


def test_a_later_push_that_only_narrows_raises_no_alarm(
    approved: tuple[Repo, str], capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commit = approved
    edit(repo, {"send_at": "2027-02-11 09:00", "purpose": "Another wording of the purpose."})
    (repo.root / "mailings" / MAILING / "recipients.txt").write_text(addresses(550), encoding="utf-8")
    git(repo.root, "commit", "--quiet", "--all", "-m", "Later, to fewer")
    out = plan(repo, capsys, commit)
    assert "⚠ Look at this" not in out and "to look at since" not in out
    rows = section(out)
    assert "| Recipients | 600 | 550 |" in rows
    assert "| Addresses in the list files | 50 not there now | 0 new |" in rows
    assert any(row.startswith("| Dispatch | Wednesday 10 February 2027") for row in rows)


def test_unchanged_facts_and_a_new_request(approved: tuple[Repo, str], capsys: pytest.CaptureFixture[str]) -> None:
    repo, commit = approved
    # comments, layout and a control field change no fact
    path = repo.root / "mailings" / MAILING / "mailing.yaml"
    path.write_text("# reworded\n" + path.read_text(encoding="utf-8") + "hold: false\n", encoding="utf-8")
    git(repo.root, "commit", "--quiet", "--all", "-m", "A comment")
    assert section(plan(repo, capsys, commit))[2] == "Nothing a reviewer approves changed: the same facts as then."
    # compared with the base, where the request was not yet
    assert section(plan(repo, capsys, "main"))[2:3] == [
        "Not there then: everything in this request is new since that commit."
    ]


def test_facts_at_a_commit_read_with_git_plumbing(approved: tuple[Repo, str]) -> None:
    repo, commit = approved
    (repo.root / "mailings" / MAILING / "recipients.txt").write_text(addresses(700), encoding="utf-8")
    then = facts_at(repo.root, commit, MAILING, repo.policy)
    assert then is not None
    assert (then.recipients, then.lists, then.languages) == (600, (("recipients.txt", 600),), ("sv", "en"))
    assert then.subjects == tuple(VALID["subject"].items())
    assert facts_at(repo.root, git(repo.root, "rev-parse", "main"), MAILING, repo.policy) is None


def test_a_list_counts_its_valid_addresses_as_the_recipients_do(repo: Repo) -> None:
    repo.add(MAILING)
    (repo.root / "mailings" / MAILING / "recipients.txt").write_text(
        addresses(600) + "not an address\nuser1@kth.se\nUser2+news@kth.se\n", encoding="utf-8"
    )
    mailing = load_mailing(repo.root, repo.root / "mailings" / MAILING, repo.policy)
    now = facts(mailing, repo.policy)
    assert (now.recipients, now.lists) == (600, (("recipients.txt", 600),))


def test_an_unknown_revision_is_a_usage_error(approved: tuple[Repo, str], capsys: pytest.CaptureFixture[str]) -> None:
    repo, _ = approved
    assert main(["plan", "--root", str(repo.root), "--since", "0" * 40]) == 2
    err = capsys.readouterr().err
    assert f"--since {'0' * 40}: no such commit here; fetch it first" in err


def test_a_link_in_the_earlier_version_is_not_followed(approved: tuple[Repo, str], tmp_path: Path) -> None:
    repo, _ = approved
    outside = tmp_path / "outside.txt"
    outside.write_text(addresses(900, prefix="secret"), encoding="utf-8")
    listed = repo.root / "mailings" / MAILING / "recipients.txt"
    listed.unlink()
    listed.symlink_to(outside)
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "A link")
    then = facts_at(repo.root, git(repo.root, "rev-parse", "HEAD"), MAILING, repo.policy)
    assert then is not None and then.recipients == 0 and not then.addresses


def test_a_request_renamed_to_its_new_date_is_compared_with_itself(
    approved: tuple[Repo, str], capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commit = approved
    edit(repo, {"send_at": "2027-02-08 09:00"})
    git(repo.root, "mv", f"mailings/{MAILING}", "mailings/2027-02-08-travel")
    git(repo.root, "commit", "--quiet", "--all", "-m", "Two days earlier, renamed to match")
    out = plan(repo, capsys, commit)
    lines = out.split("### ✅ ` mailings/2027-02-08-travel `")[1].split("\n- **Dispatch:**")[0].splitlines()
    assert lines[0] == ": no problems" + (f"; ⚠ 1 change to look at since ` {commit[:12]} `")
    assert lines[2:8] == [
        f"#### Changed since ` {commit[:12]} `",
        "",
        f"Renamed since: it was ` mailings/{MAILING} ` then.",
        "",
        "- **⚠ Look at this:** the dispatch moved earlier\\, by 2 days",
        "",
    ]


def test_a_long_table_of_changes_is_collapsed_and_the_alarms_stay_open(
    approved: tuple[Repo, str], capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commit = approved
    edit(repo, {"send_at": "2027-02-09 09:00"})
    links = "".join(f"Se https://www.kth.se/sida/{i}\n" for i in range(20))
    (repo.root / "mailings" / MAILING / "body.sv.txt").write_text(f"Hej!\n\n{links}", encoding="utf-8")
    git(repo.root, "commit", "--quiet", "--all", "-m", "Many links")
    rows = section(plan(repo, capsys, commit))
    assert rows[2] == "- **⚠ Look at this:** the dispatch moved earlier\\, by 1 day"
    assert rows[4] == "<details><summary>22 facts changed</summary>"
    assert rows[-1] == "</details>"

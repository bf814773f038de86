"""[immutable]: a sent mailing is history; send logs change on the main branch alone. Real git in a tmp dir."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from checks.changes import read_base
from checks.cli import main
from checks.model import CLAIM_BRANCH_PREFIX, dispatched
from tests.conftest import Repo, git

SENT = "2027-02-10-travel"
OPEN = "2027-03-01-survey"
LOG = '{"event": "start"}\n'


def sent_message(path: str, action: str, undo: str, base: str = "main") -> str:
    return (
        f"{path}:1:1: error [immutable] mailing {SENT} was sent, or the dispatch job tried to send it (its "
        f"sendlog.jsonl is on {base}); a sent mailing is history, but this change {action}: {undo}, and make a new "
        "request instead (mailings new ID)"
    )


def log_message(path: str, action: str, undo: str) -> str:
    return (
        f"{path}:1:1: error [immutable] this change {action}, but only the dispatch job writes send logs, "
        f"on the main branch: {undo}"
    )


@pytest.fixture
def branch(repo: Repo, plain_git: None) -> Repo:
    """main holds a sent mailing (with its send log) and one not sent yet; HEAD is a requester's branch."""
    repo.add(SENT, files={"sendlog.jsonl": LOG})
    repo.add(OPEN, changes={"send_at": "2027-03-01 09:00"})
    commit(repo, "Two requests, one sent", branch="main")
    git(repo.root, "switch", "--quiet", "--create", "request")
    return repo


def commit(repo: Repo, message: str, branch: str | None = None) -> None:
    if branch is not None and not (repo.root / ".git").exists():
        git(repo.root, "init", "--quiet", f"--initial-branch={branch}")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "--allow-empty", "-m", message)


def check(repo: Repo, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[str]]:
    """`mailings check` as CI runs it; the exit code and the [immutable] lines."""
    code = main(["check", "--root", str(repo.root), "--submitted", "2027-01-11", "--format", "text", *extra])
    lines = capsys.readouterr().out.splitlines()
    return code, [line for line in lines if "[immutable]" in line]


def test_editing_a_sent_mailing_is_an_error(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    (branch.root / "mailings" / SENT / "body.en.txt").write_text("Hello again\n", encoding="utf-8")
    commit(branch, "Edit the sent mailing")
    assert check(branch, capsys, "--changed-since", "main") == (
        1,
        [sent_message(f"mailings/{SENT}/body.en.txt", "edits this file", "restore it as it is on main")],
    )


def test_without_a_base_the_rule_finds_nothing(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    (branch.root / "mailings" / SENT / "body.en.txt").write_text("Hello again\n", encoding="utf-8")
    commit(branch, "Edit the sent mailing")
    assert check(branch, capsys) == (0, [])


def test_editing_a_mailing_not_yet_sent_passes(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    (branch.root / "mailings" / OPEN / "body.en.txt").write_text("Hello, read www.kth.se\n", encoding="utf-8")
    branch.add("2027-03-02-new")
    commit(branch, "Edit an open request, add a new one")
    assert check(branch, capsys, "--changed-since", "main") == (0, [])


def test_deleting_a_sent_mailing_reports_every_file(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(branch.root / "mailings" / SENT)
    commit(branch, "Remove the sent mailing")
    code, lines = check(branch, capsys, "--changed-since", "main")
    gone = f"mailings/{SENT}"
    assert code == 1
    assert lines == [
        *(
            sent_message(f"{gone}/{name}", "deletes this file", "restore it from main")
            for name in ("body.en.txt", "body.sv.txt", "mailing.yaml", "recipients.txt")
        ),
        log_message(f"{gone}/sendlog.jsonl", "deletes this send log", "restore it from main"),
    ]


def test_renaming_a_sent_mailing_counts_at_both_paths(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    git(branch.root, "mv", f"mailings/{SENT}", "mailings/2027-02-11-travel")
    commit(branch, "Move the sent mailing to a new id")
    code, lines = check(branch, capsys, "--changed-since", "main")
    old, new = f"mailings/{SENT}", "mailings/2027-02-11-travel"
    assert code == 1
    assert sent_message(f"{old}/body.en.txt", f"moves this file to {new}/body.en.txt", "undo the rename") in lines
    # the log is flagged where it left and where it arrived
    assert log_message(f"{old}/sendlog.jsonl", f"moves this send log to {new}/sendlog.jsonl", "undo the rename") in (
        lines
    )
    assert log_message(f"{new}/sendlog.jsonl", f"moves {old}/sendlog.jsonl here", "undo the rename") in lines
    assert len(lines) == 6


def test_renaming_a_file_inside_a_sent_mailing(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    directory = f"mailings/{SENT}"
    git(branch.root, "mv", f"{directory}/recipients.txt", f"{directory}/list.txt")
    commit(branch, "Rename a list")
    _, lines = check(branch, capsys, "--changed-since", "main")
    assert lines == [
        sent_message(f"{directory}/list.txt", f"moves {directory}/recipients.txt here", "undo the rename"),
        sent_message(f"{directory}/recipients.txt", f"moves this file to {directory}/list.txt", "undo the rename"),
    ]


@pytest.mark.parametrize(
    ("change", "action", "undo"),
    [
        ("add", "adds this send log", "remove it"),
        ("edit", "edits this send log", "restore it as it is on main"),
        ("delete", "deletes this send log", "restore it from main"),
    ],
)
def test_any_change_to_a_send_log_is_an_error(
    branch: Repo, capsys: pytest.CaptureFixture[str], change: str, action: str, undo: str
) -> None:
    target = OPEN if change == "add" else SENT
    log = branch.root / "mailings" / target / "sendlog.jsonl"
    if change == "delete":
        log.unlink()
    else:
        log.write_text(LOG + '{"event": "end", "complete": true}\n', encoding="utf-8")
    commit(branch, f"{change} a send log")
    assert check(branch, capsys, "--changed-since", "main") == (
        1,
        [log_message(f"mailings/{target}/sendlog.jsonl", action, undo)],
    )


def test_uncommitted_and_untracked_changes_count(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    (branch.root / "mailings" / SENT / "notes.txt").write_text("untracked\n", encoding="utf-8")
    (branch.root / "mailings" / SENT / "mailing.yaml").write_text("send_at: 2027-02-11\n", encoding="utf-8")
    _, lines = check(branch, capsys, "--changed-since", "main")
    assert lines == [
        sent_message(f"mailings/{SENT}/mailing.yaml", "edits this file", "restore it as it is on main"),
        sent_message(f"mailings/{SENT}/notes.txt", "adds this file", "remove it"),
    ]


def test_sent_on_the_base_after_the_branch_was_made(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """The dispatch job sends OPEN on main while the branch edits it: the base's send log decides."""
    (branch.root / "mailings" / OPEN / "body.en.txt").write_text("Hello, changed\n", encoding="utf-8")
    commit(branch, "Edit the open request")
    git(branch.root, "switch", "--quiet", "main")
    (branch.root / "mailings" / OPEN / "sendlog.jsonl").write_text(LOG, encoding="utf-8")
    commit(branch, "Send log of the open request")
    git(branch.root, "switch", "--quiet", "request")
    code, lines = check(branch, capsys, "--changed-since", "main")
    assert code == 1
    # the log that main gained is not the branch's change: compared with the merge base, only the body differs
    assert lines == [
        f"mailings/{OPEN}/body.en.txt:1:1: error [immutable] mailing {OPEN} was sent, or the dispatch job tried to "
        "send it (its sendlog.jsonl is on main); a sent mailing is history, but this change edits this file: "
        "restore it as it is on main, and make a new request instead (mailings new ID)"
    ]


def test_only_changed_mailings_are_checked(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    (branch.root / "mailings" / OPEN / "body.sv.txt").write_text("Hej igen\n", encoding="utf-8")
    commit(branch, "Edit one request")
    code = main(["check", "--root", str(branch.root), "--submitted", "2027-01-11", "--changed-since", "main"])
    assert (code, capsys.readouterr().out) == (0, "1 mailing checked: 0 errors, 0 warnings\n")


def test_github_annotation(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    (branch.root / "mailings" / OPEN / "sendlog.jsonl").write_text(LOG, encoding="utf-8")
    commit(branch, "Forge a send log")
    main(["check", "--root", str(branch.root), "--changed-since", "main", "--format", "github"])
    assert (
        f"::error file=mailings/{OPEN}/sendlog.jsonl,line=1,col=1,title=immutable::this change adds this send log, "
        "but only the dispatch job writes send logs, on the main branch: remove it"
    ) in capsys.readouterr().out.splitlines()


def test_unknown_base_is_a_usage_error(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--root", str(branch.root), "--changed-since", "origin/main"]) == 2
    assert "--changed-since origin/main: no such commit here" in capsys.readouterr().err


def test_base_may_not_look_like_an_option(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--root", str(branch.root), "--changed-since=--output=x"]) == 2
    assert "a ref cannot start with '-'" in capsys.readouterr().err
    assert not (branch.root / "x").exists()


def re_date_on_a_branch(repo: Repo, log: str, message: str) -> None:
    """SENT with *log* as its send log on main, then a branch that moves its date by a week."""
    repo.add(SENT, files={"sendlog.jsonl": log})
    commit(repo, message, branch="main")
    git(repo.root, "switch", "--quiet", "--create", "re-date")
    path = repo.root / "mailings" / SENT / "mailing.yaml"
    path.write_text(path.read_text().replace("2027-02-10 09:00", "2027-02-17 09:00"), encoding="utf-8")
    commit(repo, "New date")


@pytest.mark.parametrize(
    "log",
    [
        '{"event": "missed", "time": "2027-02-11T10:07:00+01:00", "reason": "too late"}\n',
        '{"event": "blocked", "time": "2027-02-10T09:07:00+01:00", "reason": "a rule failed"}\n',
        "",
        # a run that found the relay unreachable: claimed, started and ended, having attempted nothing
        '{"event": "claim", "run": "r1"}\n{"event": "start", "run": "r1"}\n'
        '{"event": "end", "run": "r1", "accepted": 0, "failed": 0, "attempted": 0, "reason": "relay unreachable"}\n',
    ],
)
def test_a_mailing_never_sent_can_be_fixed_or_re_dated(
    repo: Repo, plain_git: None, capsys: pytest.CaptureFixture[str], log: str
) -> None:
    re_date_on_a_branch(repo, log, "A mailing the dispatch job could not send")
    assert check(repo, capsys, "--changed-since", "main") == (0, [])


def test_a_log_with_a_run_in_it_makes_the_mailing_history(
    repo: Repo, plain_git: None, capsys: pytest.CaptureFixture[str]
) -> None:
    log = '{"event": "blocked", "reason": "x"}\n{"event": "start", "run": "r1"}\n{"event": "attempt"\n'
    re_date_on_a_branch(repo, log, "Sent part-way")
    code, lines = check(repo, capsys, "--changed-since", "main")
    assert code == 1 and len(lines) == 1 and "mailing.yaml:1:1: error [immutable]" in lines[0]


# --- whatever now stands where a sent mailing's path was ------------------------------------------------------------

SENT_FILES = ("body.en.txt", "body.sv.txt", "mailing.yaml", "recipients.txt")


def every_deleted_path(added: str) -> list[str]:
    """The [immutable] lines when SENT's directory is gone and *added* stands at its path."""
    gone = f"mailings/{SENT}"
    return [
        sent_message(gone, added, "remove it"),
        *(sent_message(f"{gone}/{name}", "deletes this file", "restore it from main") for name in SENT_FILES),
        log_message(f"{gone}/sendlog.jsonl", "deletes this send log", "restore it from main"),
    ]


def test_a_sent_mailing_replaced_by_a_file_is_judged_at_every_path(
    branch: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = branch.root / "mailings" / SENT
    shutil.rmtree(directory)
    directory.write_text("sendlog.jsonl\n", encoding="utf-8")
    commit(branch, "A file where the sent mailing was")
    assert check(branch, capsys, "--changed-since", "main") == (1, every_deleted_path("adds this file"))


@pytest.mark.parametrize("target", ["2027-03-01-survey", "../policy.yaml", "nowhere"])
def test_a_sent_mailing_replaced_by_a_link_is_judged_at_every_path(
    branch: Repo, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    """A link to a directory (another request), to a file or to nothing: git records each as a file."""
    directory = branch.root / "mailings" / SENT
    shutil.rmtree(directory)
    os.symlink(target, directory)
    commit(branch, "A link where the sent mailing was")
    assert check(branch, capsys, "--changed-since", "main") == (1, every_deleted_path("adds this file"))


def test_the_plan_shows_a_replaced_mailing_with_its_problems(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    directory = branch.root / "mailings" / SENT
    shutil.rmtree(directory)
    directory.write_text("", encoding="utf-8")
    commit(branch, "A file where the sent mailing was")
    main(["plan", "--root", str(branch.root), "--submitted", "2027-01-11", "--changed-since", "main"])
    out = capsys.readouterr().out
    # the file itself is the folder's problem ([layout]); what was deleted is the mailing's
    assert "### ❌ ` mailings/ `: 1 error, 0 warnings" in out
    assert f"### ❌ ` mailings/{SENT} `: removed, 6 errors, 0 warnings" in out
    assert out.count("\\[immutable\\]") == 6 and out.count("\\[layout\\]") == 1


def test_a_file_of_a_sent_mailing_replaced_by_a_directory(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    body = branch.root / "mailings" / SENT / "body.en.txt"
    body.unlink()
    body.mkdir()
    (body / "body.en.txt").write_text("Hello again\n", encoding="utf-8")
    commit(branch, "A directory where a file was")
    path = f"mailings/{SENT}/body.en.txt"
    assert check(branch, capsys, "--changed-since", "main") == (
        1,
        [
            sent_message(path, "deletes this file", "restore it from main"),
            sent_message(f"{path}/body.en.txt", "adds this file", "remove it"),
        ],
    )


@pytest.mark.parametrize("target", ["body.sv.txt", "/etc/hostname", "nowhere", "."])
def test_a_file_of_a_sent_mailing_replaced_by_a_link(
    branch: Repo, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    body = branch.root / "mailings" / SENT / "body.en.txt"
    body.unlink()
    os.symlink(target, body)
    commit(branch, "A link where a file was")
    assert check(branch, capsys, "--changed-since", "main") == (
        1,
        [sent_message(f"mailings/{SENT}/body.en.txt", "changes the type of this file", "restore it as it is on main")],
    )


def test_a_mailing_not_yet_sent_can_be_withdrawn(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(branch.root / "mailings" / OPEN)
    commit(branch, "Withdraw the open request")
    assert check(branch, capsys, "--changed-since", "main") == (0, [])


def test_the_readme_beside_the_requests_is_no_request(branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """Adding, editing or deleting mailings/README.md changes no mailing, sent or not."""
    readme = branch.root / "mailings" / "README.md"
    readme.write_text("Requests live here.\n", encoding="utf-8")
    commit(branch, "A README")
    code = main(["check", "--root", str(branch.root), "--submitted", "2027-01-11", "--changed-since", "main"])
    assert (code, capsys.readouterr().out) == (0, "0 mailings checked: 0 errors, 0 warnings\n")
    git(branch.root, "switch", "--quiet", "--create", "no-readme")
    readme.unlink()
    commit(branch, "No README")
    code = main(["check", "--root", str(branch.root), "--submitted", "2027-01-11", "--changed-since", "request"])
    assert (code, capsys.readouterr().out) == (0, "0 mailings checked: 0 errors, 0 warnings\n")
    main(["plan", "--root", str(branch.root), "--submitted", "2027-01-11", "--changed-since", "request"])
    assert "No mailing changed." in capsys.readouterr().out


# --- what counts as "sending started": checks.model.dispatched --------------------------------------------------


def log(*events: dict[str, Any]) -> list[bytes]:
    return [json.dumps({"time": "2027-02-10T09:07:00+01:00", **event}).encode() for event in events]


CLAIM = {"event": "claim", "run": "r1", "digest": "sha256:ab", "recipients": 600, "pending": 600}
START = {"event": "start", "run": "r1", "recipients": 600, "pending": 600}
ATTEMPT = {"event": "attempt", "run": "r1", "batch": 0, "rcpt": ["a"]}
END_NOTHING = {"event": "end", "run": "r1", "accepted": 0, "failed": 0, "unknown": 0, "attempted": 0}


@pytest.mark.parametrize(
    ("lines", "sent"),
    [
        pytest.param([], False, id="empty"),
        pytest.param(
            log({"event": "blocked", "reason": "x"}, {"event": "missed", "reason": "y"}), False, id="not-sent"
        ),
        pytest.param(log(CLAIM), True, id="open-claim"),
        pytest.param(log(CLAIM, START), True, id="open-run"),
        pytest.param(log(START), True, id="open-start"),
        pytest.param(log(CLAIM, START, END_NOTHING), False, id="closed-having-tried-nothing"),
        pytest.param(log(CLAIM, {"event": "end", "run": "r1"}), False, id="closed-without-counts"),
        pytest.param(log(CLAIM, END_NOTHING, {"event": "blocked", "reason": "x"}), False, id="closed-then-blocked"),
        pytest.param(log(CLAIM, START, ATTEMPT, END_NOTHING), True, id="attempt"),
        *(
            pytest.param(log(CLAIM, {"event": name, "run": "r1", "rcpt": ["a"]}, END_NOTHING), True, id=name)
            for name in ("accepted", "failed", "deferred", "unknown")
        ),
        pytest.param(log(CLAIM, {**END_NOTHING, "attempted": 3}), True, id="end-counts-attempts"),
        pytest.param(log(CLAIM, {**END_NOTHING, "accepted": 600}), True, id="end-counts-accepted"),
        pytest.param(log(CLAIM, {**END_NOTHING, "attempted": "0"}), True, id="end-count-not-a-number"),
        pytest.param(log(CLAIM, {**END_NOTHING, "attempted": False}), True, id="end-count-a-boolean"),
        pytest.param(log(CLAIM, {**END_NOTHING, "run": "r2"}), True, id="closed-by-another-run"),
        pytest.param(log({**CLAIM, "run": "r2"}, CLAIM, END_NOTHING), True, id="an-earlier-claim-left-open"),
        pytest.param(log(END_NOTHING, CLAIM), True, id="end-before-the-claim"),
        pytest.param(log(CLAIM, END_NOTHING, {**CLAIM, "run": "r2"}), True, id="claimed-again"),
        pytest.param(log({"event": "resume", "run": "r1"}), True, id="unknown-event"),
        pytest.param(log({"run": "r1"}), True, id="no-event"),
        pytest.param(log({**CLAIM, "run": 7}, {**END_NOTHING, "run": 7}), True, id="run-not-a-string"),
        pytest.param([b"[1]"], True, id="not-an-object"),
        pytest.param([b'"claim"'], True, id="a-string"),
        pytest.param([*log(CLAIM, END_NOTHING), b'{"event": "att'], True, id="torn-line"),
        pytest.param([b"", b"  "], False, id="blank-lines"),
    ],
)
def test_what_counts_as_sending_started(lines: list[bytes], sent: bool) -> None:
    assert dispatched(lines) is sent


# --- a claim on the mailing's claim branch counts as sending started ----------------------------------------------

OPEN_CLAIM = "".join(line.decode() + "\n" for line in log(CLAIM, START))
NOTHING_SENT = "".join(line.decode() + "\n" for line in log(CLAIM, START, END_NOTHING))
PART_SENT = "".join(line.decode() + "\n" for line in log(CLAIM, START, ATTEMPT))


def claim_on_origin(tmp_path: Path, sendlog: str) -> Path:
    """A bare origin whose main holds OPEN with no send log, and a dispatcher's claim on it on the claim branch
    holding *sendlog*; returns a requester's clone (origin/mailings-sending/OPEN as fetched)."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    seed = tmp_path / "seed"
    seed.mkdir()
    Repo(seed).add(OPEN)
    git(seed, "init", "--quiet", "--initial-branch=main")
    git(seed, "add", "--all")
    git(seed, "commit", "--quiet", "-m", "A request")
    git(seed, "push", "--quiet", str(bare), "HEAD:main")
    (seed / "mailings" / OPEN / "sendlog.jsonl").write_text(sendlog, encoding="utf-8")
    git(seed, "add", "--all")
    git(seed, "commit", "--quiet", "-m", "Claim")
    git(seed, "push", "--quiet", str(bare), f"HEAD:refs/heads/{CLAIM_BRANCH_PREFIX}{OPEN}")
    requester = tmp_path / "requester"
    git(tmp_path, "clone", "--quiet", str(bare), str(requester))
    git(requester, "switch", "--quiet", "--create", "re-date")
    yaml = requester / "mailings" / OPEN / "mailing.yaml"
    yaml.write_text(yaml.read_text().replace("2027-02-10 09:00", "2027-02-17 09:00"), encoding="utf-8")
    git(requester, "commit", "--quiet", "--all", "-m", "New date")
    return requester


def check_at(root: Path, capsys: pytest.CaptureFixture[str], base: str) -> tuple[int, list[str]]:
    code = main(["check", "--root", str(root), "--submitted", "2027-01-11", "--changed-since", base])
    return code, [line for line in capsys.readouterr().out.splitlines() if "[immutable]" in line]


def test_an_open_claim_on_the_claim_branch_makes_the_mailing_history(
    tmp_path: Path, plain_git: None, capsys: pytest.CaptureFixture[str]
) -> None:
    requester = claim_on_origin(tmp_path, OPEN_CLAIM)
    assert check_at(requester, capsys, "origin/main") == (
        1,
        [
            f"mailings/{OPEN}/mailing.yaml:1:1: error [immutable] mailing {OPEN} was sent, or the dispatch job tried "
            f"to send it (its sendlog.jsonl is on origin/{CLAIM_BRANCH_PREFIX}{OPEN}); a sent mailing is history, but "
            "this change edits this file: restore it as it is on origin/main, and make a new request instead "
            "(mailings new ID)"
        ],
    )


def test_a_claim_branch_of_this_clone_counts_too(
    tmp_path: Path, plain_git: None, capsys: pytest.CaptureFixture[str]
) -> None:
    requester = claim_on_origin(tmp_path, PART_SENT)
    git(requester, "branch", f"{CLAIM_BRANCH_PREFIX}{OPEN}", f"origin/{CLAIM_BRANCH_PREFIX}{OPEN}")
    git(requester, "update-ref", "-d", f"refs/remotes/origin/{CLAIM_BRANCH_PREFIX}{OPEN}")
    code, lines = check_at(requester, capsys, "origin/main")
    assert code == 1
    assert [line.split("(its ")[1].split(")")[0] for line in lines] == [
        f"sendlog.jsonl is on {CLAIM_BRANCH_PREFIX}{OPEN}"
    ]


def test_a_claim_closed_having_sent_nothing_leaves_the_mailing_open(
    tmp_path: Path, plain_git: None, capsys: pytest.CaptureFixture[str]
) -> None:
    requester = claim_on_origin(tmp_path, NOTHING_SENT)
    assert check_at(requester, capsys, "origin/main") == (0, [])


def test_a_claim_branch_of_another_mailing_changes_nothing_here(
    tmp_path: Path, plain_git: None, capsys: pytest.CaptureFixture[str]
) -> None:
    requester = claim_on_origin(tmp_path, OPEN_CLAIM)
    git(requester, "branch", "--quiet", "--move", "re-date", "other")
    ref = f"refs/remotes/origin/{CLAIM_BRANCH_PREFIX}{OPEN}"
    git(requester, "update-ref", ref.replace(OPEN, SENT), git(requester, "rev-parse", ref))
    git(requester, "update-ref", "-d", ref)
    # the log on that branch names OPEN's path, not SENT's: SENT's branch holds no log of SENT
    assert check_at(requester, capsys, "origin/main") == (0, [])


def test_a_root_below_the_top_of_the_repository(
    tmp_path: Path, plain_git: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The requests may live in a subdirectory of a larger repository; the base's send logs are found there too."""
    root = tmp_path / "comms"
    root.mkdir()
    repo = Repo(root)
    repo.add(SENT, files={"sendlog.jsonl": OPEN_CLAIM})
    git(tmp_path, "init", "--quiet", "--initial-branch=main")
    git(tmp_path, "add", "--all")
    git(tmp_path, "commit", "--quiet", "-m", "A sent request")
    (root / "mailings" / SENT / "body.en.txt").write_text("Hello again\n", encoding="utf-8")
    code, lines = check_at(root, capsys, "main")
    assert code == 1 and [line.split(": error")[0] for line in lines] == [f"mailings/{SENT}/body.en.txt:1:1"]


def test_a_directory_on_the_base_with_a_line_break_in_its_name(branch: Repo) -> None:
    # git cat-file --batch reads one name a line: this one is not asked, and the sent mailing is still found
    git(branch.root, "switch", "--quiet", "main")
    (branch.root / "mailings" / "a\nb").mkdir()
    (branch.root / "mailings" / "a\nb" / "sendlog.jsonl").write_text(LOG, encoding="utf-8")
    commit(branch, "A directory no request can have")
    git(branch.root, "switch", "--quiet", "request")
    base = read_base(branch.root, "main")
    assert base.sent == {SENT: "main"}

"""Committing and pushing send logs, against real git: a bare origin and clones in a tmp dir."""

from __future__ import annotations

import json
import mailbox
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sender.gitops import (
    BOT_AUTHOR,
    GitError,
    LogSummary,
    commit_message,
    commit_send_logs,
    mask_credentials,
    push_ref,
    upstream,
)
from tests.conftest import LOG_KEY_ENV, Repo, addresses

TESTER = {
    "GIT_AUTHOR_NAME": "Tester",
    "GIT_AUTHOR_EMAIL": "tester@example.org",
    "GIT_COMMITTER_NAME": "Tester",
    "GIT_COMMITTER_EMAIL": "tester@example.org",
}
LOG_A = Path("mailings/2027-02-10-travel/sendlog.jsonl")
LOG_B = Path("mailings/2027-02-11-library/sendlog.jsonl")


def git(cwd: Path, *args: str) -> str:
    """Run git as a person would in *cwd*; the output, stripped."""
    env = {**os.environ, "LC_ALL": "C", **TESTER}  # HOME and GIT_CONFIG_NOSYSTEM come from isolated_git
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def append(root: Path, path: Path, line: str) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")


@pytest.fixture(autouse=True)
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the machine's git configuration (identity, signing, helpers) out of the code under test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare origin holding one mailing with a started send log and one with none yet."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "--quiet", str(bare), str(seed))
    append(seed, LOG_A, '{"event": "start"}')
    append(seed, LOG_B.parent / "mailing.yaml", "send_at: 2027-02-11")
    git(seed, "add", ".")
    git(seed, "commit", "--quiet", "-m", "Add two mailings")
    git(seed, "push", "--quiet", "origin", "HEAD:main")
    return bare


def clone(origin: Path, name: str) -> Path:
    path = origin.parent / name
    git(origin.parent, "clone", "--quiet", str(origin), str(path))
    return path


def test_the_send_log_commit_carries_the_bot_identity(origin: Path) -> None:
    work = clone(origin, "work")
    git(work, "config", "user.name", "Someone Else")  # the bot's identity must win over the checkout's
    git(work, "config", "user.email", "someone@example.org")
    append(work, LOG_A, '{"event": "end"}')
    append(work, LOG_B, '{"event": "start"}')  # a new, untracked send log
    (work / "README.md").write_text("a person's change, staged but not the bot's to commit\n")
    git(work, "add", "README.md")

    message = commit_message([LogSummary("2027-02-10-travel", 600, 2), LogSummary("2027-02-11-library", 0, 0)])
    assert commit_send_logs(work, [LOG_A, work / LOG_B], message) is True
    git(work, "push", "--quiet", "origin", "HEAD:main")

    identity = git(origin, "log", "-1", "--format=%an <%ae>|%cn <%ce>", "main")
    assert identity == f"{BOT_AUTHOR}|{BOT_AUTHOR}"
    assert git(origin, "log", "-1", "--format=%B", "main") == message.strip()
    changed = git(origin, "show", "--name-only", "--format=", "main").splitlines()
    assert sorted(changed) == sorted([LOG_A.as_posix(), LOG_B.as_posix()])
    assert git(work, "status", "--porcelain") == "A  README.md"


def test_nothing_changed_commits_nothing(origin: Path) -> None:
    work = clone(origin, "work")
    head = git(work, "rev-parse", "HEAD")
    (work / "notes.txt").write_text("untracked and not a send log\n")

    assert commit_send_logs(work, [LOG_A], "Send log: nothing") is False
    assert commit_send_logs(work, [], "Send log: nothing") is False
    assert git(work, "rev-parse", "HEAD") == head


def test_a_path_outside_the_repository_is_refused(origin: Path, tmp_path: Path) -> None:
    work = clone(origin, "work")
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text("{}\n")

    with pytest.raises(GitError, match="outside the repository"):
        commit_send_logs(work, [outside], "Send log: x")


def test_a_push_the_remote_refuses_carries_gits_message(origin: Path) -> None:
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch main is protected: open a pull request' >&2\nexit 1\n")
    hook.chmod(0o755)
    work = clone(origin, "work")
    append(work, LOG_A, '{"event": "end"}')
    commit_send_logs(work, [LOG_A], "Send log: x")
    head, before = git(work, "rev-parse", "HEAD"), git(work, "rev-parse", "origin/main")

    with pytest.raises(GitError, match="branch main is protected") as caught:
        push_ref(work, "origin", head, "refs/heads/main", before)
    assert "git push of refs/heads/main to origin was refused" in str(caught.value)
    assert git(origin, "rev-parse", "main") == before


def test_credentials_in_remote_urls_never_reach_the_error(origin: Path) -> None:
    work = clone(origin, "work")
    # A closed loopback port: the push fails at once, without leaving the machine.
    git(work, "remote", "set-url", "origin", "https://x-access-token:s3cr3t-token@127.0.0.1:9/repo.git")
    append(work, LOG_A, '{"event": "end"}')
    commit_send_logs(work, [LOG_A], "Send log: x")

    with pytest.raises(GitError) as caught:
        push_ref(work, "origin", git(work, "rev-parse", "HEAD"), "refs/heads/main", None)
    assert "s3cr3t-token" not in str(caught.value)
    assert "s3cr3t-token" not in caught.value.stderr


def test_mask_credentials_hides_user_and_password_only() -> None:
    text = "fatal: unable to access 'https://user:pa%40ss@git.example.org/repo.git/': denied; see ssh://git@host/x"
    assert mask_credentials(text) == (
        "fatal: unable to access 'https://***@git.example.org/repo.git/': denied; see ssh://***@host/x"
    )


def test_a_detached_head_is_refused(origin: Path) -> None:
    work = clone(origin, "work")
    git(work, "checkout", "--quiet", "--detach")

    with pytest.raises(GitError, match="detached HEAD"):
        upstream(work)


def test_commit_message_names_what_was_sent() -> None:
    assert commit_message([LogSummary("2027-02-10-travel", 600, 2)]) == (
        "Send log: 2027-02-10-travel 600 accepted, 2 failed\n"
    )
    assert commit_message([LogSummary("a", 600, 2), LogSummary("b", 1000, 0)]) == (
        "Send logs: 2 mailings, 1600 accepted, 2 failed\n\n"
        "Send log: a 600 accepted, 2 failed\n"
        "Send log: b 1000 accepted, 0 failed\n"
    )


# --- end to end: `mailings send --commit --push` ---------------------------------------------------------------

SEND_NOW = "2027-02-10T09:05:00+01:00"  # five minutes after the default request's send_at


def mailings_send(clone_dir: Path, outbox: Path, *more: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAILINGS_")}  # no SMTP host: Maildir
    env.update(LOG_KEY_ENV)
    command = [sys.executable, "-m", "checks.cli", "send", "--root", str(clone_dir), "--now", SEND_NOW]
    command += ["--outbox", str(outbox), *(more or ("--commit", "--push"))]
    return subprocess.run(command, cwd=clone_dir, env=env, capture_output=True, text=True, timeout=300)


def origin_with(tmp_path: Path, *mailing_ids: str) -> tuple[Path, Path]:
    """A bare origin whose main holds *mailing_ids* (600 recipients each), approved; (origin, the seed clone)."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "--quiet", str(bare), str(seed))
    requests = Repo(seed)
    for mailing_id in mailing_ids:
        requests.add(mailing_id, recipients=addresses(600))
    git(seed, "add", ".")
    git(seed, "commit", "--quiet", "-m", "Approve the mailings")
    git(seed, "push", "--quiet", "origin", "HEAD:main")
    return bare, seed


def test_send_commits_and_pushes_its_log_once(tmp_path: Path) -> None:
    bare, _ = origin_with(tmp_path, "2027-02-10-travel")
    approved = git(bare, "rev-parse", "main")
    work, outbox = clone(bare, "job"), tmp_path / "outbox"

    first = mailings_send(work, outbox)

    assert first.returncode == 0, first.stderr
    assert len(mailbox.Maildir(outbox, create=False)) == 6  # 600 recipients in batches of 100
    assert git(bare, "rev-parse", "main~1") == approved
    assert git(bare, "log", "-1", "--format=%an <%ae>|%cn <%ce>", "main") == f"{BOT_AUTHOR}|{BOT_AUTHOR}"
    message = git(bare, "log", "-1", "--format=%B", "main")
    assert "2027-02-10-travel" in message and "600 accepted" in message, message
    # The finished mailing's log, and its entry in the index of finished mailings, in one commit.
    changed = git(bare, "show", "--name-only", "--format=", "main").splitlines()
    assert changed == ["finished-mailings.jsonl", "mailings/2027-02-10-travel/sendlog.jsonl"]
    [entry] = git(bare, "show", "main:finished-mailings.jsonl").splitlines()
    log_size = len((work / "mailings/2027-02-10-travel/sendlog.jsonl").read_bytes())
    assert json.loads(entry) == {
        "id": "2027-02-10-travel",
        "size": log_size,
        "state": "sent",
        "failed": 0,
        "send_at": "2027-02-10T09:00+01:00",
    }
    assert git(work, "status", "--porcelain") == ""
    pushed = git(bare, "rev-parse", "main")

    second = mailings_send(work, outbox)

    assert second.returncode == 0, second.stderr
    assert len(mailbox.Maildir(outbox, create=False)) == 6
    assert git(bare, "rev-parse", "main") == pushed


def test_two_jobs_that_finish_different_mailings_both_keep_their_index_entries(tmp_path: Path) -> None:
    bare, _ = origin_with(tmp_path, "2027-02-10-news", "2027-02-10-travel")
    # Two checkouts of the same main, each sending one of the mailings: the second pushes onto the first's main.
    first, second = clone(bare, "job-1"), clone(bare, "job-2")
    for work, mailing_id in ((first, "2027-02-10-travel"), (second, "2027-02-10-news")):
        done = mailings_send(work, tmp_path / f"outbox-{mailing_id}", "--only", mailing_id, "--push")
        assert done.returncode == 0, done.stdout + done.stderr
    on_main = [json.loads(line)["id"] for line in git(bare, "show", "main:finished-mailings.jsonl").splitlines()]
    assert on_main == ["2027-02-10-travel", "2027-02-10-news"]  # the first job's line kept, the second's added
    assert git(bare, "log", "--format=%s", "-2", "main").splitlines() == [
        "Send log: 2027-02-10-news 600 accepted, 0 failed",
        "Send log: 2027-02-10-travel 600 accepted, 0 failed",
    ]


def test_a_finished_mailing_without_an_index_entry_is_indexed_by_the_next_run_alone(tmp_path: Path) -> None:
    """A repository from before the index: the next run reads the finished log's summary, sends nothing, and puts
    the mailing's entry on main in a commit of its own; the run after it has nothing to record."""
    bare, seed = origin_with(tmp_path, "2027-02-10-travel")
    assert mailings_send(clone(bare, "first"), tmp_path / "outbox").returncode == 0
    git(seed, "pull", "--quiet", "origin", "main")
    entry = (seed / "finished-mailings.jsonl").read_bytes()
    git(seed, "rm", "--quiet", "finished-mailings.jsonl")
    git(seed, "commit", "--quiet", "-m", "As it was before the index")
    git(seed, "push", "--quiet", "origin", "HEAD:main")
    before = git(bare, "rev-parse", "main")

    work = clone(bare, "job")
    done = mailings_send(work, tmp_path / "outbox")

    assert done.returncode == 0, done.stdout + done.stderr
    assert len(mailbox.Maildir(tmp_path / "outbox", create=False)) == 6  # nothing sent again
    assert git(bare, "rev-parse", "main~1") == before
    assert git(bare, "log", "-1", "--format=%s", "main") == "Send logs: index the finished mailings"
    assert git(bare, "show", "--name-only", "--format=", "main") == "finished-mailings.jsonl"
    assert git(bare, "show", "main:finished-mailings.jsonl") + "\n" == entry.decode()
    assert git(work, "status", "--porcelain") == ""
    pushed = git(bare, "rev-parse", "main")
    again = mailings_send(work, tmp_path / "outbox")
    assert again.returncode == 0 and git(bare, "rev-parse", "main") == pushed

"""`mailings send`, `status` and `preview` through the command line, with the environment passed in."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from checks.cli import build_parser, main
from tests.conftest import BODIES, LOG_KEY_ENV, TEST_LOG_KEY, Repo, addresses, git
from tests.sender.sending import MAILING, NOW, events, log_of, log_path, recipients
from tests.sender.smtpserver import RunningServer, credentials

MakeServer = Callable[..., RunningServer]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(argv: list[str], env: Mapping[str, str] | None = None, out: io.StringIO | None = None) -> tuple[int, str]:
    """The command's exit code and output, with *env* as its whole environment."""
    args = build_parser().parse_args(argv)
    stream = out if out is not None else io.StringIO()
    code = args.func(args, dict(LOG_KEY_ENV if env is None else env), stream)
    return code, stream.getvalue()


def relay(server: RunningServer, **more: str) -> dict[str, str]:
    return {
        "MAILINGS_SMTP_HOST": server.host,
        "MAILINGS_SMTP_PORT": str(server.port),
        "MAILINGS_SMTP_SECURITY": "none",
        **LOG_KEY_ENV,
        **more,
    }


def test_send_delivers_and_summarises(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    code, out = run(["send", "--root", str(repo.root), "--now", NOW], relay(smtp_server))
    assert code == 0
    assert smtp_server.handler.counts() == Counter({a: 1 for a in recipients(600)})
    assert out.splitlines()[0] == f"mailings send at 2027-02-10 09:05 CET via 127.0.0.1:{smtp_server.port} (none)"
    assert f"{MAILING}: sent: 600 accepted, 0 failed, 0 pending of 600; this run: 600 accepted in 6 transactions" in out


def test_without_a_relay_the_messages_go_to_the_outbox(repo: Repo, tmp_path: Path) -> None:
    repo.add()
    code, _ = run(["send", "--root", str(repo.root), "--now", NOW])
    assert code == 0 and len(list((repo.root / "outbox" / "new").iterdir())) == 6
    repo.add("2027-02-10-other", recipients=addresses(500, prefix="other"))
    elsewhere = tmp_path / "elsewhere"
    code, _ = run(["send", "--root", str(repo.root), "--now", NOW, "--outbox", str(elsewhere)])
    assert code == 0 and len(list((elsewhere / "new").iterdir())) == 5


def test_exit_code_1_when_a_mailing_is_blocked_after_handling_the_others(
    repo: Repo, smtp_server: RunningServer
) -> None:
    repo.add(bodies={**BODIES, "en": "Read <b>this</b>.\n"})
    repo.add("2027-02-10-other", recipients=addresses(500, prefix="other"))
    code, out = run(["send", "--root", str(repo.root), "--now", NOW], relay(smtp_server))
    assert code == 1 and len(smtp_server.handler.recipients()) == 500
    assert f"{MAILING}: blocked: mailings/{MAILING}/body.en.txt:" in out


def test_exit_code_1_when_a_mailing_is_missed(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    code, out = run(["send", "--root", str(repo.root), "--now", "2027-02-12T09:00:00+01:00"], relay(smtp_server))
    assert code == 1 and smtp_server.handler.connections == 0 and f"{MAILING}: missed: " in out


def test_usage_errors_exit_2(repo: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    repo.add()
    monkeypatch.setenv("MAILINGS_LOG_KEY", TEST_LOG_KEY)
    assert main(["send", "--root", str(repo.root), "--only", "no-such-mailing"]) == 2
    assert "--only no-such-mailing: no mailing mailings/no-such-mailing" in capsys.readouterr().err
    assert main(["send", "--root", str(repo.root), "--now", "tomorrow"]) == 2
    assert main(["preview", "nope", "--root", str(repo.root)]) == 2


def test_a_dry_run_says_what_would_be_sent_and_writes_nothing(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    code, out = run(["send", "--root", str(repo.root), "--now", NOW, "--dry-run"], relay(smtp_server))
    assert code == 0 and smtp_server.handler.connections == 0
    assert not log_path(repo).exists() and not (repo.root / "outbox").exists()
    assert "would send 6 messages to 600 recipients (bulk, 4 connections)" in out


def test_the_password_never_appears_in_the_output(repo: Repo, make_server: MakeServer) -> None:
    server = make_server(auth_required=True, auth_require_tls=False, authenticator=credentials("mailer", "pw-right"))
    repo.add()
    env = relay(server, MAILINGS_SMTP_USERNAME="mailer", MAILINGS_SMTP_PASSWORD="pw-Wr0ng-s3cret")
    code, out = run(["send", "--root", str(repo.root), "--now", NOW], env)
    assert code == 1 and "pw-Wr0ng-s3cret" not in out and "authentication" in out
    assert "pw-Wr0ng-s3cret" not in log_path(repo).read_text()
    assert server.handler.connections == 1


def test_special_lists_come_from_mailings_list_variables(
    repo: Repo, smtp_server: RunningServer, tmp_path: Path
) -> None:
    staff = tmp_path / "staff.txt"
    staff.write_text(addresses(100, prefix="staff"), encoding="utf-8")
    # A list is sent to only when its size is near the policy's (sender.lists): this one is meant to hold 100.
    policy = repo.root / "policy.yaml"
    policy.write_text(policy.read_text().replace("approximate_size: 5500", "approximate_size: 100"))
    repo.add(changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"special": "all-employees"}]}})
    env = relay(smtp_server, MAILINGS_LIST_ALL_EMPLOYEES=str(staff))
    code, out = run(["send", "--root", str(repo.root), "--now", NOW], env)
    assert code == 0 and len(smtp_server.handler.counts()) == 700
    assert "special list all-employees: 100 addresses, from the file that MAILINGS_LIST_ALL_EMPLOYEES names" in out


@pytest.mark.parametrize("key", [None, "", "   ", "short-key-of-31-characters-0000"])
def test_a_send_without_a_fit_log_key_sends_and_writes_nothing_and_says_how_to_make_one(
    repo: Repo,
    smtp_server: RunningServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    key: str | None,
) -> None:
    repo.add()
    monkeypatch.delenv("MAILINGS_LOG_KEY", raising=False)
    if key is not None:
        monkeypatch.setenv("MAILINGS_LOG_KEY", key)
    for name, value in relay(smtp_server).items():
        if name != "MAILINGS_LOG_KEY":
            monkeypatch.setenv(name, value)
    assert main(["send", "--root", str(repo.root), "--now", NOW]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mailings: error: nothing was sent: MAILINGS_LOG_KEY ")
    assert "openssl rand -hex 32" in err and "gh secret set MAILINGS_LOG_KEY" in err
    assert smtp_server.handler.connections == 0 and not log_path(repo).exists()
    # Without --push or --commit, in a Maildir outbox, as the demo does: refused all the same.
    for name in ("MAILINGS_SMTP_HOST", "MAILINGS_SMTP_PORT", "MAILINGS_SMTP_SECURITY"):
        monkeypatch.delenv(name)
    assert main(["send", "--root", str(repo.root), "--now", NOW, "--outbox", str(repo.root / "box")]) == 2
    assert not (repo.root / "box").exists() and not log_path(repo).exists()


def test_a_dry_run_needs_no_log_key(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    env = {k: v for k, v in relay(smtp_server).items() if k != "MAILINGS_LOG_KEY"}
    code, out = run(["send", "--root", str(repo.root), "--now", NOW, "--dry-run"], env)
    assert code == 0 and "would send" in out and not log_path(repo).exists()


def test_the_log_key_from_the_environment_keys_the_hashes(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    code, _ = run(["send", "--root", str(repo.root), "--now", NOW], relay(smtp_server, MAILINGS_LOG_KEY="k1" * 16))
    [start] = events(repo, "start")
    assert code == 0 and start["hash"] == "hmac-sha256-128" and len(start["key_check"]) == 16


def test_progress_on_a_terminal_redraws_one_line(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    code, out = run(["send", "--root", str(repo.root), "--now", NOW], relay(smtp_server), out=Tty())
    assert code == 0 and f"\r{MAILING} [" in out and "600 accepted, 0 failed, 0 pending" in out


def test_status_shows_every_state_in_text_and_json(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()  # sent by the run below
    repo.add("2027-02-10-blocked", bodies={**BODIES, "en": "Read <b>this</b>.\n"})
    repo.add("2027-02-09-missed", changes={"send_at": "2027-02-09 08:00"})
    repo.add("2027-03-01-later", changes={"send_at": "2027-03-01 09:00"})
    run(["send", "--root", str(repo.root), "--now", NOW, "--only", MAILING], relay(smtp_server))
    run(["send", "--root", str(repo.root), "--now", NOW, "--only", "2027-02-10-blocked"], relay(smtp_server))
    code, text = run(["status", "--root", str(repo.root), "--now", "2027-02-10T09:10:00+01:00"])
    assert code == 0
    lines = text.splitlines()
    assert lines[0].split() == [
        "MAILING",
        "STATE",
        "SEND",
        "AT",
        "RECIPIENTS",
        "ACCEPTED",
        "FAILED",
        "DELIVERED",
        "LAST",
        "ACTIVITY",
    ]
    assert lines[1].split()[:2] == ["2027-02-09-missed", "missed"]
    assert "    missed: send_at 2027-02-09 08:00 CET is more than 24 hours ago" in text
    assert [line.split()[:2] for line in lines if line.startswith("2027-02-10-blocked")] == [
        ["2027-02-10-blocked", "blocked"]
    ]
    assert [line.split()[:7] for line in lines if line.startswith(MAILING)] == [
        [MAILING, "sent", "2027-02-10", "09:00+01:00", "600", "600", "0"]
    ]
    code, raw = run(["status", "--root", str(repo.root), "--now", "2027-02-10T09:10:00+01:00", "--format", "json"])
    rows = {row["id"]: row for row in json.loads(raw)["mailings"]}
    assert {i: r["state"] for i, r in rows.items()} == {
        MAILING: "sent",
        "2027-02-10-blocked": "blocked",
        "2027-02-09-missed": "missed",
        "2027-03-01-later": "scheduled",
    }
    sent = rows[MAILING]
    assert (sent["recipients"], sent["accepted"], sent["failed"], sent["send_at"]) == (
        600,
        600,
        0,
        "2027-02-10T09:00+01:00",
    )
    assert sent["last_activity"] is not None and rows["2027-03-01-later"]["recipients"] == 600


def test_status_says_whether_a_sending_mailing_runs_or_was_interrupted(repo: Repo) -> None:
    from sender.journal import Journal

    repo.add()
    with Journal.open(log_path(repo)) as journal:
        journal.append({"event": "start", "time": NOW, "recipients": 600, "hash": "sha256-128"})
        _, text = run(["status", "--root", str(repo.root), "--now", NOW])
        assert "    sending: running now" in text
    _, text = run(["status", "--root", str(repo.root), "--now", NOW])
    assert "    sending: interrupted; the next `mailings send` resumes it" in text


def test_preview_prints_the_message(repo: Repo) -> None:
    repo.add()
    code, out = run(["preview", MAILING, "--root", str(repo.root), "--now", NOW])
    assert code == 0
    assert "Subject: Nytt system för resebokning / New travel booking system" in out
    assert "From 1 March you book travel in the new system." in out
    assert not log_path(repo).exists()


def test_preview_to_sends_one_copy_and_leaves_the_send_log_alone(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    code, out = run(["preview", MAILING, "--root", str(repo.root), "--to", "tester@kth.se"], relay(smtp_server))
    assert code == 0 and "test copy of 2027-02-10-travel to tester@kth.se" in out and "accepted" in out
    [entry] = smtp_server.handler.received
    assert entry.recipients == ("tester@kth.se",) and b"To: tester@kth.se" in entry.data
    assert not log_path(repo).exists()
    with pytest.raises(Exception, match="not a valid address"):
        run(["preview", MAILING, "--root", str(repo.root), "--to", "not an address"], relay(smtp_server))


# --- real git --------------------------------------------------------------------------------------------------


def _published(tmp_path: Path, repo: Repo) -> tuple[Path, Path]:
    """A bare origin holding *repo*'s contents, and a clone of it to send from."""
    tmp_path.mkdir()
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "--quiet", str(origin), str(seed))
    for name in ("policy.yaml", "schema", "mailings"):
        source = repo.root / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, seed / name)
    git(seed, "add", ".")
    git(seed, "commit", "--quiet", "-m", "Approve a mailing")
    git(seed, "push", "--quiet", "origin", "HEAD:main")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", str(origin), str(clone))
    return origin, clone


def test_send_commit_push_records_the_log_on_origin_and_a_second_run_sends_nothing(
    repo: Repo, smtp_server: RunningServer, tmp_path: Path, plain_git: None
) -> None:
    repo.add()
    origin, clone = _published(tmp_path / "git", repo)
    code, out = run(["send", "--root", str(clone), "--now", NOW, "--commit", "--push"], relay(smtp_server))
    assert code == 0 and "recorded the send logs on main" in out
    assert (
        git(origin, "log", "-1", "--format=%an|%s", "main")
        == "mailings-bot|Send log: 2027-02-10-travel 600 accepted, 0 failed"
    )
    assert '"complete":true' in git(origin, "show", f"main:mailings/{MAILING}/sendlog.jsonl")
    code, out = run(["send", "--root", str(clone), "--now", NOW, "--commit", "--push"], relay(smtp_server))
    assert code == 0 and "nothing to record" in out
    assert len(smtp_server.handler.recipients()) == 600
    assert git(origin, "for-each-ref", "refs/heads/mailings-sending/") == ""  # the claim branch went with the run


def test_a_push_race_is_resolved_by_the_retry(
    repo: Repo, smtp_server: RunningServer, tmp_path: Path, plain_git: None
) -> None:
    repo.add()
    origin, clone = _published(tmp_path / "git", repo)
    other = tmp_path / "git" / "other"
    git(tmp_path, "clone", "--quiet", str(origin), str(other))
    (other / "README.md").write_text("merged meanwhile\n", encoding="utf-8")
    git(other, "add", "README.md")
    git(other, "commit", "--quiet", "-m", "Another merge")
    git(other, "push", "--quiet", "origin", "HEAD:main")
    code, out = run(["send", "--root", str(clone), "--now", NOW, "--push"], relay(smtp_server))
    assert code == 0 and "recorded the send logs on main" in out
    subjects = git(origin, "log", "--format=%s", "main").splitlines()
    assert subjects[:2] == ["Send log: 2027-02-10-travel 600 accepted, 0 failed", "Another merge"]


def test_status_shows_where_the_special_lists_came_from(repo: Repo) -> None:
    repo.add()
    start = {
        "event": "start",
        "time": "2027-02-10T09:01:00.000+01:00",
        "run": "r1",
        "recipients": 600,
        "special_lists": {
            "all-students": {"source": "file", "path": "lists/all-students.txt.age", "commit": "0123456789abcdef",
                             "committed_at": "2027-02-01T10:00:00+01:00", "size": 19234},
        },
    }  # fmt: skip
    log_path(repo).write_text(json.dumps(start) + "\n", encoding="utf-8")
    code, out = run(["status", "--root", str(repo.root), "--now", NOW])
    assert code == 0
    assert (
        "    list all-students: file, lists/all-students.txt.age, commit 0123456789ab, of 2027-02-01T10:00:00+01:00, "
        "19,234 addresses" in out.splitlines()
    )
    code, out = run(["status", "--root", str(repo.root), "--now", NOW, "--format", "json"])
    assert json.loads(out)["mailings"][0]["special_lists"]["all-students"]["size"] == 19234


def test_a_closed_output_neither_stops_the_send_nor_ends_it_in_a_traceback(repo: Repo) -> None:
    """`mailings send | head -1`: the reader went away, so every write to the output fails. The sender sends every
    recipient all the same and records the log; the output is dropped, and one line on stderr says so."""
    repo.add()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "MAILINGS_"))} | LOG_KEY_ENV
    read, write = os.pipe()
    os.close(read)  # gone before the first line
    try:
        command = [sys.executable, "-m", "checks", "send", "--root", str(repo.root), "--now", NOW]
        done = subprocess.run(command, stdout=write, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (
        0,
        "mailings: the output was cut off (Broken pipe); the command went on to its end\n",
    )
    assert len(list((repo.root / "outbox" / "new").iterdir())) == 6
    assert log_of(repo).complete and len(events(repo, "summary")) == 1


def test_a_failed_git_step_shows_git_s_own_words_on_lines_of_their_own(repo: Repo) -> None:
    repo.add()
    assert run(["send", "--root", str(repo.root), "--now", NOW])[0] == 0  # to the outbox: a log to record
    code, out = run(["record", "--root", str(repo.root)])  # not a git repository
    assert code == 1, out
    first, second = out.splitlines()
    assert first == "mailings: git: git rev-parse --verify HEAD^{commit} failed"
    assert second.startswith("    fatal: not a git repository")


def test_a_full_disk_stops_the_send_with_what_was_sent_in_its_log_and_the_next_run_resumes(repo: Repo) -> None:
    """A write to the send log that the disk refuses (here a file size limit, EFBIG, as a full disk refuses with
    ENOSPC) stops the mailing without a traceback, says so, and leaves it for the next run, which sends the rest:
    every recipient gets the message, and only the transactions whose outcome could not be written go twice."""
    import resource

    repo.add()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "MAILINGS_"))} | LOG_KEY_ENV
    command = [sys.executable, "-m", "checks", "send", "--root", str(repo.root), "--now", NOW]

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (12_000, 12_000))

    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, preexec_fn=small_files)
    assert first.returncode == 1 and "Traceback" not in first.stderr, first.stderr
    assert (
        f"{MAILING}: sending: stopped: the disk failed (File too large); what was sent is in its log, and the next "
        "run resumes from it once the disk is fixed"
    ) in first.stdout
    sent_first = len(list((repo.root / "outbox" / "new").iterdir()))
    assert 0 < sent_first < 6
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    copies = Counter(
        address
        for message in (repo.root / "outbox" / "new").iterdir()
        for address in re.findall(r"^X-Envelope-To: <(.+)>$", message.read_text(), re.MULTILINE)
    )
    assert set(copies) == set(recipients(600))
    # Twice: the transactions in flight whose acceptance the disk kept out of the log, at most one per connection
    # (the bound a power cut has: README, "What the dispatch job guarantees").
    lines = log_path(repo).read_bytes().splitlines()  # one of them torn: the write the disk cut short
    start = json.loads(next(line for line in lines if line.startswith(b'{"event":"start"')))
    twice = [address for address, count in copies.items() if count > 1]
    assert 0 < len(twice) <= start["connections"] * start["batch_size"] and max(copies.values()) == 2
    assert log_of(repo).complete

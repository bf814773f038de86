"""Exactly once when git, the runner or the relay fails: the claim before the first message, checkpoints while
sending, and failing closed. Real git (a bare origin, hooks that refuse pushes, racing clones) and a real SMTP
server, counting what each recipient received."""

from __future__ import annotations

import json
import stat
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.model import dispatched
from sender.dispatch import Outcome, Tuning, send_all
from sender.record import RemoteRecord
from sender.state import MailingState
from tests.conftest import LOG_KEY_ENV, Repo, addresses, git
from tests.sender.sending import FAST, MAILING, NOW, options, smtp
from tests.sender.smtpserver import Faults, FaultyHandler, RunningServer
from tests.sender.test_cli_send import _published, relay, run

MakeServer = Callable[..., RunningServer]
LOG = f"mailings/{MAILING}/sendlog.jsonl"
CLAIM_BRANCH = f"refs/heads/mailings-sending/{MAILING}"


@pytest.fixture(autouse=True)
def _plain_git(plain_git: None) -> None:
    """Every test here runs git as the dispatch job would: no user or system configuration."""


def refuse_pushes(origin: Path, *, refs: str = "*", after: int = 0) -> None:
    """A pre-receive hook on *origin* that refuses pushes to refs matching the shell pattern *refs*, once *after*
    of them were let through."""
    hook = origin / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        f'count_file="$GIT_DIR/allowed-pushes"\n'
        "while read old new ref; do\n"
        '  case "$ref" in\n'
        f"    {refs})\n"
        '      n=$(cat "$count_file" 2>/dev/null || echo 0)\n'
        f'      if [ "$n" -ge {after} ]; then echo "refused by the test hook: $ref" >&2; exit 1; fi\n'
        '      echo $((n + 1)) > "$count_file" ;;\n'
        "  esac\n"
        "done\n",
        encoding="utf-8",
    )
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def allow_pushes(origin: Path) -> None:
    (origin / "hooks" / "pre-receive").unlink()


def fresh_clone(origin: Path, name: str) -> Path:
    target = origin.parent / name
    git(origin.parent, "clone", "--quiet", str(origin), str(target))
    return target


def log_on(origin: Path, ref: str = "main") -> list[dict[str, Any]]:
    text = git(origin, "show", f"{ref}:{LOG}")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def kinds(entries: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in entries]


def send_from(clone: Path, server: RunningServer, *, now: str = NOW, **changes: Any) -> list[Outcome]:
    """One run of the dispatch job in *clone*, with its claim and checkpoints on origin; then the logs on main."""
    from sender.commands import _publish

    repo = Repo.__new__(Repo)
    repo.root = clone
    repo._policy = None
    remote = RemoteRecord(clone)
    outcomes = send_all(clone, repo.policy, options(smtp(server), now=now, remote=remote, **changes))
    _publish(clone, remote, outcomes, _Sink())
    return outcomes


class _Sink:
    def write(self, text: str) -> int:
        return len(text)


# --- the claim --------------------------------------------------------------------------------------------------


def test_a_refused_claim_sends_nothing_run_after_run(repo: Repo, smtp_server: RunningServer, tmp_path: Path) -> None:
    repo.add()
    origin, clone = _published(tmp_path / "git", repo)
    refuse_pushes(origin)  # a lost bypass, a revoked deploy key: every push is refused
    for attempt in range(3):
        work = clone if attempt == 0 else fresh_clone(origin, f"runner-{attempt}")
        code, out = run(["send", "--root", str(work), "--now", NOW, "--push"], relay(smtp_server))
        assert code == 1
        assert "the claim could not be recorded on the remote, so nothing was sent" in out
        assert "refused by the test hook" in out
        assert not (work / LOG).exists() or b'"claim"' not in (work / LOG).read_bytes()  # taken back out
    assert smtp_server.handler.recipients() == []


def test_the_claim_is_on_the_remote_before_the_first_message(
    repo: Repo, make_server: MakeServer, tmp_path: Path
) -> None:
    repo.add()
    origin, clone = _published(tmp_path / "git", repo)
    seen: list[str] = []

    class Watching(FaultyHandler):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if not seen:
                seen.append(git(origin, "show", f"{CLAIM_BRANCH}:{LOG}"))
            return await super().handle_DATA(server, session, envelope)

    server = make_server(Watching())
    [outcome] = send_from(clone, server)
    assert outcome.state is MailingState.SENT
    claim = json.loads(seen[0].splitlines()[-1])
    assert claim["event"] == "claim" and claim["recipients"] == 600 and claim["digest"].startswith("sha256:")
    ends = [e for e in log_on(origin) if e["event"] == "end"]
    assert kinds(log_on(origin))[:2] == ["claim", "start"] and ends[-1]["complete"] is True
    assert git(origin, "for-each-ref", "refs/heads/mailings-sending/") == ""


def test_two_dispatchers_on_two_machines_send_each_recipient_once(
    repo: Repo, make_server: MakeServer, tmp_path: Path
) -> None:
    repo.add(recipients=addresses(3000))
    origin, first = _published(tmp_path / "git", repo)
    second = fresh_clone(origin, "second")
    server = make_server(FaultyHandler(Faults(delay=0.0005)))
    results: dict[str, list[Outcome]] = {}

    def dispatch(name: str, clone: Path) -> None:
        results[name] = send_from(clone, server, run_id=f"run-{name}")

    threads = [threading.Thread(target=dispatch, args=(n, c)) for n, c in (("a", first), ("b", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert Counter(server.handler.counts().values()) == Counter({1: 3000})
    assert sorted(o.sent_now for outcomes in results.values() for o in outcomes) in ([0, 3000],)


def test_a_claim_taken_by_another_run_is_left_alone_while_fresh(
    repo: Repo, smtp_server: RunningServer, tmp_path: Path
) -> None:
    repo.add()
    origin, clone = _published(tmp_path / "git", repo)
    # Another run claimed it a minute ago and is sending: its claim branch holds the log so far.
    other = fresh_clone(origin, "other")
    claim = {"event": "claim", "time": "2027-02-10T09:04:00.000+01:00", "run": "other", "digest": "sha256:x"}
    (other / LOG).write_text(json.dumps(claim) + "\n", encoding="utf-8")
    git(other, "add", "-f", LOG)
    git(other, "commit", "--quiet", "-m", "Claim")
    git(other, "push", "--quiet", "origin", f"HEAD:{CLAIM_BRANCH}")
    [outcome] = send_from(clone, smtp_server)
    assert outcome.state is MailingState.SENDING and "run other claimed it" in outcome.note
    assert smtp_server.handler.recipients() == []


# --- checkpoints ------------------------------------------------------------------------------------------------


def test_a_refused_checkpoint_stops_sending_and_record_keeps_the_log(
    repo: Repo, smtp_server: RunningServer, tmp_path: Path
) -> None:
    repo.add(recipients=addresses(2000))
    origin, clone = _published(tmp_path / "git", repo)
    refuse_pushes(origin, refs="refs/heads/mailings-sending/*", after=2)  # the claim and one checkpoint
    tuning = replace(FAST, checkpoint_recipients=400)
    [outcome] = send_from(clone, smtp_server, tuning=tuning)
    received = len(smtp_server.handler.recipients())
    assert not outcome.ok and "could not be recorded on the remote, so sending stopped" in outcome.note
    # At most two checkpoint bounds: the one the refused checkpoint covered, and the one attempted meanwhile.
    assert 0 < received <= 2 * 400 + 100
    assert outcome.accepted == received  # the log in the checkout knows every one of them
    allow_pushes(origin)
    code, out = run(["record", "--root", str(clone), "--push"], {})
    assert code == 0, out
    accepted = {h for e in log_on(origin) if e["event"] == "accepted" for h in e["rcpt"]}
    assert len(accepted) == received
    # The next run, from a fresh clone, sends the rest and nobody twice.
    [after] = send_from(fresh_clone(origin, "next"), smtp_server, now="2027-02-10T09:30:00+01:00")
    assert after.state is MailingState.SENT
    assert Counter(smtp_server.handler.counts().values()) == Counter({1: 2000})


def test_progress_reaches_the_remote_every_checkpoint_interval(
    repo: Repo, smtp_server: RunningServer, tmp_path: Path
) -> None:
    repo.add(recipients=addresses(2000))
    origin, clone = _published(tmp_path / "git", repo)
    pushes: list[int] = []
    hook = origin / "hooks" / "update"
    hook.write_text('#!/bin/sh\necho "$1" >> "$GIT_DIR/updates"\n', encoding="utf-8")
    hook.chmod(0o755)
    tuning = replace(FAST, checkpoint_recipients=500)
    [outcome] = send_from(clone, smtp_server, tuning=tuning)
    assert outcome.state is MailingState.SENT
    updates = (origin / "updates").read_text(encoding="utf-8").split()
    pushes.append(updates.count(CLAIM_BRANCH))
    # The claim, a checkpoint at least every 500 recipients attempted, the final one; then main, then the delete.
    assert pushes[0] >= 1 + 2000 // 500
    assert updates[-2:] == ["refs/heads/main", CLAIM_BRANCH]


def test_a_failed_publish_to_main_keeps_the_log_on_the_claim_branch_and_nobody_is_mailed_twice(
    repo: Repo, smtp_server: RunningServer, tmp_path: Path
) -> None:
    repo.add()
    origin, clone = _published(tmp_path / "git", repo)
    refuse_pushes(origin, refs="refs/heads/main")
    code, out = run(["send", "--root", str(clone), "--now", NOW, "--push"], relay(smtp_server))
    assert code == 1 and "cannot push the send logs to main" in out
    assert log_on(origin, CLAIM_BRANCH)[-1]["complete"] is True
    for attempt in range(2):  # each later run, from a fresh checkout, reads the log from the claim branch
        work = fresh_clone(origin, f"runner-{attempt}")
        run(["send", "--root", str(work), "--now", "2027-02-10T09:30:00+01:00", "--push"], relay(smtp_server))
    assert len(smtp_server.handler.recipients()) == 600
    allow_pushes(origin)
    work = fresh_clone(origin, "runner-final")
    code, out = run(["send", "--root", str(work), "--now", "2027-02-10T09:45:00+01:00", "--push"], relay(smtp_server))
    assert code == 0, out
    assert log_on(origin)[-1]["complete"] is True
    assert len(smtp_server.handler.recipients()) == 600


# --- files that would switch the record off ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (".gitignore", "sendlog.jsonl\n*.jsonl\n"),
        (".gitattributes", "*.jsonl text eol=crlf\n"),
        (".gitattributes", "*.jsonl filter=missing-filter\n"),
    ],
)
def test_ignore_and_attribute_files_neither_block_nor_change_the_log(
    repo: Repo, smtp_server: RunningServer, tmp_path: Path, name: str, content: str
) -> None:
    repo.add()
    origin, clone = _published(tmp_path / "git", repo)
    # Merged by mistake, both at the root and beside the requests (the check refuses the latter).
    (clone / name).write_text(content, encoding="utf-8")
    (clone / "mailings" / name).write_text(content, encoding="utf-8")
    git(clone, "add", "-f", name, f"mailings/{name}")
    git(clone, "commit", "--quiet", "-m", f"Add {name}")
    git(clone, "push", "--quiet", "origin", "HEAD:main")
    code, out = run(["send", "--root", str(clone), "--now", NOW, "--push"], relay(smtp_server))
    assert code == 0, out
    assert git(origin, "cat-file", "-p", f"main:{LOG}").encode() + b"\n" == (clone / LOG).read_bytes()
    for attempt in range(2):
        work = fresh_clone(origin, f"runner-{attempt}")
        code, out = run(
            ["send", "--root", str(work), "--now", "2027-02-10T09:30:00+01:00", "--push"], relay(smtp_server)
        )
        assert code == 0, out
    assert Counter(smtp_server.handler.counts().values()) == Counter({1: 600})


# --- the relay --------------------------------------------------------------------------------------------------


def test_a_relay_outage_sends_nothing_and_leaves_the_mailing_open_to_a_new_date(repo: Repo, tmp_path: Path) -> None:
    repo.add()
    origin, clone = _published(tmp_path / "git", repo)
    env = {
        "MAILINGS_SMTP_HOST": "127.0.0.1",
        "MAILINGS_SMTP_PORT": "9",
        "MAILINGS_SMTP_SECURITY": "none",
        **LOG_KEY_ENV,
    }
    code, out = run(["send", "--root", str(clone), "--now", NOW, "--push"], env)
    assert code == 1 and "cannot open a session with the relay" in out
    lines = git(origin, "show", f"main:{LOG}").encode().splitlines()
    end = json.loads(lines[-1])
    assert end["event"] == "end" and end["attempted"] == 0
    assert not dispatched(lines)  # nothing left: the request may still be fixed or re-dated


def test_an_unanswered_end_of_message_is_unknown_and_never_sent_again(repo: Repo, make_server: MakeServer) -> None:
    repo.add(recipients=addresses(500), changes={"delivery": {"mode": "individual"}})
    late = {f"user{i}@kth.se" for i in (3, 7)}

    class Late(FaultyHandler):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            reply = await super().handle_DATA(server, session, envelope)
            if set(envelope.rcpt_tos) & late:
                import asyncio

                await asyncio.sleep(1.5)  # delivered, but answered after the client gave up
            return reply

    server = make_server(Late())
    [first] = send_all(repo.root, repo.policy, options(smtp(server, timeout=0.5)))
    assert first.unknown_now == 2 and "2 recipient(s) unknown" in first.note
    [second] = send_all(repo.root, repo.policy, options(smtp(server, timeout=0.5), now="2027-02-10T09:30:00+01:00"))
    assert second.sent_now == 0
    assert Counter(server.handler.counts().values()) == Counter({1: 500})
    assert first.state is MailingState.SENT and first.unknown == 2


# --- final states and pinned content -----------------------------------------------------------------------------


def test_a_recorded_miss_stays_missed_whatever_the_limit_or_the_clock(repo: Repo, smtp_server: RunningServer) -> None:
    from tests.sender.sending import set_sending

    repo.add()
    [missed] = send_all(repo.root, repo.policy, options(smtp(smtp_server), now="2027-02-12T09:05:00+01:00"))
    assert missed.state is MailingState.MISSED
    set_sending(repo, max_lateness_hours=100)  # raised afterwards
    [later] = send_all(repo.root, repo.policy, options(smtp(smtp_server), now="2027-02-12T10:00:00+01:00"))
    [behind] = send_all(repo.root, repo.policy, options(smtp(smtp_server), now=NOW))  # a clock that is behind
    assert later.state is behind.state is MailingState.MISSED
    assert smtp_server.handler.recipients() == []
    # A person gives it a new date: that is a changed request, and it goes out.
    path = repo.root / "mailings" / MAILING / "mailing.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["send_at"] = "2027-02-15 09:00"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    [sent] = send_all(repo.root, repo.policy, options(smtp(smtp_server), now="2027-02-15T09:05:00+01:00"))
    assert sent.state is MailingState.SENT and len(smtp_server.handler.recipients()) == 600


def test_a_run_that_arrives_after_a_blackout_began_sends_nothing(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add("2027-06-30-late", changes={"send_at": "2027-06-30 16:00"})
    [outcome] = send_all(
        repo.root, repo.policy, options(smtp(smtp_server), now="2027-07-01T08:00:00+02:00", tuning=FAST)
    )
    assert outcome.state is MailingState.BLOCKED and "inside the blackout period" in outcome.note
    assert smtp_server.handler.recipients() == []


def test_content_changed_after_sending_began_sends_nothing_more(repo: Repo, make_server: MakeServer) -> None:
    repo.add()
    server = make_server(
        FaultyHandler(Faults(temp_fail=dict.fromkeys((f"user{i}@kth.se" for i in range(300, 600)), None)))
    )
    [first] = send_all(repo.root, repo.policy, options(smtp(server), tuning=Tuning(retries=0, backoff=())))
    assert first.accepted == 300 and first.pending == 300
    body = repo.root / "mailings" / MAILING / "body.en.txt"
    body.write_text(body.read_text(encoding="utf-8") + "\nA new paragraph after approval.\n", encoding="utf-8")
    server.handler.faults = Faults()
    [second] = send_all(repo.root, repo.policy, options(smtp(server), now="2027-02-10T09:30:00+01:00"))
    assert second.state is MailingState.BLOCKED and "the request changed after sending began" in second.note
    assert len(server.handler.recipients()) == 300


# --- connections that drop while the sender waits ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("goodbye", [None, "421 4.4.2 mx.test Error: timeout exceeded"])
def test_connections_closed_while_idle_under_the_rate_limit_cost_nothing_and_garble_nothing(
    repo: Repo, make_server: MakeServer, goodbye: str | None
) -> None:
    from email import message_from_bytes
    from email import policy as email_policy

    from tests.sender.sending import set_sending

    repo.add(recipients=addresses(500), changes={"delivery": {"mode": "individual"}})
    repo.add("2027-02-10-other", recipients=addresses(500, prefix="other"))
    # 4 connections sharing 40 messages a second: each waits 0.1 s between its messages, longer than the
    # relay keeps an idle connection (0.06 s).
    set_sending(repo, rate_limit=40, connections=4)
    server = make_server(idle=0.06, goodbye=goodbye)
    outcomes = send_all(repo.root, repo.policy, options(smtp(server, timeout=2.0)))
    assert {o.mailing_id: o.state for o in outcomes} == {
        MAILING: MailingState.SENT,
        "2027-02-10-other": MailingState.SENT,
    }
    counts = server.handler.counts()
    assert set(counts.values()) == {1}, "a recipient got two copies"
    # A relay that times a connection out just as a message's end arrives keeps nothing and never answers it: the
    # sender cannot know, so those recipients are unknown (never sent again by themselves). Everyone else has it.
    from tests.sender.sending import log_of

    unknown = len(log_of(repo).unknown) + len(log_of(repo, "2027-02-10-other").unknown)
    assert len(counts) + unknown == 1000
    assert unknown <= 200, "more than two messages' recipients were left unknown"
    assert server.handler.connections > 8, "the relay never closed an idle connection: the test proves nothing"
    for entry in server.handler.received:
        parsed = message_from_bytes(entry.data, policy=email_policy.default)
        assert parsed["Subject"] and parsed["X-Mailing-Id"], entry.data[:200]
        assert b"QUIT" not in entry.data and b"MAIL FROM" not in entry.data

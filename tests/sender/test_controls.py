"""Steering a merged mailing: hold, cancel and resume_at in mailing.yaml, the MAILINGS_HOLD brake, and a clean
stop on SIGTERM. A real SMTP server counts what each recipient received; [immutable] runs on real git."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sender.dispatch import Brake, send_all
from sender.state import MailingState
from tests.conftest import Repo, addresses, git
from tests.sender.sending import MAILING, NOW, events, log_of, options, smtp
from tests.sender.smtpserver import Faults, FaultyHandler, RunningServer
from tests.sender.test_cli_send import relay, run

MakeServer = Callable[..., RunningServer]
LATER = "2027-02-10T09:30:00+01:00"


def edit(repo: Repo, **fields: Any) -> None:
    """Set (or, with None, remove) top-level fields of the mailing's mailing.yaml."""
    path = repo.root / "mailings" / MAILING / "mailing.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in fields.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def send(repo: Repo, server: RunningServer, now: str = NOW, **changes: Any) -> Any:
    [outcome] = send_all(repo.root, repo.policy, options(smtp(server), now=now, **changes))
    return outcome


# --- hold and release -------------------------------------------------------------------------------------------


def test_a_hold_sends_nothing_is_recorded_once_and_a_release_sends_everyone_once(
    repo: Repo, smtp_server: RunningServer
) -> None:
    repo.add()
    edit(repo, hold={"reason": "The date of the event may move"})
    held = send(repo, smtp_server)
    again = send(repo, smtp_server, now="2027-02-10T09:20:00+01:00")
    assert held.state is again.state is MailingState.HELD
    assert "The date of the event may move" in held.note
    assert held.changed and not again.changed  # news once
    assert held.acted and again.acted  # said every run: a held mailing must not look forgotten
    assert [e["reason"] for e in events(repo, "held")] == ["The date of the event may move (hold in mailing.yaml)"]
    assert smtp_server.handler.recipients() == []
    edit(repo, hold=None)
    released = send(repo, smtp_server, now=LATER)
    assert released.state is MailingState.SENT
    assert Counter(smtp_server.handler.counts().values()) == Counter({1: 600})


def test_a_dry_run_of_a_held_mailing_says_held_and_writes_nothing(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    edit(repo, hold={"reason": "Wait"})
    held = send(repo, smtp_server, dry_run=True)
    assert held.state is MailingState.HELD and "Wait" in held.note
    assert not (repo.root / "mailings" / MAILING / "sendlog.jsonl").exists()
    assert smtp_server.handler.recipients() == []


def test_the_brake_holds_without_a_pull_request(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    repo.add("2027-02-10-other", recipients=addresses(500, prefix="other"))
    outcomes = send_all(repo.root, repo.policy, options(smtp(smtp_server), hold=Brake(ids=frozenset({MAILING}))))
    states = {o.mailing_id: o.state for o in outcomes}
    assert states == {MAILING: MailingState.HELD, "2027-02-10-other": MailingState.SENT}
    assert not any(r.startswith("user") for r in smtp_server.handler.recipients())


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("all", "MAILINGS_HOLD=all: every mailing is held"),
        ("2027-02-10-travel, nonsense!", "is not `all` nor a mailing id; every mailing is held"),
    ],
)
def test_the_brake_from_the_environment_holds_everything_when_asked_or_garbled(
    repo: Repo, smtp_server: RunningServer, value: str, said: str
) -> None:
    repo.add()
    code, out = run(["send", "--root", str(repo.root), "--now", NOW], relay(smtp_server, MAILINGS_HOLD=value))
    assert said in out and f"{MAILING}: held" in out
    assert code == 0 and smtp_server.handler.recipients() == []


def test_a_brake_that_names_no_mailing_says_so(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    env = relay(smtp_server, MAILINGS_HOLD="2027-02-10-travle")
    code, out = run(["send", "--root", str(repo.root), "--now", NOW], env)
    assert "MAILINGS_HOLD names 2027-02-10-travle, but there is no mailing mailings/2027-02-10-travle" in out
    assert code == 0 and len(smtp_server.handler.recipients()) == 600


# --- cancel -----------------------------------------------------------------------------------------------------


def test_a_cancellation_is_final(repo: Repo, make_server: MakeServer) -> None:
    repo.add()
    server = make_server(FaultyHandler(Faults(temp_fail=dict.fromkeys(f"user{i}@kth.se" for i in range(300, 600)))))
    first = send(repo, server, tuning=_no_retries())
    assert first.accepted == 300 and first.pending == 300
    edit(repo, cancel={"reason": "The event was called off"})
    cancelled = send(repo, server, now="2027-02-10T09:20:00+01:00")
    assert cancelled.state is MailingState.CANCELLED and cancelled.changed and cancelled.acted
    # Said by the run that recorded it; later runs count it with the mailings there is nothing to do for.
    again = send(repo, server, now="2027-02-10T09:35:00+01:00")
    assert again.state is MailingState.CANCELLED and not again.changed and not again.acted
    edit(repo, cancel=None)  # the field gone: the send log still says it (and [immutable] refuses the removal)
    server.handler.faults = Faults()
    after = send(repo, server, now=LATER)
    assert after.state is MailingState.CANCELLED
    assert len(server.handler.recipients()) == 300


def _no_retries() -> Any:
    from sender.dispatch import Tuning

    return Tuning(retries=0, backoff=())


# --- resume -----------------------------------------------------------------------------------------------------


def test_resume_at_sends_the_remaining_recipients_of_a_missed_mailing_once(repo: Repo, make_server: MakeServer) -> None:
    repo.add(recipients=addresses(600))
    late = {f"user{i}@kth.se" for i in (5, 6)}

    class LateAnswers(FaultyHandler):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            import asyncio

            reply = await super().handle_DATA(server, session, envelope)
            if set(envelope.rcpt_tos) & late:
                await asyncio.sleep(1.0)
            return reply

    temp = dict.fromkeys(f"user{i}@kth.se" for i in range(400, 600))
    server = make_server(LateAnswers(Faults(temp_fail=temp)))
    changes = {"delivery": {"mode": "individual"}}
    edit(repo, **changes)
    first = send_all(repo.root, repo.policy, options(smtp(server, timeout=0.4), tuning=_no_retries()))[0]
    # The two late answers are unknown; a message pipelined behind one on its connection may be deferred too.
    assert first.unknown == 2 and first.accepted + first.pending == 598 and first.pending >= 200
    missed = send(repo, server, now="2027-02-12T10:00:00+01:00")
    assert missed.state is MailingState.MISSED
    server.handler.faults = Faults()
    edit(repo, resume_at="2027-02-15 09:00")
    waiting = send(repo, server, now="2027-02-15T08:00:00+01:00")
    assert waiting.state is MailingState.SCHEDULED and "resumes at 2027-02-15 09:00" in waiting.note
    resumed = send(repo, server, now="2027-02-15T09:05:00+01:00")
    assert resumed.state is MailingState.SENT and resumed.sent_now == first.pending
    counts = server.handler.counts()
    assert all(counts[f"user{i}@kth.se"] == 1 for i in range(600)), "a recipient was sent twice or not at all"
    assert log_of(repo).unknown  # the unknown were not sent again without resume_unknown


def test_resume_unknown_sends_the_unknown_recipients_too(repo: Repo, smtp_server: RunningServer) -> None:
    import json

    repo.add()
    path = repo.root / "mailings" / MAILING / "sendlog.jsonl"
    # A run that sent everyone but two, whose messages the relay never confirmed.
    from tests.sender.sending import hashed

    unknown = sorted(hashed("user1@kth.se", "user2@kth.se"))
    others = sorted(hashed(*(f"user{i}@kth.se" for i in range(600))) - set(unknown))
    from checks.loader import load_mailing
    from sender.plan import request_digest

    digest = request_digest(load_mailing(repo.root, repo.root / "mailings" / MAILING, repo.policy))
    lines = [
        {"event": "claim", "time": "2027-02-10T09:01:00.000+01:00", "run": "r1", "digest": digest},
        {
            "event": "start",
            "time": "2027-02-10T09:01:00.000+01:00",
            "run": "r1",
            "recipients": 600,
            "hash": "sha256-128",
        },
        {"event": "accepted", "time": "2027-02-10T09:02:00.000+01:00", "run": "r1", "batch": "b", "rcpt": others},
        {"event": "unknown", "time": "2027-02-10T09:02:00.000+01:00", "run": "r1", "batch": "c", "rcpt": unknown},
        {"event": "end", "time": "2027-02-10T09:03:00.000+01:00", "run": "r1", "complete": True},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert send(repo, smtp_server, now=LATER).state is MailingState.SENT  # complete: nothing more by itself
    edit(repo, resume_at="2027-02-11 09:00")
    assert send(repo, smtp_server, now="2027-02-11T09:05:00+01:00").state is MailingState.SENT
    assert smtp_server.handler.recipients() == []  # resume_at alone never sends the unknown again
    edit(repo, resume_unknown=True)
    resumed = send(repo, smtp_server, now="2027-02-11T09:10:00+01:00")
    assert resumed.state is MailingState.SENT and resumed.sent_now == 2 and not log_of(repo).unknown
    again = send(repo, smtp_server, now="2027-02-11T09:20:00+01:00")
    assert again.sent_now == 0
    assert sorted(smtp_server.handler.recipients()) == ["user1@kth.se", "user2@kth.se"]


# --- SIGTERM ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_with_the_brake_stops_within_a_batch_and_nothing_more_goes_until_released(
    repo: Repo, make_server: MakeServer, tmp_path: Path
) -> None:
    repo.add(recipients=addresses(3000), changes={"delivery": {"mode": "individual"}})
    server = make_server(FaultyHandler(Faults(delay=0.003)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILINGS_")}
    env.update(relay(server))
    command = [sys.executable, "-m", "checks.cli", "send", "--root", str(repo.root), "--now", NOW]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert server.handler.wait_for_recipients(200, timeout=60)
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 130, out
    assert time.monotonic() - signalled < 10
    assert "stopped by SIGTERM" in out
    received = server.handler.counts()
    log = log_of(repo)
    assert len(log.accepted) == len(received) < 3000  # every delivered message recorded; it stopped
    assert max(received.values()) == 1
    # The brake holds it: the next runs send nothing.
    for _ in range(2):
        code, out = run(["send", "--root", str(repo.root), "--now", LATER], relay(server, MAILINGS_HOLD=MAILING))
        assert f"{MAILING}: held" in out
    assert server.handler.counts() == received
    # Released: the rest, once.
    code, out = run(["send", "--root", str(repo.root), "--now", LATER], relay(server))
    assert code == 0, out
    assert Counter(server.handler.counts().values()) == Counter({1: 3000})


# --- [immutable] ------------------------------------------------------------------------------------------------


@pytest.fixture
def sent_branch(repo: Repo, plain_git: None) -> Repo:
    repo.add(files={"sendlog.jsonl": '{"event":"attempt","run":"r","rcpt":["x"]}\n'})
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "A sent mailing")
    git(repo.root, "switch", "--quiet", "--create", "steer")
    return repo


def immutable_lines(repo: Repo, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    from checks.cli import main

    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "--allow-empty", "-m", "change")
    args = ["check", "--root", str(repo.root), "--submitted", "2027-01-11", "--changed-since", "main"]
    code = main([*args, "--format", "text"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "[immutable]" in line]
    return code, lines


@pytest.mark.parametrize(
    "fields",
    [
        {"hold": {"reason": "Wait for the press release"}},
        {"cancel": {"reason": "Called off"}},
        {"resume_at": "2027-02-15 09:00", "resume_unknown": True},
    ],
)
def test_immutable_lets_a_sent_mailing_change_its_control_fields(
    sent_branch: Repo, capsys: pytest.CaptureFixture[str], fields: dict[str, Any]
) -> None:
    edit(sent_branch, **fields)
    assert immutable_lines(sent_branch, capsys)[1] == []


def test_immutable_refuses_any_other_change_with_the_control_fields(
    sent_branch: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(sent_branch, hold={"reason": "Wait"}, purpose="Another purpose")
    code, lines = immutable_lines(sent_branch, capsys)
    assert code == 1 and len(lines) == 1 and "mailing.yaml" in lines[0] and "was sent" in lines[0]


def test_immutable_refuses_removing_a_cancellation(sent_branch: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    edit(sent_branch, cancel={"reason": "Called off"})
    git(sent_branch.root, "add", "--all")
    git(sent_branch.root, "commit", "--quiet", "-m", "Cancel")
    git(sent_branch.root, "branch", "--force", "main", "HEAD")
    edit(sent_branch, cancel=None)
    code, lines = immutable_lines(sent_branch, capsys)
    assert code == 1 and any("removes `cancel`" in line for line in lines)


@pytest.mark.slow
def test_sigterm_during_a_push_run_records_on_the_remote_and_the_brake_holds_the_next_runs(
    repo: Repo, make_server: MakeServer, tmp_path: Path, plain_git: None
) -> None:
    from tests.sender.test_cli_send import _published

    repo.add(recipients=addresses(3000), changes={"delivery": {"mode": "individual"}})
    origin, clone = _published(tmp_path / "git", repo)
    server = make_server(FaultyHandler(Faults(delay=0.003)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILINGS_")}
    env.update(relay(server))
    command = [sys.executable, "-m", "checks.cli", "send", "--root", str(clone), "--now", NOW, "--push"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert server.handler.wait_for_recipients(200, timeout=60)
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 130 and time.monotonic() - signalled < 10, out
    received = server.handler.counts()
    on_main = git(origin, "show", f"main:mailings/{MAILING}/sendlog.jsonl").splitlines()
    import json

    accepted = {h for line in on_main for h in json.loads(line).get("rcpt", []) if '"accepted"' in line}
    assert len(accepted) == len(received) < 3000  # what went out is on the remote's main
    # Fresh checkouts, as the next scheduled runs: held by the variable, nothing goes; released, the rest once.
    for attempt in range(2):
        work = tmp_path / "git" / f"runner-{attempt}"
        git(tmp_path, "clone", "--quiet", str(origin), str(work))
        code, out = run(["send", "--root", str(work), "--now", LATER, "--push"], relay(server, MAILINGS_HOLD=MAILING))
        assert f"{MAILING}: held" in out, out
    assert server.handler.counts() == received
    work = tmp_path / "git" / "runner-released"
    git(tmp_path, "clone", "--quiet", str(origin), str(work))
    code, out = run(["send", "--root", str(work), "--now", LATER, "--push"], relay(server))
    assert code == 0, out
    assert Counter(server.handler.counts().values()) == Counter({1: 3000})

"""The relay's limits in policy.yaml: recipients per day (counted from the send logs, across mailings and runs)
and recipients per message. Against aiosmtpd, counting what the server received per recipient."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime

import pytest

from checks.errors import UsageError
from checks.loader import load_mailing
from checks.model import dispatched
from checks.policy import load_policy
from sender.journal import replay
from sender.quota import attempted_on
from sender.state import MailingState, decide
from tests.conftest import Repo, addresses
from tests.sender.sending import MAILING, events, log_of, log_path, recipients, send, set_sending
from tests.sender.smtpserver import RunningServer
from tests.sender.test_cli_send import relay, run

MakeServer = Callable[..., RunningServer]
OTHER = "2027-02-10-other"


def _received_once(server: RunningServer, addresses: list[str]) -> bool:
    return server.handler.counts() == Counter({a: 1 for a in addresses})


def test_a_mailing_larger_than_the_quota_continues_day_by_day_and_is_never_missed(
    repo: Repo, smtp_server: RunningServer
) -> None:
    set_sending(repo, recipients_per_day=250)
    repo.add()  # 600 recipients, send_at 2027-02-10 09:00, 24 hours of lateness
    [first] = send(repo, smtp_server, now="2027-02-10T09:05:00+01:00")
    assert first.ok and first.sent_now == 250 and len(smtp_server.handler.recipients()) == 250
    assert first.state is MailingState.SENDING
    assert first.note.startswith("quota reached: 250 of 600 sent, continues 2027-02-11 at 09:00 CET")
    # Later that day, and the next morning before 09:00: nothing, and not late.
    for now in ("2027-02-10T16:00:00+01:00", "2027-02-11T08:55:00+01:00"):
        [waiting] = send(repo, smtp_server, now=now)
        assert waiting.state is MailingState.SENDING and waiting.sent_now == 0 and waiting.ok
        assert waiting.note.startswith("quota reached: 250 of 600 sent, continues 2027-02-11")
    assert len(smtp_server.handler.recipients()) == 250
    # The next day, past send_at + 24 hours: the next 250.
    [second] = send(repo, smtp_server, now="2027-02-11T09:05:00+01:00")
    assert second.sent_now == 250 and second.note.startswith("quota reached: 500 of 600 sent, continues 2027-02-12")
    [third] = send(repo, smtp_server, now="2027-02-12T09:05:00+01:00")
    assert third.sent_now == 100 and third.state is MailingState.SENT and third.note == "complete"
    assert _received_once(smtp_server, recipients(600))  # nothing twice, nobody left out
    assert [e["continues"] for e in events(repo, "quota")] == ["2027-02-11T09:00:00+01:00", "2027-02-12T09:00:00+01:00"]


def test_the_days_count_comes_from_every_mailings_log(repo: Repo, smtp_server: RunningServer) -> None:
    set_sending(repo, recipients_per_day=600)
    repo.add()  # 600
    repo.add(OTHER, recipients=addresses(500, prefix="other"))
    # One run: the first mailing (by name: the other one) takes 500, this one the 100 left.
    outcomes = {o.mailing_id: o for o in send(repo, smtp_server, now="2027-02-10T09:05:00+01:00")}
    assert outcomes[OTHER].sent_now == 500 and outcomes[OTHER].state is MailingState.SENT
    assert outcomes[MAILING].sent_now == 100
    assert outcomes[MAILING].note.startswith("quota reached: 100 of 600 sent, continues 2027-02-11")
    # A new run the same day (a new process: nothing in memory) finds the day used up in the logs.
    repo.add("2027-02-10-third", recipients=addresses(500, prefix="third"))
    outcomes = {o.mailing_id: o for o in send(repo, smtp_server, now="2027-02-10T10:00:00+01:00")}
    third = outcomes["2027-02-10-third"]
    assert third.sent_now == 0 and third.ok and third.state is MailingState.DUE
    assert third.note.startswith("quota reached: 0 of 500 sent, continues 2027-02-11 at 09:00 CET")
    # It sent nothing: a quota event, and no claim, start or end that would make it look sent.
    assert [e["event"] for e in events(repo, "quota", "2027-02-10-third")] == ["quota"]
    assert all(not events(repo, kind, "2027-02-10-third") for kind in ("claim", "start", "end"))
    assert not dispatched(log_path(repo, "2027-02-10-third").read_bytes().splitlines())  # it may still be re-dated
    before = log_path(repo, "2027-02-10-third").read_bytes()
    send(repo, smtp_server, now="2027-02-10T10:15:00+01:00")
    assert log_path(repo, "2027-02-10-third").read_bytes() == before  # recorded once a day, not every run
    # The next day both go on, within that day's 600.
    outcomes = {o.mailing_id: o for o in send(repo, smtp_server, now="2027-02-11T09:05:00+01:00")}
    assert outcomes[MAILING].sent_now + outcomes["2027-02-10-third"].sent_now == 600
    outcomes = {o.mailing_id: o for o in send(repo, smtp_server, now="2027-02-12T09:05:00+01:00")}
    assert all(o.state is MailingState.SENT for o in outcomes.values())
    everyone = recipients(600) + recipients(500, "other") + recipients(500, "third")
    assert _received_once(smtp_server, everyone)
    noon = datetime.fromisoformat("2027-02-11T12:00:00+01:00")
    used = sum(attempted_on(log_path(repo, m), noon, repo.policy.timezone) for m in (MAILING, "2027-02-10-third"))
    assert used == 600


def test_a_paused_mailing_is_missed_when_no_run_comes_on_its_next_day(repo: Repo, smtp_server: RunningServer) -> None:
    set_sending(repo, recipients_per_day=250)
    repo.add()
    send(repo, smtp_server, now="2027-02-10T09:05:00+01:00")
    # The runner was down all of 2027-02-11: the lateness limit counts from the continuation.
    [late] = send(repo, smtp_server, now="2027-02-12T09:30:00+01:00")
    assert late.state is MailingState.MISSED and len(smtp_server.handler.recipients()) == 250


def test_status_says_the_quota_and_when_it_continues(repo: Repo, smtp_server: RunningServer) -> None:
    set_sending(repo, recipients_per_day=250)
    repo.add()
    send(repo, smtp_server, now="2027-02-10T09:05:00+01:00")
    mailing = load_mailing(repo.root, repo.root / "mailings" / MAILING, repo.policy)
    decision = decide(mailing, replay(log_path(repo)), datetime.fromisoformat("2027-02-10T12:00:00+01:00"), repo.policy)
    assert decision.state is MailingState.SENDING and not decision.actionable
    assert decision.reason.startswith("quota reached: 250 of 600 sent, continues 2027-02-11 at 09:00 CET")
    code, out = run(["status", "--root", str(repo.root), "--now", "2027-02-10T12:00:00+01:00"])
    assert code == 0 and "quota reached: 250 of 600 sent, continues 2027-02-11" in out


def test_a_dry_run_says_what_the_quota_leaves(repo: Repo, smtp_server: RunningServer) -> None:
    set_sending(repo, recipients_per_day=250)
    repo.add()
    code, out = run(
        ["send", "--root", str(repo.root), "--now", "2027-02-10T09:05:00+01:00", "--dry-run"], relay(smtp_server)
    )
    assert code == 0 and "would send 3 messages to 250 recipients" in out
    assert "leaves 250 today, so 350 continue on the next day" in out and smtp_server.handler.received == []


def test_the_recipients_per_message_cap_bounds_every_transaction(repo: Repo, smtp_server: RunningServer) -> None:
    set_sending(repo, batch_size=100, recipients_per_message=40)
    repo.add()
    [outcome] = send(repo, smtp_server)
    sizes = [len(entry.recipients) for entry in smtp_server.handler.received]
    assert outcome.state is MailingState.SENT and max(sizes) == 40 and len(sizes) == 15
    assert _received_once(smtp_server, recipients(600))
    assert events(repo, "start")[0]["batch_size"] == 40


def test_the_policy_takes_the_limits(repo: Repo) -> None:
    set_sending(repo, recipients_per_day=10000, recipients_per_message=500)
    policy = load_policy(repo.root)
    assert (policy.sending.recipients_per_day, policy.sending.recipients_per_message) == (10000, 500)
    set_sending(repo, recipients_per_day=0)
    with pytest.raises(UsageError, match=r"policy\.yaml:\d+:\d+: sending\.recipients_per_day\b"):
        load_policy(repo.root)


def test_retries_count_against_the_quota_as_the_relay_counts_them(repo: Repo, make_server: MakeServer) -> None:
    from tests.sender.smtpserver import Faults, FaultyHandler

    handler = FaultyHandler(Faults(temp_fail={"user3@kth.se": 1, "user7@kth.se": 1}))
    server = make_server(handler)
    set_sending(repo, recipients_per_day=100)
    repo.add(changes={"delivery": {"mode": "individual"}})
    [first] = send(repo, server, now="2027-02-10T09:05:00+01:00")
    # 100 recipients handed to the relay that day, the two retries among them: 98 people have it.
    assert sum(handler.rcpts.values()) == 100 and len(handler.recipients()) == 98
    assert first.note.startswith("quota reached: 98 of 600 sent, continues 2027-02-11")
    days = ["2027-02-11", "2027-02-12", "2027-02-13", "2027-02-14", "2027-02-15", "2027-02-16"]
    for day in days:
        before = sum(handler.rcpts.values())
        send(repo, server, now=f"{day}T09:05:00+01:00")
        assert sum(handler.rcpts.values()) - before <= 100
    assert _received_once(server, recipients(600)) and log_of(repo).complete


def test_the_command_counts_the_days_of_its_now_not_of_the_clock(repo: Repo, smtp_server: RunningServer) -> None:
    """`mailings send --now` stamps its events with the clock (today, not 2027): the quota still counts what the
    runs of --now's day attempted."""
    set_sending(repo, recipients_per_day=700)
    repo.add()
    repo.add(OTHER, recipients=addresses(500, prefix="other"))
    env = relay(smtp_server)
    code, out = run(["send", "--root", str(repo.root), "--now", "2027-02-10T09:05:00+01:00"], env)
    assert code == 0 and len(smtp_server.handler.recipients()) == 700
    assert "quota reached: 200 of 600 sent, continues 2027-02-11 at 09:00 CET" in out
    code, _ = run(["send", "--root", str(repo.root), "--now", "2027-02-10T10:00:00+01:00"], env)
    assert code == 0 and len(smtp_server.handler.recipients()) == 700
    code, _ = run(["send", "--root", str(repo.root), "--now", "2027-02-11T09:05:00+01:00"], env)
    assert code == 0 and _received_once(smtp_server, recipients(600) + recipients(500, "other"))

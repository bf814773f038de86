"""The send run against a recording SMTP server: who receives what, when, and what the send log says."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from checks.loader import load_mailing
from sender.dispatch import send_all
from sender.journal import Journal, Replay, make_hasher
from sender.pace import Lane, RateLimiter
from sender.plan import Recipient, batch_key, batches, plan
from sender.state import MailingState
from sender.verp import batch_token, recipient_token
from tests.conftest import BODIES, Repo, addresses
from tests.sender.sending import (
    MAILING,
    NOW,
    events,
    hashed,
    log_of,
    log_path,
    options,
    recipients,
    send,
    set_sending,
    smtp,
)
from tests.sender.smtpserver import RunningServer

MakeServer = Callable[..., RunningServer]


def test_bulk_sends_each_recipient_exactly_once_in_batches(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    [outcome] = send(repo, smtp_server)
    received = smtp_server.handler.received
    assert smtp_server.handler.counts() == Counter({a: 1 for a in recipients(600)})
    assert [len(r.recipients) for r in received] == [100] * 6
    assert outcome.state is MailingState.SENT and outcome.ok
    assert (outcome.accepted, outcome.failed, outcome.pending, outcome.sent_now) == (600, 0, 0, 600)
    messages = [email.message_from_bytes(r.data, policy=email.policy.default) for r in received]
    assert {m["To"] for m in messages} == {"All employees who book business travel:;"}
    assert len({m["Message-ID"] for m in messages}) == 6
    assert {m["X-Mailing-Id"] for m in messages} == {MAILING}
    # A return path per transaction in bulk mode: the mailing and a keyed token of the batch (its bounce names the
    # recipient in its report, and the token says among whom to look); no address in it.
    hasher = make_hasher(None)
    for entry in received:
        token = batch_token(hasher, MAILING, batch_key([hasher(a) for a in entry.recipients]))
        assert entry.mail_from == f"bounces+{MAILING}.{token}@kth.se"
    assert len({r.mail_from for r in received}) == 6


def test_a_second_run_sends_nothing(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    send(repo, smtp_server)
    [again] = send(repo, smtp_server)
    assert len(smtp_server.handler.recipients()) == 600
    assert again.state is MailingState.SENT and not again.acted and again.ok


def test_the_send_log_records_the_run_with_hashes_only(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    send(repo, smtp_server)
    log = log_of(repo)
    assert log.accepted == hashed(*recipients(600))
    assert (log.complete, log.runs, log.recipients, log.open_run) == (True, 1, 600, False)
    [start] = events(repo, "start")
    assert (start["mode"], start["recipients"], start["pending"], start["hash"]) == ("bulk", 600, 600, "sha256-128")
    assert len(events(repo, "attempt")) == len(events(repo, "accepted")) == 6
    [end] = events(repo, "end")
    assert (end["accepted"], end["failed"], end["pending"], end["complete"]) == (600, 0, 0, True)
    assert b"@kth.se" not in log_path(repo).read_bytes()


def test_individual_mode_sends_one_message_per_recipient_to_that_recipient(
    repo: Repo, smtp_server: RunningServer
) -> None:
    repo.add(changes={"delivery": {"mode": "individual"}})
    [outcome] = send(repo, smtp_server)
    received = smtp_server.handler.received
    assert len(received) == 600 and all(len(r.recipients) == 1 for r in received)
    assert smtp_server.handler.counts() == Counter({a: 1 for a in recipients(600)})
    for entry in received[:20]:
        message = email.message_from_bytes(entry.data, policy=email.policy.default)
        assert message["To"] == entry.recipients[0]
    assert outcome.state is MailingState.SENT and events(repo, "start")[0]["mode"] == "individual"
    # Each message has its own return path: the mailing and a keyed token of its recipient, never the address.
    hasher = make_hasher(None)
    for entry in received:
        token = recipient_token(hasher, MAILING, hasher(entry.recipients[0]))
        assert entry.mail_from == f"bounces+{MAILING}.{token}@kth.se"
    assert len({entry.mail_from for entry in received}) == 600


def test_individual_mode_writes_each_outcome_with_the_next_attempt(
    repo: Repo, smtp_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    write_lines = Journal.write_lines

    def counted(journal: Journal, data: bytes, count: int) -> int:
        writes.append(data)
        return write_lines(journal, data, count)

    monkeypatch.setattr(Journal, "write_lines", counted)
    repo.add(changes={"delivery": {"mode": "individual"}})
    [outcome] = send(repo, smtp_server)
    assert outcome.state is MailingState.SENT
    assert len(events(repo, "attempt")) == len(events(repo, "accepted")) == 600
    # About one write per message, not one per event: only the start, the end, and the first two attempts and
    # the last two outcomes of each of the 4 connections go alone.
    assert len(writes) <= 600 + 2 + 4 * 4
    assert sum(1 for data in writes if b'"accepted"' in data and b'"attempt"' in data) >= 600 - 2 * 4


def test_the_policy_sets_mode_batch_size_and_connections(repo: Repo, smtp_server: RunningServer) -> None:
    set_sending(repo, batch_size=50, connections=2)
    repo.add()
    send(repo, smtp_server)
    received = smtp_server.handler.received
    assert [len(r.recipients) for r in received] == [50] * 12
    assert {r.connection for r in received} <= {1, 2} and smtp_server.handler.connections == 2
    set_sending(repo, delivery="individual")
    repo.add("2027-02-10-second", recipients=addresses(500, prefix="other"))
    send(repo, smtp_server, only="2027-02-10-second")
    assert len(smtp_server.handler.received) == 12 + 500


def test_a_mailing_overrides_the_policys_mode(repo: Repo, smtp_server: RunningServer) -> None:
    set_sending(repo, delivery="individual")
    repo.add(changes={"delivery": {"mode": "bulk"}})
    send(repo, smtp_server)
    assert len(smtp_server.handler.received) == 6


def test_duplicates_across_lists_and_case_are_sent_once(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add(
        changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"file": "more.txt"}]}},
        files={"more.txt": "USER1@KTH.SE\nuser2@kth.se\nnew@kth.se\n"},
    )
    send(repo, smtp_server)
    counts = smtp_server.handler.counts()
    assert len(counts) == 601 and set(counts.values()) == {1}


def test_nothing_is_sent_before_send_at(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    [outcome] = send(repo, smtp_server, now="2027-02-10T08:59:59+01:00")
    assert smtp_server.handler.received == [] and smtp_server.handler.connections == 0
    assert outcome.state is MailingState.SCHEDULED and outcome.ok
    assert not log_path(repo).exists()
    [outcome] = send(repo, smtp_server, now="2027-02-10T09:00:00+01:00")
    assert len(smtp_server.handler.recipients()) == 600


def test_nothing_is_sent_after_the_lateness_limit_and_the_miss_is_recorded_once(
    repo: Repo, smtp_server: RunningServer
) -> None:
    repo.add()
    [outcome] = send(repo, smtp_server, now="2027-02-11T09:00:01+01:00")
    assert smtp_server.handler.received == [] and smtp_server.handler.connections == 0
    assert outcome.state is MailingState.MISSED and not outcome.ok
    assert "new send_at" in outcome.note and len(events(repo, "missed")) == 1
    [again] = send(repo, smtp_server, now="2027-02-12T09:00:00+01:00")
    assert again.state is MailingState.MISSED and again.ok and len(events(repo, "missed")) == 1


def test_at_the_lateness_limit_it_is_still_sent(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    send(repo, smtp_server, now="2027-02-11T09:00:00+01:00")
    assert len(smtp_server.handler.recipients()) == 600


def test_a_body_that_became_invalid_blocks_the_mailing_and_the_others_go_out(
    repo: Repo, smtp_server: RunningServer
) -> None:
    repo.add(bodies={**BODIES, "en": "Hello!\n\nRead <b>this</b> now.\n"})
    repo.add("2027-02-10-other", recipients=addresses(500, prefix="other"))
    outcomes = {o.mailing_id: o for o in send(repo, smtp_server)}
    assert set(smtp_server.handler.counts()) == set(recipients(500, prefix="other"))
    blocked = outcomes[MAILING]
    assert blocked.state is MailingState.BLOCKED and not blocked.ok
    assert "[plain-text]" in blocked.note and "body.en.txt" in blocked.note
    assert outcomes["2027-02-10-other"].state is MailingState.SENT
    [event] = events(repo, "blocked")
    assert event["reason"] == blocked.note
    assert log_of(repo).blocked == blocked.note


def test_the_same_block_is_logged_once_and_a_fix_is_sent_by_the_next_run(
    repo: Repo, smtp_server: RunningServer
) -> None:
    directory = repo.add(bodies={**BODIES, "en": "Hello!\n\nRead <b>this</b> now.\n"})
    send(repo, smtp_server)
    send(repo, smtp_server, now="2027-02-10T09:20:00+01:00")
    assert len(events(repo, "blocked")) == 1 and smtp_server.handler.received == []
    (directory / "body.en.txt").write_text(BODIES["en"], encoding="utf-8")
    [outcome] = send(repo, smtp_server, now="2027-02-10T09:35:00+01:00")
    assert outcome.state is MailingState.SENT and len(smtp_server.handler.recipients()) == 600


def test_lead_time_is_not_judged_at_send_time(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()  # submitted "today" (2027-02-10) it would fail lead-time; at send time that rule does not run
    [outcome] = send(repo, smtp_server)
    assert outcome.state is MailingState.SENT


def test_an_unresolvable_special_list_blocks_the_mailing(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add(changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"special": "all-employees"}]}})
    [outcome] = send(repo, smtp_server)
    assert smtp_server.handler.received == [] and smtp_server.handler.connections == 0
    assert outcome.state is MailingState.BLOCKED and "MAILINGS_LIST_ALL_EMPLOYEES" in outcome.note


def test_a_special_list_is_read_from_its_file(repo: Repo, smtp_server: RunningServer, tmp_path: Path) -> None:
    staff = tmp_path / "all-employees.txt"
    staff.write_text(addresses(300, prefix="staff") + "user0@kth.se\n", encoding="utf-8")
    repo.add(changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"special": "all-employees"}]}})
    [outcome] = send(repo, smtp_server, special={"all-employees": staff})
    expected = Counter({a: 1 for a in recipients(600) + recipients(300, prefix="staff")})
    assert smtp_server.handler.counts() == expected
    assert outcome.state is MailingState.SENT and outcome.total == 900


def test_only_restricts_the_run_to_one_mailing(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    repo.add("2027-02-10-other", recipients=addresses(500, prefix="other"))
    outcomes = send(repo, smtp_server, only="2027-02-10-other")
    assert [o.mailing_id for o in outcomes] == ["2027-02-10-other"]
    assert set(smtp_server.handler.counts()) == set(recipients(500, prefix="other"))


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        (
            RuntimeError("a bug"),
            "blocked: stopped by an internal error (RuntimeError: a bug); what was sent is in its log",
        ),
        (
            ConnectionResetError(104, "reset"),
            "blocked: stopped by an internal error (ConnectionResetError: [Errno 104] ",
        ),
    ],
)
def test_a_fault_in_one_mailing_is_its_outcome_and_the_others_still_go(
    repo: Repo, smtp_server: RunningServer, monkeypatch: pytest.MonkeyPatch, fault: Exception, said: str
) -> None:
    """A fault that escapes one mailing's handling (a bug; an OSError that is not the disk's) ends that mailing
    alone, blocked with what happened; the next mailing is sent. The disk's own faults: the full-disk test."""
    import sender.dispatch

    repo.add("2027-02-10-first", recipients=addresses(500, prefix="first"))
    repo.add()
    digest = sender.dispatch.request_digest

    def faulty(mailing: object) -> str:
        if getattr(mailing, "id", "") == "2027-02-10-first":
            raise fault
        return digest(mailing)  # type: ignore[arg-type]

    monkeypatch.setattr(sender.dispatch, "request_digest", faulty)
    first, travel = send(repo, smtp_server)
    assert (first.mailing_id, first.state, first.ok) == ("2027-02-10-first", MailingState.BLOCKED, False)
    assert f"{first.state.value}: {first.note}".startswith(said)
    assert travel.state is MailingState.SENT
    assert smtp_server.handler.counts() == Counter({a: 1 for a in recipients(600)})


def test_a_dry_run_sends_and_writes_nothing(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    repo.add("2027-02-10-broken", bodies={**BODIES, "en": "Read <b>this</b>.\n"})
    outcomes = {o.mailing_id: o for o in send(repo, smtp_server, dry_run=True)}
    assert smtp_server.handler.connections == 0
    assert not log_path(repo).exists() and not log_path(repo, "2027-02-10-broken").exists()
    assert outcomes[MAILING].note == "would send 6 messages to 600 recipients (bulk, 4 connections)"
    assert outcomes["2027-02-10-broken"].note.startswith("would be blocked: ")
    assert not outcomes["2027-02-10-broken"].ok


def test_a_locked_mailing_is_skipped_with_a_note(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    with Journal.open(log_path(repo)):  # another sender holds it
        [outcome] = send(repo, smtp_server)
    assert smtp_server.handler.connections == 0
    assert outcome.ok and "another `mailings send` is sending it now" in outcome.note


def test_a_changed_log_key_is_refused_instead_of_mailing_everybody_again(
    repo: Repo, smtp_server: RunningServer
) -> None:
    repo.add()
    keyed = make_hasher("first-key")
    with Journal.open(log_path(repo)) as journal:  # a run with the first key, killed after one batch
        journal.append(
            {"event": "start", "time": NOW, "recipients": 600, "hash": keyed.scheme, "key_check": keyed.key_check}
        )
        journal.append({"event": "accepted", "time": NOW, "rcpt": sorted(hashed(*recipients(100), key="first-key"))})
    [outcome] = send(repo, smtp_server, log_key="second-key")
    assert smtp_server.handler.connections == 0 and outcome.state is MailingState.BLOCKED
    assert "another MAILINGS_LOG_KEY" in outcome.note
    [resumed] = send(repo, smtp_server, log_key="first-key")
    assert resumed.state is MailingState.SENT
    assert set(smtp_server.handler.counts()) == set(recipients(600)[100:])


def test_an_interrupted_run_is_resumed_without_the_accepted_recipients(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    plain = make_hasher(None)
    done = recipients(600)[:250]
    with Journal.open(log_path(repo)) as journal:
        journal.append({"event": "start", "time": NOW, "recipients": 600, "hash": plain.scheme})
        journal.append({"event": "attempt", "time": NOW, "batch": "b", "rcpt": sorted(hashed(*recipients(600)[:300]))})
        journal.append({"event": "accepted", "time": NOW, "batch": "b", "rcpt": sorted(hashed(*done))})
    [outcome] = send(repo, smtp_server)
    assert set(smtp_server.handler.counts()) == set(recipients(600)[250:])
    assert outcome.state is MailingState.SENT and outcome.sent_now == 350 and outcome.accepted == 600


def test_the_maildir_outbox_receives_the_messages_when_no_relay_is_set(repo: Repo, tmp_path: Path) -> None:
    from sender.config import MaildirSettings

    repo.add()
    outbox = tmp_path / "outbox"
    [outcome] = send_all(repo.root, repo.policy, options(MaildirSettings(outbox)))
    files = list((outbox / "new").iterdir())
    assert outcome.state is MailingState.SENT and len(files) == 6
    envelope = [line for f in files for line in f.read_bytes().splitlines() if line.startswith(b"X-Envelope-To:")]
    assert len(envelope) == 600


def test_batches_keep_their_key_for_the_same_recipients(repo: Repo) -> None:
    directory = repo.add()
    mailing = load_mailing(repo.root, directory, repo.policy)
    hasher = make_hasher(None)
    people = [Recipient(a, hasher(a)) for a in recipients(250)]
    first = batches(mailing, repo.policy, people)
    assert [len(b.recipients) for b in first] == [100, 100, 50]
    again = batches(mailing, repo.policy, people[100:])
    assert [b.key for b in again] == [b.key for b in first[1:]]  # resuming after the first batch: same Message-IDs
    assert [b.key for b in first] == [batch_key([r.hash for r in b.recipients]) for b in first]


def test_a_bulk_first_run_hashes_each_batch_when_it_is_first_sent_into_the_same_batches(repo: Repo) -> None:
    directory = repo.add()
    mailing = load_mailing(repo.root, directory, repo.policy)
    hasher = make_hasher("a key")
    work = plan(mailing, repo.policy, hasher, Replay())
    assert work.total == 600 and [len(b) for b in work.todo] == [100] * 6
    assert all(b.recipients == [] and b.key == "" for b in work.todo)  # nothing hashed before the sending starts
    for batch in work.todo:
        batch.hash_recipients()
    eager = batches(mailing, repo.policy, [Recipient(a, hasher(a)) for a in recipients(600)])
    assert [(b.recipients, b.key) for b in work.todo] == [(b.recipients, b.key) for b in eager]


def test_individual_batches_hold_one_recipient_each_with_the_key_of_batch_key(repo: Repo) -> None:
    directory = repo.add(changes={"delivery": {"mode": "individual"}})
    mailing = load_mailing(repo.root, directory, repo.policy)
    hasher = make_hasher(None)
    people = [Recipient(a, hasher(a)) for a in recipients(30)]
    found = batches(mailing, repo.policy, people)
    assert [b.recipients for b in found] == [[r] for r in people]
    assert [b.key for b in found] == [batch_key([r.hash]) for r in people]
    assert len({b.key for b in found}) == 30


def test_the_rate_limit_spaces_messages_over_all_connections() -> None:
    now = [100.0]
    limiter = RateLimiter(4.0, lambda: now[0])
    assert [limiter.reserve() for _ in range(4)] == [0.0, 0.25, 0.5, 0.75]
    now[0] = 102.0  # idle for a while: no burst beyond the rate afterwards either
    assert [limiter.reserve() for _ in range(2)] == [0.0, 0.25]
    assert RateLimiter(None, lambda: 0.0).reserve() == 0.0


def test_sending_without_pipelining_works_the_same(repo: Repo, make_server: MakeServer) -> None:
    server = make_server(pipelining=False)
    repo.add()
    [outcome] = send(repo, server)
    assert outcome.state is MailingState.SENT
    assert server.handler.counts() == Counter({a: 1 for a in recipients(600)})


def test_the_events_carry_the_wallclock_time(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    moment = datetime.fromisoformat("2027-02-10T09:05:30+01:00")
    send_all(repo.root, repo.policy, options(smtp(smtp_server), wallclock=lambda: moment))
    assert {e["time"] for e in events(repo, "end")} == {"2027-02-10T09:05:30.000+01:00"}


def test_a_lane_waits_for_an_fsync_before_each_batch_but_shares_one_over_single_recipients(tmp_path: Path) -> None:
    async def bulk(journal: Journal) -> list[bool]:
        lane, durable = Lane(journal, window=100), []
        for n in range(3):  # attempt, transaction, outcome: three batches of 100
            ticket = journal.write_nowait({"event": "attempt", "batch": str(n)})
            await lane.before(ticket, 100)
            durable.append(journal.synced >= ticket)
            lane.add(journal.write_nowait({"event": "accepted", "batch": str(n)}), 100)
        return durable

    async def individual(journal: Journal) -> int:
        lane = Lane(journal, window=100)
        for n in range(300):
            ticket = journal.write_nowait({"event": "attempt", "batch": str(n)})
            await lane.before(ticket, 1)
            lane.add(journal.write_nowait({"event": "accepted", "batch": str(n)}), 1)
            assert lane.count < 100  # never a batch's worth of recipients waiting for the disk
        await journal.sync()
        return journal.syncs

    with Journal.open(tmp_path / "bulk.jsonl") as journal:
        assert asyncio.run(bulk(journal)) == [True, True, True]
    with Journal.open(tmp_path / "individual.jsonl") as journal:
        assert 3 <= asyncio.run(individual(journal)) <= 20


def test_a_symlinked_request_or_log_is_not_sent_and_nothing_is_written_through_it(
    repo: Repo, smtp_server: RunningServer, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    repo.add()
    log_path(repo).symlink_to(elsewhere / "target.jsonl")
    [outcome] = send(repo, smtp_server)
    assert outcome.state is MailingState.BLOCKED and not outcome.ok and "symbolic link" in outcome.note
    assert smtp_server.handler.connections == 0 and not (elsewhere / "target.jsonl").exists()


def test_a_special_list_behind_a_link_is_read(repo: Repo, smtp_server: RunningServer, tmp_path: Path) -> None:
    # The environment names IT's own file; a deployment may point at it through a link.
    staff = tmp_path / "all-employees.txt"
    staff.write_text(addresses(300, prefix="staff"), encoding="utf-8")
    link = tmp_path / "current.txt"
    link.symlink_to(staff)
    repo.add(changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"special": "all-employees"}]}})
    [outcome] = send(repo, smtp_server, special={"all-employees": link})
    assert outcome.state is MailingState.SENT
    assert smtp_server.handler.counts() == Counter({a: 1 for a in recipients(600) + recipients(300, prefix="staff")})


def test_an_unreadable_special_list_blocks_the_mailing_rather_than_dropping_it(
    repo: Repo, smtp_server: RunningServer, tmp_path: Path
) -> None:
    (tmp_path / "a-directory").mkdir()
    repo.add(changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"special": "all-employees"}]}})
    [outcome] = send(repo, smtp_server, special={"all-employees": tmp_path / "a-directory"})
    assert smtp_server.handler.received == []
    assert outcome.state is MailingState.BLOCKED and "all-employees cannot be read" in outcome.note


class _Recorded:
    """A Progress that keeps every update."""

    def __init__(self) -> None:
        self.updates: list[tuple[int, int, int]] = []
        self.finished = 0

    def begin(self, mailing_id: str, total: int) -> _Recorded:
        return self

    def update(self, accepted: int, failed: int, pending: int) -> None:
        self.updates.append((accepted, failed, pending))

    def finish(self) -> None:
        self.finished += 1


def test_progress_gets_the_counts_at_the_start_the_end_and_between_at_most_every_so_often(
    repo: Repo, smtp_server: RunningServer
) -> None:
    ticks = iter(range(1_000_000))
    recorded = _Recorded()
    repo.add(changes={"delivery": {"mode": "individual"}})
    # A clock that moves 10 ms each time it is read: the display may get counts every 5 reads or so.
    settings = options(smtp(smtp_server), monotonic=lambda: next(ticks) / 100)
    [outcome] = send_all(repo.root, repo.policy, settings, recorded)
    assert outcome.sent_now == 600 and recorded.finished == 1
    assert recorded.updates[0] == (0, 0, 600) and recorded.updates[-1] == (600, 0, 0)
    assert 3 <= len(recorded.updates) < 600  # not once per message

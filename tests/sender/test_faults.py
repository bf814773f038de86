"""Faults of the relay, counted at the server: retries by reply code, permanent failures, lost connections, stops."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from sender.config import SmtpSettings
from sender.dispatch import Tuning, send_all
from sender.journal import replay
from sender.state import MailingState
from tests.conftest import Repo
from tests.sender.sending import events, hashed, log_of, log_path, options, recipients, send, set_sending, smtp
from tests.sender.smtpserver import Faults, FaultyHandler, RunningServer, credentials

MakeServer = Callable[..., RunningServer]
pytestmark = pytest.mark.usefixtures("loop_choice")  # every fault on each event loop
EVERYONE = recipients(600)


def _faulty(make_server: MakeServer, **faults: object) -> tuple[RunningServer, FaultyHandler]:
    handler = FaultyHandler(Faults(**faults))  # type: ignore[arg-type]
    return make_server(handler), handler


def _once_each(handler: FaultyHandler, addresses: list[str]) -> bool:
    return handler.counts() == Counter({a: 1 for a in addresses})


def test_451_recipients_are_delivered_on_retry_exactly_once(repo: Repo, make_server: MakeServer) -> None:
    throttled = ["user3@kth.se", "user150@kth.se", "user599@kth.se"]
    server, handler = _faulty(make_server, temp_fail={a: 2 for a in throttled})
    repo.add()
    [outcome] = send(repo, server)
    assert _once_each(handler, EVERYONE)
    assert all(handler.rcpts[a] == 3 for a in throttled)  # refused twice, accepted the third time
    assert outcome.state is MailingState.SENT and outcome.ok


def test_4xx_that_persists_is_deferred_after_bounded_retries_and_tried_by_the_next_run(
    repo: Repo, make_server: MakeServer
) -> None:
    server, handler = _faulty(make_server, temp_fail={"user7@kth.se": None})
    repo.add()
    [outcome] = send(repo, server)
    assert handler.rcpts["user7@kth.se"] == 4  # the first try and 3 retries
    assert _once_each(handler, [a for a in EVERYONE if a != "user7@kth.se"])
    assert outcome.state is MailingState.DUE and outcome.pending == 1 and outcome.ok
    [deferred] = events(repo, "deferred")
    assert deferred["code"] == 451 and deferred["rcpt"] == sorted(hashed("user7@kth.se"))
    handler.faults.temp_fail = {}
    handler._temp = {}  # the relay has recovered by the next scheduled run
    [again] = send(repo, server, now="2027-02-10T09:20:00+01:00")
    assert _once_each(handler, EVERYONE) and again.state is MailingState.SENT


def test_550_recipients_are_recorded_as_failed_and_never_retried(repo: Repo, make_server: MakeServer) -> None:
    unknown = ["user10@kth.se", "user11@kth.se", "user420@kth.se"]
    server, handler = _faulty(make_server, perm_fail=unknown)
    repo.add()
    [outcome] = send(repo, server)
    assert _once_each(handler, [a for a in EVERYONE if a not in unknown])
    assert all(handler.rcpts[a] == 1 for a in unknown)
    assert outcome.state is MailingState.SENT_WITH_FAILURES and outcome.ok
    assert outcome.failures == Counter({550: 3}) and outcome.failed == 3
    log = log_of(repo)
    assert set(log.failed) == hashed(*unknown) and {f.code for f in log.failed.values()} == {550}
    assert all("<address>" in f.message and "@" not in f.message for f in log.failed.values())
    send(repo, server, now="2027-02-10T09:20:00+01:00")
    assert all(handler.rcpts[a] == 1 for a in unknown)


def test_550_in_individual_mode_fails_that_recipient_alone(repo: Repo, make_server: MakeServer) -> None:
    server, handler = _faulty(make_server, perm_fail=["user0@kth.se", "user1@kth.se"])
    repo.add(changes={"delivery": {"mode": "individual"}})
    [outcome] = send(repo, server)
    assert _once_each(handler, EVERYONE[2:])
    assert outcome.state is MailingState.SENT_WITH_FAILURES and outcome.failed == 2


def test_421_and_dropped_connections_mid_run_deliver_everyone_exactly_once(repo: Repo, make_server: MakeServer) -> None:
    # Every drop comes before a message's content went out: nothing was delivered, so all of it goes again.
    server, handler = _faulty(
        make_server,
        mail_replies={2: "421 4.3.2 Service shutting down", 5: "421 4.7.0 Too many messages"},
        drop_at_mail=[3],
        drop_before_354=[6],
    )
    set_sending(repo, batch_size=50)
    repo.add()
    [outcome] = send(repo, server)
    assert _once_each(handler, EVERYONE)
    assert outcome.state is MailingState.SENT and outcome.unknown == 0
    assert handler.connections > 4  # it reconnected


@pytest.mark.parametrize("mode", ["bulk", "individual"])
@pytest.mark.parametrize("taken", [True, False], ids=["relay-took-it", "relay-did-not"])
def test_a_connection_lost_after_the_final_dot_leaves_its_recipients_unknown_and_never_sends_twice(
    repo: Repo, make_server: MakeServer, mode: str, taken: bool
) -> None:
    # RFC 1047: no reply to the end of the message. The relay may have the message (here: it took it, or it did
    # not); the sender cannot tell, so it records the recipients as unknown and never sends it to them again.
    faults = {"drop_after_data": [3, 5]} if taken else {"drop_at_data": [3, 5]}
    server, handler = _faulty(make_server, **faults)
    repo.add(changes={"delivery": {"mode": mode}})
    [outcome] = send(repo, server)
    counts = handler.counts()
    assert set(counts.values()) == {1}  # nobody got two copies
    log = log_of(repo)
    if taken:
        uncertain = {a for k in (3, 5) for a in handler.received[k - 1].recipients}  # recorded in arrival order
        assert set(counts) == set(EVERYONE)
    else:
        uncertain = set(EVERYONE) - set(counts)
    assert uncertain and log.unknown == hashed(*uncertain)
    assert outcome.unknown == len(uncertain) and len(log.accepted) == len(EVERYONE) - len(uncertain)
    assert outcome.state is MailingState.SENT and outcome.pending == 0
    # The next scheduled run does not send them again either.
    send(repo, server, now="2027-02-10T09:20:00+01:00")
    assert handler.counts() == counts


def test_slow_replies_still_deliver_everyone_once(repo: Repo, make_server: MakeServer) -> None:
    server, handler = _faulty(make_server, delay=0.005)
    set_sending(repo, batch_size=25)
    repo.add()
    [outcome] = send(repo, server)
    assert _once_each(handler, EVERYONE) and outcome.state is MailingState.SENT


def test_an_authentication_failure_stops_after_one_attempt(repo: Repo, make_server: MakeServer) -> None:
    handler = FaultyHandler()
    server = make_server(
        handler, auth_required=True, auth_require_tls=False, authenticator=credentials("mailer", "right-password")
    )
    repo.add()
    repo.add("2027-02-10-other", recipients="".join(f"other{i}@kth.se\n" for i in range(500)))
    settings = smtp(server, username="mailer", password="wrong-password")
    outcomes = send_all(repo.root, repo.policy, options(settings))
    # One login in the run: the relay refused it, and the other mailing does not try again (nor connect).
    assert handler.connections == 1 and handler.mails == 0
    for outcome in outcomes:
        assert not outcome.ok and "MAILINGS_SMTP_PASSWORD" in outcome.note
        assert "535 5.7.8 Authentication credentials invalid" in outcome.note
        assert "wrong-password" not in outcome.note
    assert log_of(repo).accepted == set() and log_of(repo).failed == {}
    # The first mailing (in name order) tried and recorded its outage; nothing is written for the one never tried.
    assert [log_path(repo, m).exists() for m in ("2027-02-10-other", "2027-02-10-travel")] == [True, False]


def test_a_relay_that_cannot_be_reached_stops_the_mailing(repo: Repo) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    repo.add()
    settings = SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=10.0)
    [outcome] = send_all(repo.root, repo.policy, options(settings))
    assert not outcome.ok and "cannot open a session with the relay: 421" in outcome.note
    assert outcome.state is MailingState.DUE and outcome.pending == 600


def test_a_relay_that_refuses_mail_from_stops_after_the_first_transactions(repo: Repo, make_server: MakeServer) -> None:
    server, handler = _faulty(make_server, refuse_mail="554 5.7.1 Relay access denied")
    repo.add()
    [outcome] = send(repo, server)
    assert handler.mails <= 4 and handler.received == []
    assert not outcome.ok and "554 5.7.1 Relay access denied" in outcome.note
    assert log_of(repo).failed == {} and outcome.pending == 600


def test_a_relay_that_refuses_every_recipient_stops_and_records_no_failure(repo: Repo, make_server: MakeServer) -> None:
    server, handler = _faulty(make_server, refuse_rcpt="550 5.7.1 Relaying denied")
    repo.add(changes={"delivery": {"mode": "individual"}})
    [outcome] = send(repo, server)
    assert sum(handler.rcpts.values()) <= 20 + 4  # the probe, plus what was in flight on the other connections
    assert not outcome.ok and "refused every recipient" in outcome.note
    assert log_of(repo).failed == {} and outcome.pending == 600


def test_4xx_on_every_transaction_stops_after_a_bounded_number(repo: Repo, make_server: MakeServer) -> None:
    server, handler = _faulty(make_server, mail_replies={k: "451 4.3.0 Try again later" for k in range(1, 5000)})
    repo.add()
    [outcome] = send(repo, server, tuning=Tuning(backoff=(0.0,), max_consecutive_failures=10))
    assert handler.mails <= 10 + 4
    assert not outcome.ok and "failed 10 transactions in a row" in outcome.note
    assert outcome.pending == 600 and log_of(repo).failed == {}  # the next scheduled run tries again


class LogWatcher(FaultyHandler):
    """Reads the send log each time a message's content arrives: the message's recipients must be recorded as
    attempted, with no outcome yet, and every message delivered before on the same connection as accepted.
    That is what makes a kill at any moment duplicate at most the messages in flight, one per connection."""

    def __init__(self, log: Path, faults: Faults) -> None:
        super().__init__(faults)
        self.log = log
        self.delivered: dict[int, set[str]] = {}
        self.problems: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        now = replay(self.log)
        arriving = hashed(*envelope.rcpt_tos)
        earlier = self.delivered.setdefault(getattr(server, "number", 0), set())
        if not arriving <= now.in_flight or arriving & now.accepted:
            self.problems.append(f"{envelope.rcpt_tos} arrived without an attempt in the log, or after its outcome")
        if not earlier <= now.accepted:
            self.problems.append(f"{envelope.rcpt_tos} arrived before the outcome of the message before it")
        reply = await super().handle_DATA(server, session, envelope)
        if reply.startswith("250"):
            earlier.update(arriving)
        return reply


def test_faults_amid_pipelined_single_messages_deliver_everyone_once_and_the_log_keeps_step(
    repo: Repo, make_server: MakeServer
) -> None:
    repo.add(changes={"delivery": {"mode": "individual"}})
    unknown = ["user10@kth.se", "user300@kth.se"]
    handler = LogWatcher(
        log_path(repo),
        Faults(
            temp_fail={"user20@kth.se": 1, "user21@kth.se": 2},
            perm_fail=unknown,
            mail_replies={50: "421 4.7.0 Too many messages, closing"},
            drop_at_mail=[120],
            drop_before_354=[200],
            drop_after_data=[300],
            data_replies={250: "451 4.3.0 Try again later", 260: "452 4.3.1 Insufficient system storage"},
        ),
    )
    server = make_server(handler)
    [outcome] = send(repo, server)
    assert handler.problems == []
    assert _once_each(handler, [a for a in EVERYONE if a not in unknown])
    assert handler.connections > 4  # it reconnected
    assert outcome.state is MailingState.SENT_WITH_FAILURES and outcome.failed == 2
    log = log_of(repo)
    # The message whose final reply was lost (the relay took it) is unknown, and was not sent again.
    [uncertain] = [a for a in EVERYONE if hashed(a) <= log.unknown]
    assert log.unknown == hashed(uncertain) and outcome.unknown == 1 and handler.count(uncertain) == 1
    assert log.complete and len(log.accepted) == 597 and set(log.failed) == hashed(*unknown)

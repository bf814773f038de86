"""The transports against a real SMTP server in-process (aiosmtpd on 127.0.0.1), and a real Maildir."""

from __future__ import annotations

import asyncio
import email
import email.policy
import mailbox
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from checks.errors import UsageError
from sender import eventloop
from sender.config import MaildirSettings, SmtpSettings
from sender.transport import (
    MaildirTransport,
    Reply,
    SmtpTransport,
    TransactionResult,
    transport_factory,
)
from tests.sender import sending
from tests.sender.smtpserver import Faults, FaultyHandler, Recorder, RunningServer, TlsFiles, credentials

T = TypeVar("T")
SENDER = "noreply@kth.se"
MESSAGE = b"From: KTH IT <noreply@kth.se>\r\nSubject: Test\r\n\r\nHello!\r\n"
MakeServer = Callable[..., RunningServer]


pytestmark = pytest.mark.usefixtures("loop_choice")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return eventloop.run(coro, sending.LOOP)


def settings(server: RunningServer, **changes: Any) -> SmtpSettings:
    values: dict[str, Any] = {"host": server.host, "port": server.port, "security": "none", "timeout": 5.0}
    return SmtpSettings(**{**values, **changes})


async def session(transport: SmtpTransport, *transactions: tuple[list[str], bytes]) -> list[TransactionResult]:
    """Send each (recipients, message) over *transport* in turn, then close it."""
    try:
        return [await transport.send(SENDER, recipients, data) for recipients, data in transactions]
    finally:
        await transport.close()


def send(server: RunningServer, *transactions: tuple[list[str], bytes], **changes: Any) -> list[TransactionResult]:
    return run(session(SmtpTransport(settings(server, **changes)), *transactions))


def people(count: int, prefix: str = "user") -> list[str]:
    return [f"{prefix}{i}@kth.se" for i in range(count)]


# Pipelined and plain: the same outcome


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "plain"])
def test_accepted_and_refused_per_recipient(make_server: MakeServer, pipelining: bool) -> None:
    handler = FaultyHandler(Faults(temp_fail={"user1@kth.se": None}, perm_fail=["user2@kth.se"]))
    server = make_server(handler, pipelining=pipelining)
    transport = SmtpTransport(settings(server))
    [result] = run(session(transport, (people(4), MESSAGE)))
    assert result.error is None
    assert result.accepted == ["user0@kth.se", "user3@kth.se"]
    assert {r: reply.code for r, reply in result.refused.items()} == {"user1@kth.se": 451, "user2@kth.se": 550}
    assert "User unknown" in result.refused["user2@kth.se"].message
    assert handler.counts() == {"user0@kth.se": 1, "user3@kth.se": 1}
    assert [r.data for r in handler.received] == [MESSAGE]


def test_pipelined_and_plain_servers_receive_exactly_the_same(make_server: MakeServer) -> None:
    outcomes = []
    for pipelining in (True, False):
        faults = Faults(temp_fail={"user7@kth.se": 1}, perm_fail=["user3@kth.se", "user150@kth.se"])
        handler = FaultyHandler(faults)
        server = make_server(handler, pipelining=pipelining)
        transport = SmtpTransport(settings(server))
        batches = [(people(250)[i : i + 100], MESSAGE) for i in range(0, 250, 100)] + [(["user7@kth.se"], MESSAGE)]
        results = run(session(transport, *batches))
        assert transport.connections == 1
        outcomes.append(
            (
                [(r.accepted, {a: x.code for a, x in r.refused.items()}, r.error) for r in results],
                sorted(handler.recipients()),
                [e.recipients for e in handler.received],
            )
        )
    assert outcomes[0] == outcomes[1]
    recipients = outcomes[0][1]
    assert len(recipients) == len(set(recipients)) == 248  # 250, less the two refused for good
    assert recipients.count("user7@kth.se") == 1  # refused with 451 first, accepted when sent again


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "plain"])
def test_the_transport_pipelines_only_where_offered(make_server: MakeServer, pipelining: bool) -> None:
    transport = SmtpTransport(settings(make_server(pipelining=pipelining)))

    async def check() -> bool:
        assert await transport.open() is None
        offered = transport.pipelining
        await transport.close()
        return offered

    assert run(check()) is pipelining


def test_dots_and_line_endings_are_transparent(smtp_server: RunningServer) -> None:
    lines = b"Subject: dots\r\n\r\n.\r\n..two\r\n.starts with a dot\r\nlast line without CRLF"
    bare = b"Subject: bare\n\nline one\nline two\n"
    [first, second] = send(smtp_server, (["a@kth.se"], lines), (["b@kth.se"], bare))
    assert first.accepted == ["a@kth.se"] and second.accepted == ["b@kth.se"]
    received = [r.data for r in smtp_server.handler.received]
    assert received == [lines + b"\r\n", bare.replace(b"\n", b"\r\n")]


def test_recipients_that_cannot_go_into_an_envelope_are_refused_locally(smtp_server: RunningServer) -> None:
    [result] = send(smtp_server, (["åsa@kth.se", "user@ångström.se", "a@kth.se>\r\nRSET"], MESSAGE))
    assert result.accepted == ["user@ångström.se"]
    assert {r: reply.code for r, reply in result.refused.items()} == {"åsa@kth.se": 553, "a@kth.se>\r\nRSET": 553}
    assert smtp_server.handler.recipients() == ["user@xn--ngstrm-hua5l.se"]


# Whole transactions refused


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "plain"])
def test_every_recipient_refused_is_an_error_and_the_connection_goes_on(
    make_server: MakeServer, pipelining: bool
) -> None:
    handler = FaultyHandler(Faults(perm_fail=["user0@kth.se", "user1@kth.se"]))
    server = make_server(handler, pipelining=pipelining)
    transport = SmtpTransport(settings(server))
    refused, after = run(session(transport, (people(2), MESSAGE), (["ok@kth.se"], MESSAGE)))
    assert refused.accepted == [] and refused.error is not None and refused.error.code == 550
    assert set(refused.refused) == {"user0@kth.se", "user1@kth.se"}
    assert after == TransactionResult(accepted=["ok@kth.se"])  # RSET kept client and server in step
    assert handler.recipients() == ["ok@kth.se"] and handler.connections == 1


def test_a_temporary_refusal_makes_the_all_refused_error_temporary(make_server: MakeServer) -> None:
    handler = FaultyHandler(Faults(temp_fail={"user0@kth.se": None}, perm_fail=["user1@kth.se"]))
    [result] = send(make_server(handler), (people(2), MESSAGE))
    assert result.error is not None and result.error.code == 451


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "plain"])
@pytest.mark.parametrize(
    ("faults", "code"),
    [
        (Faults(refuse_mail="554 5.7.1 Relay access denied"), 554),
        (Faults(refuse_mail="452 4.3.1 Insufficient system storage"), 452),
        (Faults(refuse_rcpt="550 5.7.1 Recipient rejected by policy"), 550),
        (Faults(data_replies={1: "554 5.6.0 Message content rejected"}), 554),
        (Faults(data_replies={1: "451 4.3.0 Try again later"}), 451),
    ],
    ids=["mail-5xx", "mail-4xx", "rcpt-5xx", "data-5xx", "data-4xx"],
)
def test_transaction_errors_carry_the_server_code(
    make_server: MakeServer, pipelining: bool, faults: Faults, code: int
) -> None:
    handler = FaultyHandler(faults)
    [result] = send(make_server(handler, pipelining=pipelining), (people(3), MESSAGE))
    assert result.accepted == []
    assert result.error is not None and result.error.code == code
    assert handler.received == []


def test_after_a_refused_data_the_next_transaction_is_delivered(make_server: MakeServer) -> None:
    handler = FaultyHandler(Faults(data_replies={1: "554 5.6.0 Message content rejected"}))
    first, second = send(make_server(handler), (["a@kth.se"], MESSAGE), (["b@kth.se"], MESSAGE))
    assert first.error == Reply(554, "5.6.0 Message content rejected")
    assert second == TransactionResult(accepted=["b@kth.se"])
    assert handler.recipients() == ["b@kth.se"] and handler.connections == 1


# Lost connections


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "plain"])
@pytest.mark.parametrize(
    ("faults", "unknown"),
    [
        (Faults(data_replies={2: "421 4.3.2 Service shutting down"}), False),
        (Faults(mail_replies={2: "421 4.7.0 Too many messages, closing"}), False),
        (Faults(drop_before_354=[2]), False),
        (Faults(drop_at_data=[2]), True),
    ],
    ids=["421-at-data", "421-at-mail", "dropped-before-354", "dropped-at-data"],
)
def test_a_lost_connection_is_421_and_the_next_send_reconnects(
    make_server: MakeServer, pipelining: bool, faults: Faults, unknown: bool
) -> None:
    handler = FaultyHandler(faults)
    server = make_server(handler, pipelining=pipelining)
    transport = SmtpTransport(settings(server))
    first, lost, again = run(
        session(transport, (["a@kth.se"], MESSAGE), (["b@kth.se", "c@kth.se"], MESSAGE), (["b@kth.se"], MESSAGE))
    )
    assert first.accepted == ["a@kth.se"]
    assert lost.accepted == [] and lost.error is not None and lost.error.code == 421
    # Dropped after the content and its dot went out, unanswered: the server could have taken it (here it did not).
    assert lost.unknown is unknown
    assert again == TransactionResult(accepted=["b@kth.se"])
    assert transport.connections == 2 and handler.connections == 2
    assert handler.counts() == {"a@kth.se": 1, "b@kth.se": 1}


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "plain"])
def test_a_connection_dropped_at_mail_from_goes_on_a_new_one(make_server: MakeServer, pipelining: bool) -> None:
    # No reply at all to the first commands: nothing was delivered, and a connection closed by the relay while
    # idle looks just like this, so the transaction goes once more on a new connection.
    handler = FaultyHandler(Faults(drop_at_mail=[2]))
    transport = SmtpTransport(settings(make_server(handler, pipelining=pipelining)))
    first, second = run(session(transport, (["a@kth.se"], MESSAGE), (["b@kth.se", "c@kth.se"], MESSAGE)))
    assert first == TransactionResult(accepted=["a@kth.se"])
    assert second == TransactionResult(accepted=["b@kth.se", "c@kth.se"])
    assert transport.connections == 2 and handler.mails == 3
    assert handler.counts() == {"a@kth.se": 1, "b@kth.se": 1, "c@kth.se": 1}


def test_a_dropped_connection_says_so(make_server: MakeServer) -> None:
    handler = FaultyHandler(Faults(drop_before_354=[2], drop_at_data=[2]))  # the 2nd message that arrives
    [_, before, after] = send(
        make_server(handler), (["a@kth.se"], MESSAGE), (["b@kth.se"], MESSAGE), (["c@kth.se"], MESSAGE)
    )
    assert before.error is not None and before.error.message.startswith("4.4.2 connection lost: ")
    assert after.error is not None and after.error.message.startswith("4.4.2 no reply to the end of the message: ")


def test_a_server_421_keeps_its_text(make_server: MakeServer) -> None:
    [lost] = send(
        make_server(FaultyHandler(Faults(data_replies={1: "421 4.3.2 Service shutting down"}))), (["a@kth.se"], MESSAGE)
    )
    assert lost.error == Reply(421, "4.3.2 Service shutting down")


def test_a_reply_lost_after_acceptance_is_unknown(make_server: MakeServer) -> None:
    # The server took the message, but the client cannot know: RFC 1047's duplicate case, reported as unknown
    # (with a 421 error, for callers that look only at that), never as delivered or as safe to send again.
    handler = FaultyHandler(Faults(drop_after_data=[1]))
    [lost] = send(make_server(handler), (["a@kth.se"], MESSAGE))
    assert lost.error is not None and lost.error.code == 421 and lost.unknown is True and lost.accepted == []
    assert handler.counts() == {"a@kth.se": 1}


def test_slow_replies_within_the_timeout_are_waited_for(make_server: MakeServer) -> None:
    handler = FaultyHandler(Faults(delay=0.02))
    [result] = send(make_server(handler), (people(5), MESSAGE))
    assert result.accepted == people(5)


def test_no_reply_within_the_timeout_is_421(make_server: MakeServer) -> None:
    handler = FaultyHandler(Faults(delay=1.0))
    [result] = send(make_server(handler), (["a@kth.se"], MESSAGE), timeout=0.1)
    assert result.error is not None and result.error.code == 421 and result.unknown is False  # silent at MAIL
    assert "no reply within 0.1 s" in result.error.message


def test_a_cancelled_transaction_leaves_no_stale_replies(make_server: MakeServer) -> None:
    handler = FaultyHandler(Faults(delay=0.3))
    transport = SmtpTransport(settings(make_server(handler)))

    async def cancel_then_send() -> TransactionResult:
        assert await transport.open() is None
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(transport.send(SENDER, ["a@kth.se"], MESSAGE), 0.05)
        handler.faults.delay = 0.0
        return (await session(transport, (["b@kth.se"], MESSAGE)))[0]

    assert run(cancel_then_send()) == TransactionResult(accepted=["b@kth.se"])
    assert transport.connections == 2 and handler.recipients() == ["b@kth.se"]


def test_a_closed_port_is_421_cannot_connect() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = SmtpTransport(SmtpSettings("127.0.0.1", port, "none", timeout=2.0))
    failure = run(transport.open())
    assert failure is not None and failure.code == 421 and "cannot connect to 127.0.0.1" in failure.message
    [result] = run(session(transport, (["a@kth.se"], MESSAGE)))
    assert result.error is not None and result.error.code == 421


# Authentication and TLS


def auth_server(make_server: MakeServer) -> RunningServer:
    return make_server(auth_required=True, auth_require_tls=False, authenticator=credentials("mailer", "right"))


def test_auth_succeeds(make_server: MakeServer) -> None:
    server = auth_server(make_server)
    [result] = send(server, (["a@kth.se"], MESSAGE), username="mailer", password="right")
    assert result == TransactionResult(accepted=["a@kth.se"])
    assert server.handler.recipients() == ["a@kth.se"]


def test_auth_failure_is_535_and_nothing_is_sent(make_server: MakeServer) -> None:
    server = auth_server(make_server)
    transport = SmtpTransport(settings(server, username="mailer", password="wrong"))
    failure = run(transport.open())
    assert failure is not None and failure.code == 535
    assert "authentication as mailer failed" in failure.message and "wrong" not in failure.message
    [result] = run(session(transport, (["a@kth.se"], MESSAGE)))
    assert result.error is not None and result.error.code == 535
    assert server.handler.received == []


def test_auth_required_but_not_configured_is_refused_by_code(make_server: MakeServer) -> None:
    [result] = send(auth_server(make_server), (["a@kth.se"], MESSAGE))
    assert result.error is not None and result.error.code == 530


def test_starttls_required_but_not_offered_is_refused(smtp_server: RunningServer) -> None:
    failure = run(SmtpTransport(settings(smtp_server, security="starttls")).open())
    assert failure is not None and failure.code == 554 and "STARTTLS" in failure.message


def _trusting(files: TlsFiles, server: RunningServer, security: str) -> SmtpSettings:
    return settings(server, security=security, host="localhost", ca_file=files.cert)


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_validates_the_certificate(make_server: MakeServer, tls_files: TlsFiles, security: str) -> None:
    context = tls_files.server_context()
    server = make_server(tls_context=context) if security == "starttls" else make_server(ssl_context=context)
    untrusted = settings(server, security=security, host="localhost")
    failure = run(transport_factory(untrusted)().open())
    assert failure is not None and failure.code == 554 and "certificate" in failure.message
    trusted = _trusting(tls_files, server, security)
    [result] = run(session(transport_factory(trusted)(), (["a@kth.se"], MESSAGE)))  # type: ignore[arg-type]
    assert result == TransactionResult(accepted=["a@kth.se"])
    assert server.handler.recipients() == ["a@kth.se"]


def test_a_missing_ca_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="MAILINGS_SMTP_CA_FILE"):
        transport_factory(SmtpSettings("localhost", 465, "tls", ca_file=tmp_path / "missing.pem"))


# Maildir


def test_maildir_outbox_is_readable_with_mailbox(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    transport = transport_factory(MaildirSettings(outbox))()
    assert isinstance(transport, MaildirTransport)

    async def deliver() -> list[TransactionResult]:
        assert await transport.open() is None
        results = [
            await transport.send(SENDER, ["a@kth.se", "b@kth.se"], MESSAGE),
            await transport.send(SENDER, ["åsa@kth.se", "c@kth.se"], MESSAGE),
        ]
        await transport.close()
        return results

    first, second = run(deliver())
    assert first == TransactionResult(accepted=["a@kth.se", "b@kth.se"])
    assert second.accepted == ["c@kth.se"] and second.refused["åsa@kth.se"].code == 553
    messages = [email.message_from_bytes(m.as_bytes(), policy=email.policy.default) for m in mailbox.Maildir(outbox)]
    envelopes = sorted(tuple(m.get_all("X-Envelope-To") or ()) for m in messages)
    assert envelopes == [("<a@kth.se>", "<b@kth.se>"), ("<c@kth.se>",)]
    assert all(m["X-Envelope-From"] == "<noreply@kth.se>" and m["Subject"] == "Test" for m in messages)
    assert all(m.get_content() == "Hello!\n" for m in messages)
    assert not any(b"\r" in (outbox / "new" / name).read_bytes() for name in (outbox / "new").iterdir() if name)


def test_an_empty_directory_becomes_the_outbox_and_any_other_is_refused_before_a_message(tmp_path: Path) -> None:
    """`mkdir outbox` before the first run is how many would start: the directory becomes the Maildir. A directory
    that holds other things is not one: the transport says so when it opens, and writes nothing into it."""

    async def deliver(outbox: Path) -> tuple[Reply | None, TransactionResult]:
        transport = transport_factory(MaildirSettings(outbox))()
        opened = await transport.open()
        result = await transport.send(SENDER, ["a@kth.se"], MESSAGE)
        await transport.close()
        return opened, result

    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(deliver(empty)) == (None, TransactionResult(accepted=["a@kth.se"]))
    assert len(mailbox.Maildir(empty)) == 1
    linked, target = tmp_path / "linked", tmp_path / "target"
    target.mkdir()
    linked.symlink_to(target)  # the outbox the user named, wherever it lives
    assert run(deliver(linked)) == (None, TransactionResult(accepted=["a@kth.se"]))
    assert len(mailbox.Maildir(target)) == 1

    other = tmp_path / "documents"
    other.mkdir()
    (other / "notes.txt").write_text("mine\n")
    opened, result = run(deliver(other))
    assert opened is not None and opened.code == 451
    assert "not a Maildir" in opened.message and "tmp/, new/, cur/" in opened.message
    assert result.error == opened and not result.accepted
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_transport_factory_picks_by_settings(tmp_path: Path, smtp_server: RunningServer) -> None:
    assert isinstance(transport_factory(settings(smtp_server))(), SmtpTransport)
    assert isinstance(transport_factory(MaildirSettings(tmp_path))(), MaildirTransport)
    assert isinstance(smtp_server.handler, Recorder)


# Streams: transactions back to back, each message's content in one write with the next envelope


class Item:
    """One transaction of a RecordingStream."""

    def __init__(self, number: int, addresses: list[str]) -> None:
        self.number = number
        self.addresses = addresses
        self.message = b"Subject: item %d\r\n\r\nHello!\r\n" % number


class RecordingStream:
    """Hands out one transaction per address list and records every call; checks, at each message's content,
    that every earlier transaction has its outcome (no more than one message without a final reply) and that
    the server does not have this one yet."""

    def __init__(self, handler: Recorder, batches: list[list[str]]) -> None:
        self.handler = handler
        self.todo = [Item(n, addresses) for n, addresses in enumerate(batches)]
        self.calls: list[tuple[str, int]] = []
        self.results: dict[int, TransactionResult] = {}
        self.problems: list[str] = []

    async def next(self) -> Item | None:
        item = self.todo.pop(0) if self.todo else None
        self.calls.append(("next", item.number if item else -1))
        return item

    async def before_data(self, item: Item) -> None:
        self.calls.append(("data", item.number))
        unfinished = [n for _, n in self.calls if n < item.number and n not in self.results and n >= 0]
        if unfinished:
            self.problems.append(f"content of {item.number} before the outcome of {unfinished}")
        if any(r.data == item.message for r in self.handler.received):
            self.problems.append(f"the server had {item.number} before its content was sent")

    def done(self, item: Item, result: TransactionResult) -> None:
        self.calls.append(("done", item.number))
        if item.number in self.results:
            self.problems.append(f"two outcomes for {item.number}")
        self.results[item.number] = result


def stream(
    server: RunningServer, batches: list[list[str]], **changes: Any
) -> tuple[SmtpTransport, RecordingStream, int]:
    """Stream one transaction per address list; the transport, the record, and the writes it took."""
    transport = SmtpTransport(settings(server, **changes))
    recording = RecordingStream(server.handler, batches)

    async def go() -> int:
        assert await transport.open() is None
        await transport.send_stream(SENDER, recording)
        writes = transport.writes  # before close() adds its QUIT
        await transport.close()
        return writes

    return transport, recording, run(go())


def test_a_stream_takes_one_write_per_transaction(smtp_server: RunningServer) -> None:
    _, recording, writes = stream(smtp_server, [[a] for a in people(30)])
    assert recording.problems == []
    assert all(recording.results[n] == TransactionResult(accepted=[f"user{n}@kth.se"]) for n in range(30))
    assert smtp_server.handler.counts() == {a: 1 for a in people(30)}
    assert [r.data for r in smtp_server.handler.received] == [Item(n, []).message for n in range(30)]
    # The first envelope, then each content with the next envelope, then the last content.
    assert writes == 31


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_a_stream_pipelines_over_tls(make_server: MakeServer, tls_files: TlsFiles, security: str) -> None:
    context = tls_files.server_context()
    server = make_server(tls_context=context) if security == "starttls" else make_server(ssl_context=context)
    transport = transport_factory(_trusting(tls_files, server, security))()
    recording = RecordingStream(server.handler, [[a] for a in people(20)] + [people(3, "many")])

    async def go() -> tuple[bool, int]:
        assert await transport.open() is None
        await transport.send_stream(SENDER, recording)
        pipelined, writes = transport.pipelining, transport.writes  # type: ignore[attr-defined]
        await transport.close()
        return pipelined, writes

    assert run(go()) == (True, 22)  # on TLS too: each content goes with the next envelope
    assert recording.problems == []
    assert server.handler.counts() == {a: 1 for a in people(20) + people(3, "many")}


def test_a_stream_without_pipelining_sends_one_transaction_at_a_time(make_server: MakeServer) -> None:
    server = make_server(pipelining=False)
    _, recording, writes = stream(server, [[a] for a in people(5)] + [people(3, "many")])
    assert recording.problems == []
    assert [recording.calls[i][0] for i in range(3)] == ["next", "data", "done"]
    assert server.handler.counts() == {a: 1 for a in people(5) + people(3, "many")}
    assert writes == 5 * 4 + 6  # MAIL, each RCPT, DATA, content


def test_a_stream_carries_on_after_refused_transactions(make_server: MakeServer) -> None:
    faults = Faults(
        perm_fail=["user3@kth.se"],
        temp_fail={"user5@kth.se": None},
        data_replies={7: "554 5.6.0 Message content rejected", 9: "451 4.3.0 Try again later"},
    )
    handler = FaultyHandler(faults)
    batches = [[a] for a in people(12)] + [["user3@kth.se", "other@kth.se"]]
    transport, recording, _ = stream(make_server(handler), batches)
    assert recording.problems == []
    codes = {n: (r.error.code if r.error else 250) for n, r in recording.results.items()}
    # The server counts only the DATA it took content for: transactions 3 and 5 never got that far.
    assert codes == {**{n: 250 for n in range(13)}, 3: 550, 5: 451, 8: 554, 10: 451}
    assert recording.results[12] == TransactionResult(
        accepted=["other@kth.se"], refused={"user3@kth.se": recording.results[12].refused["user3@kth.se"]}
    )
    delivered = {a for n, a in enumerate(people(12)) if codes[n] == 250} | {"other@kth.se"}
    assert handler.counts() == {a: 1 for a in delivered}
    assert transport.connections == 1  # RSET kept both sides in step


@pytest.mark.parametrize(
    ("faults", "lost", "unknown"),
    [
        (Faults(drop_at_mail=[4]), 3, False),
        (Faults(mail_replies={4: "421 4.7.0 Too many messages, closing"}), 3, False),
        (Faults(drop_before_354=[4]), 3, False),
        (Faults(drop_at_data=[4]), 3, True),
        (Faults(data_replies={4: "421 4.3.2 Service shutting down"}), 3, False),
        (Faults(drop_after_data=[4]), 3, True),
    ],
    ids=[
        "dropped-at-mail",
        "421-at-mail",
        "dropped-before-354",
        "dropped-at-data",
        "421-at-data",
        "dropped-after-data",
    ],
)
def test_a_lost_connection_ends_the_stream_and_no_recipient_arrives_twice(
    make_server: MakeServer, faults: Faults, lost: int, unknown: bool
) -> None:
    handler = FaultyHandler(faults)
    server = make_server(handler)
    batches = [[a] for a in people(10)]
    transport, recording, _ = stream(server, batches)
    assert recording.problems == []
    failed = sorted(n for n, r in recording.results.items() if r.error is not None)
    assert all(recording.results[n].error.code == 421 for n in failed)  # type: ignore[union-attr]
    assert failed[0] == lost and max(recording.results) <= lost + 1  # no transaction started after the loss
    assert all(recording.results[n].accepted == [f"user{n}@kth.se"] for n in range(lost))
    # Only the message whose final reply went missing is unknown; the envelope sent with it is a plain 421.
    assert {n for n, r in recording.results.items() if r.unknown} == ({lost} if unknown else set())
    # What failed for sure goes again, on a new connection, as the dispatcher would; what is unknown does not.
    again = [a for n, a in enumerate(people(10)) if n not in recording.results or failed_for_sure(recording, n)]
    [result] = run(session(transport, (again, MESSAGE)))
    assert result.accepted == again and transport.connections == 2
    counts = handler.counts()
    assert set(counts) == set(people(10)) - ({"user3@kth.se"} if faults.drop_at_data else set())
    assert set(counts.values()) == {1}


def failed_for_sure(recording: RecordingStream, n: int) -> bool:
    result = recording.results[n]
    return result.error is not None and not result.unknown


def test_a_stream_that_times_out_reports_421_for_what_is_in_flight(make_server: MakeServer) -> None:
    handler = FaultyHandler(Faults(delay=0.3))
    _, recording, _ = stream(make_server(handler), [[a] for a in people(3)], timeout=0.1)
    assert recording.problems == []
    [(n, result)] = recording.results.items()
    assert n == 0 and result.error is not None and result.error.code == 421
    assert "no reply within 0.1 s" in result.error.message


def test_a_stream_with_a_relay_that_cannot_be_reached_fails_one_transaction() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = SmtpTransport(SmtpSettings("127.0.0.1", port, "none", timeout=2.0))
    recording = RecordingStream(Recorder(), [[a] for a in people(3)])
    run(transport.send_stream(SENDER, recording))
    [(n, result)] = recording.results.items()
    assert n == 0 and result.error is not None and result.error.code == 421

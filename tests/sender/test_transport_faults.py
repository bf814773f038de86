"""Faults of one SMTP connection against a real server (aiosmtpd in-process), counted at the server per
recipient: what the transport reports (error, unknown) and what the server received.

Each case runs on both event loops, with and without PIPELINING, through send() one transaction at a time
("single") and through send_stream() ("stream"; without PIPELINING it sends one at a time too). A transaction
is handed to the transport once: what the server holds is what that one attempt delivered.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import pytest

from sender import eventloop
from sender.config import SmtpSettings
from sender.transport import Reply, SmtpTransport, TransactionResult
from tests.sender import sending
from tests.sender.smtpserver import Faults, FaultyHandler, RunningServer

X = TypeVar("X")
MakeServer = Callable[..., RunningServer]
SENDER = "noreply@kth.se"
GOODBYE = "421 4.4.2 mx.test Error: timeout exceeded"

pytestmark = pytest.mark.usefixtures("loop_choice")
PATHS = pytest.mark.parametrize("path", ["single", "stream"])
PIPELINING = pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "plain"])


def run(coro: Coroutine[Any, Any, X]) -> X:
    return eventloop.run(coro, sending.LOOP)


def settings(server: RunningServer, timeout: float = 5.0) -> SmtpSettings:
    return SmtpSettings(host=server.host, port=server.port, security="none", timeout=timeout)


class Batch:
    """One transaction: its number, recipients and message."""

    def __init__(self, number: int, addresses: Sequence[str], message: bytes | None = None) -> None:
        self.number = number
        self.addresses = list(addresses)
        self.message = message if message is not None else b"Subject: batch %d\r\n\r\nHello!\r\n" % number


@functools.cache
def big_message() -> bytes:
    """24 MB: more than the kernel's buffers take at once, so a server that stops reading in the middle of it
    leaves the end of it, and its final dot, in the client (defaults: 4 MB to send, a few MB to receive)."""
    return b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * 300_000


class Stream:
    """A TransactionStream over some batches, optionally waiting before handing one out; records each outcome
    and what breaks the stream contract (two outcomes, a content before an earlier outcome)."""

    def __init__(self, batches: Sequence[Batch], pauses: dict[int, Callable[[], Awaitable[None]]]) -> None:
        self.todo = deque(batches)
        self.pauses = pauses
        self.handed: list[int] = []
        self.results: dict[int, TransactionResult] = {}
        self.problems: list[str] = []

    async def next(self) -> Batch | None:
        if not self.todo:
            return None
        pause = self.pauses.pop(self.todo[0].number, None)
        if pause is not None:
            await pause()
        batch = self.todo.popleft()
        self.handed.append(batch.number)
        return batch

    async def before_data(self, batch: Batch) -> None:
        unfinished = [n for n in self.handed if n < batch.number and n not in self.results]
        if unfinished:
            self.problems.append(f"content of {batch.number} before the outcome of {unfinished}")

    def done(self, batch: Batch, result: TransactionResult) -> None:
        if batch.number in self.results:
            self.problems.append(f"two outcomes for {batch.number}")
        self.results[batch.number] = result


async def deliver(
    transport: SmtpTransport,
    path: str,
    groups: Sequence[Sequence[Batch]],
    *,
    between: Callable[[], Awaitable[None]] | None = None,
    pauses: dict[int, Callable[[], Awaitable[None]]] | None = None,
) -> dict[int, TransactionResult]:
    """Each batch once, group after group with *between* awaited between groups; then close. A group is one
    send_stream on the stream path; a batch it left without a start (the connection was lost) goes into the
    next send_stream, as the dispatcher's next stream would take it. *pauses*: waits before a batch."""
    results: dict[int, TransactionResult] = {}
    pauses = dict(pauses or {})
    try:
        for index, group in enumerate(groups):
            if index and between is not None:
                await between()
            if path == "single":
                for batch in group:
                    pause = pauses.pop(batch.number, None)
                    if pause is not None:
                        await pause()
                    results[batch.number] = await transport.send(SENDER, batch.addresses, batch.message)
                continue
            todo = list(group)
            for _ in group:
                stream = Stream(todo, pauses)
                await transport.send_stream(SENDER, stream)
                assert stream.problems == []
                assert set(stream.handed) == set(stream.results), "a transaction handed out without an outcome"
                results.update(stream.results)
                todo = [batch for batch in group if batch.number not in results]
                if not todo:
                    break
    finally:
        await transport.close()
    assert sorted(results) == sorted(batch.number for group in groups for batch in group)
    return results


def batches(*recipients: Sequence[str]) -> list[Batch]:
    return [Batch(n, addresses) for n, addresses in enumerate(recipients)]


def pause(seconds: float, how: str) -> Callable[[], Awaitable[None]]:
    """A wait while the connection idles: awaited (the event loop runs), or blocking (it does not, and learns
    of what the relay did only later, as when the sender is busy with other work)."""

    async def wait() -> None:
        if how == "awaited":
            await asyncio.sleep(seconds)
        else:
            time.sleep(seconds)

    return wait


def delivered(result: TransactionResult, *addresses: str) -> bool:
    return result == TransactionResult(accepted=list(addresses))


def consistent(handler: FaultyHandler, sent: Sequence[Batch], results: dict[int, TransactionResult]) -> bool:
    """Whether the server holds one copy for each recipient of a delivered transaction, none for one that
    failed (and at most one for an unknown one), and nothing else."""
    counts = handler.counts()
    for batch in sent:
        result = results[batch.number]
        wanted = {1} if result.accepted else {0, 1} if result.unknown else {0}
        if (result.accepted and result.error is not None) or any(counts[a] not in wanted for a in batch.addresses):
            return False
    return set(counts) <= {a for batch in sent for a in batch.addresses}


def after_it(path: str, pipelining: bool, result: TransactionResult, address: str) -> None:
    """The transaction after a lost one: in a pipelined stream its envelope went in the same write as the lost
    message's content, so it failed with it (a plain 421: nothing of it was delivered); else it was sent on a
    new connection."""
    if path == "stream" and pipelining:
        assert result.error is not None and result.error.code == 421 and result.unknown is False
    else:
        assert delivered(result, address)


# Lost before the final dot went out: 421, nothing delivered, never unknown


@PATHS
@PIPELINING
def test_a_connection_lost_after_rcpt_is_421_and_nothing_was_delivered(
    make_server: MakeServer, path: str, pipelining: bool
) -> None:
    handler = FaultyHandler(Faults(drop_before_354=[2]))
    server = make_server(handler, pipelining=pipelining)
    sent = batches(["a@kth.se"], ["b@kth.se", "c@kth.se"], ["d@kth.se"])
    results = run(deliver(SmtpTransport(settings(server)), path, [sent]))
    lost = results[1]
    assert lost.error is not None and lost.error.code == 421 and lost.error.message.startswith("4.4.2 connection lost")
    assert lost.unknown is False and lost.accepted == []
    assert delivered(results[0], "a@kth.se") and delivered(results[2], "d@kth.se")
    assert handler.counts() == {"a@kth.se": 1, "d@kth.se": 1}
    assert consistent(handler, sent, results)


@PATHS
@PIPELINING
def test_a_connection_lost_in_the_middle_of_the_content_is_421_and_nothing_was_delivered(
    make_server: MakeServer, path: str, pipelining: bool
) -> None:
    handler = FaultyHandler(Faults(drop_in_content=[2]))
    server = make_server(handler, pipelining=pipelining)
    sent = [Batch(0, ["a@kth.se"]), Batch(1, ["b@kth.se"], big_message()), Batch(2, ["c@kth.se"])]
    results = run(deliver(SmtpTransport(settings(server)), path, [sent]))
    lost = results[1]
    assert lost.error is not None and lost.error.code == 421
    assert "before the end of the message went out" in lost.error.message
    assert lost.unknown is False and lost.accepted == []
    assert delivered(results[0], "a@kth.se") and "b@kth.se" not in handler.counts()
    after_it(path, pipelining, results[2], "c@kth.se")
    assert consistent(handler, sent, results)


@PATHS
@PIPELINING
def test_a_connection_lost_in_the_content_of_a_message_that_had_left_is_unknown(
    make_server: MakeServer, path: str, pipelining: bool
) -> None:
    # The server dropped after a part of it, but the whole message and its dot had gone to the socket at once:
    # seen from the client this is a drop after the dot, and the server could have taken it.
    handler = FaultyHandler(Faults(drop_in_content=[1]))
    server = make_server(handler, pipelining=pipelining)
    [result] = run(deliver(SmtpTransport(settings(server)), path, [batches(["a@kth.se"])])).values()
    assert result.unknown is True and result.error is not None and result.error.code == 421
    assert handler.received == []


# Lost or silent after the final dot: unknown, and the server holds at most the one copy


@PATHS
@PIPELINING
def test_a_connection_lost_after_the_final_dot_is_unknown_and_the_server_has_one_copy(
    make_server: MakeServer, path: str, pipelining: bool
) -> None:
    handler = FaultyHandler(Faults(drop_after_data=[2]))
    server = make_server(handler, pipelining=pipelining)
    sent = batches(["a@kth.se"], ["b@kth.se", "c@kth.se"], ["d@kth.se"])
    results = run(deliver(SmtpTransport(settings(server)), path, [sent]))
    uncertain = results[1]
    assert uncertain.unknown is True and uncertain.accepted == []
    assert uncertain.error is not None and uncertain.error.code == 421
    assert uncertain.error.message.startswith("4.4.2 no reply to the end of the message: ")
    assert handler.count("b@kth.se") == handler.count("c@kth.se") == 1
    assert delivered(results[0], "a@kth.se")
    after_it(path, pipelining, results[2], "d@kth.se")
    assert consistent(handler, sent, results)


@PATHS
@PIPELINING
def test_a_final_reply_later_than_the_timeout_is_unknown_and_the_server_has_one_copy(
    make_server: MakeServer, path: str, pipelining: bool
) -> None:
    handler = FaultyHandler(Faults(final_delay={2: 1.0}))
    server = make_server(handler, pipelining=pipelining)
    sent = batches(["a@kth.se"], ["b@kth.se"], ["c@kth.se"])
    results = run(deliver(SmtpTransport(settings(server, timeout=0.3)), path, [sent]))
    late = results[1]
    assert late.unknown is True and late.error is not None and late.error.code == 421
    assert "no reply within 0.3 s" in late.error.message
    assert handler.count("b@kth.se") == 1
    assert delivered(results[0], "a@kth.se")
    after_it(path, pipelining, results[2], "c@kth.se")
    assert consistent(handler, sent, results)


@PATHS
@pytest.mark.parametrize(
    "reply",
    ["421 4.3.2 Service shutting down", "451 4.3.0 Try again later", "554 5.6.0 Message content rejected"],
    ids=["421", "4xx", "5xx"],
)
def test_a_reply_to_the_final_dot_is_definite_whatever_its_code(make_server: MakeServer, path: str, reply: str) -> None:
    handler = FaultyHandler(Faults(data_replies={2: reply}))
    server = make_server(handler)
    sent = batches(["a@kth.se"], ["b@kth.se"], ["c@kth.se"])
    results = run(deliver(SmtpTransport(settings(server)), path, [sent]))
    code, text = reply.split(" ", 1)
    assert results[1] == TransactionResult(error=Reply(int(code), text))  # unknown False
    assert handler.count("b@kth.se") == 0 and consistent(handler, sent, results)


# Connections the relay closed while they were idle: opened again, the transaction goes out once


@PATHS
@PIPELINING
@pytest.mark.parametrize("goodbye", [None, GOODBYE], ids=["closed", "421-first"])
@pytest.mark.parametrize("how", ["awaited", "blocking"])
def test_a_connection_the_relay_closed_while_idle_is_opened_again_transparently(
    make_server: MakeServer, path: str, pipelining: bool, goodbye: str | None, how: str
) -> None:
    handler = FaultyHandler()
    server = make_server(handler, pipelining=pipelining, idle=0.1, goodbye=goodbye)
    transport = SmtpTransport(settings(server))
    first, second = batches(["a@kth.se"], ["b@kth.se"])
    results = run(deliver(transport, path, [[first], [second]], between=pause(0.3, how)))
    assert delivered(results[0], "a@kth.se") and delivered(results[1], "b@kth.se")
    assert handler.counts() == {"a@kth.se": 1, "b@kth.se": 1}
    assert transport.connections == 2 and handler.connections == 2


@PIPELINING
@pytest.mark.parametrize("goodbye", [None, GOODBYE], ids=["closed", "421-first"])
@pytest.mark.parametrize("how", ["awaited", "blocking"])
def test_a_stream_that_waits_longer_than_the_relay_idles_goes_on_on_a_new_connection(
    make_server: MakeServer, pipelining: bool, goodbye: str | None, how: str
) -> None:
    # With PIPELINING the wait comes after batch 1's 354, before its content: the relay closes a connection
    # in the middle of a transaction of which nothing has gone out yet.
    handler = FaultyHandler()
    server = make_server(handler, pipelining=pipelining, idle=0.1, goodbye=goodbye)
    transport = SmtpTransport(settings(server))
    sent = batches(["a@kth.se"], ["b@kth.se"], ["c@kth.se"], ["d@kth.se"])
    results = run(deliver(transport, "stream", [sent], pauses={2: pause(0.3, how)}))
    assert all(delivered(results[n], f"{a}@kth.se") for n, a in enumerate("abcd"))
    assert handler.counts() == {f"{a}@kth.se": 1 for a in "abcd"}
    assert transport.connections == 2 and handler.connections == 2


@PATHS
@PIPELINING
@pytest.mark.parametrize("how", ["awaited", "blocking"])
def test_a_relay_restarted_between_two_transactions_gets_the_second_once(
    make_server: MakeServer, path: str, pipelining: bool, how: str
) -> None:
    handler = FaultyHandler()
    server = make_server(handler, pipelining=pipelining)
    transport = SmtpTransport(settings(server))

    async def restart() -> None:
        if how == "awaited":
            await asyncio.to_thread(server.restart)
        else:
            server.restart()

    first, second = batches(["a@kth.se"], ["b@kth.se"])
    results = run(deliver(transport, path, [[first], [second]], between=restart))
    assert delivered(results[0], "a@kth.se") and delivered(results[1], "b@kth.se")
    assert handler.counts() == {"a@kth.se": 1, "b@kth.se": 1}
    assert transport.connections == 2 and handler.connections == 2


@PATHS
@PIPELINING
def test_a_connection_dead_at_the_first_write_is_replaced_once(
    make_server: MakeServer, path: str, pipelining: bool
) -> None:
    # The relay drops the connection at MAIL FROM without a reply, as a connection closed while idle looks
    # when the close arrives only with the next write: nothing was delivered, so it goes again.
    handler = FaultyHandler(Faults(drop_at_mail=[2]))
    server = make_server(handler, pipelining=pipelining)
    transport = SmtpTransport(settings(server))
    first, second = batches(["a@kth.se"], ["b@kth.se"])
    results = run(deliver(transport, path, [[first], [second]]))
    assert delivered(results[0], "a@kth.se") and delivered(results[1], "b@kth.se")
    assert handler.counts() == {"a@kth.se": 1, "b@kth.se": 1}
    assert transport.connections == 2 and handler.mails == 3


@PATHS
@PIPELINING
def test_a_connection_dead_at_the_first_write_twice_is_421(
    make_server: MakeServer, path: str, pipelining: bool
) -> None:
    handler = FaultyHandler(Faults(drop_at_mail=[2, 3]))
    server = make_server(handler, pipelining=pipelining)
    transport = SmtpTransport(settings(server))
    first, second = batches(["a@kth.se"], ["b@kth.se"])
    results = run(deliver(transport, path, [[first], [second]]))
    lost = results[1]
    assert lost.error is not None and lost.error.code == 421 and lost.unknown is False
    assert handler.counts() == {"a@kth.se": 1}
    assert transport.connections == 2 and handler.mails == 3  # one new connection, not one per attempt


# Every fault is a Reply; close() is bounded and never writes QUIT into a transaction


@PATHS
@PIPELINING
def test_a_malformed_reply_is_a_421_on_that_connection(make_server: MakeServer, path: str, pipelining: bool) -> None:
    handler = FaultyHandler(Faults(mail_replies={2: "hello, this is not SMTP"}))
    server = make_server(handler, pipelining=pipelining)
    transport = SmtpTransport(settings(server))
    sent = batches(["a@kth.se"], ["b@kth.se"], ["c@kth.se"])
    results = run(deliver(transport, path, [sent]))
    broken = results[1]
    assert broken.error is not None and broken.error.code == 421 and "malformed reply" in broken.error.message
    assert broken.unknown is False
    assert delivered(results[0], "a@kth.se") and delivered(results[2], "c@kth.se")
    assert handler.counts() == {"a@kth.se": 1, "c@kth.se": 1} and transport.connections == 2


def test_close_on_a_relay_that_stopped_answering_returns_within_the_timeout(make_server: MakeServer) -> None:
    handler = FaultyHandler()
    transport = SmtpTransport(settings(make_server(handler), timeout=0.3))

    async def go() -> float:
        assert delivered(await transport.send(SENDER, ["a@kth.se"], b"Subject: a\r\n\r\nHi\r\n"), "a@kth.se")
        handler.faults.silent = True
        began = time.monotonic()
        await transport.close()
        return time.monotonic() - began

    assert run(go()) < 1.0
    assert handler.quits == 1  # idle and in step: a QUIT was due, only its reply never came
    assert not transport.connected


@pytest.mark.slow
def test_close_waits_for_the_reply_to_quit_five_seconds_at_most(make_server: MakeServer) -> None:
    handler = FaultyHandler()
    transport = SmtpTransport(settings(make_server(handler), timeout=60.0))

    async def go() -> float:
        assert await transport.open() is None
        handler.faults.silent = True
        began = time.monotonic()
        await transport.close()
        return time.monotonic() - began

    assert 4.5 < run(go()) < 6.5


@PATHS
@pytest.mark.parametrize("phase", ["envelope", "final-reply"])
def test_close_during_a_transaction_drops_the_connection_without_quit(
    make_server: MakeServer, path: str, phase: str
) -> None:
    # As when a run cleans up while another task still sends: a QUIT now would go into the open transaction.
    handler = FaultyHandler(Faults(silent=True) if phase == "envelope" else Faults(final_delay={1: 2.0}))
    server = make_server(handler)
    transport = SmtpTransport(settings(server))
    [batch] = batches(["a@kth.se"])

    async def go() -> tuple[dict[int, TransactionResult], float]:
        assert await transport.open() is None
        sending = asyncio.create_task(deliver(transport, path, [[batch]]))
        await asyncio.sleep(0.2)
        began = time.monotonic()
        await transport.close()
        closed_in = time.monotonic() - began
        return await asyncio.wait_for(sending, 10.0), closed_in  # bounded: a QUIT here would leave it hanging

    results, closed_in = run(go())
    assert closed_in < 0.1
    assert handler.quits == 0
    result = results[0]
    assert result.error is not None and result.error.code == 421
    if phase == "envelope":
        assert result.unknown is False and handler.received == []
    else:
        assert result.unknown is True and [r.data for r in handler.received] == [batch.message]


@PIPELINING
def test_a_cancelled_stream_drops_its_connection_and_the_next_send_uses_a_new_one(
    make_server: MakeServer, pipelining: bool
) -> None:
    handler = FaultyHandler(Faults(delay=0.3))
    transport = SmtpTransport(settings(make_server(handler, pipelining=pipelining)))

    async def go() -> TransactionResult:
        assert await transport.open() is None
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(transport.send_stream(SENDER, Stream(batches(["a@kth.se"]), {})), 0.1)
        assert not transport.connected
        handler.faults.delay = 0.0
        try:
            return await transport.send(SENDER, ["b@kth.se"], b"Subject: b\r\n\r\nHi\r\n")
        finally:
            await transport.close()

    assert delivered(run(go()), "b@kth.se")
    assert transport.connections == 2 and handler.recipients() == ["b@kth.se"]


class FailingStream(Stream):
    """A stream whose log fails when it is asked for its second transaction."""

    async def next(self) -> Batch | None:
        if self.handed:
            raise OSError(28, "No space left on device")
        return await super().next()


@PIPELINING
def test_what_the_stream_raises_is_passed_on_and_nothing_half_sent_is_delivered(
    make_server: MakeServer, pipelining: bool
) -> None:
    handler = FaultyHandler()
    transport = SmtpTransport(settings(make_server(handler, pipelining=pipelining)))

    async def go() -> None:
        try:
            with pytest.raises(OSError, match="No space left"):
                await transport.send_stream(SENDER, FailingStream(batches(["a@kth.se"], ["b@kth.se"]), {}))
            assert not transport.connected
        finally:
            await transport.close()

    run(go())
    # With PIPELINING batch 0 was at its 354 when the stream failed: its content never went out.
    assert handler.counts() == ({} if pipelining else {"a@kth.se": 1})
    assert handler.quits == 0

"""Delivery of pre-rendered messages: SMTP over aiosmtplib, or a Maildir outbox.

A transport never raises for what a server says: every outcome is a Reply with its code, and the dispatcher
decides by code // 100 (4xx: try again later, 5xx: give up). A lost connection or a timeout is Reply(421, ...),
and the next send() connects again.

SMTP: aiosmtplib opens the session (TCP, TLS or STARTTLS with certificate validation, EHLO, AUTH). For the
transactions its protocol object is replaced, on the same transport, by one that keeps every byte the server
sends: aiosmtplib's own reads one reply per command and sets aside what arrives early, so the replies to
pipelined commands, which come back in one packet, would be lost. Where the server offers PIPELINING
(RFC 2920), MAIL FROM, every RCPT TO and DATA are written at once and the replies read in order; elsewhere
each command waits for its reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import mailbox
import re
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import aiosmtplib
from aiosmtplib.errors import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPException,
    SMTPReadTimeoutError,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse

from checks.errors import UsageError
from sender.config import MaildirSettings, SmtpSettings
from sender.message import DataReady, MessageError, ascii_address

CRLF = b"\r\n"
# A reply cannot be longer than this; a server that sends more without a line end is broken.
MAX_REPLY = 64 * 1024
MAX_REPLY_LINES = 1000
_LEADING_DOT = re.compile(rb"(?m)^\.")
_UNSAFE = re.compile(r"[\x00-\x20<>\x7f]")
_UNSAFE_IN_LIST = re.compile(r"[\x00-\x09\x0b-\x20<>\x7f]")  # _UNSAFE but for the newline that joins a list


@dataclass(frozen=True)
class Reply:
    """An SMTP reply. Code 0 is never used; a lost connection or a timeout is 421."""

    code: int
    message: str

    def __str__(self) -> str:
        return f"{self.code} {self.message}"

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


@dataclass
class TransactionResult:
    """What became of one transaction.

    error set: the transaction failed as a whole (MAIL FROM or DATA refused, every recipient refused, the
    connection lost); accepted is then empty. refused holds each recipient's own refusal, error or not."""

    accepted: list[str] = field(default_factory=list)
    refused: dict[str, Reply] = field(default_factory=dict)
    error: Reply | None = None


class Outgoing(Protocol):
    """A transaction that a TransactionStream hands out."""

    @property
    def addresses(self) -> Sequence[str]: ...

    @property
    def message(self) -> bytes: ...


T = TypeVar("T", bound=Outgoing)


class TransactionStream(Protocol[T]):
    """The transactions of one connection, handed to `send_stream` one after another, and their outcomes.

    For each transaction: `next` gives it before any of it is written to the server; `before_data` is awaited
    before its message content can be written; `done` gets its outcome, once, whatever happens. Between a
    `done` and the transport's next write to the server the stream is always asked `next` or `before_data`
    first, so it can record the outcome before anything else goes out. A streaming transport asks `next` for
    the following transaction before it awaits `before_data` for the content it holds."""

    async def next(self) -> T | None: ...

    async def before_data(self, item: T) -> None: ...

    def done(self, item: T, result: TransactionResult) -> None: ...


class Transport(Protocol):
    async def open(self) -> Reply | None: ...

    async def send(self, envelope_from: str, recipients: Sequence[str], message: bytes) -> TransactionResult: ...

    async def send_stream(self, envelope_from: str, stream: TransactionStream[T]) -> None:
        """Send what *stream* hands out until it says None; returns early, after `done` for every transaction
        it started, when the connection is lost (the next send or send_stream connects again)."""
        ...

    async def close(self) -> None: ...


async def send_each(transport: Transport, envelope_from: str, stream: TransactionStream[T]) -> None:
    """send_stream one transaction at a time, each waiting for the last (no pipelining, or no SMTP at all)."""
    while (item := await stream.next()) is not None:
        await stream.before_data(item)
        stream.done(item, await transport.send(envelope_from, item.addresses, item.message))


def transport_factory(settings: SmtpSettings | MaildirSettings) -> Callable[[], Transport]:
    """A maker of transports, one per connection, all sharing one TLS context."""
    if isinstance(settings, MaildirSettings):
        return lambda: MaildirTransport(settings.path)
    context = tls_context(settings) if settings.security != "none" else None
    return lambda: SmtpTransport(settings, context)


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    """The system's trusted certificates, plus settings.ca_file; host names and certificates are checked."""
    context = ssl.create_default_context()
    if settings.ca_file is not None:
        try:
            context.load_verify_locations(cafile=settings.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"MAILINGS_SMTP_CA_FILE {settings.ca_file}: cannot load certificates: {exc}") from None
    return context


class _ClosedByServer(Exception):
    """The server replied 421: it closes the connection."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


class _ReplyReader(SMTPProtocol):
    """aiosmtplib's protocol with a reply queue: every reply that arrives is kept, in order, until read."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_lost: Callable[[SMTPProtocol], None]) -> None:
        super().__init__(loop=loop, connection_lost_callback=on_lost)
        self._incoming = bytearray()
        self._lines: list[bytes] = []  # the lines of a multi-line reply read so far
        self._replies: deque[Reply] = deque()
        self._known: dict[bytes, Reply] = {}  # reply lines seen before ("250 2.1.5 Ok"): parsed once
        self._wanted = 0
        self._wakeup: asyncio.Future[None] | None = None
        self._failure: Exception | None = None
        # One timer per connection, moved lazily: a wait only sets the deadline, which is far cheaper than a
        # timer (or asyncio.wait_for) per wait when replies come back within microseconds.
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timed_out = False
        self.writes = 0  # writes to the server since the transactions began (each a send() system call or less)

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)

    @property
    def unread(self) -> bool:
        """True if a reply arrived that no command has read."""
        return bool(self._replies)

    def data_received(self, data: bytes) -> None:
        self._incoming += data
        try:
            self._parse()
        except SMTPResponseException as exc:
            self._fail(exc)
            if self.transport is not None:
                self.transport.close()
            return
        if len(self._replies) >= self._wanted:
            self._wake()

    def eof_received(self) -> bool:
        self._fail(SMTPServerDisconnected("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._fail(SMTPServerDisconnected(f"connection closed ({exc})" if exc else "connection closed"))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def take(self, count: int, timeout: float) -> list[Reply]:
        """The next *count* replies. Fewer when the connection ended after them (a 421 is then among them);
        SMTPServerDisconnected or SMTPReadTimeoutError when there are none to give."""
        failure = await self.wait(count, timeout)
        if failure is not None and not self._replies:
            raise failure
        return self.pop(count)

    async def wait(self, count: int, timeout: float) -> Exception | None:
        """Wait until *count* replies are queued; None once they are, else why they are not (the connection
        ended, or the server was silent for *timeout* seconds: SMTPReadTimeoutError)."""
        if len(self._replies) >= count:
            return None
        if self._failure is None:
            loop = self._loop
            self._deadline = deadline = loop.time() + timeout
            timer = self._timer
            if timer is not None and timer.when() > deadline:  # a shorter timeout than the last wait's
                timer.cancel()
                timer = None
            if timer is None:
                self._timer = loop.call_at(deadline, self._on_timer)
            self._wanted = count
            self._wakeup = loop.create_future()
            try:
                # Any arrival wakes this only once all replies are there; the timeout is the server's silence.
                await self._wakeup
            finally:
                self._wakeup, self._wanted = None, 0
            if len(self._replies) >= count:
                return None
            if self._timed_out:
                self._timed_out = False
                return SMTPReadTimeoutError(f"no reply within {timeout:g} s")
        return self._failure

    def pop(self, count: int) -> list[Reply]:
        """Up to *count* of the replies queued, oldest first."""
        replies = self._replies
        if count >= len(replies):  # the common case: a wait for exactly what arrived
            taken = list(replies)
            replies.clear()
            return taken
        return [replies.popleft() for _ in range(count)]

    def _on_timer(self) -> None:
        self._timer = None
        if self._wakeup is None or self._wakeup.done():
            return  # no wait in progress: the next one arms the timer again
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)  # a later wait moved the deadline
            return
        self._timed_out = True
        self._wakeup.set_result(None)

    async def read_response(self, timeout: float | None = None) -> SMTPResponse:
        """aiosmtplib's way to read one reply (used by its quit())."""
        [reply] = await self.take(1, timeout if timeout is not None else 60.0)
        return SMTPResponse(reply.code, reply.message)

    def _parse(self) -> None:
        end = self._incoming.rfind(b"\n")
        if end == -1:
            if len(self._incoming) > MAX_REPLY:
                raise SMTPResponseException(-1, "reply line too long")
            return
        chunk = bytes(self._incoming[: end + 1])
        del self._incoming[: end + 1]
        known, replies = self._known, self._replies
        lines = chunk.split(b"\n")
        lines.pop()  # the empty piece after the last line end
        if not self._lines:
            # The common case, a hundred "250 2.1.5 Ok" at a time: each line a reply seen before, looked up in C.
            seen = list(map(known.get, lines))
            if all(seen):
                replies.extend(seen)  # type: ignore[arg-type]  # all() proved there is no None
                return
        for line in lines:
            reply = known.get(line)
            if reply is not None and not self._lines:
                replies.append(reply)  # the common case: the same "250 ..." as before
                continue
            self._parse_line(line.rstrip(b"\r"), line)

    def _parse_line(self, line: bytes, raw: bytes) -> None:
        if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b"", b" ", b"-"):
            raise SMTPResponseException(-1, f"malformed reply line {line[:80]!r}")
        if line[3:4] == b"-":
            if len(self._lines) >= MAX_REPLY_LINES:
                raise SMTPResponseException(-1, "reply with too many lines")
            self._lines.append(line)
            return
        text = b"\n".join([part[4:].strip() for part in self._lines] + [line[4:].strip()])
        reply = Reply(int(line[:3]), text.decode("utf-8", "replace"))
        if not self._lines and len(self._known) < 64:
            self._known[raw] = reply
        self._lines = []
        self._replies.append(reply)

    def _fail(self, exc: Exception) -> None:
        if self._failure is None:
            self._failure = exc
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)


class SmtpTransport:
    """One SMTP connection, opened on demand and again after it was lost; one transaction at a time."""

    def __init__(self, settings: SmtpSettings, context: ssl.SSLContext | None = None) -> None:
        self._settings = settings
        self._context = context
        self._smtp: aiosmtplib.SMTP | None = None
        self._reader: _ReplyReader | None = None
        self.pipelining = False  # whether the open connection pipelines
        self.connections = 0  # how many connections this transport opened
        self._writes = 0  # writes of the connections dropped so far

    @property
    def writes(self) -> int:
        """Writes to the server since each connection's session began, over every connection."""
        return self._writes + (self._reader.writes if self._reader is not None else 0)

    @property
    def connected(self) -> bool:
        """True for an open connection in step with the server (no reply waiting that nobody asked for)."""
        smtp, reader = self._smtp, self._reader
        return smtp is not None and smtp.is_connected and reader is not None and not reader.unread

    async def open(self) -> Reply | None:
        """Connect, secure, greet and log in; an error Reply (never raised) if that fails."""
        if self.connected:
            return None
        self._drop()
        s = self._settings
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password,
            timeout=s.timeout,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            tls_context=self._context,
        )
        try:
            await smtp.connect()
            if smtp.is_ehlo_or_helo_needed:  # no STARTTLS or AUTH has greeted yet
                await _greet(smtp)
        except (SMTPException, OSError) as exc:
            smtp.close()
            return self._open_failure(exc)
        self._install(smtp)
        self.connections += 1
        return None

    async def send(self, envelope_from: str, recipients: Sequence[str], message: bytes) -> TransactionResult:
        if not recipients:
            raise ValueError("a transaction needs at least one recipient")
        if not self.connected:
            failure = await self.open()
            if failure is not None:
                return TransactionResult(error=failure)
        envelope = _envelope(envelope_from, recipients)
        if isinstance(envelope, TransactionResult):
            return envelope
        sender, sendable, refused = envelope
        try:
            return await self._transaction(sender, sendable, message, refused)
        except _ClosedByServer as closed:
            self._drop()
            return TransactionResult(refused=refused, error=closed.reply)
        except (SMTPException, OSError) as exc:
            self._drop()
            return TransactionResult(refused=refused, error=Reply(421, f"4.4.2 connection lost: {_describe(exc)}"))
        except asyncio.CancelledError:
            self._drop()  # replies may still be on their way: this connection is out of step for good
            raise

    async def send_stream(self, envelope_from: str, stream: TransactionStream[T]) -> None:
        """Transactions back to back. Where the server pipelines, one write per transaction carries the previous
        message's content and final dot and this transaction's MAIL FROM, RCPT TO and DATA (RFC 2920 allows
        the content to open a group), and one wait reads all their replies: the final reply of one message
        and the envelope replies of the next. A message's content goes out only after the stream's
        `before_data` and its own 354, so no more than one message per connection is ever in the server's
        hands without a final reply."""
        failure = None if self.connected else await self.open()
        if failure is not None:
            item = await stream.next()
            if item is not None:
                stream.done(item, TransactionResult(error=failure))
            return
        sender = _envelope_address(envelope_from) if envelope_from else b""
        if not self.pipelining or sender is None:
            await send_each(self, envelope_from, stream)
            return
        try:
            await self._stream(b"MAIL FROM:<" + sender + b">\r\n", stream)
        except asyncio.CancelledError:
            self._drop()  # replies may still be on their way: this connection is out of step for good
            raise

    async def close(self) -> None:
        """QUIT politely if connected, then close."""
        if self.connected and self._smtp is not None:
            with contextlib.suppress(SMTPException, OSError):  # closing anyway
                await self._smtp.quit(timeout=min(self._settings.timeout, 5.0))
        self._drop()

    # the transaction

    async def _transaction(
        self, sender: bytes, recipients: list[tuple[str, bytes]], message: bytes, refused: dict[str, Reply]
    ) -> TransactionResult:
        mail = b"MAIL FROM:<" + sender + b">\r\n"
        addresses = [address for _, address in recipients]
        if self.pipelining:
            mail_reply, rcpt_replies, data_reply = await self._pipelined(mail, addresses)
        else:
            mail_reply, rcpt_replies, data_reply = await self._stepwise(mail, addresses)
        accepted = _sort_recipients(recipients, rcpt_replies, refused)
        if not mail_reply.ok or not accepted or data_reply is None or data_reply.code != 354:
            if data_reply is not None and data_reply.code == 354:
                await self._command(b".\r\n")  # a server that wants data for nobody gets none
            await self._command(b"RSET\r\n")
            error = _transaction_error(mail_reply, accepted, refused, data_reply)
            return TransactionResult(refused=refused, error=error)
        final = await self._command(_payload(message))
        if not final.ok:
            return TransactionResult(refused=refused, error=final)
        return TransactionResult(accepted=accepted, refused=refused)

    async def _pipelined(self, mail: bytes, addresses: list[bytes]) -> tuple[Reply, list[Reply], Reply | None]:
        rcpts = b"RCPT TO:<" + b">\r\nRCPT TO:<".join(addresses) + b">\r\n"
        self._write(mail + rcpts + b"DATA\r\n")
        replies = await self._replies(len(addresses) + 2)
        return replies[0], replies[1:-1], replies[-1]

    async def _stream(self, mail: bytes, stream: TransactionStream[T]) -> None:
        reader = self._reader
        if reader is None:
            raise SMTPServerDisconnected("not connected")
        timeout = self._settings.timeout
        ready: _Envelope[T] | None = None  # 354 received: its content goes out with the next write
        cleanup = b""  # ends a refused envelope (RSET, after a "." if the server said 354 anyway)
        ending = False
        while True:
            # The next transaction is asked for before the waiting content's `before_data`: the stream then
            # writes the last outcome and the next attempt to its log at once, and a wait for the disk in
            # `before_data` covers both. On the wire the content still comes first.
            started: _Envelope[T] | None = None
            commands = b""  # its MAIL FROM, RCPT TO and DATA
            while not ending and started is None:
                item = await stream.next()
                if item is None:
                    ending = True
                    break
                sendable, refused = _recipients(item.addresses)
                if not sendable:
                    stream.done(item, TransactionResult(refused=refused, error=_all_refused(refused)))
                    continue
                started = _Envelope(item, sendable, refused)
                addresses = [address for _, address in sendable]
                commands = mail + b"RCPT TO:<" + b">\r\nRCPT TO:<".join(addresses) + b">\r\nDATA\r\n"
            out: list[bytes] = []
            sending = ready
            if ready is not None:
                await stream.before_data(ready.item)
                out.append(_payload(ready.item.message))
                ready = None
            cleanups = cleanup.count(b"\n")
            if cleanup:
                out.append(cleanup)
                cleanup = b""
            if commands:
                out.append(commands)
            if not out:
                return
            reader.write(b"".join(out) if len(out) > 1 else out[0])
            expected = (sending is not None) + cleanups + (len(started.sendable) + 2 if started else 0)
            failure = await reader.wait(expected, timeout)
            replies = reader.pop(expected)
            closing = next((reply for reply in replies if reply.code == 421), None)
            if closing is None and failure is not None:
                closing = Reply(421, f"4.4.2 connection lost: {_describe(failure)}")
            position = 0
            if sending is not None:
                final = replies[0] if replies else closing
                position = 1
                assert final is not None  # fewer replies than expected means a failure
                if final.ok:
                    stream.done(sending.item, TransactionResult(accepted=sending.accepted, refused=sending.refused))
                else:
                    stream.done(sending.item, TransactionResult(refused=sending.refused, error=final))
            position += cleanups
            if started is not None:
                envelope = replies[position:]
                if closing is not None:
                    # The envelope is answered in full without a 421 only if the failure came after it; the
                    # connection is no use either way.
                    stream.done(started.item, TransactionResult(refused=started.refused, error=closing))
                else:
                    mail_reply, data_reply = envelope[0], envelope[-1]
                    started.accepted = _sort_recipients(started.sendable, envelope[1:-1], started.refused)
                    if mail_reply.ok and started.accepted and data_reply.code == 354:
                        ready = started
                    else:
                        # A server that wants data for nobody gets none; RSET puts both sides back in step.
                        cleanup = b".\r\nRSET\r\n" if data_reply.code == 354 else b"RSET\r\n"
                        error = _transaction_error(mail_reply, started.accepted, started.refused, data_reply)
                        stream.done(started.item, TransactionResult(refused=started.refused, error=error))
            if closing is not None:
                self._drop()
                return

    async def _stepwise(self, mail: bytes, addresses: list[bytes]) -> tuple[Reply, list[Reply], Reply | None]:
        mail_reply = await self._command(mail)
        if not mail_reply.ok:
            return mail_reply, [], None
        rcpt_replies = [await self._command(b"RCPT TO:<" + address + b">\r\n") for address in addresses]
        if not any(reply.ok for reply in rcpt_replies):
            return mail_reply, rcpt_replies, None
        return mail_reply, rcpt_replies, await self._command(b"DATA\r\n")

    async def _command(self, data: bytes) -> Reply:
        self._write(data)
        [reply] = await self._replies(1)
        return reply

    def _write(self, data: bytes) -> None:
        if self._reader is None:
            raise SMTPServerDisconnected("not connected")
        self._reader.write(data)

    async def _replies(self, count: int) -> list[Reply]:
        """The replies to the last *count* commands, in order; _ClosedByServer at a 421."""
        if self._reader is None:
            raise SMTPServerDisconnected("not connected")
        replies = await self._reader.take(count, self._settings.timeout)
        closing = next((reply for reply in replies if reply.code == 421), None)
        if closing is not None:
            raise _ClosedByServer(closing)
        if len(replies) < count:
            raise SMTPServerDisconnected("the connection ended before every reply arrived")
        return replies

    # the connection

    def _install(self, smtp: aiosmtplib.SMTP) -> None:
        """Put a _ReplyReader in place of aiosmtplib's protocol on the open connection."""
        transport = smtp.transport
        # Not isinstance(..., asyncio.Transport): uvloop's transports do not derive from asyncio's classes.
        assert transport is not None and smtp.loop is not None
        reader = _ReplyReader(smtp.loop, lambda lost: smtp.close() if smtp.protocol is lost else None)
        reader.connection_made(transport)
        transport.set_protocol(reader)
        smtp.protocol = reader
        self._smtp, self._reader = smtp, reader
        self.pipelining = smtp.supports_extension("pipelining")

    def _drop(self) -> None:
        self._writes = self.writes
        if self._smtp is not None:
            self._smtp.close()
        self._smtp = self._reader = None
        self.pipelining = False

    def _open_failure(self, exc: BaseException) -> Reply:
        s = self._settings
        where = f"{s.host}:{s.port}"
        if isinstance(exc, SMTPAuthenticationError):
            return Reply(exc.code, f"authentication as {s.username} failed at {where}: {exc.message}")
        certificate = _ssl_cause(exc)
        if certificate is not None:
            # Not transient: retrying will not make the certificate trusted.
            return Reply(554, f"5.7.0 TLS with {where} failed: {certificate}")
        if isinstance(exc, SMTPResponseException) and exc.code >= 400:
            return Reply(exc.code, f"{where} refused the session: {exc.message}")
        if isinstance(exc, (SMTPConnectError, SMTPServerDisconnected, SMTPTimeoutError, OSError)):
            return Reply(421, f"4.4.1 cannot connect to {where}: {_describe(exc)}")
        # aiosmtplib's remaining errors are what the server lacks: STARTTLS, AUTH.
        return Reply(554, f"5.7.0 {where}: {_describe(exc)}")


async def _greet(smtp: aiosmtplib.SMTP) -> None:
    """EHLO, or HELO for a server without ESMTP."""
    try:
        await smtp.ehlo()
    except SMTPResponseException:
        await smtp.helo()


def _ssl_cause(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate not trusted: {seen.verify_message}"
        if isinstance(seen, ssl.SSLError):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _describe(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    cause = exc.__cause__
    return f"{text} ({cause})" if cause is not None and str(cause) not in text else text


@dataclass
class _Envelope(Generic[T]):
    """A streamed transaction whose envelope is on its way (or answered, with 354, and its content next)."""

    item: T
    sendable: list[tuple[str, bytes]]
    refused: dict[str, Reply]
    accepted: list[str] = field(default_factory=list)


def _sort_recipients(
    recipients: list[tuple[str, bytes]], replies: Sequence[Reply], refused: dict[str, Reply]
) -> list[str]:
    """The recipients whose RCPT TO was accepted; each other one goes into *refused* with its reply."""
    first = replies[0] if replies else None
    # The common case: every reply the same accepting one (the reader hands out one object per repeated line).
    if first is not None and first.ok and len(replies) == len(recipients) and replies.count(first) == len(replies):
        return [recipient for recipient, _ in recipients]
    accepted: list[str] = []
    for (recipient, _), reply in zip(recipients, replies, strict=False):
        if 200 <= reply.code < 300:
            accepted.append(recipient)
        else:
            refused[recipient] = reply
    return accepted


def _transaction_error(mail: Reply, accepted: list[str], refused: dict[str, Reply], data: Reply | None) -> Reply:
    """Why a transaction that sent no data failed: MAIL refused, every recipient refused, or DATA refused."""
    if not mail.ok:
        return mail
    if not accepted or data is None:
        return _all_refused(refused)
    return data


def _all_refused(refused: dict[str, Reply]) -> Reply:
    """The error of a transaction whose recipients were all refused: temporary if any refusal was."""
    replies = list(refused.values())
    worst = next((r for r in replies if 400 <= r.code < 500), replies[0] if replies else Reply(554, ""))
    return Reply(worst.code, f"every recipient was refused (first: {worst})")


def _envelope(
    envelope_from: str, recipients: Sequence[str]
) -> tuple[bytes, list[tuple[str, bytes]], dict[str, Reply]] | TransactionResult:
    """The envelope as it goes on the wire (sender, usable recipients, refusals), or the result of a
    transaction that cannot start: an unusable sender, or no usable recipient."""
    sender = _envelope_address(envelope_from) if envelope_from else b""
    if sender is None:
        return TransactionResult(error=Reply(553, f"5.1.7 the sender {envelope_from!r} is not a usable address"))
    sendable, refused = _recipients(recipients)
    if not sendable:
        return TransactionResult(refused=refused, error=_all_refused(refused))
    return sender, sendable, refused


def _recipients(recipients: Sequence[str]) -> tuple[list[tuple[str, bytes]], dict[str, Reply]]:
    """(recipient, envelope address) of each usable recipient, and a refusal for each other one."""
    joined = "\n".join(recipients)
    if (
        joined.isascii()
        and not _UNSAFE_IN_LIST.search(joined)
        and joined.count("\n") == len(recipients) - 1
        and "" not in recipients
    ):
        return list(zip(recipients, joined.encode("ascii").split(b"\n"), strict=True)), {}  # the common case
    sendable: list[tuple[str, bytes]] = []
    refused: dict[str, Reply] = {}
    for recipient in recipients:
        address = _envelope_address(recipient)
        if address is None:
            refused[recipient] = Reply(553, "5.1.3 not an address that can be sent without SMTPUTF8")
        else:
            sendable.append((recipient, address))
    return sendable, refused


def _envelope_address(address: str) -> bytes | None:
    """The address as it goes into MAIL FROM or RCPT TO; None if it cannot go there without SMTPUTF8."""
    if address.isascii() and address and not _UNSAFE.search(address):
        return address.encode("ascii")
    try:
        return ascii_address(address).encode("ascii")
    except MessageError:
        return None


def _payload(message: bytes) -> bytes:
    """The DATA content: CRLF line endings, leading dots doubled, the final '.' line."""
    if type(message) is DataReady:
        return message + b".\r\n"  # checked when it was made
    lines = message.count(CRLF)  # counting allocates nothing: the common message needs no copy before the dot
    if message.count(b"\n") != lines or message.count(b"\r") != lines:
        message = message.replace(CRLF, b"\n").replace(b"\r", b"\n").replace(b"\n", CRLF)
    if message.startswith(b".") or b"\n." in message:
        message = _LEADING_DOT.sub(b"..", message)
    return message + (b".\r\n" if message.endswith(CRLF) else b"\r\n.\r\n")


class MaildirTransport:
    """Writes each message into a Maildir, with the envelope as X-Envelope-From/To lines; accepts everything."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._box: mailbox.Maildir | None = None

    async def open(self) -> Reply | None:
        try:
            self._box = mailbox.Maildir(self._path, create=True)
        except OSError as exc:
            return Reply(451, f"4.3.0 cannot open the outbox {self._path}: {exc.strerror or exc}")
        return None

    async def send(self, envelope_from: str, recipients: Sequence[str], message: bytes) -> TransactionResult:
        if self._box is None:
            failure = await self.open()
            if failure is not None:
                return TransactionResult(error=failure)
        assert self._box is not None
        checked = _envelope(envelope_from, recipients)
        if isinstance(checked, TransactionResult):
            return checked
        sender, sendable, refused = checked
        envelope = [b"X-Envelope-From: <" + sender + b">\n"]
        envelope += [b"X-Envelope-To: <" + address + b">\n" for _, address in sendable]
        try:
            self._box.add(b"".join(envelope) + message.replace(CRLF, b"\n"))
        except OSError as exc:
            return TransactionResult(error=Reply(451, f"4.3.0 cannot write to the outbox {self._path}: {exc}"))
        return TransactionResult(accepted=[r for r, _ in sendable], refused=refused)

    async def send_stream(self, envelope_from: str, stream: TransactionStream[T]) -> None:
        await send_each(self, envelope_from, stream)

    async def close(self) -> None:
        self._box = None

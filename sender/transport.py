"""Delivery of pre-rendered messages: SMTP over aiosmtplib, or a Maildir outbox.

A transport never raises for what a server says or for what becomes of its connection: every outcome is a Reply
with its code, and the dispatcher decides by code // 100 (4xx: try again later, 5xx: give up). A lost
connection or a timeout is Reply(421, ...), and the next send() connects again. Nothing but
asyncio.CancelledError leaves open(), send(), send_stream() or close() (send_stream() also passes on what the
stream's own methods raise), and a connection that failed or was cancelled is dropped, never used again.

Uncertain outcomes (RFC 1047): once a message's content and final dot have left this process, a connection
lost or silent before the reply to the dot means the server may have delivered it. Such a result has
`unknown` set (its error is 421 too, for callers that look only there), and its recipients must not be sent it
again automatically. Before the dot has left (a fault during MAIL FROM, RCPT TO or DATA, or during the
content) nothing can have been delivered: a plain 421.

SMTP: aiosmtplib opens the session (TCP, TLS or STARTTLS with certificate validation, EHLO, AUTH). For the
transactions its protocol object is replaced, on the same transport, by one that keeps every byte the server
sends: aiosmtplib's own reads one reply per command and sets aside what arrives early, so the replies to
pipelined commands, which come back in one packet, would be lost. Where the server offers PIPELINING
(RFC 2920), MAIL FROM, every RCPT TO and DATA are written at once and the replies read in order; elsewhere
each command waits for its reply.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import json
import mailbox
import re
import select
import socket
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic
from typing import Generic, Protocol, TypeVar, cast

import aiosmtplib
from aiosmtplib.auth import auth_xoauth2_encode
from aiosmtplib.errors import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPException,
    SMTPHeloError,
    SMTPReadTimeoutError,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse

from checks.errors import UsageError
from sender.config import (
    CA_FILE,
    CLIENT_CERT,
    CLIENT_KEY,
    EHLO,
    OAUTH_TOKEN,
    PASSWORD,
    MaildirSettings,
    SmtpSettings,
)
from sender.message import DataReady, MessageError, ascii_address

CRLF = b"\r\n"
# A reply cannot be longer than this; a server that sends more without a line end is broken.
MAX_REPLY = 64 * 1024
MAX_REPLY_LINES = 1000
# A stream that kept the connection waiting longer than this (for the rate limit, the disk, or work that blocked
# the event loop) polls its socket before the next write, in case the relay closed it meanwhile. Shorter waits
# cost nothing, and in them the event loop will have read whatever came.
IDLE_CHECK = 0.05
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


@dataclass(frozen=True)
class LoginRefusal(Reply):
    """The relay's reply to a login it refused; *secret* names the variable that holds what it refused."""

    secret: str = PASSWORD


@dataclass
class TransactionResult:
    """What became of one transaction.

    error set: the transaction failed as a whole (MAIL FROM or DATA refused, every recipient refused, the
    connection lost); accepted is then empty. refused holds each recipient's own refusal, error or not.

    unknown: the message content and its final dot were written to the server but no reply to the dot came
    (it timed out, or the connection was lost or closed after the dot). The server may have delivered it
    (RFC 1047): every recipient given that is not in `refused` may have it, and must not be sent it again
    automatically. error is then set as well (421), so that a caller that looks only at error sees a failure.
    A reply to the dot, whatever its code (421 included), is never unknown, nor is a fault before the dot went
    out."""

    accepted: list[str] = field(default_factory=list)
    refused: dict[str, Reply] = field(default_factory=dict)
    error: Reply | None = None
    unknown: bool = False


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
    the following transaction before it awaits `before_data` for the content it holds. A transaction of which
    nothing has gone out when its connection turns out closed (by a relay's idle timeout, while the stream
    waited) may start again on a new connection, and then `before_data` is awaited for it again."""

    async def next(self) -> T | None: ...

    async def before_data(self, item: T) -> None: ...

    def done(self, item: T, result: TransactionResult) -> None: ...


class Transport(Protocol):
    async def open(self) -> Reply | None: ...

    async def send(self, envelope_from: str, recipients: Sequence[str], message: bytes) -> TransactionResult: ...

    async def send_stream(self, envelope_from: str, stream: TransactionStream[T]) -> None:
        """Send what *stream* hands out until it says None; returns early, after `done` for every transaction
        it started, when the connection is lost with a transaction under way (the next send or send_stream
        connects again). Raises only what the stream's own methods raise, and asyncio.CancelledError."""
        ...

    async def close(self) -> None: ...


async def send_each(transport: Transport, envelope_from: str, stream: TransactionStream[T]) -> None:
    """send_stream one transaction at a time, each waiting for the last (no pipelining, or no SMTP at all)."""
    while (item := await stream.next()) is not None:
        await stream.before_data(item)
        stream.done(item, await transport.send(item_sender(item, envelope_from), item.addresses, item.message))


def item_sender(item: object, default: str) -> str:
    """The envelope sender of one transaction: the item's own `envelope_from` when it has one (a return path
    per recipient, sender.verp), else the stream's."""
    own = getattr(item, "envelope_from", "")
    return own if isinstance(own, str) and own else default


def transport_factory(settings: SmtpSettings | MaildirSettings) -> Callable[[], Transport]:
    """A maker of transports, one per connection, all sharing one TLS context, one EHLO name and one Login: a
    run that uses one factory tries a refused login once at most."""
    if isinstance(settings, MaildirSettings):
        return lambda: MaildirTransport(settings.path)
    return TransportMaker(settings)


class TransportMaker:
    """Makes the SmtpTransports of one run (a callable, as transport_factory promises)."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.context = tls_context(settings) if settings.security != "none" else None
        self.login = Login()
        self._ehlo = settings.ehlo

    @property
    def ehlo(self) -> str:
        """The EHLO name: MAILINGS_SMTP_EHLO, or the host's fully qualified name, looked up once, when the first
        connection is made (getfqdn() may wait for DNS: a run with nothing to send does not)."""
        if self._ehlo is None:
            self._ehlo = socket.getfqdn()
        return self._ehlo

    def __call__(self) -> Transport:
        return SmtpTransport(self.settings, self.context, login=self.login, ehlo=self.ehlo)


def login_refused(factory: Callable[[], Transport]) -> LoginRefusal | None:
    """The relay's refusal of this run's login, if a transport of *factory* met one: nothing more may try."""
    login = getattr(factory, "login", None)
    return login.refused if isinstance(login, Login) else None


class Login:
    """The run's one login: every connection of a run authenticates through it, one at a time.

    A service account is locked after a few refused logins (Exchange Online: two within 15 minutes), so once the
    relay refused one, no connection of the run tries again: `refused` holds the relay's reply, and every later
    open() fails with it at once. After a login that succeeded, other connections log in with the same
    credentials (they are known good); as they go one at a time, a relay that starts refusing them midway (a
    token that expired, a password changed) sees one refused attempt, not one per connection."""

    def __init__(self) -> None:
        self.refused: LoginRefusal | None = None
        self.succeeded = False
        self.attempts = 0
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def lock(self) -> asyncio.Lock:
        """The lock of the running event loop (a run may send each mailing in a loop of its own)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop = asyncio.Lock(), loop
        return self._lock


class _LoginRefused(Exception):
    """The relay refused this run's login (now, or on an earlier connection)."""

    def __init__(self, reply: LoginRefusal) -> None:
        super().__init__(str(reply))
        self.reply = reply


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    """The system's trusted certificates plus settings.ca_file, or with ca_only that file alone; host names and
    certificates are checked. With settings.client_cert, this host shows that certificate."""
    try:
        if settings.ca_file is not None and settings.ca_only:
            # cafile given: create_default_context loads it and not the system's certificates.
            context = ssl.create_default_context(cafile=settings.ca_file)
        else:
            context = ssl.create_default_context()
            if settings.ca_file is not None:
                context.load_verify_locations(cafile=settings.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"{CA_FILE} {settings.ca_file}: cannot load certificates: {exc}") from None
    if settings.client_cert is not None:
        try:
            context.load_cert_chain(settings.client_cert, settings.client_key)
        except (OSError, ssl.SSLError) as exc:
            key = f" and {CLIENT_KEY} {settings.client_key}" if settings.client_key else ""
            raise UsageError(
                f"{CLIENT_CERT} {settings.client_cert}{key}: cannot load the client certificate and its "
                f"key (PEM, the key unencrypted): {exc}"
            ) from None
    return context


class _ClosedByServer(Exception):
    """The server replied 421: it closes the connection."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


class _DeadOnArrival(Exception):
    """The connection ended (EOF, reset) before any reply to the first commands of a transaction: nothing of it
    can have been delivered, and a relay that closed the connection while it was idle looks just like this."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.reply = Reply(421, f"4.4.2 connection lost: {_describe(cause)}")


class _StreamError(Exception):
    """What a TransactionStream's own method raised: the caller's, passed on after the connection is dropped."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


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
        # Whether the final dot of the content last written may still be in this process (the transport's
        # buffer), where a connection lost now, or dropped by us, means the message cannot have been delivered.
        self.unsent_dot = False
        self._tail = -1  # while a write is made: how many of its bytes follow a content's final dot (-1: none)
        self._tracking = False  # whether the transport reports every byte it holds back (see track_writes)
        self._marked = False  # the high-water mark is raised to the bytes after a held dot
        self._out: asyncio.WriteTransport | None = None  # the transport, for writing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._out = cast(asyncio.WriteTransport, transport)

    def track_writes(self) -> None:
        """Have the transport call pause_writing as soon as it holds back any byte of a write, and
        resume_writing once it holds none, so that unsent_dot is known. Plain TCP only: asyncio's TLS transport
        pauses at a size >= the mark, which with 0 would be always; over TLS a written dot counts as gone, which
        can make a lost message unknown but never a delivered one look undelivered."""
        if self._out is not None and not self._over_ssl:
            self._out.set_write_buffer_limits(high=0, low=0)
            self._tracking = True

    def write(self, data: bytes, tail: int = -1) -> None:
        """Write *data* to the server. *tail*: for a write that carries a message's content, how many bytes of
        it follow the content's final dot (the next transaction's commands); -1 for one that carries none."""
        self.writes += 1
        # Each write waits for the replies to the one before, so the transport holds nothing older than this
        # write, and pause_writing can tell where in it the dot is.
        self._tail = tail
        self.unsent_dot = False
        out = self._out
        if out is None or out.is_closing():
            raise SMTPServerDisconnected("Connection lost")
        out.write(data)  # calls pause_writing at once if the socket did not take all of it
        if tail >= 0 and out.is_closing():
            self.unsent_dot = True  # the socket refused the write (a reset): nothing of it went out

    def pause_writing(self) -> None:
        super().pause_writing()
        tail, self._tail = self._tail, -1
        out = self._out
        if self._tracking and tail >= 0 and out is not None and out.get_write_buffer_size() > tail:
            self.unsent_dot = True
            if tail:
                # Be told again as soon as no more than the bytes after the dot are held: the dot has gone.
                out.set_write_buffer_limits(high=tail, low=tail)
                self._marked = True

    def resume_writing(self) -> None:
        super().resume_writing()
        self.unsent_dot = False
        if self._marked:
            self._marked = False
            if self._out is not None:
                self._out.set_write_buffer_limits(high=0, low=0)  # may pause again at once, for the bytes left

    @property
    def unread(self) -> bool:
        """True if a reply arrived that no command has read."""
        return bool(self._replies)

    @property
    def in_step(self) -> bool:
        """True while the connection is up as far as this side has read and no reply came unasked."""
        return self._failure is None and not self._replies

    def out_of_step(self) -> str:
        """Why the connection is not in step: the reply that came unasked, or how the connection ended."""
        if self._replies:
            return f"the server said {self._replies[0]}"
        return _describe(self._failure) if self._failure is not None else "no fault"

    def data_received(self, data: bytes) -> None:
        self._incoming += data
        try:
            self._parse()
        except SMTPResponseException as exc:
            self._fail(exc)
            if self._out is not None:
                self._out.abort()  # out of step for good; nothing still buffered is sent
            return
        if len(self._replies) >= self._wanted:
            self._wake()

    def eof_received(self) -> bool:
        self._fail(SMTPServerDisconnected("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._out = None
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
    """One SMTP connection, opened on demand and again after it was lost; one transaction at a time.

    A connection the relay closed while it was idle (an idle timeout while the sender waited, a restart; with
    or without a 421 first) is noticed before the next transaction is written, and that transaction goes out
    on a new connection. If a connection turns out dead only at a transaction's first write (EOF or reset
    before any reply), the transaction goes out once more on a new connection: nothing of it can have been
    delivered. close() never writes QUIT into a transaction that another task has open."""

    def __init__(
        self,
        settings: SmtpSettings,
        context: ssl.SSLContext | None = None,
        *,
        login: Login | None = None,
        ehlo: str | None = None,
    ) -> None:
        self._settings = settings
        self._context = context
        self._login = login if login is not None else Login()
        self._ehlo = ehlo or settings.ehlo  # None: aiosmtplib's default, the host's fully qualified name
        self._smtp: aiosmtplib.SMTP | None = None
        self._reader: _ReplyReader | None = None
        self.pipelining = False  # whether the open connection pipelines
        self.connections = 0  # how many connections this transport opened
        self._writes = 0  # writes of the connections dropped so far
        self._busy = 0  # sends in progress: close() must not write QUIT into their transaction
        self._closes = 0  # close() calls: a send that one interrupted does not open a new connection

    @property
    def writes(self) -> int:
        """Writes to the server since each connection's session began, over every connection."""
        return self._writes + (self._reader.writes if self._reader is not None else 0)

    @property
    def connected(self) -> bool:
        """True for an open connection in step with the server (no reply waiting that nobody asked for, no EOF)."""
        smtp, reader = self._smtp, self._reader
        return smtp is not None and smtp.is_connected and reader is not None and reader.in_step

    async def open(self) -> Reply | None:
        """Connect, secure, greet and log in; an error Reply (never raised) if that fails."""
        if self.connected:
            return None
        self._drop()
        s = self._settings
        if s.username and self._login.refused is not None:
            return self._login.refused  # refused once in this run: no second try (it would lock the account)
        # No credentials for aiosmtplib: its login() tries every mechanism the relay offers, one refusal each.
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            timeout=s.timeout,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            tls_context=self._context,
            local_hostname=self._ehlo,
        )
        try:
            await smtp.connect()
            if smtp.is_ehlo_or_helo_needed:  # no STARTTLS has greeted yet
                await _greet(smtp)
            if s.username:
                await self._log_in(smtp)
            self._install(smtp)
        except _LoginRefused as refused:
            _abort(smtp)
            self._smtp = self._reader = None
            return refused.reply
        except Exception as exc:
            _abort(smtp)
            self._smtp = self._reader = None
            return self._open_failure(exc)
        except BaseException:  # cancelled: nothing of a half-open session is kept
            _abort(smtp)
            self._smtp = self._reader = None
            raise
        self.connections += 1
        return None

    async def send(self, envelope_from: str, recipients: Sequence[str], message: bytes) -> TransactionResult:
        if not recipients:
            return TransactionResult(error=Reply(554, "5.5.1 a transaction needs at least one recipient"))
        envelope = _envelope(envelope_from, recipients)
        if isinstance(envelope, TransactionResult):
            return envelope
        sender, sendable, refused = envelope
        closes = self._closes
        self._busy += 1
        try:
            for last in (False, True):
                failure = await self._ready()
                if failure is not None:
                    return TransactionResult(refused=refused, error=failure)
                try:
                    return await self._transaction(sender, sendable, message, refused)
                except _DeadOnArrival as dead:
                    # Nothing of the transaction went out: once more on a new connection, unless closed meanwhile.
                    self._drop()
                    if last or self._closes != closes:
                        return TransactionResult(refused=refused, error=dead.reply)
            raise AssertionError("unreachable")  # the second round always returns
        except _ClosedByServer as closed:
            self._drop()
            return TransactionResult(refused=refused, error=closed.reply)
        except Exception as exc:
            # A lost connection or a timeout before the content went out (after it, _transaction settles).
            self._drop()
            return TransactionResult(refused=refused, error=_failure(exc))
        except BaseException:
            self._drop()  # cancelled: replies may still be on their way, this connection is out of step for good
            raise
        finally:
            self._busy -= 1

    async def send_stream(self, envelope_from: str, stream: TransactionStream[T]) -> None:
        """Transactions back to back. Where the server pipelines, one write per transaction carries the previous
        message's content and final dot and this transaction's MAIL FROM, RCPT TO and DATA (RFC 2920 allows
        the content to open a group), and one wait reads all their replies: the final reply of one message
        and the envelope replies of the next. A message's content goes out only after the stream's
        `before_data` and its own 354, so no more than one message per connection is ever in the server's
        hands without a final reply. What the stream's own methods raise is passed on (after the connection
        is dropped); every fault of the connection ends as a `done`."""
        closes = self._closes
        self._busy += 1
        try:
            failure = await self._ready()
            if failure is not None or self._reader is None:
                try:
                    item = await stream.next()
                except Exception as exc:
                    raise _StreamError(exc) from exc
                if item is not None:
                    _done(stream, item, TransactionResult(error=failure or Reply(421, "4.4.1 not connected")))
                return
            sender = _envelope_address(envelope_from) if envelope_from else b""
            if not self.pipelining or sender is None:
                await send_each(self, envelope_from, stream)
                return
            await self._stream(self._reader, envelope_from, b"MAIL FROM:<" + sender + b">\r\n", stream, closes)
        except _StreamError as failed:
            self._drop()
            raise failed.error from None
        except BaseException:
            self._drop()  # cancelled, or the stream failed: replies may be on their way, the connection is lost
            raise
        finally:
            self._busy -= 1

    async def close(self) -> None:
        """QUIT and close an idle connection in step with the server; drop any other at once (a QUIT written
        into an open transaction would become part of its message). Waits at most min(timeout, 5) s."""
        self._closes += 1
        smtp = self._smtp
        if smtp is None or self._busy or not self.connected:
            self._drop()
            return
        wait = min(self._settings.timeout, 5.0)
        try:
            with contextlib.suppress(Exception):  # closing anyway, whatever the server says or does not
                async with asyncio.timeout(wait):
                    await smtp.quit(timeout=wait)
        finally:
            self._drop()

    # the transaction

    async def _ready(self) -> Reply | None:
        """Make sure of a connection in step with the server before a transaction's first write: connect if
        there is none, and again if the relay closed or spoke unasked while it was idle, including what has
        reached the socket but not yet the event loop (a loop kept busy by other work reads it only later)."""
        reader = self._reader
        if self.connected and reader is not None and not _quiet(reader):
            for _ in range(2):  # asyncio runs a task resumed after sleep(0) before the reads polled with it
                await asyncio.sleep(0)
        return None if self.connected else await self.open()

    async def _transaction(
        self, sender: bytes, recipients: list[tuple[str, bytes]], message: bytes, refused: dict[str, Reply]
    ) -> TransactionResult:
        reader = self._reader
        if reader is None:
            raise SMTPServerDisconnected("not connected")
        mail = b"MAIL FROM:<" + sender + b">\r\n"
        addresses = [address for _, address in recipients]
        data_reply: Reply | None
        if self.pipelining:
            rcpts = b"RCPT TO:<" + b">\r\nRCPT TO:<".join(addresses) + b">\r\n"
            replies = await self._first(reader, mail + rcpts + b"DATA\r\n", len(addresses) + 2)
            mail_reply, rcpt_replies, data_reply = replies[0], replies[1:-1], replies[-1]
        else:
            [mail_reply] = await self._first(reader, mail, 1)
            rcpt_replies, data_reply = await self._stepwise(mail_reply, addresses)
        accepted = _sort_recipients(recipients, rcpt_replies, refused)
        if not mail_reply.ok or not accepted or data_reply is None or data_reply.code != 354:
            error = _transaction_error(mail_reply, accepted, refused, data_reply)
            try:
                if data_reply is not None and data_reply.code == 354:
                    await self._command(b".\r\n")  # a server that wants data for nobody gets none
                await self._command(b"RSET\r\n")
            except (_ClosedByServer, SMTPException, OSError):
                self._drop()  # the refusal stands; only the connection is lost
            return TransactionResult(refused=refused, error=error)
        reader.write(_payload(message), 0)  # raises, with nothing written, if the connection is already closing
        failure = await reader.wait(1, self._settings.timeout)
        if failure is not None:
            error, unknown = self._no_final_reply(reader, failure)
            return TransactionResult(refused=refused, error=error, unknown=unknown)
        [final] = reader.pop(1)
        if final.code == 421:
            self._drop()  # a definite reply: the message was refused, and the server closes
        if not final.ok:
            return TransactionResult(refused=refused, error=final)
        return TransactionResult(accepted=accepted, refused=refused)

    async def _first(self, reader: _ReplyReader, data: bytes, count: int) -> list[Reply]:
        """Write a transaction's first commands and read their *count* replies; _DeadOnArrival if the
        connection ends before any of them came."""
        try:
            reader.write(data)
        except SMTPServerDisconnected as exc:
            raise _DeadOnArrival(exc) from exc
        failure = await reader.wait(count, self._settings.timeout)
        if isinstance(failure, SMTPServerDisconnected) and not reader.unread:
            raise _DeadOnArrival(failure)
        return self._checked(reader.pop(count), count, failure)

    async def _stepwise(self, mail_reply: Reply, addresses: list[bytes]) -> tuple[list[Reply], Reply | None]:
        if not mail_reply.ok:
            return [], None
        rcpt_replies = [await self._command(b"RCPT TO:<" + address + b">\r\n") for address in addresses]
        if not any(reply.ok for reply in rcpt_replies):
            return rcpt_replies, None
        return rcpt_replies, await self._command(b"DATA\r\n")

    async def _command(self, data: bytes) -> Reply:
        reader = self._reader
        if reader is None:
            raise SMTPServerDisconnected("not connected")
        reader.write(data)
        failure = await reader.wait(1, self._settings.timeout)
        [reply] = self._checked(reader.pop(1), 1, failure)
        return reply

    @staticmethod
    def _checked(replies: list[Reply], count: int, failure: Exception | None) -> list[Reply]:
        """*replies*, all *count* of them; _ClosedByServer at a 421, else the *failure* that cut them short."""
        closing = next((reply for reply in replies if reply.code == 421), None)
        if closing is not None:
            raise _ClosedByServer(closing)
        if len(replies) < count:
            raise failure or SMTPServerDisconnected("the connection ended before every reply arrived")
        return replies

    def _no_final_reply(self, reader: _ReplyReader, failure: BaseException) -> tuple[Reply, bool]:
        """The error of a message whose final reply did not come, and whether it may have been delivered: it may
        unless its dot never left this process. Drops the connection, aborting it, so that what is still held
        here is never sent after that decision."""
        unsent = reader.unsent_dot
        self._drop()
        if unsent:
            return Reply(
                421, f"4.4.2 connection lost before the end of the message went out: {_describe(failure)}"
            ), False
        return Reply(421, f"4.4.2 no reply to the end of the message: {_describe(failure)}"), True

    async def _stream(
        self, reader: _ReplyReader, envelope_from: str, mail: bytes, stream: TransactionStream[T], closes: int
    ) -> None:
        timeout = self._settings.timeout
        again: deque[T] = deque()  # handed out, and to start again on a new connection
        ready: _Envelope[T] | None = None  # 354 received: its content goes out with the next write
        sending: _Envelope[T] | None = None  # its content written, its final reply not read yet
        started: _Envelope[T] | None = None  # its envelope in the write being made, or being answered
        cleanup = b""  # ends a refused envelope (RSET, after a "." if the server said 354 anyway)
        ending = False
        reconnected = False  # a new connection replaced a lost one, and has not answered a write yet
        clock, idle_check = monotonic, IDLE_CHECK
        answered = clock()  # when the server last answered (or _ready checked the connection)
        try:
            while True:
                # The next transaction is asked for before the waiting content's `before_data`: the stream then
                # writes the last outcome and the next attempt to its log at once, and a wait for the disk in
                # `before_data` covers both. On the wire the content still comes first.
                commands = b""  # its MAIL FROM, RCPT TO and DATA
                while started is None and (again or not ending):
                    try:
                        item = again.popleft() if again else await stream.next()
                    except Exception as exc:
                        raise _StreamError(exc) from exc
                    if item is None:
                        ending = True
                        break
                    sendable, refused = _recipients(item.addresses)
                    if not sendable:
                        _done(stream, item, TransactionResult(refused=refused, error=_all_refused(refused)))
                        continue
                    own = item_sender(item, "")
                    own_address = _envelope_address(own) if own else b""
                    if own_address is None:
                        error = Reply(553, f"5.1.7 the sender {own!r} is not a usable address")
                        _done(stream, item, TransactionResult(refused=refused, error=error))
                        continue
                    started = _Envelope(item, sendable, refused)
                    addresses = [address for _, address in sendable]
                    item_mail = b"MAIL FROM:<" + own_address + b">\r\n" if own_address else mail
                    commands = item_mail + b"RCPT TO:<" + b">\r\nRCPT TO:<".join(addresses) + b">\r\nDATA\r\n"
                if ready is not None:
                    try:
                        await stream.before_data(ready.item)
                    except Exception as exc:
                        raise _StreamError(exc) from exc
                if clock() - answered > idle_check and not _quiet(reader):
                    for _ in range(2):  # asyncio runs a task resumed after sleep(0) before the reads polled with it
                        await asyncio.sleep(0)
                if reader._failure is not None or reader._replies:  # reader.in_step, without a call per message
                    # The relay closed the connection (or spoke unasked) while the stream waited: nothing of
                    # this write has gone out, so all of it can go again on a new connection.
                    waiting = [envelope.item for envelope in (ready, started) if envelope is not None]
                    ready = started = None
                    lost = Reply(421, f"4.4.2 connection lost while idle: {reader.out_of_step()}")
                    if not waiting:
                        self._drop()
                        return
                    if reconnected or self._closes != closes:
                        self._drop()
                        for item in waiting:
                            _done(stream, item, TransactionResult(error=lost))
                        return
                    if await self._reopen(waiting, stream) is not None or self._reader is None:
                        return
                    reader, reconnected, cleanup = self._reader, True, b""
                    if not self.pipelining:  # the relay came back without PIPELINING
                        await self._each(envelope_from, waiting, stream, ending)
                        return
                    again.extend(waiting)
                    continue
                out: list[bytes] = []
                if ready is not None:
                    out.append(_payload(ready.item.message))
                cleanups = cleanup.count(b"\n")
                if cleanup:
                    out.append(cleanup)
                if commands:
                    out.append(commands)
                if not out:
                    return
                data = b"".join(out) if len(out) > 1 else out[0]
                try:
                    reader.write(data, len(data) - len(out[0]) if ready is not None else -1)
                except SMTPServerDisconnected as exc:
                    # Closing already (dropped by close(), or failed just now): nothing of this write went out.
                    self._drop()
                    lost = Reply(421, f"4.4.2 connection lost: {_describe(exc)}")
                    for envelope in (ready, started):
                        if envelope is not None:
                            _done(stream, envelope.item, TransactionResult(refused=envelope.refused, error=lost))
                    return
                sending, ready, cleanup = ready, None, b""
                expected = (sending is not None) + cleanups + (len(started.sendable) + 2 if started else 0)
                failure = await reader.wait(expected, timeout)
                answered = clock()
                replies = reader.pop(expected)
                closing = next((reply for reply in replies if reply.code == 421), None)
                if closing is None and failure is not None:
                    if (
                        sending is None
                        and started is not None
                        and not replies
                        and isinstance(failure, SMTPServerDisconnected)
                        and not reconnected
                        and self._closes == closes
                    ):
                        # Dead at a write that carried no content: the envelope goes again, once, on a new
                        # connection (a relay that closed it while idle, and the close arrived only now).
                        waiting = [started.item]
                        started = None
                        self._drop()
                        if await self._reopen(waiting, stream) is not None or self._reader is None:
                            return
                        reader, reconnected = self._reader, True
                        if not self.pipelining:
                            await self._each(envelope_from, waiting, stream, ending)
                            return
                        again.extend(waiting)
                        continue
                    closing = Reply(421, f"4.4.2 connection lost: {_describe(failure)}")
                reconnected = False
                position = 0
                if sending is not None:
                    envelope, sending = sending, None
                    if replies:
                        final = replies[0]
                        if final.ok:
                            result = TransactionResult(accepted=envelope.accepted, refused=envelope.refused)
                        else:
                            result = TransactionResult(refused=envelope.refused, error=final)
                    else:
                        # The reply missing is this message's final one (not the next envelope's): it may have
                        # been delivered, unless its dot never left.
                        error, unknown = self._no_final_reply(reader, failure or SMTPServerDisconnected("no reply"))
                        result = TransactionResult(refused=envelope.refused, error=error, unknown=unknown)
                    try:  # _done() inline: this is once per message
                        stream.done(envelope.item, result)
                    except Exception as exc:
                        raise _StreamError(exc) from exc
                    position = 1
                position += cleanups
                if started is not None:
                    envelope, started = started, None
                    if closing is not None:
                        # The envelope is answered in full without a 421 only if the failure came after it; the
                        # connection is no use either way.
                        _done(stream, envelope.item, TransactionResult(refused=envelope.refused, error=closing))
                    else:
                        answers = replies[position:]
                        mail_reply, data_reply = answers[0], answers[-1]
                        envelope.accepted = _sort_recipients(envelope.sendable, answers[1:-1], envelope.refused)
                        if mail_reply.ok and envelope.accepted and data_reply.code == 354:
                            ready = envelope
                        else:
                            # A server that wants data for nobody gets none; RSET puts both sides back in step.
                            cleanup = b".\r\nRSET\r\n" if data_reply.code == 354 else b"RSET\r\n"
                            error = _transaction_error(mail_reply, envelope.accepted, envelope.refused, data_reply)
                            _done(stream, envelope.item, TransactionResult(refused=envelope.refused, error=error))
                if closing is not None:
                    self._drop()
                    return
        except _StreamError:
            raise
        except Exception as exc:
            # Never expected: a fault of this module. What is in flight is settled as on a lost connection.
            unsent = reader.unsent_dot
            self._drop()
            error = _failure(exc)
            if sending is not None:
                result = TransactionResult(refused=sending.refused, error=error, unknown=not unsent)
                _done(stream, sending.item, result)
            for envelope in (ready, started):
                if envelope is not None:
                    _done(stream, envelope.item, TransactionResult(refused=envelope.refused, error=error))
            for item in again:
                _done(stream, item, TransactionResult(error=error))

    async def _reopen(self, waiting: list[T], stream: TransactionStream[T]) -> Reply | None:
        """A new connection for *waiting*, transactions of which nothing went out; if it cannot be opened, each
        of them is done with the reason."""
        self._drop()
        failure = await self.open()
        if failure is not None:
            for item in waiting:
                _done(stream, item, TransactionResult(error=failure))
        return failure

    async def _each(self, envelope_from: str, waiting: list[T], stream: TransactionStream[T], ending: bool) -> None:
        """*waiting*, then the rest of the stream, one transaction at a time (a new connection without
        PIPELINING)."""
        while True:
            if waiting:
                item: T | None = waiting.pop(0)
            elif ending:
                return
            else:
                try:
                    item = await stream.next()
                except Exception as exc:
                    raise _StreamError(exc) from exc
            if item is None:
                return
            try:
                await stream.before_data(item)
            except Exception as exc:
                raise _StreamError(exc) from exc
            _done(stream, item, await self.send(item_sender(item, envelope_from), item.addresses, item.message))

    # the connection

    def _install(self, smtp: aiosmtplib.SMTP) -> None:
        """Put a _ReplyReader in place of aiosmtplib's protocol on the open connection."""
        transport = smtp.transport
        # Not isinstance(..., asyncio.Transport): uvloop's transports do not derive from asyncio's classes.
        if transport is None or smtp.loop is None:
            raise SMTPServerDisconnected("the connection closed while it was opened")
        reader = _ReplyReader(smtp.loop, lambda lost: smtp.close() if smtp.protocol is lost else None)
        reader.connection_made(transport)
        transport.set_protocol(reader)
        smtp.protocol = reader
        reader.track_writes()
        self._smtp, self._reader = smtp, reader
        self.pipelining = smtp.supports_extension("pipelining")

    def _drop(self) -> None:
        """Forget the connection, aborting it: what is still buffered for it is discarded, never sent later."""
        self._writes = self.writes
        smtp = self._smtp
        self._smtp = self._reader = None
        self.pipelining = False
        if smtp is not None:
            _abort(smtp)

    async def _log_in(self, smtp: aiosmtplib.SMTP) -> None:
        """One AUTH exchange with one mechanism, through the run's Login: XOAUTH2 with a token, else the first of
        CRAM-MD5, PLAIN and LOGIN that the relay offers. _LoginRefused if the relay refuses it, or refused one
        earlier in this run."""
        s = self._settings
        assert s.username is not None
        where = f"{s.host}:{s.port}"
        offered = smtp.server_auth_methods
        if s.oauth_token is not None:
            if "xoauth2" not in offered:
                raise SMTPException(f"the relay does not offer AUTH XOAUTH2 (it offers: {_offered(offered)})")
            mechanism = "xoauth2"
        else:
            usable = [m for m in smtp.AUTH_METHODS if m in offered]
            if not usable:
                raise SMTPException(f"the relay offers no AUTH mechanism for a password ({_offered(offered)})")
            mechanism = usable[0]
        async with self._login.lock():
            if self._login.refused is not None:
                raise _LoginRefused(self._login.refused)
            self._login.attempts += 1
            try:
                if mechanism == "xoauth2":
                    assert s.oauth_token is not None
                    await _xoauth2(smtp, s.username, s.oauth_token)
                else:
                    await getattr(smtp, f"auth_{mechanism.replace('-', '')}")(s.username, s.password or "")
            except SMTPAuthenticationError as exc:
                # The relay's own words first: a report cuts long texts at the end.
                self._login.refused = LoginRefusal(
                    exc.code,
                    f"{exc.message} (authentication as {s.username} failed at {where}, AUTH {mechanism.upper()})",
                    OAUTH_TOKEN if mechanism == "xoauth2" else PASSWORD,
                )
                raise _LoginRefused(self._login.refused) from None
            self._login.succeeded = True

    def _open_failure(self, exc: BaseException) -> Reply:
        s = self._settings
        where = f"{s.host}:{s.port}"
        if isinstance(exc, SMTPAuthenticationError):
            return Reply(exc.code, f"authentication as {s.username} failed at {where}: {exc.message}")
        if isinstance(exc, SMTPHeloError):
            return Reply(
                exc.code,
                f"{where} refused this host's EHLO name {self._ehlo or '(the fully qualified name)'!r}: {exc.code} "
                f"{exc.message}; set {EHLO} to the name the relay expects (a fully qualified host name)",
            )
        certificate = _ssl_cause(exc)
        if certificate is not None:
            # Not transient: retrying will not make the certificate trusted.
            return Reply(554, f"5.7.0 TLS with {where} failed: {certificate}")
        if isinstance(exc, SMTPResponseException) and exc.code >= 400:
            return Reply(exc.code, f"{where} refused the session: {exc.message}")
        if isinstance(exc, (SMTPConnectError, SMTPServerDisconnected, SMTPTimeoutError, OSError)) or not isinstance(
            exc, SMTPException
        ):
            return Reply(421, f"4.4.1 cannot connect to {where}: {_describe(exc)}")
        # aiosmtplib's remaining errors are what the server lacks: STARTTLS, AUTH.
        return Reply(554, f"5.7.0 {where}: {_describe(exc)}")


async def _xoauth2(smtp: aiosmtplib.SMTP, username: str, token: str) -> None:
    """AUTH XOAUTH2 with the initial response (RFC 7628's SASL form as Google and Microsoft take it). A refusal
    comes as a 334 challenge with a JSON error (status, scope), answered with an empty line, then the final
    reply: the refusal raised carries both, since the JSON often says more than the final text."""
    response = await smtp.execute_command(b"AUTH", b"XOAUTH2", auth_xoauth2_encode(username, token))
    detail = ""
    if response.code == 334:
        detail = _oauth_error(response.message)
        response = await smtp.execute_command(b"")
    if response.code != 235:
        raise SMTPAuthenticationError(response.code, response.message + (f" ({detail})" if detail else ""))


def _oauth_error(challenge: str) -> str:
    """The JSON error of an XOAUTH2 challenge as 'status 401, schemes bearer, scope ...'; '' if it is not one."""
    try:
        error = json.loads(base64.b64decode(challenge.strip(), validate=True))
    except ValueError:
        return ""
    if not isinstance(error, dict):
        return ""
    return ", ".join(f"{key} {value}" for key, value in error.items() if isinstance(value, str | int))[:200]


def _offered(mechanisms: Sequence[str]) -> str:
    return " ".join(m.upper() for m in mechanisms) or "no AUTH at all"


async def _greet(smtp: aiosmtplib.SMTP) -> None:
    """EHLO, or HELO for a server without ESMTP."""
    try:
        await smtp.ehlo()
    except SMTPResponseException:
        await smtp.helo()


def _abort(smtp: aiosmtplib.SMTP) -> None:
    """Close *smtp*'s connection at once, discarding what it has not sent yet."""
    transport = cast(asyncio.Transport | None, smtp.transport)  # uvloop's transports have abort() too
    if transport is not None:
        transport.abort()
    smtp.close()


def _quiet(reader: _ReplyReader) -> bool:
    """False if the socket holds something the event loop has not read yet (a reply, an EOF, a reset): one
    poll, without waiting."""
    transport = reader.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            return not poller.poll(0)
        return not select.select([sock], [], [], 0)[0]
    except (OSError, ValueError):
        return False


def _failure(exc: BaseException) -> Reply:
    """The 421 of a transaction that an exception ended: the connection's fault, or (never expected) ours."""
    if isinstance(exc, (SMTPException, OSError)):
        return Reply(421, f"4.4.2 connection lost: {_describe(exc)}")
    return Reply(421, f"4.3.0 the SMTP client failed: {type(exc).__name__}: {exc}")


def _done(stream: TransactionStream[T], item: T, result: TransactionResult) -> None:
    """stream.done(item, result); what it raises is the stream's own (_StreamError)."""
    try:
        stream.done(item, result)
    except Exception as exc:
        raise _StreamError(exc) from exc


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


MAILDIR_PARTS = ("tmp", "new", "cur")


def _maildir(path: Path) -> mailbox.Maildir:
    """The Maildir at *path*: made when there is none, and made of an empty directory (one made for it beforehand).
    Any other directory without tmp/, new/ and cur/ is not a Maildir: OSError, and nothing is written into it
    (mailbox would take it as one, and fail at every message)."""
    if path.is_dir() and not any(path.iterdir()):
        for part in MAILDIR_PARTS:
            (path / part).mkdir(mode=0o700, exist_ok=True)
    box = mailbox.Maildir(path, create=True)
    missing = [f"{part}/" for part in MAILDIR_PARTS if not (path / part).is_dir()]
    if missing:
        raise OSError(
            errno.ENOTDIR,
            f"not a Maildir (it has no {', '.join(missing)}); give a new or an empty directory",
        )
    return box


class MaildirTransport:
    """Writes each message into a Maildir, with the envelope as X-Envelope-From/To lines; accepts everything."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._box: mailbox.Maildir | None = None

    async def open(self) -> Reply | None:
        try:
            self._box = _maildir(self._path)
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

"""A real SMTP server for the sender's tests: aiosmtpd in-process on 127.0.0.1, on an ephemeral port.

Handlers:
- `Recorder` accepts everything and records each transaction (thread-safe: the server runs in its own thread).
- `FaultyHandler` records too, and misbehaves as its `Faults` say: 451/550 per recipient, a refused MAIL or
  RCPT, a 421 or a dropped connection on the k-th MAIL or DATA (before the 354, in the middle of the content,
  or after taking the message), a late reply to the final dot, slow replies, or no replies at all.

`start_server(handler)` returns a `RunningServer` (host, port, handler, stop(), start(), restart()); use it from
tests that run the `mailings` command in a subprocess. The fixtures `make_server` and `smtp_server` stop their
servers afterwards. PIPELINING is advertised by default (aiosmtpd does not advertise it by itself, but reads
commands one by one and answers them in order, so pipelining clients work); pass pipelining=False for a server
without it. idle=seconds closes connections idle for longer, as relays do (after a `goodbye` line such as a
421, if given).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    """One transaction the server accepted."""

    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    connection: int  # 1 for the first connection the server saw, 2 for the next, ...


class Recorder:
    """Accepts every transaction and records it; tests read the records from their own thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._received: list[Received] = []
        self.notices: list[Received] = []  # word back to a contact person, not a copy of the mailing
        self.connections = 0

    # aiosmtpd hooks (they run in the server's thread)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves this to a handler that has the hook
        if getattr(server, "pipelining", False):
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if getattr(server, "timed_out", False):
            return "421 4.4.2 timeout: not accepted"  # as a relay does: a 421 to the end of data keeps nothing
        self.record(envelope, getattr(server, "number", 0))
        return "250 2.0.0 OK: queued"

    # helpers

    def record(self, envelope: Envelope, connection: int) -> None:
        entry = Received(
            mail_from=envelope.mail_from or "",
            recipients=tuple(envelope.rcpt_tos),
            data=envelope.original_content or b"",
            connection=connection,
        )
        with self._cond:
            # A notice to the contact person (sender.notice) is kept apart: the counts are of the mailing's copies.
            head = entry.data.split(b"\r\n\r\n", 1)[0]
            (self.notices if b"\nX-Mailings-Notice:" in head else self._received).append(entry)
            self._cond.notify_all()

    def connection_opened(self) -> int:
        with self._cond:
            self.connections += 1
            return self.connections

    @property
    def received(self) -> list[Received]:
        with self._cond:
            return list(self._received)

    def recipients(self) -> list[str]:
        """Every recipient of every accepted transaction, in arrival order, repeats included."""
        return [r for entry in self.received for r in entry.recipients]

    def counts(self) -> Counter[str]:
        """How many times each recipient (lower-cased) was received."""
        return Counter(r.lower() for r in self.recipients())

    def count(self, address: str) -> int:
        return self.counts()[address.lower()]

    def wait_for_recipients(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least *count* recipients arrived (True) or *timeout* seconds passed (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: sum(len(e.recipients) for e in self._received) >= count, timeout=timeout)


@dataclass
class Faults:
    """How a FaultyHandler misbehaves. The k in "k-th" counts from 1 over the server's lifetime."""

    temp_fail: Mapping[str, int | None] = field(default_factory=dict)  # address -> 451 the first N times; None: always
    perm_fail: Collection[str] = ()  # recipients refused with 550
    refuse_mail: str | None = None  # the reply to every MAIL, e.g. "554 5.7.1 Relay access denied"
    refuse_rcpt: str | None = None  # the reply to every RCPT
    mail_replies: Mapping[int, str] = field(default_factory=dict)  # k-th MAIL -> this reply (421 also closes)
    data_replies: Mapping[int, str] = field(default_factory=dict)  # k-th DATA -> this reply, not accepted
    drop_at_mail: Collection[int] = ()  # k-th MAIL: the connection drops instead of a reply
    drop_at_data: Collection[int] = ()  # k-th DATA: the message arrives, the connection drops; not accepted
    drop_after_data: Collection[int] = ()  # k-th DATA: accepted and recorded, then the connection drops unanswered
    # k-th DATA command (counted when the envelope is complete): the connection drops instead of the 354
    drop_before_354: Collection[int] = ()
    # k-th DATA command: 354, then the connection drops after reading part of the content; nothing recorded
    drop_in_content: Collection[int] = ()
    final_delay: Mapping[int, float] = field(default_factory=dict)  # k-th DATA: recorded, answered this much later
    delay: float = 0.0  # seconds before each reply to MAIL, RCPT and DATA
    silent: bool = False  # no command is answered any more (MAIL, RCPT, DATA, RSET, QUIT); may be set mid-run


class FaultyHandler(Recorder):
    """A Recorder that misbehaves as its Faults say; counts MAIL and DATA commands and RCPTs per address."""

    def __init__(self, faults: Faults | None = None) -> None:
        super().__init__()
        self.faults = faults or Faults()
        self.mails = 0
        self.datas = 0
        self.starts = 0  # DATA commands with a complete envelope (each answered with 354 unless a fault drops)
        self.quits = 0
        self.rcpts: Counter[str] = Counter()
        self._temp: Mapping[str, int | None] = {}
        self._perm: set[str] = set()
        self._sources: tuple[object, object] | None = None

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        await self._delay()
        await self._silence()
        with self._cond:
            self.mails += 1
            k = self.mails
        if k in self.faults.drop_at_mail:
            await _drop(server)
        reply = self.faults.mail_replies.get(k) or self.faults.refuse_mail
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        await self._delay()
        await self._silence()
        key = address.lower()
        with self._cond:
            self.rcpts[key] += 1
            seen = self.rcpts[key]
        if self.faults.refuse_rcpt:
            return self.faults.refuse_rcpt
        self._follow_faults()
        if key in self._perm:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if key in self._temp and (self._temp[key] is None or seen <= (self._temp[key] or 0)):
            return f"451 4.7.1 <{address}>: Recipient address rejected: try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await self._delay()
        await self._silence()
        with self._cond:
            self.datas += 1
            k = self.datas
        if k in self.faults.drop_at_data:
            await _drop(server)
        if k in self.faults.data_replies:
            return self.faults.data_replies[k]
        if getattr(server, "timed_out", False):
            return "421 4.4.2 timeout: not accepted"  # as a relay does: a 421 to the end of data keeps nothing
        self.record(envelope, getattr(server, "number", 0))
        if k in self.faults.drop_after_data:
            await _drop(server)
        if k in self.faults.final_delay:
            await asyncio.sleep(self.faults.final_delay[k])
        return "250 2.0.0 OK: queued"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await self._silence()
        return "250 OK"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._cond:
            self.quits += 1
        await self._silence()
        return "221 Bye"

    async def before_reply(self, server: SMTP, reply: str) -> None:
        """Called by the server before each reply it writes."""
        if reply.startswith("354"):
            with self._cond:
                self.starts += 1
                k = self.starts
            if k in self.faults.drop_before_354:
                await _drop(server)

    async def after_reply(self, server: SMTP, reply: str) -> None:
        """Called by the server after each reply it wrote."""
        if reply.startswith("354") and self.starts in self.faults.drop_in_content:
            await server._reader.read(1000)  # some of the content, then no more
            await _drop(server)

    def _follow_faults(self) -> None:
        """Lower-cased copies of the address faults, made again when a test assigns new ones mid-run."""
        sources = (self.faults.temp_fail, self.faults.perm_fail)
        if self._sources is None or any(x is not y for x, y in zip(sources, self._sources, strict=True)):
            self._temp = {k.lower(): v for k, v in self.faults.temp_fail.items()}
            self._perm = {a.lower() for a in self.faults.perm_fail}
            self._sources = sources

    async def _delay(self) -> None:
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)

    async def _silence(self) -> None:
        """Never answer, while the faults say so (the session is cancelled when its connection ends)."""
        while self.faults.silent:
            await asyncio.sleep(0.05)


async def _drop(server: SMTP) -> None:
    """Drop the connection without a reply; aiosmtpd then cancels the session's task (this one)."""
    if server.transport is not None:
        cast(asyncio.Transport, server.transport).abort()
    await asyncio.sleep(30)


def credentials(username: str, password: str) -> Callable[..., AuthResult]:
    """An aiosmtpd authenticator that accepts exactly one username and password."""

    def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data == (username.encode(), password.encode())
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 535 itself

    return authenticate


class _SMTP(SMTP):
    """aiosmtpd's SMTP with a PIPELINING switch, numbered connections, 421 replies that close the connection,
    an optional line before an idle connection is closed, and the handler's before_reply/after_reply hooks."""

    def __init__(self, handler: Any, *, pipelining: bool, goodbye: str | None = None, **kwargs: Any) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # AUTH without TLS is what a loopback test wants
            super().__init__(handler, **kwargs)
        self.pipelining = pipelining
        self.goodbye = goodbye
        self.number = 0
        self.timed_out = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        starttls = self.transport is not None
        super().connection_made(transport)
        if not starttls and hasattr(self.event_handler, "connection_opened"):
            self.number = self.event_handler.connection_opened()

    async def push(self, status: Any) -> None:
        text = status.decode() if isinstance(status, bytes) else status
        before = getattr(self.event_handler, "before_reply", None)
        if before is not None:
            await before(self, text)
        await super().push(status)
        if text.startswith("421") and self.transport is not None:
            self.transport.close()  # RFC 5321: 421 means the server closes the channel
        after = getattr(self.event_handler, "after_reply", None)
        if after is not None:
            await after(self, text)

    def _timeout_cb(self) -> None:
        # From now on nothing is accepted on this connection: a relay that answers 421 (or closes) after the end
        # of data has not kept the message (RFC 5321), so a message read in the same moment is not recorded.
        self.timed_out = True
        if self.goodbye and self.transport is not None:
            cast(asyncio.Transport, self.transport).write(self.goodbye.encode("ascii") + b"\r\n")
        super()._timeout_cb()


class _Controller(Controller):
    def __init__(self, handler: Any, *, pipelining: bool, port: int, goodbye: str | None, **kwargs: Any) -> None:
        super().__init__(handler, hostname=HOST, port=port, **kwargs)
        self.pipelining = pipelining
        self.goodbye = goodbye

    def factory(self) -> SMTP:
        return _SMTP(self.handler, pipelining=self.pipelining, goodbye=self.goodbye, **self.SMTP_kwargs)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    host: str
    port: int
    handler: Recorder
    controller: Controller
    options: dict[str, Any] = field(default_factory=dict)  # how it was started, for start() again
    running: bool = True

    def stop(self) -> None:
        """Stop the server; its connections end (the clients see an EOF), as when a relay's process stops."""
        if self.running:
            self.controller.stop()
            self.running = False

    def start(self) -> None:
        """Start the stopped server again, on the same port, with the same handler and options."""
        if not self.running:
            self.controller = _start(self.handler, port=self.port, **self.options)
            self.running = True

    def restart(self) -> None:
        """A relay restarted: stop, then start on the same port."""
        self.stop()
        self.start()


def start_server(
    handler: Recorder | None = None,
    *,
    pipelining: bool = True,
    idle: float | None = None,
    goodbye: str | None = None,
    **kwargs: Any,
) -> RunningServer:
    """Start a server in its own thread. *idle*: seconds after which an idle connection is closed (aiosmtpd's
    timeout), after the line *goodbye* if given (e.g. "421 4.4.2 mx.test Error: timeout exceeded"). *kwargs*
    go to aiosmtpd (e.g. auth_required=True, auth_require_tls=False, authenticator=credentials(...),
    tls_context=... for STARTTLS, ssl_context=... for TLS)."""
    handler = handler if handler is not None else Recorder()
    kwargs.setdefault("server_hostname", "mx.test")  # no DNS look-up for the greeting
    kwargs["timeout"] = idle if idle is not None else kwargs.get("timeout", 30)
    options = {"pipelining": pipelining, "goodbye": goodbye, **kwargs}
    for _ in range(5):  # the ephemeral port may be taken between choosing and binding it
        try:
            controller = _start(handler, port=_free_port(), **options)
        except OSError:
            continue
        break
    else:
        raise RuntimeError("could not start the test SMTP server")
    return RunningServer(HOST, controller.port, handler, controller, options)


def _start(handler: Recorder, *, port: int, pipelining: bool, goodbye: str | None, **kwargs: Any) -> Controller:
    controller = _Controller(handler, pipelining=pipelining, port=port, goodbye=goodbye, **kwargs)
    with handler._cond:
        before = handler.connections
    controller.start()  # returns once its probe has read the greeting, sent after the probe was counted
    with handler._cond:
        handler.connections = before  # the controller's own start-up probe is not a client
    return controller


@pytest.fixture
def make_server() -> Iterator[Callable[..., RunningServer]]:
    """A factory: make_server(handler=None, *, pipelining=True, **aiosmtpd_kwargs) -> RunningServer."""
    servers: list[RunningServer] = []

    def make(handler: Recorder | None = None, *, pipelining: bool = True, **kwargs: Any) -> RunningServer:
        server = start_server(handler, pipelining=pipelining, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def smtp_server(make_server: Callable[..., RunningServer]) -> RunningServer:
    """A recording server that advertises PIPELINING."""
    return make_server()


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 and localhost (made with the openssl command)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl cannot make a test certificate: {exc}")
    return TlsFiles(cert, key)

"""The soak test: `mailings send --push` killed with SIGKILL 20 times during a 20,000-recipient individual mailing.

Each run starts in a fresh clone of a bare origin (as a CI runner starts empty), so all it knows is what the
remote holds: main and the claim branch with its checkpoints. The relay (aiosmtpd in this process's thread,
so it outlives every sender) misbehaves at random from a fixed seed: 421 and 451 replies, connections dropped
before and after it took a message, slow replies. After 20 kills the runs go on unkilled until the mailing is
sent. Then every recipient has the message or is `unknown` in the committed log for a reason the relay knows of,
the duplicates stay within the checkpoint bound per kill, no message arrived garbled, and the log on main
agrees with what the relay received.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.header import decode_header, make_header
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from checks.model import CLAIM_BRANCH_PREFIX, SENDLOG_FILE
from sender.dispatch import Tuning
from sender.journal import make_hasher, replay
from sender.message import DIVIDER
from tests.conftest import BODIES, GIT_ENV, LOG_KEY_ENV, TEST_LOG_KEY, VALID, Repo, addresses, git
from tests.sender.sending import MAILING, recipients
from tests.sender.smtpserver import Recorder, RunningServer, start_server

pytestmark = pytest.mark.slow

SEED = 20270210
RECIPIENTS = 20_000
KILLS = 20
KILL_AFTER = (0.2, 2.0)  # seconds after a run starts: from its start-up to well into sending
MAX_KILL_RUNS = 30  # a run that ends by itself before its kill moment is not a kill
MAX_FINISHING_RUNS = 8  # unkilled runs after the kills, until the mailing is sent
SEND_AT = datetime(2027, 2, 10, 9, 0, tzinfo=ZoneInfo("Europe/Stockholm"))  # VALID's send_at
FIRST_RUN = SEND_AT + timedelta(minutes=5)
# Later than Tuning.stale_claim, so that each run takes over the claim the killed run before it left.
BETWEEN_RUNS = timedelta(minutes=11)
SMTP_TIMEOUT = 5  # seconds; every slow reply below stays well under it
RUN_TIMEOUT = 180.0  # seconds; a bound for a stuck run, not a measured time
BIN = Path(sys.executable).parent
SUBJECT = f"{VALID['subject']['sv']} / {VALID['subject']['en']}"
BODY = f"{BODIES['sv'].strip()}\n\n{DIVIDER}\n\n{BODIES['en'].strip()}\n"  # both languages, one after the other

# The relay's faults: per command, the chance of each (what it answers, or "drop": the connection is cut with no
# reply). At DATA (aiosmtpd's hook runs after the final dot) a drop comes before the message is taken or after.
# Rare enough that the whole test takes about a minute (each 4xx costs its connection a second's backoff), common
# enough that every kind happens several times over 20,000 messages and more.
FAULTS: dict[str, tuple[tuple[str, float], ...]] = {
    "MAIL": (
        ("421 4.7.0 Too many connections, closing", 0.0003),
        ("451 4.3.0 Temporary lookup failure", 0.0004),
        ("drop", 0.0003),
    ),
    "RCPT": (
        ("421 4.3.2 Service shutting down", 0.0002),
        ("451 4.7.1 Recipient address rejected: try again later", 0.0004),
    ),
    "DATA": (
        ("421 4.3.2 Service shutting down", 0.0002),
        ("451 4.3.0 Error: queue file write error", 0.0004),
        ("drop before taking it", 0.0003),
        ("drop after taking it", 0.0003),
    ),
}
SLOW = 0.0005  # per command, the chance of a slow reply
SLOW_DELAY = (0.2, 0.9)  # seconds


@dataclass(frozen=True)
class Copy:
    """One message the relay took."""

    order: int  # of the copies and cuts, in the order they happened
    run: int  # the run whose connection brought it
    recipients: tuple[str, ...]
    data: bytes


@dataclass(frozen=True)
class Cut:
    """A connection the relay cut after a message's final dot: the sender may not know what became of it."""

    order: int
    run: int
    recipients: tuple[str, ...]
    taken: bool  # the relay took the message before cutting
    # True: cut before any reply to the final dot. False: the reply (250) was written, but the connection ended at
    # the next command (a cut, or a 421), which came in the same pipelined write; a TCP reset loses what the
    # sender had not read yet.
    certain: bool


class UnreliableRelay(Recorder):
    """Takes messages, and at random (seeded) refuses a command for now, cuts the connection or answers slowly.

    Every copy taken is kept with the run that sent it; so is every connection cut after the final dot."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.random = random.Random(seed)  # only the server's thread draws from it
        self.run = 0  # the run now going (set by the test between runs)
        self.run_of: dict[int, int] = {}  # connection number -> the run that opened it
        self.copies: list[Copy] = []
        self.cuts: list[Cut] = []
        self._taken: dict[int, tuple[str, ...]] = {}  # connection -> the message its last final dot took
        self.faults: Counter[str] = Counter()  # what misbehaviour happened how often
        self._lock = threading.Lock()
        self._order = 0

    def connection_opened(self) -> int:
        number = super().connection_opened()
        with self._lock:
            self.run_of[number] = self.run
        return number

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        fault = await self._misbehave("MAIL")
        if fault and not fault.startswith("451"):
            self._ending(server)
        if fault == "drop":
            await _cut(server)
        if fault:
            return fault
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        fault = await self._misbehave("RCPT")
        if fault and fault.startswith("421"):
            self._ending(server)
        if fault:
            return fault
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = await self._misbehave("DATA")
        number, run = getattr(server, "number", 0), self._run_of(server)
        to = tuple(a.lower() for a in envelope.rcpt_tos)
        self._taken.pop(number, None)
        if fault == "drop before taking it":
            self.cuts.append(Cut(self._next(), run, to, taken=False, certain=True))
            await _cut(server)
        if fault and not fault.startswith("drop"):
            return fault
        with self._lock:
            self.copies.append(Copy(self._next(), run, to, envelope.original_content or b""))
        if fault == "drop after taking it":
            self.cuts.append(Cut(self._next(), run, to, taken=True, certain=True))
            await _cut(server)
        self._taken[number] = to
        return "250 2.0.0 OK: queued"

    async def _misbehave(self, command: str) -> str | None:
        """A slow reply now and then; the fault to commit for *command*, or None."""
        if self.random.random() < SLOW:
            self.faults["slow reply"] += 1
            await asyncio.sleep(self.random.uniform(*SLOW_DELAY))
        draw = self.random.random()
        for fault, chance in FAULTS[command]:
            if draw < chance:
                self.faults[f"{command}: {fault}"] += 1
                return fault
            draw -= chance
        return None

    def _ending(self, server: SMTP) -> None:
        """The connection ends with this command, which came in one write with the final dot before it: the
        reply to that dot is written, but the end may lose it (a reset drops what the sender had not read)."""
        previous = self._taken.pop(getattr(server, "number", 0), None)
        if previous is not None:
            self.cuts.append(Cut(self._next(), self._run_of(server), previous, taken=True, certain=False))

    def _run_of(self, server: SMTP) -> int:
        with self._lock:
            return self.run_of.get(getattr(server, "number", 0), -1)

    def _next(self) -> int:
        self._order += 1  # only the server's thread counts
        return self._order

    def counts(self) -> Counter[str]:
        """How many copies each recipient (lower-cased) received."""
        with self._lock:
            return Counter(r for copy in self.copies for r in copy.recipients)


async def _cut(server: SMTP) -> None:
    """Cut the connection without a reply; aiosmtpd then cancels the session's task (this one)."""
    if server.transport is not None:
        server.transport.abort()
    await asyncio.sleep(30)


@dataclass
class Run:
    number: int
    now: datetime
    kill_after: float | None
    killed: bool
    seconds: float
    returncode: int
    output: str

    def describe(self) -> str:
        how = f"killed after {self.kill_after:.2f} s" if self.killed else f"exit {self.returncode}"
        return f"run {self.number} (--now {self.now:%H:%M}, {how}, {self.seconds:.1f} s):\n{self.output}"


@pytest.fixture
def origin(tmp_path: Path, plain_git: None) -> Path:
    """A bare origin whose main holds one approved 20,000-recipient request in individual mode."""
    seed = tmp_path / "seed"
    seed.mkdir()
    Repo(seed).add(MAILING, changes={"delivery": {"mode": "individual"}}, recipients=addresses(RECIPIENTS))
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git(seed, "init", "--quiet", "--initial-branch=main")
    git(seed, "add", ".")
    git(seed, "commit", "--quiet", "-m", "Approve a 20,000-recipient individual mailing")
    git(seed, "remote", "add", "origin", str(bare))
    git(seed, "push", "--quiet", "origin", "main")
    return bare


@pytest.fixture
def relay() -> Iterator[RunningServer]:
    server = start_server(UnreliableRelay(SEED))
    yield server
    server.stop()


def _environment(server: RunningServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILINGS_")}
    env.update(GIT_ENV)
    env.update(
        MAILINGS_SMTP_HOST=server.host,
        MAILINGS_SMTP_PORT=str(server.port),
        MAILINGS_SMTP_SECURITY="none",
        MAILINGS_SMTP_TIMEOUT=str(SMTP_TIMEOUT),
        **LOG_KEY_ENV,
    )
    return env


def _fresh_clone(origin: Path, number: int) -> Path:
    path = origin.parent / f"runner-{number}"
    git(origin.parent, "clone", "--quiet", "--branch", "main", str(origin), str(path))
    return path


def _send(
    origin: Path, relay: UnreliableRelay, env: dict[str, str], number: int, now: datetime, kill_after: float | None
) -> Run:
    """One `mailings send --push` in a fresh clone; SIGKILLed *kill_after* seconds after its start unless it
    ended by then."""
    clone = _fresh_clone(origin, number)
    relay.run = number
    started = time.monotonic()
    process = subprocess.Popen(
        [str(BIN / "mailings"), "send", "--push", "--now", now.isoformat()],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killed = False
    try:
        output, _ = process.communicate(timeout=kill_after if kill_after is not None else RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        killed = kill_after is not None
        output, _ = process.communicate(timeout=RUN_TIMEOUT)
    return Run(number, now, kill_after, killed, time.monotonic() - started, process.returncode, output)


def _state(origin: Path, env: dict[str, str], number: int, now: datetime) -> str:
    """The mailing's state as `mailings status` tells it in a fresh clone of the origin."""
    clone = _fresh_clone(origin, number)
    done = subprocess.run(
        [str(BIN / "mailings"), "status", "--format", "json", "--now", now.isoformat()],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [row] = [row for row in json.loads(done.stdout)["mailings"] if row["id"] == MAILING]
    return str(row["state"])


def _garbled(copy: Copy) -> str | None:
    """Why the message of *copy* is not the whole message for its recipient, or None when it is. (The email
    package's compat32 parser: a quarter of the time of its default policy, over 20,000 and more messages.)"""
    message = email.message_from_bytes(copy.data, policy=email.policy.compat32)
    if message.defects:
        return f"defects {message.defects}"
    if len(copy.recipients) != 1:
        return f"{len(copy.recipients)} recipients in one individual message"
    subject = str(make_header(decode_header(message["Subject"] or "")))
    if subject != SUBJECT:
        return f"Subject {subject!r}"
    if (message["To"] or "").lower() != copy.recipients[0]:
        return f"To {message['To']!r} for {copy.recipients[0]}"
    if not message["Message-ID"] or message["X-Mailing-Id"] != MAILING:
        return f"Message-ID {message['Message-ID']!r}, X-Mailing-Id {message['X-Mailing-Id']!r}"
    if message.get_content_type() != "text/plain" or message.is_multipart():
        return f"a {message.get_content_type()} message"
    payload = message.get_payload(decode=True)
    charset = message.get_content_charset() or "us-ascii"
    try:
        body = payload.decode(charset).replace("\r\n", "\n") if isinstance(payload, bytes) else None
    except (LookupError, UnicodeDecodeError) as exc:
        return f"a body that is not {charset}: {exc}"
    if body != BODY:
        return f"body {body!r}"
    return None


def test_twenty_kills_during_an_individual_mailing_to_an_unreliable_relay(
    origin: Path, relay: RunningServer, tmp_path: Path
) -> None:
    handler = relay.handler
    assert isinstance(handler, UnreliableRelay)
    tuning = Tuning()
    assert timedelta(0) < tuning.stale_claim < BETWEEN_RUNS
    env = _environment(relay)
    chance = random.Random(SEED)
    runs: list[Run] = []

    def log() -> str:
        return "\n".join(run.describe() for run in runs[-6:])

    def next_now() -> datetime:
        return FIRST_RUN + BETWEEN_RUNS * len(runs)

    while sum(run.killed for run in runs) < KILLS:
        assert len(runs) < MAX_KILL_RUNS, f"{KILLS} kills did not land in {MAX_KILL_RUNS} runs\n{log()}"
        run = _send(origin, handler, env, len(runs), next_now(), chance.uniform(*KILL_AFTER))
        runs.append(run)
        assert run.killed or run.returncode in (0, 1), log()
        assert "Traceback" not in run.output, log()
    copies_while_killed = len(handler.copies)

    finishing = 0
    state = ""
    while state != "sent":
        assert finishing < MAX_FINISHING_RUNS, f"not sent after {finishing} unkilled runs ({state})\n{log()}"
        run = _send(origin, handler, env, len(runs), next_now(), None)
        runs.append(run)
        finishing += 1
        assert run.returncode in (0, 1) and "Traceback" not in run.output, log()
        state = _state(origin, env, len(runs), run.now)
    # Every run was within the lateness window: none could find the mailing missed.
    assert runs[-1].now < SEND_AT + timedelta(hours=24)

    # What the relay received.
    everyone = recipients(RECIPIENTS)
    counts = handler.counts()
    received = {a for a in everyone if counts[a]}
    duplicates = sum(counts.values()) - len(counts)
    bound = KILLS * tuning.checkpoint_recipients
    garbled = [(copy.recipients, why) for copy in handler.copies if (why := _garbled(copy)) is not None]
    killed = {run.number for run in runs if run.killed}
    last_copy: dict[str, int] = {}
    for copy in handler.copies:
        for address in copy.recipients:
            last_copy[address] = copy.order
    cut = {a for c in handler.cuts for a in c.recipients}
    # A cut before any reply to the final dot, in a run that was not killed: that run saw it, and its record of it
    # was not lost with a kill.
    seen_cuts = [c for c in handler.cuts if c.certain and c.run not in killed]
    seen_cut = {a for c in seen_cuts for a in c.recipients}
    sent_again = sorted({a for c in seen_cuts for a in c.recipients if last_copy.get(a, 0) > c.order})

    # What the origin's main says.
    raw = git(origin, "show", f"main:mailings/{MAILING}/{SENDLOG_FILE}") + "\n"
    path = tmp_path / SENDLOG_FILE
    path.write_text(raw, encoding="utf-8")
    committed = replay(path)
    ends = [event for event in map(json.loads, raw.splitlines()) if event["event"] == "end"]
    claims = git(origin, "for-each-ref", "--format=%(refname)", f"refs/heads/{CLAIM_BRANCH_PREFIX}")
    hasher = make_hasher(TEST_LOG_KEY)  # as the log hashes an address (the runs' MAILINGS_LOG_KEY)
    hash_of = {a: hasher(a) for a in everyone}
    accepted = {a for a in everyone if hash_of[a] in committed.accepted}
    unknown = {a for a in everyone if hash_of[a] in committed.unknown}

    figures = (
        f"{len(runs)} runs ({len(killed)} killed, {finishing} unkilled to finish), {sum(counts.values())} copies "
        f"({copies_while_killed} by the killed runs), {duplicates} duplicates (bound {bound}), {len(unknown)} "
        f"unknown ({len(unknown & received)} of them received), connections cut after a final dot: "
        f"{sum(c.certain for c in handler.cuts)} before its reply, {sum(not c.certain for c in handler.cuts)} right "
        f"after it; faults {dict(sorted(handler.faults.items()))}"
    )
    problems: list[str] = []

    def expect(ok: bool, problem: str) -> None:
        if not ok:
            problems.append(problem)

    strangers = sorted(set(counts) - set(everyone))
    expect(not strangers, f"mail to addresses not in the list: {strangers[:5]}")
    missing = sorted(set(everyone) - received - unknown)
    expect(not missing, f"{len(missing)} recipient(s) never received it and are not unknown, e.g. {missing[:5]}")
    expect(
        unknown <= cut,
        f"{len(unknown - cut)} recipient(s) unknown in the log though the relay answered every final dot of theirs, "
        f"e.g. {sorted(unknown - cut)[:5]}",
    )
    expect(
        seen_cut <= unknown,
        f"{len(seen_cut - unknown)} recipient(s) whose final dot the relay left unanswered in a run that was not "
        f"killed are not `unknown` in the log, e.g. "
        f"{[(a, counts[a]) for a in sorted(seen_cut - unknown)[:5]]} (address, copies received)",
    )
    expect(
        not sent_again,
        f"{len(sent_again)} recipient(s) sent again after their final dot went unanswered in a run that was not "
        f"killed, e.g. {sent_again[:5]}",
    )
    expect(duplicates <= bound, f"{duplicates} duplicates, more than {KILLS} kills x {tuning.checkpoint_recipients}")
    expect(not garbled, f"{len(garbled)} garbled message(s), e.g. {garbled[:3]}")
    expect(bool(ends) and ends[-1].get("complete") is True, f"the log on main does not end complete: {ends[-1:]}")
    expect(
        accepted == received - unknown,
        f"the log on main disagrees with the relay: {len(accepted - received)} accepted but never received, "
        f"{len(received - unknown - accepted)} received but neither accepted nor unknown",
    )
    expect(not claims, f"claim branches left on the origin: {claims.split()}")
    assert not problems, "\n".join([*problems, figures, log()])

"""The send run: every due mailing, checked again, delivered over N connections, journalled as it goes.

Outcomes are classified by SMTP reply code (``code // 100``), never by exception type:

- 2xx: accepted; recorded and never sent again.
- 5xx for a recipient: refused for good; recorded as failed and never retried.
- 4xx for a recipient or a whole transaction (421 is also what the transport reports for a lost
  connection or a timeout): retried within the run after a short backoff, a bounded number of
  times; what is left is deferred to the next run, until the mailing's lateness runs out.
- A relay that refuses everything stops the mailing fast: a failed connect or authentication,
  5xx for a whole transaction (MAIL FROM or DATA), 5xx for every recipient before any was
  accepted, or a run of transactions that all failed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from pathlib import Path
from typing import NamedTuple

from checks.errors import UsageError
from checks.linter import check_mailing
from checks.loader import MAILINGS_DIR, discover, load_mailing
from checks.model import SENDLOG_FILE, Context, Mailing, Problem
from checks.policy import Policy
from sender import eventloop
from sender.config import MaildirSettings, SmtpSettings
from sender.eventloop import LoopChoice
from sender.journal import (
    Event,
    EventLines,
    Hasher,
    Journal,
    LockedError,
    Replay,
    encode,
    make_hasher,
    replay,
    scrub,
    stamp,
)
from sender.message import (
    MessageError,
    MessageTemplate,
    Renderer,
    build_template,
    delivery_mode,
)
from sender.progress import MailingProgress, NullProgress, Progress
from sender.state import Decision, MailingState, decide
from sender.transport import Reply, TransactionResult, Transport, transport_factory

TransportFactory = Callable[[], Transport]


@dataclass(frozen=True)
class Tuning:
    """How hard a run tries. The next scheduled run is the long retry, so these stay short."""

    retries: int = 3  # re-sends of a temporarily refused batch within one run
    backoff: tuple[float, ...] = (1.0, 2.0, 4.0)  # seconds before the 1st, 2nd, 3rd... re-send
    probe_recipients: int = 20  # 5xx refusals with none accepted that mean "the relay refuses everything"
    max_consecutive_failures: int = 10  # transactions in a row that failed as a whole: stop the mailing


@dataclass(frozen=True)
class SendOptions:
    now: datetime  # decides what is due
    run_id: str
    settings: SmtpSettings | MaildirSettings
    wallclock: Callable[[], datetime]  # the times written into the send log
    monotonic: Callable[[], float]  # rate limit
    special: Mapping[str, Path] = field(default_factory=dict)
    log_key: str | None = None
    only: str | None = None
    dry_run: bool = False
    tuning: Tuning = Tuning()
    factory: TransportFactory | None = None  # default: sender.transport.transport_factory(settings)
    event_loop: LoopChoice = "auto"  # sender.eventloop: uvloop where installed


@dataclass
class Outcome:
    """What became of one mailing in this run."""

    mailing_id: str
    state: MailingState
    note: str
    ok: bool = True  # False makes the command exit 1
    acted: bool = False  # False for a mailing that needed nothing (scheduled, sent earlier)
    total: int = 0
    accepted: int = 0  # overall, from the log
    failed: int = 0
    pending: int = 0
    sent_now: int = 0  # accepted in this run
    messages_now: int = 0
    failures: Counter[int] = field(default_factory=Counter)  # reply code -> recipients refused for good
    log: Path | None = None  # the send log, when this run wrote to it


class Recipient(NamedTuple):
    # A tuple, not a dataclass: a mailing makes tens of thousands of them, and a tuple is made several times faster.
    address: str
    hash: str


KEY_DIGITS = 24
# Seconds between the counts handed to the progress display while sending: a bar is redrawn at most ten times
# a second, a line in a log every few seconds.
PROGRESS_EVERY = 0.05


def batch_key(hashes: Sequence[str]) -> str:
    """Stable for the same recipients: the Message-ID is derived from it."""
    return hashlib.sha256("".join(hashes).encode("ascii")).hexdigest()[:KEY_DIGITS]


Unhashed = tuple[list[str], list[str], Hasher]  # normalised addresses, the addresses as written, their hasher


@dataclass(slots=True)
class Batch:
    """One transaction's recipients, its key (batch_key: the Message-ID is derived from it), and its message once
    rendered.

    A batch made by `unhashed_batches` has its recipients hashed (for the send log, and its key) by
    `hash_recipients`, which the dispatcher calls just before its first attempt: on a bulk mailing's first run,
    while the relay has other connections' transactions, instead of every recipient (50,000, about 20 ms) before
    the first connection."""

    recipients: list[Recipient]  # empty until hash_recipients, when unhashed
    key: str = ""
    message: bytes = b""
    unhashed: Unhashed | None = None

    def __len__(self) -> int:
        return len(self.unhashed[1]) if self.unhashed is not None else len(self.recipients)

    @property
    def addresses(self) -> list[str]:
        return [r.address for r in self.recipients]

    def hash_recipients(self) -> None:
        """Make the recipients and the key of a batch made unhashed."""
        if self.unhashed is not None:
            normalised, addresses, hasher = self.unhashed
            hashes = hasher.of_all_normalised(normalised)
            self.recipients = _made_recipients(addresses, hashes)
            self.key = batch_key(hashes)
            self.unhashed = None


@dataclass(frozen=True)
class RunContext:
    """What every mailing of one run shares."""

    root: Path
    policy: Policy
    options: SendOptions
    factory: TransportFactory
    hasher: Hasher
    progress: Progress


def send_all(root: Path, policy: Policy, options: SendOptions, progress: Progress | None = None) -> list[Outcome]:
    """Handle every mailing under *root* (or only options.only); never stops at the first that fails."""
    directories = _targets(root, options.only)
    factory = options.factory or transport_factory(options.settings)
    run = RunContext(root, policy, options, factory, make_hasher(options.log_key), progress or NullProgress())
    return [_handle(run, directory) for directory in directories]


def _targets(root: Path, only: str | None) -> list[Path]:
    directories = discover(root)
    if only is None:
        return directories
    chosen = [d for d in directories if d.name == only]
    if not chosen:
        raise UsageError(f"--only {only}: no mailing {MAILINGS_DIR}/{only}")
    return chosen


def _handle(run: RunContext, directory: Path) -> Outcome:
    mailing = load_mailing(run.root, directory, run.policy, special=run.options.special)
    log_path = directory / SENDLOG_FILE
    if mailing.is_symlink or log_path.is_symlink():
        # Writing the log through a link would write somewhere else; the attachments rule explains why.
        note = f"{mailing.directory}: a symbolic link in the request; it is not sent, and nothing is written"
        return Outcome(mailing.id, MailingState.BLOCKED, note, ok=False, acted=True)
    before = replay(log_path)
    decision = decide(mailing, before, run.options.now, run.policy)
    if decision.state is MailingState.MISSED and before.missed is not None:
        return Outcome(mailing.id, decision.state, decision.reason)  # recorded by an earlier run
    if not decision.actionable and decision.state is not MailingState.MISSED:
        return Outcome(mailing.id, decision.state, decision.reason)
    if run.options.dry_run:
        return _dry_run(run, mailing, before, decision)
    try:
        journal = Journal.open(log_path)
    except LockedError:
        return Outcome(
            mailing.id, MailingState.SENDING, "skipped: another `mailings send` is sending it now", acted=True
        )
    with journal:
        # Decide again under the lock: the log may have grown while we waited for it.
        log = journal.read()
        return _handle_locked(run, mailing, journal, log, decide(mailing, log, run.options.now, run.policy))


def _handle_locked(run: RunContext, mailing: Mailing, journal: Journal, log: Replay, decision: Decision) -> Outcome:
    written_at = stamp(run.options.wallclock())
    if decision.state is MailingState.MISSED:
        if log.missed is None:
            journal.append({"event": "missed", "time": written_at, "reason": decision.reason})
            return _outcome(mailing, decision.state, decision.reason, log, ok=False, written=journal.path)
        return Outcome(mailing.id, decision.state, decision.reason)
    if not decision.actionable:
        return Outcome(mailing.id, decision.state, decision.reason)
    reasons = _blocking_reasons(run, mailing, log)
    template = _template(mailing, run.policy) if not reasons else None
    if isinstance(template, str):
        reasons.append(template)
    if reasons or not isinstance(template, MessageTemplate):
        reason = "; ".join(reasons)
        if log.blocked != reason:  # the same reason again (every scheduled run) is not news for the log
            journal.append({"event": "blocked", "time": written_at, "reason": reason})
        return _outcome(mailing, MailingState.BLOCKED, reason, log, ok=False, written=journal.path)
    sending = MailingRun(run, mailing, journal, log, plan(mailing, run.policy, run.hasher, log), template)
    return eventloop.run(sending.run(), run.options.event_loop)


def _template(mailing: Mailing, policy: Policy) -> MessageTemplate | str:
    """The mailing's message, or why it cannot be built (the rules should have said so first)."""
    try:
        return build_template(mailing, policy)
    except MessageError as exc:
        return f"the message cannot be built: {exc}"


def _blocking_reasons(run: RunContext, mailing: Mailing, log: Replay) -> list[str]:
    """Why *mailing* must not be sent now: the send-time rules' errors, a send log we cannot read."""
    now = run.options.now
    # The submission date only matters to the rules that judge it at submission (lead-time is not run).
    context = Context(submitted=now.date(), now=now, stage="send")
    reasons = [_problem_text(p) for p in check_mailing(mailing, run.policy, context) if p.level == "error"]
    scheme = log.scheme_problem(run.hasher)
    if scheme:
        reasons.append(scheme)
    return reasons


def _problem_text(problem: Problem) -> str:
    return f"{problem.file}:{problem.line}:{problem.column}: [{problem.rule}] {problem.message}"


def _unique_addresses(mailing: Mailing) -> tuple[list[str], list[str]]:
    """Every unique valid address of every list, in list order, as the rules judged them (checks.addresses):
    normalised, and as written."""
    unique = mailing.recipients.unique
    return list(unique), [entry.address for entry in unique.values()]


def _made_recipients(addresses: list[str], hashes: list[str]) -> list[Recipient]:
    # tuple.__new__ is what Recipient._make calls; called directly, it saves a Python function call per address.
    return list(map(tuple.__new__, repeat(Recipient), zip(addresses, hashes, strict=True)))


def _recipients(mailing: Mailing, hasher: Hasher) -> list[Recipient]:
    """`_unique_addresses` as Recipients, hashed."""
    normalised, addresses = _unique_addresses(mailing)
    return _made_recipients(addresses, hasher.of_all_normalised(normalised))


def batch_size(mailing: Mailing, policy: Policy) -> int:
    """Recipients per transaction: policy.sending.batch_size in bulk mode, one in individual mode."""
    return 1 if delivery_mode(mailing, policy) == "individual" else max(1, policy.sending.batch_size)


def batches(mailing: Mailing, policy: Policy, recipients: Sequence[Recipient]) -> list[Batch]:
    """Bulk: consecutive runs of batch_size recipients; individual: one each. Same recipients, same key."""
    size = batch_size(mailing, policy)
    if size == 1:
        # batch_key of each recipient alone, without two lists per recipient: a third of the time for 10,000.
        sha256 = hashlib.sha256
        return [Batch([r], sha256(r.hash.encode("ascii")).hexdigest()[:KEY_DIGITS]) for r in recipients]
    found = []
    for start in range(0, len(recipients), size):
        chunk = list(recipients[start : start + size])
        found.append(Batch(chunk, batch_key([r.hash for r in chunk])))
    return found


def unhashed_batches(mailing: Mailing, size: int, hasher: Hasher) -> list[Batch]:
    """`batches` of every recipient, each hashed when first needed (see Batch)."""
    normalised, addresses = _unique_addresses(mailing)
    return [
        Batch([], unhashed=(normalised[start : start + size], addresses[start : start + size], hasher))
        for start in range(0, len(normalised), size)
    ]


@dataclass(frozen=True)
class Work:
    """A mailing's recipients for one run: how many there are, how many the log settled, and what is left."""

    total: int
    accepted: int  # by an earlier run
    failed: int  # for good, by an earlier run
    todo: list[Batch]


def plan(mailing: Mailing, policy: Policy, hasher: Hasher, log: Replay) -> Work:
    """The batches still to send: those of `batches` over the recipients the log has no outcome for."""
    done = log.accepted | log.failed.keys()
    size = batch_size(mailing, policy)
    if not done and size > 1:
        # A bulk mailing's first run: nobody to leave out, so each batch is hashed when it is first sent. (In
        # individual mode a hash per message while sending costs more than the hashes of all before it.)
        todo = unhashed_batches(mailing, size, hasher)
        return Work(len(mailing.recipients.unique), 0, 0, todo)
    recipients = _recipients(mailing, hasher)
    if not done:
        # The usual first run: no set of every hash to build and intersect with nothing.
        return Work(len(recipients), 0, 0, batches(mailing, policy, recipients))
    hashes = frozenset(r.hash for r in recipients)
    todo = batches(mailing, policy, [r for r in recipients if r.hash not in done])
    return Work(len(hashes), len(hashes & log.accepted), len(hashes & log.failed.keys()), todo)


def _dry_run(run: RunContext, mailing: Mailing, log: Replay, decision: Decision) -> Outcome:
    policy = run.policy
    if decision.state is MailingState.MISSED:
        return _outcome(mailing, decision.state, f"would be recorded as missed: {decision.reason}", log, ok=False)
    reasons = _blocking_reasons(run, mailing, log)
    if reasons:
        return _outcome(mailing, MailingState.BLOCKED, "would be blocked: " + "; ".join(reasons), log, ok=False)
    work = plan(mailing, policy, run.hasher, log)
    pending = sum(map(len, work.todo))
    mode = delivery_mode(mailing, policy)
    count = len(work.todo)
    connections = min(policy.sending.connections, count) or 1
    note = (
        f"would send {count} message{'s' if count != 1 else ''} to {pending} recipient"
        f"{'s' if pending != 1 else ''} ({mode}, {connections} connection{'s' if connections != 1 else ''})"
    )
    return _outcome(mailing, decision.state, note, log)


def _outcome(
    mailing: Mailing,
    state: MailingState,
    note: str,
    log: Replay,
    *,
    ok: bool = True,
    written: Path | None = None,
) -> Outcome:
    return Outcome(
        mailing.id,
        state,
        note,
        ok=ok,
        acted=True,
        total=log.recipients or 0,
        accepted=len(log.accepted),
        failed=len(log.failed),
        log=written,
    )


class RateLimiter:
    """At most *rate* messages per second over all connections (None: no limit)."""

    def __init__(self, rate: float | None, clock: Callable[[], float]) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._clock = clock
        self._next = 0.0

    @property
    def active(self) -> bool:
        return bool(self._interval)

    def reserve(self) -> float:
        """Take the next slot; the seconds to wait for it."""
        if not self._interval:
            return 0.0
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + self._interval
        return slot - now

    async def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


class Lane:
    """One connection's view of the send log's durability.

    Before each transaction the attempt is written, and the connection waits for an fsync unless the
    recipients whose events may not be on disk yet (earlier outcomes and this attempt) stay below one
    batch (policy.sending.batch_size). In bulk mode, where a transaction is a batch, that is an fsync
    before and after every transaction, shared by the connections; in individual mode one fsync covers
    many one-recipient transactions. Either way a power cut costs at most connections x batch size
    duplicates, and a killed process (which loses nothing written) only its transactions in flight.
    """

    def __init__(self, journal: Journal, window: int) -> None:
        self.journal = journal
        self.window = window
        self.unsynced: deque[tuple[int, int]] = deque()  # (ticket, recipients) of outcomes maybe not on disk
        self.count = 0  # recipients in self.unsynced

    def add(self, ticket: int, recipients: int) -> None:
        self.unsynced.append((ticket, recipients))
        self.count += recipients

    async def before(self, ticket: int, recipients: int) -> None:
        """Wait, if need be, until the attempt with *ticket* and what this connection wrote before are on disk."""
        synced = self.journal.synced
        while self.unsynced and self.unsynced[0][0] <= synced:
            self.count -= self.unsynced.popleft()[1]
        if self.count + recipients >= self.window:
            await self.journal.sync(ticket)
            self.unsynced.clear()
            self.count = 0
        elif 2 * (self.count + recipients) >= self.window:
            self.journal.kick()  # half way: an fsync in the background, so that we need not wait later


class FirstTries:
    """One connection's TransactionStream: the first try of each batch, back to back, until one needs a retry.

    The attempt is written before the transport writes any of the transaction; before its content goes out
    the connection waits for the disk as the Lane says; the outcome is written before the transport writes
    anything else (the stream contract), so a kill duplicates only transactions in flight. An outcome is held
    from `done` to the next `next` or `before_data`, with no wait in between, so that it goes into the send
    log in one write with the next attempt: one write per message instead of two, and the same lines in the
    same order. `write_held` writes what is held when the stream ends.
    """

    def __init__(self, run: MailingRun, todo: deque[Batch], lane: Lane) -> None:
        self.run = run
        self.todo = todo
        self.lane = lane
        self.retry: list[tuple[Batch, list[Recipient]]] = []  # what a 4xx or a lost connection left pending
        self.held: list[bytes] = []  # outcome lines not written yet (their events already applied to run.log)
        self.held_recipients = 0  # the recipients of self.held, for the Lane

    async def next(self) -> Batch | None:
        run, todo = self.run, self.todo
        # A batch to retry ends the stream: the connection backs off, as a retry wants, before it goes on.
        while todo and run.stop_reason is None and not self.retry:
            batch = todo.popleft()
            if batch.unhashed is not None:
                batch.hash_recipients()
            message = run.message(batch)
            if isinstance(message, list):
                self.hold(message, len(batch))
                continue
            if run.limiter.active:
                self.write_held()  # nothing known is left unwritten while we wait
                await run.limiter.wait()
            held, recipients = self.held, self.held_recipients
            self.held, self.held_recipients = [], 0
            ticket = run.attempt(batch, batch.recipients, before=held)
            if held:
                self.lane.add(ticket, recipients)
            return batch
        self.write_held()
        return None

    async def before_data(self, batch: Batch) -> None:
        self.write_held()
        await self.lane.before(self.run.journal.written, len(batch))

    def done(self, batch: Batch, result: TransactionResult) -> None:
        run = self.run
        run.messages_now += 1
        pending, lines = run.settle(batch, batch.recipients, result, final=run.tuning.retries <= 0)
        self.hold(lines, len(batch))
        if pending:
            self.retry.append((batch, pending))
        else:
            # Settled: the rendered bytes are not needed again, and freed now they are reused for the next
            # message instead of growing the process by a message per recipient (13 MB for 10,000).
            batch.message = b""

    def hold(self, lines: list[bytes], recipients: int) -> None:
        if lines:
            self.held.extend(lines)
            self.held_recipients += recipients

    def write_held(self) -> None:
        """Write the outcomes held back for the next attempt's write."""
        if self.held:
            self.lane.add(self.run.write(self.held), self.held_recipients)
            self.held, self.held_recipients = [], 0


class MailingRun:
    """One mailing's delivery in this run: batches over N connections, every outcome journalled.

    `log` starts as the replay of the send log and has each event applied as it is written, so
    counts and the final state come from the same place as a later replay.
    """

    def __init__(
        self,
        run: RunContext,
        mailing: Mailing,
        journal: Journal,
        log: Replay,
        work: Work,
        template: MessageTemplate,
    ) -> None:
        self.mailing = mailing
        self.template = template
        self.policy = run.policy
        self.options = run.options
        self.tuning = run.options.tuning
        self.factory = run.factory
        self.hasher = run.hasher
        self.progress_source = run.progress
        self.journal = journal
        self.log = log
        self.total = work.total
        self.todo = work.todo
        self.accepted_before = work.accepted > 0
        # Kept as counters: recounting the sets after every transaction would cost O(recipients) each time.
        self.accepted_count = work.accepted
        self.failed_count = work.failed
        self.mode = delivery_mode(mailing, run.policy)
        self.limiter = RateLimiter(run.policy.sending.rate_limit, run.options.monotonic)
        self._monotonic = run.options.monotonic
        self._progress_due = float("-inf")  # when the counts go to the progress display next
        self.failures: Counter[int] = Counter()  # this run's permanent refusals by reply code
        self.suspects: list[tuple[Recipient, Reply]] = []  # 5xx refusals before the relay accepted anyone
        self.confirmed = False  # the relay accepted a recipient in this run
        self.consecutive_failures = 0
        self.sent_now = 0
        self.messages_now = 0
        self.stop_reason: str | None = None
        self.progress: MailingProgress | None = None
        self.renderer = Renderer(template, run.options.now)
        self.lines = EventLines(run.options.run_id)
        self._stamped_at = float("-inf")
        self._stamp = ""

    def counts(self) -> tuple[int, int, int]:
        """(accepted, failed, pending) over this mailing's current recipients."""
        return self.accepted_count, self.failed_count, self.total - self.accepted_count - self.failed_count

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    def _now(self) -> str:
        """The send log's time stamp. Stamps have milliseconds: one reading of the wall clock serves every event
        within a millisecond of it (a one-recipient message has two events, and reading and formatting the
        clock in the policy's time zone cost more than writing them)."""
        tick = self.options.monotonic()
        if tick - self._stamped_at >= 0.001:
            self._stamped_at = tick
            self._stamp = stamp(self.options.wallclock())
        return self._stamp

    def _event(self, kind: str, **fields: object) -> Event:
        return {"event": kind, "time": self._now(), "run": self.options.run_id, **fields}

    def _logged(self, event: Event) -> bytes:
        """*event* applied to self.log, and its line for the journal."""
        self.log.apply(event)
        return encode(event)

    async def _record(self, *events: Event) -> None:
        await self.journal.write(*events)
        for event in events:
            self.log.apply(event)

    async def run(self) -> Outcome:
        todo = deque(self.todo)
        connections = max(1, min(self.policy.sending.connections, len(todo)))
        scheme: dict[str, object] = {"hash": self.hasher.scheme}
        if self.hasher.key_check:
            scheme["key_check"] = self.hasher.key_check
        await self._record(
            self._event(
                "start",
                recipients=self.total,
                pending=sum(map(len, todo)),
                mode=self.mode,
                batch_size=self.policy.sending.batch_size,
                connections=connections,
                **scheme,
            )
        )
        self.progress = self.progress_source.begin(self.mailing.id, self.total)
        self._report_progress()
        if todo:
            await self._deliver_all(todo, connections)
        await self._settle_suspects()
        return await self._finish()

    async def _deliver_all(self, todo: deque[Batch], connections: int) -> None:
        transports = await self._open(connections)
        try:
            await asyncio.gather(*(self._worker(t, todo) for t in transports))
        finally:
            await asyncio.gather(*(t.close() for t in transports), return_exceptions=True)

    async def _open(self, connections: int) -> list[Transport]:
        # One connection first: a wrong password or an unreachable relay costs one attempt, not N.
        first = self.factory()
        reply = await first.open()
        if reply is not None:
            await first.close()
            self.stop(_connect_failure(reply))
            return []
        others = [self.factory() for _ in range(connections - 1)]
        replies = await asyncio.gather(*(t.open() for t in others))
        opened = [first]
        for transport, failure in zip(others, replies, strict=True):
            if failure is None:
                opened.append(transport)
            else:
                await transport.close()  # the others carry on
        return opened

    async def _worker(self, transport: Transport, todo: deque[Batch]) -> None:
        lane = Lane(self.journal, max(1, self.policy.sending.batch_size))
        while todo and self.stop_reason is None:
            tries = FirstTries(self, todo, lane)
            try:
                await transport.send_stream(self.template.envelope_from, tries)
            finally:
                tries.write_held()  # the last outcomes, which no next attempt carried
            await self._retry(transport, tries.retry, lane)

    async def _retry(self, transport: Transport, waiting: list[tuple[Batch, list[Recipient]]], lane: Lane) -> None:
        """Send each batch's *waiting* recipients again after a backoff, until each has an outcome or the retries
        run out (deferred)."""
        attempt = 1
        while waiting and self.stop_reason is None:
            await asyncio.sleep(self._backoff(attempt))
            again: list[tuple[Batch, list[Recipient]]] = []
            for batch, pending in waiting:
                if self.stop_reason is not None:
                    again.append((batch, pending))
                    continue
                if self.limiter.active:
                    await self.limiter.wait()
                await lane.before(self.attempt(batch, pending), len(pending))
                result = await transport.send(self.template.envelope_from, [r.address for r in pending], batch.message)
                self.messages_now += 1
                left, lines = self.settle(batch, pending, result, final=attempt >= self.tuning.retries)
                if lines:
                    lane.add(self.write(lines), len(pending))
                if left:
                    again.append((batch, left))
            waiting = again
            attempt += 1
        for batch, pending in waiting:
            # Tried, then stopped before they had an outcome: say so, rather than leave them looking in flight.
            reply = Reply(451, f"not tried again: {self.stop_reason or 'the run stopped'}")
            lane.add(self.write([self._deferred_line(batch.key, pending, reply)]), len(pending))

    def attempt(self, batch: Batch, pending: list[Recipient], before: Sequence[bytes] = ()) -> int:
        """Write the attempt to send *pending* of *batch*, after the lines *before* (events already applied to
        self.log) in the same write; the ticket for its fsync."""
        hashes = [r.hash for r in pending]
        now = self._now()
        line = self.lines.attempt(now, batch.key, hashes)
        ticket = self.journal.write_lines(b"".join((*before, line)) if before else line, len(before) + 1)
        self.log.note_attempt(now, hashes)
        return ticket

    def write(self, lines: list[bytes]) -> int:
        """Write *lines* (their events already applied to self.log) at once, so a killed process keeps them;
        the ticket for their fsync."""
        return self.journal.write_lines(b"".join(lines), len(lines))

    def _backoff(self, attempt: int) -> float:
        delays = self.tuning.backoff
        return delays[min(attempt, len(delays)) - 1] if delays else 0.0

    def message(self, batch: Batch) -> bytes | list[bytes]:
        """The batch's message, rendered once (a retry sends the same bytes, the same Message-ID); or, when it
        cannot be rendered, the lines that record its recipients as refused."""
        if batch.message:
            return batch.message
        to = batch.recipients[0].address if self.mode == "individual" else self.template.group_to
        try:
            batch.message = self.renderer.render(to=to, key=batch.key)
        except MessageError as exc:
            # Only a recipient's own address can fail here (individual mode): refused for good, locally.
            refused = [
                (r, Reply(553, f"the address cannot be written in a To: header: {exc}")) for r in batch.recipients
            ]
            return self._failed_lines(batch.key, refused)
        return batch.message

    def settle(
        self, batch: Batch, pending: list[Recipient], result: TransactionResult, *, final: bool
    ) -> tuple[list[Recipient], list[bytes]]:
        """The recipients to try again, and the lines that record the transaction's outcome (applied to the log)."""
        whole = _transaction_error(pending, result)
        accepted, permanent, temporary = _classify(pending, result, whole)
        events: list[bytes] = []
        if accepted:
            self.confirmed = True
            hashes = [r.hash for r in accepted]
            now = self._now()
            events.append(self.lines.accepted(now, batch.key, hashes, 250))
            self.log.note_accepted(now, hashes)
            self.sent_now += len(accepted)
            self.accepted_count += len(accepted)
            events.extend(self._failed_lines(batch.key, self._take_suspects()))
        events.extend(self._permanent(batch.key, permanent))
        if whole is None or accepted or permanent:
            self.consecutive_failures = 0  # the relay is answering, recipient by recipient
        else:
            self.consecutive_failures += 1
        if whole is not None and whole.code // 100 == 5:
            # MAIL FROM or DATA refused for good: every batch would be, so this mailing stops here.
            self.stop(f"the relay refused the message: {whole.code} {scrub(whole.message)}")
        elif whole is not None and self.consecutive_failures >= self.tuning.max_consecutive_failures:
            self.stop(
                f"the relay failed {self.consecutive_failures} transactions in a row (the last: {whole.code} "
                f"{scrub(whole.message)}); the rest is left for the next run"
            )
        retry = temporary
        if temporary and (final or self.stop_reason is not None):
            events.append(self._deferred_line(batch.key, temporary, _pending_reply(result, temporary)))
            retry = []
        if self._monotonic() >= self._progress_due:
            self._report_progress()
        return retry, events

    def _permanent(self, key: str, refused: list[tuple[Recipient, Reply]]) -> list[bytes]:
        if not refused:
            return []
        if self.confirmed:
            return self._failed_lines(key, refused)
        # Until the relay has accepted someone, a 5xx may be about us (relaying denied), not the recipient.
        self.suspects.extend(refused)
        if len(self.suspects) >= min(self.tuning.probe_recipients, self.total):
            reply = self.suspects[-1][1]
            self.stop(
                f"the relay refused every recipient so far ({len(self.suspects)}, none accepted; the last: "
                f"{reply.code} {scrub(reply.message)}); it does not take this mail: check the relay and the "
                "MAILINGS_SMTP_* settings. None of them was recorded as failed"
            )
        return []

    def _take_suspects(self) -> list[tuple[Recipient, Reply]]:
        taken, self.suspects = self.suspects, []
        return taken

    def _failed_lines(self, key: str, refused: list[tuple[Recipient, Reply]]) -> list[bytes]:
        lines = []
        for recipient, reply in refused:
            self.failures[reply.code] += 1
            self.failed_count += 1
            event = self._event("failed", batch=key, rcpt=recipient.hash, code=reply.code, message=scrub(reply.message))
            lines.append(self._logged(event))
        return lines

    def _deferred_line(self, key: str, recipients: Sequence[Recipient], reply: Reply) -> bytes:
        return self._logged(
            self._event(
                "deferred", batch=key, rcpt=[r.hash for r in recipients], code=reply.code, message=scrub(reply.message)
            )
        )

    async def _settle_suspects(self) -> None:
        """Refusals no acceptance confirmed: failures if the relay took this mailing before, else pending."""
        suspects = self._take_suspects()
        if not suspects:
            return
        if self.accepted_before and self.stop_reason is None:
            lines = self._failed_lines("", suspects)
        else:
            lines = [self._deferred_line("", [r for r, _ in suspects], suspects[-1][1])]
        await self.journal.sync(self.write(lines))

    async def _finish(self) -> Outcome:
        accepted, failed, pending = self.counts()
        end = self._event("end", accepted=accepted, failed=failed, pending=pending, complete=pending == 0)
        if self.stop_reason:
            end["reason"] = self.stop_reason
        await self._record(end)
        self._report_progress()
        if self.progress is not None:
            self.progress.finish()
        decision = decide(self.mailing, self.log, self.options.now, self.policy)
        return Outcome(
            self.mailing.id,
            decision.state,
            self._note(pending),
            ok=self.stop_reason is None,
            acted=True,
            total=self.total,
            accepted=accepted,
            failed=failed,
            pending=pending,
            sent_now=self.sent_now,
            messages_now=self.messages_now,
            failures=self.failures,
            log=self.journal.path,
        )

    def _note(self, pending: int) -> str:
        if self.stop_reason:
            return f"stopped: {self.stop_reason}"
        if not pending:
            return "complete"
        return f"{pending} recipient(s) deferred by the relay; the next run tries them again"

    def _report_progress(self) -> None:
        """Hand the counts to the progress display: at the start and the end, and between them at most every
        PROGRESS_EVERY seconds (once per transaction cost individual mode about 3% of its time)."""
        if self.progress is not None:
            self._progress_due = self._monotonic() + PROGRESS_EVERY
            self.progress.update(*self.counts())


def _transaction_error(pending: list[Recipient], result: TransactionResult) -> Reply | None:
    """The transaction's own error (MAIL FROM or DATA refused, the connection lost), or None when there is none
    or it only sums up that every recipient was refused, each for its own reason."""
    error = result.error
    if error is None:
        return None
    refusals = [result.refused.get(r.address) for r in pending]
    if any(reply is None for reply in refusals):
        return error  # some recipients were accepted, or never answered: DATA failed, or the connection did
    if error.code in {reply.code for reply in refusals if reply is not None}:
        return None  # every recipient refused, one by one
    return error  # MAIL FROM refused; the RCPT replies after it (503 bad sequence) only follow from that


def _classify(
    pending: list[Recipient], result: TransactionResult, whole: Reply | None
) -> tuple[list[Recipient], list[tuple[Recipient, Reply]], list[Recipient]]:
    """Split *pending* into accepted, refused for good (5xx, with the reply) and to try again (4xx, lost)."""
    if result.error is None and not result.refused and len(result.accepted) == len(pending):
        return list(pending), [], []  # the common case: the transport accepted every address it was given
    if whole is not None and all(r.address in result.refused for r in pending):
        return [], [], list(pending)  # refused as a whole: no recipient's own fault
    accepted_addresses = set(result.accepted)
    accepted: list[Recipient] = []
    permanent: list[tuple[Recipient, Reply]] = []
    temporary: list[Recipient] = []
    for recipient in pending:
        reply = result.refused.get(recipient.address)
        if reply is None and result.error is None and recipient.address in accepted_addresses:
            accepted.append(recipient)
        elif reply is not None and reply.code // 100 == 5:
            permanent.append((recipient, reply))
        else:
            temporary.append(recipient)  # 4xx, the transaction's error, or no word on it: try again
    return accepted, permanent, temporary


def _pending_reply(result: TransactionResult, recipients: Sequence[Recipient]) -> Reply:
    """The reply that explains why *recipients* are still pending."""
    for recipient in recipients:
        reply = result.refused.get(recipient.address)
        if reply is not None:
            return reply
    return result.error or Reply(451, "no reply for these recipients")


def _connect_failure(reply: Reply) -> str:
    hint = ""
    if reply.code in (530, 534, 535, 538):
        hint = "; check MAILINGS_SMTP_USERNAME and MAILINGS_SMTP_PASSWORD"
    elif reply.code // 100 == 4:
        hint = "; the next run tries again"
    return f"cannot open a session with the relay: {reply.code} {scrub(reply.message)}{hint}; nothing was sent"

"""Pace: when the next transaction may start, and whether one may start at all. It owns the rate limit, how far
the send log on disk may lag (`Lane`), how far the record on the remote may lag (`Checkpoints`) and a request to
stop (`StopRequest`, from SIGTERM or SIGINT); it never decides what is sent or what became of it, and never
talks to a relay.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from sender.journal import Journal

# After a stop request, transactions already under way get this long to be answered before they are cut off
# (their recipients stay in flight: the next run sends them again). Cancelling a workflow run on GitHub sends
# SIGINT, SIGTERM 7.5 s later and SIGKILL 2.5 s after that, so the run must have ended well before.
STOP_GRACE_SECONDS = 3.0

# The remote record may lag behind what was attempted by at most this many recipients or seconds: what a lost
# runner (killed, out of disk, off the network) can cost in duplicates.
CHECKPOINT_RECIPIENTS = 2000
CHECKPOINT_SECONDS = 30.0


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


class Checkpoints:
    """How far the remote record may lag: a checkpoint starts once half the bound of recipients was attempted
    since the last, or *seconds* went by with anything new, and runs while sending goes on; a transaction that
    would take the recipients attempted since the last checkpoint that reached the remote past *recipients*
    waits for it. When a checkpoint fails, `room` says no and the run stops (fail closed).

    *push* pushes the log as it is on disk now (sender.record); None for a run without a remote record, where
    nothing ever waits."""

    def __init__(
        self,
        push: Callable[[], Awaitable[None]] | None,
        clock: Callable[[], float],
        *,
        recipients: int = CHECKPOINT_RECIPIENTS,
        seconds: float = CHECKPOINT_SECONDS,
    ) -> None:
        self._push = push
        self._clock = clock
        self.recipients = max(1, recipients)
        self.seconds = seconds
        self.attempted = 0  # recipients attempted in this run
        self.covered = 0  # of those, how many the last checkpoint that reached the remote covers
        self.pushes = 0
        self.failure: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._started_at = clock()

    @property
    def active(self) -> bool:
        return self._push is not None

    def attempt(self, count: int) -> None:
        """*count* recipients were attempted (their attempt is written to the journal)."""
        self.attempted += count

    async def room(self, count: int) -> bool:
        """Wait until *count* more recipients may be attempted; False when a checkpoint failed: stop sending."""
        if self._push is None:
            return True
        self._maybe_start()
        while self.failure is None and self.attempted + count - self.covered > self.recipients:
            if self._task is None:
                self._start()
            assert self._task is not None
            await asyncio.shield(self._task)
        return self.failure is None

    async def final(self) -> bool:
        """Push what is on disk now (the run's end), after any checkpoint under way; False if that failed."""
        if self._push is None:
            return True
        if self._task is not None:
            await asyncio.shield(self._task)
        if self.failure is None:
            self._start()
            assert self._task is not None
            await asyncio.shield(self._task)
        return self.failure is None

    def _maybe_start(self) -> None:
        if self._task is not None or self.failure is not None or self.attempted <= self.covered:
            return
        if 2 * (self.attempted - self.covered) >= self.recipients or self._clock() - self._started_at >= self.seconds:
            self._start()

    def _start(self) -> None:
        self._started_at = self._clock()
        self._task = asyncio.ensure_future(self._run(self.attempted))

    async def _run(self, covers: int) -> None:
        assert self._push is not None
        try:
            await self._push()
        except Exception as exc:  # any failure to record is a reason to stop sending, never a crash
            self.failure = str(exc) or type(exc).__name__
        else:
            self.covered = max(self.covered, covers)
            self.pushes += 1
        finally:
            self._task = None


class StopRequest:
    """A request to stop taking new transactions (a signal), shared by the whole run: the transactions under way
    settle and are recorded, the logs are pushed, and the command exits 130."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    @property
    def requested(self) -> bool:
        return self.reason is not None

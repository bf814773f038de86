"""Progress while sending, and the summary at the end, written to a stream the caller passes in.

On a terminal each mailing gets a live one-line bar, redrawn in place with a carriage
return; elsewhere (CI logs) a plain line every few seconds, since a log cannot redraw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TextIO

from checks.escape import escaped

if TYPE_CHECKING:
    from sender.dispatch import Outcome

BAR_WIDTH = 24
TTY_INTERVAL = 0.1  # seconds between redraws on a terminal
LOG_INTERVAL = 5.0  # seconds between plain lines in a log


class MailingProgress(Protocol):
    def update(self, accepted: int, failed: int, pending: int) -> None: ...

    def finish(self) -> None: ...


class Progress(Protocol):
    def begin(self, mailing_id: str, total: int) -> MailingProgress: ...


class _Silent:
    def update(self, accepted: int, failed: int, pending: int) -> None:
        pass

    def finish(self) -> None:
        pass


class NullProgress:
    """Shows nothing (library use, tests)."""

    def begin(self, mailing_id: str, total: int) -> MailingProgress:
        return _Silent()


class StreamProgress:
    """A bar on a terminal, plain lines otherwise; *clock* is a monotonic clock in seconds."""

    def __init__(self, stream: TextIO, clock: Callable[[], float], *, tty: bool | None = None) -> None:
        self.stream = stream
        self.clock = clock
        self.tty = stream.isatty() if tty is None else tty

    def begin(self, mailing_id: str, total: int) -> MailingProgress:
        return _Bar(self, mailing_id, total)


class _Bar:
    def __init__(self, owner: StreamProgress, mailing_id: str, total: int) -> None:
        self.owner = owner
        self.mailing_id = mailing_id
        self.total = total
        self.started = owner.clock()
        self.last_shown: float | None = None
        self.shown_counts: tuple[int, int, int] | None = None
        self.baseline: int | None = None  # recipients done before this run (an earlier, interrupted one)
        self.counts = (0, 0, total)
        self.width = 0

    def update(self, accepted: int, failed: int, pending: int) -> None:
        now = self.owner.clock()
        if self.baseline is None:
            self.baseline = accepted + failed
        self.counts = (accepted, failed, pending)
        interval = TTY_INTERVAL if self.owner.tty else LOG_INTERVAL
        if self.last_shown is None or now - self.last_shown >= interval:
            self._show(now)

    def finish(self) -> None:
        if self.owner.tty:
            self._show(self.owner.clock())
            self.owner.stream.write("\n")
        elif self.counts != self.shown_counts:
            self._show(self.owner.clock())

    def _show(self, now: float) -> None:
        self.last_shown = now
        self.shown_counts = self.counts
        line = render_line(self.mailing_id, *self.counts, self.total, self._rate(now))
        if self.owner.tty:
            pad = " " * max(0, self.width - len(line))  # wipe what a longer line left behind
            self.width = len(line)
            self.owner.stream.write(f"\r{line}{pad}")
        else:
            self.owner.stream.write(line + "\n")
        self.owner.stream.flush()

    def _rate(self, now: float) -> float | None:
        elapsed = now - self.started
        done = self.counts[0] + self.counts[1] - (self.baseline or 0)
        return done / elapsed if elapsed > 0 and done > 0 else None


def render_line(mailing_id: str, accepted: int, failed: int, pending: int, total: int, rate: float | None) -> str:
    """'2027-02-10-travel [#####-----]  41% 250 accepted, 2 failed, 348 pending, 120/s, 3 s left'."""
    done = accepted + failed
    share = done / total if total else 1.0
    filled = round(share * BAR_WIDTH)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    speed = f"{rate:.0f}/s" if rate else "-/s"
    left = _duration(pending / rate) + " left" if rate and pending else ("done" if not pending else "? left")
    return (
        f"{escaped(mailing_id)} [{bar}] {share:4.0%} {accepted} accepted, {failed} failed, {pending} pending, {speed}, "
        f"{left}"
    )


def _duration(value: float) -> str:
    seconds = round(value)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def write_summary(outcomes: Sequence[Outcome], stream: TextIO) -> None:
    """One line per mailing that this run acted on, then one line for the rest."""
    for outcome in outcomes:
        if outcome.acted:
            stream.write(summary_line(outcome) + "\n")
    idle = [o for o in outcomes if not o.acted]
    if idle:
        counts: dict[str, int] = {}
        for outcome in idle:
            counts[outcome.state.value] = counts.get(outcome.state.value, 0) + 1
        parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        stream.write(f"nothing to do for {len(idle)} other mailing{'s' if len(idle) != 1 else ''} ({parts})\n")
    if not outcomes:
        stream.write("no mailings\n")


def summary_line(outcome: Outcome) -> str:
    """'<id>: <state>: 598 accepted, 2 failed (550 x2), 0 pending; this run: ...; <note>'."""
    # one line whatever the request's names and reasons hold
    return escaped(_summary_text(outcome))


def _summary_text(outcome: Outcome) -> str:
    head = f"{outcome.mailing_id}: {outcome.state.value}"
    if not outcome.total and not outcome.sent_now:
        return f"{head}: {outcome.note}"
    codes = ", ".join(f"{code} x{n}" for code, n in sorted(outcome.failures.items()))
    failed = f"{outcome.failed} failed" + (f" ({codes} in this run)" if codes else "")
    this_run = (
        f"; this run: {outcome.sent_now} accepted in {outcome.messages_now} transaction"
        f"{'s' if outcome.messages_now != 1 else ''}"
        if outcome.messages_now
        else ""
    )
    unknown = f", {outcome.unknown} unknown" if outcome.unknown else ""
    return (
        f"{head}: {outcome.accepted} accepted, {failed}{unknown}, {outcome.pending} pending of {outcome.total}"
        f"{this_run}; {outcome.note}"
    )

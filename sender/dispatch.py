"""Dispatch: the send run. For every due mailing it composes the phases, each in its own module:

- plan (sender.plan): which recipients are still owed, in which batches, and the approved content's digest;
- record (sender.record): the claim on the remote before the first message, checkpoints while sending, the logs
  on main afterwards;
- pace (sender.pace): the rate limit, and how far the disk and the remote may lag behind what was attempted;
- deliver (sender.transport): one connection to the relay and its transactions;
- settle (sender.settle): what each reply means for each recipient, and whether the relay takes the mailing;
- journal (sender.journal): the send log on disk, written before anything is acknowledged.

This module owns the order of those steps and nothing else. A fault of one connection is settled on that
connection; a fault of one mailing, whatever it is, becomes that mailing's outcome and never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import signal
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from checks.errors import UsageError
from checks.linter import check_mailing
from checks.loader import MAILINGS_DIR, listing, load_mailing
from checks.model import SENDLOG_FILE, Context, Mailing, Problem
from checks.policy import Policy
from sender import eventloop, gitops
from sender.config import MaildirSettings, SmtpSettings
from sender.eventloop import LoopChoice
from sender.finished import Entry, entry_line, holds, read_index
from sender.finished import append as append_to_index
from sender.journal import (
    Event,
    EventLines,
    Hasher,
    Journal,
    LockedError,
    Replay,
    encode,
    is_summed_up,
    read_finished,
    replay,
    replay_lines,
    scrub,
    stamp,
    summary_event,
)
from sender.logkey import Keyring, keyring
from sender.message import MessageError, MessageTemplate, Renderer, build_template, delivery_mode
from sender.pace import (
    CHECKPOINT_RECIPIENTS,
    CHECKPOINT_SECONDS,
    STOP_GRACE_SECONDS,
    Checkpoints,
    Lane,
    RateLimiter,
    StopRequest,
)
from sender.plan import Batch, Recipient, Work, batch_size, plan, request_digest, within
from sender.progress import MailingProgress, NullProgress, Progress
from sender.quota import QUOTA_REASON, Quota, continues_at, day_of, today
from sender.record import ClaimLost, RecordError, RemoteLog, RemoteRecord, log_path, longer_log
from sender.settle import RelayJudge, connect_failure, pending_reply, settle
from sender.state import (
    RECORDED,
    Decision,
    MailingState,
    controls,
    decide,
    finished,
    miss_recorded,
    quota_reason,
    resends_unknown,
    resumable,
    start_of,
)
from sender.transport import Reply, TransactionResult, Transport, login_refused, transport_factory
from sender.verp import batch_token, recipient_token, recipient_tokens, token_frame

TransportFactory = Callable[[], Transport]

# Seconds between the counts handed to the progress display while sending: a bar is redrawn at most ten times
# a second, a line in a log every few seconds.
PROGRESS_EVERY = 0.05


@dataclass(frozen=True)
class Tuning:
    """How hard a run tries. The next scheduled run is the long retry, so these stay short."""

    retries: int = 3  # re-sends of a temporarily refused batch within one run
    backoff: tuple[float, ...] = (1.0, 2.0, 4.0)  # seconds before the 1st, 2nd, 3rd... re-send
    probe_recipients: int = 20  # 5xx refusals with none accepted that mean "the relay refuses everything"
    max_consecutive_failures: int = 10  # transactions in a row that failed as a whole: stop the mailing
    checkpoint_recipients: int = CHECKPOINT_RECIPIENTS  # the remote record lags by at most this many recipients
    checkpoint_seconds: float = CHECKPOINT_SECONDS  # ... or this many seconds
    # A claim whose last record is older than this belongs to a run that is gone (killed, cancelled): the next
    # run takes it over. A live run records at least every checkpoint_seconds while it sends.
    stale_claim: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class SendOptions:
    now: datetime  # decides what is due
    run_id: str
    settings: SmtpSettings | MaildirSettings
    wallclock: Callable[[], datetime]  # the times written into the send log
    monotonic: Callable[[], float]  # rate limit
    special: Mapping[str, Path] = field(default_factory=dict)
    log_key: str | None = None
    previous_keys: tuple[str, ...] = ()  # MAILINGS_LOG_KEY_PREVIOUS: keys that may have hashed existing logs
    only: str | None = None
    dry_run: bool = False
    tuning: Tuning = Tuning()
    factory: TransportFactory | None = None  # default: sender.transport.transport_factory(settings)
    event_loop: LoopChoice = "auto"  # sender.eventloop: uvloop where installed
    remote: RemoteRecord | None = None  # where claims and checkpoints go; None: this checkout alone
    hold: Brake = field(default_factory=lambda: Brake())  # MAILINGS_HOLD: the emergency brake
    stop: StopRequest = field(default_factory=StopRequest)  # set by SIGTERM or SIGINT: take no new transaction


@dataclass(frozen=True)
class Brake:
    """MAILINGS_HOLD: `all`, or the ids of the mailings to hold, without a pull request."""

    everything: bool = False
    ids: frozenset[str] = frozenset()

    def reason(self, mailing_id: str) -> str | None:
        if self.everything:
            return "MAILINGS_HOLD=all (the emergency brake)"
        if mailing_id in self.ids:
            return "MAILINGS_HOLD names it (the emergency brake)"
        return None


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
    unknown: int = 0  # overall: no reply to the end of their message, so maybe delivered; never sent again
    unknown_now: int = 0  # of those, in this run
    previous: MailingState | None = None  # the state before this run (None: not known, e.g. an internal error)
    # The send log as the run that delivered left it: its replay, kept with every event it wrote (MailingRun.log).
    replay: Replay | None = field(default=None, repr=False, compare=False)

    @property
    def changed(self) -> bool:
        """True when this run changed the mailing's state (what word back to people is about)."""
        return self.previous is not None and self.previous is not self.state


@dataclass(frozen=True)
class RunContext:
    """What every mailing of one run shares."""

    root: Path
    policy: Policy
    options: SendOptions
    factory: TransportFactory
    progress: Progress
    keyring: Keyring
    backfilled: list[str] = field(default_factory=list)  # finished logs this run tried to give the summary they lack
    index: Mapping[str, Entry | None] = field(default_factory=dict)  # of finished mailings (sender.finished)
    indexed: list[bytes] = field(default_factory=list)  # index lines this run adds (written at its end)

    @property
    def hasher(self) -> Hasher:
        """The key that hashes this run's new lines."""
        return self.keyring.current


def keyring_of(options: SendOptions) -> Keyring:
    """The run's keys: its log key hashes new lines, the previous ones still match lines written before."""
    return keyring(options.log_key, options.previous_keys)


def send_all(root: Path, policy: Policy, options: SendOptions, progress: Progress | None = None) -> list[Outcome]:
    """Handle every mailing under *root* (or only options.only); never stops at the first that fails."""
    names, links = _targets(root, options.only)
    factory = options.factory or transport_factory(options.settings)
    index = read_index(root)
    run = RunContext(root, policy, options, factory, progress or NullProgress(), keyring_of(options), index=index)
    outcomes = []
    base = root / MAILINGS_DIR
    # Strings, not paths, and one Decision per count of refused: this runs for every mailing ever sent.
    prefix, suffix, decided = f"{base}{os.sep}", f"{os.sep}{SENDLOG_FILE}", {}
    try:
        for name in names:
            if options.stop.requested:
                note = f"not handled: the run was stopped ({options.stop.reason}); the next run takes it up"
                outcomes.append(Outcome(name, MailingState.DUE, note, ok=False, acted=True))
                continue
            entry = index.get(name)
            if entry is not None and name not in links and holds(entry, prefix + name + suffix):
                # Indexed as finished, and its log is still the one indexed: one stat, nothing read (sender.finished).
                decision = decided.get(entry.failed)
                if decision is None:
                    decision = decided[entry.failed] = finished(entry)
                outcomes.append(Outcome(name, decision.state, decision.reason, previous=decision.state))
                continue
            outcomes.append(_handle_safely(run, base / name))
    finally:
        if not options.dry_run:
            append_to_index(root, run.indexed)
    return outcomes


def _handle_safely(run: RunContext, directory: Path) -> Outcome:
    """`_handle`, with any fault of this mailing turned into its outcome: the other mailings still go."""
    try:
        return _handle(run, directory)
    except OSError as exc:
        if exc.errno not in _DISK_ERRORS:
            return _internal_error(directory, exc)
        # The disk, not the mailing (full, read-only, failing): the log holds what was sent, up to the write that
        # failed, and the next run resumes from it.
        where = f"{exc.filename}: " if exc.filename else ""
        note = (
            f"stopped: the disk failed ({where}{exc.strerror or exc}); what was sent is in its log, and the next run "
            "resumes from it once the disk is fixed"
        )
        return Outcome(directory.name, _state_after_fault(directory), note, ok=False, acted=True)
    except Exception as exc:  # a bug: this mailing's problem, reported, never a traceback
        return _internal_error(directory, exc)


_DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG})


def _internal_error(directory: Path, exc: Exception) -> Outcome:
    note = f"stopped by an internal error ({type(exc).__name__}: {scrub(str(exc))}); what was sent is in its log"
    return Outcome(directory.name, MailingState.BLOCKED, note, ok=False, acted=True)


def _state_after_fault(directory: Path) -> MailingState:
    """Sending, when the mailing's log shows a run that began and did not end (the next run resumes it); else
    due, as nothing was sent."""
    try:
        log = replay(directory / SENDLOG_FILE)
    except OSError:
        return MailingState.SENDING  # it cannot be told: say what may have happened
    return MailingState.SENDING if log.open_run or log.claim_open else MailingState.DUE


def _targets(root: Path, only: str | None) -> tuple[list[str], frozenset[str]]:
    """The requests' names, or *only*, and which are symbolic links (checks.loader.listing)."""
    names, links = listing(root)
    if only is None:
        return names, links
    if only not in names:
        raise UsageError(f"--only {only}: no mailing {MAILINGS_DIR}/{only}")
    return [only], links


def _handle(run: RunContext, directory: Path) -> Outcome:
    # os.path on strings: this runs for every finished mailing that is not indexed (sender.finished).
    path = os.path.join(directory, SENDLOG_FILE)
    summary = None if os.path.islink(directory) else read_finished(path)
    if summary is not None and not summary.unknown:
        # Finished, and nobody whose outcome is unknown for a resume to send again: its summary is the whole
        # answer, without reading the request or replaying the log. Indexed, so that later runs need not read it.
        decision = finished(summary)
        _index(run, directory.name, path, decision.state.value, summary.failed, summary.send_at)
        return Outcome(directory.name, decision.state, decision.reason, previous=decision.state)
    mailing = load_mailing(run.root, directory, run.policy, special=run.options.special)
    log_path = directory / SENDLOG_FILE
    if mailing.is_symlink or log_path.is_symlink():
        # Writing the log through a link would write somewhere else; the attachments rule explains why.
        note = f"{mailing.directory}: a symbolic link in the request; it is not sent, and nothing is written"
        return Outcome(mailing.id, MailingState.BLOCKED, note, ok=False, acted=True)
    before = replay(log_path)
    # Reading every file of every finished mailing at every run would cost for ever: a complete log needs no
    # digest (unless it left unknown recipients that a resume may send).
    digest = "" if before.complete and not before.unknown else request_digest(mailing)
    brake = run.options.hold.reason(mailing.id)
    decision = decide(mailing, before, run.options.now, run.policy, digest, brake)
    news = decision.state in RECORDED and _news(mailing, run.policy, before, decision, brake)
    if decision.state in RECORDED and not news:
        return _recorded_control(mailing, decision)
    if decision.state is MailingState.MISSED and miss_recorded(before, digest, controls(mailing, run.policy)):
        # Recorded by an earlier run.
        return Outcome(mailing.id, decision.state, decision.reason, previous=decision.state)
    if decision.state in FINISHED and summary is None and not run.options.dry_run:
        return _backfill(run, mailing, log_path, decision)
    if not decision.actionable and decision.state is not MailingState.MISSED and not news:
        return Outcome(mailing.id, decision.state, decision.reason, previous=decision.state)
    if run.options.dry_run:
        if decision.state in RECORDED:  # held or cancelled: nothing would be sent
            return Outcome(mailing.id, decision.state, decision.reason, acted=True, previous=decision.state)
        return _dry_run(run, mailing, before, decision, digest)
    refused = login_refused(run.factory)
    if refused is not None and decision.actionable:
        # The relay refused this run's login for an earlier mailing: no second try, no claim, nothing written.
        return Outcome(mailing.id, decision.state, connect_failure(refused), ok=False, acted=True)
    try:
        journal = Journal.open(log_path)
    except LockedError:
        return Outcome(
            mailing.id, MailingState.SENDING, "skipped: another `mailings send` is sending it now", acted=True
        )
    with journal:
        remote: RemoteLog | None = None
        if run.options.remote is not None:
            adopted = _adopt_remote(run.options.remote, mailing, journal)
            if isinstance(adopted, str):
                return Outcome(mailing.id, decision.state, adopted, ok=False, acted=True, previous=decision.state)
            remote = adopted
        # Decide again under the lock: the log may have grown while we waited for it, or on the remote.
        log = journal.read()
        digest = digest or request_digest(mailing)
        decision = decide(mailing, log, run.options.now, run.policy, digest, brake)
        if decision.state in RECORDED:
            return _record_control(run, mailing, journal, log, decision, digest, brake)
        outcome = _handle_locked(run, mailing, journal, log, decision, digest, remote)
        # A miss this run recorded is news: until then the mailing was merely overdue.
        recorded_miss = outcome.state is MailingState.MISSED and outcome.log is not None
        outcome.previous = MailingState.DUE if recorded_miss else decision.state
        _tell_contact(run, mailing, journal, outcome)
        _summarise(run, mailing, journal, outcome)
        outcome.replay = None  # its sets of hashes are not kept while the run's other mailings go
        return outcome


FINISHED = frozenset({MailingState.SENT, MailingState.SENT_WITH_FAILURES})
# Finished logs without a summary (written before summaries were) that one run sums up: each costs a fetch
# of the remote, so a repository with years of them catches up over a few runs instead of in one long one.
BACKFILL_PER_RUN = 20


def _summarise(run: RunContext, mailing: Mailing, journal: Journal, outcome: Outcome) -> Replay | None:
    """End a log that this run finished with its summary (sender.journal.Summary), which later runs and
    `mailings status` read instead of the log. Pushed with the log: the same commit, the same protection.
    The replay of the log it summed up when it wrote one, else None."""
    if outcome.log is None or outcome.state not in FINISHED:
        return None
    data = journal.read_bytes()
    if is_summed_up(data):
        return None  # summed up already (a summary that does not fit is for `status --verify` to report)
    # The run that delivered kept the log's replay with every event it wrote, which is what a replay of the file
    # gives (a notice after it changes nothing a summary says): replaying 10,000 messages again took 30-60 ms.
    done = outcome.replay if outcome.replay is not None else replay_lines(data.split(b"\n"))
    if not done.complete:
        return None
    send_at = mailing.send_at.isoformat(timespec="minutes") if mailing.send_at is not None else None
    journal.append(summary_event(data, done, outcome.state.value, stamp(run.options.wallclock()), send_at))
    # Indexed only as later runs would read it: a summary that fits the log (read_finished), and nobody unknown.
    written = read_finished(journal.path)
    if written is not None and not written.unknown and not done.unknown_count:
        _index(run, mailing.id, str(journal.path), finished(written).state.value, written.failed, written.send_at)
    return done


def _index(run: RunContext, mailing_id: str, path: str, state: str, failed: int, send_at: str | None) -> None:
    """Add a finished mailing to the index of finished mailings (sender.finished), with its log's size now."""
    if run.options.dry_run or mailing_id in run.index:
        return  # indexed already (an entry that no longer holds is not replaced: the log is read instead)
    with contextlib.suppress(OSError):
        run.indexed.append(entry_line(mailing_id, os.stat(path).st_size, state, failed, send_at))


def _backfill(run: RunContext, mailing: Mailing, log_path: Path, decision: Decision) -> Outcome:
    """A finished mailing whose log has no summary (finished before summaries were written, or by a run that
    could only put its log on the claim branch): give it one, under the lock and from the remote's log, so that
    later runs need not replay it."""
    outcome = Outcome(mailing.id, decision.state, decision.reason, previous=decision.state)
    if len(run.backfilled) >= BACKFILL_PER_RUN:
        return outcome
    run.backfilled.append(mailing.id)  # tried, summed up or not: a log that cannot be costs one try a run
    try:
        journal = Journal.open(log_path)
    except LockedError:
        return outcome
    with journal:
        if run.options.remote is not None and isinstance(_adopt_remote(run.options.remote, mailing, journal), str):
            return outcome  # the remote cannot be read now: the next run tries again
        # The log is read and replayed once, by _summarise, which sums it up only when it is complete.
        log = _summarise(run, mailing, journal, replace(outcome, log=journal.path))
        if log is not None:
            outcome.log = journal.path
            outcome.total, outcome.accepted, outcome.failed = log.recipients or 0, log.accepted_count, log.failed_count
            outcome.unknown = log.unknown_count
    return outcome


def _news(mailing: Mailing, policy: Policy, log: Replay, decision: Decision, brake: str | None) -> bool:
    """True when a held or cancelled state is not in the send log yet (the run records it once)."""
    if decision.state is MailingState.CANCELLED:
        return log.cancelled is None
    return log.held != controls(mailing, policy, brake).hold


def _record_control(
    run: RunContext,
    mailing: Mailing,
    journal: Journal,
    log: Replay,
    decision: Decision,
    digest: str,
    brake: str | None,
) -> Outcome:
    """Write a hold or a cancellation into the send log the first time a run finds it, so that it is news once
    (and a cancellation stays final even if the field were removed)."""
    if not _news(mailing, run.policy, log, decision, brake):
        return _recorded_control(mailing, decision)
    control = controls(mailing, run.policy, brake)
    kind = "cancelled" if decision.state is MailingState.CANCELLED else "held"
    reason = control.cancel if kind == "cancelled" else control.hold
    journal.append({"event": kind, "time": stamp(run.options.wallclock()), "reason": reason})
    before = decide(mailing, log, run.options.now, run.policy, digest, with_controls=False)
    outcome = _outcome(mailing, decision.state, decision.reason, log, written=journal.path)
    outcome.previous = before.state
    _tell_contact(run, mailing, journal, outcome)
    return outcome


def _recorded_control(mailing: Mailing, decision: Decision) -> Outcome:
    """A hold or a cancellation an earlier run recorded. A hold is reported every run, so that a held mailing never
    looks forgotten; a cancellation is final, so after the run that recorded it, it is counted with the mailings
    there is nothing to do for, not given a line of every run's output for good."""
    held = decision.state is MailingState.HELD
    return Outcome(mailing.id, decision.state, decision.reason, acted=held, previous=decision.state)


def _tell_contact(run: RunContext, mailing: Mailing, journal: Journal, outcome: Outcome) -> None:
    """Word back by mail (sender.notice): the contact person hears once that the mailing completed, or was
    blocked, missed or cancelled. The send log records the notice before it goes, so it never goes twice; a
    notice that cannot be sent is said in the outcome's note and changes nothing else."""
    if not run.policy.notify.mail_contact or not outcome.changed:
        return
    from sender.notice import OPENINGS, build_notice, contact_address, deliver_notice  # the email package: on need

    state = outcome.state.value
    if state not in OPENINGS:
        return
    to = contact_address(mailing)
    log = journal.read()
    if to is None or state in log.noticed:
        return
    when = run.options.wallclock()
    counts = (outcome.total, outcome.accepted, outcome.failed, outcome.unknown, outcome.pending)
    message = build_notice(mailing, run.policy, state, counts, outcome.note, when, to)
    journal.append({"event": "notice", "time": stamp(when), "state": state})
    outcome.log = journal.path
    sender = run.policy.default_from_address
    failure = eventloop.run(deliver_notice(run.factory, sender, to, message), run.options.event_loop)
    if failure is not None:
        outcome.note += f"; the contact person could not be told ({failure})"


def _adopt_remote(record: RemoteRecord, mailing: Mailing, journal: Journal) -> RemoteLog | str:
    """Make the checkout's log the record: the remote's when it is longer, ours when the remote lacks our last
    events (a checkpoint that failed); why not, when the two differ or the remote cannot be read."""
    try:
        record.fetch()
        remote = record.read(mailing.id)
    except RecordError as exc:
        return f"not sent: {exc}; nothing was sent"
    if remote.conflict:
        return f"not sent: {remote.conflict}"
    local = journal.read_bytes()
    merged = longer_log(local, remote.log)
    if merged is None and gitops.unchanged_since_checkout(record.root, log_path(mailing.id)):
        # The checkout's copy as the repository's attributes wrote it (line ends, filters): git's own bytes count.
        merged = longer_log(gitops.read_blob(record.root, "HEAD", log_path(mailing.id)) or b"", remote.log)
    if merged is None:
        return (
            f"not sent: the send log in this checkout and the one on {record.remote} differ, and neither extends "
            "the other; nothing was sent. Compare them, keep the true one, and record it with `mailings record`"
        )
    if merged != local:
        journal.replace(merged)
    return remote


def _handle_locked(
    run: RunContext,
    mailing: Mailing,
    journal: Journal,
    log: Replay,
    decision: Decision,
    digest: str,
    remote: RemoteLog | None,
) -> Outcome:
    options = run.options
    written_at = stamp(options.wallclock())
    if decision.state is MailingState.MISSED:
        if not miss_recorded(log, digest, controls(mailing, run.policy)):
            missed = {"event": "missed", "time": written_at, "reason": decision.reason, "digest": digest}
            control = controls(mailing, run.policy)
            if control.resume_text is not None and resumable(log):
                missed["resume_at"] = control.resume_text
            journal.append(missed)
            return _outcome(mailing, decision.state, decision.reason, log, ok=False, written=journal.path)
        return Outcome(mailing.id, decision.state, decision.reason)
    if not decision.actionable:
        return Outcome(mailing.id, decision.state, decision.reason)
    holder = _live_claim(run, log)
    if holder is not None:
        return Outcome(mailing.id, MailingState.SENDING, holder, acted=True)
    reasons = _blocking_reasons(run, mailing, log, digest)
    template = _template(mailing, run.policy) if not reasons else None
    if isinstance(template, str):
        reasons.append(template)
    if reasons or not isinstance(template, MessageTemplate):
        reason = "; ".join(reasons)
        if log.blocked != reason:  # the same reason again (every scheduled run) is not news for the log
            journal.append({"event": "blocked", "time": written_at, "reason": reason})
        return _outcome(mailing, MailingState.BLOCKED, reason, log, ok=False, written=journal.path)
    control = controls(mailing, run.policy)
    resend = resends_unknown(log, control)
    work = plan(mailing, run.policy, run.hasher, log, resend_unknown=resend, others=run.keyring.others(log.hashed_with))
    quota = _quota(run)
    if quota is not None:
        if not quota.left and work.todo:
            return _quota_wait(run, mailing, journal, log, quota, work, digest)
        if sum(map(len, work.todo)) > quota.left:
            # Up to the day's quota now; the rest on the next day (a quota event records when).
            work = dataclasses.replace(work, todo=within(work.todo, quota.left))
    claimed = _claim(run, mailing, journal, work, digest, remote, written_at, control.resume_text if resend else None)
    if claimed is not None:
        return claimed
    sending = MailingRun(run, mailing, journal, journal.read(), work, template, quota)
    return eventloop.run(sending.run(), options.event_loop)


def _quota(run: RunContext) -> Quota | None:
    """The relay's day quota as the send logs have it now (sender.quota); None without one."""
    limit = run.policy.sending.recipients_per_day
    return None if limit is None else today(run.root, run.options.now, run.policy.timezone, limit)


def _quota_wait(
    run: RunContext, mailing: Mailing, journal: Journal, log: Replay, quota: Quota, work: Work, digest: str
) -> Outcome:
    """Nothing left of the day's quota: no claim and no start, only (once a day) a quota event that says when the
    mailing continues, so that it is not taken for late meanwhile."""
    continues = continues_at(quota.day, start_of(mailing, log, run.policy), run.policy.timezone)
    if log.quota_continues != continues.isoformat():
        journal.append(_quota_event(stamp(run.options.wallclock()), run.options.run_id, quota, work.total, continues))
    after = journal.read()
    decision = decide(mailing, after, run.options.now, run.policy, digest)
    written = journal.path if after.quota_continues != log.quota_continues else None
    return _outcome(mailing, decision.state, decision.reason, after, written=written)


def _quota_event(time: str, run_id: str, quota: Quota, recipients: int, continues: datetime) -> Event:
    return {
        "event": "quota",
        "time": time,
        "run": run_id,
        "day": quota.day.isoformat(),
        "limit": quota.limit,
        "used": quota.used,
        "recipients": recipients,
        "continues": continues.isoformat(),
    }


def _live_claim(run: RunContext, log: Replay) -> str | None:
    """Why another run's claim stops this one, or None. Only a claim on the remote counts (in a checkout alone,
    the lock on the log is the claim, and a claim without its lock is a killed run's), and only while it is
    fresh: a run that sends records at least every checkpoint interval."""
    if run.options.remote is None or not log.claim_open or log.claim_run == run.options.run_id:
        return None
    last = _parsed(log.last_time)
    if last is None or run.options.now - last >= run.options.tuning.stale_claim:
        return None  # a run that is gone: take it over (the remote still lets only one of us through)
    return (
        f"skipped: run {log.claim_run} claimed it and recorded progress at {log.last_time}; it is sending it now "
        f"(a claim older than {run.options.tuning.stale_claim} is taken over by the next run)"
    )


def _parsed(text: str | None) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return moment if moment is None or moment.tzinfo is not None else None


def _claim(
    run: RunContext,
    mailing: Mailing,
    journal: Journal,
    work: Work,
    digest: str,
    remote: RemoteLog | None,
    written_at: str,
    resume_unknown: str | None = None,
) -> Outcome | None:
    """Write this run's claim, and push it when there is a remote record; the outcome when it cannot be
    pushed (nothing was sent, and the claim is taken back out of the log), else None: send."""
    options = run.options
    pending = sum(map(len, work.todo))
    size = journal.size()
    event = {
        "event": "claim",
        "time": written_at,
        "run": options.run_id,
        "digest": digest,
        "recipients": work.total,
        "pending": pending,
    }
    if resume_unknown is not None:
        event["resume_unknown"] = resume_unknown
    try:
        journal.append(event)
        data = journal.read_bytes()
    except OSError as exc:
        return Outcome(mailing.id, MailingState.DUE, f"not sent: the send log cannot be written: {exc}", ok=False)
    if not data.endswith(encode(event)) or len(data) != size + len(encode(event)):
        journal.truncate(size)
        note = "not sent: the send log does not read back as it was written (check the disk and the checkout)"
        return Outcome(mailing.id, MailingState.DUE, note, ok=False, acted=True)
    if options.remote is None or remote is None:
        return None
    try:
        message = f"Claim: {mailing.id} by run {options.run_id}, {pending} recipient(s) to send\n"
        options.remote.claim(mailing.id, data, remote, message)
    except ClaimLost as exc:
        journal.truncate(size)
        return Outcome(mailing.id, MailingState.SENDING, f"skipped: {exc}; nothing was sent", acted=True)
    except (RecordError, OSError) as exc:
        journal.truncate(size)
        note = f"not sent: the claim could not be recorded on the remote, so nothing was sent: {exc}"
        return Outcome(mailing.id, MailingState.DUE, note, ok=False, acted=True)
    return None


def _template(mailing: Mailing, policy: Policy) -> MessageTemplate | str:
    """The mailing's message, or why it cannot be built (the rules should have said so first)."""
    try:
        return build_template(mailing, policy)
    except MessageError as exc:
        return f"the message cannot be built: {exc}"


def _blocking_reasons(run: RunContext, mailing: Mailing, log: Replay, digest: str) -> list[str]:
    """Why *mailing* must not be sent now: the send-time rules' errors, a send log we cannot read, content that
    differs from what the first claim pinned."""
    now = run.options.now
    # The submission date only matters to the rules that judge it at submission (lead-time is not run).
    context = Context(submitted=now.date(), now=now, stage="send")
    reasons = [_problem_text(p) for p in check_mailing(mailing, run.policy, context) if p.level == "error"]
    scheme = run.keyring.problem(log.hashed_with)
    if scheme:
        reasons.append(scheme)
    if log.claim_digest is not None and log.claim_digest != digest:
        reasons.append(
            f"the request changed after sending began (approved and claimed as {log.claim_digest[:19]}, now "
            f"{digest[:19]}); nothing more is sent: restore the request as it was sent, or make a new request "
            "for the new content"
        )
    return reasons


def _problem_text(problem: Problem) -> str:
    return f"{problem.file}:{problem.line}:{problem.column}: [{problem.rule}] {problem.message}"


def _dry_run(run: RunContext, mailing: Mailing, log: Replay, decision: Decision, digest: str) -> Outcome:
    policy = run.policy
    if decision.state is MailingState.MISSED:
        return _outcome(mailing, decision.state, f"would be recorded as missed: {decision.reason}", log, ok=False)
    reasons = _blocking_reasons(run, mailing, log, digest)
    if reasons:
        return _outcome(mailing, MailingState.BLOCKED, "would be blocked: " + "; ".join(reasons), log, ok=False)
    work = plan(mailing, policy, run.hasher, log, others=run.keyring.others(log.hashed_with))
    owed = sum(map(len, work.todo))
    quota = _quota(run)
    if quota is not None and owed > quota.left:
        work = dataclasses.replace(work, todo=within(work.todo, quota.left))
    pending = sum(map(len, work.todo))
    mode = delivery_mode(mailing, policy)
    count = len(work.todo)
    connections = min(policy.sending.connections, count) or 1
    note = (
        f"would send {count} message{'s' if count != 1 else ''} to {pending} recipient"
        f"{'s' if pending != 1 else ''} ({mode}, {connections} connection{'s' if connections != 1 else ''})"
    )
    if quota is not None and owed > pending:
        note += (
            f"; the relay's quota of {quota.limit:,} recipients a day leaves {quota.left:,} today, so "
            f"{owed - pending:,} continue on the next day"
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
        unknown=len(log.unknown),
    )


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
        while todo and not run.stopping() and not self.retry:
            batch = todo.popleft()
            if batch.unhashed is not None:
                batch.hash_recipients()
            message = run.message(batch)
            if isinstance(message, list):
                self.hold(message, len(batch))
                continue
            if run.quota_left is not None and not run.fits(len(batch)):
                todo.appendleft(batch)  # not attempted: it stays pending, for the next day
                break
            if run.limiter.active:
                self.write_held()  # nothing known is left unwritten while we wait
                await run.limiter.wait()
            if run.checkpoints.active and not await run.room(len(batch)):
                todo.appendleft(batch)  # not attempted: it stays pending
                break
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


@contextlib.contextmanager
def _signals_stop(stop: StopRequest, delivery: asyncio.Future[None]) -> Iterator[None]:
    """While *delivery* runs, SIGTERM and SIGINT request a stop: no new transaction; those under way get
    STOP_GRACE_SECONDS to be answered, then *delivery* is cancelled. The handlers in force before come back
    afterwards (asyncio would leave the default ones)."""
    loop = asyncio.get_running_loop()
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only (a test that sends from a thread)
        return
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}

    def on_signal(name: str) -> None:
        stop.request(name)
        loop.call_later(STOP_GRACE_SECONDS, delivery.cancel)

    for number in previous:
        loop.add_signal_handler(number, on_signal, signal.Signals(number).name)
    try:
        yield
    finally:
        for number, handler in previous.items():
            loop.remove_signal_handler(number)
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


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
        quota: Quota | None = None,
    ) -> None:
        self.mailing = mailing
        self.start = start_of(mailing, log, run.policy)
        self.quota = quota
        # Recipients the day's quota still allows; each attempt counts, retries too, as the relay counts them.
        self.quota_left = quota.left if quota is not None else None
        self.quota_stopped = False  # a transaction did not fit in what was left
        # The day this run's attempts count for (sender.quota): *now*'s, in the policy's time zone.
        self.day = day_of(run.options.now, run.policy.timezone)[0].isoformat()
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
        self.unknown_count = work.unknown
        self.unknown_now = 0
        self.attempted = 0  # transactions attempted in this run
        self.mode = delivery_mode(mailing, run.policy)
        self.limiter = RateLimiter(run.policy.sending.rate_limit, run.options.monotonic)
        self._monotonic = run.options.monotonic
        self._progress_due = float("-inf")  # when the counts go to the progress display next
        self.failures: Counter[int] = Counter()  # this run's permanent refusals by reply code
        self.judge = RelayJudge(self.tuning.probe_recipients, self.tuning.max_consecutive_failures, work.total)
        push = self._checkpoint if run.options.remote is not None else None
        self.checkpoints = Checkpoints(
            push,
            run.options.monotonic,
            recipients=self.tuning.checkpoint_recipients,
            seconds=self.tuning.checkpoint_seconds,
        )
        self.remote = run.options.remote
        self.sent_now = 0
        self.messages_now = 0
        self.stop_reason: str | None = None
        self.progress: MailingProgress | None = None
        self.renderer = Renderer(template, run.options.now)
        # What goes around the keyed token of each return path (sender.verp); None without a bounce address.
        self.return_frame = token_frame(template.bounce_address, mailing.id) if template.bounce_address else None
        self.lines = EventLines(run.options.run_id)
        self._stamped_at = float("-inf")
        self._stamp = ""

    def counts(self) -> tuple[int, int, int]:
        """(accepted, failed, pending) over this mailing's current recipients; pending leaves out the unknown."""
        settled = self.accepted_count + self.failed_count + self.unknown_count
        return self.accepted_count, self.failed_count, self.total - settled

    async def room(self, recipients: int) -> bool:
        """Wait for the remote record to catch up when it must (sender.pace.Checkpoints); False, with the mailing
        stopped, when it cannot: nothing more is sent (fail closed)."""
        if await self.checkpoints.room(recipients):
            return True
        self.stop(self._checkpoint_failure())
        return False

    def _checkpoint_failure(self) -> str:
        return (
            f"the send log could not be recorded on the remote, so sending stopped ({self.checkpoints.failure}); "
            "the log is kept in this checkout: `mailings record --push` records it"
        )

    async def _checkpoint(self) -> None:
        """Push the log as it is on disk now (after its fsync) to the claim branch; in a thread, while sending
        goes on."""
        assert self.remote is not None
        await self.journal.sync()
        data = self.journal.read_bytes()
        accepted, failed, pending = self.counts()
        message = (
            f"Checkpoint: {self.mailing.id} {accepted} accepted, {failed} failed, {self.unknown_count} unknown, "
            f"{pending} pending\n"
        )
        await asyncio.to_thread(self.remote.checkpoint, self.mailing.id, data, message)

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    def stopping(self) -> bool:
        """True once the mailing stops taking new transactions: for its own reasons, or a signal's."""
        if self.stop_reason is None and self.options.stop.requested:
            self.stop(f"stopped by {self.options.stop.reason}; the rest is left for the next run")
        return self.stop_reason is not None or self.quota_stopped

    def fits(self, recipients: int) -> bool:
        """True when an attempt of *recipients* stays within the day's quota; else the mailing takes no new
        transaction (not a fault: it continues on the next day)."""
        if self.quota_left is None or recipients <= self.quota_left:
            return True
        self.quota_stopped = True
        return False

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
        from sender.lists import start_fields  # the special lists' provenance: source, size, version

        await self._record(
            self._event(
                "start",
                recipients=self.total,
                pending=sum(map(len, todo)),
                mode=self.mode,
                batch_size=batch_size(self.mailing, self.policy),
                day=self.day,
                connections=connections,
                **scheme,
                **start_fields(self.options.special, self.mailing),
            )
        )
        self.progress = self.progress_source.begin(self.mailing.id, self.total)
        self._report_progress()
        self._give_return_paths(todo)
        if todo:
            delivery = asyncio.ensure_future(self._deliver_all(todo, connections))
            with _signals_stop(self.options.stop, delivery):
                try:
                    await delivery
                except asyncio.CancelledError:
                    if not self.options.stop.requested:
                        raise
                    # Cut off after the grace: those transactions stay in flight, and the next run sends them.
                    self.stopping()
        await self._settle_suspects()
        return await self._finish()

    async def _deliver_all(self, todo: deque[Batch], connections: int) -> None:
        """One worker per connection. A connection is closed only once every worker has ended, so no clean-up
        ever writes into a transaction still open on another connection; a worker's own fault retires it alone."""
        transports = await self._open(connections)
        workers = [asyncio.ensure_future(self._worker(t, todo)) for t in transports]
        try:
            results = await asyncio.gather(*workers, return_exceptions=True)
        except asyncio.CancelledError:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        finally:
            await asyncio.gather(*(t.close() for t in transports), return_exceptions=True)
        faults = [r for r in results if isinstance(r, BaseException)]
        for fault in faults:
            if not isinstance(fault, Exception):
                raise fault  # a cancellation or an exit: not this mailing's fault to settle
        if faults and todo:
            fault = faults[0]
            self.stop(
                f"a connection failed ({type(fault).__name__}: {scrub(str(fault))}); the rest is left for the next run"
            )

    async def _open(self, connections: int) -> list[Transport]:
        # One connection first: a wrong password or an unreachable relay costs one attempt, not N.
        first = self.factory()
        reply = await first.open()
        if reply is not None:
            await first.close()
            self.stop(connect_failure(reply))
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
        """Send from *todo* over *transport* until it is empty or the mailing stops. A fault that escapes the
        transport (a bug) ends this worker alone: the batch it had is left attempted without an outcome, which
        the next run sends again, and the other connections go on with the rest."""
        lane = Lane(self.journal, max(1, self.policy.sending.batch_size))
        while todo and not self.stopping():
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
        while waiting and not self.stopping():
            await asyncio.sleep(self._backoff(attempt))
            again: list[tuple[Batch, list[Recipient]]] = []
            for batch, pending in waiting:
                if self.stop_reason is not None:
                    again.append((batch, pending))
                    continue
                if not self.fits(len(pending)):
                    again.append((batch, pending))
                    continue
                if self.limiter.active:
                    await self.limiter.wait()
                if self.checkpoints.active and not await self.room(len(pending)):
                    again.append((batch, pending))
                    continue
                await lane.before(self.attempt(batch, pending), len(pending))
                sender = batch.envelope_from or self.template.envelope_from
                result = await transport.send(sender, [r.address for r in pending], batch.message)
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
            why = self.stop_reason or (QUOTA_REASON if self.quota_stopped else "the run stopped")
            reply = Reply(451, f"not tried again: {why}")
            lane.add(self.write([self._deferred_line(batch.key, pending, reply)]), len(pending))

    def attempt(self, batch: Batch, pending: list[Recipient], before: Sequence[bytes] = ()) -> int:
        """Write the attempt to send *pending* of *batch*, after the lines *before* (events already applied to
        self.log) in the same write; the ticket for its fsync."""
        hashes = [r.hash for r in pending]
        now = self._now()
        line = self.lines.attempt(now, batch.key, hashes)
        ticket = self.journal.write_lines(b"".join((*before, line)) if before else line, len(before) + 1)
        self.log.note_attempt(now, hashes)
        self.attempted += 1
        if self.quota_left is not None:
            self.quota_left -= len(hashes)
        self.checkpoints.attempt(len(hashes))
        return ticket

    def write(self, lines: list[bytes]) -> int:
        """Write *lines* (their events already applied to self.log) at once, so a killed process keeps them;
        the ticket for their fsync."""
        return self.journal.write_lines(b"".join(lines), len(lines))

    def _backoff(self, attempt: int) -> float:
        delays = self.tuning.backoff
        return delays[min(attempt, len(delays)) - 1] if delays else 0.0

    def _give_return_paths(self, todo: Sequence[Batch]) -> None:
        """Individual mode: each message's own return path, whose token names its recipient (sender.verp), made
        for all of them in one loop before the first is sent (a call per message costs twice as much)."""
        if self.return_frame is None or self.mode != "individual":
            return
        waiting = [batch for batch in todo if not batch.envelope_from and batch.recipients]
        tokens = recipient_tokens(self.hasher, self.mailing.id, [batch.recipients[0].hash for batch in waiting])
        before, after = self.return_frame
        for batch, token in zip(waiting, tokens, strict=True):
            batch.envelope_from = before + token + after

    def message(self, batch: Batch) -> bytes | list[bytes]:
        """The batch's message, rendered once (a retry sends the same bytes, the same Message-ID); or, when it
        cannot be rendered, the lines that record its recipients as refused."""
        if batch.message:
            return batch.message
        to = batch.recipients[0].address if self.mode == "individual" else self.template.group_to
        if self.return_frame is not None and not batch.envelope_from:
            # A return path of its own: its bounce names the batch (bulk; in individual mode the recipient, made up
            # front) by a keyed token, never by an address, and only the key can make one (sender.verp).
            if self.mode == "individual":
                token = recipient_token(self.hasher, self.mailing.id, batch.recipients[0].hash)
            else:
                token = batch_token(self.hasher, self.mailing.id, batch.key)
            before, after = self.return_frame
            batch.envelope_from = before + token + after
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
        if result.error is None and not result.refused and len(result.accepted) == len(pending) and self.judge.calm:
            # The common case, once per message: everyone accepted, nothing held against the relay.
            hashes = [r.hash for r in pending]
            now = self._now()
            self.log.note_accepted(now, hashes)
            self.sent_now += len(hashes)
            self.accepted_count += len(hashes)
            if self._monotonic() >= self._progress_due:
                self._report_progress()
            return [], [self.lines.accepted(now, batch.key, hashes, 250)]
        settled = settle(pending, result)
        failed, stop = self.judge.judge(settled)
        events: list[bytes] = []
        if settled.accepted:
            hashes = [r.hash for r in settled.accepted]
            now = self._now()
            events.append(self.lines.accepted(now, batch.key, hashes, 250))
            self.log.note_accepted(now, hashes)
            self.sent_now += len(hashes)
            self.accepted_count += len(hashes)
        events.extend(self._failed_lines(batch.key, failed))
        if settled.unknown:
            events.append(self._unknown_line(batch.key, settled.unknown, result.error))
        if stop is not None:
            self.stop(stop)
        retry = settled.temporary
        if retry and (final or self.stop_reason is not None):
            events.append(self._deferred_line(batch.key, retry, pending_reply(result, retry)))
            retry = []
        if self._monotonic() >= self._progress_due:
            self._report_progress()
        return retry, events

    def _unknown_line(self, key: str, recipients: list[Recipient], reply: Reply | None) -> bytes:
        self.unknown_count += len(recipients)
        self.unknown_now += len(recipients)
        reply = reply or Reply(451, "no reply to the end of the message")
        event = self._event(
            "unknown", batch=key, rcpt=[r.hash for r in recipients], code=reply.code, message=scrub(reply.message)
        )
        return self._logged(event)

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
        suspects = self.judge.take_suspects()
        if not suspects:
            return
        if self.accepted_before and self.stop_reason is None:
            lines = self._failed_lines("", suspects)
        else:
            lines = [self._deferred_line("", [r for r, _ in suspects], suspects[-1][1])]
        await self.journal.sync(self.write(lines))

    async def _finish(self) -> Outcome:
        accepted, failed, pending = self.counts()
        end = self._event(
            "end",
            accepted=accepted,
            failed=failed,
            pending=pending,
            unknown=self.unknown_count,
            attempted=self.attempted,
            complete=pending == 0,
            day=self.day,
        )
        if self.stop_reason:
            end["reason"] = self.stop_reason
        await self._record(end)
        continues = None
        if self.quota is not None and pending and (self.quota_stopped or (self.quota_left or 0) <= 0):
            # The day's quota is spent: the rest goes on the next day, and the mailing is not late meanwhile.
            continues = continues_at(self.quota.day, self.start, self.policy.timezone)
            used = self.quota.limit - (self.quota_left or 0)
            quota = dataclasses.replace(self.quota, used=used)
            await self._record(_quota_event(self._now(), self.options.run_id, quota, self.total, continues))
        if not await self.checkpoints.final() and self.stop_reason is None:
            self.stop(self._checkpoint_failure())
        self._report_progress()
        if self.progress is not None:
            self.progress.finish()
        decision = decide(self.mailing, self.log, self.options.now, self.policy)
        return Outcome(
            self.mailing.id,
            decision.state,
            self._note(pending, continues),
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
            unknown=self.unknown_count,
            unknown_now=self.unknown_now,
            replay=self.log,
        )

    def _note(self, pending: int, continues: datetime | None = None) -> str:
        unknown = (
            f"; {self.unknown_now} recipient(s) unknown (the relay never answered the end of their message: they "
            "may have it, so they are not sent again)"
            if self.unknown_now
            else ""
        )
        if self.stop_reason:
            return f"stopped: {self.stop_reason}{unknown}"
        if not pending:
            return f"complete{unknown}"
        if continues is not None:
            return quota_reason(self.log, continues) + unknown
        return f"{pending} recipient(s) deferred by the relay; the next run tries them again{unknown}"

    def _report_progress(self) -> None:
        """Hand the counts to the progress display: at the start and the end, and between them at most every
        PROGRESS_EVERY seconds (once per transaction cost individual mode about 3% of its time)."""
        if self.progress is not None:
            self._progress_due = self._monotonic() + PROGRESS_EVERY
            self.progress.update(*self.counts())

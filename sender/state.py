"""A mailing's state, decided in one place for both `mailings send` and `mailings status`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from checks.model import Mailing, parse_local_datetime
from checks.policy import Policy
from sender.journal import Replay


class MailingState(StrEnum):
    SCHEDULED = "scheduled"  # send_at is still ahead
    DUE = "due"  # within send_at .. send_at + max lateness, nothing sent yet
    SENDING = "sending"  # a run started and has not ended (running now, or killed: the next run resumes)
    SENT = "sent"
    SENT_WITH_FAILURES = "sent-with-failures"  # complete, some recipients refused for good
    BLOCKED = "blocked"  # the last run found a reason not to send (a rule failed, ...); re-checked each run
    MISSED = "missed"  # later than the max lateness: a person must give it a new date (or a resume_at)
    HELD = "held"  # `hold` in mailing.yaml, or MAILINGS_HOLD: nothing more is sent while it stands
    CANCELLED = "cancelled"  # `cancel` in mailing.yaml: nothing more is ever sent (final)


# The states in which a send run acts on a mailing: it sends a due one, resumes one
# that is sending, and checks a blocked one again (it may have been fixed since).
ACTIONABLE = frozenset({MailingState.DUE, MailingState.SENDING, MailingState.BLOCKED})
# The states a run records in the send log when it first finds them, so that they are news once.
RECORDED = frozenset({MailingState.HELD, MailingState.CANCELLED})


@dataclass(frozen=True)
class Decision:
    state: MailingState
    reason: str
    deadline: datetime | None = None  # the last moment it may still be sent
    paused: bool = False  # the relay's day quota stopped it: nothing to do until it continues (sender.quota)

    @property
    def actionable(self) -> bool:
        return self.state in ACTIONABLE and not self.paused


@dataclass(frozen=True)
class Controls:
    """The control fields of mailing.yaml (checks.model.CONTROL_FIELDS) and the emergency brake, read once."""

    hold: str | None = None  # why it is held (the field, or the brake)
    cancel: str | None = None  # why it is cancelled
    resume_at: datetime | None = None
    resume_text: str | None = None  # resume_at as written: a recorded miss names it
    resume_unknown: bool = False


def controls(mailing: Mailing, policy: Policy, brake: str | None = None) -> Controls:
    """*mailing*'s control fields; *brake* is why MAILINGS_HOLD holds it, if it does."""
    hold = mailing.get("hold", "reason", kind=str)
    cancel = mailing.get("cancel", "reason", kind=str)
    text = mailing.get("resume_at", kind=str)
    resume = parse_local_datetime(text, policy.timezone, policy.default_send_time) if text else None
    return Controls(
        hold=f"{hold} (hold in mailing.yaml)" if hold else brake,
        cancel=cancel,
        resume_at=resume,
        resume_text=text.strip() if resume and text else None,
        resume_unknown=mailing.get("resume_unknown", kind=bool) is True,
    )


def resumable(replay: Replay) -> bool:
    """True when resume_at may set the time: the mailing was missed, interrupted (a run started it) or held.
    For a mailing never started it would be a way around the lead time, so send_at counts then."""
    return replay.missed_digest is not None or replay.runs > 0 or replay.held_ever


def start_of(mailing: Mailing, replay: Replay, policy: Policy) -> datetime | None:
    """When *mailing* is to go out: its resume_at where one may set the time, else its send_at."""
    control = controls(mailing, policy)
    if control.resume_at is not None and resumable(replay):
        return control.resume_at
    return mailing.send_at


def resends_unknown(replay: Replay, control: Controls) -> bool:
    """resume_at with resume_unknown: a person asked for the unknown recipients to be sent again, once for that
    resume_at (a run that did so records it in its claim)."""
    return (
        control.resume_unknown
        and control.resume_at is not None
        and replay.unknown_count > 0
        and resumable(replay)
        and control.resume_text not in replay.unknown_resumed
    )


def miss_recorded(replay: Replay, digest: str | None, control: Controls) -> bool:
    """True when the send log already records a miss of this content (*digest*; None: any) and this resume_at."""
    if replay.missed_digest is None or (digest is not None and replay.missed_digest not in ("", digest)):
        return False
    resume = control.resume_text if control.resume_at is not None and resumable(replay) else None
    return replay.missed_resume == resume


class Counted(Protocol):
    """The counts of a finished log: its Replay, or its summary (sender.journal.Summary)."""

    @property
    def failed_count(self) -> int: ...

    @property
    def unknown_count(self) -> int: ...


def finished(replay: Counted) -> Decision:
    """The state of a mailing whose send log is complete (replay.complete), when no resend of the unknown is asked:
    the control fields and the clock no longer matter. A log's summary (sender.journal.read_finished) is enough."""
    failed, unknown_count = replay.failed_count, replay.unknown_count
    unknown = f", {unknown_count} unknown (may have been delivered)" if unknown_count else ""
    if failed:
        return Decision(MailingState.SENT_WITH_FAILURES, f"{failed} recipient(s) refused for good{unknown}")
    return Decision(MailingState.SENT, f"every recipient accepted{unknown}")


def decide(
    mailing: Mailing,
    replay: Replay,
    now: datetime,
    policy: Policy,
    digest: str | None = None,
    brake: str | None = None,
    *,
    with_controls: bool = True,
) -> Decision:
    """The state of *mailing* at *now*, from its send log's replay, its control fields, the emergency brake
    (*brake*: why MAILINGS_HOLD holds it) and the policy's max lateness.

    A recorded miss is final for the content and the resume_at it was recorded for (*digest*,
    sender.plan.request_digest): neither a later lateness limit nor a run whose clock is behind undoes it,
    only a person changing the request or giving it a resume_at. Without a digest (status of an old log),
    a recorded miss is final. *with_controls* False gives the state as if no control field nor brake stood."""
    control = controls(mailing, policy, brake) if with_controls else Controls()
    if replay.complete and not resends_unknown(replay, control):
        return finished(replay)
    if replay.cancelled is not None or control.cancel is not None:
        reason = replay.cancelled if replay.cancelled is not None else control.cancel
        # Every reason is shown after its state ("cancelled: <reason>"), so it does not name the state again.
        return Decision(MailingState.CANCELLED, f"{reason}; nothing more is ever sent{_sent_so_far(replay)}")
    if control.hold is not None:
        return Decision(
            MailingState.HELD, f"{control.hold}; nothing more is sent until it is released{_sent_so_far(replay)}"
        )
    resume = control.resume_at if control.resume_at is not None and resumable(replay) else None
    if miss_recorded(replay, digest, control):
        return Decision(MailingState.MISSED, _recorded_miss(replay))
    start = resume or mailing.send_at
    if start is None:
        return Decision(MailingState.BLOCKED, "send_at is missing or not a valid time")
    lateness = timedelta(hours=policy.sending.max_lateness_hours)
    deadline = start + lateness
    continues = _quota_continues(replay, start)
    if continues is not None:
        # Progressing a day at a time under the relay's quota is not lateness: each day's part has its limit.
        deadline = max(deadline, continues + lateness)
    if now < start:
        verb = "resumes" if resume else "to be sent"
        return Decision(MailingState.SCHEDULED, f"{verb} at {_shown(start)}", deadline)
    if continues is not None and now < continues:
        state = MailingState.SENDING if replay.runs else MailingState.DUE
        return Decision(state, quota_reason(replay, continues.astimezone(policy.timezone)), deadline, paused=True)
    if now > deadline:
        return Decision(MailingState.MISSED, _missed_reason(start, deadline, policy, replay), deadline)
    if replay.open_run or replay.claim_open:
        return Decision(MailingState.SENDING, "a run started and has not finished", deadline)
    if replay.blocked is not None:
        return Decision(MailingState.BLOCKED, replay.blocked, deadline)
    pending = "pending recipients" if replay.runs else "due"
    return Decision(MailingState.DUE, f"{pending}; may be sent until {_shown(deadline)}", deadline)


def _quota_continues(replay: Replay, start: datetime) -> datetime | None:
    """When the mailing goes on after the relay's day quota stopped it; None when that was before *start* (a
    request re-dated since) or never happened."""
    try:
        continues = datetime.fromisoformat(replay.quota_continues) if replay.quota_continues else None
    except ValueError:
        return None
    if continues is None or continues.tzinfo is None or continues <= start:
        return None
    return continues


def quota_reason(replay: Replay, continues: datetime) -> str:
    """'quota reached: 10,000 of 25,000 sent, continues 2026-12-03 at 09:00 CET'."""
    total = replay.quota_recipients if replay.quota_recipients is not None else replay.recipients
    of = f" of {total:,}" if total is not None else ""
    when = continues.strftime("%Y-%m-%d at %H:%M %Z")
    return f"quota reached: {len(replay.accepted):,}{of} sent, continues {when} (the relay's recipients per day)"


def _sent_so_far(replay: Replay) -> str:
    return f" ({len(replay.accepted)} recipient(s) were sent before)" if replay.accepted else ""


def _recorded_miss(replay: Replay) -> str:
    sent = f"; {len(replay.accepted)} recipient(s) were sent before, the rest were not" if replay.accepted else ""
    return (
        f"recorded as missed, too late to send{sent}; a person must give the mailing a new send_at, or a "
        "resume_at to send the rest"
    )


def _missed_reason(send_at: datetime, deadline: datetime, policy: Policy, replay: Replay) -> str:
    hours = f"{policy.sending.max_lateness_hours:g}"
    sent = f"; {len(replay.accepted)} recipient(s) were sent before, the rest were not" if replay.accepted else ""
    what = (
        "give it a resume_at in mailing.yaml to send the rest"
        if replay.runs
        else "give the mailing a new send_at (or a resume_at) to send it"
    )
    return f"send_at {_shown(send_at)} is more than {hours} hours ago (the limit was {_shown(deadline)}){sent}; {what}"


def _shown(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M %Z")

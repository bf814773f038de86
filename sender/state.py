"""A mailing's state, decided in one place for both `mailings send` and `mailings status`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from checks.model import Mailing
from checks.policy import Policy
from sender.journal import Replay


class MailingState(StrEnum):
    SCHEDULED = "scheduled"  # send_at is still ahead
    DUE = "due"  # within send_at .. send_at + max lateness, nothing sent yet
    SENDING = "sending"  # a run started and has not ended (running now, or killed: the next run resumes)
    SENT = "sent"
    SENT_WITH_FAILURES = "sent-with-failures"  # complete, some recipients refused for good
    BLOCKED = "blocked"  # the last run found a reason not to send (a rule failed, ...); re-checked each run
    MISSED = "missed"  # later than the max lateness: a person must give it a new date


# The states in which a send run acts on a mailing: it sends a due one, resumes one
# that is sending, and checks a blocked one again (it may have been fixed since).
ACTIONABLE = frozenset({MailingState.DUE, MailingState.SENDING, MailingState.BLOCKED})


@dataclass(frozen=True)
class Decision:
    state: MailingState
    reason: str
    deadline: datetime | None = None  # the last moment it may still be sent

    @property
    def actionable(self) -> bool:
        return self.state in ACTIONABLE


def decide(mailing: Mailing, replay: Replay, now: datetime, policy: Policy, digest: str | None = None) -> Decision:
    """The state of *mailing* at *now*, from its send log's replay and the policy's max lateness.

    A recorded miss is final for the content it was recorded for (*digest*, sender.plan.request_digest):
    neither a later lateness limit nor a run whose clock is behind undoes it, only a person changing the
    request. Without a digest (status of an old log), a recorded miss is final."""
    if replay.complete:
        failed = len(replay.failed)
        unknown = f", {len(replay.unknown)} unknown (may have been delivered)" if replay.unknown else ""
        if failed:
            return Decision(MailingState.SENT_WITH_FAILURES, f"{failed} recipient(s) refused for good{unknown}")
        return Decision(MailingState.SENT, f"every recipient accepted{unknown}")
    if replay.missed_digest is not None and (digest is None or replay.missed_digest in ("", digest)):
        return Decision(MailingState.MISSED, _recorded_miss(replay))
    if mailing.send_at is None:
        return Decision(MailingState.BLOCKED, "send_at is missing or not a valid time")
    deadline = mailing.send_at + timedelta(hours=policy.sending.max_lateness_hours)
    if now < mailing.send_at:
        return Decision(MailingState.SCHEDULED, f"to be sent at {_shown(mailing.send_at)}", deadline)
    if now > deadline:
        return Decision(MailingState.MISSED, _missed_reason(mailing.send_at, deadline, policy, replay), deadline)
    if replay.open_run or replay.claim_open:
        return Decision(MailingState.SENDING, "a run started and has not finished", deadline)
    if replay.blocked is not None:
        return Decision(MailingState.BLOCKED, replay.blocked, deadline)
    pending = "pending recipients" if replay.runs else "due"
    return Decision(MailingState.DUE, f"{pending}; may be sent until {_shown(deadline)}", deadline)


def _recorded_miss(replay: Replay) -> str:
    sent = f"; {len(replay.accepted)} recipient(s) were sent before, the rest were not" if replay.accepted else ""
    return f"recorded as missed, too late to send{sent}; a person must give the mailing a new send_at"


def _missed_reason(send_at: datetime, deadline: datetime, policy: Policy, replay: Replay) -> str:
    hours = f"{policy.sending.max_lateness_hours:g}"
    sent = f"; {len(replay.accepted)} recipient(s) were sent before, the rest were not" if replay.accepted else ""
    return (
        f"send_at {_shown(send_at)} is more than {hours} hours ago (the limit was {_shown(deadline)}){sent}; "
        "give the mailing a new send_at to send it"
    )


def _shown(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M %Z")

"""Settle: what became of each recipient of a transaction, from the relay's reply codes (``code // 100``, never
the exception type), and whether the relay takes this mailing at all. It owns those judgements; it never
writes the send log (dispatch journals what it decides) and never talks to a relay.

- 2xx: accepted; recorded and never sent again.
- 5xx for a recipient: refused for good; recorded as failed and never retried.
- 4xx for a recipient or a whole transaction (421 is also what the transport reports for a lost connection or
  a timeout before the message was handed over): retried within the run after a short backoff, a bounded
  number of times; what is left is deferred to the next run, until the mailing's lateness runs out.
- No reply to the end of the message (a timeout or a lost connection after the final dot, RFC 1047): the
  message may have been delivered, so its recipients are `unknown`: counted apart and never sent again
  without a person asking for it.
- A relay that refuses everything stops the mailing fast: a failed connect or authentication, 5xx for a whole
  transaction (MAIL FROM or DATA), 5xx for every recipient before any was accepted, or a run of transactions
  that all failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sender.config import PASSWORD, USERNAME
from sender.journal import scrub
from sender.plan import Recipient
from sender.transport import LoginRefusal, Reply, TransactionResult

Refusal = tuple[Recipient, Reply]


class Settlement(NamedTuple):
    accepted: list[Recipient]
    permanent: list[Refusal]  # refused for good, with the reply
    temporary: list[Recipient]  # to try again
    unknown: list[Recipient]  # maybe delivered: never again by itself
    whole: Reply | None  # the transaction's own error, if it failed as a whole


def settle(pending: list[Recipient], result: TransactionResult) -> Settlement:
    """Split *pending* by what *result* says of each."""
    if result.error is None and not result.refused and len(result.accepted) == len(pending):
        return Settlement(list(pending), [], [], [], None)  # the common case: every address accepted
    whole = transaction_error(pending, result)
    if getattr(result, "unknown", False):
        # The content went out and no final reply came: whoever the relay took at RCPT may have it.
        permanent = [(r, reply) for r in pending if (reply := result.refused.get(r.address)) and reply.code >= 500]
        temporary = [r for r in pending if (reply := result.refused.get(r.address)) and reply.code < 500]
        unknown = [r for r in pending if r.address not in result.refused]
        return Settlement([], permanent, temporary, unknown, whole)
    if whole is not None and all(r.address in result.refused for r in pending):
        return Settlement([], [], list(pending), [], whole)  # refused as a whole: no recipient's own fault
    accepted_addresses = set(result.accepted)
    accepted: list[Recipient] = []
    permanent = []
    temporary = []
    for recipient in pending:
        reply = result.refused.get(recipient.address)
        if reply is None and result.error is None and recipient.address in accepted_addresses:
            accepted.append(recipient)
        elif reply is not None and reply.code // 100 == 5:
            permanent.append((recipient, reply))
        else:
            temporary.append(recipient)  # 4xx, the transaction's error, or no word on it: try again
    return Settlement(accepted, permanent, temporary, [], whole)


def transaction_error(pending: list[Recipient], result: TransactionResult) -> Reply | None:
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


def pending_reply(result: TransactionResult, recipients: Sequence[Recipient]) -> Reply:
    """The reply that explains why *recipients* are still pending."""
    for recipient in recipients:
        reply = result.refused.get(recipient.address)
        if reply is not None:
            return reply
    return result.error or Reply(451, "no reply for these recipients")


def connect_failure(reply: Reply) -> str:
    hint = ""
    if isinstance(reply, LoginRefusal):
        hint = (
            f"; no other login is tried in this run (repeated refusals can lock the account): check "
            f"{USERNAME} and {reply.secret}"
        )
    elif reply.code in (530, 534, 535, 538):
        hint = f"; check {USERNAME} and {PASSWORD}"
    elif reply.code // 100 == 4:
        hint = "; the next run tries again"
    return f"cannot open a session with the relay: {reply.code} {scrub(reply.message)}{hint}; nothing was sent"


class RelayJudge:
    """Whether the relay takes this mailing: until it has accepted someone in this run, a 5xx for a recipient
    may be about us (relaying denied), not the recipient, so such refusals are held as suspects."""

    def __init__(self, probe_recipients: int, max_consecutive_failures: int, total: int) -> None:
        self.probe = min(probe_recipients, total)
        self.max_consecutive_failures = max_consecutive_failures
        self.confirmed = False  # the relay accepted a recipient in this run
        self.suspects: list[Refusal] = []
        self.consecutive_failures = 0

    @property
    def calm(self) -> bool:
        """True when a transaction that everyone accepted changes nothing here (the usual state)."""
        return self.confirmed and not self.suspects and not self.consecutive_failures

    def take_suspects(self) -> list[Refusal]:
        taken, self.suspects = self.suspects, []
        return taken

    def judge(self, settlement: Settlement) -> tuple[list[Refusal], str | None]:
        """The refusals to record as failed now, and why the mailing must stop, if it must."""
        failed: list[Refusal] = []
        if settlement.accepted:
            self.confirmed = True
            failed.extend(self.take_suspects())
        stop: str | None = None
        if settlement.permanent:
            if self.confirmed:
                failed.extend(settlement.permanent)
            else:
                self.suspects.extend(settlement.permanent)
                if len(self.suspects) >= self.probe:
                    reply = self.suspects[-1][1]
                    stop = (
                        f"the relay refused every recipient so far ({len(self.suspects)}, none accepted; the last: "
                        f"{reply.code} {scrub(reply.message)}); it does not take this mail: check the relay and "
                        "the MAILINGS_SMTP_* settings. None of them was recorded as failed"
                    )
        whole = settlement.whole
        if whole is None or settlement.accepted or settlement.permanent or settlement.unknown:
            self.consecutive_failures = 0  # the relay is answering, recipient by recipient
        else:
            self.consecutive_failures += 1
        if whole is not None and whole.code // 100 == 5 and not settlement.unknown:
            # MAIL FROM or DATA refused for good: every batch would be, so this mailing stops here.
            stop = f"the relay refused the message: {whole.code} {scrub(whole.message)}"
        elif whole is not None and self.consecutive_failures >= self.max_consecutive_failures:
            stop = (
                f"the relay failed {self.consecutive_failures} transactions in a row (the last: {whole.code} "
                f"{scrub(whole.message)}); the rest is left for the next run"
            )
        return failed, stop

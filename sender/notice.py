"""Word back by mail: one short plain-text message to a mailing's contact person when the mailing completes, or
is blocked, missed or cancelled, through the same relay. It owns that message and its one delivery; the
dispatcher records it in the send log first, so it is never sent twice, and it is never a recipient.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from checks.addresses import address_problem
from checks.escape import escaped
from checks.model import Mailing
from checks.policy import Policy
from sender.journal import scrub
from sender.transport import Transport

# The states a contact person hears of, and the sentence that opens the message.
OPENINGS = {
    "sent": "has been sent",
    "sent-with-failures": "has been sent; some addresses were refused for good",
    "blocked": "is blocked: it was not sent",
    "missed": "was missed: it was not sent in time, and nothing more is sent without a new date",
    "cancelled": "was cancelled: nothing more of it is sent",
}


def contact_address(mailing: Mailing) -> str | None:
    """The request's contact e-mail address, when it is one a message can go to."""
    address = mailing.get("contact", "email", kind=str)
    if not address or address_problem(address.strip()) is not None or not address.isascii():
        return None
    return address.strip()


def build_notice(
    mailing: Mailing,
    policy: Policy,
    state: str,
    counts: tuple[int, int, int, int, int],
    note: str,
    when: datetime,
    to: str,
) -> bytes:
    """The message to *to* about *mailing* now in *state*; *counts* are (total, accepted, failed, unknown,
    pending), *when* the moment, in the policy's time zone."""
    total, accepted, failed, unknown, pending = counts
    subject = mailing.get("subject", "en", kind=str) or next(
        (s for s in (mailing.get("subject", kind=dict) or {}).values() if isinstance(s, str)), ""
    )
    name, about = escaped(mailing.id), escaped(" ".join(subject.split())[:120])
    lines = [
        f"Your mass mailing {name} ({about}) {OPENINGS.get(state, f'is {state}')}.",
        "",
        f"When: {when.astimezone(policy.timezone).strftime('%Y-%m-%d %H:%M %Z')}",
        f"Recipients: {total}; accepted by the mail relay: {accepted}; refused for good: {failed}"
        + (f"; unknown (the relay never confirmed them, they may have it): {unknown}" if unknown else "")
        + (f"; not sent yet: {pending}" if pending else ""),
    ]
    if state not in ("sent", "sent-with-failures"):
        lines += ["", f"Why: {scrub(note)}"]
    ask = policy.notify.ask or policy.default_from_address
    lines += ["", f"Questions: {ask}", "", "This message was sent by the mass-mailing service; it is not a reply."]
    message = EmailMessage(policy=SMTP)
    message["From"] = f"{policy.organisation} mass mailings <{policy.default_from_address}>"
    message["To"] = to
    if policy.notify.ask:
        message["Reply-To"] = policy.notify.ask
    # escaped: an id is a directory name, and a line break in a header would fail the message or add headers
    message["Subject"] = f"Mass mailing {escaped(mailing.id)}: {state}"
    message["Date"] = format_datetime(when)
    message["Message-ID"] = make_msgid("notice", policy.default_from_address.rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"
    message["X-Mailings-Notice"] = state  # what it is, for filters (and never a copy of the mailing)
    message.set_content("\n".join(lines) + "\n", charset="utf-8")
    return message.as_bytes()


async def deliver_notice(factory: Callable[[], Transport], sender: str, to: str, message: bytes) -> str | None:
    """Send *message* to *to* alone over a connection of its own; None when accepted, else why not."""
    transport = factory()
    try:
        failure = await transport.open()
        if failure is not None:
            return f"{failure.code} {scrub(failure.message)}"
        result = await transport.send(sender, [to], message)
    finally:
        await transport.close()
    reply = result.refused.get(to) or result.error
    if reply is not None or to not in result.accepted:
        return f"{reply.code} {scrub(reply.message)}" if reply else "refused"
    return None

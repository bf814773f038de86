"""What the site says of each mailing: read with the checker's loader, its state decided by sender.state.

Never an address from a recipient list: the facts hold counts, the request's own text and the message as a
recipient sees it (its To is the recipient group's name, or a placeholder for one message per recipient).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import format_datetime, parseaddr
from itertools import repeat
from pathlib import Path

from checks.addresses import recipient_count
from checks.bodies import body_text, split_lines
from checks.loader import load_mailing
from checks.mailview import client_date
from checks.model import SENDLOG_FILE, Mailing
from checks.policy import Policy, load_policy
from sender.bounces import BounceLog, counts_of, log_path, read_log_file
from sender.dispatch import Brake
from sender.journal import Replay, finished_summary, redact, replay
from sender.message import INDIVIDUAL_TO, MessageError, build_template, delivery_mode
from sender.plan import request_digest
from sender.state import MailingState, decide, finished

NO_BRAKE = Brake()


@dataclass(frozen=True)
class Counts:
    """How many the mailing reaches, and what became of them by its send log and its bounce log."""

    recipients: int
    accepted: int
    failed: int
    unknown: int
    hard_bounces: int = 0  # of the accepted, those whose mail came back for good
    delivered: int | None = None  # accepted less hard bounces; None while nothing was sent


@dataclass(frozen=True)
class Body:
    lang: str
    subject: str
    text: str  # as the recipient reads it: lines as written, trailing blanks dropped


@dataclass(frozen=True)
class Message:
    """The message as a mail client shows it: the header fields a reader sees, then the body per language."""

    headers: tuple[tuple[str, str], ...]
    bodies: tuple[Body, ...]


@dataclass(frozen=True)
class MailingFacts:
    id: str
    send_at: datetime | None  # in the policy's time zone
    state: MailingState
    reason: str  # why it is in that state, anything like an address redacted
    subject: str  # every language's subject, joined as the Subject field joins them
    sender: str  # the unit's name (and the role's)
    group: str  # the recipient group as the request describes it
    counts: Counts
    message: Message | None
    message_problem: str | None  # why no message could be built, when none could


def read_all(
    root: Path, directories: Sequence[Path], policy: Policy, now: datetime, workers: int = 1, brake: Brake = NO_BRAKE
) -> list[MailingFacts]:
    """The facts of every request directory, in order of send time (then id); those with no time last.

    With *workers* over 1, that many processes read them: reading a request (its YAML above all) is most of the
    time a site of many mailings takes, and each is read on its own. Each process loads the policy once."""
    if workers > 1 and len(directories) > 1:
        chunk = max(1, len(directories) // (workers * 4))
        with ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(root,)) as pool:
            facts = list(pool.map(_read_in_worker, directories, repeat(now), repeat(brake), chunksize=chunk))
    else:
        facts = [read_one(root, directory, policy, now, brake) for directory in directories]
    return sorted(facts, key=lambda f: (f.send_at is None, f.send_at.timestamp() if f.send_at else 0.0, f.id))


_worker: tuple[Path, Policy] | None = None  # the repository and its policy, in a process of read_all's pool


def _start_worker(root: Path) -> None:
    global _worker
    _worker = (root, load_policy(root))


def _read_in_worker(directory: Path, now: datetime, brake: Brake) -> MailingFacts:
    assert _worker is not None, "_start_worker runs first in each process of the pool"
    root, policy = _worker
    return read_one(root, directory, policy, now, brake)


def read_one(root: Path, directory: Path, policy: Policy, now: datetime, brake: Brake = NO_BRAKE) -> MailingFacts:
    """One mailing's facts. Special lists are never resolved here: they count with their approximate size.
    *brake* is MAILINGS_HOLD as the sender reads it: a mailing it holds is shown held, as `mailings status` does."""
    mailing = load_mailing(root, directory, policy, special={})
    bounces = read_log_file(log_path(root, mailing.id))
    # A finished mailing with no bounce recorded: its log's summary says what the site shows, without a replay (the
    # site is built every hour, over every mailing ever sent). A bounce counts only for a recipient the log has
    # as accepted, which takes the replay.
    summary = finished_summary(directory) if not bounces.hard else None
    if summary is not None:
        decision = finished(summary)
        counts = Counts(summary.recipients, summary.accepted, summary.failed, 0, 0, summary.accepted)
    else:
        log = replay(directory / SENDLOG_FILE)
        # decide() reads the digest only against a miss the log records (sender.state.miss_recorded): without one,
        # reading every file of the request again would change nothing.
        digest = request_digest(mailing) if log.missed_digest is not None else None
        decision = decide(mailing, log, now, policy, digest, brake.reason(mailing.id))
        counts = _counts(mailing, policy, log, bounces)
    message, problem = _message(mailing, policy)
    return MailingFacts(
        id=mailing.id,
        send_at=mailing.send_at,
        state=decision.state,
        reason=redact(decision.reason),
        subject=" / ".join(b.subject for b in message.bodies) if message else _subjects(mailing),
        sender=_sender(mailing, policy),
        group=mailing.get("recipients", "group", kind=str) or "",
        counts=counts,
        message=message,
        message_problem=problem,
    )


def _counts(mailing: Mailing, policy: Policy, log: Replay, bounces: BounceLog) -> Counts:
    """The counts `mailings status` gives: recipients, accepted, failed, unknown, and from the bounce log
    (sender.bounces) the hard bounces of the accepted and what was delivered."""
    recipients = log.recipients if log.recipients is not None else recipient_count(mailing, policy)
    bounced = counts_of(log.accepted, bounces)
    return Counts(
        recipients,
        log.accepted_count,
        log.failed_count,
        log.unknown_count,
        bounced.hard_bounces,
        bounced.delivered if log.runs else None,
    )


def _sender(mailing: Mailing, policy: Policy) -> str:
    unit = mailing.get("sender", "unit", kind=str)
    role = mailing.get("sender", "role", kind=str)
    name = policy.units.get(unit, unit or "") if unit else ""
    if role:
        name = f"{name}, {policy.roles.get(role, role)}" if name else policy.roles.get(role, role)
    return name or "(no sender)"


def _subjects(mailing: Mailing) -> str:
    subjects = [mailing.get("subject", lang, kind=str) for lang in mailing.languages]
    return " / ".join(s.strip() for s in subjects if s and s.strip()) or "(no subject)"


def _message(mailing: Mailing, policy: Policy) -> tuple[Message | None, str | None]:
    """The message as a recipient gets it, built by the sender (sender.message: its From, Subject and To, checked
    and encoded), its Date at send_at shown as the plan shows it (checks.mailview); or why none can be built.
    The body is shown as written: the page wraps it at the reader's screen, as a mail client does."""
    if mailing.send_at is None:
        return None, "send_at is missing or not a valid time"
    try:
        template = build_template(mailing, policy)
    except MessageError as exc:
        return None, redact(str(exc))
    # The encoded header lines read back as a mail client shows them (compat32's decoder: a small fraction of
    # the time of parsing the whole message with the email package's default policy).
    head = BytesHeaderParser(policy=compat32).parsebytes(template.head)
    individual = delivery_mode(mailing, policy) == "individual"
    # A bulk message's To is the recipient group, undisclosed ("Group:;"): a mail client shows the name.
    to = INDIVIDUAL_TO if individual else _decoded(template.group_to).removesuffix(":;").strip()
    headers = (
        ("From", _mailbox(_decoded(head["From"]))),
        ("To", to),
        ("Subject", _decoded(head["Subject"])),
        ("Date", client_date(format_datetime(mailing.send_at), policy.timezone)),
    )
    bodies = tuple(Body(lang, _subject(mailing, lang), _body(mailing, lang)) for lang in mailing.languages)
    return Message(headers, bodies), None


def _mailbox(value: str) -> str:
    """'Name <address>' without the quotes a name with a comma is written in."""
    name, address = parseaddr(value)
    return f"{name} <{address}>" if name else address


def _decoded(value: str | None) -> str:
    """A header value with its encoded-words decoded and its folding undone."""
    text = str(make_header(decode_header(value or "")))
    return " ".join(text.split())


def _subject(mailing: Mailing, lang: str) -> str:
    return (mailing.get("subject", lang, kind=str) or "").strip()


def _body(mailing: Mailing, lang: str) -> str:
    """One language's body as the sender puts it into the message (checks.bodies reads it)."""
    body = mailing.bodies.get(lang)
    if body is None:
        return ""
    return "\n".join(line.rstrip() for line in split_lines(body_text(body.raw))).strip("\n")

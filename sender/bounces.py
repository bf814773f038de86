"""Bounces: what a returned message says, the bounce log per mailing, and what was delivered.

A bounce is classified (`classify`) with flufl.bounce, which knows RFC 3464 delivery status notifications and the
common formats that are not (Postfix, Exim, qmail, Exchange, Yahoo, ...): a permanent failure is a **hard** bounce,
a temporary one (a delay warning) a **soft** one. Its mailing and token come from the return path it was sent to
(the VERP address in Delivered-To, X-Original-To or To, sender.verp); its recipient is the token's (individual
mode), or the one the report names among the recipients of the batch the token names (bulk mode), matched by
keyed hash against the mailing's send log. What names no mailing, carries no token of it (it could be forged),
names no recipient of it, or no failure is not classified: it stays in the mailbox for a person.

The bounce log ``bounces/<mailing-id>.jsonl`` is one JSON object a line, appended to and never rewritten::

    bounce  time, kind (hard|soft), rcpt (the send log's hash), via (verp|batch: which token), bounce (the digest of the
            bounce message's Message-ID, or of its bytes), key_check (the MAILINGS_LOG_KEY it was hashed with)

It holds no address: recipients are the send log's keyed hashes. A bounce message already in the log (its
digest) is never recorded again, so a run that could not move what it handled records nothing twice.

`delivery_counts` is the public summary: accepted, hard and soft bounces, and delivered = accepted - hard.
It owns the bounce log and the counts; it never reads a mailbox (sender.bouncebox) nor talks to git.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.utils import getaddresses
from pathlib import Path
from typing import Literal

from flufl.bounce import all_failures

from checks.loader import MAILINGS_DIR
from checks.model import ID_PATTERN, SENDLOG_FILE, Bounced
from sender.journal import Hasher, Replay, encode, finished_summary, replay, stamp
from sender.logkey import Keyring
from sender.verp import Verp, batch_token, parse, tags, tokens

# A detector that trips over a malformed message logs its traceback before `classify` catches the error: the
# verdict says what happened, so the log stays quiet (a handler here keeps Python's last-resort one from printing).
logging.getLogger("flufl.bounce").addHandler(logging.NullHandler())

BOUNCES_DIR = "bounces"
# A bounce larger than this is not read (a report with the whole message returned is rarely over a few MB).
MAX_BOUNCE_BYTES = 10 * 1024 * 1024
DIGEST_DIGITS = 32
# Where a server that delivered the bounce wrote the address it was sent to: the return path, with its tag.
_RETURN_PATH_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_MAILING_ID_HEADER = re.compile(rb"^X-Mailing-Id:[ \t]*([a-z0-9][a-z0-9-]*)[ \t]*\r?$", re.MULTILINE | re.IGNORECASE)

Kind = Literal["hard", "soft"]


def log_path(root: Path, mailing_id: str) -> Path:
    return root / BOUNCES_DIR / f"{mailing_id}.jsonl"


def repo_log_path(mailing_id: str) -> str:
    return f"{BOUNCES_DIR}/{mailing_id}.jsonl"


# --- the bounce log ----------------------------------------------------------------------------------------------


@dataclass
class BounceLog:
    """What a bounce log says, read from its first line to its last."""

    hard: dict[str, str] = field(default_factory=dict)  # recipient hash -> time of its first hard bounce
    soft: dict[str, str] = field(default_factory=dict)  # recipient hash -> time of its first soft bounce
    messages: set[str] = field(default_factory=set)  # the digests of the bounce messages recorded


def read_log(data: bytes) -> BounceLog:
    """The bounce log *data*; a line that is not a bounce event (a torn write) is skipped."""
    log = BounceLog()
    for line in data.split(b"\n"):
        event = _event(line)
        if event is None:
            continue
        rcpt, kind, time = event.get("rcpt"), event.get("kind"), str(event.get("time", ""))
        if isinstance(rcpt, str) and kind in ("hard", "soft"):
            (log.hard if kind == "hard" else log.soft).setdefault(rcpt, time)
        bounce = event.get("bounce")
        if isinstance(bounce, str):
            log.messages.add(bounce)
    return log


def read_log_file(path: Path) -> BounceLog:
    try:
        return read_log(path.read_bytes())
    except FileNotFoundError:
        return BounceLog()


# --- what was delivered ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryCounts:
    accepted: int  # recipients the relay accepted (the send log)
    hard_bounces: int  # of them, those whose mail came back for good
    soft_bounces: int  # of them, those with only a temporary failure reported (a delay), no hard one
    delivered: int  # accepted - hard_bounces

    def as_dict(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "hard_bounces": self.hard_bounces,
            "soft_bounces": self.soft_bounces,
            "delivered": self.delivered,
        }


def counts_of(accepted: set[str], bounces: BounceLog) -> DeliveryCounts:
    """The counts of a send log's accepted recipients and a bounce log (only bounces of accepted recipients count)."""
    hard = accepted.intersection(bounces.hard)
    soft = accepted.intersection(bounces.soft).difference(hard)
    return DeliveryCounts(len(accepted), len(hard), len(soft), len(accepted) - len(hard))


def counts_of_finished(accepted: int, bounces: BounceLog) -> DeliveryCounts:
    """counts_of for a finished mailing, from its summary's count of the accepted (no set of their hashes). With no
    recipient left unknown or in flight, a bounce the log records is of an accepted recipient: a recipient the
    relay refused was never handed a message that could come back (this module records only recipients)."""
    hard = len(bounces.hard)
    soft = len(set(bounces.soft).difference(bounces.hard))
    return DeliveryCounts(accepted, hard, soft, accepted - hard)


def delivery_counts(root: Path, mailing_id: str) -> dict[str, int]:
    """``{accepted, hard_bounces, soft_bounces, delivered}`` of one mailing, from its send log (its summary when it
    is finished) and its bounce log in the repository at *root*; all 0 for a mailing not sent. Never an address,
    never the key."""
    if not ID_PATTERN.fullmatch(mailing_id):
        raise ValueError(f"{mailing_id!r} is not a mailing id")
    bounces = read_log_file(log_path(root, mailing_id))
    # Without a bounce recorded, a finished log's summary has every count; a bounce counts only for a recipient
    # the log has as accepted, which takes the replay.
    summary = None if bounces.hard or bounces.soft else finished_summary(root / MAILINGS_DIR / mailing_id)
    if summary is not None:
        return counts_of_finished(summary.accepted, bounces).as_dict()
    log = replay(root / MAILINGS_DIR / mailing_id / SENDLOG_FILE)
    return counts_of(log.accepted, bounces).as_dict()


# --- what the check learns ---------------------------------------------------------------------------------------


def bounced_index(root: Path, keys: Keyring) -> Bounced:
    """Every recipient that hard-bounced in a mailing of *root*, for the [bounced] rule: their hashes under the
    keys held (the current one and those a rotation kept; records made with another key, or none, are left out),
    each with the month of its first hard bounce ('2027-02')."""
    hashers = keys.hashers()
    held = {h.key_check for h in hashers}
    months: dict[str, str] = {}
    directory = root / BOUNCES_DIR
    paths = sorted(directory.glob("*.jsonl")) if directory.is_dir() else []
    for path in paths:
        if path.is_symlink() or not path.is_file():
            continue
        for line in path.read_bytes().split(b"\n"):
            event = _event(line)
            if event is None or event.get("kind") != "hard" or event.get("key_check") not in held:
                continue
            rcpt, time = event.get("rcpt"), str(event.get("time", ""))
            if isinstance(rcpt, str) and (rcpt not in months or time[:7] < months[rcpt]):
                months[rcpt] = time[:7]
    return Bounced(tuple(h.of_all_normalised for h in hashers), months)


def _event(line: bytes) -> dict[str, object] | None:
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return event if isinstance(event, dict) and event.get("event") == "bounce" else None


# --- classification ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What one bounce message says. recipients empty: not classified, and `reason` says why."""

    digest: str
    mailing_id: str | None = None
    recipients: tuple[tuple[str, Kind, str | None], ...] = ()  # (the send log's hash, hard or soft, its key id)
    via: Literal["verp", "batch"] = "batch"
    reason: str = ""

    @property
    def classified(self) -> bool:
        return bool(self.recipients)


class Known:
    """The mailings of a repository, as the classification needs them: each one's tag, and (read on first use)
    its send log's recipients and their VERP tokens."""

    def __init__(self, root: Path, bounce_address: str, keys: Keyring) -> None:
        self.root = root
        self.bounce_address = bounce_address
        self.keys = keys
        directory = root / MAILINGS_DIR
        ids = sorted(p.name for p in directory.iterdir() if ID_PATTERN.fullmatch(p.name)) if directory.is_dir() else []
        self.ids = frozenset(ids)
        self.tags = tags(bounce_address, ids)
        self._logs: dict[str, Replay] = {}
        self._tokens: dict[str, dict[str, tuple[str, Hasher]]] = {}
        self._batches: dict[str, dict[str, tuple[set[str], Hasher]]] = {}

    def log(self, mailing_id: str) -> Replay:
        if mailing_id not in self._logs:
            self._logs[mailing_id] = replay(self.root / MAILINGS_DIR / mailing_id / SENDLOG_FILE)
        return self._logs[mailing_id]

    def recipients(self, mailing_id: str) -> set[str]:
        """The hashes of everyone the mailing handed to the relay, or may have (never one the relay refused: a
        message it never took cannot come back)."""
        log = self.log(mailing_id)
        return log.accepted | log.unknown | log.in_flight

    def hashers(self, mailing_id: str) -> tuple[Hasher, ...]:
        """The hashers of the keys that hashed the mailing's send log (more than one after a key rotation)."""
        found = [self.keys.find(scheme, key_id) for scheme, key_id in self.log(mailing_id).hashed_with]
        return tuple(dict.fromkeys(h for h in found if h is not None))

    def key_problem(self, mailing_id: str) -> str | None:
        problem = self.keys.problem(self.log(mailing_id).hashed_with)
        return f"{mailing_id}: {problem}" if problem else None

    def batch_owner(self, mailing_id: str, token: str) -> tuple[set[str], Hasher] | None:
        """The recipients (send-log hashes) of the bulk transaction whose return path token *token* is, with the
        hasher that made the token; from the send log's attempt events, which name each batch and its recipients."""
        if mailing_id not in self._batches:
            batches: dict[str, set[str]] = {}
            path = self.root / MAILINGS_DIR / mailing_id / SENDLOG_FILE
            for line in path.read_bytes().split(b"\n") if path.is_file() else []:
                if b'"attempt"' not in line:
                    continue
                try:
                    event = json.loads(line)
                except (ValueError, UnicodeDecodeError):
                    continue
                if isinstance(event, dict) and event.get("event") == "attempt" and isinstance(event.get("batch"), str):
                    rcpt = event.get("rcpt")
                    hashes = [rcpt] if isinstance(rcpt, str) else rcpt if isinstance(rcpt, list) else []
                    batches.setdefault(event["batch"], set()).update(h for h in hashes if isinstance(h, str))
            sent = self.recipients(mailing_id)
            table: dict[str, tuple[set[str], Hasher]] = {}
            for hasher in self.hashers(mailing_id):
                for key, members in batches.items():
                    table[batch_token(hasher, mailing_id, key)] = (members & sent, hasher)
            self._batches[mailing_id] = table
        return self._batches[mailing_id].get(token)

    def token_owner(self, mailing_id: str, token: str) -> tuple[str, Hasher] | None:
        """The send-log hash whose VERP token *token* is, with the hasher that made both."""
        if mailing_id not in self._tokens:
            sent = self.recipients(mailing_id)
            self._tokens[mailing_id] = {
                t: (h, hasher)
                for hasher in self.hashers(mailing_id)
                for t, h in tokens(hasher, mailing_id, sent).items()
            }
        return self._tokens[mailing_id].get(token)


def digest_of(message: Message, data: bytes) -> str:
    """The bounce's identity for 'recorded once': its Message-ID, or its bytes when it has none."""
    message_id = str(message.get("Message-ID", "") or "").strip()
    source = b"message-id:" + message_id.encode("utf-8", "replace") if message_id else b"bytes:" + data
    return hashlib.sha256(source).hexdigest()[:DIGEST_DIGITS]


def classify(data: bytes, known: Known) -> Verdict:
    """What the bounce message *data* says about which recipient of which mailing (never raises on bad input)."""
    if len(data) > MAX_BOUNCE_BYTES:
        return Verdict(hashlib.sha256(data).hexdigest()[:DIGEST_DIGITS], reason="too large to read")
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    digest = digest_of(message, data)
    verp = _return_path(message, known)
    mailing_id = known.tags.get(verp.tag) if verp else None
    if mailing_id is None:
        mailing_id = _returned_mailing_id(data, known)
    if mailing_id is None:
        return Verdict(digest, reason="names no mailing of this repository (no return path tag, no X-Mailing-Id)")
    try:
        temporary, permanent = all_failures(message)
    except Exception as exc:  # a detector that trips over a malformed message: a person looks at it
        return Verdict(digest, mailing_id, reason=f"flufl.bounce could not read it ({type(exc).__name__})")
    if not temporary and not permanent:
        return Verdict(digest, mailing_id, reason="not recognised as a delivery failure (an auto-reply?)")
    problem = known.key_problem(mailing_id)
    if problem:
        return Verdict(digest, mailing_id, reason=problem)
    if verp is None or verp.token is None or known.tags.get(verp.tag) != mailing_id:
        # Only the key makes a token: a bounce without one could be forged by anyone to strike people off lists.
        return Verdict(
            digest, mailing_id, reason="carries no return path token of the mailing, so it cannot be trusted"
        )
    owner = known.token_owner(mailing_id, verp.token)
    if owner is not None:  # individual mode: the token is the recipient's
        kind: Kind = "hard" if permanent else "soft"
        return Verdict(digest, mailing_id, ((owner[0], kind, owner[1].key_check),), "verp")
    batch = known.batch_owner(mailing_id, verp.token)
    if batch is None:
        return Verdict(digest, mailing_id, reason="its return path token matches no recipient or batch of the mailing")
    # Bulk mode: the recipients the report names, among those of the batch the token names.
    sent, hasher_of_batch = batch
    found: dict[str, tuple[Kind, str | None]] = {}
    hashers = (hasher_of_batch,)
    for kind, addresses in (("soft", temporary), ("hard", permanent)):  # hard last: it wins for one address
        for address in addresses:
            text = address.decode("utf-8", "replace") if isinstance(address, bytes) else str(address)
            for hasher in hashers:
                hashed = hasher(text)
                if hashed in sent:
                    found[hashed] = (kind, hasher.key_check)  # type: ignore[assignment]
    if not found:
        return Verdict(digest, mailing_id, reason="the addresses it reports are not recipients of its batch")
    recipients = tuple((h, kind, key_id) for h, (kind, key_id) in sorted(found.items()))
    return Verdict(digest, mailing_id, recipients, "batch")


def _return_path(message: Message, known: Known) -> Verp | None:
    """The VERP tag (and token) of the address the bounce was delivered to, preferring one of a known mailing."""
    found: list[Verp] = []
    for header in _RETURN_PATH_HEADERS:
        values = [str(v) for v in message.get_all(header, [])]
        for _, address in getaddresses(values):
            verp = parse(address, known.bounce_address)
            if verp is not None:
                found.append(verp)
    return next((v for v in found if v.tag in known.tags), found[0] if found else None)


def _returned_mailing_id(data: bytes, known: Known) -> str | None:
    """The X-Mailing-Id of the returned message's headers, when exactly one known mailing is named."""
    named = {m.decode("ascii").lower() for m in _MAILING_ID_HEADER.findall(data)}
    ids = named & known.ids
    return next(iter(ids)) if len(ids) == 1 else None


# --- recording ---------------------------------------------------------------------------------------------------


@dataclass
class Recorded:
    """What `record` appended: the lines per mailing, and the bounces that were already in their logs."""

    lines: dict[str, list[bytes]] = field(default_factory=dict)
    duplicates: int = 0

    def count(self, kind: Kind) -> int:
        return sum(1 for lines in self.lines.values() for line in lines if json.loads(line).get("kind") == kind)


def record(root: Path, verdicts: Iterable[Verdict], now: datetime) -> Recorded:
    """Append the classified *verdicts* to their mailings' bounce logs (fsync'd), each bounce message once."""
    recorded = Recorded()
    logs: dict[str, BounceLog] = {}
    for verdict in verdicts:
        if not verdict.classified or verdict.mailing_id is None:
            continue
        mailing_id = verdict.mailing_id
        if mailing_id not in logs:
            logs[mailing_id] = read_log_file(log_path(root, mailing_id))
        if verdict.digest in logs[mailing_id].messages:
            recorded.duplicates += 1
            continue
        logs[mailing_id].messages.add(verdict.digest)
        for rcpt, kind, key_id in verdict.recipients:
            event = {
                "event": "bounce",
                "time": stamp(now),
                "kind": kind,
                "rcpt": rcpt,
                "via": verdict.via,
                "bounce": verdict.digest,
                "key_check": key_id,
            }
            recorded.lines.setdefault(mailing_id, []).append(encode(event))
    for mailing_id, lines in recorded.lines.items():
        _append(log_path(root, mailing_id), b"".join(lines))
    return recorded


def _append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as handle:  # a torn last line (a kill mid-write) is ended first
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def summary_by_mailing(recorded: Recorded) -> Mapping[str, tuple[int, int]]:
    """(hard, soft) recorded now per mailing."""
    out: dict[str, tuple[int, int]] = {}
    for mailing_id, lines in recorded.lines.items():
        kinds = [json.loads(line).get("kind") for line in lines]
        out[mailing_id] = (kinds.count("hard"), kinds.count("soft"))
    return out

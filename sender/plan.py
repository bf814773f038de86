"""Plan: which recipients a run still owes a mailing, in which batches, and what content was approved.

It owns the batches (their recipients, their keys, from which the Message-IDs are derived) and the request's
digest. It reads the send log's replay but never writes it, and never talks to a relay.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import NamedTuple

from checks.loader import MAX_LIST_BYTES, read_regular
from checks.model import CONTROL_FIELDS, MAILING_FILE, SENDLOG_FILE, Mailing
from checks.policy import Policy
from sender.journal import Hasher, Replay
from sender.message import delivery_mode

DIGEST_PREFIX = "sha256:"


class Recipient(NamedTuple):
    # A tuple, not a dataclass: a mailing makes tens of thousands of them, and a tuple is made several times faster.
    address: str
    hash: str


KEY_DIGITS = 24


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
    envelope_from: str = ""  # its own return path (individual mode: one per recipient); "" for the mailing's

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
    """Recipients per transaction: one in individual mode; in bulk mode policy.sending.batch_size, or the relay's
    recipients_per_message when that is smaller."""
    if delivery_mode(mailing, policy) == "individual":
        return 1
    return max(1, min(policy.sending.batch_size, policy.sending.recipients_per_message or policy.sending.batch_size))


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
    unknown: int = 0  # by an earlier run: may have been delivered, so not sent again


def plan(
    mailing: Mailing,
    policy: Policy,
    hasher: Hasher,
    log: Replay,
    *,
    resend_unknown: bool = False,
    others: Sequence[Hasher] = (),
) -> Work:
    """The batches still to send: those of `batches` over the recipients the log has no outcome for. Recipients
    whose outcome is unknown (the relay never answered the end of their message) are not sent again, unless a
    person asked for it (*resend_unknown*: resume_at with resume_unknown). *others*: the keys other than
    *hasher*'s that hashed lines of the log (a key rotated while the mailing was sent); a recipient's outcome
    under any of them counts."""
    if others:
        return _plan_rotated(mailing, policy, hasher, log, others, resend_unknown=resend_unknown)
    done = log.accepted | log.failed.keys() | (set() if resend_unknown else log.unknown)
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
    unknown = 0 if resend_unknown else len(hashes & log.unknown)
    accepted, failed = len(hashes & log.accepted), len(hashes & log.failed.keys())
    return Work(len(hashes), accepted, failed, todo, unknown)


def within(todo: list[Batch], budget: int) -> list[Batch]:
    """The first batches of *todo* up to *budget* recipients in all (the relay's day quota); the last one cut
    short if it must (its key then names the recipients it keeps). The rest stay pending for a later run."""
    kept: list[Batch] = []
    for batch in todo:
        if budget <= 0:
            break
        size = len(batch)
        if size > budget:
            kept.append(_first(batch, budget))
            break
        kept.append(batch)
        budget -= size
    return kept


def _first(batch: Batch, count: int) -> Batch:
    if batch.unhashed is not None:
        normalised, addresses, hasher = batch.unhashed
        return Batch([], unhashed=(normalised[:count], addresses[:count], hasher))
    recipients = batch.recipients[:count]
    return Batch(recipients, batch_key([r.hash for r in recipients]))


def _plan_rotated(
    mailing: Mailing, policy: Policy, hasher: Hasher, log: Replay, others: Sequence[Hasher], *, resend_unknown: bool
) -> Work:
    """`plan` of a log whose lines were hashed with more than one key: each recipient's outcome is looked up under
    every key, and the later outcome wins as a replay has it (accepted over failed over unknown)."""
    normalised, addresses = _unique_addresses(mailing)
    current = hasher.of_all_normalised(normalised)
    olds = [other.of_all_normalised(normalised) for other in others]
    accepted = failed = unknown = 0
    left: list[Recipient] = []
    for index, (address, mine) in enumerate(zip(addresses, current, strict=True)):
        names = (mine, *(old[index] for old in olds))
        if any(name in log.accepted for name in names):
            accepted += 1
        elif any(name in log.failed for name in names):
            failed += 1
        elif not resend_unknown and any(name in log.unknown for name in names):
            unknown += 1
        else:
            left.append(Recipient(address, mine))
    return Work(len(current), accepted, failed, batches(mailing, policy, left), unknown)


def request_digest(mailing: Mailing) -> str:
    """A digest of what was approved: mailing.yaml's fields but the control fields, and every other file of the
    request byte for byte (the bodies, the lists) but the send log. The claim records it; a later run that
    finds another digest sends nothing more."""
    digest = hashlib.sha256()
    fields = {key: value for key, value in mailing.data.items() if key not in CONTROL_FIELDS}
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=True, default=str, separators=(",", ":"))
    digest.update(b"mailing.yaml\0" + canonical.encode("ascii") + b"\0")
    directory = mailing.root / mailing.directory
    for entry in mailing.entries:
        if entry.name in (MAILING_FILE, SENDLOG_FILE):
            continue
        digest.update(f"{entry.kind}:{entry.name}\0".encode("utf-8", "surrogateescape"))
        if entry.kind == "file":
            try:
                data = read_regular(directory / entry.name, MAX_LIST_BYTES)
            except (OSError, ValueError) as exc:
                data = f"unreadable: {exc}".encode("utf-8", "replace")
            digest.update(hashlib.sha256(data).digest())
    return DIGEST_PREFIX + digest.hexdigest()

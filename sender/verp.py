"""The return path: where bounces go, and how a bounce names its mailing and recipient (VERP).

The envelope sender (MAIL FROM) of a mailing is the policy's `bounce_address` with a tag in its local part:

- bulk mode (one transaction for a batch of recipients): ``bounces+<mailing>.<token>@kth.se``, the token a keyed
  hash of the mailing and the batch's key (the send log's attempt events say which recipients a batch had); the
  recipient of a bounce is the one its report names (a DSN's Final-Recipient, or what flufl.bounce finds), matched
  by keyed hash among that batch's recipients;
- individual mode (one message per recipient): ``bounces+<mailing>.<token>@kth.se``, where the token is a keyed
  hash (the send log's key, MAILINGS_LOG_KEY) of the mailing and the recipient's send-log hash, so the bounce
  names its recipient even when the report names no address, or a forwarded one.

Only a bounce that carries a token of the mailing is believed: nobody without the key can make one, so an
outsider cannot forge bounces that would strike people off the lists (a recipient can, for its own batch).

``<mailing>`` is the mailing's id, or, when the local part would pass the 64 octets SMTP allows, its start and a
digest (`mailing_tag`); a bounce's tag is matched against the tags of the mailings the repository holds. The
token never contains the address, and without the key nobody can tell whose token it is. Mailing ids are lower-case
letters, digits and hyphens, so the dot that separates the token never occurs in a tag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sender.journal import Hasher

DELIMITER = "+"  # between the bounce address's own local part and the tag: what the mailbox's server expects
TOKEN_DIGITS = 16  # 64 bits: no two recipients of a mailing share one
MAX_LOCAL_PART = 64  # RFC 5321, 4.5.3.1.1
_TAG_DIGEST_DIGITS = 8


@dataclass(frozen=True)
class Verp:
    """What a return path says: the mailing's tag and, in individual mode, the recipient's token."""

    tag: str
    token: str | None = None


def mailing_tag(bounce_local: str, mailing_id: str) -> str:
    """The mailing's part of the local part: its id, or its start and a digest when a whole return path with a
    token would not fit in 64 octets."""
    room = MAX_LOCAL_PART - len(bounce_local) - len(DELIMITER) - 1 - TOKEN_DIGITS
    if len(mailing_id) <= room:
        return mailing_id
    digest = hashlib.sha256(mailing_id.encode("utf-8")).hexdigest()[:_TAG_DIGEST_DIGITS]
    return f"{mailing_id[: max(room - _TAG_DIGEST_DIGITS - 1, 0)]}-{digest}".lstrip("-")


def recipient_token(hasher: Hasher, mailing_id: str, recipient_hash: str) -> str:
    """The recipient's token in *mailing_id*'s return path: keyed (journal's hasher), from the send-log hash."""
    return recipient_tokens(hasher, mailing_id, [recipient_hash])[0]


def recipient_tokens(hasher: Hasher, mailing_id: str, recipient_hashes: Iterable[str]) -> list[str]:
    """`recipient_token` of each of *recipient_hashes*, in order, in one loop: the sender makes one for every
    recipient of an individual mailing, and the bounce reader one for every recipient it may have to name."""
    prefix = f"verp\x00{mailing_id}\x00"
    return [token[:TOKEN_DIGITS] for token in hasher.of_all_normalised([prefix + h for h in recipient_hashes])]


def batch_token(hasher: Hasher, mailing_id: str, batch_key: str) -> str:
    """The token of one bulk transaction's return path: keyed, from the batch's key (sender.plan.batch_key)."""
    return hasher.of_normalised(f"verp-batch\x00{mailing_id}\x00{batch_key}")[:TOKEN_DIGITS]


def return_path(bounce_address: str, mailing_id: str, token: str | None = None) -> str:
    """``local+tag[.token]@domain`` for *bounce_address* ``local@domain``."""
    before, after = token_frame(bounce_address, mailing_id)
    return f"{before}{token}{after}" if token else f"{before.removesuffix('.')}{after}"


def token_frame(bounce_address: str, mailing_id: str) -> tuple[str, str]:
    """What goes before and after a token in *mailing_id*'s return paths: ``local+tag.`` and ``@domain``."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}{DELIMITER}{mailing_tag(local, mailing_id)}.", f"@{domain}"


def parse(address: str, bounce_address: str) -> Verp | None:
    """The tag and token of *address* if it is a return path of *bounce_address* (any letter case), else None."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    own_local, _, own_domain = bounce_address.rpartition("@")
    if domain.lower().rstrip(".") != own_domain.lower() or not local.lower().startswith(own_local.lower() + DELIMITER):
        return None
    rest = local[len(own_local) + len(DELIMITER) :].lower()
    tag, dot, token = rest.partition(".")
    if not tag or (dot and (len(token) != TOKEN_DIGITS or not all(c in "0123456789abcdef" for c in token))):
        return None
    return Verp(tag, token or None)


def tags(bounce_address: str, mailing_ids: Iterable[str]) -> Mapping[str, str]:
    """Each mailing's tag, to its id."""
    local = bounce_address.rpartition("@")[0]
    return {mailing_tag(local, mailing_id): mailing_id for mailing_id in mailing_ids}


def tokens(hasher: Hasher, mailing_id: str, recipient_hashes: Iterable[str]) -> dict[str, str]:
    """Each recipient's token in *mailing_id*, to its send-log hash."""
    hashes = list(recipient_hashes)
    return dict(zip(recipient_tokens(hasher, mailing_id, hashes), hashes, strict=True))

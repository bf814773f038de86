"""IT's list files encrypted with age (pyrage): what `mailings lists encrypt` and `edit` write, what the sender reads.

A list file is the plain list (one address per line), gzipped and then encrypted with age in its ASCII armour for
every public key in policy.yaml's `special_lists_recipients`. The armour keeps it a text file that git and pull
requests show as one; gzip keeps a list of 20,000 addresses near 100 KB, since git cannot compress what is
encrypted. A file encrypted with the `age` command line from a plain list (`age -a -R keys.txt list.txt`) reads the
same: what decrypts without the gzip header is taken as the plain list.

Owns: parsing identities and public keys, encrypting and decrypting. Never reads the environment (the identity
comes in as text) nor a file (bytes in, bytes out).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyrage import x25519

IDENTITY_VARIABLE = "MAILINGS_AGE_IDENTITY"
GZIP_MAGIC = b"\x1f\x8b"


class AgeError(Exception):
    """Why a list file could not be encrypted or decrypted, in words; never holds a private key."""


def identities(text: str, where: str = IDENTITY_VARIABLE) -> list[x25519.Identity]:
    """The age identities in *text*: the contents of a key file as age-keygen writes it (comment lines, then one
    AGE-SECRET-KEY-1... line; more than one for a change of keys)."""
    from pyrage import IdentityError, x25519

    found: list[x25519.Identity] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            found.append(x25519.Identity.from_str(line))
        except IdentityError:
            # The line may be a private key with a typo: never repeat it.
            raise AgeError(f"line {number} of {where} is not an age identity (AGE-SECRET-KEY-1...)") from None
    if not found:
        raise AgeError(f"{where} holds no age identity (a line AGE-SECRET-KEY-1..., as age-keygen writes it)")
    return found


def public_keys(keys: Sequence[x25519.Identity]) -> list[str]:
    return [str(key.to_public()) for key in keys]


def recipients(keys: Sequence[str]) -> list[x25519.Recipient]:
    from pyrage import RecipientError, x25519

    found = []
    for key in keys:
        try:
            found.append(x25519.Recipient.from_str(key))
        except RecipientError:
            raise AgeError(f"{key!r} is not an age public key (age1...)") from None
    return found


def encrypt_list(plain: bytes, keys: Sequence[str]) -> bytes:
    """*plain* gzipped (with no time stamp or name in it) and encrypted in ASCII armour for the public *keys*."""
    import pyrage

    if not keys:
        raise AgeError("no public key to encrypt for")
    packed = gzip.compress(plain, compresslevel=9, mtime=0)
    try:
        return bytes(pyrage.encrypt(packed, recipients(keys), armored=True))
    except pyrage.EncryptError as exc:
        raise AgeError(f"age could not encrypt: {exc}") from None


def decrypt_list(data: bytes, keys: Sequence[x25519.Identity], limit: int) -> bytes:
    """The plain list in an age file; AgeError when no key fits or it is not an age file; at most *limit* bytes."""
    import pyrage

    try:
        packed = bytes(pyrage.decrypt(data, list(keys)))
    except pyrage.DecryptError as exc:
        if "No matching keys" in str(exc):
            raise AgeError(
                f"it is not encrypted for the key given (public key {', '.join(public_keys(keys))})"
            ) from None
        raise AgeError(f"it is not a readable age file ({exc})") from None
    if not packed.startswith(GZIP_MAGIC):
        if len(packed) > limit:
            raise AgeError(f"its list is larger than {limit // (1024 * 1024)} MiB")
        return packed
    # Bounded: a small file must not unpack into gigabytes.
    unpacker = zlib.decompressobj(wbits=31)
    try:
        plain = unpacker.decompress(packed, limit + 1)
    except zlib.error as exc:
        raise AgeError(f"its gzipped list is damaged ({exc})") from None
    if len(plain) > limit or unpacker.unconsumed_tail:
        raise AgeError(f"its list is larger than {limit // (1024 * 1024)} MiB")
    return plain

"""The log key: the secret that hashes recipients wherever the repository records them (send logs, and any
record keyed the same way), its key ids, and the keys a rotation keeps for reading.

A plain SHA-256 of an address can be reversed by hashing a directory of guessable addresses, so a run that
sends refuses to start without ``MAILINGS_LOG_KEY``. A key is named in records by its key id (a keyed
fingerprint, ``Hasher.key_check``), never by itself.

Rotation: the new key goes into ``MAILINGS_LOG_KEY`` and the old one into ``MAILINGS_LOG_KEY_PREVIOUS`` (one
key per line, any number of them). Records hashed with an old key are then still matched: a mailing half
sent with the old key resumes without mailing anybody twice, and nobody is lost. Records hashed without a
key (from before the key was required) need no secret to be matched and are always read.

`Keyring.hashers` is the one answer to "which keys may have hashed this record": every part that matches
hashes (the send logs, bounce records) asks it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from checks.errors import UsageError
from sender.journal import SCHEME_SHA256, Hasher, make_hasher

LOG_KEY = "MAILINGS_LOG_KEY"
PREVIOUS_KEYS = "MAILINGS_LOG_KEY_PREVIOUS"
# A short key can be found by trying keys against a guessed address; 32 hex digits are 128 bits.
MIN_KEY_CHARS = 32

HOW_TO_MAKE = (
    "make one with `openssl rand -hex 32`, keep a copy where the organisation keeps its secrets (a password "
    "manager or vault: it is needed for as long as the send logs are), and store it as the secret "
    f"{LOG_KEY} of the environment mailings-dispatch (`gh secret set {LOG_KEY} --env mailings-dispatch`); "
    "see README, 'The log key'"
)


@dataclass(frozen=True)
class Keyring:
    """The key that hashes new records, and the older keys that may have hashed existing ones."""

    current: Hasher
    previous: tuple[Hasher, ...] = ()

    def hashers(self) -> tuple[Hasher, ...]:
        """Every keyed hasher that may have hashed a record, the current key first: match a record's hash
        against the hash of an address under each. (Unkeyed records: `reading`.)"""
        found = [self.current] if self.current.key is not None else []
        found += [h for h in self.previous if h.key_check not in {f.key_check for f in found}]
        return tuple(found)

    def reading(self) -> tuple[Hasher, ...]:
        """`hashers`, and the unkeyed SHA-256 of records from before the key was required."""
        return (*self.hashers(), make_hasher(None))

    def find(self, scheme: str | None, key_id: str | None) -> Hasher | None:
        """The hasher that wrote hashes of *scheme* with the key whose id is *key_id*; None when no key held
        now is that one."""
        if scheme == SCHEME_SHA256:
            return make_hasher(None)
        return next((h for h in self.hashers() if h.scheme == scheme and h.key_check == key_id), None)

    def problem(self, used: Iterable[tuple[str, str | None]]) -> str | None:
        """Why the records hashed with *used* (scheme, key id) cannot all be matched now, or None."""
        missing = sorted({key_id or "?" for scheme, key_id in used if self.find(scheme, key_id) is None})
        if not missing:
            return None
        if not self.hashers():
            return (
                f"the send log's recipients were hashed with a key (key id {', '.join(missing)}) but {LOG_KEY} is "
                "not set; set it (a dry run needs it too, to tell who was sent before)"
            )
        held = ", ".join(h.key_check or "" for h in self.hashers())
        return (
            f"the send log's recipients were hashed with another MAILINGS_LOG_KEY (key id {', '.join(missing)}; "
            f"the keys set now have the ids {held}); set that key in {PREVIOUS_KEYS} (one key per line) and the new "
            "one in MAILINGS_LOG_KEY, or every recipient it hashed would be mailed again"
        )

    def others(self, used: Iterable[tuple[str, str | None]]) -> tuple[Hasher, ...]:
        """The hashers of *used* other than the current key's (in the order first used): what a rotation left."""
        found: list[Hasher] = []
        for scheme, key_id in used:
            hasher = self.find(scheme, key_id)
            if hasher is not None and hasher != self.current and hasher not in found:
                found.append(hasher)
        return tuple(found)


def key_problem(env: Mapping[str, str]) -> str | None:
    """Why *env* has no log key fit to send with, or None."""
    key = env.get(LOG_KEY, "")
    if not key.strip():
        return (
            f"{LOG_KEY} is not set; a run that sends needs it, because recipients are recorded only as keyed "
            f"hashes (a hash without a key can be reversed by hashing guessable addresses): {HOW_TO_MAKE}"
        )
    if len(key.strip()) < MIN_KEY_CHARS:
        short = f"{LOG_KEY} is shorter than {MIN_KEY_CHARS} characters, too short to keep addresses secret"
        return f"{short}: {HOW_TO_MAKE}"
    return None


def previous_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    """The keys of MAILINGS_LOG_KEY_PREVIOUS, one per line (blank lines and surrounding spaces ignored)."""
    return tuple(line.strip() for line in env.get(PREVIOUS_KEYS, "").splitlines() if line.strip())


def keyring_from_env(env: Mapping[str, str], *, required: bool = True) -> Keyring:
    """The keyring MAILINGS_LOG_KEY and MAILINGS_LOG_KEY_PREVIOUS make. UsageError when *required* and the key
    is missing or too short; without it (a dry run, a read), a missing key hashes with no key."""
    if required and (problem := key_problem(env)) is not None:
        raise UsageError(problem)
    key = env.get(LOG_KEY, "")  # as set, not stripped: the logs already written were hashed with it so
    return keyring(key if key.strip() else None, previous_keys(env))


def keyring(key: str | None, previous: Iterable[str] = ()) -> Keyring:
    """The keyring of *key* (None: no key) and the *previous* keys."""
    return Keyring(make_hasher(key), tuple(make_hasher(k) for k in previous if k))

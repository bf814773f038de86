"""Who a mailing reaches, in the terms a reviewer judges it by, showing no more than a short sample.

Per list file: its unique valid addresses, their split by domain (each internal domain on its own, the rest as
external), how many it shares with each other list file of the mailing, and a few addresses spread over the
file. IT's special lists are never sampled (their files are secret, and the check cannot read them anyway).

Between mailings (`digests`): each address as a keyed hash (BLAKE2b with a key made for the run), so that the
sets of two mailings can be compared without holding or showing an address. The key is random and lives only
as long as the process: nothing is stored or published, so no key needs to be kept secret from anyone; and
since a hash made with an unknown key cannot be recomputed from a guessed address, a digest that leaked into a
log or an artifact would tell nothing about who is on a list. Within one run the same key gives the same
digest for the same address, which is all a comparison needs.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from checks.addresses import domain_of, is_internal_domain, mailbox
from checks.model import Mailing
from checks.policy import Policy

SAMPLE_SIZE = 3
SHOWN_INTERNAL_DOMAINS = 4  # the largest internal domains by name; the rest together
SHOWN_EXTERNAL_DOMAINS = 3


@dataclass(frozen=True)
class ListAudience:
    """One list file as a reviewer judges it."""

    index: int  # of its entry in recipients.lists
    name: str
    count: int  # unique valid addresses
    internal: tuple[tuple[str, int], ...]  # (domain, addresses), the largest first
    other_internal: int  # addresses on the internal domains not shown one by one
    external: int
    external_domains: tuple[tuple[str, int], ...]  # the largest external domains
    external_domain_count: int
    shared: tuple[tuple[str, int], ...]  # (another list file's name, addresses both hold), where any
    sample: tuple[str, ...]  # a few addresses spread over the file, as written


def list_audiences(mailing: Mailing, policy: Policy) -> list[ListAudience]:
    """Each readable list file of *mailing*, judged (special lists are left out)."""
    valid = mailing.recipients.unique  # every valid address of the mailing, once
    files = [lst for lst in mailing.lists if lst.kind == "file" and lst.error is None]
    # Each list's valid addresses once, as the list itself first writes them.
    written: dict[int, dict[str, str]] = {}
    for lst in files:
        own: dict[str, str] = {}
        for entry in lst.addresses:
            key = mailbox(entry.address)
            if key in valid and key not in own:
                own[key] = entry.address
        written[lst.index] = own
    sets = {index: list(own) for index, own in written.items()}
    found: list[ListAudience] = []
    for lst in files:
        keys = sets[lst.index]
        members = set(keys)
        domains = Counter(domain_of(key) for key in keys)
        internal = sorted(
            ((d, n) for d, n in domains.items() if is_internal_domain(d, policy)), key=lambda item: (-item[1], item[0])
        )
        external = sorted(
            ((d, n) for d, n in domains.items() if not is_internal_domain(d, policy)),
            key=lambda item: (-item[1], item[0]),
        )
        common = (
            (other.name, len(members.intersection(sets[other.index])))
            for other in files
            if other.index != lst.index and other.name != lst.name
        )
        shared = tuple((name, count) for name, count in common if count)
        found.append(
            ListAudience(
                index=lst.index,
                name=lst.name,
                count=len(keys),
                internal=tuple(internal[:SHOWN_INTERNAL_DOMAINS]),
                other_internal=sum(n for _, n in internal[SHOWN_INTERNAL_DOMAINS:]),
                external=sum(n for _, n in external),
                external_domains=tuple(external[:SHOWN_EXTERNAL_DOMAINS]),
                external_domain_count=len(external),
                shared=shared,
                sample=tuple(written[lst.index][key] for key in spread(keys, SAMPLE_SIZE)),
            )
        )
    return found


def spread(items: Sequence[str], count: int) -> list[str]:
    """*count* items evenly spread from the first to the last (all of them when there are no more)."""
    if len(items) <= count:
        return list(items)
    if count == 1:
        return [items[0]]
    return [items[i * (len(items) - 1) // (count - 1)] for i in range(count)]


def run_key() -> bytes:
    """A key for one run's digests: random, never stored (see the module's docstring)."""
    return secrets.token_bytes(32)


def digests(addresses: Iterable[str], key: bytes) -> frozenset[bytes]:
    """Each normalised address as a keyed 16-byte BLAKE2b digest."""
    return frozenset(hashlib.blake2b(a.encode("utf-8"), key=key, digest_size=16).digest() for a in addresses)

"""E-mail addresses: validation (with a fast path for the common form), normalisation, counting.

Both the recipients rule and the sender use these functions, so "who is a
recipient" is decided in one place.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

import email_validator
from email_validator import EmailNotValidError, validate_email

from checks.model import Address, Mailing
from checks.policy import Policy

# A strict subset of what email-validator accepts, checked without it: ASCII
# dot-atom local part, LDH labels, an alphabetic top-level domain.
_COMMON = re.compile(
    r"[A-Za-z0-9_+-]{1,64}(?:\.[A-Za-z0-9_+-]{1,64})*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_SPECIAL_USE = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)
# Far over the 254-octet limit: refused without handing megabytes to the validator.
_HOPELESS_LENGTH = 1000


# The rule, the count and the summary each ask about every address of a mailing;
# remembering the last verdicts makes the second and third question nearly free.
@lru_cache(maxsize=1 << 16)
def address_problem(address: str) -> str | None:
    """None for a valid address, else why it is not one (no network look-ups)."""
    if not address.isascii():
        return _non_ascii(address)
    if len(address) > _HOPELESS_LENGTH:
        return f"The email address is too long ({len(address)} characters; at most 254)."
    if len(address) <= 254 and _COMMON.fullmatch(address):
        local, _, domain = address.rpartition("@")
        # A "--" in a label is IDNA's reserved form (xn--); only the validator can judge it.
        if (
            len(local) <= 64
            and len(domain) <= 253
            and "--" not in domain
            and domain.rsplit(".", 1)[-1].lower() not in _SPECIAL_USE
        ):
            return None
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


def _non_ascii(address: str) -> str:
    # Mass mailings go to plain ASCII addresses; a letter from another alphabet
    # is almost always a look-alike pasted in by mistake (Cyrillic 'а' for 'a').
    char = next(c for c in address if not c.isascii())
    name = unicodedata.name(char, "unnamed character")
    return (
        f"It contains U+{ord(char):04X} ({name}), which is not a plain ASCII character; retype the address "
        "(write an international domain in its xn-- form)."
    )


def shown(text: str, limit: int = 80) -> str:
    """*text* quoted for a message: control and invisible characters escaped, long text cut short."""
    text = text if len(text) <= limit else text[:limit] + "..."
    return "'" + "".join(c if c.isprintable() else repr(c)[1:-1] for c in text) + "'"


def normalise(address: str) -> str:
    """The form used to compare addresses and to count them: trimmed and case-folded."""
    return address.strip().lower()


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def is_internal_domain(domain: str, policy: Policy) -> bool:
    """True for an internal domain or one of its subdomains (after IDNA normalisation)."""
    from checks.hosts import host_is_internal

    return host_is_internal(domain, policy.internal_domains)


def unique_addresses(addresses: Iterable[Address]) -> dict[str, Address]:
    """First occurrence of each address, keyed by its normalised form, in list order."""
    seen: dict[str, Address] = {}
    for entry in addresses:
        seen.setdefault(normalise(entry.address), entry)
    return seen


def all_addresses(mailing: Mailing) -> list[Address]:
    """Every address in every resolved list of *mailing*, in order."""
    return [a for lst in mailing.lists for a in lst.addresses]


def recipient_count(mailing: Mailing, policy: Policy) -> int:
    """Unique addresses over all lists; an unread special list counts with its approximate size."""
    count = len({normalise(a.address) for a in all_addresses(mailing) if address_problem(a.address) is None})
    for lst in mailing.lists:
        if lst.kind == "special" and not lst.resolved and lst.name in policy.special_lists:
            count += policy.special_lists[lst.name][1]
    return count

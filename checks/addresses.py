"""E-mail addresses: validation (with a fast path for the common form), normalisation, counting.

Who a mailing's lists reach is decided here, once per mailing (`judge`, cached on the
model as `Mailing.recipients`): the recipients rule, the count, the summary and the
sender all read that one verdict.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from checks.model import Address, Mailing, RecipientList
from checks.policy import Policy

# Special-use top-level domains (RFC 6761, as email-validator lists them in
# SPECIAL_USE_DOMAIN_NAMES): the fast path leaves them to the validator, which refuses them.
_SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion", "test")

# A strict subset of what email-validator accepts, checked without it in one match: an
# ASCII dot-atom local part of at most 64 characters, LDH labels of at most 63 without
# "--" (IDNA's reserved xn-- form: only the validator can judge it), and an alphabetic
# top-level domain that is not special-use. With the length limit of 254 checked apart.
_COMMON = re.compile(
    r"(?=[^@]{1,64}@)[A-Za-z0-9_+-]{1,64}(?:\.[A-Za-z0-9_+-]{1,64})*"
    r"@(?!.*--)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    rf"(?!(?i:{'|'.join(_SPECIAL_USE)})\Z)[A-Za-z]{{2,63}}"
)
_MAX_LENGTH = 254
# Far over the 254-octet limit: refused without handing megabytes to the validator.
_HOPELESS_LENGTH = 1000


def address_problem(address: str) -> str | None:
    """None for a valid address, else why it is not one (no network look-ups)."""
    if not address.isascii():
        return _non_ascii(address)
    if len(address) > _HOPELESS_LENGTH:
        return f"The email address is too long ({len(address)} characters; at most 254)."
    if len(address) <= _MAX_LENGTH and _COMMON.fullmatch(address):
        return None
    # Imported here: most lists never need it, and importing it compiles its patterns.
    from email_validator import EmailNotValidError, validate_email

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


@dataclass(frozen=True)
class Invalid:
    entry: Address
    problem: str  # address_problem's words


@dataclass(frozen=True)
class Duplicate:
    entry: Address
    first: Address  # where the address appeared first (in any spelling of its case)
    first_list: RecipientList


@dataclass(frozen=True)
class ListVerdict:
    """One entry of recipients.lists, judged: its invalid addresses and, for a list file, its duplicates."""

    invalid: tuple[Invalid, ...] = ()
    # IT's special lists take part only as the place an address first appeared: their own
    # duplicates are not reported (nobody in the request can correct them).
    duplicates: tuple[Duplicate, ...] = ()


@dataclass(frozen=True)
class Recipients:
    """Who a mailing's lists reach: every address judged once."""

    # Each valid address once, by its normalised form, as first written; in list order.
    unique: Mapping[str, Address]
    # By list index; an entry that names a list already named above it is in `repeated` and not judged again.
    lists: Mapping[int, ListVerdict]
    repeated: frozenset[int]


def repeated_entries(lists: tuple[RecipientList, ...]) -> frozenset[int]:
    """Indexes of list entries that name a list already named above them."""
    seen: set[tuple[str, str]] = set()
    repeated: set[int] = set()
    for lst in lists:
        key = (lst.kind, lst.name)
        if key in seen:
            repeated.add(lst.index)
        seen.add(key)
    return frozenset(repeated)


def judge(mailing: Mailing) -> Recipients:
    """Every address of every list judged once; use `mailing.recipients`, which keeps the result."""
    repeated = repeated_entries(mailing.lists)
    first: dict[str, Address] = {}
    owner: dict[str, RecipientList] = {}  # the list of each entry of `first`, for the duplicate warnings
    verdicts: dict[int, ListVerdict] = {}
    # Bound once: this loop runs for every address of the mailing (hundreds of thousands at times).
    common, max_length = _COMMON.fullmatch, _MAX_LENGTH
    for lst in mailing.lists:
        if lst.index in repeated:
            continue
        invalid: list[Invalid] = []
        duplicates: list[Duplicate] = []
        report = lst.kind == "file"
        for entry in lst.addresses:
            address = entry.address
            if len(address) <= max_length and common(address) is not None:
                # No white space, ASCII only: lower() alone is its normalised form.
                key = address.lower()
            else:
                problem = address_problem(address)
                if problem is not None:
                    invalid.append(Invalid(entry, problem))
                    continue
                key = normalise(address)
            earlier = first.get(key)
            if earlier is None:
                first[key] = entry
                owner[key] = lst
            elif report:
                duplicates.append(Duplicate(entry, earlier, owner[key]))
        verdicts[lst.index] = ListVerdict(tuple(invalid), tuple(duplicates))
    return Recipients(first, verdicts, repeated)


def recipient_count(mailing: Mailing, policy: Policy) -> int:
    """Unique addresses over all lists; an unread special list counts with its approximate size."""
    count = len(mailing.recipients.unique)
    for lst in mailing.lists:
        if lst.kind == "special" and not lst.resolved and lst.name in policy.special_lists:
            count += policy.special_lists[lst.name][1]
    return count

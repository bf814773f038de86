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

from checks.escape import escaped
from checks.model import Address, Mailing, RecipientList
from checks.policy import Policy

# Special-use top-level domains (RFC 6761, as email-validator lists them in
# SPECIAL_USE_DOMAIN_NAMES): the fast path leaves them to the validator, which refuses them.
_SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion", "test")

# A strict subset of what email-validator accepts, checked without it in one match (for fullmatch): at
# most 254 characters; an ASCII dot-atom local part of at most 64; LDH labels of at most 63, with no
# "--" in the domain (IDNA's reserved xn-- form: only the validator can judge it); an alphabetic
# top-level domain that is not special-use. Every repeat ends at a character the next part cannot
# start with ('.', '-', '@'), so the match runs in linear time. (No possessive repeats: some Python
# 3.11 releases match them wrongly.)
_COMMON = re.compile(
    r"(?=.{1,254}\Z)(?=[^@]{1,64}@)[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
    r"@(?!.*--)(?:(?=[A-Za-z0-9-]{1,63}\.)[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\.)+"
    rf"(?!(?i:{'|'.join(_SPECIAL_USE)})\Z)[A-Za-z]{{2,63}}"
)
# Far over the 254-octet limit: refused without handing megabytes to the validator.
_HOPELESS_LENGTH = 1000


def address_problem(address: str) -> str | None:
    """None for a valid address, else why it is not one (no network look-ups)."""
    if not address.isascii():
        return _non_ascii(address)
    if len(address) > _HOPELESS_LENGTH:
        return f"The email address is too long ({len(address)} characters; at most 254)."
    if _COMMON.fullmatch(address):
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
    return "'" + escaped(text) + "'"


def normalise(address: str) -> str:
    """The form used to compare addresses and to count them: trimmed and case-folded."""
    return address.strip().lower()


def mailbox(address: str) -> str:
    """The mailbox an address reaches, as recipients are counted and told apart: normalised, and without a
    sub-address tag (anna+news@kth.se is anna@kth.se's mailbox). Not IT's lists' or the send log's key (normalise)."""
    key = normalise(address)
    local, at, domain = key.rpartition("@")
    plus = local.find("+")
    if plus > 0 and not local.startswith('"'):
        return f"{local[:plus]}{at}{domain}"
    return key


def _untagged(key: str) -> str:
    """*key* (a normalised address of the common form) without its sub-address tag."""
    local, _, domain = key.partition("@")
    plus = local.find("+")
    return f"{local[:plus]}@{domain}" if plus > 0 else key


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

    # Each mailbox once, by its key (`mailbox`: normalised, without a +tag), as first written; in list order.
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
    unique: dict[str, Address] = {}
    added_by: list[tuple[RecipientList, dict[str, Address]]] = []  # each judged list, with what it added
    verdicts: dict[int, ListVerdict] = {}
    for lst in mailing.lists:
        if lst.index in repeated:
            continue
        added = _all_common_and_new(lst.addresses, unique)
        if added is not None:
            verdict = ListVerdict()
        else:
            added, verdict = _one_by_one(lst, unique, added_by)
        unique.update(added)
        added_by.append((lst, added))
        verdicts[lst.index] = verdict
    return Recipients(unique, verdicts, repeated)


def _all_common_and_new(entries: tuple[Address, ...], unique: Mapping[str, Address]) -> dict[str, Address] | None:
    """The usual list, judged in a few passes that run in C: every address of the common form and new
    to the mailing (the normalised form to each entry). None for any other list."""
    addresses = [entry.address for entry in entries]
    if not all(map(_COMMON.fullmatch, addresses)):
        return None
    # Of the common form: no white space, ASCII only, so lower() alone is the normalised form; a list with a
    # sub-address tag anywhere (rare) pays for the pass that removes them.
    keys = list(map(str.lower, addresses))
    if "+" in "".join(keys):
        keys = list(map(_untagged, keys))
    added = dict(zip(keys, entries, strict=True))
    if len(added) != len(entries) or not unique.keys().isdisjoint(added):
        return None
    return added


def _one_by_one(
    lst: RecipientList, unique: Mapping[str, Address], added_by: list[tuple[RecipientList, dict[str, Address]]]
) -> tuple[dict[str, Address], ListVerdict]:
    """What *lst* adds to *unique*, its invalid addresses with the reason, and its duplicates with the place
    they appeared first (IT's special lists are not reported line by line: nobody in the request can correct them)."""
    added: dict[str, Address] = {}
    invalid: list[Invalid] = []
    duplicates: list[Duplicate] = []
    report = lst.kind == "file"
    for entry in lst.addresses:
        address = entry.address
        if _COMMON.fullmatch(address) is not None:
            key = _untagged(address.lower()) if "+" in address else address.lower()
        else:
            problem = address_problem(address)
            if problem is not None:
                invalid.append(Invalid(entry, problem))
                continue
            key = mailbox(address)
        if key in added:
            if report:
                duplicates.append(Duplicate(entry, added[key], lst))
        elif key in unique:
            if report:
                first_list = next(earlier for earlier, theirs in added_by if key in theirs)
                duplicates.append(Duplicate(entry, unique[key], first_list))
        else:
            added[key] = entry
    return added, ListVerdict(tuple(invalid), tuple(duplicates))


def recipient_count(mailing: Mailing, policy: Policy) -> int:
    """Unique addresses over all lists; an unread special list counts with its approximate size."""
    count = len(mailing.recipients.unique)
    for lst in mailing.lists:
        if lst.kind == "special" and not lst.resolved and lst.name in policy.special_lists:
            count += policy.special_lists[lst.name].approximate_size
    return count

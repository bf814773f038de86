"""[recipients] The lists reach at least the policy's minimum of recipients, and every address is valid.

Recipients are counted as mailboxes over all lists: addresses compared
without regard to case and without a sub-address tag (``anna+news@kth.se``
is ``anna@kth.se``), so that a list cannot be padded with spellings of one
person; a ``special`` list counts with its approximate size from the
policy (its real addresses are only read at send time). Fewer than
``min_recipients`` (500) is an error: such mailings go from the requester's
own e-mail client. Each invalid address is an error at its line; a duplicate
is a warning naming where the address first appeared (and, for another
spelling, why it is the same mailbox). Recipients outside the internal
domains are one warning that says how many. A list that is missing,
unreadable, empty, a CSV without an ``email`` column, or an unknown special
list is an error at its entry in mailing.yaml. Using a special list is a
warning: IT's lists are a qualified guess that cannot be adjusted. At send
time a special list that the sender could not resolve (its file not given,
the directory down, a key that does not fit, a size far from the policy's
``approximate_size``: the reason comes from ``sender.lists``) is an error at
the entry, so the mailing is blocked and nothing of it is sent. Whether IT's
list files in the repository are encrypted is [special-lists]'s to judge.

List files are read as a requester's spreadsheet or mail program writes
them. Accepted silently, because the meaning is certain: a header line that
names the address column ``email``, ``e-mail``, ``E-post``, ``Mail``,
``Adress`` and the like (any case, with or without a hyphen; an exact
``email`` wins, and ``adress``, which may be a postal address, comes last);
``;`` or a tab as the separator (Excel in Swedish writes ``;``); a ``.txt``
file whose first line is such a header (read as a table); UTF-8 with or
without a byte-order mark, and UTF-16 with one (Excel's "Unicode Text").
Read with one warning for the file, because something was guessed or left
out: a file in the older Windows character set (the addresses are plain
ASCII and read the same, but names with å, ä, ö are not kept reliably), and
``Name <address>`` entries as pasted from Outlook (the address between
``<`` and ``>`` is read; the warning says on how many lines). One error at
the entry, naming the fix: an Excel workbook renamed to ``.csv`` or
``.txt``, a file that is not text at all, a CSV with no address column.

Passes::

    recipients:
      lists:
        - file: recipients.txt      # 600 addresses, one per line
        - file: students.csv        # a header line with an email column
        - file: staff.csv           # Namn;E-post  (Excel in Swedish): read as is

A list file of over 1,000 addresses is expected to say where it came from
and when, for the reviewer (a warning at submission when it does not)::

    recipients:
      lists:
        - file: phd-students.txt    # 1,800 addresses
          source: {text: Ladok export of registered PhD students, date: "2027-01-05"}

Warns::

    recipients:
      lists:
        - file: everyone.txt        # 1,001 addresses and no source
        - file: pasted.txt          # Anna Andersson <anna@kth.se>: the address is read; one warning
        - file: old-excel.csv       # saved as "CSV (Comma delimited)", not UTF-8: one warning

Fails::

    recipients:
      lists:
        - file: few.txt             # 499 unique addresses: error
        - file: missing.txt         # no such file: error
        - file: staff.csv           # an .xlsx renamed: error, "save it as CSV UTF-8"
        - file: phones.csv          # header name,phone: no address column, error
        - special: all-staff        # not a special list of the policy: error
        - special: all-employees    # warning: prefer a specific list
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from checks.addresses import Duplicate, ListVerdict, is_internal_domain, normalise, recipient_count, shown
from checks.loader import ReadList
from checks.model import (
    Address,
    Context,
    Finding,
    ListProblem,
    Loc,
    Mailing,
    RecipientList,
    Stage,
    error,
    warning,
)
from checks.policy import EnvSource, Policy, special_list_variable

ID = "recipients"
STAGES: tuple[Stage, ...] = ("submit", "send")
# A list file longer than this should say where it came from (its entry's `source`), for the reviewer.
SOURCE_EXPECTED_OVER = 1000

# What to do about the loader's reasons for not reading a list file.
_FILE_HINTS: dict[ListProblem, str] = {
    "no-email-column": (
        "; start the file with a header line that names the column of addresses email, e-mail, e-post, mail or "
        "adress (e.g. name,email)"
    ),
    "not-a-list": "; name a file that holds only addresses",
    "csv": "; fix the quoting on that line, or save the list as plain text with one address per line",
    "unreadable": "; make it a regular file that can be read",
}


def check(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    if mailing.doc is None:
        return
    judged = mailing.recipients
    for lst in mailing.lists:
        yield from _entry(mailing, lst, lst.index in judged.repeated, policy, context)
    for lst in mailing.lists:
        # IT's special lists are summed up at their entry; a repeated entry was not judged again.
        if lst.kind == "file" and lst.index in judged.lists:
            yield from _notes(lst)
            yield from _file_addresses(lst, judged.lists[lst.index])
    yield from _outside(mailing, policy)
    yield from _count(mailing, policy)


def _reported_elsewhere(lst: RecipientList) -> bool:
    # The attachments rule reports list files whose path leaves the directory, and symbolic links.
    return lst.kind == "file" and lst.problem in ("outside", "symlink")


def _entry(mailing: Mailing, lst: RecipientList, repeated: bool, policy: Policy, context: Context) -> Iterator[Finding]:
    """Problems of one entry of recipients.lists, at its line in mailing.yaml."""
    loc = mailing.at("recipients", "lists", lst.index, lst.kind)
    if lst.error is not None:
        if not _reported_elsewhere(lst):
            yield error(loc, _entry_error(lst, policy))
        return
    if repeated:
        yield warning(loc, f"the {_label(lst)} is named twice in recipients.lists; remove this entry")
        return
    if lst.kind == "special":
        yield from _special(mailing, loc, lst, policy, context)
    elif not lst.addresses:
        yield error(
            loc,
            f"the list file {shown(lst.name)} holds no addresses; put one address per line in it "
            "(in a .csv, under the email column), or remove the entry",
        )
    elif len(lst.addresses) > SOURCE_EXPECTED_OVER and context.stage == "submit" and not _has_source(mailing, lst):
        yield warning(
            loc,
            f"the list file {shown(lst.name)} has {len(lst.addresses):,} addresses and no source: add "
            "source: {text: where it came from, date: YYYY-MM-DD} to this entry, so that the reviewer can judge "
            "whether these are the right people",
        )


def _has_source(mailing: Mailing, lst: RecipientList) -> bool:
    return mailing.get("recipients", "lists", lst.index, "source", kind=dict) is not None


def _label(lst: RecipientList) -> str:
    return f"special list {lst.name}" if lst.kind == "special" else f"list file {shown(lst.name)}"


def _entry_error(lst: RecipientList, policy: Policy) -> str:
    if lst.kind == "special":
        if lst.name not in policy.special_lists:
            known = ", ".join(sorted(policy.special_lists))
            return f"{shown(lst.name)} {lst.error}; use one of: {known}, or a list file of your own"
        if lst.problem == "unresolved":
            return f"the special list {lst.name} could not be resolved, so nothing of this mailing is sent: {lst.error}"
        return f"the special list {lst.name} {lst.error}; check {policy.special_lists[lst.name].source.describe()}"
    hint = _FILE_HINTS.get(lst.problem, "") if lst.problem else ""
    return f"the list file {shown(lst.name)} {lst.error}{hint}"


def _special(mailing: Mailing, loc: Loc, lst: RecipientList, policy: Policy, context: Context) -> Iterator[Finding]:
    special = policy.special_lists[lst.name]
    yield warning(
        loc,
        f"the special list {lst.name} ({special.name}, about {special.approximate_size} addresses) is IT's "
        "qualified guess from the user "
        "database: its quality is not guaranteed and it cannot be adjusted; prefer a specific list of the "
        "recipients",
    )
    if context.stage != "send":
        return
    source = special.source
    if not lst.resolved:
        # Only a list from an environment variable can be left unresolved: the others say why they failed.
        variable = source.variable if isinstance(source, EnvSource) else special_list_variable(lst.name)
        yield error(
            loc,
            f"the special list {lst.name} could not be read by the sender: set the environment variable "
            f"{variable} to the file that holds its addresses, one per line",
        )
    elif not lst.addresses:
        yield error(loc, f"the special list {lst.name} holds no addresses; check {source.describe()}")
    else:
        yield from _special_invalid(loc, lst, mailing.recipients.lists[lst.index])


def _special_invalid(loc: Loc, lst: RecipientList, verdict: ListVerdict) -> Iterator[Finding]:
    # Nobody in the request can correct IT's list, so its bad lines are summed up, not listed.
    invalid = verdict.invalid
    if invalid:
        first = invalid[0].entry
        yield warning(
            loc,
            f"the special list {lst.name} has {len(invalid)} invalid address{'es' if len(invalid) != 1 else ''}, "
            f"which are not sent to (the first: {shown(first.address)} on line {first.line} of {first.file}); "
            "ask IT to correct the list",
        )


def _notes(lst: RecipientList) -> Iterator[Finding]:
    """What the loader worked around in a list file (another character set, names with the addresses): one
    warning each, at the file's first line concerned."""
    if isinstance(lst, ReadList):
        for note in lst.notes:
            yield warning(Loc(note.file, note.line), f"the list file {shown(lst.name)} {note.words}")


def _file_addresses(lst: RecipientList, verdict: ListVerdict) -> Iterator[Finding]:
    """Invalid addresses (errors) and duplicates (warnings), each at its own line."""
    for bad in verdict.invalid:
        yield error(
            Loc(bad.entry.file, bad.entry.line),
            f"{shown(bad.entry.address)} is not a valid e-mail address: {bad.problem} Correct or remove it",
        )
    # Many alike are summed up by the report (checks.linter.condense), as for every rule.
    for duplicate in verdict.duplicates:
        yield warning(Loc(duplicate.entry.file, duplicate.entry.line), _duplicate(duplicate))


def _duplicate(duplicate: Duplicate) -> str:
    entry, earlier, earlier_list = duplicate.entry, duplicate.first, duplicate.first_list
    if earlier_list.kind == "special":
        where = f"in the special list {earlier_list.name}"
    elif earlier.file == entry.file:
        where = f"on line {earlier.line}"
    else:
        where = f"in {shown(earlier_list.name)} line {earlier.line}"
    spelling = "" if earlier.address == entry.address else f" as {shown(earlier.address)} ({_same(entry, earlier)})"
    return f"{shown(entry.address)} is listed already {where}{spelling}; remove this duplicate line"


def _same(entry: Address, earlier: Address) -> str:
    """Why two spellings reach one mailbox."""
    if normalise(entry.address) == normalise(earlier.address):
        return "case does not matter in addresses"
    return "a +tag after the name reaches the same mailbox, whatever the case"


def _outside(mailing: Mailing, policy: Policy) -> Iterator[Finding]:
    """How many of the recipients are outside the internal domains: one warning, so the reviewer asks why."""
    unique = mailing.recipients.unique
    # the keys are normalised: the domain is what follows the last @, and the domains are few
    domains = Counter(key[key.rfind("@") + 1 :] for key in unique)
    outside = sum(n for domain, n in domains.items() if not is_internal_domain(domain, policy))
    if outside:
        internal = ", ".join(policy.internal_domains)
        yield warning(
            mailing.at("recipients", "lists"),
            f"{outside:,} of the {len(unique):,} recipients in the lists {'is' if outside == 1 else 'are'} outside "
            "the internal domains "
            f"({internal} and their subdomains); mass mailings are for the university's own people: check that "
            "they belong in this mailing, and remove them otherwise",
        )


def _count(mailing: Mailing, policy: Policy) -> Iterator[Finding]:
    entries = mailing.get("recipients", "lists", kind=list)
    # Only a complete count is worth judging; unreadable lists are reported on their own.
    if not entries or len(mailing.lists) != len(entries) or any(lst.error for lst in mailing.lists):
        return
    count = recipient_count(mailing, policy)
    if count >= policy.min_recipients:
        return
    special = any(lst.kind == "special" for lst in mailing.lists)
    yield error(
        mailing.at("recipients", "lists"),
        f"the lists reach {count} recipient{'s' if count != 1 else ''} (unique valid addresses"
        f"{', special lists at their approximate size' if special else ''}); mailings to fewer than "
        f"{policy.min_recipients} recipients are not handled by IT: send this one from your personal e-mail client",
    )

"""The immutable model every rule reads: one mailing request, fully loaded."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

from checks.yamlsafe import Document, Mark

if TYPE_CHECKING:
    from checks.addresses import Recipients
    from checks.policy import Policy
    from checks.schemas import Said

Level = Literal["error", "warning"]
Stage = Literal["submit", "send"]

# Matched whole (fullmatch; \Z, since $ would also match before a final line break).
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*\Z")
MAILING_FILE = "mailing.yaml"
SCHEMA_FILE = "schema/mailing.schema.json"
SENDLOG_FILE = "sendlog.jsonl"
# The dispatch job's index of finished mailings at the repository's root (sender.finished); [finished-index].
FINISHED_INDEX_FILE = "finished-mailings.jsonl"
# The fields of mailing.yaml that steer a mailing without changing what it sends or to whom: the only part of a
# sent or sending mailing that a pull request may still change ([immutable]), and no part of its digest.
CONTROL_FIELDS = frozenset({"hold", "cancel", "resume_at", "resume_unknown"})
# Each mailing being sent has a branch of this name plus its id, holding its claim and checkpoints (sender.record)
# until the send log reaches main; [immutable] reads it too (checks.changes).
CLAIM_BRANCH_PREFIX = "mailings-sending/"
BODY_PATTERN = re.compile(r"^body\.([^.]+)\.txt\Z")


@dataclass(frozen=True, order=True)
class Problem:
    """One policy violation, sortable by position."""

    file: str
    line: int
    column: int
    level: Level
    rule: str
    message: str


@dataclass(frozen=True)
class Loc:
    file: str
    line: int = 1
    column: int = 1


@dataclass(frozen=True)
class Finding:
    """What a rule yields; the linter stamps the rule id to make a Problem."""

    loc: Loc
    level: Level
    message: str


def error(loc: Loc, message: str) -> Finding:
    return Finding(loc, "error", message)


def warning(loc: Loc, message: str) -> Finding:
    return Finding(loc, "warning", message)


EntryKind = Literal["file", "dir", "symlink", "other"]


@dataclass(frozen=True)
class DirEntry:
    name: str
    kind: EntryKind


@dataclass(frozen=True)
class Layout:
    """What stands directly under mailings/: the folder the requests live in, judged as a whole; and the other
    files of the repository that every request depends on (IT's encrypted lists)."""

    directory: str  # "mailings", relative to the root
    kind: EntryKind | None  # what the folder itself is; None when there is none
    entries: tuple[DirEntry, ...] = ()
    # Entries that are symbolic links to a directory: linked requests, which [attachments] reports.
    linked_dirs: frozenset[str] = frozenset()
    # The encrypted files of IT's special lists that the policy names ([special-lists] judges them).
    list_files: tuple[ListFile, ...] = ()


@dataclass(frozen=True)
class Body:
    lang: str
    file: str  # relative to the repository root
    raw: bytes


class Address(NamedTuple):
    """One address as written in a list file.

    A named tuple rather than a dataclass: a list holds up to hundreds of thousands of them, and a
    tuple of strings and a number is quicker to make and is dropped from the garbage collector's scans.
    """

    address: str
    file: str
    line: int


# Why a list could not be read. "outside" and "symlink" are the attachments rule's to report for a list
# file; the recipients rule reports every other kind ("unresolved": a special list the sender could not resolve).
ListProblem = Literal[
    "outside",
    "symlink",
    "not-a-list",
    "missing",
    "unreadable",
    "encoding",
    "no-email-column",
    "csv",
    "unknown-special",
    "unresolved",
]


class SpecialListError(Exception):
    """Why the sender could not resolve a special list, in words (raised by the mapping of special lists that the
    loader reads; the loader turns it into an unresolved list, which blocks every mailing that uses it)."""


# How an age-encrypted file begins: the binary format, and the ASCII armour (age-encryption.org/v1).
AGE_HEADERS = (b"age-encryption.org/v1\n", b"-----BEGIN AGE ENCRYPTED FILE-----")


def is_age_file(head: bytes) -> bool:
    """Whether a file that starts with *head* is encrypted with age (the armour may follow blank space)."""
    return head.startswith(AGE_HEADERS[0]) or head.lstrip().startswith(AGE_HEADERS[1])


@dataclass(frozen=True)
class ListFile:
    """A special list's encrypted file in the repository, as the policy names it and as it stands."""

    list_id: str
    path: str  # relative to the root, as policy.yaml gives it
    kind: EntryKind | None  # None: nothing there
    encrypted: bool  # it begins as an age file does
    plain_beside: str | None = None  # a file next to it with its name less .age: the plain list, most likely


@dataclass(frozen=True)
class RecipientList:
    """One entry of recipients.lists, resolved as far as it safely can be."""

    index: int
    kind: Literal["file", "special"]
    name: str
    addresses: tuple[Address, ...] = ()
    resolved: bool = False  # a special list whose addresses were read (send time)
    error: str | None = None  # why it could not be read, in words
    problem: ListProblem | None = None  # the same, as a kind the rules decide by


@dataclass(frozen=True)
class Mailing:
    id: str
    root: Path
    directory: str  # "mailings/<id>", relative to the root
    doc: Document | None  # None when mailing.yaml could not be parsed
    yaml_problem: Finding | None
    is_symlink: bool = False
    entries: tuple[DirEntry, ...] = ()
    bodies: Mapping[str, Body] = field(default_factory=dict)
    lists: tuple[RecipientList, ...] = ()
    send_at: datetime | None = None  # aware, in the policy's time zone
    # Its send log shows that a run started sending it: it was judged at submission and is history now.
    dispatched: bool = False
    # Where schema/mailing.schema.json is read from; None: the repository (the base's, when a pull request that
    # changes the schema is judged against the base's as well: checks.report.only_under_new).
    schema_root: Path | None = None

    @property
    def yaml_file(self) -> str:
        return f"{self.directory}/{MAILING_FILE}"

    @property
    def data(self) -> dict[str, Any]:
        return self.doc.data if self.doc is not None and isinstance(self.doc.data, dict) else {}

    def at(self, *path: str | int) -> Loc:
        """Where in mailing.yaml the field at *path* (or its nearest parent) is."""
        if self.doc is None:
            return Loc(self.yaml_file)
        mark = self.doc.mark(path)
        return Loc(self.yaml_file, mark.line, mark.column)

    def get(self, *path: str | int, kind: type | tuple[type, ...] = object) -> Any:
        """The value at *path* if present and of *kind*, else None (the schema rule reports shape errors)."""
        value: Any = self.data
        for part in path:
            if (isinstance(part, int) and isinstance(value, list) and 0 <= part < len(value)) or (
                isinstance(part, str) and isinstance(value, dict) and part in value
            ):
                value = value[part]
            else:
                return None
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds and object not in kinds:
            return None  # YAML true is not a number here
        return value if isinstance(value, kinds) else None

    @cached_property
    def schema_problems(self) -> tuple[tuple[Said, Mark], ...]:
        """What schema/mailing.schema.json finds wrong in mailing.yaml, each with where it points (computed once, for
        the schema rule and for the linter, which drops what other rules say of the same values)."""
        from checks.schemas import resource, schema_findings

        if self.doc is None:
            return ()
        return tuple(schema_findings(resource(self.schema_root or self.root, SCHEMA_FILE), self.doc, top="the request"))

    @cached_property
    def recipients(self) -> Recipients:
        """Who the lists reach, every address judged once (by checks.addresses, on first use)."""
        from checks.addresses import judge

        return judge(self)

    @property
    def languages(self) -> list[str]:
        langs = self.get("languages", kind=list) or []
        return [lang for lang in langs if isinstance(lang, str) and re.fullmatch(r"[a-z]{2}", lang)]

    @property
    def languages_readable(self) -> bool:
        """Whether languages is a list of two-letter codes, so that a body or subject for any other language is one
        it does not declare (else the schema rule's message about languages is the one to act on)."""
        langs = self.get("languages", kind=list)
        return bool(langs) and all(isinstance(lang, str) and re.fullmatch(r"[a-z]{2}", lang) for lang in langs)

    @property
    def is_crisis(self) -> bool:
        return self.get("crisis", kind=bool) is True


ChangeStatus = Literal["added", "modified", "deleted", "renamed", "copied", "type-changed"]


@dataclass(frozen=True, order=True)
class FileChange:
    """One file that differs from the base, as git reports it (paths relative to the root)."""

    path: str  # the path now; for a deletion, the path that is gone
    status: ChangeStatus
    old_path: str | None = None  # where a renamed or copied file came from

    @property
    def paths(self) -> tuple[str, ...]:
        """Every path the change touches: a rename changes both the old and the new one."""
        return (self.path,) if self.old_path is None or self.status == "copied" else (self.old_path, self.path)


@dataclass(frozen=True)
class YamlEdit:
    """What an edit of a mailing.yaml changes, beside its comments and layout."""

    control_only: bool  # the fields differ only in CONTROL_FIELDS
    cancel_removed: bool  # the version before had `cancel`, this one has none


@dataclass(frozen=True)
class Bounced:
    """Recipients whose mail came back for good in earlier mailings, as keyed hashes only (sender.bounces)."""

    # The send logs' keyed hashes of normalised addresses, under each key held (more than one after a rotation).
    hashes: tuple[Callable[[Iterable[str]], list[str]], ...]
    months: Mapping[str, str]  # hash -> the month of its first hard bounce, 'YYYY-MM'


@dataclass(frozen=True)
class Context:
    """What the outside world says; no rule reads the clock or the environment."""

    submitted: date
    now: datetime  # aware
    stage: Stage = "submit"
    # With `--changed-since REF`: the base it names, the files that differ from it, and the mailings whose
    # send log shows that sending started, each with the ref it shows on (REF, or the mailing's claim branch).
    base: str | None = None
    changes: tuple[FileChange, ...] = ()
    sent_on_base: Mapping[str, str] = field(default_factory=dict)
    # mailing.yaml files the change edits: what the edit touches (only control fields; a removed cancel).
    yaml_edits: Mapping[str, YamlEdit] = field(default_factory=dict)
    # With `--author LOGIN`: the GitHub user who opened the pull request (a claimed role is checked against it).
    author: str | None = None
    # Addresses that hard-bounced in earlier mailings (sender.bounces), when MAILINGS_LOG_KEY is at hand.
    bounced: Bounced | None = None
    # With `--changed-since REF` when this checkout's policy.yaml or schema/ differ from REF's: REF's policy, which
    # every request must pass as well (a request that passes only under the new one is an error).
    base_policy: BasePolicy | None = None
    # With `--lead-time-from-runs`: the day each request's send_at got its value in the pull request (by id);
    # the lead time of a request counts from it instead of `submitted` (checks.firstseen).
    submitted_by: Mapping[str, date] = field(default_factory=dict)
    # The merge base of --changed-since REF and HEAD.
    merge_base: str | None = None

    def for_mailing(self, mailing_id: str) -> Context:
        """The context one request is judged in: submitted when its send_at got its value, where that is known."""
        when = self.submitted_by.get(mailing_id)
        return self if when is None or when == self.submitted else replace(self, submitted=when)


@dataclass(frozen=True)
class BasePolicy:
    """The base's policy and schema, as read from git into a directory of their own."""

    policy: Policy
    schema_root: Path  # holds the base's schema/ (or lacks it, and the tool's own is used)
    changed: tuple[str, ...]  # the files that differ from the base: policy.yaml, schema/mailing.schema.json, ...


# The years a date of a request may name. Python's dates end at the years 1 and 9999, so a time zone's offset or a
# lateness window added to a date near them would fail later; no mailing is sent outside these years.
YEARS = range(2000, 3000)


def parse_local_datetime(text: str, tz: ZoneInfo, default_time: time) -> datetime | None:
    """'YYYY-MM-DD', 'YYYY-MM-DD HH:MM' or 'YYYY-MM-DDTHH:MM' as local time in *tz*; None if not a real time
    (or not in YEARS)."""
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2}))?", text.strip())
    if not m or int(m[1]) not in YEARS:
        return None
    try:
        day = date(int(m[1]), int(m[2]), int(m[3]))
        at = time(int(m[4]), int(m[5])) if m[4] else default_time
    except ValueError:
        return None
    return datetime.combine(day, at, tzinfo=tz)


# Send-log events, as checks.model.dispatched reads them (sender.journal writes them).
# Any other event but an end (attempt, accepted, failed, deferred, unknown, or one unknown here) means sending.
OPENING_EVENTS = frozenset({"claim", "start"})  # a run is about to send; open until that run's end
# Events that say why a mailing was not sent, or what a person decided, or that its contact person was told:
# none of them sends anything.
# quota: the relay's day quota left nothing, and when the mailing continues.
NOT_SENDING_EVENTS = frozenset({"blocked", "missed", "held", "cancelled", "notice", "quota"})
_END = "end"
# Counts in an end event that say the run tried a transaction (`attempted` is the number of them).
_END_SENDING_COUNTS = ("attempted", "accepted", "failed", "unknown")


def dispatched(lines: Iterable[bytes]) -> bool:
    """Whether send-log lines show that sending started, so that the mailing may have reached someone.

    True when any line is not a JSON object or names an event this does not know (fail closed); when any
    transaction was tried (attempt or an outcome, or an end that counts one); or when a claim or start is not
    followed by an end of the same run (that run may be sending now, or was killed before its checkpoint).
    A run closed by its end having tried nothing (a relay that could not be reached) does not count, nor do
    blocked and missed: the mailing was not sent and can still be fixed or given a new date.
    """
    open_runs: set[str | None] = set()
    for line in lines:
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            return True
        if not isinstance(event, dict):
            return True
        name = event.get("event")
        run = event.get("run")
        if not isinstance(run, str | None):
            return True  # no run to pair a claim with its end by
        if name in OPENING_EVENTS:
            open_runs.add(run)
        elif name == _END:
            if any(event.get(count, 0) != 0 or isinstance(event.get(count), bool) for count in _END_SENDING_COUNTS):
                return True
            open_runs.discard(run)
        elif name not in NOT_SENDING_EVENTS:
            return True
    return bool(open_runs)


def parse_date(text: Any) -> date | None:
    if not isinstance(text, str):
        return None
    try:
        day = date.fromisoformat(text.strip()) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()) else None
    except ValueError:
        return None
    return day if day is not None and day.year in YEARS else None

"""The organisation's policy (policy.yaml), validated and turned into typed values."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from checks.errors import UsageError
from checks.schemas import resource, schema_errors
from checks.yamlsafe import YamlError, loads

if TYPE_CHECKING:
    from holidays import HolidayBase

    from checks.calendar import WorkCalendar

POLICY_FILE = "policy.yaml"
POLICY_SCHEMA = "schema/policy.schema.json"
MAX_POLICY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class BlackoutPeriod:
    name: str
    start: tuple[int, int]  # (month, day), inclusive
    end: tuple[int, int]  # (month, day), inclusive; before start: wraps the new year


@dataclass(frozen=True)
class Sending:
    max_lateness_hours: float = 24.0
    delivery: Literal["bulk", "individual"] = "bulk"
    batch_size: int = 100
    connections: int = 4
    rate_limit: float | None = None
    # The relay's own limits: recipients it takes in a day (the policy's time zone; counted from every send log)
    # and in one message (caps batch_size). None: no limit.
    recipients_per_day: int | None = None
    recipients_per_message: int | None = None


@dataclass(frozen=True)
class Notify:
    team: str = "@kth-mailings/it"  # mentioned in the alert issue when a mailing needs a person
    mail_contact: bool = False  # the contact person hears by mail when a mailing completes or is stopped
    ask: str | None = None  # whom that message says to ask (and its Reply-To); default_from_address when None


@dataclass(frozen=True)
class ApprovalTeam:
    """An office whose approval a pull request that changes mailings/ needs (the `approvals` check)."""

    id: str
    name: str
    members: tuple[str, ...]  # GitHub logins, as written in policy.yaml


ScopeName = Literal["base", "one", "sub"]


@dataclass(frozen=True)
class LdapSource:
    """A special list read from the user directory at send time: *attribute* of every entry that *filter* matches
    under *base* (the connection and bind come from the environment, MAILINGS_LDAP_*)."""

    base: str
    filter: str
    attribute: str = "mail"
    scope: ScopeName = "sub"

    def describe(self) -> str:
        return f"LDAP {self.attribute} of {self.filter} under {self.base} (scope {self.scope})"


@dataclass(frozen=True)
class FileSource:
    """A special list in the repository, encrypted with age; *path* is relative to the repository root."""

    path: str

    def describe(self) -> str:
        return f"the encrypted file {self.path}"


@dataclass(frozen=True)
class EnvSource:
    """A special list in a file that an environment variable names (small lists; the way before the others)."""

    variable: str

    def describe(self) -> str:
        return f"the file that {self.variable} names"


ListSource = LdapSource | FileSource | EnvSource

DEFAULT_TOLERANCE = 0.30


@dataclass(frozen=True)
class SpecialList:
    """One of IT's lists: its name, how many addresses it should hold, and where it comes from at send time."""

    id: str
    name: str
    approximate_size: int
    source: ListSource
    tolerance: float = DEFAULT_TOLERANCE  # how far the resolved size may be from approximate_size, as a fraction

    @property
    def bounds(self) -> tuple[int, int]:
        """The fewest and the most addresses a resolved list may hold (both inclusive)."""
        slack = self.approximate_size * self.tolerance
        return max(1, math.ceil(self.approximate_size - slack)), math.floor(self.approximate_size + slack)

    def size_problem(self, size: int) -> str | None:
        """Why *size* addresses cannot be this list (a truncated or stale list), or None when it is plausible."""
        low, high = self.bounds
        if low <= size <= high:
            return None
        return (
            f"it has {size} addresses, but policy.yaml expects about {self.approximate_size} (within "
            f"{self.tolerance:.0%}: {low} to {high}); a list that far off may be truncated or stale: check its "
            f"source, or correct approximate_size in policy.yaml if the list really changed"
        )


@dataclass(frozen=True)
class Policy:
    path: Path
    organisation: str
    timezone: ZoneInfo
    internal_domains: tuple[str, ...]
    default_from_address: str
    default_send_time: time
    send_window: tuple[time, time]
    lead_time_working_days: int
    holiday_country: str
    holiday_subdivision: str | None
    holiday_categories: tuple[str, ...]
    holiday_language: str | None
    blackout_periods: tuple[BlackoutPeriod, ...]
    min_recipients: int
    max_body_words: int
    max_subject_chars: int
    roles: MappingProxyType[str, str]  # id -> name
    crisis_roles: frozenset[str]
    units: MappingProxyType[str, str]  # id -> name
    special_lists: MappingProxyType[str, SpecialList]  # id -> the list
    sending: Sending
    notify: Notify = Notify()
    # Who can read IT's encrypted list files: the age public keys `mailings lists encrypt` encrypts for.
    list_recipients: tuple[str, ...] = ()
    # The offices that must each approve a request (checks.approvals); none: the policy names none.
    approval_teams: tuple[ApprovalTeam, ...] = ()
    # Who may claim each role (sender.role): GitHub logins, lower-case (GitHub compares them without case).
    role_authors: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # The envelope sender (return path) of every mailing, with VERP tags (sender.verp); None: the from address.
    bounce_address: str | None = None

    def may_claim(self, role: str, author: str) -> bool:
        """Whether the GitHub user *author* is one policy.yaml lists for *role* (roles.<id>.authors)."""
        return author.lower() in self.role_authors.get(role, frozenset())

    @cached_property
    def holidays(self) -> HolidayBase:
        """The country's holidays, made on first use; its years are computed as they are asked for.

        Making it imports every country the holidays package knows (tens of milliseconds), so
        commands that never look at a holiday (the sender) do not pay for it.
        """
        return _holidays(
            self.holiday_country, self.holiday_subdivision, self.holiday_categories, self.holiday_language, self.path
        )

    @cached_property
    def calendar(self) -> WorkCalendar:
        """The working-day calendar this policy defines (built once, on first use)."""
        from checks.calendar import WorkCalendar

        return WorkCalendar(self)


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _monthday(text: str) -> tuple[int, int]:
    month, day = text.split("-")
    return int(month), int(day)


def load_policy(root: Path, *, check_holidays: bool = True) -> Policy:
    """Read and validate the policy of the repository at *root*; UsageError on any fault.

    *check_holidays* False leaves the holiday settings unchecked until a holiday is looked up:
    for the sender, which never looks one up (the pull request that changed policy.yaml was
    checked with them).
    """
    path = resource(root, POLICY_FILE)
    shown = path if not path.is_relative_to(root) else path.relative_to(root)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{shown}: cannot read the policy file: {exc.strerror}") from None
    if len(raw) > MAX_POLICY_BYTES:
        raise UsageError(f"{shown}: the policy file is larger than 1 MiB")
    try:
        doc = loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{shown}: the policy file is not valid UTF-8") from None
    except YamlError as exc:
        raise UsageError(f"{shown}:{exc.line}:{exc.column}: {exc.message}") from None
    errors = [f"{shown}:{m.line}:{m.column}: {msg}" for m, msg in schema_errors(resource(root, POLICY_SCHEMA), doc)]
    if errors:
        raise UsageError("the policy file is invalid:\n" + "\n".join(errors))
    policy = _build(path, doc.data, shown)
    if check_holidays:
        policy.holidays  # noqa: B018 - made now, so that a bad setting is an error here
    return policy


def _build(path: Path, data: dict[str, Any], shown: Path) -> Policy:
    try:
        tz = ZoneInfo(data["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"{shown}: unknown time zone {data['timezone']!r}") from None
    holidays_cfg = data["holidays"]
    sending = data["sending"]
    return Policy(
        path=path,
        organisation=data["organisation"],
        timezone=tz,
        internal_domains=tuple(d.strip(".") for d in data["internal_domains"]),
        default_from_address=data["default_from_address"],
        default_send_time=_hhmm(data["default_send_time"]),
        send_window=(_hhmm(data["send_window"]["start"]), _hhmm(data["send_window"]["end"])),
        lead_time_working_days=data["lead_time_working_days"],
        holiday_country=holidays_cfg["country"],
        holiday_subdivision=holidays_cfg.get("subdivision"),
        holiday_categories=tuple(holidays_cfg.get("categories", ["public"])),
        holiday_language=holidays_cfg.get("language"),
        blackout_periods=tuple(
            BlackoutPeriod(p["name"], _monthday(p["start"]), _monthday(p["end"])) for p in data["blackout_periods"]
        ),
        min_recipients=data["min_recipients"],
        max_body_words=data["max_body_words"],
        max_subject_chars=data["max_subject_chars"],
        roles=MappingProxyType({k: v["name"] for k, v in data["roles"].items()}),
        crisis_roles=frozenset(k for k, v in data["roles"].items() if v.get("crisis")),
        units=MappingProxyType({k: v["name"] for k, v in data["units"].items()}),
        special_lists=MappingProxyType({k: _special_list(k, v) for k, v in data["special_lists"].items()}),
        sending=Sending(**sending),
        notify=Notify(**data.get("notify", {})),
        list_recipients=tuple(data.get("special_lists_recipients", ())),
        role_authors=MappingProxyType(
            {k: frozenset(a.lower() for a in v.get("authors", ())) for k, v in data["roles"].items()}
        ),
        approval_teams=tuple(
            ApprovalTeam(team_id, team["name"], tuple(team["members"]))
            for team_id, team in data.get("approvals", {}).get("teams", {}).items()
        ),
        bounce_address=data.get("bounce_address"),
    )


def special_list_variable(list_id: str) -> str:
    """The environment variable naming a special list's file by default (MAILINGS_LIST_ALL_EMPLOYEES)."""
    return "MAILINGS_LIST_" + list_id.upper().replace("-", "_")


def _special_list(list_id: str, data: dict[str, Any]) -> SpecialList:
    source = data.get("source") or {}
    found: ListSource
    if "ldap" in source:
        ldap = source["ldap"]
        found = LdapSource(ldap["base"], ldap["filter"], ldap.get("attribute", "mail"), ldap.get("scope", "sub"))
    elif "file" in source:
        found = FileSource(source["file"])
    else:
        # No source: the file that MAILINGS_LIST_<ID> names, as before sources existed.
        found = EnvSource(source.get("env") or special_list_variable(list_id))
    tolerance = data.get("tolerance", DEFAULT_TOLERANCE)
    return SpecialList(list_id, data["name"], data["approximate_size"], found, float(tolerance))


def _holidays(
    country: str, subdivision: str | None, categories: tuple[str, ...], language: str | None, path: Path
) -> HolidayBase:
    """The configured country's holidays; UsageError for an unknown country, subdivision or category."""
    import holidays

    try:
        # No years yet: the country, subdivision and categories are checked as it is made, and
        # the calendar's look-ups compute only the years they need.
        return holidays.country_holidays(country, subdiv=subdivision, categories=categories, language=language)
    except (RuntimeError, ValueError, KeyError) as exc:  # an unknown country raises a RuntimeError subclass
        raise UsageError(f"{path.name}: holidays: {exc}") from None

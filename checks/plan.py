"""`mailings plan`: what the reviewer of a pull request needs to see, as Markdown.

Per changed mailing: with `--since REV`, what changed since that commit (the
last approved one) as then -> now, a dispatch moved earlier or a larger
audience flagged (checks.facts); when it goes out (local time), the earliest
allowed date, how many it reaches and through which lists, judged list by list
(checks.audience); what it says and links to, its event; the other mailings
within three working days and the recipients they share (checks.around); every
problem the checks found, the policy's relevance criteria as a checklist for
the reviewer, and the message as a mail client shows it, with the message as
sent collapsed (checks.mailview). Before them, the problems of the mailings/
folder as a whole ([layout]), if any. Long sections are collapsed.

Everything a request says is somebody's text, so none of it reaches the
Markdown raw (checks.markdown: escaped inline text, code spans, and a fenced
block for the message that nothing inside it can close).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from checks.addresses import recipient_count
from checks.around import WINDOW_WORKING_DAYS, Neighbour, Schedule
from checks.audience import ListAudience, list_audiences, run_key
from checks.calendar import MONTHS, WEEKDAYS
from checks.changes import LastChange, check_gone, list_changes, mailing_of
from checks.facts import Facts, alarms, facts, facts_before
from checks.hosts import host_is_internal
from checks.linter import condense
from checks.mailview import Letter, client_lines, raw_text
from checks.markdown import code, fenced, text
from checks.model import Context, FileChange, Mailing, Problem
from checks.policy import EnvSource, LdapSource, ListSource, Policy
from checks.report import check_repository, judge
from checks.rules.links import mailing_links, target
from checks.rules.sender import claim_confirmed

# The written policy's conditions for a mass mailing; a reviewer judges them, no rule can.
CRITERIA = (
    "Relevant to the whole recipient group: everyone in it must know about it, react to it or benefit from it",
    "Sent by an organisational sender within {org}",
    "About the operations of {org} only",
    "About something of a rare nature",
    "Common to all of {org}: not about the activities of one school, department, project or course",
)

# The sender's preview_letter(mailing, policy, now): the message as a recipient gets it, decoded;
# a ValueError (the sender's MessageError) when the request is too broken to build a message from.
Preview = Callable[[Mailing, Policy, datetime], Letter]


@dataclass(frozen=True)
class Since:
    """The earlier commit the plan compares each mailing with (`--since REV`): the last approved commit of the
    pull request, or the base of a new one."""

    rev: str  # as given
    commit: str  # the commit it names


_EVENT_FIELDS = (
    ("date", "Date"),
    ("time", "Time"),
    ("venue", "Venue"),
    ("registration", "Registration"),
    ("registration_deadline", "Registration deadline"),
)


def render(
    root: Path,
    targets: Sequence[Path],
    gone: Sequence[str],
    policy: Policy,
    context: Context,
    preview: Preview | None = None,
    since: Since | None = None,
) -> str:
    """The whole plan; with *preview*, each mailing's message too; with *since*, what changed since that commit."""
    out = [*_header(len(targets) + len(gone), policy, context)]
    out += folder_section(check_repository(root, policy, context))
    lists = list_changes(root, policy) if targets else {}
    # audiences are compared on hashes keyed for this run only (checks.audience)
    schedule = Schedule(root, policy, run_key())
    for directory in targets:
        mailing, problems = judge(root, directory, policy, context)
        before = (since, facts_before(root, since.commit, mailing.id, policy)) if since is not None else None
        near = schedule.neighbours(mailing)
        out += mailing_section(mailing, policy, context.for_mailing(mailing.id), problems, preview, lists, before, near)
    for mailing_id in gone:
        out += gone_section(mailing_id, check_gone(root, [mailing_id], policy, context))
    out += _other_files(context.changes)
    return "\n".join(out) + "\n"


def _header(count: int, policy: Policy, context: Context) -> Iterator[str]:
    yield "## Mailing plan"
    yield ""
    earliest, _ = policy.calendar.earliest_dispatch(context.submitted)
    since = f"Changed since {code(context.base)}: " if context.base is not None else ""
    yield (
        f"{since}{count} mailing{'s' if count != 1 else ''}. For a request submitted on "
        f"{long_date(context.submitted)}, the earliest allowed dispatch date is {long_date(earliest)} "
        f"({policy.lead_time_working_days} working days later; crisis mailings are exempt)."
    )
    if count == 0:
        yield ""
        yield "No mailing changed." if context.base is not None else "No mailings."


def mailing_section(
    mailing: Mailing,
    policy: Policy,
    context: Context,
    problems: Sequence[Problem],
    preview: Preview | None = None,
    lists: Mapping[str, LastChange] | None = None,
    before: tuple[Since, tuple[str, Facts] | None] | None = None,
    near: Sequence[Neighbour] | None = None,
) -> list[str]:
    """One mailing: what changed since an earlier commit, facts, problems, the relevance checklist and the
    message. *lists*: the last change of each special list's encrypted file (checks.changes.list_changes);
    *before*: the commit to compare with, and the mailing's id and facts there (None: it was not there)."""
    heading = f"### {_verdict(problems)} {code(mailing.directory)}: {_counts(problems)}"
    changed: list[str] = []
    if before is not None:
        now = facts(mailing, policy)
        found = alarms(before[1][1], now) if before[1] is not None else []
        if found:
            heading += (
                f"; ⚠ {len(found)} change{'s' if len(found) != 1 else ''} to look at since {_since_name(before[0])}"
            )
        changed = since_section(before[0], before[1], mailing.id, now, found, policy)
    out = ["", heading, "", *changed]
    out += _facts(mailing, policy, context, lists or {})
    links = list(_links(mailing, policy))
    count = sum(line.startswith("- ") for line in links)
    out += ["", "#### Links", ""]
    out += collapsed(f"{count} links and where they lead", links) if count > _OPEN_ROWS else links
    if mailing.get("event") is not None:
        out += ["", "#### Event", "", *_event(mailing)]
    if near is not None:
        out += ["", "#### Mailings around it", "", *around(mailing, policy, near)]
    out += ["", "#### Problems", "", *_problems(problems)]
    out += ["", "#### Relevance: the reviewer's judgement", "", *checklist(mailing, policy, context)]
    if preview is not None:
        out += ["", "#### The message as recipients will see it", "", *_message(mailing, policy, context, preview)]
    return out


def folder_section(problems: Sequence[Problem]) -> list[str]:
    """What is wrong with the mailings/ folder as a whole, or IT's list files; nothing when all is well."""
    if not problems:
        return []
    # Named by where the problems are: the mailings/ folder ([layout]), or IT's list files ([special-lists]) too.
    places = sorted({p.file.split("/", 1)[0] + ("/" if "/" in p.file else "") for p in problems})
    out = ["", f"### {_verdict(problems)} {', '.join(code(place) for place in places)}: {_counts(problems)}", ""]
    return [*out, "#### Problems", "", *_problems(problems)]


def gone_section(mailing_id: str, problems: Sequence[Problem]) -> list[str]:
    """A mailing whose directory this change removes."""
    out = ["", f"### {_verdict(problems)} {code(f'mailings/{mailing_id}')}: removed, {_counts(problems)}", ""]
    return [*out, "#### Problems", "", *_problems(problems)]


def _verdict(problems: Sequence[Problem]) -> str:
    if any(p.level == "error" for p in problems):
        return "❌"
    return "⚠️" if problems else "✅"


def _counts(problems: Sequence[Problem]) -> str:
    errors = sum(p.level == "error" for p in problems)
    warnings = len(problems) - errors
    if not problems:
        return "no problems"
    return f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}"


def _facts(mailing: Mailing, policy: Policy, context: Context, lists: Mapping[str, LastChange]) -> Iterator[str]:
    yield f"- **Dispatch:** {local_time(mailing.send_at, policy) if mailing.send_at else _missing('send_at')}"
    if mailing.is_crisis:
        yield "- **Earliest allowed date:** none: a crisis mailing is exempt from the lead time"
    else:
        earliest, _ = policy.calendar.earliest_dispatch(context.submitted)
        submitted = long_date(context.submitted)
        yield f"- **Earliest allowed date:** {long_date(earliest)}, for a request submitted on {submitted}"
    count = recipient_count(mailing, policy)
    yield f"- **Recipients:** {count} (unique addresses; IT's lists at their approximate size)"
    yield from _lists(mailing, policy, lists)
    yield from _relay_days(mailing, policy, count)
    yield f"- **Recipient group:** {_field(mailing, 'recipients', 'group')}"
    yield f"- **Why this group:** {_field(mailing, 'recipients', 'why')}"
    yield f"- **Purpose:** {_field(mailing, 'purpose')}"
    yield f"- **Sender:** {_sender(mailing, policy)}"
    yield f"- **Contact:** {_contact(mailing)}"
    yield f"- **Languages:** {', '.join(code(lang) for lang in mailing.languages) or _missing('languages')}"
    yield "- **Subjects:**"
    subjects = mailing.get("subject", kind=dict) or {}
    for lang in mailing.languages or list(subjects):
        yield f"  - {code(lang)}: {_field(mailing, 'subject', lang)}"
    if mailing.is_crisis:
        yield "- **Crisis mailing:** yes (the lead time and the blackout periods do not apply)"
    if mailing.get("blackout_exception") is not None:
        yield (
            f"- **Blackout exception:** {_field(mailing, 'blackout_exception', 'reason')}; agreed with "
            f"{_field(mailing, 'blackout_exception', 'agreed_with')}"
        )


def _relay_days(mailing: Mailing, policy: Policy, count: int) -> Iterator[str]:
    """When the relay's day quota (sending.recipients_per_day) cannot take the mailing in one day: the reviewer
    approves a mailing that goes out over several days (sender.quota continues it each next day)."""
    limit = policy.sending.recipients_per_day
    if not limit or count <= limit:
        return
    days = -(-count // limit)
    start = local_time(mailing.send_at, policy) if mailing.send_at else "its send_at"
    yield (
        f"- **Over several days:** the relay takes {limit:,} recipients a day (` sending.recipients_per_day ` in "
        f"` policy.yaml `), so these {count:,} go out over at least {days} days from {start}, each day's part at the "
        "same time of day; other mailings of those days share the quota, and may make it more"
    )


def _lists(mailing: Mailing, policy: Policy, lists: Mapping[str, LastChange]) -> Iterator[str]:
    audiences = {audience.index: audience for audience in list_audiences(mailing, policy)}
    files = sum(lst.kind == "file" and lst.error is None for lst in mailing.lists)
    for lst in mailing.lists:
        if lst.error is not None:
            yield f"  - {code(lst.name)}: {text(lst.error)}"
        elif lst.kind == "file":
            yield (
                f"  - {code(lst.name)}: {len(lst.addresses)} address{'es' if len(lst.addresses) != 1 else ''}; "
                f"{_source(mailing, lst.index)}"
            )
            if lst.index in audiences:
                yield from (f"    - {line}" for line in _audience(audiences[lst.index], files > 1))
        else:
            special = policy.special_lists[lst.name]
            yield (
                f"  - {code(lst.name)} ({text(special.name)}): about {special.approximate_size}, a list IT provides, "
                f"{_provenance(special.source, lists.get(special.id))}; who else is on it is known only when it is "
                "sent, so it is not sampled or compared here"
            )


def _source(mailing: Mailing, index: int) -> str:
    """Where a list file came from and when, as its entry says (`source`)."""
    said = mailing.get("recipients", "lists", index, "source", kind=dict)
    if said is None:
        return "no source given"
    return f"source: {_field(mailing, 'recipients', 'lists', index, 'source', 'text')}, taken on " + _field(
        mailing, "recipients", "lists", index, "source", "date"
    )


def _audience(audience: ListAudience, others: bool) -> Iterator[str]:
    """A list file's unique addresses by domain, what it shares with the other list files, and a short sample."""
    parts = [f"{code(domain)} {count:,}" for domain, count in audience.internal]
    if audience.other_internal:
        parts.append(f"other internal {audience.other_internal:,}")
    if audience.external:
        shown = [f"{code(domain)} {count:,}" for domain, count in audience.external_domains]
        more = audience.external_domain_count - len(shown)
        if more:
            shown.append(f"{more:,} more domain{'s' if more != 1 else ''}")
        parts.append(f"external {audience.external:,} ({', '.join(shown)})")
    yield f"Unique valid addresses by domain: {', '.join(parts) or 'none'}"
    if audience.shared:
        yield "Shared with " + ", ".join(f"{code(name)}: {count:,}" for name, count in audience.shared)
    elif others:
        yield "Shares no address with the other list files"
    if audience.sample:
        yield f"Sample: {', '.join(code(address) for address in audience.sample)}"


def _provenance(source: ListSource, change: LastChange | None) -> str:
    """Where a special list comes from when the mailing is sent, and for a file its last change."""
    if isinstance(source, LdapSource):
        return f"read at send time from the user directory: {code(source.filter)} under {code(source.base)}"
    if isinstance(source, EnvSource):
        return f"read at send time from the file that {code(source.variable)} names"
    if change is None:
        return f"decrypted at send time from {code(source.path)}, which is not committed"
    edited = " (and edited since, not committed)" if change.uncommitted else ""
    return (
        f"decrypted at send time from {code(source.path)}, last changed in {code(change.commit[:12])} on "
        f"{text(change.date[:10])}{edited}"
    )


def _sender(mailing: Mailing, policy: Policy) -> str:
    unit = mailing.get("sender", "unit", kind=str)
    role = mailing.get("sender", "role", kind=str)
    parts = [
        f"{text(policy.units[unit])} ({code(unit)})" if unit in policy.units else _field(mailing, "sender", "unit")
    ]
    if role is not None:
        parts.append(f"as {text(policy.roles[role]) if role in policy.roles else code(role)}")
    address = mailing.get("from_address", kind=str) or policy.default_from_address
    parts.append(f"from {code(address)}")
    return " ".join(parts)


def _contact(mailing: Mailing) -> str:
    parts = [_field(mailing, "contact", "name"), code(mailing.get("contact", "email", kind=str) or "")]
    phone = mailing.get("contact", "phone", kind=str)
    parts.append(text(phone) if phone else "no phone given")
    return ", ".join(parts)


def _links(mailing: Mailing, policy: Policy) -> Iterator[str]:
    """Every address in the message and the event text, where a browser takes it, and the declared stopovers."""
    found = list(mailing_links(mailing))
    if not found:
        yield "No links in the message."
    for link in found:
        host = target(link.url).host
        where = "internal" if host and host_is_internal(host, policy.internal_domains) else "external"
        place = link.loc.file.removeprefix(f"{mailing.directory}/")
        yield (
            f"- {code(link.written)} leads to {code(host) if host else 'no checkable host'} ({where}); "
            f"{code(place)} line {link.loc.line}"
        )
    entries = [e for e in mailing.get("external_links", kind=list) or [] if isinstance(e, dict)]
    if entries:
        yield ""
        yield "External links declared, each with its stopover page:"
        yield ""
    for entry in entries:
        url, stopover = entry.get("url"), entry.get("stopover")
        yield (
            f"- {code(url) if isinstance(url, str) else '(no url)'} through "
            f"{code(stopover) if isinstance(stopover, str) else '(no stopover page)'}"
        )


# Tables of more rows than this are collapsed; no more than _MOST_ROWS rows are shown.
_OPEN_ROWS = 8
_MOST_ROWS = 15
_COUNTS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def around(mailing: Mailing, policy: Policy, near: Sequence[Neighbour]) -> list[str]:
    """The other mailings within a few working days, and a warning for each that shares much of the audience."""
    if mailing.send_at is None:
        return ["No dispatch time yet, so nothing to compare with."]
    own = recipient_count(mailing, policy)
    out = [
        f"- **⚠ Shared audience:** {n.shared:,} of these recipients get another mass mailing {_days(n.days)} "
        f"({code(n.id)}, {n.recipients:,} recipients"
        f"{', counting ' + ', '.join(n.shared_special) + ' at its approximate size' if n.shared_special else ''})"
        for n in near
        if n.heavy(own)
    ]
    if not near:
        return [*out, f"No other mailing is scheduled within {_COUNTS[WINDOW_WORKING_DAYS]} working days of this one."]
    out += [""] if out else []
    # In a busy week the heavy overlaps and the closest are shown, so that the plan stays short.
    ranked = sorted(near, key=lambda n: (not n.heavy(own), abs(n.days), -n.shared, n.id))
    shown, rest = ranked[:_MOST_ROWS], ranked[_MOST_ROWS:]
    rows = [
        "| Mailing | Dispatch | Sender | Recipients | Shared with this one | State |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {text(n.id)} | {_short_time(n.send_at, policy)} ({_days(n.days)}) | {text(n.sender)} | "
            f"{n.recipients:,} | {n.shared:,} | {n.state_text} |"
            for n in sorted(shown, key=lambda n: (n.send_at, n.id))
        ),
    ]
    if rest:
        rows += [
            "",
            f"And {len(rest):,} more, together {sum(n.recipients for n in rest):,} recipients, "
            f"{sum(n.shared for n in rest):,} of them shared with this one.",
        ]
    title = (
        f"{len(near)} other mailing{'s' if len(near) != 1 else ''} within {_COUNTS[WINDOW_WORKING_DAYS]} working days"
    )
    out += rows if len(near) <= _OPEN_ROWS else collapsed(title, rows)
    uses_special = any(lst.kind == "special" for lst in mailing.lists)
    out += [
        "",
        "Shared recipients are counted on keyed hashes made for this run: no address is compared in the clear or "
        "shown."
        + (
            " IT's special lists cannot be read by the check: a list both mailings use counts at its approximate "
            "size; one only this mailing uses is not compared."
            if uses_special
            else ""
        ),
    ]
    return out


def _days(days: int) -> str:
    if days == 0:
        return "the same day"
    count = _COUNTS[abs(days)] if abs(days) < len(_COUNTS) else str(abs(days))
    return f"{count} day{'s' if abs(days) != 1 else ''} {'earlier' if days < 0 else 'later'}"


def _short_time(moment: datetime, policy: Policy) -> str:
    local = moment.astimezone(policy.timezone)
    return f"{WEEKDAYS[local.weekday()][:3]} {local.day} {MONTHS[local.month - 1][:3]} {local.strftime('%H:%M')}"


def _event(mailing: Mailing) -> Iterator[str]:
    for key, label in _EVENT_FIELDS:
        yield f"- **{label}:** {_field(mailing, 'event', key)}"


def _problems(problems: Sequence[Problem]) -> Iterator[str]:
    if not problems:
        yield "None."
    for p in condense(problems).problems:
        yield f"- {p.level} {code(f'{p.file}:{p.line}:{p.column}')} {text(f'[{p.rule}]')} {text(p.message)}"


def checklist(mailing: Mailing, policy: Policy, context: Context) -> list[str]:
    """The policy's relevance criteria; met by standing when a top-management function sends, and only when its
    claim is confirmed (the pull request's author is listed for the role): an unconfirmed claim ticks nothing."""
    role = mailing.get("sender", "role", kind=str)
    org = policy.organisation
    if role in policy.roles and claim_confirmed(mailing, policy, context):
        standing = f" (met by standing: {text(policy.roles[role])} may always send mass mailings)"
        return [f"- [x] {text(criterion.format(org=org))}{standing}" for criterion in CRITERIA]
    return [f"- [ ] {text(criterion.format(org=org))}" for criterion in CRITERIA]


def _message(mailing: Mailing, policy: Policy, context: Context, preview: Preview) -> list[str]:
    """As a mail client shows it (From, To, Subject, Date; the body soft-wrapped), then every header and the
    body as sent, collapsed."""
    # dated as it will be sent, so the reviewer reads the Date recipients will see
    try:
        letter = preview(mailing, policy, mailing.send_at or context.now)
    except ValueError as exc:
        return [f"No message can be built until the request is fixed: {text(str(exc))}"]
    return [
        *fenced("\n".join(client_lines(letter, policy.timezone))).splitlines(),
        "",
        *collapsed("The message as sent: every header, the body unwrapped", fenced(raw_text(letter)).splitlines()),
    ]


def collapsed(summary: str, lines: Sequence[str]) -> list[str]:
    """*lines* in a collapsed section. *summary* is the plan's own words (raw HTML): never a request's text."""
    return [f"<details><summary>{summary}</summary>", "", *lines, "", "</details>"]


def _since_name(since: Since) -> str:
    return (
        code(since.commit[:12])
        if since.commit.startswith(since.rev)
        else f"{code(since.rev)} ({code(since.commit[:12])})"
    )


def since_section(
    since: Since,
    then: tuple[str, Facts] | None,
    mailing_id: str,
    after: Facts,
    found: Sequence[str],
    policy: Policy,
) -> list[str]:
    """What changed since *since*: the alarms first, then each fact that moved as before → after. *then*: the id
    the request had in that commit, and its facts there."""
    out = [f"#### Changed since {_since_name(since)}", ""]
    if then is None:
        return [*out, "Not there then: everything in this request is new since that commit.", ""]
    old_id, before = then
    if old_id != mailing_id:
        out += [f"Renamed since: it was {code(f'mailings/{old_id}')} then.", ""]
    out += [f"- **⚠ Look at this:** {text(words)}" for words in found]
    rows = list(_moved(before, after, policy))
    if not rows:
        return [*out, *([""] if found else []), "Nothing a reviewer approves changed: the same facts as then.", ""]
    out += [""] if found else []
    table = ["| Fact | Then | Now |", "| --- | --- | --- |"]
    table += [f"| {text(name)} | {text(then)} | {text(now)} |" for name, then, now in rows]
    out += table if len(rows) <= 2 * _OPEN_ROWS else collapsed(f"{len(rows)} facts changed", table)
    return [*out, ""]


def _moved(before: Facts, after: Facts, policy: Policy) -> Iterator[tuple[str, str, str]]:
    """(fact, then, now) for each fact that differs."""

    def when(moment: datetime | None) -> str:
        return local_time(moment, policy) if moment is not None else "none"

    if before.send_at != after.send_at:
        yield "Dispatch", when(before.send_at), when(after.send_at)
    if before.recipients != after.recipients:
        yield "Recipients", f"{before.recipients:,}", f"{after.recipients:,}"
    yield from _pairs("List", dict(before.lists), dict(after.lists), lambda n: f"{n:,}")
    new, gone = len(after.addresses - before.addresses), len(before.addresses - after.addresses)
    if new or gone:
        yield "Addresses in the list files", f"{gone:,} not there now", f"{new:,} new"
    yield from _pairs("Subject", dict(before.subjects), dict(after.subjects), str)
    for link in [link for link in before.links if link not in after.links]:
        yield "Link", link, "removed"
    for link in [link for link in after.links if link not in before.links]:
        yield "Link", "none", link
    if before.languages != after.languages:
        yield "Languages", ", ".join(before.languages) or "none", ", ".join(after.languages) or "none"
    if before.sender != after.sender:
        yield "Sender", before.sender, after.sender
    yield from _pairs("Event", dict(before.event), dict(after.event), str)
    if before.crisis != after.crisis:
        yield "Crisis mailing", "yes" if before.crisis else "no", "yes" if after.crisis else "no"


def _pairs(
    fact: str, then: Mapping[str, object], now: Mapping[str, object], show: Callable[[object], str]
) -> Iterator[tuple[str, str, str]]:
    for key in dict.fromkeys([*then, *now]):
        if then.get(key) != now.get(key):
            old, new = then.get(key), now.get(key)
            yield f"{fact} {key}", show(old) if old is not None else "none", show(new) if new is not None else "none"


def _other_files(changes: Iterable[FileChange]) -> list[str]:
    others = [c for c in changes if all(mailing_of(path) is None for path in c.paths)]
    if not others:
        return []
    out = ["", "### Other files changed", "", "Code, schema, policy and workflows: IT reviews these.", ""]
    for change in others:
        shown = f"{code(change.old_path)} → {code(change.path)}" if change.old_path else code(change.path)
        out.append(f"- {shown} ({change.status})")
    return out


def _field(mailing: Mailing, *path: str) -> str:
    value = mailing.get(*path, kind=str)
    return text(value) if value and value.strip() else _missing(".".join(path))


def _missing(name: str) -> str:
    return f"*missing* ({code(name)})"


def long_date(day: date) -> str:
    """'Wednesday 10 February 2027', in English whatever the locale."""
    return f"{WEEKDAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1]} {day.year}"


def local_time(moment: datetime, policy: Policy) -> str:
    """'Wednesday 10 February 2027, 09:00 CET (UTC+01:00, Europe/Stockholm)'."""
    local = moment.astimezone(policy.timezone)
    offset = local.strftime("%z")
    return (
        f"{long_date(local.date())}, {local.strftime('%H:%M')} {local.tzname()} "
        f"(UTC{offset[:3]}:{offset[3:]}, {policy.timezone.key})"
    )

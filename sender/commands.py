"""Subcommands of the sender: send, record, status, preview."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from checks.addresses import address_problem, domain_of, is_internal_domain, recipient_count
from checks.errors import UsageError
from checks.escape import escaped
from checks.loader import MAILINGS_DIR, discover, listing, load_mailing
from checks.model import ID_PATTERN, SENDLOG_FILE
from checks.options import add_common, add_now, clock, parse_now, repo_root
from checks.policy import Policy, load_policy
from sender.config import (
    HOST,
    MaildirSettings,
    SmtpSettings,
    settings_from_env,
    special_lists_for_send,
    special_lists_from_env,
)

if TYPE_CHECKING:
    from sender.dispatch import Brake, Outcome
    from sender.gitops import LogSummary
    from sender.pace import StopRequest
    from sender.record import RemoteRecord

# The send log, the states and asyncio are imported in the commands that use them: every `mailings`
# command loads this module to register its subcommands, and `mailings check` needs none of them.

LOG_KEY = "MAILINGS_LOG_KEY"
OUTBOX_DIR = "outbox"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the sender's subcommands to the `mailings` parser."""
    send = sub.add_parser("send", help="send the due mailings and record each in its send log")
    add_common(send, submitted=False)
    add_now(send)
    send.add_argument("--only", metavar="ID", help="handle only this mailing")
    send.add_argument("--dry-run", action="store_true", help="say what would be sent; send and write nothing")
    send.add_argument(
        "--outbox", metavar="DIR", help="the Maildir used when MAILINGS_SMTP_HOST is unset (default: outbox/)"
    )
    send.add_argument("--commit", action="store_true", help="commit the changed send logs as the bot")
    send.add_argument("--push", action="store_true", help="commit, then push (rebasing and retrying when behind)")
    send.set_defaults(func=cmd_send)

    record = sub.add_parser(
        "record", help="commit (and push) the send logs a stopped run left uncommitted; sends nothing"
    )
    add_common(record, submitted=False)
    record.add_argument("--push", action="store_true", help="push too (rebasing and retrying when behind)")
    record.set_defaults(func=cmd_record)

    status = sub.add_parser("status", help="show every mailing's state, recipients and times")
    add_common(status, submitted=False)
    add_now(status)
    status.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    status.add_argument(
        "--verify",
        action="store_true",
        help="replay every finished send log in full and check its summary and index entry (slow; for audits); "
        "exit 1 on a mismatch",
    )
    status.add_argument(
        "--all",
        action="store_true",
        help=f"list every mailing (default: all but those finished or cancelled more than {RECENT_DAYS} days "
        "before --now)",
    )
    status.set_defaults(func=cmd_status)

    preview = sub.add_parser("preview", help="print the exact message of a mailing, or send one test copy")
    preview.add_argument("id", metavar="ID", help="the mailing's id (its directory under mailings/)")
    add_common(preview, submitted=False)
    add_now(preview)
    preview.add_argument(
        "--to", metavar="ADDRESS", help="send one test copy, marked as one, to this address on an internal domain"
    )
    preview.add_argument(
        "--allow-external", action="store_true", help="let --to be an address outside the policy's internal domains"
    )
    preview.add_argument(
        "--outbox", metavar="DIR", help="the Maildir used when MAILINGS_SMTP_HOST is unset (default: outbox/)"
    )
    preview.set_defaults(func=cmd_preview)

    bounces = sub.add_parser(
        "bounces", help="read the bounce mailbox, record hard and soft bounces per mailing, move what was handled"
    )
    add_common(bounces, submitted=False)
    add_now(bounces)
    bounces.add_argument(
        "--maildir", metavar="DIR", help="read this Maildir (default: IMAP, from MAILINGS_BOUNCES_IMAP_*)"
    )
    bounces.add_argument("--commit", action="store_true", help="commit the changed bounce logs as the bot")
    bounces.add_argument("--push", action="store_true", help="commit onto the remote's main and push")
    bounces.set_defaults(func=cmd_bounces)

    lists = sub.add_parser(
        "lists", help="IT's special lists: source and size; encrypt or edit a list file for the policy's keys"
    )
    add_common(lists, submitted=False)
    add_now(lists)
    lists.add_argument(
        "--resolve", action="store_true", help="resolve each list now (with the credentials set) and say its size"
    )
    lists.set_defaults(func=cmd_lists)
    actions = lists.add_subparsers(dest="lists_action", metavar="ACTION", required=False)
    encrypt = actions.add_parser("encrypt", help="encrypt a plain list for policy.yaml's special_lists_recipients")
    encrypt.add_argument("plain", metavar="PLAIN", help="the plain list: one address per line")
    encrypt.add_argument("out", metavar="OUT.age", help="the encrypted file to write, e.g. lists/all-students.txt.age")
    _add_root(encrypt)
    encrypt.set_defaults(func=cmd_lists_encrypt)
    edit = actions.add_parser("edit", help="decrypt a list file to a private copy, run $EDITOR, encrypt it again")
    edit.add_argument("out", metavar="OUT.age", help="the encrypted list to edit (created when it does not exist)")
    edit.add_argument("--identity", metavar="FILE", help=f"your age identity file (default: {AGE_IDENTITY})")
    edit.add_argument(
        "--reencrypt", action="store_true", help="no editor: encrypt it again for the keys policy.yaml names now"
    )
    _add_root(edit)
    edit.set_defaults(func=cmd_lists_edit)


# --- send -------------------------------------------------------------------------------------------------------


def cmd_send(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    # Imported here: `mailings check` need not load the SMTP client.
    from sender.dispatch import SendOptions, send_all
    from sender.eventloop import choice_from_env
    from sender.logkey import key_problem, previous_keys
    from sender.pace import StopRequest
    from sender.progress import StreamProgress, write_summary

    root = repo_root(args)
    if not args.dry_run and (problem := key_problem(env)) is not None:
        raise UsageError(f"nothing was sent: {problem}")  # before anything is read, resolved or claimed
    policy = load_policy(root, check_holidays=False)  # the sender never looks up a holiday
    now = parse_now(args.now, policy.timezone, clock)
    settings = settings_from_env(env, _outbox(args, root))
    out = _Redacting(out, _secrets(settings) + _log_keys(env))
    options = SendOptions(
        now=now,
        run_id=uuid.uuid4().hex[:12],
        settings=settings,
        wallclock=lambda: clock().astimezone(policy.timezone),
        monotonic=time.monotonic,
        special=special_lists_for_send(env, policy, root, out),
        hold=brake_from_env(env, root, out),
        log_key=env.get(LOG_KEY) or None,
        previous_keys=previous_keys(env),
        only=args.only,
        dry_run=args.dry_run,
        event_loop=choice_from_env(env),
        stop=StopRequest(),
    )
    mode = " (dry run: nothing is sent or written)" if args.dry_run else ""
    out.write(f"mailings send at {now.strftime('%Y-%m-%d %H:%M %Z')} via {settings.describe()}{mode}\n")
    if args.push and not args.dry_run:
        remote = _remote_record(root, out)
        if remote is None:
            return 1  # nowhere to record a claim: nothing may be sent
        options = replace(options, remote=remote)
    outcomes: list[Outcome] | None = None
    git_ok = True
    with _stop_on_signals(options.stop):
        try:
            outcomes = send_all(root, policy, options, StreamProgress(out, time.monotonic))
            write_summary(outcomes, out)
        finally:
            # Even a run that failed part-way has sent mail: its logs must be kept.
            if options.remote is not None:
                if options.stop.requested:
                    options.remote.timeout = STOPPED_GIT_SECONDS  # what can be pushed before SIGKILL comes
                git_ok = _publish(root, options.remote, outcomes, out)
            elif args.commit and not args.dry_run:
                git_ok = _commit_locally(root, outcomes, out)
    # Word back on GitHub and the job summary, now that the logs are recorded; never changes the exit code. Only
    # on GitHub Actions (or with its variables set): elsewhere the run need not load the HTTP client.
    if any(env.get(name) for name in GITHUB_VARIABLES):
        from sender.notify import word_back

        stopped = options.stop.requested
        word_back(root, policy, outcomes or [], env, out, now=now, git_ok=git_ok, dry_run=args.dry_run, stopped=stopped)
    if options.stop.requested:
        out.write(f"mailings: stopped by {options.stop.reason}; what was sent is recorded; the next run resumes\n")
        return STOPPED_EXIT
    return 0 if git_ok and outcomes is not None and all(o.ok for o in outcomes) else 1


GITHUB_VARIABLES = ("GITHUB_ACTIONS", "GITHUB_API_URL", "GITHUB_TOKEN", "GITHUB_STEP_SUMMARY")
STOPPED_EXIT = 130
# After a signal: how long each git command that records the logs may take (GitHub sends SIGKILL 10 s after
# SIGINT when a workflow run is cancelled).
STOPPED_GIT_SECONDS = 4.0


@contextlib.contextmanager
def _stop_on_signals(stop: StopRequest) -> Iterator[None]:
    """SIGTERM and SIGINT request a stop (no new transaction; record, push, exit 130) instead of ending the
    process at once; while a mailing is sent the event loop's own handlers do the same (sender.dispatch)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    numbers = (signal.SIGTERM, signal.SIGINT)
    previous = {number: signal.getsignal(number) for number in numbers}
    for number in numbers:
        signal.signal(number, lambda received, _frame: stop.request(signal.Signals(received).name))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


def cmd_record(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    """What `send --commit`/`--push` do after sending, alone: for a send step stopped from outside, or a run
    whose checkpoints or final push failed. Sends nothing."""
    root = repo_root(args)
    if not args.push:
        return 0 if _commit_locally(root, None, out) else 1
    remote = _remote_record(root, out)
    return 0 if remote is not None and _record_remote(root, remote, out) else 1


def _outbox(args: argparse.Namespace, root: Path) -> Path:
    return Path(args.outbox).resolve() if args.outbox else root / OUTBOX_DIR


STOPPED_MESSAGE = "Send logs: a send run that stopped part-way\n"


def _summaries(outcomes: Sequence[Outcome] | None) -> list[LogSummary]:
    from sender.gitops import LogSummary

    return [
        LogSummary(o.mailing_id, o.accepted, o.failed, o.unknown, o.pending)
        for o in outcomes or ()
        if o.log is not None
    ]


def _commit_locally(root: Path, outcomes: Sequence[Outcome] | None, out: TextIO) -> bool:
    """Commit every changed send log onto this checkout's branch (no remote: a checkout of one's own)."""
    from sender.finished import index_path
    from sender.gitops import GitError, commit_message, commit_send_logs

    # Every send log, not only this run's: an earlier run may have stopped before it could commit.
    paths = [p for p in sorted((root / MAILINGS_DIR).glob(f"*/{SENDLOG_FILE}")) if not p.is_symlink()]
    index = index_path(root)
    if index.is_file() and not index.is_symlink():
        paths.append(index)  # the index of finished mailings, committed with the logs it indexes
    summaries = _summaries(outcomes)
    try:
        committed = commit_send_logs(root, paths, commit_message(summaries) if summaries else STOPPED_MESSAGE)
    except GitError as exc:
        out.write(_git_failure(exc))
        return False
    out.write("committed the send logs\n" if committed else "no send log changed; nothing to commit\n")
    return True


def _git_failure(exc: Exception) -> str:
    """A failed git step for the output: what failed, then git's own words on the lines below, indented (each
    line escaped: git quotes what the repository holds)."""
    first, *rest = str(exc).splitlines() or [""]
    return "".join([f"mailings: git: {escaped(first)}\n", *(f"    {escaped(line)}\n" for line in rest)])


def _remote_record(root: Path, out: TextIO) -> RemoteRecord | None:
    from sender.record import RecordError, RemoteRecord

    try:
        return RemoteRecord(root)
    except RecordError as exc:
        out.write(f"mailings: {escaped(str(exc))}; nothing was sent\n")
        return None


def _publish(root: Path, remote: RemoteRecord, outcomes: Sequence[Outcome] | None, out: TextIO) -> bool:
    """Put the send logs this run wrote on main, then delete the claim branches whose runs ended."""
    from sender.gitops import commit_message
    from sender.journal import replay_lines
    from sender.record import RecordError

    written = {o.mailing_id for o in outcomes or () if o.log is not None}
    # Each log read and replayed once: its bytes go to main, its replay says whether its claim is closed.
    logs = {i: (root / MAILINGS_DIR / i / SENDLOG_FILE).read_bytes() for i in sorted(written | set(remote.claimed))}
    closed = {i for i, data in logs.items() if not replay_lines(data.split(b"\n")).claim_open}
    # A claim branch this run read whose run ended: its log belongs on main (an earlier run could not put it there).
    logs = {i: data for i, data in logs.items() if i in written or i in closed}
    index = _index_to_publish(root)
    if not logs and index is None:
        out.write("no send log changed; nothing to record\n")
        return True
    summaries = _summaries(outcomes)
    message = commit_message(summaries) if summaries else STOPPED_MESSAGE if logs else INDEX_MESSAGE
    try:
        published = remote.publish(logs, message, index=index)
    except RecordError as exc:
        out.write(_git_failure(exc))
        return False
    out.write("recorded the send logs on main\n" if published else "main already holds the send logs\n")
    for mailing_id in logs:
        if mailing_id in closed:
            problem = remote.release(mailing_id)
            if problem:
                out.write(f"note: {escaped(problem)}\n")
    return True


INDEX_MESSAGE = "Send logs: index the finished mailings\n"


def _index_to_publish(root: Path) -> bytes | None:
    """This checkout's index of finished mailings when a run added to it since the checkout (sender.finished);
    None when it is as checked out, so that a run with nothing to record asks nothing of the remote."""
    from sender.finished import INDEX_FILE, index_path
    from sender.gitops import read_blob

    path = index_path(root)
    if not path.is_file() or path.is_symlink():
        return None
    data = path.read_bytes()
    return None if read_blob(root, "HEAD", INDEX_FILE) == data else data


def _record_remote(root: Path, remote: RemoteRecord, out: TextIO) -> bool:
    """`mailings record --push`: every send log of this checkout that the remote lacks goes to main."""
    from sender.journal import replay
    from sender.record import RecordError, longer_log

    try:
        remote.fetch()
        reads = {p.parent.name: remote.read(p.parent.name) for p in (root / MAILINGS_DIR).glob(f"*/{SENDLOG_FILE}")}
    except RecordError as exc:
        out.write(_git_failure(exc))
        return False
    ok = True
    logs: dict[str, bytes] = {}
    for mailing_id, remote_log in sorted(reads.items()):
        local = (root / MAILINGS_DIR / mailing_id / SENDLOG_FILE).read_bytes()
        if longer_log(local, remote_log.log) is None:
            out.write(
                f"mailings: {mailing_id}: the send log here and the one on the remote differ, and neither extends "
                "the other; not recorded: compare them and keep the true one\n"
            )
            ok = False
        elif local != remote_log.log and local.startswith(remote_log.log):
            logs[mailing_id] = local
    if not logs:
        out.write("the remote holds every send log of this checkout; nothing to record\n")
        return ok
    try:
        remote.publish(logs, STOPPED_MESSAGE, index=_index_to_publish(root))
    except RecordError as exc:
        out.write(_git_failure(exc))
        return False
    out.write(f"recorded {len(logs)} send log(s) on main\n")
    for mailing_id in logs:
        claim = reads[mailing_id].claim
        if claim is not None and not replay(root / MAILINGS_DIR / mailing_id / SENDLOG_FILE).claim_open:
            problem = remote.release(mailing_id, claim)
            if problem:
                out.write(f"note: {escaped(problem)}\n")
    return ok


def _log_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    from sender.logkey import previous_keys

    return tuple(key for key in (env.get(LOG_KEY, "").strip(), *previous_keys(env)) if len(key) >= 8)


def _secrets(settings: SmtpSettings | MaildirSettings) -> tuple[str, ...]:
    if not isinstance(settings, SmtpSettings):
        return ()
    return tuple(secret for secret in (settings.password, settings.oauth_token) if secret)


class _Redacting(io.TextIOBase):
    """A stream that masks secrets, in case a relay's reply ever echoes one."""

    def __init__(self, inner: TextIO, secrets: Sequence[str]) -> None:
        self._inner = inner
        self._secrets = secrets

    def write(self, text: str) -> int:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return self._inner.write(text)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()


# --- status -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusRow:
    id: str
    state: str
    reason: str
    send_at: str | None
    deadline: str | None
    recipients: int
    accepted: int
    failed: int
    last_activity: str | None
    running: bool
    unknown: int = 0  # no reply to the end of their message: maybe delivered, never sent again by itself
    special_lists: dict[str, Any] = field(default_factory=dict)  # where IT's lists came from, as last sent
    # From the bounce log (sender.bounces): of the accepted, whose mail came back; delivered = accepted - hard.
    hard_bounces: int = 0
    soft_bounces: int = 0
    delivered: int = 0


HOLD = "MAILINGS_HOLD"


def brake_from_env(env: Mapping[str, str], root: Path, out: TextIO) -> Brake:
    """MAILINGS_HOLD as a Brake, said out loud. A value that is not `all` or mailing ids holds everything (a
    garbled brake must not let a mailing out); an id that names no mailing is pointed out (a typo holds nothing)."""
    from sender.dispatch import Brake

    text = env.get(HOLD, "").strip()
    if not text:
        return Brake()
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if any(part.lower() == "all" for part in parts):
        out.write(f"{HOLD}=all: every mailing is held; nothing is sent\n")
        return Brake(everything=True)
    wrong = [part for part in parts if not ID_PATTERN.fullmatch(part)]
    if wrong:
        out.write(
            f"{HOLD}: {', '.join(map(repr, wrong))} is not `all` nor a mailing id; every mailing is held until "
            f"{HOLD} is fixed\n"
        )
        return Brake(everything=True)
    known = {directory.name for directory in discover(root)}
    for part in parts:
        if part not in known:
            out.write(
                f"{HOLD} names {escaped(part)}, but there is no mailing {MAILINGS_DIR}/{escaped(part)}: check the "
                "spelling\n"
            )
    out.write(f"{HOLD}: held: {escaped(', '.join(parts))}\n")
    return Brake(ids=frozenset(parts))


def cmd_status(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    root = repo_root(args)
    policy = load_policy(root, check_holidays=False)  # the sender never looks up a holiday
    now = parse_now(args.now, policy.timezone, clock)
    special = special_lists_from_env(env, policy)
    brake = brake_from_env(env, root, io.StringIO())  # status says per mailing why it is held
    since = None if args.all else now - timedelta(days=RECENT_DAYS)
    rows, older, cancelled = _status_rows(root, policy, now, special, brake, since)
    directories = discover(root) if args.verify else []
    problems = _verify(root, directories) if args.verify else []
    if args.format == "json":
        document: dict[str, Any] = {"now": now.isoformat(), "mailings": [row.__dict__ for row in rows]}
        if since is not None:
            cut = since.isoformat(timespec="minutes")
            document["finished_before"] = {"send_at_before": cut, "count": older}
            document["cancelled_before"] = {"send_at_before": cut, "count": cancelled}
        if args.verify:
            document["summary_problems"] = problems
        json.dump(document, out, indent=2)
        out.write("\n")
        return 1 if problems else 0
    _status_text(rows, out, left_out=older + cancelled)
    if older or cancelled:
        more = "and " if rows else ""
        parts = [f"{older:,} finished mailing{'s' if older != 1 else ''} sent"] if older else []
        if cancelled:
            were = "mailings that were" if cancelled != 1 else "mailing that was"
            parts.append(f"{cancelled:,} cancelled {were} to be sent")
        day = since.strftime("%Y-%m-%d") if since else "-"
        out.write(f"{more}{' and '.join(parts)} before {day}, not listed (--all lists every mailing)\n")
    for problem in problems:
        out.write(f"mailings: {problem}\n")
    if args.verify and not problems:
        out.write(f"verified the summaries of the finished send logs ({len(directories)} mailing(s))\n")
    return 1 if problems else 0


# `status` lists the mailings finished or cancelled in the last RECENT_DAYS (by their send_at) and every other
# one; older finished and cancelled ones are counted in a line (`--all` lists them): a status of ten years' mailings
# shows, and for the finished ones reads, the same as one of a year's. Both states are final.
RECENT_DAYS = 30


def _status_rows(
    root: Path, policy: Policy, now: datetime, special: Mapping[str, Path], brake: Brake, since: datetime | None
) -> tuple[list[StatusRow], int, int]:
    """The rows to list, and how many finished and how many cancelled mailings whose send_at is before *since*
    were left out (None: none are)."""
    from sender.finished import FINISHED_STATES, holds, read_index
    from sender.state import MailingState

    final = FINISHED_STATES | {MailingState.CANCELLED.value}

    index = read_index(root) if since is not None else {}
    base = root / MAILINGS_DIR
    # Strings, not paths: this runs for every mailing ever sent.
    prefix, suffix = f"{base}{os.sep}", f"{os.sep}{SENDLOG_FILE}"
    rows: list[StatusRow] = []
    older = cancelled = 0
    names, links = listing(root)
    before = _Before(since) if since is not None else None
    for name in names:
        entry = index.get(name)
        # Indexed as finished (one stat) and sent before *since*: counted, nothing read (sender.finished).
        old = before is not None and entry is not None and name not in links and before(entry.send_at)
        if old and holds(entry, prefix + name + suffix):
            older += 1
            continue
        row = _status_row(root, base / name, policy, now, special, brake)
        if before is not None and row.state in final and before(row.send_at):
            if row.state == MailingState.CANCELLED.value:
                cancelled += 1
            else:
                older += 1
            continue
        rows.append(row)
    return rows, older, cancelled


class _Before:
    """Whether a send_at (ISO 8601 with an offset, as summaries and the index have it) is a moment before *since*;
    False when it is not one. Called for every finished mailing, so most are told by their date alone: time zones
    differ by less than a day, and most send_ats are months or years before *since*."""

    _DAY = re.compile(r"\d{4}-\d{2}-\d{2}")

    def __init__(self, since: datetime) -> None:
        self.since = since
        self.surely_before = (since - timedelta(days=1)).strftime("%Y-%m-%d")
        self.surely_after = (since + timedelta(days=1)).strftime("%Y-%m-%d")

    def __call__(self, send_at: str | None) -> bool:
        if not send_at or not self._DAY.match(send_at):
            return False
        day = send_at[:10]
        if day < self.surely_before:
            return True
        if day > self.surely_after:
            return False
        try:
            moment = datetime.fromisoformat(send_at)
        except ValueError:
            return False
        return moment.tzinfo is not None and moment < self.since


def _verify(root: Path, directories: Sequence[Path]) -> list[str]:
    """What is wrong with each finished send log's summary, replaying the logs in full, and with each entry of
    the index of finished mailings (sender.finished)."""
    from sender.finished import INDEX_FILE, read_index
    from sender.journal import read_finished, verify_summary

    found = []
    for directory in directories:
        path = directory / SENDLOG_FILE
        if path.is_file() and not path.is_symlink() and (problem := verify_summary(path)) is not None:
            found.append(f"{MAILINGS_DIR}/{directory.name}/{SENDLOG_FILE}: {problem}")
    for mailing_id, entry in sorted(read_index(root).items()):
        where = f"{INDEX_FILE}: {mailing_id}"
        path = root / MAILINGS_DIR / mailing_id / SENDLOG_FILE
        if entry is None:
            found.append(f"{where}: indexed twice, with different lines")
            continue
        summary = read_finished(path) if path.is_file() and not path.is_symlink() else None
        size = path.stat().st_size if summary is not None else None
        if summary is None or size != entry.size:
            found.append(f"{where}: indexed as finished, but its send log is not a finished log of that size")
        elif (summary.state, summary.failed, summary.unknown) != (entry.state, entry.failed, 0):
            found.append(f"{where}: the index entry does not say what the log's summary says")
    return found


def _status_row(
    root: Path, directory: Path, policy: Policy, now: datetime, special: Mapping[str, Path], brake: Brake
) -> StatusRow:
    from sender.bounces import counts_of, counts_of_finished, log_path, read_log_file
    from sender.journal import finished_summary, is_locked, replay
    from sender.plan import request_digest
    from sender.state import MailingState, decide, finished

    summary = finished_summary(directory)
    if summary is not None:
        # Finished: its summary says all status shows, without the request or a replay of the log.
        done = finished(summary)
        bounced = counts_of_finished(summary.accepted, read_log_file(log_path(root, directory.name)))
        return StatusRow(
            id=directory.name,
            state=done.state.value,
            reason=done.reason,
            send_at=summary.send_at,
            deadline=None,
            recipients=summary.recipients,
            accepted=summary.accepted,
            failed=summary.failed,
            last_activity=summary.last_time,
            running=False,
            unknown=summary.unknown,
            special_lists=summary.special_lists,
            hard_bounces=bounced.hard_bounces,
            soft_bounces=bounced.soft_bounces,
            delivered=bounced.delivered,
        )
    mailing = load_mailing(root, directory, policy, special=special)
    log = replay(directory / SENDLOG_FILE)
    digest = None if log.complete and not log.unknown else request_digest(mailing)  # not needed for a finished one
    decision = decide(mailing, log, now, policy, digest, brake.reason(mailing.id))
    running = decision.state is MailingState.SENDING and is_locked(directory / SENDLOG_FILE)
    reason = decision.reason
    if decision.state is MailingState.SENDING and not decision.paused:  # paused: the quota's reason says when
        reason = "running now" if running else "interrupted; the next `mailings send` resumes it"
    counts = counts_of(log.accepted, read_log_file(log_path(root, mailing.id)))
    return StatusRow(
        id=mailing.id,
        state=decision.state.value,
        reason=reason,
        send_at=_minute(mailing.send_at),
        deadline=_minute(decision.deadline),
        recipients=log.recipients if log.recipients is not None else recipient_count(mailing, policy),
        accepted=log.accepted_count,
        failed=log.failed_count,
        last_activity=log.last_time,
        running=running,
        unknown=log.unknown_count,
        special_lists=log.special_lists,
        hard_bounces=counts.hard_bounces,
        soft_bounces=counts.soft_bounces,
        delivered=counts.delivered,
    )


def _minute(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="minutes") if moment is not None else None


_COLUMNS: tuple[tuple[str, str, Callable[[StatusRow], Any]], ...] = (
    ("MAILING", "<", lambda r: r.id),
    ("STATE", "<", lambda r: r.state),
    ("SEND AT", "<", lambda r: (r.send_at or "-").replace("T", " ")),
    ("RECIPIENTS", ">", lambda r: r.recipients),
    ("ACCEPTED", ">", lambda r: r.accepted),
    ("FAILED", ">", lambda r: r.failed),
    ("DELIVERED", ">", lambda r: r.delivered),
    ("LAST ACTIVITY", "<", lambda r: (r.last_activity or "-").replace("T", " ")[:19]),
)

_EXPLAINED = frozenset({"blocked", "missed", "sending", "held", "cancelled"})


def _status_text(rows: Sequence[StatusRow], out: TextIO, *, left_out: int = 0) -> None:
    if not rows:
        out.write("no mailings\n" if not left_out else "")
        return
    cells = [[escaped(str(get(row))) for _, _, get in _COLUMNS] for row in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (title, _, _) in enumerate(_COLUMNS)]
    out.write("  ".join(f"{t:{a}{w}}" for (t, a, _), w in zip(_COLUMNS, widths, strict=True)).rstrip() + "\n")
    for row, line in zip(rows, cells, strict=True):
        out.write("  ".join(f"{c:{a}{w}}" for c, (_, a, _), w in zip(line, _COLUMNS, widths, strict=True)).rstrip())
        out.write("\n")
        if row.state in _EXPLAINED or row.reason.startswith("resumes"):
            out.write(f"    {row.state}: {escaped(row.reason)}\n")
        for list_id, about in row.special_lists.items():
            out.write(f"    list {escaped(list_id)}: {escaped(_provenance_text(about))}\n")
        if row.hard_bounces or row.soft_bounces:
            out.write(
                f"    bounces: {row.hard_bounces} hard (delivered = {row.accepted} accepted - {row.hard_bounces}), "
                f"{row.soft_bounces} soft (delayed, not counted against delivery)\n"
            )
        if row.unknown:
            out.write(
                f"    unknown: {row.unknown} recipient(s) whose message the relay never confirmed; they may have it, "
                "so they are not sent again\n"
            )


def cmd_bounces(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    from sender import bouncecmd  # flufl.bounce and imaplib only for this command

    return bouncecmd.cmd_bounces(args, env, out)


# --- lists ------------------------------------------------------------------------------------------------------

AGE_IDENTITY = "MAILINGS_AGE_IDENTITY"


def _add_root(parser: argparse.ArgumentParser) -> None:
    # No default here: a subcommand's default would overwrite a --root given before its name.
    parser.add_argument(
        "--root", default=argparse.SUPPRESS, help="the repository root (default: the current directory)"
    )


def cmd_lists(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    from sender import listcmd  # age and LDAP only for this command

    return listcmd.cmd_lists(args, env, out)


def cmd_lists_encrypt(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    from sender import listcmd

    return listcmd.cmd_encrypt(args, env, out)


def cmd_lists_edit(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    from sender import listcmd

    return listcmd.cmd_edit(args, env, out)


def _provenance_text(about: Any) -> str:
    """A special list's provenance from a start event, in a line: its source, size and version."""
    if not isinstance(about, dict):
        return "unknown source"
    parts = [str(about.get("source", "unknown source"))]
    for key, label in (("path", ""), ("variable", ""), ("commit", "commit "), ("committed_at", "of ")):
        if isinstance(about.get(key), str):
            parts.append(f"{label}{about[key][:12] if key == 'commit' else about[key]}")
    if isinstance(about.get("size"), int):
        parts.append(f"{about['size']:,} addresses")
    return ", ".join(parts)


# --- preview ----------------------------------------------------------------------------------------------------


def cmd_preview(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    from sender import eventloop
    from sender.eventloop import choice_from_env
    from sender.message import MessageError, build_template, copy_message_id, preview_text, render

    root = repo_root(args)
    policy = load_policy(root, check_holidays=False)  # the sender never looks up a holiday
    now = parse_now(args.now, policy.timezone, clock)
    directory = root / MAILINGS_DIR / args.id
    if not ID_PATTERN.fullmatch(args.id) or not directory.is_dir():
        raise UsageError(f"{args.id}: no mailing {MAILINGS_DIR}/{args.id}")
    if args.to is None and args.allow_external:
        raise UsageError("--allow-external: only with --to ADDRESS")
    if args.to is not None:
        _check_copy_address(args.to, policy, allow_external=args.allow_external)
    mailing = load_mailing(root, directory, policy)
    try:
        if args.to is None:
            out.write(preview_text(mailing, policy, now))
            return 0
        template = build_template(mailing, policy, test_copy=True)
        # A Message-ID of its own for each copy: never one the real send uses, never one of an earlier copy.
        message_id = copy_message_id(mailing.id, uuid.uuid4().hex, template.domain)
        message = render(template, to=args.to, message_id=message_id, date=now)
    except MessageError as exc:
        out.write(
            f"{escaped(mailing.directory)}: the message cannot be built: {escaped(str(exc))}; run `mailings check` "
            "for details\n"
        )
        return 1
    settings = settings_from_env(env, _outbox(args, root))
    out = _Redacting(out, _secrets(settings))
    copy = eventloop.run(
        _send_one(settings, template.envelope_from, args.to, message, message_id), choice_from_env(env)
    )
    out.write(f"test copy of {mailing.id} to {args.to} via {settings.describe()}: {copy.said}\n")
    return 0 if copy.ok else 1


def _check_copy_address(to: str, policy: Policy, *, allow_external: bool) -> None:
    """UsageError unless *to* is a valid address on an internal domain (any domain with *allow_external*):
    a test copy carries a mailing before it is sent, which is not for outside eyes by default."""
    problem = address_problem(to)
    if problem is not None:
        raise UsageError(f"--to {escaped(to)}: not a valid address: {problem}")
    if not allow_external and not is_internal_domain(domain_of(to), policy):
        domains = ", ".join(policy.internal_domains)
        raise UsageError(
            f"--to {to}: not on an internal domain ({domains} or a subdomain); send the test copy to an internal "
            "address, or add --allow-external to send it outside"
        )


@dataclass(frozen=True)
class _Copy:
    """What became of one test copy: whether it went where it was sent, and what to tell the person who asked."""

    ok: bool
    said: str


async def _send_one(
    settings: SmtpSettings | MaildirSettings, sender: str, to: str, message: bytes, message_id: str
) -> _Copy:
    """Send *message* (whose Message-ID is *message_id*) to *to* alone; the send log is never touched."""
    from sender.transport import transport_factory

    outbox = settings.path if isinstance(settings, MaildirSettings) else None
    before = _outbox_names(outbox) if outbox is not None else frozenset()
    transport = transport_factory(settings)()
    failure = await transport.open()
    if failure is not None:
        await transport.close()
        return _Copy(False, f"not sent: cannot open a session: {failure}")
    try:
        result = await transport.send(sender, [to], message)
    finally:
        await transport.close()
    # The content went out but no reply came: the copy may yet arrive, so "refused" would mislead. (getattr:
    # only transports that can tell an uncertain outcome set `unknown`.)
    if getattr(result, "unknown", False):
        return _Copy(False, f"the relay never confirmed the copy ({result.error}); it may or may not arrive")
    # The transaction's error first: a refused MAIL FROM also leaves a "need MAIL" refusal of the recipient.
    reply = result.error or result.refused.get(to)
    if reply is not None or to not in result.accepted:
        return _Copy(False, f"not sent: the relay refused it: {reply}" if reply else "not sent: the relay refused it")
    if outbox is None:
        return _Copy(True, f"mailed: the relay accepted it for delivery to {to}")
    written = _outbox_file(outbox, before, message_id)
    where = f"the copy is in {written}" if written is not None else f"the copy was written to the Maildir {outbox}"
    # A local outbox reaches nobody: say so, or the person waits for a message that never comes.
    return _Copy(True, f"nothing was mailed; {where} ({HOST} is not set: set it to mail through a relay)")


def _outbox_names(outbox: Path) -> frozenset[str]:
    """The files in the Maildir's new/ (none if it does not exist yet)."""
    try:
        return frozenset(entry.name for entry in os.scandir(outbox / "new"))
    except FileNotFoundError:
        return frozenset()


def _outbox_file(outbox: Path, before: frozenset[str], message_id: str) -> Path | None:
    """The file in new/ that holds *message_id* and was not there *before*; None if it is gone (a mail
    reader moved it). The transport does not name the file it writes; the unique Message-ID finds it."""
    wanted = f"\nMessage-ID: {message_id}\n".encode("ascii")
    for name in sorted(_outbox_names(outbox) - before):
        path = outbox / "new" / name
        with contextlib.suppress(OSError):  # moved or removed meanwhile: not ours to find
            if wanted in path.read_bytes():
                return path
    return None

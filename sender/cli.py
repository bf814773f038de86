"""Subcommands of the sender: send, status, preview. The clock, the environment and argv are read here only."""

from __future__ import annotations

import argparse
import io
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from checks.addresses import address_problem, recipient_count
from checks.cli import _add_common, _clock, _root, parse_now
from checks.errors import UsageError
from checks.loader import MAILINGS_DIR, discover, load_mailing
from checks.model import ID_PATTERN, SENDLOG_FILE
from checks.policy import Policy, load_policy
from sender.config import MaildirSettings, SmtpSettings, settings_from_env, special_lists_from_env

if TYPE_CHECKING:
    from sender.dispatch import Outcome

# The send log, the states and asyncio are imported in the commands that use them: every `mailings`
# command loads this module to register its subcommands, and `mailings check` needs none of them.

LOG_KEY = "MAILINGS_LOG_KEY"
OUTBOX_DIR = "outbox"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the sender's subcommands to the `mailings` parser."""
    send = sub.add_parser("send", help="send the due mailings and record each in its send log")
    _add_common(send, submitted=False)
    _add_now(send)
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
    _add_common(record, submitted=False)
    record.add_argument("--push", action="store_true", help="push too (rebasing and retrying when behind)")
    record.set_defaults(func=cmd_record)

    status = sub.add_parser("status", help="show every mailing's state, recipients and times")
    _add_common(status, submitted=False)
    _add_now(status)
    status.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    status.set_defaults(func=cmd_status)

    preview = sub.add_parser("preview", help="print the exact message of a mailing, or send one test copy")
    preview.add_argument("id", metavar="ID", help="the mailing's id (its directory under mailings/)")
    _add_common(preview, submitted=False)
    _add_now(preview)
    preview.add_argument("--to", metavar="ADDRESS", help="send one test copy to this address alone")
    preview.add_argument(
        "--outbox", metavar="DIR", help="the Maildir used when MAILINGS_SMTP_HOST is unset (default: outbox/)"
    )
    preview.set_defaults(func=cmd_preview)


def _add_now(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--now", metavar="ISO-8601", help="the time to act as if it were (default: the current time)")


# --- send -------------------------------------------------------------------------------------------------------


def cmd_send(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    # Imported here: `mailings check` need not load the SMTP client.
    from sender.dispatch import SendOptions, send_all
    from sender.eventloop import choice_from_env
    from sender.progress import StreamProgress, write_summary

    root = _root(args)
    policy = load_policy(root, check_holidays=False)  # the sender never looks up a holiday
    now = parse_now(args.now, policy.timezone, _clock)
    settings = settings_from_env(env, _outbox(args, root))
    out = _Redacting(out, _secrets(settings))
    options = SendOptions(
        now=now,
        run_id=uuid.uuid4().hex[:12],
        settings=settings,
        wallclock=lambda: _clock().astimezone(policy.timezone),
        monotonic=time.monotonic,
        special=special_lists_from_env(env, policy),
        log_key=env.get(LOG_KEY) or None,
        only=args.only,
        dry_run=args.dry_run,
        event_loop=choice_from_env(env),
    )
    mode = " (dry run: nothing is sent or written)" if args.dry_run else ""
    out.write(f"mailings send at {now.strftime('%Y-%m-%d %H:%M %Z')} via {settings.describe()}{mode}\n")
    outcomes: list[Outcome] | None = None
    git_ok = True
    try:
        outcomes = send_all(root, policy, options, StreamProgress(out, time.monotonic))
        write_summary(outcomes, out)
    finally:
        # Even a run that failed part-way has sent mail: its logs must be kept.
        if (args.commit or args.push) and not args.dry_run:
            git_ok = _record_in_git(root, outcomes, push=args.push, out=out)
    return 0 if git_ok and all(o.ok for o in outcomes) else 1


def cmd_record(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    """What `send --commit` does after sending, alone: for a send step stopped from outside."""
    return 0 if _record_in_git(_root(args), None, push=args.push, out=out) else 1


def _outbox(args: argparse.Namespace, root: Path) -> Path:
    return Path(args.outbox).resolve() if args.outbox else root / OUTBOX_DIR


def _record_in_git(root: Path, outcomes: Sequence[Outcome] | None, *, push: bool, out: TextIO) -> bool:
    from sender.gitops import GitError, LogSummary, commit_message, commit_send_logs, push_with_retry

    # Every send log, not only this run's: an earlier run may have stopped before it could commit.
    paths = sorted((root / MAILINGS_DIR).glob(f"*/{SENDLOG_FILE}"))
    summaries = [LogSummary(o.mailing_id, o.accepted, o.failed) for o in outcomes or () if o.log is not None]
    message = commit_message(summaries) if summaries else "Send logs: a send run that stopped part-way\n"
    try:
        committed = commit_send_logs(root, paths, message)
        out.write("committed the send logs\n" if committed else "no send log changed; nothing to commit\n")
        if push:
            push_with_retry(root)
            out.write("pushed\n")
    except GitError as exc:
        out.write(f"mailings: git: {exc}\n")
        return False
    return True


def _secrets(settings: SmtpSettings | MaildirSettings) -> tuple[str, ...]:
    password = settings.password if isinstance(settings, SmtpSettings) else None
    return (password,) if password else ()


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


def cmd_status(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    root = _root(args)
    policy = load_policy(root, check_holidays=False)  # the sender never looks up a holiday
    now = parse_now(args.now, policy.timezone, _clock)
    special = special_lists_from_env(env, policy)
    rows = [_status_row(root, directory, policy, now, special) for directory in discover(root)]
    if args.format == "json":
        json.dump({"now": now.isoformat(), "mailings": [row.__dict__ for row in rows]}, out, indent=2)
        out.write("\n")
    else:
        _status_text(rows, out)
    return 0


def _status_row(root: Path, directory: Path, policy: Policy, now: datetime, special: Mapping[str, Path]) -> StatusRow:
    from sender.journal import is_locked, replay
    from sender.state import MailingState, decide

    mailing = load_mailing(root, directory, policy, special=special)
    log = replay(directory / SENDLOG_FILE)
    decision = decide(mailing, log, now, policy)
    running = decision.state is MailingState.SENDING and is_locked(directory / SENDLOG_FILE)
    reason = decision.reason
    if decision.state is MailingState.SENDING:
        reason = "running now" if running else "interrupted; the next `mailings send` resumes it"
    return StatusRow(
        id=mailing.id,
        state=decision.state.value,
        reason=reason,
        send_at=_minute(mailing.send_at),
        deadline=_minute(decision.deadline),
        recipients=log.recipients if log.recipients is not None else recipient_count(mailing, policy),
        accepted=len(log.accepted),
        failed=len(log.failed),
        last_activity=log.last_time,
        running=running,
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
    ("LAST ACTIVITY", "<", lambda r: (r.last_activity or "-").replace("T", " ")[:19]),
)

_EXPLAINED = frozenset({"blocked", "missed", "sending"})


def _status_text(rows: Sequence[StatusRow], out: TextIO) -> None:
    if not rows:
        out.write("no mailings\n")
        return
    cells = [[str(get(row)) for _, _, get in _COLUMNS] for row in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (title, _, _) in enumerate(_COLUMNS)]
    out.write("  ".join(f"{t:{a}{w}}" for (t, a, _), w in zip(_COLUMNS, widths, strict=True)).rstrip() + "\n")
    for row, line in zip(rows, cells, strict=True):
        out.write("  ".join(f"{c:{a}{w}}" for c, (_, a, _), w in zip(line, _COLUMNS, widths, strict=True)).rstrip())
        out.write("\n")
        if row.state in _EXPLAINED:
            out.write(f"    {row.state}: {row.reason}\n")


# --- preview ----------------------------------------------------------------------------------------------------


def cmd_preview(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    from sender import eventloop
    from sender.eventloop import choice_from_env
    from sender.message import MessageError, build_template, make_message_id, preview_text, render

    root = _root(args)
    policy = load_policy(root, check_holidays=False)  # the sender never looks up a holiday
    now = parse_now(args.now, policy.timezone, _clock)
    directory = root / MAILINGS_DIR / args.id
    if not ID_PATTERN.match(args.id) or not directory.is_dir():
        raise UsageError(f"{args.id}: no mailing {MAILINGS_DIR}/{args.id}")
    mailing = load_mailing(root, directory, policy)
    try:
        if args.to is None:
            out.write(preview_text(mailing, policy, now))
            return 0
        problem = address_problem(args.to)
        if problem is not None:
            raise UsageError(f"--to {args.to}: not a valid address: {problem}")
        template = build_template(mailing, policy)
        message_id = make_message_id(mailing.id, f"test-copy {now.isoformat()} {args.to}", template.domain)
        message = render(template, to=args.to, message_id=message_id, date=now)
    except MessageError as exc:
        out.write(f"{mailing.directory}: the message cannot be built: {exc}; run `mailings check` for details\n")
        return 1
    settings = settings_from_env(env, _outbox(args, root))
    out = _Redacting(out, _secrets(settings))
    verdict = eventloop.run(_send_one(settings, template.envelope_from, args.to, message), choice_from_env(env))
    out.write(f"test copy of {mailing.id} to {args.to} via {settings.describe()}: {verdict or 'accepted'}\n")
    return 0 if verdict is None else 1


async def _send_one(settings: SmtpSettings | MaildirSettings, sender: str, to: str, message: bytes) -> str | None:
    """Send *message* to *to* alone (the send log is not touched); None when accepted, else why not."""
    from sender.transport import transport_factory

    transport = transport_factory(settings)()
    failure = await transport.open()
    if failure is not None:
        await transport.close()
        return f"cannot open a session: {failure.code} {failure.message}"
    try:
        result = await transport.send(sender, [to], message)
    finally:
        await transport.close()
    reply = result.refused.get(to) or result.error
    if reply is not None or to not in result.accepted:
        return f"refused: {reply.code} {reply.message}" if reply else "refused"
    return None

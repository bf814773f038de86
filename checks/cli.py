"""The `mailings` command line. Only this layer reads the clock, the environment and argv."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from string import Template
from typing import TextIO
from zoneinfo import ZoneInfo

from checks.changes import check_gone, read_base, split_present
from checks.errors import UsageError
from checks.loader import MAILINGS_DIR, discover, resolve_targets
from checks.model import ID_PATTERN, Context
from checks.plan import render as render_plan
from checks.policy import Policy, load_policy
from checks.report import check_all, check_repository
from checks.reporters import REPORTERS
from checks.schemas import TOOL_ROOT

TEMPLATE_DIR = "templates/request"

Command = Callable[[argparse.Namespace, Mapping[str, str], TextIO], int]


def parse_submitted(text: str, tz: ZoneInfo) -> date:
    """A date, or an ISO-8601 time (e.g. a pull request's creation time) read in the policy's time zone."""
    text = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--submitted {text!r}: expected YYYY-MM-DD or an ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(tz).date()


def parse_now(text: str | None, tz: ZoneInfo, clock: Callable[[], datetime]) -> datetime:
    """--now as an aware time (naive means the policy's time zone); the clock when absent."""
    if text is None:
        return clock().astimezone(tz)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--now {text!r}: expected an ISO-8601 time such as 2027-02-10T09:00+01:00") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=tz)).astimezone(tz)


def _clock() -> datetime:
    return datetime.now(UTC)


def _root(args: argparse.Namespace) -> Path:
    root = Path(args.root).resolve()
    if not root.is_dir():
        raise UsageError(f"--root {args.root}: no such directory")
    return root


def _context(args: argparse.Namespace, policy: Policy) -> Context:
    now = parse_now(getattr(args, "now", None), policy.timezone, _clock)
    submitted = parse_submitted(args.submitted, policy.timezone) if args.submitted else now.date()
    return Context(submitted=submitted, now=now)


def _with_base(context: Context, root: Path, ref: str | None) -> Context:
    """The context plus what git says about --changed-since REF (the [immutable] rule reads it)."""
    if ref is None:
        return context
    base = read_base(root, ref)
    return replace(context, base=ref, changes=base.changes, sent_on_base=base.sent)


def _targets(root: Path, args: argparse.Namespace, context: Context) -> tuple[list[Path], list[str]]:
    """Request directories to check, and the ids of changed mailings whose directory is gone.

    With a base, only what changed since it; named paths narrow that further (a pre-commit hook names the
    staged files, and `--changed-since HEAD` then checks what the commit changes, not every request ever sent).
    """
    named = resolve_targets(root, args.paths, Path.cwd()) if args.paths else None
    if context.base is None:
        return (named if named is not None else discover(root)), []
    present, gone = split_present(root, context.changes)
    if named is None:
        return present, gone
    return [directory for directory in present if directory in named], []


def cmd_check(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    root = _root(args)
    policy = load_policy(root)
    context = _with_base(_context(args, policy), root, args.changed_since)
    targets, gone = _targets(root, args, context)
    fmt = args.format or ("github" if env.get("GITHUB_ACTIONS") == "true" else "text")
    problems, summaries = check_all(root, targets, policy, context)
    problems = sorted(problems + check_gone(root, gone, policy, context) + check_repository(root, policy, context))
    REPORTERS[fmt](problems, summaries, out)
    if any(p.level == "error" for p in problems):
        return 1
    return 1 if args.strict and problems else 0


def cmd_plan(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    """Markdown for the reviewer; it reports problems but does not fail on them (`check` does)."""
    from sender.message import preview_text

    root = _root(args)
    policy = load_policy(root)
    context = _with_base(_context(args, policy), root, args.changed_since)
    targets, gone = _targets(root, args, context)
    out.write(render_plan(root, targets, gone, policy, context, preview_text))
    return 0


def cmd_earliest(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    root = _root(args)
    policy = load_policy(root)
    context = _context(args, policy)
    earliest, skipped = policy.calendar.earliest_dispatch(context.submitted)
    out.write(
        f"{earliest.isoformat()} is the earliest allowed dispatch date for a request submitted on "
        f"{context.submitted.isoformat()} ({policy.lead_time_working_days} working days)\n"
    )
    for s in skipped:
        out.write(f"  skipped {s.day.isoformat()} {s.day.strftime('%a')}: {s.reason}\n")
    return 0


def cmd_new(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    root = _root(args)
    policy = load_policy(root)
    if not ID_PATTERN.match(args.id):
        raise UsageError(
            f"{args.id!r} is not a valid id: use lower-case letters, digits and hyphens, "
            "starting with a letter or digit (e.g. 2027-02-10-travel-booking)"
        )
    target = root / MAILINGS_DIR / args.id
    if target.exists() or target.is_symlink():
        raise UsageError(f"{target.relative_to(root)} already exists; choose another id")
    context = _context(args, policy)
    earliest, _ = policy.calendar.earliest_dispatch(context.submitted)
    template_dir = root / TEMPLATE_DIR if (root / TEMPLATE_DIR).is_dir() else TOOL_ROOT / TEMPLATE_DIR
    values = {
        "id": args.id,
        "send_at": f"{earliest.isoformat()} {policy.default_send_time.strftime('%H:%M')}",
        "default_from_address": policy.default_from_address,
    }
    target.mkdir(parents=True)
    for source in sorted(template_dir.iterdir()):
        (target / source.name).write_text(
            Template(source.read_text(encoding="utf-8")).safe_substitute(values), encoding="utf-8"
        )
    out.write(
        f"created {target.relative_to(root)}/ with send_at {values['send_at']} (the earliest allowed date);\n"
        f"fill in every field, then run: mailings check {target.relative_to(root)}\n"
    )
    return 0


def _add_common(parser: argparse.ArgumentParser, submitted: bool = True) -> None:
    parser.add_argument("--root", default=".", help="the repository root (default: the current directory)")
    if submitted:
        parser.add_argument(
            "--submitted",
            metavar="DATE",
            help="when the request was submitted: YYYY-MM-DD or ISO-8601 (default: today in the policy's time zone)",
        )


def _add_changed_since(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--changed-since",
        metavar="REF",
        help="only the requests changed since REF's merge base with HEAD (working tree and untracked files "
        "included; PATHs narrow it), and judge the changes against REF: [immutable]",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailings", description="Mass-mailing requests as code: check, plan and send."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="check requests against the policy")
    check.add_argument("paths", nargs="*", metavar="PATH", help="request directories (default: all under mailings/)")
    _add_common(check)
    check.add_argument(
        "--format", choices=sorted(REPORTERS), help="output format (default: text; github on GitHub Actions)"
    )
    check.add_argument("--strict", action="store_true", help="fail on warnings too")
    _add_changed_since(check)
    check.set_defaults(func=cmd_check)

    plan = sub.add_parser("plan", help="Markdown for the reviewer: what the changed requests will send, when, to whom")
    plan.add_argument(
        "paths", nargs="*", metavar="PATH", help="request directories (default: those changed since REF, else all)"
    )
    _add_common(plan)
    _add_changed_since(plan)
    plan.set_defaults(func=cmd_plan)

    earliest = sub.add_parser("earliest", help="print the earliest allowed dispatch date")
    _add_common(earliest)
    earliest.set_defaults(func=cmd_earliest)

    new = sub.add_parser("new", help="create a request from the template")
    new.add_argument("id", metavar="ID", help="the request's id, e.g. 2027-02-10-travel-booking")
    _add_common(new)
    new.set_defaults(func=cmd_new)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[argparse._SubParsersAction], None]]:  # type: ignore[type-arg]
    """Subcommands of the other packages (the sender), registered explicitly."""
    from sender.cli import register

    return [register]


def main(argv: Sequence[str] | None = None) -> int:
    """The `mailings` command line (*argv* None: sys.argv). The program itself is checks.program."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args, os.environ, sys.stdout))
    except UsageError as exc:
        print(f"mailings: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mailings: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

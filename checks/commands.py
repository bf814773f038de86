"""The checker's subcommands: check, plan, earliest, new.

The rules, git and the schemas are imported by the commands that use them: every `mailings` command builds this
parser, and `mailings send` (every scheduled run) should not pay for the checker's imports."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from string import Template
from typing import TextIO

from checks.errors import UsageError
from checks.loader import MAILINGS_DIR, discover, resolve_targets
from checks.model import ID_PATTERN, Context
from checks.options import (
    add_author,
    add_changed_since,
    add_common,
    add_lead_time_from_runs,
    add_now,
    clock,
    parse_author,
    parse_now,
    parse_submitted,
    repo_root,
)
from checks.policy import Policy, load_policy
from checks.reporters import REPORTERS

TEMPLATE_DIR = "templates/request"
LOG_KEY = "MAILINGS_LOG_KEY"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the checker's subcommands to the `mailings` parser."""
    check = sub.add_parser("check", help="check requests against the policy")
    check.add_argument("paths", nargs="*", metavar="PATH", help="request directories (default: all under mailings/)")
    add_common(check)
    check.add_argument(
        "--format", choices=sorted(REPORTERS), help="output format (default: text; github on GitHub Actions)"
    )
    check.add_argument("--strict", action="store_true", help="fail on warnings too")
    add_changed_since(check)
    add_author(check)
    add_lead_time_from_runs(check)
    add_now(check)
    check.set_defaults(func=cmd_check)

    plan = sub.add_parser("plan", help="Markdown for the reviewer: what the changed requests will send, when, to whom")
    plan.add_argument(
        "paths", nargs="*", metavar="PATH", help="request directories (default: those changed since REF, else all)"
    )
    add_common(plan)
    add_changed_since(plan)
    add_author(plan)
    add_lead_time_from_runs(plan)
    plan.add_argument(
        "--since",
        metavar="REV",
        help="compare each mailing's facts (dispatch, recipients, lists, subjects, links, languages, sender, event) "
        "with the request at commit REV (the last approved commit, or the merge base for a new request), before -> "
        "after; a dispatch moved earlier or a larger audience is flagged",
    )
    plan.add_argument(
        "--summary-out",
        metavar="FILE",
        help="also append the plan to FILE (a job summary: $GITHUB_STEP_SUMMARY), cut to fit the 1 MiB it holds, "
        "with a note where the whole plan is",
    )
    plan.set_defaults(func=cmd_plan)

    earliest = sub.add_parser("earliest", help="print the earliest allowed dispatch date")
    add_common(earliest)
    earliest.set_defaults(func=cmd_earliest)

    new = sub.add_parser("new", help="create a request from the template")
    new.add_argument("id", metavar="ID", help="the request's id, e.g. 2027-02-10-travel-booking")
    add_common(new)
    new.set_defaults(func=cmd_new)


def _context(args: argparse.Namespace, policy: Policy) -> Context:
    now = parse_now(getattr(args, "now", None), policy.timezone, clock)
    submitted = parse_submitted(args.submitted, policy.timezone) if args.submitted else now.date()
    return Context(submitted=submitted, now=now, author=parse_author(getattr(args, "author", None)))


def _with_base(context: Context, root: Path, ref: str | None, stack: ExitStack) -> Context:
    """The context plus what git says about --changed-since REF (the [immutable] rule reads it), and REF's policy
    when this checkout changes it (its files last as long as *stack*)."""
    if ref is None:
        return context
    from checks.changes import base_policy, read_base

    base = read_base(root, ref)
    return replace(
        context,
        base=ref,
        changes=base.changes,
        sent_on_base=base.sent,
        yaml_edits=base.yaml_edits,
        base_policy=stack.enter_context(base_policy(root, base.commit)),
        merge_base=base.merge_base,
    )


def _with_first_seen(
    context: Context, root: Path, args: argparse.Namespace, env: Mapping[str, str], policy: Policy, targets: list[Path]
) -> Context:
    """The context plus, with --lead-time-from-runs WORKFLOW, the day each target's send_at got its value in the
    pull request, as GitHub's runs of WORKFLOW say (checks.firstseen)."""
    workflow = getattr(args, "lead_time_from_runs", None)
    if workflow is None:
        return context
    if context.merge_base is None:
        raise UsageError("--lead-time-from-runs needs --changed-since: the pull request's commits are counted from it")
    from checks.firstseen import first_seen
    from sender.github import ApiFailure, GitHub, Settings, settings_from_env

    settings = settings_from_env(env)
    if not isinstance(settings, Settings):
        why = settings or "GITHUB_API_URL, GITHUB_TOKEN and GITHUB_REPOSITORY are not set"
        raise UsageError(f"--lead-time-from-runs asks GitHub, but {why}")
    api = GitHub(settings)

    def runs(head_sha: str) -> list[datetime] | str:
        answer = api.workflow_runs(workflow, head_sha)
        return api.mask(str(answer)) if isinstance(answer, ApiFailure) else answer

    seen = first_seen(
        root,
        context.merge_base,
        [directory.name for directory in targets],
        runs,
        submitted=context.submitted,
        now=context.now,
        tz=policy.timezone,
    )
    return replace(context, submitted_by=seen)


def _with_bounces(context: Context, root: Path, env: Mapping[str, str]) -> Context:
    """The context plus the recorded hard bounces (the [bounced] rule reads them), when MAILINGS_LOG_KEY is set:
    without the key no recorded hash can be matched, and none may be checked without it (README, "Bounces")."""
    if not env.get(LOG_KEY, "").strip():
        return context
    from sender.bounces import bounced_index
    from sender.logkey import keyring_from_env

    return replace(context, bounced=bounced_index(root, keyring_from_env(env, required=False)))


def _targets(root: Path, args: argparse.Namespace, context: Context) -> tuple[list[Path], list[str]]:
    """Request directories to check, and the ids of changed mailings whose directory is gone.

    With a base, only what changed since it; named paths narrow that further (a pre-commit hook names the
    staged files, and `--changed-since HEAD` then checks what the commit changes, not every request ever sent).
    """
    named = resolve_targets(root, args.paths, Path.cwd()) if args.paths else None
    if context.base is None:
        return (named if named is not None else discover(root)), []
    from checks.changes import split_present

    present, gone = split_present(root, context.changes)
    if named is None:
        return present, gone
    return [directory for directory in present if directory in named], []


def _judging(
    args: argparse.Namespace, env: Mapping[str, str], root: Path, policy: Policy, stack: ExitStack
) -> tuple[Context, list[Path], list[str]]:
    """What `check` and `plan` both judge by: the context (the base, the recorded bounces, when each send_at
    arrived) and the request directories to judge, with the ids of changed mailings whose directory is gone."""
    context = _with_bounces(_with_base(_context(args, policy), root, args.changed_since, stack), root, env)
    targets, gone = _targets(root, args, context)
    return _with_first_seen(context, root, args, env, policy, targets), targets, gone


def cmd_check(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    with ExitStack() as stack:
        return _check(args, env, out, stack)


def _check(args: argparse.Namespace, env: Mapping[str, str], out: TextIO, stack: ExitStack) -> int:
    from checks.changes import check_gone
    from checks.report import check_all, check_repository

    root = repo_root(args)
    policy = load_policy(root)
    context, targets, gone = _judging(args, env, root, policy, stack)
    fmt = args.format or ("github" if env.get("GITHUB_ACTIONS") == "true" else "text")
    problems, summaries = check_all(root, targets, policy, context)
    problems = sorted(problems + check_gone(root, gone, policy, context) + check_repository(root, policy, context))
    REPORTERS[fmt](problems, summaries, out)
    if any(p.level == "error" for p in problems):
        return 1
    return 1 if args.strict and problems else 0


def cmd_plan(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    """Markdown for the reviewer; it reports problems but does not fail on them (`check` does)."""
    # Imported here: `mailings check` never needs the plan's modules, and pays nothing for them.
    from checks.changes import resolve_commit
    from checks.plan import Since
    from checks.plan import render as render_plan
    from sender.message import preview_letter

    root = repo_root(args)
    policy = load_policy(root)
    since = Since(args.since, resolve_commit(root, args.since, "--since")) if args.since else None
    with ExitStack() as stack:
        context, targets, gone = _judging(args, env, root, policy, stack)
        text = render_plan(root, targets, gone, policy, context, preview_letter, since)
    out.write(text)
    if args.summary_out:
        from checks.prcomment import for_summary

        try:
            with open(args.summary_out, "a", encoding="utf-8") as summary:
                summary.write(for_summary(text))
        except OSError as exc:
            raise UsageError(f"--summary-out {args.summary_out}: {exc.strerror or exc}") from None
    return 0


def cmd_earliest(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    root = repo_root(args)
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
    from checks.schemas import TOOL_ROOT

    root = repo_root(args)
    policy = load_policy(root)
    if not ID_PATTERN.fullmatch(args.id):
        raise UsageError(
            f"{args.id!r} is not a valid id: use lower-case letters, digits and hyphens, "
            "starting with a letter or digit (e.g. 2027-02-10-travel-booking)"
        )
    target = root / MAILINGS_DIR / args.id
    if target.exists() or target.is_symlink():
        raise UsageError(f"{target.relative_to(root)} already exists; choose another id")
    context = _context(args, policy)
    earliest, _ = policy.calendar.earliest_dispatch(context.submitted)
    day, which = _first_send_date(args.id, earliest)
    template_dir = root / TEMPLATE_DIR if (root / TEMPLATE_DIR).is_dir() else TOOL_ROOT / TEMPLATE_DIR
    values = {
        "id": args.id,
        "send_at": f"{day.isoformat()} {policy.default_send_time.strftime('%H:%M')}",
        "default_from_address": policy.default_from_address,
    }
    try:
        target.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(f"{target.relative_to(root)}: cannot be created: {exc.strerror or exc}") from None
    try:
        for source in sorted(template_dir.iterdir()):
            # LF on every system: read_text reads any line ending as "\n", and newline="\n" keeps Windows from
            # writing CRLF, so a request starts the same everywhere (.gitattributes keeps it so in git).
            (target / source.name).write_text(
                Template(source.read_text(encoding="utf-8")).safe_substitute(values), encoding="utf-8", newline="\n"
            )
    except OSError as exc:
        shutil.rmtree(target, ignore_errors=True)  # made just now, and holds only what this wrote
        raise UsageError(f"{target.relative_to(root)}: cannot be written: {exc.strerror or exc}") from None
    out.write(
        f"created {target.relative_to(root)}/ with send_at {values['send_at']} ({which});\n"
        f"fill in every field, then run: mailings check {target.relative_to(root)}\n"
    )
    return 0


def _first_send_date(mailing_id: str, earliest: date) -> tuple[date, str]:
    """The day a new request's send_at starts at, and which day that is: the date its id begins with, unless that
    is no date or is before the earliest allowed; then the earliest allowed."""
    try:
        named = date.fromisoformat(mailing_id[:10]) if mailing_id[10:11] in ("", "-") else None
    except ValueError:
        named = None
    if named is None:
        return earliest, "the earliest allowed date"
    if named < earliest:
        return (
            earliest,
            f"the earliest allowed date: the id's {named.isoformat()} is sooner; rename the request to match",
        )
    return named, "the date in its id"

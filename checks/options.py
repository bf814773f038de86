"""What every `mailings` subcommand shares: the common options and reading them. Only the command line reads the
clock, the environment and argv; these helpers turn what it read into values."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from checks.errors import UsageError

Command = Callable[[argparse.Namespace, Mapping[str, str], TextIO], int]
Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


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


def clock() -> datetime:
    return datetime.now(UTC)


def repo_root(args: argparse.Namespace) -> Path:
    root = Path(args.root).resolve()
    if not root.is_dir():
        raise UsageError(f"--root {args.root}: no such directory")
    return root


def add_common(parser: argparse.ArgumentParser, submitted: bool = True) -> None:
    parser.add_argument("--root", default=".", help="the repository root (default: the current directory)")
    if submitted:
        parser.add_argument(
            "--submitted",
            metavar="DATE",
            help="when the request was submitted: YYYY-MM-DD or ISO-8601 (default: today in the policy's time zone)",
        )


def add_changed_since(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--changed-since",
        metavar="REF",
        help="only the requests changed since REF's merge base with HEAD (working tree and untracked files "
        "included; PATHs narrow it), and judge the changes against REF: [immutable]",
    )


def add_author(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--author",
        metavar="LOGIN",
        help="the GitHub user who opened the pull request: a request that claims a role (sender.role) fails "
        "unless policy.yaml lists LOGIN for that role (without it, a claim is a warning for the reviewer)",
    )


def add_lead_time_from_runs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lead-time-from-runs",
        metavar="WORKFLOW",
        help="count each changed request's lead time from when its send_at got its value in the pull request: the "
        "first run of WORKFLOW (e.g. check.yml) for a commit holding that value, as GitHub created it; never before "
        "--submitted, and today for a value no run has seen (needs --changed-since, GITHUB_API_URL, GITHUB_TOKEN "
        "and GITHUB_REPOSITORY)",
    )


# A GitHub user name: letters, digits and single hyphens, at most 39 characters.
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")


def parse_author(text: str | None) -> str | None:
    """--author as a GitHub user name; UsageError for anything else (an empty value too: the check fails closed)."""
    if text is None:
        return None
    if not _LOGIN.fullmatch(text):
        raise UsageError(f"--author {text!r}: expected a GitHub user name (letters, digits and hyphens)")
    return text


def add_now(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--now", metavar="ISO-8601", help="the time to act as if it were (default: the current time)")

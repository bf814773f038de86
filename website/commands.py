"""The `site` subcommand: write the calendar site of the repository into a directory."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from checks.errors import UsageError
from checks.options import add_common, add_now, clock, parse_now, repo_root
from checks.policy import load_policy

MAX_WORKERS = 4
# Jinja2 and icalendar are imported by the command itself: every `mailings` command loads this module.


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `site` to the `mailings` parser."""
    site = sub.add_parser(
        "site", help="write the calendar site: a page per month and per mailing, and an iCalendar feed"
    )
    site.add_argument("--out", required=True, metavar="DIR", help="where to write it (created; files in it replaced)")
    add_common(site, submitted=False)
    add_now(site)
    site.add_argument(
        "--base-url", metavar="URL", help="where the site is published: the feed's events link to their pages"
    )
    site.set_defaults(func=cmd_site)


def cmd_site(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    from sender.commands import brake_from_env
    from website.build import INDEX, build

    root = repo_root(args)
    policy = load_policy(root)
    now = parse_now(args.now, policy.timezone, clock)
    target = Path(args.out)
    if target.exists() and not target.is_dir():
        raise UsageError(f"--out {args.out}: not a directory; name a directory to write the site into")
    if target.resolve() == root:
        raise UsageError(f"--out {args.out} is the repository itself; name a directory of its own, e.g. _site")
    # Reading the requests is most of the work: one process per core, at most MAX_WORKERS.
    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    # MAILINGS_HOLD, the emergency brake, read as the sender reads it: what it holds is shown held.
    brake = brake_from_env(env, root, out)
    try:
        built = build(root, policy, now, target, args.base_url, workers, brake)
    except OSError as exc:  # most likely --out (a path that cannot be made, a full disk): say which file
        where = f": {exc.filename}" if exc.filename else ""
        raise UsageError(f"cannot build the site in {args.out} ({exc.strerror or exc}{where})") from None
    out.write(
        f"wrote the calendar site to {target / INDEX}: {built.months} month(s), {built.mailings} mailing page(s) "
        "and mailings.ics\n"
    )
    return 0

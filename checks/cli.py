"""The `mailings` command line: one parser that composes the subcommands of the checker (checks.commands), of
the sender (sender.commands) and of the calendar site (website.commands), and `main`, the only place that reads
argv and the environment and exits."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from checks import commands as checker
from checks import review
from checks.errors import UsageError
from sender import commands as sender
from website import commands as website


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailings", description="Mass-mailing requests as code: check, plan and send."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    checker.register(sub)
    review.register(sub)
    sender.register(sub)
    website.register(sub)
    return parser


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

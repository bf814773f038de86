"""The reviewer's subcommands on GitHub: comment (the plan on the pull request) and approvals (the required check
that each office approved)."""

from __future__ import annotations

import argparse

from checks import approvals, prcomment


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `comment` and `approvals` to the `mailings` parser."""
    comment = sub.add_parser(
        "comment", help="post or update the plan comment on a pull request from a check run's artifact (on GitHub)"
    )
    prcomment.add_arguments(comment)
    comment.set_defaults(func=prcomment.cmd_comment)

    check = sub.add_parser(
        "approvals", help="pass when a member of each team in policy.yaml approved a pull request's latest commit"
    )
    approvals.add_arguments(check)
    check.set_defaults(func=approvals.cmd_approvals)

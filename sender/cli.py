"""Subcommands of the sender (send, status, preview)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the sender's subcommands to the `mailings` parser."""

"""The one error type for "the user did something wrong" (a clean message, exit 2)."""

from __future__ import annotations


class UsageError(Exception):
    """A bad command line, a missing or invalid policy file: reported cleanly, exit code 2."""

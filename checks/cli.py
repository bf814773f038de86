"""The `mailings` command line: one parser that composes the subcommands of the checker (checks.commands), of
the sender (sender.commands) and of the calendar site (website.commands), and `main`, the only place that reads
argv and the environment and exits."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Sequence
from typing import TextIO

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


class Output(io.TextIOBase):
    """The commands' standard output, which a closed reader cannot stop: `mailings send | head` must still send
    every recipient and record the logs. A write that fails (the pipe's reader went away, the terminal closed)
    is dropped, and so is every one after it; `lost` says why, and the command goes on to its end."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner
        self.lost: OSError | None = None

    def write(self, text: str) -> int:
        if self.lost is None:
            try:
                self._inner.write(text)
            except OSError as exc:
                self._lose(exc)
        return len(text)

    def flush(self) -> None:
        if self.lost is None:
            try:
                self._inner.flush()
            except OSError as exc:
                self._lose(exc)

    def isatty(self) -> bool:
        return self._inner.isatty()

    def _lose(self, exc: OSError) -> None:
        self.lost = exc
        # What is still buffered for the closed stream would fail again when the interpreter flushes it at exit.
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            descriptor = self._inner.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, descriptor)
            os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """The `mailings` command line (*argv* None: sys.argv). The program itself is checks.program."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(sys.stdout)
    try:
        return int(args.func(args, os.environ, out))
    except UsageError as exc:
        print(f"mailings: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mailings: interrupted", file=sys.stderr)
        return 130
    finally:
        if out.lost is not None:
            with contextlib.suppress(OSError):
                why = out.lost.strerror or out.lost
                print(f"mailings: the output was cut off ({why}); the command went on to its end", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

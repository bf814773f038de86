"""One case of the catalogue of messages: a request that makes the checker print one message, and running it."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

from checks.cli import main
from checks.linter import check_mailing
from checks.loader import load_mailing
from checks.model import Context, SpecialListError
from tests.conftest import Repo

MAILING = "2027-02-10-travel"
# The moment every case is checked at: the request's submission, Monday 2027-01-11, 10:00 in Stockholm.
NOW = datetime.fromisoformat("2027-01-11T10:00:00+01:00")


@dataclass(frozen=True)
class Case:
    """A request (the valid default of tests.conftest, changed as given) whose check prints *says* under [*rule*]."""

    rule: str
    says: str  # a part of the message as printed, enough to tell it from the rule's others
    changes: Mapping[str, Any] | None = None  # deep-merged into the valid request; None as a value removes a field
    yaml: str | None = None  # mailing.yaml verbatim instead
    files: Mapping[str, str | bytes] = field(default_factory=dict)  # more files in the request directory
    bodies: Mapping[str, str | bytes] | None = None  # the bodies instead of the default's
    recipients: str | None = None  # recipients.txt instead of 600 internal addresses
    setup: Callable[[Repo], None] | None = None  # anything else: a link, a git history, a changed policy
    args: tuple[str, ...] = ()  # more arguments of `mailings check`
    # Send time: IT's special lists as the sender reads them, by id (None: what stands there is a directory; an
    # error: why the sender could not resolve the list).
    special: Mapping[str, str | SpecialListError | None] | None = None
    now: str | None = None  # the moment of the check, when not NOW
    env: Mapping[str, str] = field(default_factory=dict)  # the environment of `mailings check`, beside the test's

    @property
    def name(self) -> str:
        return f"{self.rule}: {self.says[:60]}"


def run(case: Case, root: Path) -> list[str]:
    """The lines that `mailings check` prints for *case* in a fresh repository at *root* (at send time, when the
    case has special lists, the lines of the same rules as the sender runs them)."""
    repo = Repo(root)
    repo.add(
        MAILING,
        changes=dict(case.changes) if case.changes is not None else None,
        yaml_text=case.yaml,
        bodies=dict(case.bodies) if case.bodies is not None else None,
        recipients=case.recipients,
        files=dict(case.files),
    )
    if case.setup is not None:
        case.setup(repo)
    now = datetime.fromisoformat(case.now) if case.now else NOW
    if case.special is not None:
        return _at_send_time(repo, case.special, now)
    out = io.StringIO()
    argv = ["check", "--root", str(root), "--submitted", NOW.date().isoformat(), "--format", "text", *case.args]
    cwd = os.getcwd()
    try:
        os.chdir(root)  # --changed-since asks git in the current directory's repository
        with (
            mock.patch("checks.commands.clock", lambda: now),
            mock.patch.dict(os.environ, case.env),
            redirect_stdout(out),
        ):
            main(argv)
    finally:
        os.chdir(cwd)
    return out.getvalue().splitlines()


def _at_send_time(repo: Repo, special: Mapping[str, str | SpecialListError | None], now: datetime) -> list[str]:
    paths = _Resolved()
    for list_id, text in special.items():
        if isinstance(text, SpecialListError):
            paths.failed[list_id] = text
            paths[list_id] = Path()
            continue
        path = repo.root / f"special-{list_id}.txt"
        if text is None:
            path.mkdir()
        else:
            path.write_text(text, encoding="utf-8", errors="surrogateescape")
        paths[list_id] = path
    mailing = load_mailing(repo.root, repo.root / "mailings" / MAILING, repo.policy, paths)
    context = Context(submitted=now.date(), now=now, stage="send")
    return [
        f"{p.file}:{p.line}:{p.column}: {p.level} [{p.rule}] {p.message}"
        for p in check_mailing(mailing, repo.policy, context)
    ]


class _Resolved(dict[str, Path]):
    """Special lists as the sender's mapping gives them: reading one it could not resolve raises why."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: dict[str, SpecialListError] = {}

    def __getitem__(self, list_id: str) -> Path:
        if list_id in self.failed:
            raise self.failed[list_id]
        return super().__getitem__(list_id)

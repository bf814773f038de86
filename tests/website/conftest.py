"""A repository with mailings in every state the calendar shows, one sent for real into a Maildir, and its site."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Repo, addresses, run_command

NOW = "2027-02-10T12:00:00+01:00"  # a Wednesday; a request submitted today may be sent on 2027-02-24
SENT = "2027-02-10-travel"
SCRIPTED = "2027-02-12-scripted"
HELD = "2027-02-11-held"
CANCELLED = "2027-02-16-cancelled"
JULY = "2027-07-06-summer"
SCRIPT_SUBJECT = {"sv": "Hej <script>alert('sv')</script>", "en": "Hello <script>alert('en')</script>"}


@dataclass(frozen=True)
class Site:
    repo: Repo
    out: Path
    output: str

    def text(self) -> str:
        """Every file of the site as text, one after the other."""
        return "\n".join(p.read_text(encoding="utf-8") for p in sorted(self.out.rglob("*")) if p.is_file())

    def recipient_addresses(self) -> set[str]:
        """Every address of every list of every request."""
        found: set[str] = set()
        for path in (self.repo.root / "mailings").rglob("*.txt"):
            if not path.name.startswith("body."):
                found.update(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if "@" in line)
        return found


def make_repo(root: Path) -> Repo:
    root.mkdir(parents=True, exist_ok=True)
    repo = Repo(root)
    repo.add(SENT, recipients=addresses(600, prefix="traveller"))
    repo.add(
        SCRIPTED,
        changes={"send_at": "2027-02-12 10:00", "subject": SCRIPT_SUBJECT, "sender": {"unit": "cbl"}},
        recipients=addresses(700, prefix="scripted"),
    )
    repo.add(
        HELD,
        changes={"send_at": "2027-02-11 09:30", "hold": {"reason": "the date is being discussed"}},
        recipients=addresses(550, domain="ug.kth.se", prefix="student"),
    )
    repo.add(
        CANCELLED,
        changes={"send_at": "2027-02-16 09:00", "cancel": {"reason": "the event moved"}},
        recipients=addresses(520, prefix="cancelled"),
    )
    repo.add(JULY, changes={"send_at": "2027-07-06 09:00"}, recipients=addresses(510, prefix="summer"))
    # The first one sent for real, into a Maildir: its send log says what was accepted.
    code, output = run_command(
        ["send", "--root", str(root), "--now", "2027-02-10T09:05:00+01:00", "--only", SENT,
         "--outbox", str(root / "outbox")]
    )  # fmt: skip
    assert code == 0, output
    return repo


def build(repo: Repo, out: Path, now: str = NOW, *more: str) -> Site:
    code, output = run_command(["site", "--root", str(repo.root), "--out", str(out), "--now", now, *more])
    assert code == 0, output
    return Site(repo, out, output)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """The site of make_repo(), built once per module at NOW."""
    repo = make_repo(tmp_path_factory.mktemp("repo"))
    return build(repo, tmp_path_factory.mktemp("site") / "out")

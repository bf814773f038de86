"""What the benchmarks share: the requests they generate (valid, due on SEND_AT, written as a requester would),
the repository those go into, and the `mailings` command they time."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import yaml

PROJECT = Path(__file__).resolve().parent.parent

SEND_AT = "2027-02-10 09:00"  # a Wednesday morning, ten working days after 2027-01-11, outside every blackout
# A run that sends needs a log key (recipients are logged as keyed hashes): the benchmarks' own.
LOG_KEY = "bench-" + "0" * 58
SUBJECTS = {"sv": "Nytt system för resebokning", "en": "New travel booking system"}
BODIES = {
    "sv": "Hej!\n\nFrån den 1 mars bokar du resor i det nya systemet.\nLäs mer på https://www.kth.se/resor\n",
    "en": "Hello!\n\nFrom 1 March you book travel in the new system.\nRead more at https://www.kth.se/en/travel\n",
}


def mailings_command() -> list[str]:
    """The installed console script next to this interpreter, else the module."""
    script = Path(sys.executable).parent / "mailings"
    return [str(script)] if script.exists() else [sys.executable, "-m", "checks"]


def copy_project(root: Path) -> None:
    """The project's policy.yaml and schema/ into the repository at *root*."""
    shutil.copy(PROJECT / "policy.yaml", root / "policy.yaml")
    shutil.copytree(PROJECT / "schema", root / "schema")


@contextmanager
def workdir(prefix: str, keep: bool, say: TextIO = sys.stdout) -> Iterator[Path]:
    """A temporary directory for the run, removed afterwards; with *keep* left in place and named on *say*."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            say.write(f"kept {path}\n")
        else:
            shutil.rmtree(path, ignore_errors=True)


def request(purpose: str, group: str, **extra: Any) -> dict[str, Any]:
    """A valid mailing.yaml in Swedish and English with one list file, recipients.txt."""
    return {
        "send_at": SEND_AT,
        "purpose": purpose,
        "sender": {"unit": "it"},
        "contact": {"name": "Anna Andersson", "email": "anna.andersson@kth.se", "phone": "+46 8 790 60 00"},
        "recipients": {
            "group": group,
            "why": "Everyone who books travel must use the new system from March.",
            "lists": [{"file": "recipients.txt"}],
        },
        "languages": list(SUBJECTS),
        "subject": SUBJECTS,
        **extra,
    }


def write_request(directory: Path, fields: Mapping[str, Any], bodies: Mapping[str, str], recipients: str) -> None:
    """The request's directory: mailing.yaml, a body per language, recipients.txt."""
    directory.mkdir(parents=True)
    text = yaml.safe_dump(dict(fields), sort_keys=False, allow_unicode=True)
    (directory / "mailing.yaml").write_text(text, encoding="utf-8")
    for lang, body in bodies.items():
        (directory / f"body.{lang}.txt").write_text(body, encoding="utf-8")
    (directory / "recipients.txt").write_text(recipients, encoding="utf-8")

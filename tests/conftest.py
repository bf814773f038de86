"""Shared test helpers: build real request directories in a temporary repository."""

from __future__ import annotations

import copy
import io
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.linter import check_mailing
from checks.loader import load_mailing
from checks.model import Context, Problem, Stage
from checks.policy import Policy, load_policy
from checks.rules import RULES

PROJECT = Path(__file__).resolve().parent.parent

VALID: dict[str, Any] = {
    "send_at": "2027-02-10 09:00",
    "purpose": "Announce the new travel booking system.",
    "sender": {"unit": "it"},
    "contact": {"name": "Anna Andersson", "email": "anna.andersson@kth.se", "phone": "+46 8 790 60 00"},
    "recipients": {
        "group": "All employees who book business travel",
        "why": "Everyone who books travel must use the new system from March.",
        "lists": [{"file": "recipients.txt"}],
    },
    "languages": ["sv", "en"],
    "subject": {"sv": "Nytt system för resebokning", "en": "New travel booking system"},
}

# A complete event, as the policy asks for one (after VALID's send_at, its deadline in between).
EVENT: dict[str, str] = {
    "date": "2027-03-01",
    "time": "13:00-15:00",
    "venue": "Aula Magna, KTH Campus",
    "registration": "Register at https://www.kth.se/event/123",
    "registration_deadline": "2027-02-20",
}

BODIES = {
    "sv": "Hej!\n\nFrån den 1 mars bokar du resor i det nya systemet.\nLäs mer på https://www.kth.se/resor\n",
    "en": "Hello!\n\nFrom 1 March you book travel in the new system.\nRead more at https://www.kth.se/en/travel\n",
}


def addresses(count: int, domain: str = "kth.se", prefix: str = "user") -> str:
    return "".join(f"{prefix}{i}@{domain}\n" for i in range(count))


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge *changes* into a copy of *base*; a value of None deletes the key."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


class Repo:
    """A repository root in a temporary directory with the project's policy and schema."""

    def __init__(self, root: Path) -> None:
        self.root = root
        shutil.copy(PROJECT / "policy.yaml", root / "policy.yaml")
        shutil.copytree(PROJECT / "schema", root / "schema")
        (root / "mailings").mkdir()
        self._policy: Policy | None = None

    @property
    def policy(self) -> Policy:
        if self._policy is None:
            self._policy = load_policy(self.root)
        return self._policy

    def add(
        self,
        mailing_id: str = "2027-02-10-travel",
        *,
        changes: dict[str, Any] | None = None,
        yaml_text: str | None = None,
        bodies: dict[str, str | bytes] | None = None,
        recipients: str | None = None,
        files: dict[str, str | bytes] | None = None,
    ) -> Path:
        """Write a request: the valid default, deep-merged with *changes*, or *yaml_text* verbatim."""
        directory = self.root / "mailings" / mailing_id
        directory.mkdir(parents=True)
        text = (
            yaml_text
            if yaml_text is not None
            else yaml.safe_dump(merge(VALID, changes or {}), sort_keys=False, allow_unicode=True)
        )
        (directory / "mailing.yaml").write_text(text, encoding="utf-8")
        for lang, body in (BODIES if bodies is None else bodies).items():
            write(directory / f"body.{lang}.txt", body)
        write(directory / "recipients.txt", addresses(600) if recipients is None else recipients)
        for name, content in (files or {}).items():
            write(directory / name, content)
        return directory

    def problems(
        self,
        mailing_id: str = "2027-02-10-travel",
        *,
        submitted: str = "2027-01-11",
        now: str = "2027-01-11T10:00:00+01:00",
        stage: Stage = "submit",
        rule: str | None = None,
        author: str | None = None,
    ) -> list[Problem]:
        """Problems of one request, optionally of one rule only."""
        mailing = load_mailing(self.root, self.root / "mailings" / mailing_id, self.policy)
        context = Context(
            submitted=datetime.fromisoformat(submitted).date(),
            now=datetime.fromisoformat(now),
            stage=stage,
            author=author,
        )
        rules = [RULES[rule]] if rule else None
        return check_mailing(mailing, self.policy, context, rules)

    def messages(self, mailing_id: str = "2027-02-10-travel", **kwargs: Any) -> list[str]:
        """Problems as 'file:line:col: level [rule] message' strings, with the mailing dir shortened."""
        prefix = f"mailings/{mailing_id}/"
        return [
            f"{p.file.removeprefix(prefix)}:{p.line}:{p.column}: {p.level} [{p.rule}] {p.message}"
            for p in self.problems(mailing_id, **kwargs)
        ]


def write(path: Path, content: str | bytes) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path)


# The log key of the tests' send runs: `mailings send` refuses to send without one (sender.logkey).
TEST_LOG_KEY = "test-log-key-0123456789abcdef0123456789abcdef"
LOG_KEY_ENV = {"MAILINGS_LOG_KEY": TEST_LOG_KEY}


def run_command(argv: Sequence[str], env: Mapping[str, str] = LOG_KEY_ENV) -> tuple[int, str]:
    """`mailings *argv*` in this process: its exit code and output, with *env* as its whole environment (by
    default the test log key alone: a send needs one)."""
    from checks.cli import build_parser

    args = build_parser().parse_args(list(argv))
    out = io.StringIO()
    return args.func(args, dict(env), out), out.getvalue()


# A person with a plain git set-up: fixed identity, no user or system configuration.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Requester",
    "GIT_AUTHOR_EMAIL": "requester@kth.se",
    "GIT_COMMITTER_NAME": "Requester",
    "GIT_COMMITTER_EMAIL": "requester@kth.se",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "LC_ALL": "C",
}


def git(cwd: Path, *args: str) -> str:
    """Run git in *cwd* as that person; its output, stripped."""
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@pytest.fixture
def plain_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the machine's git configuration out of git run by the code under test."""
    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def branch(repo: Repo, plain_git: None) -> Repo:
    """A pull request's branch `request` off a main that holds the project's policy and schema (a test module
    may override it with a main that holds more)."""
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "Policy and schema")
    git(repo.root, "switch", "--quiet", "--create", "request")
    return repo

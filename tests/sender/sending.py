"""Helpers of the send tests: options pointing at a test server, policy edits, reading a send log."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from checks.model import SENDLOG_FILE
from sender.config import MaildirSettings, SmtpSettings
from sender.dispatch import Outcome, SendOptions, Tuning, send_all
from sender.eventloop import LoopChoice
from sender.journal import Replay, make_hasher, replay
from tests.conftest import Repo
from tests.sender.smtpserver import RunningServer

MAILING = "2027-02-10-travel"  # the Repo fixture's default id; send_at 2027-02-10 09:00 Europe/Stockholm
NOW = "2027-02-10T09:05:00+01:00"
FAST = Tuning(backoff=(0.01, 0.02, 0.04))  # retries without waiting seconds
LOOP: LoopChoice = "auto"  # the event loop of the sends; the loop_choice fixture runs a test on each


def smtp(server: RunningServer, **changes: Any) -> SmtpSettings:
    changes.setdefault("timeout", 10.0)
    return SmtpSettings(host=server.host, port=server.port, security="none", **changes)


def options(settings: SmtpSettings | MaildirSettings, *, now: str = NOW, **changes: Any) -> SendOptions:
    moment = datetime.fromisoformat(now)
    changes.setdefault("tuning", FAST)
    changes.setdefault("wallclock", lambda: moment)
    changes.setdefault("monotonic", time.monotonic)
    changes.setdefault("event_loop", LOOP)
    changes.setdefault("run_id", "test-run")
    return SendOptions(now=moment, settings=settings, **changes)


def send(repo: Repo, server: RunningServer, *, now: str = NOW, **changes: Any) -> list[Outcome]:
    return send_all(repo.root, repo.policy, options(smtp(server), now=now, **changes))


def set_sending(repo: Repo, **sending: Any) -> None:
    """Change policy.sending in the test repository's copy of the policy."""
    path = repo.root / "policy.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["sending"].update(sending)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    repo._policy = None


def log_path(repo: Repo, mailing_id: str = MAILING) -> Path:
    return repo.root / "mailings" / mailing_id / SENDLOG_FILE


def log_of(repo: Repo, mailing_id: str = MAILING) -> Replay:
    return replay(log_path(repo, mailing_id))


def events(repo: Repo, kind: str, mailing_id: str = MAILING) -> list[dict[str, Any]]:
    import json

    lines = log_path(repo, mailing_id).read_bytes().splitlines()
    return [e for e in (json.loads(line) for line in lines if line.strip()) if e["event"] == kind]


def hashed(*addresses: str, key: str | None = None) -> set[str]:
    hasher = make_hasher(key)
    return {hasher(a) for a in addresses}


def recipients(count: int, prefix: str = "user") -> list[str]:
    """The addresses tests.conftest.addresses(count) writes."""
    return [f"{prefix}{i}@kth.se" for i in range(count)]

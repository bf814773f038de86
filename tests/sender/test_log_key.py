"""The log key: rotation never orphans what the old key hashed. Real git (a bare origin, a fresh clone per run
as the dispatch job has) and a real SMTP server counting the copies each recipient received."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sender.journal import make_hasher
from sender.logkey import PREVIOUS_KEYS, keyring, keyring_from_env
from tests.conftest import Repo, git
from tests.sender.sending import MAILING, NOW, recipients
from tests.sender.smtpserver import Faults, FaultyHandler, RunningServer
from tests.sender.test_cli_send import _published, relay, run

KEY_A = "first-key-" + "a" * 32
KEY_B = "second-key-" + "b" * 32
LATER = "2027-02-10T09:20:00+01:00"
LOG = f"mailings/{MAILING}/sendlog.jsonl"
REFUSED = recipients(600)[:5]  # refused for good by the relay in the first run
DEFERRED = recipients(600)[590:]  # refused for now in the first run: the second run sends them


@pytest.fixture(autouse=True)
def _plain_git(plain_git: None) -> None:
    """git as the dispatch job runs it: no user or system configuration."""


def log_on(origin: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in git(origin, "show", f"main:{LOG}").splitlines() if line.strip()]


def fresh_clone(origin: Path, name: str) -> Path:
    git(origin.parent, "clone", "--quiet", str(origin), str(origin.parent / name))
    return origin.parent / name


def half_sent(repo: Repo, make_server: Any, tmp_path: Path, env: dict[str, str]) -> tuple[Path, RunningServer]:
    """A mailing of 600 the first run (with *env*'s key) leaves with 585 accepted, 5 refused, 10 deferred."""
    repo.add()
    origin, clone = _published(tmp_path / "git", repo)
    server = make_server(FaultyHandler(Faults(perm_fail=REFUSED, temp_fail=dict.fromkeys(DEFERRED))))
    code, out = run(["send", "--root", str(clone), "--now", NOW, "--push"], {**relay(server), **env})
    assert code == 0 and "10 recipient(s) deferred" in out, out
    server.handler.faults = Faults()  # the relay is well again
    return origin, server


def test_a_key_rotated_in_the_middle_of_a_mailing_mails_nobody_twice_and_loses_nobody(
    repo: Repo, make_server: Any, tmp_path: Path
) -> None:
    origin, server = half_sent(repo, make_server, tmp_path, {"MAILINGS_LOG_KEY": KEY_A})
    rotated = {"MAILINGS_LOG_KEY": KEY_B, PREVIOUS_KEYS: f"{KEY_A}\n"}
    code, out = run(
        ["send", "--root", str(fresh_clone(origin, "runner-2")), "--now", LATER, "--push"],
        {
            **relay(server),
            **rotated,
        },
    )
    assert code == 0, out
    received = server.handler.counts()
    assert received == Counter({address: 1 for address in recipients(600)[5:]})  # each once, the refused never
    log = log_on(origin)
    starts = [e for e in log if e["event"] == "start"]
    ids = [make_hasher(KEY_A).key_check, make_hasher(KEY_B).key_check]
    assert [s["key_check"] for s in starts] == ids  # each run's lines name the key that hashed them
    assert KEY_A not in json.dumps(log) and KEY_B not in json.dumps(log)  # ... by its id, never itself
    [end] = [e for e in log if e["event"] == "end"][-1:]
    assert end["complete"] and (end["accepted"], end["failed"], end["pending"]) == (595, 5, 0)
    # The next scheduled runs, with the old key still kept or gone, find the mailing sent and send nothing.
    for later, env in enumerate((rotated, {"MAILINGS_LOG_KEY": KEY_B}), start=3):
        work = fresh_clone(origin, f"runner-{later}")
        code, out = run(["send", "--root", str(work), "--now", LATER], {**relay(server), **env})
        assert code == 0 and "sent" in out
    assert server.handler.counts() == received


def test_a_rotated_key_without_the_old_one_blocks_the_mailing_instead_of_mailing_everybody_again(
    repo: Repo, make_server: Any, tmp_path: Path
) -> None:
    origin, server = half_sent(repo, make_server, tmp_path, {"MAILINGS_LOG_KEY": KEY_A})
    before = server.handler.counts()
    clone = fresh_clone(origin, "runner-2")
    code, out = run(
        ["send", "--root", str(clone), "--now", LATER, "--push"],
        {
            **relay(server),
            "MAILINGS_LOG_KEY": KEY_B,
        },
    )
    assert code == 1 and server.handler.counts() == before
    assert f"key id {make_hasher(KEY_A).key_check}" in out and PREVIOUS_KEYS in out
    # Given the old key back as the previous one, the same run finishes the mailing.
    rotated = {"MAILINGS_LOG_KEY": KEY_B, PREVIOUS_KEYS: KEY_A}
    code, out = run(["send", "--root", str(clone), "--now", LATER, "--push"], {**relay(server), **rotated})
    assert code == 0, out
    assert server.handler.counts() == Counter({address: 1 for address in recipients(600)[5:]})


def test_a_log_from_before_the_key_was_required_is_resumed_with_a_key(
    repo: Repo, make_server: Any, tmp_path: Path
) -> None:
    from sender.dispatch import send_all
    from tests.sender.sending import options, smtp

    repo.add()
    _, clone = _published(tmp_path / "git", repo)
    server = make_server(FaultyHandler(Faults(temp_fail=dict.fromkeys(DEFERRED))))
    repo.root = clone
    repo._policy = None
    [first] = send_all(clone, repo.policy, options(smtp(server)))  # an old run: no key, plain SHA-256
    assert first.pending == 10 and b'"hash":"sha256-128"' in (clone / LOG).read_bytes()
    server.handler.faults = Faults()
    code, out = run(["send", "--root", str(clone), "--now", LATER], relay(server))
    assert code == 0, out
    assert server.handler.counts() == Counter({address: 1 for address in recipients(600)})


def test_the_keyring_names_every_key_that_may_have_hashed_a_record() -> None:
    env = {"MAILINGS_LOG_KEY": KEY_B, PREVIOUS_KEYS: f"\n  {KEY_A}  \n{KEY_B}\n"}
    ring = keyring_from_env(env)
    assert [h.key_check for h in ring.hashers()] == [make_hasher(KEY_B).key_check, make_hasher(KEY_A).key_check]
    assert [h.key for h in ring.reading()][-1] is None  # and the unkeyed hash of the oldest logs
    address = "Anna.Svensson@KTH.se"
    assert {h(address) for h in ring.hashers()} == {make_hasher(KEY_A)(address), make_hasher(KEY_B)(address)}
    assert ring.problem([("hmac-sha256-128", make_hasher(KEY_A).key_check), ("sha256-128", None)]) is None
    stranger = make_hasher("a-key-nobody-keeps-" + "c" * 32).key_check
    assert stranger in (ring.problem([("hmac-sha256-128", stranger)]) or "")
    assert keyring(None).hashers() == ()


def test_a_dry_run_without_the_key_of_a_half_sent_mailing_says_the_key_is_missing(
    repo: Repo, make_server: Any, tmp_path: Path
) -> None:
    origin, server = half_sent(repo, make_server, tmp_path, {"MAILINGS_LOG_KEY": KEY_A})
    clone = fresh_clone(origin, "runner-2")
    env = {k: v for k, v in relay(server).items() if k != "MAILINGS_LOG_KEY"}
    code, out = run(["send", "--root", str(clone), "--now", LATER, "--dry-run"], env)
    assert code == 1 and "would be blocked" in out and "MAILINGS_LOG_KEY is not set" in out
    assert make_hasher(KEY_A).key_check in out and KEY_A not in out

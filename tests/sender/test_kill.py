"""Real `mailings send` processes: one killed with SIGKILL mid-mailing and run again, and two at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sender.state import MailingState, decide
from tests.conftest import LOG_KEY_ENV, Repo, addresses
from tests.sender.sending import MAILING, NOW, log_of, recipients, set_sending
from tests.sender.smtpserver import Faults, FaultyHandler, RunningServer

pytestmark = pytest.mark.slow

MakeServer = Callable[..., RunningServer]
WAIT = 60.0  # seconds; a bound for a stuck process, not a measured time


def _command(root: Path) -> list[str]:
    return [sys.executable, "-m", "checks.cli", "send", "--root", str(root), "--now", NOW]


def _env(server: RunningServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILINGS_")}
    env.update(MAILINGS_SMTP_HOST=server.host, MAILINGS_SMTP_PORT=str(server.port), MAILINGS_SMTP_SECURITY="none")
    env.update(LOG_KEY_ENV)
    return env


def _start(root: Path, server: RunningServer) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _command(root), env=_env(server), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


# A killed process loses nothing it wrote, so the duplicates are at most the transactions in flight:
# one per connection, of a batch each in bulk mode and of one recipient in individual mode.
@pytest.mark.parametrize(
    ("mode", "batch_size", "count", "bound"), [("bulk", 20, 2000, 4 * 20), ("individual", 100, 600, 4)]
)
def test_a_sender_killed_mid_mailing_and_run_again_completes_it(
    repo: Repo, make_server: MakeServer, mode: str, batch_size: int, count: int, bound: int
) -> None:
    set_sending(repo, batch_size=batch_size, connections=4)
    repo.add(changes={"delivery": {"mode": mode}}, recipients=addresses(count))
    handler = FaultyHandler(Faults(delay=0.004))  # slow enough that the kill lands mid-run
    server = make_server(handler)
    first = _start(repo.root, server)
    try:
        assert handler.wait_for_recipients(count // 4, timeout=WAIT), first.communicate(timeout=WAIT)[0]
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(timeout=WAIT)
    assert first.returncode == -signal.SIGKILL
    interrupted = log_of(repo)
    assert interrupted.open_run and len(interrupted.accepted) < count
    assert decide_state(repo) is MailingState.SENDING

    handler.faults.delay = 0.0
    second = subprocess.run(_command(repo.root), env=_env(server), capture_output=True, text=True, timeout=WAIT)
    assert second.returncode == 0, second.stdout + second.stderr
    counts = handler.counts()
    assert set(counts) == set(recipients(count))  # nobody missed
    duplicates = sum(counts.values()) - len(counts)
    assert duplicates <= bound
    log = log_of(repo)
    assert log.complete and len(log.accepted) == count
    assert decide_state(repo) is MailingState.SENT


def decide_state(repo: Repo) -> MailingState:
    from datetime import datetime

    from checks.loader import load_mailing

    mailing = load_mailing(repo.root, repo.root / "mailings" / MAILING, repo.policy)
    return decide(mailing, log_of(repo), datetime.fromisoformat(NOW), repo.policy).state


def test_two_senders_at_once_deliver_each_recipient_once(repo: Repo, make_server: MakeServer) -> None:
    set_sending(repo, batch_size=20)
    repo.add()
    handler = FaultyHandler(Faults(delay=0.004))
    server = make_server(handler)
    first = _start(repo.root, server)
    try:
        # The second starts once the first is sending, and finds the mailing locked or finished.
        assert handler.wait_for_recipients(1, timeout=WAIT)
        second = _start(repo.root, server)
        out_second, _ = second.communicate(timeout=WAIT)
    finally:
        out_first, _ = first.communicate(timeout=WAIT)
    assert first.returncode == 0 and second.returncode == 0, out_first + out_second
    assert handler.counts() == {a: 1 for a in recipients(600)}
    assert (
        "skipped: another `mailings send` is sending it now" in out_second
        or "nothing to do for 1 other mailing (1 sent)" in out_second
    )
    assert log_of(repo).runs == 1

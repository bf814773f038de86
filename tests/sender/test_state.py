"""A mailing's state at the edges: send_at, the lateness limit, and what the send log says."""

from __future__ import annotations

from datetime import datetime

import pytest

from checks.loader import load_mailing
from checks.model import Mailing
from sender.journal import Failure, Replay
from sender.state import ACTIONABLE, MailingState, decide
from tests.conftest import Repo

# send_at "2027-02-10 09:00" in Europe/Stockholm is 09:00+01:00; the policy allows 24 hours of lateness.


def _mailing(repo: Repo, **changes: object) -> Mailing:
    directory = repo.add(changes=dict(changes))
    return load_mailing(repo.root, directory, repo.policy)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("now", "state"),
    [
        ("2027-02-10T08:59:59+01:00", MailingState.SCHEDULED),
        ("2027-02-10T09:00:00+01:00", MailingState.DUE),
        ("2027-02-10T08:00:00+00:00", MailingState.DUE),  # the same moment in UTC
        ("2027-02-11T09:00:00+01:00", MailingState.DUE),  # exactly at the lateness limit
        ("2027-02-11T09:00:01+01:00", MailingState.MISSED),
    ],
)
def test_state_at_the_edges_of_the_send_window(repo: Repo, now: str, state: MailingState) -> None:
    assert decide(_mailing(repo), Replay(), _at(now), repo.policy).state is state


def test_the_lateness_limit_comes_from_the_policy(repo: Repo) -> None:
    text = (repo.root / "policy.yaml").read_text().replace("max_lateness_hours: 24", "max_lateness_hours: 2")
    (repo.root / "policy.yaml").write_text(text)
    mailing = _mailing(repo)
    assert decide(mailing, Replay(), _at("2027-02-10T11:00:00+01:00"), repo.policy).state is MailingState.DUE
    decision = decide(mailing, Replay(), _at("2027-02-10T11:00:01+01:00"), repo.policy)
    assert decision.state is MailingState.MISSED
    assert "more than 2 hours ago" in decision.reason and "new send_at" in decision.reason


def test_a_date_without_a_time_is_due_at_the_default_hour(repo: Repo) -> None:
    mailing = _mailing(repo, send_at="2027-02-10")
    assert decide(mailing, Replay(), _at("2027-02-10T08:59:59+01:00"), repo.policy).state is MailingState.SCHEDULED
    assert decide(mailing, Replay(), _at("2027-02-10T09:00:00+01:00"), repo.policy).state is MailingState.DUE


def test_a_complete_log_means_sent_whatever_the_time(repo: Repo) -> None:
    mailing = _mailing(repo)
    for now in ("2027-02-10T09:30:00+01:00", "2027-03-01T09:00:00+01:00"):
        assert decide(mailing, Replay(complete=True, runs=1), _at(now), repo.policy).state is MailingState.SENT
    with_failures = Replay(complete=True, runs=1, failed={"h": Failure(550, "unknown")})
    decision = decide(mailing, with_failures, _at("2027-02-10T09:30:00+01:00"), repo.policy)
    assert decision.state is MailingState.SENT_WITH_FAILURES


def test_an_unfinished_run_is_sending_until_the_lateness_runs_out(repo: Repo) -> None:
    mailing = _mailing(repo)
    running = Replay(open_run=True, runs=1, accepted={"h"})
    assert decide(mailing, running, _at("2027-02-11T09:00:00+01:00"), repo.policy).state is MailingState.SENDING
    late = decide(mailing, running, _at("2027-02-11T09:00:01+01:00"), repo.policy)
    assert late.state is MailingState.MISSED and "1 recipient(s) were sent before" in late.reason


def test_a_run_that_left_recipients_pending_is_due_again(repo: Repo) -> None:
    decision = decide(_mailing(repo), Replay(runs=1), _at("2027-02-10T10:00:00+01:00"), repo.policy)
    assert decision.state is MailingState.DUE and "pending" in decision.reason


def test_blocked_is_shown_within_the_window_and_checked_again_by_send(repo: Repo) -> None:
    decision = decide(_mailing(repo), Replay(blocked="a rule failed"), _at("2027-02-10T10:00:00+01:00"), repo.policy)
    assert decision.state is MailingState.BLOCKED and decision.reason == "a rule failed"
    assert decision.actionable


def test_an_invalid_send_at_is_blocked(repo: Repo) -> None:
    decision = decide(_mailing(repo, send_at="soon"), Replay(), _at("2027-02-10T10:00:00+01:00"), repo.policy)
    assert decision.state is MailingState.BLOCKED


def test_send_acts_on_due_sending_and_blocked_only() -> None:
    assert {MailingState.DUE, MailingState.SENDING, MailingState.BLOCKED} == ACTIONABLE


def test_states_have_the_names_status_prints() -> None:
    assert [s.value for s in MailingState] == [
        "scheduled", "due", "sending", "sent", "sent-with-failures", "blocked", "missed", "held", "cancelled"
    ]  # fmt: skip

"""Word back by mail: the contact person hears once, through the same relay, when a mailing completes or is
blocked, missed or cancelled (policy.yaml notify.mail_contact). A real SMTP server records what arrives."""

from __future__ import annotations

import email
import email.policy
from typing import Any

import yaml

from sender.dispatch import send_all
from sender.state import MailingState
from tests.conftest import Repo
from tests.sender.sending import MAILING, NOW, events, options, smtp
from tests.sender.smtpserver import RunningServer

CONTACT = "anna.andersson@kth.se"  # the default request's contact person


def telling(repo: Repo, **notify: Any) -> None:
    path = repo.root / "policy.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["notify"] = {"team": "@kth-mailings/it", "mail_contact": True, "ask": "it-support@kth.se", **notify}
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    repo._policy = None


def notice_texts(server: RunningServer) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(entry.data, policy=email.policy.default)  # type: ignore[misc]
        for entry in server.handler.notices
    ]


def test_the_contact_person_hears_once_that_the_mailing_went_out(repo: Repo, smtp_server: RunningServer) -> None:
    telling(repo)
    repo.add()
    [outcome] = send_all(repo.root, repo.policy, options(smtp(smtp_server)))
    [again] = send_all(repo.root, repo.policy, options(smtp(smtp_server), now="2027-02-10T09:30:00+01:00"))
    assert outcome.state is again.state is MailingState.SENT
    [notice] = notice_texts(smtp_server)
    assert [entry.recipients for entry in smtp_server.handler.notices] == [(CONTACT,)]
    assert notice["To"] == CONTACT and notice["Reply-To"] == "it-support@kth.se"
    assert notice["Subject"] == f"Mass mailing {MAILING}: sent" and notice["X-Mailings-Notice"] == "sent"
    body = notice.get_content()
    assert "Recipients: 600; accepted by the mail relay: 600; refused for good: 0" in body
    assert "When: 2027-02-10 09:05 CET" in body and "Questions: it-support@kth.se" in body
    assert CONTACT not in {r for entry in smtp_server.handler.received for r in entry.recipients}  # no recipient
    assert [e["state"] for e in events(repo, "notice")] == ["sent"]


def test_a_blocked_mailing_is_told_once_with_the_reason(repo: Repo, smtp_server: RunningServer) -> None:
    telling(repo)
    repo.add(bodies={"sv": "Hej <b>alla</b>\n", "en": "Hello all\n"})
    for now in (NOW, "2027-02-10T09:20:00+01:00", "2027-02-10T09:35:00+01:00"):
        [outcome] = send_all(repo.root, repo.policy, options(smtp(smtp_server), now=now))
        assert outcome.state is MailingState.BLOCKED
    [notice] = notice_texts(smtp_server)
    assert notice["Subject"] == f"Mass mailing {MAILING}: blocked"
    assert "Why:" in notice.get_content() and "plain-text" in notice.get_content()
    assert smtp_server.handler.received == []
    assert len(events(repo, "blocked")) == 1  # the notice does not hide the block from the next run


def test_off_by_the_policy_nothing_but_the_mailing_reaches_the_relay(repo: Repo, smtp_server: RunningServer) -> None:
    telling(repo, mail_contact=False)
    repo.add()
    send_all(repo.root, repo.policy, options(smtp(smtp_server)))
    assert smtp_server.handler.notices == [] and len(smtp_server.handler.recipients()) == 600

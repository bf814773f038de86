"""`mailings preview ID --to ADDRESS`: one test copy, marked as one, to an internal address alone, through a real
relay or plainly into the local outbox; the send log is never touched."""

from __future__ import annotations

import email
import email.policy
import re
import socket
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import cast

import pytest

from checks.cli import main
from sender.message import TEST_COPY_HEADER, TEST_COPY_PREFIX
from tests.conftest import Repo
from tests.sender.sending import MAILING, NOW, log_path
from tests.sender.smtpserver import Faults, FaultyHandler, RunningServer
from tests.sender.test_cli_send import relay, run

MakeServer = Callable[..., RunningServer]

SUBJECT = "Nytt system för resebokning / New travel booking system"  # the Repo fixture's subjects, joined
# Long and mostly not ASCII: the prefix and the subject are folded over several encoded-words.
LONG_SV = "Ändrade öppettider för biblioteken på KTH:s campus i Flemingsberg, Södertälje och Kista under våren"
REAL_ID = re.compile(rf"<{re.escape(MAILING)}\.[0-9a-f]{{32}}@kth\.se>")  # sender.message.make_message_id's form


def parsed(data: bytes) -> EmailMessage:
    return cast(EmailMessage, email.message_from_bytes(data, policy=email.policy.default))


def preview(repo: Repo, *more: str) -> list[str]:
    return ["preview", MAILING, "--root", str(repo.root), "--now", NOW, *more]


def assert_marked(message: EmailMessage, subject: str = SUBJECT) -> None:
    assert str(message["Subject"]) == TEST_COPY_PREFIX + subject
    assert message[TEST_COPY_HEADER] == "yes"
    assert not REAL_ID.fullmatch(str(message["Message-ID"])), "a Message-ID a real send could use"


# --- through a relay --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "subject"),
    [({}, SUBJECT), ({"subject": {"sv": LONG_SV, "en": "Library hours"}}, f"{LONG_SV} / Library hours")],
    ids=["default", "long-non-ascii"],
)
def test_one_marked_copy_to_the_address_alone(
    repo: Repo, smtp_server: RunningServer, changes: dict[str, object], subject: str
) -> None:
    repo.add(changes=changes)
    code, out = run(preview(repo, "--to", "tester@kth.se"), relay(smtp_server))
    assert (code, out) == (
        0,
        f"test copy of {MAILING} to tester@kth.se via 127.0.0.1:{smtp_server.port} (none): "
        "mailed: the relay accepted it for delivery to tester@kth.se\n",
    )
    [entry] = smtp_server.handler.received
    assert entry.recipients == ("tester@kth.se",)
    head = entry.data.partition(b"\r\n\r\n")[0]
    assert head.isascii() and b"=?utf-8?" in head  # the Swedish letters travel as encoded-words
    message = parsed(entry.data)
    assert_marked(message, subject)
    assert message["To"] == "tester@kth.se"
    assert not log_path(repo).exists()


def test_a_copy_leaves_a_sent_mailings_log_alone_and_shares_no_message_id_with_it(
    repo: Repo, smtp_server: RunningServer
) -> None:
    repo.add()
    code, _ = run(["send", "--root", str(repo.root), "--now", NOW], relay(smtp_server))
    assert code == 0
    log = log_path(repo).read_bytes()
    real = {str(parsed(entry.data)["Message-ID"]) for entry in smtp_server.handler.received}
    for entry in smtp_server.handler.received:  # the real send is not marked
        message = parsed(entry.data)
        assert str(message["Subject"]) == SUBJECT and TEST_COPY_HEADER not in message
    copies = []
    for _ in range(2):
        code, _ = run(preview(repo, "--to", "tester@kth.se"), relay(smtp_server))
        assert code == 0
        copies.append(parsed(smtp_server.handler.received[-1].data))
    assert log_path(repo).read_bytes() == log
    ids = {str(copy["Message-ID"]) for copy in copies}
    assert len(ids) == 2 and not ids & real  # each copy its own; never one a real message has
    for copy in copies:
        assert_marked(copy)


def test_a_relay_that_refuses_says_so_with_exit_1(repo: Repo, make_server: MakeServer) -> None:
    server = make_server(FaultyHandler(Faults(perm_fail=["tester@kth.se"])))
    repo.add()
    code, out = run(preview(repo, "--to", "tester@kth.se"), relay(server))
    assert code == 1
    assert out.endswith(
        ": not sent: the relay refused it: 550 every recipient was refused (first: 550 5.1.1 <tester@kth.se>: "
        "Recipient address rejected: User unknown)\n"
    )
    assert "accepted" not in out and server.handler.received == []
    server.handler.faults = Faults(refuse_mail="554 5.7.1 Relay access denied")
    code, out = run(preview(repo, "--to", "tester@kth.se"), relay(server))
    assert code == 1 and out.endswith(": not sent: the relay refused it: 554 5.7.1 Relay access denied\n")
    assert not log_path(repo).exists()


def test_a_relay_that_cannot_be_reached_says_so_with_exit_1(repo: Repo) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    repo.add()
    env = {"MAILINGS_SMTP_HOST": "127.0.0.1", "MAILINGS_SMTP_PORT": str(port), "MAILINGS_SMTP_SECURITY": "none"}
    code, out = run(preview(repo, "--to", "tester@kth.se"), env)
    assert code == 1 and ": not sent: cannot open a session: 421 4.4.1 cannot connect to" in out
    assert "accepted" not in out and "mailed:" not in out


# --- without a relay: the outbox --------------------------------------------------------------------------------


def test_without_a_relay_it_says_nothing_was_mailed_and_names_the_file(repo: Repo, tmp_path: Path) -> None:
    repo.add()
    outbox = repo.root / "outbox"
    written = []
    for _ in range(2):  # the second names its own file, not the first one in the folder
        code, out = run(preview(repo, "--to", "tester@kth.se"), {})
        match = re.fullmatch(
            rf"test copy of {MAILING} to tester@kth\.se via Maildir {re.escape(str(outbox))}: "
            r"nothing was mailed; the copy is in (\S+) \(MAILINGS_SMTP_HOST is not set: set it to mail through a "
            r"relay\)\n",
            out,
        )
        assert code == 0 and match, out
        assert "accepted" not in out
        written.append(Path(match[1]))
    assert written[0] != written[1]
    assert sorted(written) == sorted((outbox / "new").iterdir())
    for path in written:
        message = parsed(path.read_bytes())
        assert_marked(message)
        assert message["X-Envelope-To"] == "<tester@kth.se>" and message["To"] == "tester@kth.se"
    assert not log_path(repo).exists()
    elsewhere = tmp_path / "elsewhere"
    code, out = run(preview(repo, "--to", "tester@kth.se", "--outbox", str(elsewhere)), {})
    [path] = (elsewhere / "new").iterdir()
    assert code == 0 and out.split("nothing was mailed; the copy is in ")[1].startswith(f"{path} ")


# --- the address ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["partner@uu.se", "tester@kth.se.evil.com", "tester@kth-se.com"])
def test_an_external_address_is_refused_without_allow_external(
    repo: Repo,
    smtp_server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    address: str,
) -> None:
    repo.add()
    for name, value in relay(smtp_server).items():
        monkeypatch.setenv(name, value)
    assert main(preview(repo, "--to", address)) == 2
    assert capsys.readouterr().err == (
        f"mailings: error: --to {address}: not on an internal domain (kth.se or a subdomain); send the test copy "
        "to an internal address, or add --allow-external to send it outside\n"
    )
    assert smtp_server.handler.connections == 0
    assert main(preview(repo, "--to", address, "--allow-external")) == 0
    [entry] = smtp_server.handler.received
    assert entry.recipients == (address,)
    assert_marked(parsed(entry.data))


def test_a_subdomain_is_internal_and_an_invalid_address_is_refused_as_before(
    repo: Repo, smtp_server: RunningServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.add()
    code, _ = run(preview(repo, "--to", "tester@ug.kth.se"), relay(smtp_server))
    assert code == 0 and smtp_server.handler.recipients() == ["tester@ug.kth.se"]
    monkeypatch.delenv("MAILINGS_SMTP_HOST", raising=False)
    assert main(preview(repo, "--to", "not an address", "--allow-external")) == 2
    assert "mailings: error: --to not an address: not a valid address: " in capsys.readouterr().err
    # A line break in the address is shown as one, not made a line of the error that reads like a header.
    assert main(preview(repo, "--to", "a@kth.se\r\nBcc: x@example.com")) == 2
    said = capsys.readouterr().err
    assert said.startswith("mailings: error: --to a@kth.se\\r\\nBcc: x@example.com: not a valid address: ")
    assert said.count("\n") == 1
    assert main(preview(repo, "--allow-external")) == 2
    assert capsys.readouterr().err == "mailings: error: --allow-external: only with --to ADDRESS\n"
    assert not (repo.root / "outbox").exists()

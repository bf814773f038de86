"""`mailings bounces`: real bounce samples (tests/data/bounces) delivered into a Maildir and into a real IMAP server
(dovecot), classified, recorded once per mailing in git as keyed hashes, moved; delivered counts; the [bounced]
warning of the check."""

from __future__ import annotations

import imaplib
import io
import json
import mailbox
import os
import ssl
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

from checks.cli import build_parser
from checks.errors import UsageError
from sender import bouncebox
from sender.bounces import delivery_counts
from sender.journal import make_hasher
from sender.verp import mailing_tag, parse, recipient_token, return_path
from tests.conftest import PROJECT, Repo, addresses, git
from tests.localhttp import Answer, JSONServer, Reply
from tests.sender.imapserver import USER, Dovecot, ensure_dovecot

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "bounces"
KEY = "bounce-test-log-key-5f1d2c-0123456789abcdef"  # as long as `mailings send` asks
OTHER_KEY = "another-log-key-after-rotation-0123456789abcdef"
NOW = "2027-02-10T09:05:00+01:00"
LATER = "2027-02-12T10:00:00+01:00"
BULK = "2027-02-10-travel"
PERSONAL = "2027-02-10-personal"

# Each sample and the recipients it reports, as flufl.bounce reads it.
HARD = {
    "dsn_02.txt": ["zzzzz@example.uk"],
    "dsn_03.txt": ["userx@example.be"],
    "dsn_12.txt": ["userx@example.jp"],
    "postfix_01.txt": ["xxxxx@local.ie"],
    "postfix_02.txt": ["yyyyy@digicool.com"],
    "exim_01.txt": ["userx@its.example.nl"],
    "qmail_01.txt": ["userx@example.de"],
    "qmail_04.txt": ["userx@example.au"],
    "microsoft_01.txt": ["userx@example.com"],  # reported as userx@example.COM
    "groupwise_01.txt": ["userx@example.edu"],  # reported as userx@example.EDU
    "yahoo_02.txt": ["userx@example.es"],
    "aol_01.txt": ["screenname@aol.com"],
    "sendmail_01.txt": ["zzzzz@nfg.nl", "zzzzz@shaft.coal.nl"],
    "gmail_01.txt": ["no.such.person@gmail.com"],
}
SOFT = {
    "dsn_05.txt": ["userx@example.cz"],
    "dsn_07.txt": ["userx@example.nz"],
    "simple_03.txt": ["userx@example.za"],
}
NOT_UNDERSTOOD = ["dumbass_01.txt", "autoreply_01.txt"]
HARD_ADDRESSES = sorted(a for found in HARD.values() for a in found)
SOFT_ADDRESSES = sorted(a for found in SOFT.values() for a in found)
SAMPLE_ADDRESSES = HARD_ADDRESSES + SOFT_ADDRESSES
FILLERS = 500


def run(argv: list[str], env: Mapping[str, str] | None = None) -> tuple[int, str]:
    args = build_parser().parse_args(argv)
    out = io.StringIO()
    code = args.func(args, dict(env or {}), out)
    return code, out.getvalue()


@dataclass
class Sent:
    """A checkout (with a bare origin) where BULK (bulk mode, the sample addresses among its recipients) and
    PERSONAL (individual mode) were sent into an outbox with KEY, their send logs committed and pushed."""

    root: Path
    origin: Path
    outbox: Path
    tmp: Path
    repo: Repo

    def bounce(self, name: str, to: str) -> bytes:
        """The sample *name* as the bounce mailbox's server delivers it: the mbox From line gone, Delivered-To
        naming the return path it came back to."""
        data = (SAMPLES / name).read_bytes().replace(b"MAILING", BULK.encode())
        if data.startswith(b"From "):
            data = data.split(b"\n", 1)[1]
        return b"Delivered-To: " + to.encode() + b"\n" + data

    def envelopes(self, mailing_id: str) -> dict[str, str]:
        """Each recipient of *mailing_id*'s messages in the outbox, to the return path its message went with."""
        found: dict[str, str] = {}
        for message in mailbox.Maildir(self.outbox, create=False):
            if message["X-Mailing-Id"] == mailing_id:
                for to in message.get_all("X-Envelope-To", []):
                    found[to.strip("<>")] = message["X-Envelope-From"].strip("<>")
        return found

    def bulk_bounces(self) -> dict[str, bytes]:
        """Each sample, come back to the return path of the transaction that carried its (first) address."""
        envelopes = self.envelopes(BULK)
        tos = {name: envelopes[found[0]] for name, found in {**HARD, **SOFT}.items()}
        tos.update({name: envelopes["user0@kth.se"] for name in NOT_UNDERSTOOD})
        return {name: self.bounce(name, tos[name]) for name in [*HARD, *SOFT, *NOT_UNDERSTOOD]}

    def maildir(self, messages: Mapping[str, bytes], name: str = "bouncebox") -> Path:
        path = self.tmp / name
        box = mailbox.Maildir(path, create=True)
        for data in messages.values():
            box.add(data)
        box.close()
        return path

    def bounces(self, *more: str, env: Mapping[str, str] | None = None) -> tuple[int, str]:
        return run(
            ["bounces", "--root", str(self.root), "--now", LATER, *more], {"MAILINGS_LOG_KEY": KEY, **(env or {})}
        )

    def log(self, mailing_id: str = BULK) -> list[dict[str, object]]:
        path = self.root / "bounces" / f"{mailing_id}.jsonl"
        return [json.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


@pytest.fixture
def sent(tmp_path: Path, plain_git: None) -> Sent:
    root = tmp_path / "work"
    root.mkdir()
    repo = Repo(root)
    repo.add(BULK, recipients="".join(f"{a}\n" for a in SAMPLE_ADDRESSES) + addresses(FILLERS))
    repo.add(PERSONAL, changes={"delivery": {"mode": "individual"}}, recipients=addresses(FILLERS, prefix="person"))
    git(root, "init", "--quiet", "--initial-branch=main")
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "-m", "requests")
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(root), str(origin))
    git(root, "remote", "add", "origin", str(origin))
    git(root, "fetch", "--quiet", "origin")
    git(root, "branch", "--quiet", "--set-upstream-to=origin/main")
    outbox = tmp_path / "outbox"
    code, out = run(
        ["send", "--root", str(root), "--now", NOW, "--outbox", str(outbox), "--commit"], {"MAILINGS_LOG_KEY": KEY}
    )
    assert code == 0, out
    git(root, "push", "--quiet", "origin", "main")
    return Sent(root, origin, outbox, tmp_path, repo)


def hashed(values: list[str]) -> set[str]:
    hasher = make_hasher(KEY)
    return {hasher(a) for a in values}


def recorded(sent: Sent, kind: str, mailing_id: str = BULK) -> set[str]:
    return {str(e["rcpt"]) for e in sent.log(mailing_id) if e["kind"] == kind}


def left_in(path: Path, folder: str | None = None) -> list[bytes]:
    box = mailbox.Maildir(path, create=False)
    if folder is not None:
        box = box.get_folder(folder)
    return [box.get_bytes(key) for key in box.iterkeys()]


# --- the return path ---------------------------------------------------------------------------------------------


def test_a_return_path_names_its_mailing_and_token_and_parses_back() -> None:
    hasher = make_hasher(KEY)
    token = recipient_token(hasher, BULK, hasher("anna.andersson@kth.se"))
    address = return_path("bounces@kth.se", BULK, token)
    assert address == f"bounces+{BULK}.{token}@kth.se" and "anna" not in address
    assert parse(address.upper(), "bounces@kth.se") == parse(address, "bounces@kth.se")
    verp = parse(address, "bounces@kth.se")
    assert verp is not None and (verp.tag, verp.token) == (BULK, token)
    assert parse(f"bounces+{BULK}@kth.se", "bounces@kth.se").token is None  # type: ignore[union-attr]
    assert parse(f"bounces+{BULK}@other.se", "bounces@kth.se") is None
    assert parse("noreply@kth.se", "bounces@kth.se") is None
    # Another key makes another token: nobody without the key can tell whose it is.
    assert recipient_token(make_hasher("other"), BULK, hasher("anna.andersson@kth.se")) != token
    # A long id is shortened with a digest, so the local part stays within SMTP's 64 octets.
    long_id = "2027-02-10-" + "a-very-long-name-for-a-mailing-" * 3
    long = return_path("bounces@kth.se", long_id, token)
    assert len(long.split("@")[0]) <= 64 and parse(long, "bounces@kth.se").tag == mailing_tag("bounces", long_id)  # type: ignore[union-attr]
    assert mailing_tag("bounces", long_id) != mailing_tag("bounces", long_id + "x")


# --- a Maildir ---------------------------------------------------------------------------------------------------


def test_bounces_from_a_maildir_are_classified_recorded_once_and_moved(sent: Sent) -> None:
    box = sent.maildir(sent.bulk_bounces())
    code, out = sent.bounces("--maildir", str(box), "--commit")
    assert code == 0, out
    assert recorded(sent, "hard") == hashed(HARD_ADDRESSES)
    assert recorded(sent, "soft") == hashed(SOFT_ADDRESSES)
    assert {e["via"] for e in sent.log()} == {"batch"}  # bulk: the report's addresses among the batch's
    # Each bounce message once: one digest per handled sample.
    assert len({e["bounce"] for e in sent.log()}) == len(HARD) + len(SOFT)
    assert f"{len(HARD) + len(SOFT) + len(NOT_UNDERSTOOD)} message(s)" in out
    assert f"{len(HARD_ADDRESSES)} hard and {len(SOFT_ADDRESSES)} soft" in out and "2 not understood" in out
    # What was handled is in .Handled, marked seen; what was not stays in the inbox for a person.
    handled = left_in(box, "Handled")
    assert len(handled) == len(HARD) + len(SOFT)
    assert sorted(left_in(box)) == sorted(sent.bulk_bounces()[n] for n in NOT_UNDERSTOOD)
    assert all("S" in m.get_flags() for m in mailbox.Maildir(box, create=False).get_folder("Handled"))
    # Committed by the bot, with the counts in the message.
    assert git(sent.root, "log", "-1", "--format=%an|%s") == f"mailings-bot|Bounces: {len(HARD_ADDRESSES)} hard, 3 soft"
    assert git(sent.root, "status", "--porcelain", "--", "bounces") == ""

    # Run again: nothing new.
    before = (sent.root / "bounces" / f"{BULK}.jsonl").read_bytes()
    code, out = sent.bounces("--maildir", str(box), "--commit")
    assert code == 0 and "0 hard and 0 soft" in out and "2 not understood" in out
    assert (sent.root / "bounces" / f"{BULK}.jsonl").read_bytes() == before
    # The same bounces back in the inbox (a run that stopped before it moved them): recorded already, moved.
    again = sent.maildir(sent.bulk_bounces(), "bouncebox-again")
    code, out = sent.bounces("--maildir", str(again))
    assert code == 0 and f"{len(HARD) + len(SOFT)} already recorded" in out
    assert (sent.root / "bounces" / f"{BULK}.jsonl").read_bytes() == before
    assert len(left_in(again)) == len(NOT_UNDERSTOOD)


def test_a_bounce_without_a_true_token_or_of_another_batch_is_left(sent: Sent) -> None:
    envelopes = sent.envelopes(BULK)
    by_return_path = {
        "elsewhere": sent.bounce("postfix_01.txt", "postmaster@kth.se"),  # not the return path, no X-Mailing-Id
        # Forgeries: the mailing's tag without a token (the returned headers name the mailing), and a made-up token.
        "untokened": sent.bounce("gmail_01.txt", f"bounces+{BULK}@kth.se"),
        "made up": sent.bounce("exim_01.txt", f"bounces+{BULK}.0123456789abcdef@kth.se"),
        # A true token of a batch that did not carry the address the report names.
        "other batch": sent.bounce("exim_01.txt", envelopes["user499@kth.se"]),
    }
    assert envelopes["user499@kth.se"] != envelopes["userx@its.example.nl"]
    box = sent.maildir(by_return_path)
    code, out = sent.bounces("--maildir", str(box))
    assert code == 0 and sent.log() == [] and sent.log(PERSONAL) == []
    assert "left: 1 names no mailing" in out
    assert "left: 1 carries no return path token of the mailing, so it cannot be trusted" in out
    assert "left: 1 its return path token matches no recipient or batch" in out
    assert "left: 1 the addresses it reports are not recipients of its batch" in out
    assert len(left_in(box)) == 4


def test_garbled_and_truncated_bounces_are_left_never_a_crash(sent: Sent) -> None:
    whole = sent.bulk_bounces()
    broken = {f"{name} cut": data[: len(data) // 3] for name, data in whole.items()}
    # No From at all: one of flufl.bounce's detectors raises on it (and logs a traceback)
    broken["no from"] = b"Delivered-To: " + sent.envelopes(BULK)["user1@kth.se"].encode() + b"\nSubject: x\n\nx\n"
    broken["binary"] = bytes(range(256)) * 40
    broken["too large"] = b"Subject: big\n\n" + b"x" * (10 * 1024 * 1024 + 1)
    box = sent.maildir(broken)
    # The program as it runs in the workflow: its own process, its own stderr.
    done = subprocess.run(
        [sys.executable, "-m", "checks", "bounces", "--root", str(sent.root), "--maildir", str(box), "--now", LATER],
        env={**os.environ, "MAILINGS_LOG_KEY": KEY, "PYTHONPATH": str(PROJECT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    left = len(left_in(box))
    assert f"{len(broken)} message(s)" in done.stdout and f"{left} not understood" in done.stdout and left >= 4
    assert "flufl.bounce could not read it (IndexError)" in done.stdout
    assert done.stderr == ""  # the detector's traceback is not printed: the verdict says what happened


def test_a_key_is_needed(sent: Sent) -> None:
    box = sent.maildir(sent.bulk_bounces())
    args = build_parser().parse_args(["bounces", "--root", str(sent.root), "--maildir", str(box)])
    with pytest.raises(UsageError, match="MAILINGS_LOG_KEY"):
        args.func(args, {}, io.StringIO())
    # Another key than the send logs': nothing matches, nothing is recorded or moved.
    code, out = sent.bounces("--maildir", str(box), env={"MAILINGS_LOG_KEY": OTHER_KEY})
    assert code == 0 and sent.log() == [] and "MAILINGS_LOG_KEY_PREVIOUS" in out
    assert len(left_in(box)) == len(sent.bulk_bounces())


def test_after_a_key_rotation_bounces_match_with_the_previous_key(sent: Sent) -> None:
    rotated = {"MAILINGS_LOG_KEY": OTHER_KEY, "MAILINGS_LOG_KEY_PREVIOUS": KEY}
    code, out = sent.bounces("--maildir", str(sent.maildir(sent.bulk_bounces())), "--commit", env=rotated)
    assert code == 0, out
    # Recorded as the send log's own hashes, with the id of the key that made them.
    assert recorded(sent, "hard") == hashed(HARD_ADDRESSES)
    assert {e["key_check"] for e in sent.log()} == {make_hasher(KEY).key_check}
    later = "2027-03-15-follow-up"
    sent.repo.add(later, changes={"send_at": "2027-03-15 09:00"}, recipients="userx@example.be\n" + addresses(600))
    argv = ["check", "--root", str(sent.root), "--submitted", "2027-02-12", str(sent.root / "mailings" / later)]
    assert "1 address in 'recipients.txt' bounced in February 2027" in run(argv, rotated)[1]
    assert "[bounced]" not in run(argv, {"MAILINGS_LOG_KEY": OTHER_KEY})[1]  # the old key no longer held


# --- individual mode: VERP tokens --------------------------------------------------------------------------------


def test_verp_tokens_round_trip_to_the_recipient(sent: Sent) -> None:
    """The return path of each message of PERSONAL, as the outbox recorded its envelope, names its recipient when
    the bounce comes back to it, whatever address the report gives (a forward, or none it can match)."""
    envelopes = sent.envelopes(PERSONAL)
    assert len(envelopes) == FILLERS and len(set(envelopes.values())) == FILLERS
    assert not any(recipient.split("@")[0] in path for recipient, path in envelopes.items())
    hard, soft = "person7@kth.se", "person42@kth.se"
    box = sent.maildir(
        {
            "h": sent.bounce("dsn_02.txt", envelopes[hard]),  # reports zzzzz@example.uk: the token decides
            "s": sent.bounce("dsn_05.txt", envelopes[soft]),
        }
    )
    code, out = sent.bounces("--maildir", str(box), "--commit")
    assert code == 0, out
    assert recorded(sent, "hard", PERSONAL) == hashed([hard])
    assert recorded(sent, "soft", PERSONAL) == hashed([soft])
    assert {e["via"] for e in sent.log(PERSONAL)} == {"verp"}
    assert delivery_counts(sent.root, PERSONAL) == {
        "accepted": FILLERS,
        "hard_bounces": 1,
        "soft_bounces": 1,
        "delivered": FILLERS - 1,
    }


# --- what was delivered, and nothing in clear --------------------------------------------------------------------


def test_delivered_is_accepted_less_hard_bounces_in_status(sent: Sent) -> None:
    sent.bounces("--maildir", str(sent.maildir(sent.bulk_bounces())), "--commit")
    accepted = len(SAMPLE_ADDRESSES) + FILLERS
    expected = {
        "accepted": accepted,
        "hard_bounces": len(HARD_ADDRESSES),
        "soft_bounces": len(SOFT_ADDRESSES),
        "delivered": accepted - len(HARD_ADDRESSES),
    }
    assert delivery_counts(sent.root, BULK) == expected
    code, raw = run(["status", "--root", str(sent.root), "--now", LATER, "--format", "json"])
    assert code == 0
    row = next(r for r in json.loads(raw)["mailings"] if r["id"] == BULK)
    assert {k: row[k] for k in expected} == expected
    code, text = run(["status", "--root", str(sent.root), "--now", LATER])
    assert code == 0
    header = text.splitlines()[0].split()
    line = next(line.split() for line in text.splitlines() if line.startswith(BULK))
    assert line[header.index("DELIVERED")] == str(accepted - len(HARD_ADDRESSES))
    assert f"bounces: {len(HARD_ADDRESSES)} hard (delivered = {accepted} accepted - {len(HARD_ADDRESSES)})" in text


def test_no_address_is_stored_in_clear(sent: Sent) -> None:
    sent.bounces("--maildir", str(sent.maildir(sent.bulk_bounces())), "--commit")
    # Every file git holds, in every commit, and the work tree's logs, but the request's own list files.
    history = git(sent.root, "log", "-p", "--all", "--format=", "--", "bounces", "mailings/*/sendlog.jsonl")
    files = [p for p in (sent.root / "bounces").iterdir()] + list(sent.root.glob("mailings/*/sendlog.jsonl"))
    texts = [history.lower()] + [p.read_text().lower() for p in files]
    assert any("bounce" in t for t in texts) and len(history) > 1000
    for address in [*SAMPLE_ADDRESSES, "person7@kth.se"]:
        local = address.split("@")[0]
        assert not any(address in t for t in texts), address
        assert not any(f'"{local}' in t for t in texts), local


# --- lists learn -------------------------------------------------------------------------------------------------


def test_the_check_warns_of_hard_bounced_addresses_only_with_the_key(sent: Sent) -> None:
    sent.bounces("--maildir", str(sent.maildir(sent.bulk_bounces())), "--commit")
    later = "2027-03-15-follow-up"
    listed = ["userx@example.be", "USERX@example.de", "zzzzz@nfg.nl", "userx@example.cz", "new.person@kth.se"]
    sent.repo.add(
        later, changes={"send_at": "2027-03-15 09:00"}, recipients="".join(f"{a}\n" for a in listed) + addresses(600)
    )
    argv = ["check", "--root", str(sent.root), "--submitted", "2027-02-12", str(sent.root / "mailings" / later)]
    code, out = run(argv, {"MAILINGS_LOG_KEY": KEY})
    warnings = [line for line in out.splitlines() if "[bounced]" in line]
    assert warnings == [
        f"mailings/{later}/recipients.txt:1:1: warning [bounced] 3 addresses in 'recipients.txt' bounced in "
        "February 2027 (the mail came back for good: lines 1, 2, 3): remove them"
    ]  # not the soft bounce on line 4, not the new address on line 5
    # Without the key the check cannot match a keyed hash, and says nothing.
    code, out = run(argv, {})
    assert code == 0 and "[bounced]" not in out
    # The mailing that bounced is history: it is not warned about its own recipients.
    code, out = run(["check", "--root", str(sent.root), str(sent.root / "mailings" / BULK)], {"MAILINGS_LOG_KEY": KEY})
    assert code == 0 and "[bounced]" not in out


# --- a real IMAP server ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    binary = ensure_dovecot()
    if isinstance(binary, str):
        pytest.skip(binary)
    server = Dovecot.start(binary, tmp_path_factory.mktemp("dovecot"))
    try:
        yield server
    finally:
        server.stop()


def imap(server: Dovecot) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", server.port, ssl_context=ssl.create_default_context(cafile=str(server.tls.ca))
    )
    client.login(USER, server.env()["MAILINGS_BOUNCES_IMAP_PASSWORD"])
    return client


def folder_count(client: imaplib.IMAP4_SSL, folder: str) -> int:
    typ, data = client.select(folder)
    assert typ == "OK", data
    typ, data = client.uid("SEARCH", "UNDELETED")
    return len((data[0] or b"").split())


def test_bounces_from_imap_over_tls(sent: Sent, dovecot: Dovecot) -> None:
    client = imap(dovecot)
    try:
        for data in sent.bulk_bounces().values():
            assert client.append("INBOX", None, None, data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))[0] == "OK"
    finally:
        client.logout()
    code, out = sent.bounces("--push", env=dovecot.env())
    assert code == 0, out
    assert out.startswith(f"recorded the bounce logs on main\nIMAP {USER}@127.0.0.1:{dovecot.port}/INBOX:")
    assert recorded(sent, "hard") == hashed(HARD_ADDRESSES) and recorded(sent, "soft") == hashed(SOFT_ADDRESSES)
    # On the origin's main, by the bot.
    shown = subprocess.run(
        ["git", "show", f"main:bounces/{BULK}.jsonl"], cwd=sent.origin, capture_output=True, check=True
    ).stdout
    assert shown == (sent.root / "bounces" / f"{BULK}.jsonl").read_bytes()
    assert git(sent.origin, "log", "-1", "--format=%an", "main") == "mailings-bot"
    client = imap(dovecot)
    try:
        assert folder_count(client, "INBOX") == len(NOT_UNDERSTOOD)
        assert folder_count(client, "Handled") == len(HARD) + len(SOFT)
    finally:
        client.logout()
    # Twice: nothing new on main, nothing moved.
    head = git(sent.origin, "rev-parse", "main")
    code, out = sent.bounces("--push", env=dovecot.env())
    assert code == 0 and "0 hard and 0 soft" in out and git(sent.origin, "rev-parse", "main") == head
    # A certificate from another CA is refused: nothing is read.
    code, out = sent.bounces("--push", env=dovecot.env(MAILINGS_BOUNCES_IMAP_CA_FILE=str(dovecot.tls.other_ca)))
    assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in out
    # A wrong password: said, and never echoed.
    code, out = sent.bounces(env=dovecot.env(MAILINGS_BOUNCES_IMAP_PASSWORD="wrong-pw-123"))
    assert code == 1 and "wrong-pw-123" not in out and "AUTHENTICATIONFAILED" in out.upper()


def test_a_server_without_move_gets_copy_delete_and_expunge(
    sent: Sent, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = ensure_dovecot()
    if isinstance(binary, str):
        pytest.skip(binary)
    monkeypatch.setattr(bouncebox, "UIDS_PER_COMMAND", 1)  # the two handled messages are moved in two commands
    server = Dovecot.start(binary, tmp_path_factory.mktemp("dovecot-nomove"), capability="IMAP4rev1 UIDPLUS")
    try:
        bounces = sent.bulk_bounces()
        client = imap(server)
        try:
            assert "MOVE" not in client.capability()[1][0].decode().split()
            for name in ("dsn_02.txt", "autoreply_01.txt", "qmail_01.txt"):
                assert client.append("INBOX", None, None, bounces[name].replace(b"\n", b"\r\n"))[0] == "OK"
        finally:
            client.logout()
        code, out = sent.bounces(env=server.env())
        assert code == 0, out
        assert recorded(sent, "hard") == hashed([*HARD["dsn_02.txt"], *HARD["qmail_01.txt"]])
        client = imap(server)
        try:
            assert folder_count(client, "INBOX") == 1 and folder_count(client, "Handled") == 2
            client.select("INBOX")
            assert client.uid("SEARCH", "ALL")[1][0].split() == client.uid("SEARCH", "UNDELETED")[1][0].split()
        finally:
            client.logout()
    finally:
        server.stop()


GOOD_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.bounces-mailbox-token"


def introspection(asked: list[str]) -> Answer:
    """An OAuth2 token introspection endpoint (RFC 7662), as Dovecot's oauth2 passdb asks one: GOOD_TOKEN is the
    bounce mailbox's, any other is not active. Each token asked about is appended to *asked*."""

    def answer(method: str, path: str, headers: Message, body: bytes) -> Reply:
        token = urllib.parse.parse_qs(body.decode()).get("token", [""])[0]
        asked.append(token)
        return 200, {"active": True, "username": USER} if token == GOOD_TOKEN else {"active": False}, {}

    return answer


def test_xoauth2_login_with_a_bearer_token(sent: Sent, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Exchange Online and Google refuse passwords over IMAP: MAILINGS_BOUNCES_IMAP_OAUTH_TOKEN logs in by XOAUTH2."""
    binary = ensure_dovecot()
    if isinstance(binary, str):
        pytest.skip(binary)
    asked: list[str] = []
    endpoint = JSONServer(introspection(asked))
    url = f"{endpoint.url}/introspect"
    server = Dovecot.start(binary, tmp_path_factory.mktemp("dovecot-oauth"), oauth_url=url)
    try:
        env = {**server.env(), "MAILINGS_BOUNCES_IMAP_PASSWORD": "", "MAILINGS_BOUNCES_IMAP_OAUTH_TOKEN": GOOD_TOKEN}
        client = imaplib.IMAP4_SSL(
            "127.0.0.1", server.port, ssl_context=ssl.create_default_context(cafile=str(server.tls.ca))
        )
        try:
            client.authenticate("XOAUTH2", lambda _: f"user={USER}\x01auth=Bearer {GOOD_TOKEN}\x01\x01".encode())
            assert (
                client.append("INBOX", None, None, sent.bulk_bounces()["dsn_02.txt"].replace(b"\n", b"\r\n"))[0] == "OK"
            )
        finally:
            client.logout()
        code, out = sent.bounces(env=env)
        assert code == 0, out
        assert recorded(sent, "hard") == hashed(HARD["dsn_02.txt"])
        # A token the server does not take: refused, said, never echoed.
        code, out = sent.bounces(env={**env, "MAILINGS_BOUNCES_IMAP_OAUTH_TOKEN": "expired-token-4711"})
        assert code == 1 and "AUTHENTICATIONFAILED" in out.upper() and "expired-token-4711" not in out
        assert asked[-1] == "expired-token-4711"
    finally:
        server.stop()
        endpoint.stop()

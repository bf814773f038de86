"""The mailbox the return path delivers to, read by `mailings bounces`: a Maildir, or an IMAP mailbox over TLS.

A box hands out its messages (a key and the bytes) and moves those that were handled into the folder `Handled`
(a Maildir++ subfolder `.Handled`, an IMAP folder), after they were recorded. What is not handled stays where it
is, for a person. It owns the mailbox and nothing else: it never classifies nor records.
"""

from __future__ import annotations

import contextlib
import imaplib
import mailbox
import ssl
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from checks.errors import UsageError

HANDLED = "Handled"
IMAP_PREFIX = "MAILINGS_BOUNCES_IMAP_"
IMAP_HOST = IMAP_PREFIX + "HOST"
IMAP_PORT = IMAP_PREFIX + "PORT"
IMAP_USERNAME = IMAP_PREFIX + "USERNAME"
IMAP_PASSWORD = IMAP_PREFIX + "PASSWORD"
IMAP_FOLDER = IMAP_PREFIX + "FOLDER"
IMAP_CA_FILE = IMAP_PREFIX + "CA_FILE"
IMAP_OAUTH_TOKEN = IMAP_PREFIX + "OAUTH_TOKEN"
IMAP_TIMEOUT_SECONDS = 60.0
UIDS_PER_COMMAND = 500  # a command line of a few kilobytes, which every server takes


class BoxError(Exception):
    """The mailbox could not be read or changed; the message says why."""


class Box(Protocol):
    def messages(self) -> Iterator[tuple[str, bytes]]: ...

    def handled(self, keys: Sequence[str]) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


class MaildirBox:
    """A Maildir (new/ and cur/ are read); handled messages go to its subfolder .Handled, marked seen."""

    def __init__(self, path: Path) -> None:
        if not (path / "new").is_dir() or not (path / "cur").is_dir():
            raise UsageError(f"--maildir {path}: not a Maildir (it needs new/ and cur/ folders)")
        self.path = path
        self._box = mailbox.Maildir(path, factory=None, create=False)

    def describe(self) -> str:
        return f"the Maildir {self.path}"

    def messages(self) -> Iterator[tuple[str, bytes]]:
        for key in sorted(self._box.keys()):
            try:
                yield key, self._box.get_bytes(key)
            except (KeyError, OSError):
                continue  # taken away meanwhile (another reader): not ours to handle

    def handled(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        try:
            folder = self._box.get_folder(HANDLED) if HANDLED in self._box.list_folders() else None
            if folder is None:
                folder = self._box.add_folder(HANDLED)
            for key in keys:
                message = self._box.get_message(key)
                message.set_subdir("cur")
                message.add_flag("S")
                folder.add(message)  # written whole into the folder before the original is removed
                self._box.remove(key)
        except OSError as exc:
            raise BoxError(f"cannot move handled messages in {self.path}: {exc}") from None

    def close(self) -> None:
        self._box.close()


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    folder: str = "INBOX"
    ca_file: str | None = None
    oauth_token: str | None = field(default=None, repr=False)  # XOAUTH2 instead of the password


def imap_settings(env: Mapping[str, str]) -> ImapSettings:
    """MAILINGS_BOUNCES_IMAP_*: UsageError naming what is missing."""
    host = env.get(IMAP_HOST, "").strip()
    if not host:
        raise UsageError(f"give --maildir DIR, or set {IMAP_HOST} (and {IMAP_USERNAME}, {IMAP_PASSWORD}) for IMAP")
    username, password = env.get(IMAP_USERNAME, ""), env.get(IMAP_PASSWORD, "")
    token = env.get(IMAP_OAUTH_TOKEN, "").strip() or None
    if not username or not (password or token):
        raise UsageError(f"{IMAP_HOST} is set: set {IMAP_USERNAME} and {IMAP_PASSWORD} (or {IMAP_OAUTH_TOKEN}) too")
    port_text = env.get(IMAP_PORT, "").strip() or "993"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"{IMAP_PORT}={port_text!r}: give a port number, e.g. 993")
    ca_file = env.get(IMAP_CA_FILE, "").strip() or None
    if ca_file is not None and not Path(ca_file).is_file():
        raise UsageError(f"{IMAP_CA_FILE}={ca_file}: no such file")
    folder = env.get(IMAP_FOLDER, "").strip() or "INBOX"
    return ImapSettings(host, int(port_text), username, password, folder, ca_file, token)


class ImapBox:
    """An IMAP mailbox over TLS (implicit TLS, port 993; the certificate and host name always verified). Messages
    are read without marking them seen; handled ones are moved (MOVE, or COPY, \\Deleted and EXPUNGE) to the
    folder Handled, created when missing."""

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        # cafile alone replaces the system's trust: an internal CA file names exactly whom to trust.
        context = ssl.create_default_context(cafile=settings.ca_file)
        try:
            self._imap = imaplib.IMAP4_SSL(
                settings.host, settings.port, ssl_context=context, timeout=IMAP_TIMEOUT_SECONDS
            )
        except (OSError, imaplib.IMAP4.error) as exc:
            raise BoxError(f"cannot connect to {self.describe()}: {_said(exc)}") from None
        try:
            if settings.oauth_token:
                # XOAUTH2 (Exchange Online and Google refuse passwords over IMAP): the user and a bearer token.
                response = f"user={settings.username}\x01auth=Bearer {settings.oauth_token}\x01\x01".encode()
                self._imap.authenticate("XOAUTH2", lambda _challenge: response)
            else:
                self._imap.login(settings.username, settings.password)
            self._ok(self._imap.select(_quoted(settings.folder)), f"select {settings.folder}")
        except (OSError, imaplib.IMAP4.error) as exc:
            self.close()
            said = _said(_said(exc, settings.password), settings.oauth_token)
            raise BoxError(f"{self.describe()}: {said}") from None

    def describe(self) -> str:
        return f"IMAP {self.settings.username}@{self.settings.host}:{self.settings.port}/{self.settings.folder}"

    def messages(self) -> Iterator[tuple[str, bytes]]:
        try:
            typ, data = self._imap.uid("SEARCH", "UNDELETED")
            self._ok((typ, data), "search")
            uids = [uid.decode("ascii") for uid in (data[0] or b"").split()]
        except (OSError, imaplib.IMAP4.error) as exc:
            raise BoxError(f"{self.describe()}: {_said(exc)}") from None
        for uid in uids:
            try:
                typ, data = self._imap.uid("FETCH", uid, "(BODY.PEEK[])")
            except (OSError, imaplib.IMAP4.error) as exc:
                raise BoxError(f"{self.describe()}: fetch: {_said(exc)}") from None
            body = next((part[1] for part in data if isinstance(part, tuple) and len(part) > 1), None)
            if typ == "OK" and isinstance(body, bytes):
                yield uid, body

    def handled(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        try:
            self._imap.create(HANDLED)  # NO when it exists already: that is fine
            typ, data = self._imap.capability()  # as the server says after login (MOVE, UIDPLUS)
            said = b" ".join(d for d in data if isinstance(d, bytes)).decode("ascii", "replace") if typ == "OK" else ""
            capabilities = {c.upper() for c in said.split()} | {c.upper() for c in self._imap.capabilities}
            for start in range(0, len(keys), UIDS_PER_COMMAND):
                self._move(",".join(keys[start : start + UIDS_PER_COMMAND]), capabilities)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise BoxError(f"{self.describe()}: cannot move handled messages: {_said(exc)}") from None

    def _move(self, uids: str, capabilities: set[str]) -> None:
        if "MOVE" in capabilities:
            self._ok(self._imap.uid("MOVE", uids, HANDLED), "move")
            return
        self._ok(self._imap.uid("COPY", uids, HANDLED), "copy")
        self._ok(self._imap.uid("STORE", uids, "+FLAGS.SILENT", "(\\Deleted)"), "store")
        if "UIDPLUS" in capabilities:
            self._ok(self._imap.uid("EXPUNGE", uids), "expunge")
        else:
            self._ok(self._imap.expunge(), "expunge")

    def close(self) -> None:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            self._imap.logout()

    def _ok(self, reply: tuple[str, list[object]], what: str) -> None:
        typ, data = reply
        if typ != "OK":
            said = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
            raise imaplib.IMAP4.error(f"{what}: {typ} {said}")


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(exc: BaseException | str, secret: str | None = None) -> str:
    text = exc if isinstance(exc, str) else str(exc) or type(exc).__name__
    return text.replace(secret, "***") if secret else text

"""The user directory over LDAP (ldap3): one search that yields a special list's addresses.

Owns: the connection (LDAPS, or StartTLS on ldap://; the certificate always verified, with the host name, by the
standard library's TLS), the bind, and a search in pages (RFC 2696) so that no size limit truncates a list
silently: a directory that stops the search at its limit is an error, never a short list. Never reads the
environment (the settings come in as values), never writes to the directory, never judges the addresses.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from checks.policy import LdapSource

URL = "MAILINGS_LDAP_URL"
BIND_DN = "MAILINGS_LDAP_BIND_DN"
PASSWORD = "MAILINGS_LDAP_PASSWORD"
CA_FILE = "MAILINGS_LDAP_CA_FILE"

PAGE_SIZE = 1000  # Active Directory's MaxPageSize by default; OpenLDAP takes any
CONNECT_SECONDS = 10
REPLY_SECONDS = 60  # whole seconds: ldap3 packs it into a socket option
PAGED_RESULTS = "1.2.840.113556.1.4.319"
SIZE_LIMIT_EXCEEDED = 4
_SCOPES = {"base": "BASE", "one": "LEVEL", "sub": "SUBTREE"}


class DirectoryError(Exception):
    """Why the directory could not give the list, in words; never holds the password."""


@dataclass(frozen=True)
class LdapSettings:
    """Where the directory is and who binds. An ldap:// URL always upgrades with StartTLS: a password and the
    addresses never cross the network in clear."""

    url: str
    host: str
    port: int
    tls: bool  # ldaps://: TLS from the first byte; else StartTLS
    bind_dn: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None

    def describe(self) -> str:
        who = f" as {self.bind_dn}" if self.bind_dn else " (anonymous)"
        return f"{self.url}{who}"


def settings_from_env(env: Mapping[str, str]) -> LdapSettings:
    """MAILINGS_LDAP_* as settings; DirectoryError when they are missing or do not fit together."""
    url = env.get(URL, "").strip()
    if not url:
        raise DirectoryError(f"{URL} is not set: set it to the directory, e.g. ldaps://ldap.example.org")
    parts = urlsplit(url)
    if parts.scheme not in ("ldaps", "ldap") or not parts.hostname or parts.path not in ("", "/"):
        raise DirectoryError(f"{URL} {url!r}: expected ldaps://HOST[:PORT] or ldap://HOST[:PORT] (with StartTLS)")
    try:
        port = parts.port or (636 if parts.scheme == "ldaps" else 389)
    except ValueError:
        raise DirectoryError(f"{URL} {url!r}: the port is not a number from 1 to 65535") from None
    bind_dn = env.get(BIND_DN, "").strip() or None
    password = env.get(PASSWORD) or None
    if bool(bind_dn) != bool(password):
        raise DirectoryError(f"set both {BIND_DN} and {PASSWORD}, or neither to search anonymously")
    return LdapSettings(
        url=url,
        host=parts.hostname,
        port=port,
        tls=parts.scheme == "ldaps",
        bind_dn=bind_dn,
        password=password,
        ca_file=env.get(CA_FILE, "").strip() or None,
    )


@dataclass(frozen=True)
class Found:
    """What one search returned: the first value of the attribute per entry, in the directory's order."""

    values: list[str]
    entries: int
    without: int  # entries without the attribute
    several: int  # entries with more than one value (the first counts)
    newest_change: datetime | None  # the latest modifyTimestamp among the entries, when asked for


def search(settings: LdapSettings, source: LdapSource, *, stamps: bool = False) -> Found:
    """Every entry that *source* selects; DirectoryError for anything short of the whole list. *stamps*: also each
    entry's modifyTimestamp, for the list's age (a quarter more time: the send does without)."""
    import ldap3
    from ldap3.core.exceptions import LDAPException

    where = settings.url
    try:
        context = ssl.create_default_context()
        if settings.ca_file:
            context.load_verify_locations(cafile=settings.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise DirectoryError(f"{CA_FILE} {settings.ca_file}: cannot be read as CA certificates ({exc})") from None
    server = ldap3.Server(
        settings.host,
        port=settings.port,
        use_ssl=settings.tls,
        tls=_verified_tls(context, settings.host),
        get_info=ldap3.NONE,  # the schema is not needed, and formatting values by it costs a third of the time
        connect_timeout=CONNECT_SECONDS,
    )
    connection = ldap3.Connection(
        server,
        user=settings.bind_dn,
        password=settings.password,
        read_only=True,
        raise_exceptions=False,
        receive_timeout=REPLY_SECONDS,
        auto_referrals=False,
    )
    try:
        try:
            connection.open()
            if not settings.tls:
                connection.start_tls()
        except LDAPException as exc:
            raise DirectoryError(_connect_failure(where, exc)) from None
        try:
            bound = connection.bind()
        except LDAPException as exc:
            raise DirectoryError(f"the bind to {settings.describe()} failed: {_plain(exc)}") from None
        if not bound:
            raise DirectoryError(f"the directory refused the bind as {settings.bind_dn}: {_result(connection)}")
        try:
            return _paged(connection, source, stamps)
        except LDAPException as exc:
            raise DirectoryError(f"the search at {where} failed: {_plain(exc)}") from None
    finally:
        # The list is what counts; a connection that does not close cleanly is the server's to drop.
        with contextlib.suppress(LDAPException):
            connection.unbind()


def _paged(connection: Any, source: LdapSource, stamps: bool) -> Found:
    import ldap3

    attribute = source.attribute
    values: list[str] = []
    entries = without = several = 0
    newest = ""
    cookie: bytes | None = None
    scope = getattr(ldap3, _SCOPES[source.scope])
    while True:
        connection.search(
            source.base,
            source.filter,
            search_scope=scope,
            attributes=[attribute, "modifyTimestamp"] if stamps else [attribute],
            paged_size=PAGE_SIZE,
            paged_cookie=cookie,
        )
        result = connection.result
        if result["result"] == SIZE_LIMIT_EXCEEDED:
            raise DirectoryError(
                f"the directory stopped the search at its size limit after {entries + len(connection.response or [])} "
                f"entries, so the list would be cut short; ask its administrators to let {connection.user or 'the'} "
                "bind page through all of it (OpenLDAP: limits dn.exact=... size.prtotal=unlimited)"
            )
        if result["result"] != 0:
            raise DirectoryError(f"the search for {source.filter} under {source.base} failed: {_result(connection)}")
        for item in connection.response or ():
            if item.get("type") != "searchResEntry":
                continue  # a referral to another server: not followed
            entries += 1
            found = item["attributes"].get(attribute) or []
            if isinstance(found, str | bytes):
                found = [found]
            if not found:
                without += 1
                continue
            several += len(found) > 1
            first = found[0]
            values.append(first if isinstance(first, str) else first.decode("utf-8", "replace"))
            stamp = item["attributes"].get("modifyTimestamp") if stamps else None
            stamp = stamp[0] if isinstance(stamp, list) and stamp else stamp
            if isinstance(stamp, str) and stamp > newest:
                newest = stamp
        control = (result.get("controls") or {}).get(PAGED_RESULTS) or {}
        cookie = (control.get("value") or {}).get("cookie") or None
        if not cookie:
            break
    return Found(values, entries, without, several, _generalized_time(newest))


def _generalized_time(text: str) -> datetime | None:
    """An LDAP GeneralizedTime (20270110143000Z, fractions allowed) as an aware time; None when it is not one."""
    try:
        return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _connect_failure(where: str, exc: Exception) -> str:
    text = _plain(exc)
    if "certificate" in text.lower():
        return (
            f"the certificate of the directory at {where} could not be verified ({text}); set {CA_FILE} to the "
            "CA certificate that issued it, and use the host name the certificate names"
        )
    if "startTLS" in text or "start_tls" in text:
        return f"the directory at {where} did not start TLS ({text}); nothing is sent to it in clear"
    return f"the directory at {where} cannot be reached ({text})"


def _plain(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _result(connection: Any) -> str:
    result = connection.result or {}
    message = (result.get("message") or "").strip()
    return f"{result.get('description', 'error')} ({result.get('result')}){': ' + message if message else ''}"


@cache
def _verified_tls_class() -> type:
    import ldap3

    class VerifiedTls(ldap3.Tls):  # type: ignore[misc]
        """ldap3's Tls with the standard library doing the whole verification: ldap3 turns Python's host name
        check off and matches names itself, with a copy that does not know IP addresses on newer Pythons."""

        def __init__(self, context: ssl.SSLContext, host: str) -> None:
            super().__init__(validate=ssl.CERT_REQUIRED)
            self._context = context
            self._host = host

        def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
            connection.socket = self._context.wrap_socket(
                connection.socket, server_hostname=self._host, do_handshake_on_connect=do_handshake
            )

    return VerifiedTls


def _verified_tls(context: ssl.SSLContext, host: str) -> Any:
    """A Tls for ldap3 that verifies the certificate and *host* with *context* (ldap3 is imported on first use)."""
    return _verified_tls_class()(context, host)

"""Delivery settings from the environment: an SMTP relay, or the Maildir outbox when none is configured.

The command line passes the environment in as a mapping; nothing here reads os.environ. The password never
appears in a repr, a str or an error message.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

from checks.errors import UsageError
from checks.policy import EnvSource, Policy
from checks.policy import special_list_variable as special_list_variable  # where callers found it before

Security = Literal["starttls", "tls", "none"]

SECURITIES: tuple[Security, ...] = ("starttls", "tls", "none")
DEFAULT_PORTS: Mapping[str, int] = {"starttls": 587, "tls": 465, "none": 25}
DEFAULT_TIMEOUT = 30.0

HOST = "MAILINGS_SMTP_HOST"
PORT = "MAILINGS_SMTP_PORT"
SECURITY = "MAILINGS_SMTP_SECURITY"
USERNAME = "MAILINGS_SMTP_USERNAME"
PASSWORD = "MAILINGS_SMTP_PASSWORD"
TIMEOUT = "MAILINGS_SMTP_TIMEOUT"
CA_FILE = "MAILINGS_SMTP_CA_FILE"
CA_ONLY = "MAILINGS_SMTP_CA_ONLY"
OAUTH_TOKEN = "MAILINGS_SMTP_OAUTH_TOKEN"
EHLO = "MAILINGS_SMTP_EHLO"
CLIENT_CERT = "MAILINGS_SMTP_CLIENT_CERT"
CLIENT_KEY = "MAILINGS_SMTP_CLIENT_KEY"

# A host name as EHLO takes it (RFC 5321 Domain: letter-digit-hyphen labels), or an address literal.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"(?i)^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")
_LITERAL = re.compile(r"^\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]$")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the relay. `ca_file` adds trusted certificates (an internal CA) to the system's, or with
    `ca_only` replaces them. `oauth_token` (XOAUTH2) takes the place of a password. `ehlo`: the name this host
    gives in EHLO; None: its fully qualified name (socket.getfqdn). `client_cert` (and `client_key`, unless the
    certificate file holds the key too): a certificate this host shows the relay in TLS."""

    host: str
    port: int
    security: Security = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    ca_file: Path | None = None
    ca_only: bool = False
    oauth_token: str | None = field(default=None, repr=False)
    ehlo: str | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    def __repr__(self) -> str:
        secret = "<set>" if self.password else None
        token = "<set>" if self.oauth_token else None
        return (
            f"SmtpSettings(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"username={self.username!r}, password={secret}, oauth_token={token}, timeout={self.timeout}, "
            f"ca_file={self.ca_file!r}, ca_only={self.ca_only}, ehlo={self.ehlo!r}, "
            f"client_cert={self.client_cert!r}, client_key={self.client_key!r})"
        )

    __str__ = __repr__

    def describe(self) -> str:
        """One line for logs and progress output, e.g. 'smtp.kth.se:587 (starttls, as mailer)'."""
        user = f", as {self.username}{' (XOAUTH2)' if self.oauth_token else ''}" if self.username else ""
        return f"{self.host}:{self.port} ({self.security}{user})"


@dataclass(frozen=True)
class MaildirSettings:
    path: Path

    def describe(self) -> str:
        return f"Maildir {self.path}"


def settings_from_env(env: Mapping[str, str], outbox: Path) -> SmtpSettings | MaildirSettings:
    """The relay that MAILINGS_SMTP_* describe; the Maildir *outbox* when MAILINGS_SMTP_HOST is unset or empty."""
    host = env.get(HOST, "").strip()
    if not host:
        return MaildirSettings(outbox)
    if any(ch.isspace() or not ch.isprintable() for ch in host):
        raise UsageError(f"{HOST} {host!r} is not a host name")
    security = _security(env.get(SECURITY, ""))
    username = env.get(USERNAME, "").strip() or None
    password = env.get(PASSWORD) or None
    token = env.get(OAUTH_TOKEN, "").strip() or None
    if password and token:
        raise UsageError(f"{PASSWORD} and {OAUTH_TOKEN} are both set; set the one the relay takes")
    secret = PASSWORD if password or not token else OAUTH_TOKEN
    if username and not (password or token):
        # (or MAILINGS_SMTP_OAUTH_TOKEN, for XOAUTH2: the README says so)
        raise UsageError(f"{USERNAME} is set but {PASSWORD} is not; set both, or neither to send without AUTH")
    if (password or token) and not username:
        raise UsageError(f"{secret} is set but {USERNAME} is not; set both, or neither to send without AUTH")
    if token is not None and not (token.isascii() and token.isprintable() and " " not in token):
        raise UsageError(f"{OAUTH_TOKEN} is not an OAuth2 access token (printable ASCII without spaces)")
    if username and security == "none" and not _is_loopback(host):
        word = "password" if secret == PASSWORD else "token"
        raise UsageError(
            f"{SECURITY} is none, so the {word} would cross the network unencrypted to {host}; use starttls or tls"
        )
    ca_file = _path(env, CA_FILE)
    ca_only = _flag(env, CA_ONLY)
    if ca_only and ca_file is None:
        raise UsageError(f"{CA_ONLY} is set but {CA_FILE} is not; name the CA certificate file to trust alone")
    client_cert, client_key = _path(env, CLIENT_CERT), _path(env, CLIENT_KEY)
    if client_key is not None and client_cert is None:
        raise UsageError(f"{CLIENT_KEY} is set but {CLIENT_CERT} is not; set the certificate too")
    tls = (ca_file, ca_only, client_cert)
    if security == "none" and any(tls):
        raise UsageError(
            f"{SECURITY} is none, so {CA_FILE}, {CA_ONLY} and {CLIENT_CERT} have no use; use starttls or tls"
        )
    return SmtpSettings(
        host=host,
        port=_port(env.get(PORT, ""), security),
        security=security,
        username=username,
        password=password,
        timeout=_timeout(env.get(TIMEOUT, "")),
        ca_file=ca_file,
        ca_only=ca_only,
        oauth_token=token,
        ehlo=_ehlo(env.get(EHLO, "")),
        client_cert=client_cert,
        client_key=client_key,
    )


def special_lists_from_env(env: Mapping[str, str], policy: Policy) -> dict[str, Path]:
    """The files that hold IT's special lists whose source is an environment variable (by default
    MAILINGS_LIST_<ID>, the id upper-cased and '-' as '_'), as they are: nothing is resolved or checked."""
    found: dict[str, Path] = {}
    for list_id, special in policy.special_lists.items():
        if not isinstance(special.source, EnvSource):
            continue
        value = env.get(special.source.variable, "").strip()
        if value:
            found[list_id] = Path(value)
    return found


def special_lists_for_send(env: Mapping[str, str], policy: Policy, root: Path, out: TextIO) -> Mapping[str, Path]:
    """IT's special lists for a send run: each resolved from its source when a mailing that uses it is loaded,
    cleaned and held to its size (sender.lists), with a line in *out* for each."""
    from sender.lists import SpecialLists

    return SpecialLists(policy, env, root, lambda line: out.write(line + "\n"))


def _security(text: str) -> Security:
    value = text.strip().lower() or "starttls"
    for known in SECURITIES:
        if value == known:
            return known
    raise UsageError(f"{SECURITY} {text.strip()!r}: expected one of {', '.join(SECURITIES)}")


def _port(text: str, security: Security) -> int:
    if not text.strip():
        return DEFAULT_PORTS[security]
    try:
        port = int(text.strip())
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise UsageError(f"{PORT} {text.strip()!r}: expected a port number from 1 to 65535")
    return port


def _timeout(text: str) -> float:
    if not text.strip():
        return DEFAULT_TIMEOUT
    try:
        seconds = float(text.strip())
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"{TIMEOUT} {text.strip()!r}: expected a number of seconds greater than 0")
    return seconds


def _path(env: Mapping[str, str], name: str) -> Path | None:
    text = env.get(name, "").strip()
    return Path(text) if text else None


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"{name} {env.get(name, '').strip()!r}: expected 1 (yes) or 0 (no)")


def _ehlo(text: str) -> str | None:
    """MAILINGS_SMTP_EHLO as given, if it is a host name or an address literal ([192.0.2.1], [IPv6:...]);
    None when unset (the host's fully qualified name is used)."""
    name = text.strip()
    if not name:
        return None
    literal = _LITERAL.match(name)
    if literal is not None:
        try:
            ipaddress.ip_address(literal.group(1))
        except ValueError:
            pass
        else:
            return name
    elif _DOMAIN.match(name):
        return name
    raise UsageError(
        f"{EHLO} {name!r} is not a host name: give this host's fully qualified name as the relay knows it, "
        "e.g. mailings.example.org"
    )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

"""Delivery settings from the environment: an SMTP relay, or the Maildir outbox when none is configured.

The command line passes the environment in as a mapping; nothing here reads os.environ. The password never
appears in a repr, a str or an error message.
"""

from __future__ import annotations

import ipaddress
import math
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


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the relay. `ca_file` adds trusted certificates (an internal CA) to the system's."""

    host: str
    port: int
    security: Security = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    ca_file: Path | None = None

    def __repr__(self) -> str:
        secret = "<set>" if self.password else None
        return (
            f"SmtpSettings(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"username={self.username!r}, password={secret}, timeout={self.timeout}, ca_file={self.ca_file!r})"
        )

    __str__ = __repr__

    def describe(self) -> str:
        """One line for logs and progress output, e.g. 'smtp.kth.se:587 (starttls, as mailer)'."""
        user = f", as {self.username}" if self.username else ""
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
    if username and not password:
        raise UsageError(f"{USERNAME} is set but {PASSWORD} is not; set both, or neither to send without AUTH")
    if password and not username:
        raise UsageError(f"{PASSWORD} is set but {USERNAME} is not; set both, or neither to send without AUTH")
    if username and security == "none" and not _is_loopback(host):
        raise UsageError(
            f"{SECURITY} is none, so the password would cross the network unencrypted to {host}; use starttls or tls"
        )
    ca_text = env.get(CA_FILE, "").strip()
    return SmtpSettings(
        host=host,
        port=_port(env.get(PORT, ""), security),
        security=security,
        username=username,
        password=password,
        timeout=_timeout(env.get(TIMEOUT, "")),
        ca_file=Path(ca_text) if ca_text else None,
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


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

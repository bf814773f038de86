"""Delivery settings from the environment mapping."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from checks.errors import UsageError
from sender.config import (
    MaildirSettings,
    SmtpSettings,
    settings_from_env,
    special_list_variable,
    special_lists_from_env,
)
from tests.conftest import Repo

OUTBOX = Path("outbox")
SECRET = "s3cret-Pa55word"


def test_no_host_means_the_maildir_outbox() -> None:
    assert settings_from_env({}, OUTBOX) == MaildirSettings(OUTBOX)
    assert settings_from_env({"MAILINGS_SMTP_HOST": "  "}, OUTBOX) == MaildirSettings(OUTBOX)


@pytest.mark.parametrize(
    ("security", "port", "expected"),
    [
        ("", "", ("starttls", 587)),
        ("tls", "", ("tls", 465)),
        ("none", "", ("none", 25)),
        ("STARTTLS", "2525", ("starttls", 2525)),
    ],
)
def test_security_and_default_ports(security: str, port: str, expected: tuple[str, int]) -> None:
    env = {"MAILINGS_SMTP_HOST": "smtp.kth.se", "MAILINGS_SMTP_SECURITY": security, "MAILINGS_SMTP_PORT": port}
    settings = settings_from_env(env, OUTBOX)
    assert isinstance(settings, SmtpSettings)
    assert (settings.host, settings.security, settings.port) == ("smtp.kth.se", *expected)
    assert (settings.username, settings.password, settings.timeout, settings.ca_file) == (None, None, 30.0, None)


def test_credentials_timeout_and_ca_file() -> None:
    env = {
        "MAILINGS_SMTP_HOST": "smtp.kth.se",
        "MAILINGS_SMTP_USERNAME": "mailer",
        "MAILINGS_SMTP_PASSWORD": SECRET,
        "MAILINGS_SMTP_TIMEOUT": "12.5",
        "MAILINGS_SMTP_CA_FILE": "/etc/ssl/kth-ca.pem",
    }
    assert settings_from_env(env, OUTBOX) == SmtpSettings(
        "smtp.kth.se", 587, "starttls", "mailer", SECRET, 12.5, Path("/etc/ssl/kth-ca.pem")
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"MAILINGS_SMTP_SECURITY": "ssl"}, "MAILINGS_SMTP_SECURITY 'ssl': expected one of starttls, tls, none"),
        ({"MAILINGS_SMTP_PORT": "0"}, "MAILINGS_SMTP_PORT '0': expected a port number from 1 to 65535"),
        ({"MAILINGS_SMTP_PORT": "65536"}, "MAILINGS_SMTP_PORT '65536': expected a port number from 1 to 65535"),
        ({"MAILINGS_SMTP_PORT": "smtp"}, "MAILINGS_SMTP_PORT 'smtp': expected a port number from 1 to 65535"),
        ({"MAILINGS_SMTP_TIMEOUT": "0"}, "MAILINGS_SMTP_TIMEOUT '0': expected a number of seconds greater than 0"),
        ({"MAILINGS_SMTP_TIMEOUT": "nan"}, "MAILINGS_SMTP_TIMEOUT 'nan': expected a number of seconds greater than 0"),
        ({"MAILINGS_SMTP_HOST": "smtp kth"}, "MAILINGS_SMTP_HOST 'smtp kth' is not a host name"),
        (
            {"MAILINGS_SMTP_USERNAME": "mailer", "MAILINGS_SMTP_PASSWORD": ""},
            "MAILINGS_SMTP_USERNAME is set but MAILINGS_SMTP_PASSWORD is not; "
            "set both, or neither to send without AUTH",
        ),
        (
            {"MAILINGS_SMTP_PASSWORD": SECRET},
            "MAILINGS_SMTP_PASSWORD is set but MAILINGS_SMTP_USERNAME is not; "
            "set both, or neither to send without AUTH",
        ),
        (
            {"MAILINGS_SMTP_SECURITY": "none", "MAILINGS_SMTP_USERNAME": "mailer", "MAILINGS_SMTP_PASSWORD": SECRET},
            "MAILINGS_SMTP_SECURITY is none, so the password would cross the network unencrypted to smtp.kth.se; "
            "use starttls or tls",
        ),
    ],
)
def test_bad_values_are_usage_errors(changes: dict[str, str], message: str) -> None:
    env = {"MAILINGS_SMTP_HOST": "smtp.kth.se", **changes}
    with pytest.raises(UsageError) as info:
        settings_from_env(env, OUTBOX)
    assert str(info.value) == message


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]"])
def test_auth_without_tls_is_allowed_on_loopback(host: str) -> None:
    env = {
        "MAILINGS_SMTP_HOST": host,
        "MAILINGS_SMTP_SECURITY": "none",
        "MAILINGS_SMTP_USERNAME": "mailer",
        "MAILINGS_SMTP_PASSWORD": SECRET,
    }
    settings = settings_from_env(env, OUTBOX)
    assert isinstance(settings, SmtpSettings) and settings.password == SECRET


def test_the_password_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    env = {"MAILINGS_SMTP_HOST": "smtp.kth.se", "MAILINGS_SMTP_USERNAME": "mailer", "MAILINGS_SMTP_PASSWORD": SECRET}
    settings = settings_from_env(env, OUTBOX)
    logging.getLogger("test").warning("settings %s %r", settings, settings)
    shown = [repr(settings), str(settings), f"{settings}", settings.describe(), caplog.text]
    assert all(SECRET not in text for text in shown)
    assert "password=<set>" in repr(settings)
    assert settings.describe() == "smtp.kth.se:587 (starttls, as mailer)"
    with pytest.raises(UsageError) as info:
        settings_from_env({**env, "MAILINGS_SMTP_PORT": "x", "MAILINGS_SMTP_SECURITY": "bogus"}, OUTBOX)
    assert SECRET not in str(info.value)


def test_special_lists_from_env(repo: Repo, tmp_path: Path) -> None:
    env = {
        "MAILINGS_LIST_ALL_EMPLOYEES": str(tmp_path / "employees.txt"),
        "MAILINGS_LIST_ALL_STUDENTS": "",  # empty: not configured
        "MAILINGS_LIST_UNKNOWN": "/tmp/unknown.txt",  # not a special list of the policy
    }
    assert special_lists_from_env(env, repo.policy) == {"all-employees": tmp_path / "employees.txt"}
    assert special_list_variable("all-students") == "MAILINGS_LIST_ALL_STUDENTS"

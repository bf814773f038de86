"""The relay's own demands: XOAUTH2, one login attempt per run, the EHLO name, a client certificate, and a CA
file that replaces the system's trust. Against aiosmtpd, with certificates made by the openssl command."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from checks.errors import UsageError
from sender.config import SmtpSettings, settings_from_env
from sender.dispatch import send_all
from sender.eventloop import run as run_loop
from sender.transport import SmtpTransport, tls_context, transport_factory
from tests.conftest import Repo, addresses
from tests.sender.sending import NOW, log_path, options, set_sending, smtp
from tests.sender.smtpserver import FaultyHandler, Recorder, RunningServer, credentials
from tests.sender.test_cli_send import relay, run

MakeServer = Callable[..., RunningServer]
TOKEN = "ya29.a0AfH6SMB-right-token"
MESSAGE = b"From: noreply@kth.se\r\nTo: a@kth.se\r\nSubject: test\r\n\r\nHej\r\n"


class OAuthRelay(FaultyHandler):
    """Offers AUTH XOAUTH2 (and PLAIN) as Exchange Online and Gmail do; counts every AUTH attempt."""

    def __init__(self, user: str = "mailer@kth.se", token: str = TOKEN) -> None:
        super().__init__()
        self.user, self.token = user, token
        self.attempts: list[tuple[str, bool]] = []  # (mechanism, succeeded), in order
        self._lock = threading.Lock()

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        fields = dict(part.split("=", 1) for part in base64.b64decode(args[1]).decode().split("\x01") if "=" in part)
        ok = fields.get("user") == self.user and fields.get("auth") == f"Bearer {self.token}"
        with self._lock:
            self.attempts.append(("XOAUTH2", ok))
        if ok:
            return AuthResult(success=True, auth_data=self.user)
        # As Google does: a JSON error as a challenge, the client's empty line, then the final refusal.
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"})
        await server.challenge_auth(error)
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")


def counting(username: str, password: str, attempts: list[bool]) -> Callable[..., AuthResult]:
    """credentials(), recording each attempt's outcome in *attempts*."""
    check = credentials(username, password)

    def authenticate(*args: Any) -> AuthResult:
        result = check(*args)
        attempts.append(result.success)
        return result

    return authenticate


def oauth_server(make_server: MakeServer, handler: OAuthRelay) -> RunningServer:
    return make_server(handler, auth_required=True, auth_require_tls=False, auth_exclude_mechanism=["LOGIN"])


# --- XOAUTH2 and one login per run ------------------------------------------------------------------------------


def test_xoauth2_logs_in_with_the_token_and_sends(repo: Repo, make_server: MakeServer) -> None:
    handler = OAuthRelay()
    server = oauth_server(make_server, handler)
    set_sending(repo, connections=3)
    repo.add()
    settings = smtp(server, username="mailer@kth.se", oauth_token=TOKEN)
    [outcome] = send_all(repo.root, repo.policy, options(settings))
    assert outcome.ok and outcome.accepted == 600 and len(handler.received) == 6
    # Each connection logged in with XOAUTH2 (the token, never a password mechanism), after the first succeeded.
    assert handler.attempts == [("XOAUTH2", True)] * handler.connections and handler.connections == 3


def test_a_wrong_token_is_one_attempt_in_the_run_and_the_relays_reply_is_shown(
    repo: Repo, make_server: MakeServer
) -> None:
    handler = OAuthRelay()
    server = oauth_server(make_server, handler)
    set_sending(repo, connections=4)
    repo.add()
    repo.add("2027-02-10-other", recipients=addresses(500, prefix="other"))
    env = relay(server, MAILINGS_SMTP_USERNAME="mailer@kth.se", MAILINGS_SMTP_OAUTH_TOKEN="expired-token")
    code, out = run(["send", "--root", str(repo.root), "--now", NOW], env)
    assert code == 1
    assert handler.attempts == [("XOAUTH2", False)]  # one, though two mailings and four connections were due
    assert handler.connections == 1 and handler.mails == 0 and handler.received == []
    assert out.count("535 5.7.8 Username and Password not accepted") == 2  # each mailing says why
    assert "(status 401, schemes bearer" in out  # the relay's JSON error, from its challenge
    assert "check MAILINGS_SMTP_USERNAME and MAILINGS_SMTP_OAUTH_TOKEN" in out
    assert "no other login is tried in this run" in out and "expired-token" not in out
    assert not log_path(repo).exists()  # the second mailing was not tried: nothing written for it


def test_a_refused_password_is_tried_once_not_once_per_mechanism_or_connection(
    repo: Repo, make_server: MakeServer
) -> None:
    attempts: list[bool] = []
    handler = FaultyHandler()
    # PLAIN and LOGIN offered: aiosmtplib's own login() would try both, a refusal each.
    server = make_server(
        handler, auth_required=True, auth_require_tls=False, authenticator=counting("mailer", "right", attempts)
    )
    set_sending(repo, connections=4)
    repo.add()
    [outcome] = send_all(repo.root, repo.policy, options(smtp(server, username="mailer", password="wrong")))
    assert attempts == [False] and handler.connections == 1
    assert not outcome.ok and "535 5.7.8 Authentication credentials invalid" in outcome.note


def test_a_login_refused_on_a_later_connection_stops_every_further_login() -> None:
    attempts: list[bool] = []
    from tests.sender.smtpserver import start_server

    server = start_server(
        FaultyHandler(), auth_required=True, auth_require_tls=False, authenticator=counting("mailer", "right", attempts)
    )
    try:
        good = transport_factory(smtp(server, username="mailer", password="right"))
        first = good()
        assert run_loop(first.open()) is None
        run_loop(first.close())
        # The password changes on the relay while the run goes on: the next connection's login is refused ...
        server.stop()
        server.handler = FaultyHandler()
        server.options["authenticator"] = counting("mailer", "changed", attempts)
        server.start()
        failure = run_loop(good().open())
        assert failure is not None and failure.code == 535
        # ... and no connection of the run tries again.
        again = [run_loop(good().open()) for _ in range(3)]
        assert again == [failure] * 3 and attempts == [True, False]
    finally:
        server.stop()


def test_xoauth2_without_the_mechanism_on_the_relay_says_so(make_server: MakeServer) -> None:
    attempts: list[bool] = []
    server = make_server(auth_required=True, auth_require_tls=False, authenticator=counting("u", "p", attempts))
    transport = SmtpTransport(smtp(server, username="mailer@kth.se", oauth_token=TOKEN))
    failure = run_loop(transport.open())
    assert failure is not None and "does not offer AUTH XOAUTH2 (it offers: LOGIN PLAIN)" in failure.message
    assert attempts == []


# --- the EHLO name --------------------------------------------------------------------------------------------


class QualifiedOnly(Recorder):
    """Refuses an EHLO or HELO name without a dot, as Postfix's reject_non_fqdn_helo_hostname does."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        self.names.append(hostname)
        if "." not in hostname:
            return [f"504 5.5.2 <{hostname}>: Helo command rejected: need fully-qualified hostname"]
        return await super().handle_EHLO(server, session, envelope, hostname, responses)

    async def handle_HELO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str) -> str:
        self.names.append(hostname)
        return f"504 5.5.2 <{hostname}>: Helo command rejected: need fully-qualified hostname"


def test_the_configured_ehlo_name_is_used(repo: Repo, make_server: MakeServer) -> None:
    handler = QualifiedOnly()
    server = make_server(handler)
    repo.add()
    env = relay(server, MAILINGS_SMTP_EHLO="mailings.it.kth.se")
    code, _ = run(["send", "--root", str(repo.root), "--now", NOW], env)
    assert code == 0 and len(handler.recipients()) == 600
    assert set(handler.names) == {"mailings.it.kth.se"}


def test_a_relay_that_refuses_the_ehlo_name_is_reported_clearly(repo: Repo, make_server: MakeServer) -> None:
    handler = QualifiedOnly()
    server = make_server(handler)
    repo.add()
    code, out = run(["send", "--root", str(repo.root), "--now", NOW], relay(server, MAILINGS_SMTP_EHLO="runner7"))
    assert code == 1 and handler.received == []
    assert "refused this host's EHLO name 'runner7': 504 5.5.2" in out
    assert "set MAILINGS_SMTP_EHLO to the name the relay expects" in out
    assert handler.names and set(handler.names) == {"runner7"}


def test_without_a_setting_the_ehlo_name_is_the_hosts_fully_qualified_name(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sender.transport

    monkeypatch.setattr(sender.transport.socket, "getfqdn", lambda name="": "runner.ci.kth.se")
    handler = QualifiedOnly()
    server = make_server(handler)
    assert _send_one(smtp(server)) is None
    assert handler.names == ["runner.ci.kth.se"]


@pytest.mark.parametrize("name", ["bad name", "runner_7.kth.se", "-x.kth.se", "[300.1.1.1]"])
def test_an_ehlo_name_that_is_no_host_name_is_a_usage_error(name: str) -> None:
    with pytest.raises(UsageError, match=r"MAILINGS_SMTP_EHLO .* is not a host name"):
        settings_from_env({"MAILINGS_SMTP_HOST": "smtp.kth.se", "MAILINGS_SMTP_EHLO": name}, Path("outbox"))


# --- certificates ---------------------------------------------------------------------------------------------


def _openssl(*args: str) -> None:
    try:
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl cannot make test certificates: {exc}")


class Ca:
    """A certificate authority made with the openssl command, and the certificates it signs."""

    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory, self.name = directory, name
        self.cert, self.key = directory / f"{name}-ca.pem", directory / f"{name}-ca.key"
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", str(self.key), "-out", str(self.cert),
        )  # fmt: skip

    def issue(self, name: str, *, client: bool = False) -> tuple[Path, Path]:
        """(certificate, key) for 127.0.0.1 and localhost (a server), or for *name* (a client)."""
        cert, key, csr = (self.directory / f"{name}{ext}" for ext in (".pem", ".key", ".csr"))
        extensions = self.directory / f"{name}.ext"
        usage = "clientAuth" if client else "serverAuth"
        lines = [
            "basicConstraints=CA:FALSE",
            f"extendedKeyUsage={usage}",
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=keyid,issuer",
        ]
        if not client:
            lines.append("subjectAltName=DNS:localhost,IP:127.0.0.1")
        extensions.write_text("\n".join(lines) + "\n", encoding="ascii")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr))
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key), "-CAcreateserial",
            "-days", "2", "-extfile", str(extensions), "-out", str(cert),
        )  # fmt: skip
        return cert, key


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ca]:
    directory = tmp_path_factory.mktemp("ca")
    return {name: Ca(directory, name) for name in ("system", "internal", "clients")}


def _server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED  # no session without a certificate the clients' CA signed
        context.load_verify_locations(cafile=client_ca)
    return context


class PeerRecorder(Recorder):
    """Records the subject of the client certificate each TLS session showed."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[Any] = []

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        if server.transport is not None and server.transport.get_extra_info("sslcontext") is not None:
            self.peers.append(server.transport.get_extra_info("peercert"))
        return await super().handle_EHLO(server, session, envelope, hostname, responses)


def _send_one(settings: SmtpSettings) -> str | None:
    """Open, send one message, close: the error, or None."""

    async def go() -> str | None:
        transport = transport_factory(settings)()
        try:
            failure = await transport.open()
            if failure is not None:
                return str(failure)
            result = await transport.send("noreply@kth.se", ["a@kth.se"], MESSAGE)
            return None if result.error is None else str(result.error)
        finally:
            await transport.close()

    return run_loop(go())


def test_a_client_certificate_is_shown_to_a_relay_that_requires_one(
    make_server: MakeServer, cas: dict[str, Ca]
) -> None:
    server_cert, server_key = cas["internal"].issue("relay")
    client_cert, client_key = cas["clients"].issue("mailings-dispatch", client=True)
    handler = PeerRecorder()
    context = _server_context(server_cert, server_key, client_ca=cas["clients"].cert)
    server = make_server(handler, tls_context=context, require_starttls=True)
    env = {
        **relay(server, MAILINGS_SMTP_SECURITY="starttls", MAILINGS_SMTP_CA_FILE=str(cas["internal"].cert)),
        "MAILINGS_SMTP_HOST": "localhost",
    }
    without = settings_from_env(env, Path("outbox"))
    assert isinstance(without, SmtpSettings)
    assert _send_one(without) is not None and handler.received == []  # the relay refuses a session without one
    more = {"MAILINGS_SMTP_CLIENT_CERT": str(client_cert), "MAILINGS_SMTP_CLIENT_KEY": str(client_key)}
    settings = settings_from_env({**env, **more}, Path("outbox"))
    assert isinstance(settings, SmtpSettings)
    assert _send_one(settings) is None and len(handler.received) == 1
    subjects = [dict(pair[0] for pair in peer["subject"]) for peer in handler.peers if peer]
    assert subjects == [{"commonName": "mailings-dispatch"}]


def test_a_client_certificate_that_cannot_be_loaded_is_a_usage_error(tmp_path: Path) -> None:
    broken = tmp_path / "cert.pem"
    broken.write_text("not a certificate\n", encoding="ascii")
    settings = SmtpSettings("smtp.kth.se", 587, client_cert=broken)
    with pytest.raises(UsageError, match=r"MAILINGS_SMTP_CLIENT_CERT .*cert\.pem: cannot load the client certificate"):
        tls_context(settings)


def test_ca_only_trusts_the_file_alone(
    make_server: MakeServer, cas: dict[str, Ca], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The "system" CA stands for the system's trust: OpenSSL's default locations read SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(cas["system"].cert))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    public = make_server(tls_context=_server_context(*cas["system"].issue("public-relay")))
    internal = make_server(tls_context=_server_context(*cas["internal"].issue("internal-relay")))

    def settings(server: RunningServer, **more: str) -> SmtpSettings:
        env = {**relay(server, MAILINGS_SMTP_SECURITY="starttls", **more), "MAILINGS_SMTP_HOST": "localhost"}
        made = settings_from_env(env, Path("outbox"))
        assert isinstance(made, SmtpSettings)
        return made

    ca = str(cas["internal"].cert)
    # The file extends the system's trust: both relays are trusted.
    assert _send_one(settings(public, MAILINGS_SMTP_CA_FILE=ca)) is None
    assert _send_one(settings(internal, MAILINGS_SMTP_CA_FILE=ca)) is None
    # With MAILINGS_SMTP_CA_ONLY it replaces it: a relay the system trusts but the file does not is refused.
    refused = _send_one(settings(public, MAILINGS_SMTP_CA_FILE=ca, MAILINGS_SMTP_CA_ONLY="1"))
    assert refused is not None and refused.startswith("554 5.7.0 TLS with localhost:") and "not trusted" in refused
    assert _send_one(settings(internal, MAILINGS_SMTP_CA_FILE=ca, MAILINGS_SMTP_CA_ONLY="1")) is None
    # Without the file, the system's trust alone.
    assert _send_one(settings(public)) is None
    assert public.handler.received and len(internal.handler.received) == 2


# --- the settings ----------------------------------------------------------------------------------------------


def test_the_new_settings_are_read_and_the_token_never_shows() -> None:
    env = {
        "MAILINGS_SMTP_HOST": "smtp.office365.com",
        "MAILINGS_SMTP_USERNAME": "mailer@kth.se",
        "MAILINGS_SMTP_OAUTH_TOKEN": TOKEN,
        "MAILINGS_SMTP_EHLO": "mailings.it.kth.se",
        "MAILINGS_SMTP_CA_FILE": "/etc/kth/ca.pem",
        "MAILINGS_SMTP_CA_ONLY": "yes",
        "MAILINGS_SMTP_CLIENT_CERT": "/etc/kth/client.pem",
        "MAILINGS_SMTP_CLIENT_KEY": "/etc/kth/client.key",
    }
    settings = settings_from_env(env, Path("outbox"))
    assert isinstance(settings, SmtpSettings)
    assert (settings.oauth_token, settings.password, settings.ehlo, settings.ca_only) == (
        TOKEN, None, "mailings.it.kth.se", True
    )  # fmt: skip
    assert (settings.client_cert, settings.client_key) == (Path("/etc/kth/client.pem"), Path("/etc/kth/client.key"))
    assert TOKEN not in repr(settings) and "oauth_token=<set>" in repr(settings)
    assert settings.describe() == "smtp.office365.com:587 (starttls, as mailer@kth.se (XOAUTH2))"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"MAILINGS_SMTP_USERNAME": "u", "MAILINGS_SMTP_PASSWORD": "p", "MAILINGS_SMTP_OAUTH_TOKEN": "t"},
            "MAILINGS_SMTP_PASSWORD and MAILINGS_SMTP_OAUTH_TOKEN are both set; set the one the relay takes",
        ),
        (
            {"MAILINGS_SMTP_OAUTH_TOKEN": "t"},
            "MAILINGS_SMTP_OAUTH_TOKEN is set but MAILINGS_SMTP_USERNAME is not; set both, or neither to send "
            "without AUTH",
        ),
        (
            {"MAILINGS_SMTP_USERNAME": "u", "MAILINGS_SMTP_OAUTH_TOKEN": "Bearer abc"},
            "MAILINGS_SMTP_OAUTH_TOKEN is not an OAuth2 access token (printable ASCII without spaces)",
        ),
        (
            {"MAILINGS_SMTP_CA_ONLY": "1"},
            "MAILINGS_SMTP_CA_ONLY is set but MAILINGS_SMTP_CA_FILE is not; name the CA certificate file to trust "
            "alone",
        ),
        ({"MAILINGS_SMTP_CA_ONLY": "maybe"}, "MAILINGS_SMTP_CA_ONLY 'maybe': expected 1 (yes) or 0 (no)"),
        (
            {"MAILINGS_SMTP_CLIENT_KEY": "/k.pem"},
            "MAILINGS_SMTP_CLIENT_KEY is set but MAILINGS_SMTP_CLIENT_CERT is not; set the certificate too",
        ),
        (
            {"MAILINGS_SMTP_SECURITY": "none", "MAILINGS_SMTP_CLIENT_CERT": "/c.pem"},
            "MAILINGS_SMTP_SECURITY is none, so MAILINGS_SMTP_CA_FILE, MAILINGS_SMTP_CA_ONLY and "
            "MAILINGS_SMTP_CLIENT_CERT have no use; use starttls or tls",
        ),
    ],
)
def test_bad_relay_settings_are_usage_errors(changes: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        settings_from_env({"MAILINGS_SMTP_HOST": "smtp.kth.se", **changes}, Path("outbox"))
    assert str(info.value) == message

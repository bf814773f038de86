"""A real IMAP server for the bounce tests: Debian's dovecot on 127.0.0.1, in a temporary directory.

`Dovecot.start(directory)` writes a dovecot.conf of its own (its own base and state directories, so it is no
system instance), a passwd-file with one user, and a server certificate signed by a CA made for the test
(tests.sender.ldapserver.make_tls), and starts dovecot with IMAP over implicit TLS on a free loopback port.
Plain IMAP is off. As root, the mail is kept as the system user `dovecot` (dovecot refuses root for mail) in a
directory of its own under /tmp; otherwise everything runs as the current user.

`ensure_dovecot()` finds dovecot, installing the Debian package `dovecot-imapd` first when it is missing and this
process is root; it gives the reason to skip when neither is the case.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.packages import ensure
from tests.sender.ldapserver import HOST, Tls, free_port, make_tls

USER = "bounces"
PASSWORD = "imap-s3cret"
START_SECONDS = 20.0


def ensure_dovecot() -> Path | str:
    """dovecot's path, installing `dovecot-imapd` when it is missing and we are root; else why the tests skip.
    (The package also starts the system's own instance; these tests never use it.)"""
    return ensure("dovecot", "dovecot-imapd")


@dataclass
class Dovecot:
    """A running dovecot; `stop()` ends it (and only it)."""

    binary: Path
    home: Path
    mail: Path
    tls: Tls
    port: int = 0

    @classmethod
    def start(
        cls, binary: Path, directory: Path, capability: str | None = None, oauth_url: str | None = None
    ) -> Dovecot:
        """*capability*: the capabilities the server announces, when not its own (to leave out MOVE, say).
        *oauth_url*: logins by XOAUTH2 alone, each token checked at this RFC 7662 introspection endpoint."""
        directory.mkdir(parents=True, exist_ok=True)
        tls = make_tls(directory / "tls")
        if os.geteuid() == 0:
            # dovecot will not keep mail as root: the package's own unprivileged users, in a directory they can reach.
            mail_user, login_user = pwd.getpwnam("dovecot"), pwd.getpwnam("dovenull")
            group = grp.getgrgid(mail_user.pw_gid).gr_name
            mail = Path(tempfile.mkdtemp(prefix="mailings-test-imap-"))
            os.chown(mail, mail_user.pw_uid, mail_user.pw_gid)
            uid, gid, internal, login = mail_user.pw_uid, mail_user.pw_gid, mail_user.pw_name, login_user.pw_name
        else:
            me = pwd.getpwuid(os.geteuid())
            group = grp.getgrgid(os.getegid()).gr_name
            mail = Path(tempfile.mkdtemp(prefix="mailings-test-imap-"))
            uid, gid, internal, login = me.pw_uid, me.pw_gid, me.pw_name, me.pw_name
        server = cls(binary, directory, mail, tls, free_port())
        (directory / "run").mkdir(exist_ok=True)
        (directory / "state").mkdir(exist_ok=True)
        # Beside the mail, which the unprivileged auth process can reach (the test's directory may be private).
        (mail / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n", encoding="ascii")
        (mail / "oauth2.conf.ext").write_text(
            f"introspection_url = {oauth_url}\nintrospection_mode = post\nusername_attribute = username\n"
            "active_attribute = active\nactive_value = true\n",
            encoding="ascii",
        )
        (directory / "dovecot.conf").write_text(
            f"""base_dir = {directory}/run
state_dir = {directory}/state
log_path = {directory}/dovecot.log
protocols = imap
listen = {HOST}
ssl = required
ssl_cert = <{tls.cert}
ssl_key = <{tls.key}
default_login_user = {login}
default_internal_user = {internal}
default_internal_group = {group}
first_valid_uid = {uid}
first_valid_gid = {gid}
{f"imap_capability = {capability}" if capability else ""}
{_passdb(mail, oauth_url)}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {server.port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
""",
            encoding="ascii",
        )
        # The master forks into the background: its output goes to a file, as a pipe would stay open with it.
        with open(directory / "start.log", "wb") as output:
            started = subprocess.run(
                [str(binary), "-c", str(directory / "dovecot.conf")], stdout=output, stderr=subprocess.STDOUT
            )
        if started.returncode != 0:
            shutil.rmtree(mail, ignore_errors=True)
            raise RuntimeError(f"dovecot did not start: {(directory / 'start.log').read_text(errors='replace')}")
        server._wait()
        return server

    def _wait(self) -> None:
        import socket

        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        log = (self.home / "dovecot.log").read_text(errors="replace") if (self.home / "dovecot.log").exists() else ""
        self.stop()
        raise RuntimeError(f"dovecot did not start on port {self.port}: {log[-2000:]}")

    def stop(self) -> None:
        pid_file = self.home / "run" / "master.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().strip())
            subprocess.run(
                [str(self.binary), "-c", str(self.home / "dovecot.conf"), "stop"], capture_output=True, check=False
            )
            deadline = time.monotonic() + START_SECONDS
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
        shutil.rmtree(self.mail, ignore_errors=True)

    def env(self, **more: str) -> dict[str, str]:
        """The variables `mailings bounces` reads for this server."""
        return {
            "MAILINGS_BOUNCES_IMAP_HOST": HOST,
            "MAILINGS_BOUNCES_IMAP_PORT": str(self.port),
            "MAILINGS_BOUNCES_IMAP_USERNAME": USER,
            "MAILINGS_BOUNCES_IMAP_PASSWORD": PASSWORD,
            "MAILINGS_BOUNCES_IMAP_CA_FILE": str(self.tls.ca),
            **more,
        }


def _passdb(mail: Path, oauth_url: str | None) -> str:
    """The logins: the passwd-file user's password, or (with *oauth_url*) XOAUTH2 bearer tokens alone."""
    if oauth_url is None:
        driver, mechanism, args = "passwd-file", "plain", f"scheme=PLAIN username_format=%u {mail}/passwd"
    else:
        driver, mechanism, args = "oauth2", "xoauth2", f"{mail}/oauth2.conf.ext"
    return (
        f"auth_mechanisms = {mechanism}\npassdb {{\n  driver = {driver}\n  mechanisms = {mechanism}\n"
        f"  args = {args}\n}}"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

"""A real OpenLDAP server for the tests of IT's special lists: `slapd` on 127.0.0.1, in a temporary directory.

`Slapd.start(directory)` writes a slapd.conf, a CA and a server certificate (made with the openssl command), loads
a generated directory of people with slapadd and starts slapd on two free loopback ports: one for LDAPS and one for
plain LDAP, where a client must use StartTLS. The server keeps OpenLDAP's default size limit of 500 entries per
search for everyone; the service account `MAILINGS_DN` may page past it (`size.prtotal=unlimited`, what a directory
administrator grants the dispatch job), and `LIMITED_DN` may not, so a paged search by it stops at 500.

`ensure_slapd()` finds slapd, installing the Debian package when it is missing and this process is root; it gives
the reason to skip when neither is the case. The module is used by the tests (`tests/sender/test_special_lists.py`,
one server per session) and by `bench/ldap_speed.py`.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.packages import ensure, find

HOST = "127.0.0.1"
BASE = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{BASE}"
MAILINGS_DN = f"cn=mailings,ou=services,{BASE}"
LIMITED_DN = f"cn=limited,ou=services,{BASE}"
PASSWORD = "s3cret-bind-pw"
PEOPLE = f"ou=people,{BASE}"
STUDENTS_FILTER = "(&(objectClass=inetOrgPerson)(employeeType=student))"
STAFF_FILTER = "(&(objectClass=inetOrgPerson)(employeeType=staff))"

MODULE_DIRS = ("/usr/lib/ldap", "/usr/lib/x86_64-linux-gnu/ldap", "/usr/lib64/openldap", "/usr/libexec/openldap")
SCHEMA_DIRS = ("/etc/ldap/schema", "/etc/openldap/schema")
START_SECONDS = 20.0


@dataclass(frozen=True)
class People:
    """The generated directory: who is in it, and the irregular entries a real user database has."""

    students: int = 20_000
    staff: int = 5_500
    without_mail: int = 3  # students without a mail attribute
    duplicates: int = 2  # students whose mail repeats another student's, in other letter case
    invalid: int = 1  # students whose mail is not an address
    two_mails: int = 1  # students with two mail values

    def student_mail(self, number: int) -> str:
        return f"student{number}@ug.example.org"

    def staff_mail(self, number: int) -> str:
        return f"staff{number}@example.org"

    def expected_students(self) -> list[str]:
        """The addresses a correct resolution of the students' list yields, once each."""
        irregular = self.without_mail + self.duplicates + self.invalid
        return [self.student_mail(n) for n in range(self.students - irregular)]

    def expected_staff(self) -> list[str]:
        return [self.staff_mail(n) for n in range(self.staff)]

    def ldif(self) -> Iterator[str]:
        """Every entry as LDIF, for slapadd."""
        yield entry(BASE, ["dcObject", "organization"], dc="example", o="Example University")
        yield entry(PEOPLE, ["organizationalUnit"], ou="people")
        yield entry(f"ou=services,{BASE}", ["organizationalUnit"], ou="services")
        for dn in (MAILINGS_DN, LIMITED_DN):
            name = dn.split(",", 1)[0].split("=", 1)[1]
            yield entry(dn, ["applicationProcess", "simpleSecurityObject"], cn=name, userPassword=PASSWORD)
        regular = self.students - self.without_mail - self.duplicates - self.invalid
        for n in range(self.students):
            mails: list[str] = []
            if n < regular:
                mails = [self.student_mail(n)]
                if n < self.two_mails:
                    mails.append(f"alias{n}@ug.example.org")  # a second value: only the first counts
            elif n < regular + self.duplicates:
                mails = [self.student_mail(n - regular).upper()]
            elif n < regular + self.duplicates + self.invalid:
                mails = ["not-an-address"]
            yield person(f"s{n:06d}", "student", mails)
        for n in range(self.staff):
            yield person(f"e{n:06d}", "staff", [self.staff_mail(n)])


def entry(dn: str, classes: list[str], **attributes: str | list[str]) -> str:
    lines = [f"dn: {dn}", *(f"objectClass: {c}" for c in ["top", *classes])]
    for name, value in attributes.items():
        for one in [value] if isinstance(value, str) else value:
            lines.append(f"{name}: {one}")
    return "\n".join(lines) + "\n\n"


def person(uid: str, kind: str, mails: list[str]) -> str:
    return entry(
        f"uid={uid},{PEOPLE}", ["person", "organizationalPerson", "inetOrgPerson"],
        uid=uid, cn=f"Person {uid}", sn=uid, employeeType=kind, mail=mails,
    )  # fmt: skip


def find_slapd() -> Path | None:
    return find(["slapd"])


def _no_configuration(env: dict[str, str]) -> None:
    # No configuration of its own and no service: the tests start their own server in a temporary directory.
    subprocess.run(
        ["debconf-set-selections"], input="slapd slapd/no_configuration boolean true\n", text=True,
        env=env, capture_output=True, check=False,
    )  # fmt: skip


def ensure_slapd() -> Path | str:
    """slapd's path, installing the Debian package `slapd` first when it is missing and we are root; otherwise
    the reason the LDAP tests cannot run."""
    return ensure("slapd", "slapd", prepare=_no_configuration)


def _first_dir(candidates: tuple[str, ...], wanted: str) -> Path:
    for directory in candidates:
        if (Path(directory) / wanted).exists():
            return Path(directory)
    raise FileNotFoundError(f"{wanted} is not in any of {', '.join(candidates)}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Tls:
    """A CA, a server certificate it signed for 127.0.0.1 and localhost, and an unrelated CA."""

    ca: Path
    cert: Path
    key: Path
    other_ca: Path  # trusts nothing the server presents


def make_tls(directory: Path) -> Tls:
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    for name in ("ca", "other-ca"):
        openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", f"/CN=Test {name}", "-keyout", f"{name}.key", "-out", f"{name}.pem",
        )  # fmt: skip
    openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr",
    )  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n", encoding="ascii"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "server.ext", "-out", "server.pem",
    )  # fmt: skip
    return Tls(directory / "ca.pem", directory / "server.pem", directory / "server.key", directory / "other-ca.pem")


@dataclass
class Slapd:
    """A running slapd; `stop()` ends it (and only it)."""

    binary: Path
    home: Path
    tls: Tls
    ldap_port: int = 0
    ldaps_port: int = 0
    people: People = field(default_factory=People)
    process: subprocess.Popen[bytes] | None = None

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{HOST}:{self.ldaps_port}"

    @property
    def starttls_url(self) -> str:
        return f"ldap://{HOST}:{self.ldap_port}"

    def env(self, **more: str) -> dict[str, str]:
        """MAILINGS_LDAP_* for the dispatch job's service account over LDAPS."""
        return {
            "MAILINGS_LDAP_URL": self.ldaps_url,
            "MAILINGS_LDAP_BIND_DN": MAILINGS_DN,
            "MAILINGS_LDAP_PASSWORD": PASSWORD,
            "MAILINGS_LDAP_CA_FILE": str(self.tls.ca),
            **more,
        }

    @classmethod
    def create(cls, binary: Path, home: Path, people: People | None = None) -> Slapd:
        """Configure and load a server in *home* (not started yet)."""
        server = cls(binary=binary, home=home, tls=make_tls(home / "tls"), people=people or People())
        (home / "db").mkdir(parents=True)
        server._write_config()
        ldif = home / "people.ldif"
        with ldif.open("w", encoding="utf-8") as out:
            out.writelines(server.people.ldif())
        slapadd = binary.with_name("slapadd")
        command = [str(slapadd)] if slapadd.exists() else [str(binary), "-T", "add"]
        subprocess.run(
            [*command, "-q", "-f", str(home / "slapd.conf"), "-l", str(ldif)], check=True, capture_output=True
        )
        return server

    def _write_config(self) -> None:
        schema = _first_dir(SCHEMA_DIRS, "core.schema")
        modules = next((Path(d) for d in MODULE_DIRS if list(Path(d).glob("back_mdb*"))), None)
        module_lines = f"modulepath {modules}\nmoduleload back_mdb\n" if modules is not None else ""
        # OpenLDAP's default size limit (500) is left as it is: only MAILINGS_DN may page past it.
        (self.home / "slapd.conf").write_text(
            f"""include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
pidfile {self.home}/slapd.pid
argsfile {self.home}/slapd.args
{module_lines}TLSCACertificateFile {self.tls.ca}
TLSCertificateFile {self.tls.cert}
TLSCertificateKeyFile {self.tls.key}
database mdb
maxsize 1073741824
suffix "{BASE}"
rootdn "{ROOT_DN}"
rootpw {PASSWORD}-root
directory {self.home}/db
index objectClass,employeeType eq
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
limits dn.exact="{MAILINGS_DN}" size.prtotal=unlimited
""",
            encoding="utf-8",
        )

    def start(self) -> None:
        for _ in range(5):  # a free port may be taken between choosing it and slapd binding it
            self.ldap_port, self.ldaps_port = free_port(), free_port()
            urls = f"ldap://{HOST}:{self.ldap_port}/ ldaps://{HOST}:{self.ldaps_port}/"
            log = (self.home / "slapd.log").open("wb")
            self.process = subprocess.Popen(
                [str(self.binary), "-f", str(self.home / "slapd.conf"), "-h", urls, "-d", "0"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            if self._wait_ready():
                return
            self.stop()
        raise RuntimeError(f"slapd did not start: {(self.home / 'slapd.log').read_text(errors='replace')[-2000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_SECONDS
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if all(_accepts(port) for port in (self.ldap_port, self.ldaps_port)):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False

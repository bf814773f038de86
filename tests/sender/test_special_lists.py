"""IT's special lists at send time, against real sources: an OpenLDAP slapd with 25,500 people (one server for
the session, OpenLDAP's default size limit of 500 in force), age files made with real keys, and a real relay."""

from __future__ import annotations

import io
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyrage
import pytest
import yaml

from checks.cli import build_parser
from checks.errors import UsageError
from checks.model import SpecialListError
from checks.policy import load_policy
from sender.agefile import AgeError, decrypt_list, encrypt_list, identities
from sender.lists import SpecialLists, resolve
from tests.conftest import LOG_KEY_ENV, Repo, addresses, git
from tests.packages import required
from tests.sender.ldapserver import (
    LIMITED_DN,
    MAILINGS_DN,
    PEOPLE,
    STAFF_FILTER,
    STUDENTS_FILTER,
    Slapd,
    ensure_slapd,
    free_port,
)
from tests.sender.sending import MAILING, NOW, events, log_path, recipients
from tests.sender.smtpserver import RunningServer

OWN = 10  # the request's own list next to the special one


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """One directory server for the whole session: making and loading it takes a few seconds."""
    server = Slapd.create(required(ensure_slapd()), tmp_path_factory.mktemp("slapd"))
    server.start()
    yield server
    server.stop()


def run(argv: list[str], env: Mapping[str, str]) -> tuple[int, str]:
    args = build_parser().parse_args(argv)
    out = io.StringIO()
    return args.func(args, dict(env), out), out.getvalue()


def relay(server: RunningServer, **more: str) -> dict[str, str]:
    return {
        "MAILINGS_SMTP_HOST": server.host,
        "MAILINGS_SMTP_PORT": str(server.port),
        "MAILINGS_SMTP_SECURITY": "none",
        **LOG_KEY_ENV,
        **more,
    }


def set_list(repo: Repo, list_id: str, size: int, source: dict[str, Any] | None, **more: Any) -> None:
    """Give the test repository's policy a special list *list_id* of about *size* addresses from *source*."""
    path = repo.root / "policy.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    entry: dict[str, Any] = {"name": list_id.replace("-", " ").title(), "approximate_size": size}
    if source is not None:
        entry["source"] = source
    data["special_lists"][list_id] = entry
    data.update(more)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    repo._policy = None


def students(**ldap: str) -> dict[str, Any]:
    return {"ldap": {"base": PEOPLE, "filter": STUDENTS_FILTER, "attribute": "mail", "scope": "sub", **ldap}}


def add_mailing(repo: Repo, special: str, mailing_id: str = MAILING) -> None:
    lists = [{"file": "recipients.txt"}, {"special": special}]
    repo.add(mailing_id, changes={"recipients": {"lists": lists}}, recipients=addresses(OWN, prefix="own"))


def send(repo: Repo, env: Mapping[str, str]) -> tuple[int, str]:
    return run(["send", "--root", str(repo.root), "--now", NOW], env)


def blocked_reason(repo: Repo, mailing_id: str = MAILING) -> str:
    [blocked] = events(repo, "blocked", mailing_id)
    assert events(repo, "start", mailing_id) == [] and events(repo, "claim", mailing_id) == []
    return str(blocked["reason"])


# --- the directory ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_mailing_to_a_directory_list_reaches_every_address_exactly_once(
    repo: Repo, smtp_server: RunningServer, slapd: Slapd
) -> None:
    """20,000 students behind a size limit of 500: paged, cleaned, and each one mailed once."""
    set_list(repo, "all-students", 20_000, students())
    add_mailing(repo, "all-students")
    code, out = send(repo, {**relay(smtp_server), **slapd.env()})
    expected = slapd.people.expected_students() + recipients(OWN, prefix="own")
    assert code == 0, out
    assert smtp_server.handler.counts() == Counter({address.lower(): 1 for address in expected})
    assert (
        "special list all-students: 19994 addresses; dropped 2 duplicates, 1 invalid address, 3 entries without "
        f"one; 1 entry with more than one (the first counts), from LDAP mail of {STUDENTS_FILTER} under {PEOPLE} "
        "(scope sub)"
    ) in out
    [start] = events(repo, "start")
    about = start["special_lists"]["all-students"]
    assert about["source"] == "ldap" and about["url"] == slapd.ldaps_url and about["size"] == 19_994
    assert about["entries"] == 20_000 and about["filter"] == STUDENTS_FILTER
    assert about["dropped"] == {"duplicates": 2, "invalid": 1, "without_address": 3}
    assert start["recipients"] == 19_994 + OWN


def test_starttls_on_ldap_urls_reads_the_whole_list(repo: Repo, slapd: Slapd) -> None:
    set_list(repo, "all-employees", 5_500, {"ldap": {"base": PEOPLE, "filter": STAFF_FILTER}})
    env = slapd.env(MAILINGS_LDAP_URL=slapd.starttls_url)
    resolved = resolve(repo.policy.special_lists["all-employees"], env, repo.root)
    assert list(resolved.addresses) == slapd.people.expected_staff()
    assert resolved.provenance["url"] == slapd.starttls_url


def test_the_directory_limit_never_cuts_a_list_short(repo: Repo, slapd: Slapd) -> None:
    """A bind that may not page past the size limit gets 500 entries and a sizeLimitExceeded: not a list."""
    set_list(repo, "all-employees", 5_500, {"ldap": {"base": PEOPLE, "filter": STAFF_FILTER}})
    with pytest.raises(SpecialListError, match="stopped the search at its size limit after 500 entries"):
        resolve(repo.policy.special_lists["all-employees"], slapd.env(MAILINGS_LDAP_BIND_DN=LIMITED_DN), repo.root)


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("down", "cannot be reached"),
        ("wrong-password", f"the directory refused the bind as {MAILINGS_DN}: invalidCredentials (49)"),
        ("other-ca", "could not be verified"),
        ("no-ca", "could not be verified"),
        ("starttls-other-ca", "could not be verified"),
        ("no-match", "matched no entries; check the filter and the base in policy.yaml"),
        ("size", "it has 5500 addresses, but policy.yaml expects about 9000 (within 30%: 6300 to 11700)"),
    ],
)
def test_a_list_the_directory_cannot_give_blocks_its_mailing_and_others_go(
    repo: Repo, smtp_server: RunningServer, slapd: Slapd, case: str, why: str
) -> None:
    size, ldap = 5_500, {"base": PEOPLE, "filter": STAFF_FILTER}
    env = {**relay(smtp_server), **slapd.env()}
    if case == "down":
        env["MAILINGS_LDAP_URL"] = f"ldaps://127.0.0.1:{free_port()}"
    elif case == "wrong-password":
        env["MAILINGS_LDAP_PASSWORD"] = "not-the-password"
    elif case == "other-ca":
        env["MAILINGS_LDAP_CA_FILE"] = str(slapd.tls.other_ca)
    elif case == "no-ca":
        del env["MAILINGS_LDAP_CA_FILE"]  # the system's CAs do not know the test CA
    elif case == "starttls-other-ca":
        env |= {"MAILINGS_LDAP_URL": slapd.starttls_url, "MAILINGS_LDAP_CA_FILE": str(slapd.tls.other_ca)}
    elif case == "no-match":
        ldap["filter"] = "(&(objectClass=inetOrgPerson)(employeeType=alumnus))"
    elif case == "size":
        size = 9_000
    set_list(repo, "all-employees", size, {"ldap": ldap})
    add_mailing(repo, "all-employees")
    repo.add("2027-02-10-other", recipients=addresses(500, prefix="other"))
    code, out = send(repo, env)
    assert code == 1
    # Nothing of the blocked mailing went out; the other one did, whole.
    assert smtp_server.handler.counts() == Counter(recipients(500, prefix="other"))
    reason = blocked_reason(repo)
    assert "[recipients] the special list all-employees could not be resolved, so nothing of this mailing is sent" in (
        reason
    )
    assert why in reason, reason
    assert f"{MAILING}: blocked: " in out and why in out
    assert env["MAILINGS_LDAP_PASSWORD"] not in out + log_path(repo).read_text()


def test_a_list_is_resolved_once_per_run_and_only_when_a_mailing_uses_it(repo: Repo, slapd: Slapd) -> None:
    set_list(repo, "all-employees", 5_500, {"ldap": {"base": PEOPLE, "filter": STAFF_FILTER}})
    lines: list[str] = []
    special = SpecialLists(repo.policy, slapd.env(MAILINGS_LDAP_URL="ldaps://127.0.0.1:1"), repo.root, lines.append)
    assert "all-employees" in special and "all-students" not in special  # MAILINGS_LIST_ALL_STUDENTS is not set
    assert lines == []  # nothing reached yet
    for _ in range(2):
        with pytest.raises(SpecialListError, match="cannot be reached"):
            special["all-employees"]
    assert len(lines) == 1 and lines[0].startswith("special list all-employees: cannot be sent to: ")


def test_the_private_file_is_0600_in_a_0700_directory_removed_afterwards(repo: Repo, slapd: Slapd) -> None:
    set_list(repo, "all-employees", 5_500, {"ldap": {"base": PEOPLE, "filter": STAFF_FILTER}})
    special = SpecialLists(repo.policy, slapd.env(), repo.root)
    path = special["all-employees"]
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert path.read_text(encoding="utf-8").splitlines() == slapd.people.expected_staff()
    del special
    assert not path.parent.exists()


def test_mailings_lists_resolve_says_size_and_age(repo: Repo, slapd: Slapd) -> None:
    set_list(repo, "all-employees", 5_500, {"ldap": {"base": PEOPLE, "filter": STAFF_FILTER}})
    code, out = run(["lists", "--root", str(repo.root), "--resolve"], slapd.env())
    assert code == 1  # all-students has no MAILINGS_LIST_ALL_STUDENTS here
    assert f"    source: LDAP mail of {STAFF_FILTER} under {PEOPLE} (scope sub)\n" in out
    assert "    size: about 5500; a mailing to it is blocked outside 3850 to 7150 (tolerance 30%)\n" in out
    assert "    resolved: 5500 addresses; last changed " in out and " minutes ago (" in out
    assert "all-students: All students\n" in out and "    resolved: no: MAILINGS_LIST_ALL_STUDENTS is not set" in out


# --- age files ----------------------------------------------------------------------------------------------------


class Keys:
    """The dispatch job's key and an IT person's key, as age-keygen would make them."""

    def __init__(self) -> None:
        self.dispatch = pyrage.x25519.Identity.generate()
        self.person = pyrage.x25519.Identity.generate()
        self.stranger = pyrage.x25519.Identity.generate()

    @staticmethod
    def text(identity: pyrage.x25519.Identity) -> str:
        return f"# created: 2027-01-10T10:00:00+01:00\n# public key: {identity.to_public()}\n{identity}\n"

    @property
    def public(self) -> list[str]:
        return [str(self.dispatch.to_public()), str(self.person.to_public())]


@pytest.fixture
def keys() -> Keys:
    return Keys()


STAFF = [f"staff{n}@kth.se" for n in range(5_500)]


def with_age_list(repo: Repo, keys: Keys, content: bytes | None = None) -> Path:
    """all-employees from lists/all-employees.txt.age, committed; the file's path."""
    set_list(
        repo, "all-employees", 5_500, {"file": "lists/all-employees.txt.age"}, special_lists_recipients=keys.public
    )
    path = repo.root / "lists" / "all-employees.txt.age"
    path.parent.mkdir(exist_ok=True)
    plain = ("\n".join(STAFF) + "\nSTAFF1@kth.se\nnot an address\n").encode()
    path.write_bytes(encrypt_list(plain, keys.public) if content is None else content)
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "The staff list")
    return path


def test_an_age_list_round_trips_armoured_and_gzipped(keys: Keys) -> None:
    plain = ("\n".join(STAFF) + "\n").encode()
    data = encrypt_list(plain, keys.public)
    assert data.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----") and len(data) < len(plain) / 3
    for identity in (keys.dispatch, keys.person):
        assert decrypt_list(data, identities(Keys.text(identity)), 10**8) == plain
    # What the age command line makes from a plain list reads the same.
    assert decrypt_list(pyrage.encrypt(plain, [keys.dispatch.to_public()]), [keys.dispatch], 10**8) == plain


def test_a_mailing_to_an_age_list_reaches_every_address_once_and_records_the_commit(
    repo: Repo, smtp_server: RunningServer, keys: Keys
) -> None:
    path = with_age_list(repo, keys)
    add_mailing(repo, "all-employees")
    code, out = send(repo, {**relay(smtp_server), "MAILINGS_AGE_IDENTITY": Keys.text(keys.dispatch)})
    assert code == 0, out
    assert smtp_server.handler.counts() == Counter({a.lower(): 1 for a in STAFF + recipients(OWN, prefix="own")})
    assert "special list all-employees: 5500 addresses; dropped 1 duplicate, 1 invalid address, from the " in out
    [start] = events(repo, "start")
    commit, date = git(repo.root, "log", "-1", "--format=%H %cI", "--", "lists/all-employees.txt.age").split()
    about = start["special_lists"]["all-employees"]
    assert about == {
        "source": "file",
        "path": "lists/all-employees.txt.age",
        "commit": commit,
        "committed_at": date,
        "size": 5_500,
        "dropped": {"duplicates": 1, "invalid": 1, "without_address": 0},
    }
    assert path.exists()
    assert str(keys.dispatch) not in out + log_path(repo).read_text()


@pytest.mark.parametrize(
    ("identity", "why"),
    [
        (None, "MAILINGS_AGE_IDENTITY is not set, so lists/all-employees.txt.age cannot be decrypted"),
        ("stranger", "cannot be decrypted with MAILINGS_AGE_IDENTITY: it is not encrypted for the key given"),
        ("garbled", "line 3 of MAILINGS_AGE_IDENTITY is not an age identity (AGE-SECRET-KEY-1...)"),
    ],
)
def test_a_wrong_or_missing_identity_blocks_the_mailing(
    repo: Repo, smtp_server: RunningServer, keys: Keys, identity: str | None, why: str
) -> None:
    with_age_list(repo, keys)
    add_mailing(repo, "all-employees")
    env = relay(smtp_server)
    if identity == "stranger":
        env["MAILINGS_AGE_IDENTITY"] = Keys.text(keys.stranger)
        why += f" (public key {keys.stranger.to_public()})"
    elif identity == "garbled":
        env["MAILINGS_AGE_IDENTITY"] = Keys.text(keys.dispatch).replace("AGE-SECRET-KEY-1", "AGE-SECRET-KEY-7")
    code, out = send(repo, env)
    assert code == 1 and smtp_server.handler.connections == 0
    reason = blocked_reason(repo)
    assert why in reason and why in out
    for secret in env.get("MAILINGS_AGE_IDENTITY", "").splitlines()[-1:]:
        assert secret not in out + log_path(repo).read_text()


def test_a_plain_file_under_the_encrypted_name_is_not_sent_to(
    repo: Repo, smtp_server: RunningServer, keys: Keys
) -> None:
    with_age_list(repo, keys, content=("\n".join(STAFF) + "\n").encode())
    add_mailing(repo, "all-employees")
    code, _ = send(repo, {**relay(smtp_server), "MAILINGS_AGE_IDENTITY": Keys.text(keys.dispatch)})
    assert code == 1 and smtp_server.handler.connections == 0
    assert "it is not a readable age file" in blocked_reason(repo)


def test_the_check_refuses_a_plain_list_where_an_encrypted_one_is_expected(repo: Repo, keys: Keys) -> None:
    with_age_list(repo, keys, content=("\n".join(STAFF) + "\n").encode())
    (repo.root / "lists" / "all-employees.txt").write_text("anna@kth.se\n", encoding="utf-8")
    code, out = run(["check", "--root", str(repo.root), "--submitted", "2027-01-11"], {})
    assert code == 1
    assert out.startswith(
        "lists/all-employees.txt:1:1: error [special-lists] lists/all-employees.txt stands next to "
        "lists/all-employees.txt.age, the encrypted special list all-employees, and is most likely its plain text"
    )
    assert (
        "lists/all-employees.txt.age:1:1: error [special-lists] the special list all-employees must be encrypted "
        "with age, but lists/all-employees.txt.age is not: whoever can read the repository can read these addresses"
    ) in out


def test_lists_encrypt_and_edit_keep_the_list_private(
    repo: Repo, keys: Keys, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    source = {"file": "lists/all-employees.txt.age"}
    set_list(repo, "all-employees", 5_500, source, special_lists_recipients=keys.public)
    plain = tmp_path_factory.mktemp("private") / "staff.txt"
    plain.write_text("\n".join(STAFF) + "\n", encoding="utf-8")
    target = repo.root / "lists" / "all-employees.txt.age"
    # Where no file can be written (its folder is missing): said, nothing left behind.
    with pytest.raises(UsageError, match=f"^{re.escape(str(target))}: cannot be written: No such file or directory$"):
        run(["lists", "encrypt", str(plain), str(target), "--root", str(repo.root)], {})
    target.parent.mkdir()
    code, out = run(["lists", "encrypt", str(plain), str(target), "--root", str(repo.root)], {})
    assert (code, out) == (0, f"{target}: 5500 addresses; encrypted for 2 public key(s)\n")
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]
    # A plain list inside the repository is pointed out: it must never be committed.
    inside = repo.root / "staff.txt"
    inside.write_bytes(plain.read_bytes())
    code, out = run(["lists", "encrypt", str(inside), str(target), "--root", str(repo.root)], {})
    assert code == 0 and f"note: {inside} is inside the repository: delete it now, and never commit it" in out
    inside.unlink()
    identity = tmp_path / "me.txt"
    identity.write_text(Keys.text(keys.person), encoding="utf-8")
    # The editor: appends one address, and records where and how private its file was.
    editor = tmp_path / "editor.py"
    seen = tmp_path / "seen.json"
    editor.write_text(
        "import json, os, sys\n"
        "path = sys.argv[1]\n"
        "mode = lambda p: os.stat(p).st_mode & 0o777\n"
        "info = {'path': path, 'mode': mode(path), 'dir': mode(os.path.dirname(path))}\n"
        f"json.dump(info, open({str(seen)!r}, 'w'))\n"
        "open(path, 'a').write('new.person@kth.se\\n')\n",
        encoding="utf-8",
    )
    env = {"EDITOR": f"{sys.executable} {editor}"}
    code, out = run(["lists", "edit", str(target), "--identity", str(identity), "--root", str(repo.root)], env)
    assert (code, out) == (0, f"{target}: 5501 addresses, was 5500 addresses; encrypted for 2 public key(s)\n")
    info = json.loads(seen.read_text())
    assert (info["mode"], info["dir"]) == (0o600, 0o700) and not Path(info["path"]).exists()
    assert not str(info["path"]).startswith(str(repo.root))
    text = decrypt_list(target.read_bytes(), [keys.dispatch], 10**8).decode()
    assert text.splitlines() == [*STAFF, "new.person@kth.se"]
    # The dispatch job resolves it.
    env = {"MAILINGS_AGE_IDENTITY": Keys.text(keys.dispatch)}
    resolved = resolve(load_policy(repo.root).special_lists["all-employees"], env, repo.root)
    assert len(resolved.addresses) == 5_501
    # A change of keys: the person's key leaves the policy, and the list is encrypted again for the rest.
    set_list(repo, "all-employees", 5_500, source, special_lists_recipients=keys.public[:1])
    argv = ["lists", "edit", str(target), "--reencrypt", "--identity", str(identity), "--root", str(repo.root)]
    assert run(argv, {}) == (0, f"{target}: 5501 addresses, was 5501 addresses; encrypted for 1 public key(s)\n")
    assert len(resolve(load_policy(repo.root).special_lists["all-employees"], env, repo.root).addresses) == 5_501
    with pytest.raises(AgeError, match="not encrypted for the key given"):
        decrypt_list(target.read_bytes(), [keys.person], 10**8)


def test_mailings_lists_says_where_each_list_comes_from(repo: Repo, keys: Keys) -> None:
    with_age_list(repo, keys)
    set_list(repo, "all-students", 20_000, students(), special_lists_recipients=keys.public)
    commit, date = git(repo.root, "log", "-1", "--format=%H %cI").split()
    code, out = run(["lists", "--root", str(repo.root)], {})
    assert code == 0
    assert out == (
        "all-employees: All Employees\n"
        f"    source: the encrypted file lists/all-employees.txt.age, last changed in {commit[:12]} on {date}\n"
        "    size: about 5500; a mailing to it is blocked outside 3850 to 7150 (tolerance 30%)\n"
        "all-students: All Students\n"
        f"    source: LDAP mail of {STUDENTS_FILTER} under {PEOPLE} (scope sub)\n"
        "    size: about 20000; a mailing to it is blocked outside 14000 to 26000 (tolerance 30%)\n"
    )


def test_lists_given_as_plain_files_are_recorded_as_given(repo: Repo, smtp_server: RunningServer) -> None:
    """A caller's own mapping of files (not resolved here) says nothing of where they came from, but its size."""
    from tests.sender.sending import send as send_with

    staff = repo.root.parent / "staff.txt"
    staff.write_text(addresses(600, prefix="staff"), encoding="utf-8")
    add_mailing(repo, "all-employees")
    [outcome] = send_with(repo, smtp_server, special={"all-employees": staff})
    [start] = events(repo, "start")
    assert outcome.ok and start["special_lists"] == {"all-employees": {"source": "given", "size": 600}}

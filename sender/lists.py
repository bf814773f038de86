"""IT's special lists at send time: each resolved from its source, cleaned, held to its size, and handed to the
loader as a private file, so the rules and the sender read it exactly as any list.

Sources (policy.yaml, `special_lists.<id>.source`): the user directory over LDAP (sender.directory), a file in the
repository encrypted with age (sender.agefile, the identity in MAILINGS_AGE_IDENTITY), or a file an environment
variable names (MAILINGS_LIST_<ID> when no source is given).

Owns: reaching the source, dropping duplicates and invalid addresses (counted, said in the output), the sanity
bounds (an empty list, or one far from the policy's approximate_size, is not a list to send to), the private files
(0600 in a 0700 temporary directory, removed when the run ends) and the provenance that a send log's start event
records. A list that cannot be resolved becomes its reason: the loader makes it an unresolved list, which the
recipients rule turns into an error, so every mailing that uses it is blocked and nothing of it is sent. Never
decides what is sent, never prints (it reports through a callable), never reads os.environ.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from checks.addresses import address_problem, normalise
from checks.changes import last_change
from checks.loader import MAX_LIST_BYTES, parse_text_list, read_failure, read_regular
from checks.model import Mailing, SpecialListError
from checks.policy import EnvSource, FileSource, LdapSource, Policy, SpecialList

Report = Callable[[str], None]


@dataclass(frozen=True)
class Resolved:
    """One special list as resolved: its addresses (valid, each once, in the source's order) and what it took."""

    list_id: str
    addresses: tuple[str, ...]
    duplicates: int = 0
    invalid: int = 0
    without_address: int = 0  # directory entries without the attribute
    several: int = 0  # directory entries with more than one value of it (the first counts)
    changed: datetime | None = None  # when the list last changed: commit, file time, newest directory entry
    provenance: Mapping[str, Any] = field(default_factory=dict)  # for the send log: the source, and its version

    def summary(self) -> str:
        dropped = []
        if self.duplicates:
            dropped.append(f"{self.duplicates} duplicate{'s' if self.duplicates != 1 else ''}")
        if self.invalid:
            dropped.append(f"{self.invalid} invalid address{'es' if self.invalid != 1 else ''}")
        if self.without_address:
            dropped.append(f"{self.without_address} entr{'ies' if self.without_address != 1 else 'y'} without one")
        left_out = f"; dropped {', '.join(dropped)}" if dropped else ""
        if self.several:
            entries = f"{self.several} entr{'ies' if self.several != 1 else 'y'}"
            left_out += f"; {entries} with more than one (the first counts)"
        return f"{len(self.addresses)} addresses{left_out}"


def resolve(special: SpecialList, env: Mapping[str, str], root: Path, *, age: bool = False) -> Resolved:
    """*special* read from its source and cleaned; SpecialListError with the reason when it cannot be sent to.
    *age*: learn when a directory list last changed too (the newest entry; it costs the search a quarter more)."""
    source = special.source
    try:
        if isinstance(source, LdapSource):
            resolved = _from_directory(special.id, source, env, age)
        elif isinstance(source, FileSource):
            resolved = _from_age_file(special.id, source, env, root)
        else:
            resolved = _from_env_file(special.id, source, env)
    except SpecialListError as exc:
        raise SpecialListError(_scrub(str(exc), env)) from None
    problem = special.size_problem(len(resolved.addresses))
    if problem is not None:
        raise SpecialListError(f"{source.describe()}: {problem} ({resolved.summary()})")
    return resolved


def clean(values: list[str], list_id: str, **found: Any) -> Resolved:
    """*values* as a list to send to: invalid addresses and repeats (in any letter case) dropped, and counted."""
    addresses: list[str] = []
    seen: set[str] = set()
    duplicates = invalid = 0
    for value in values:
        value = value.strip()
        key = normalise(value)
        if key in seen:
            duplicates += 1
        elif address_problem(value) is not None:
            invalid += 1
        else:
            seen.add(key)
            addresses.append(value)
    return Resolved(list_id, tuple(addresses), duplicates, invalid, **found)


def _from_directory(list_id: str, source: LdapSource, env: Mapping[str, str], age: bool) -> Resolved:
    from sender.directory import DirectoryError, search, settings_from_env

    try:
        settings = settings_from_env(env)
        found = search(settings, source, stamps=age)
    except DirectoryError as exc:
        raise SpecialListError(str(exc)) from None
    if not found.entries:
        raise SpecialListError(
            f"the search in {settings.url} for {source.filter} under {source.base} matched no entries; check the "
            "filter and the base in policy.yaml, and that the bind may read them"
        )
    provenance = {
        "source": "ldap",
        "url": settings.url,
        "base": source.base,
        "filter": source.filter,
        "attribute": source.attribute,
        "scope": source.scope,
        "entries": found.entries,
    }
    if found.newest_change is not None:
        provenance["newest_change"] = found.newest_change.isoformat()
    resolved = clean(
        found.values,
        list_id,
        without_address=found.without,
        several=found.several,
        changed=found.newest_change,
        provenance=provenance,
    )
    if not resolved.addresses:
        raise SpecialListError(
            f"the search in {settings.url} for {source.filter} matched {found.entries} entries, none with a valid "
            f"address in {source.attribute}"
        )
    return resolved


def _from_age_file(list_id: str, source: FileSource, env: Mapping[str, str], root: Path) -> Resolved:
    from sender.agefile import IDENTITY_VARIABLE, AgeError, decrypt_list, identities

    text = env.get(IDENTITY_VARIABLE, "")
    if not text.strip():
        raise SpecialListError(
            f"{IDENTITY_VARIABLE} is not set, so {source.path} cannot be decrypted: set it to the dispatch job's "
            "age identity (AGE-SECRET-KEY-1...)"
        )
    try:
        # A link is not followed: the list is the file the repository holds at that path, reviewed as such.
        data = read_regular(root / source.path, MAX_LIST_BYTES)
    except (OSError, ValueError) as exc:
        raise SpecialListError(f"{source.path} cannot be read: {read_failure(exc)}") from None
    try:
        plain = decrypt_list(data, identities(text), MAX_LIST_BYTES)
    except AgeError as exc:
        raise SpecialListError(
            f"{source.path} cannot be decrypted with {IDENTITY_VARIABLE}: {exc}; encrypt it for the dispatch "
            "job's public key too (add it to special_lists_recipients in policy.yaml, then `mailings lists edit "
            f"{source.path}`)"
        ) from None
    change = last_change(root, source.path)
    provenance: dict[str, Any] = {"source": "file", "path": source.path}
    changed = None
    if change is not None:
        provenance |= {"commit": change.commit, "committed_at": change.date}
        if change.uncommitted:
            provenance["uncommitted"] = True  # the checkout's file differs from that commit
        changed = _aware(change.date)
    return _text_list(plain, list_id, source.path, changed, provenance)


def _from_env_file(list_id: str, source: EnvSource, env: Mapping[str, str]) -> Resolved:
    value = env.get(source.variable, "").strip()
    if not value:
        raise SpecialListError(
            f"{source.variable} is not set: set it to the file that holds the list, one address per line"
        )
    path = Path(value)
    try:
        # IT's own file, named by the environment: a link to it is followed, unlike in a request.
        data = read_regular(path, MAX_LIST_BYTES, follow=True)
        modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except (OSError, ValueError) as exc:
        raise SpecialListError(f"{path} (named by {source.variable}) cannot be read: {read_failure(exc)}") from None
    provenance = {"source": "env", "variable": source.variable, "modified_at": modified.isoformat()}
    return _text_list(data, list_id, str(path), modified, provenance)


def _text_list(data: bytes, list_id: str, shown: str, changed: datetime | None, provenance: dict[str, Any]) -> Resolved:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SpecialListError(f"{shown} is not valid UTF-8") from None
    values = [entry.address for entry in parse_text_list(text, shown)]
    resolved = clean(values, list_id, changed=changed, provenance=provenance)
    if not resolved.addresses:
        raise SpecialListError(f"{shown} holds no valid addresses")
    return resolved


def _aware(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _scrub(text: str, env: Mapping[str, str]) -> str:
    """*text* with the directory's password and the age identity masked, should a server's reply ever echo one."""
    from sender.agefile import IDENTITY_VARIABLE
    from sender.directory import PASSWORD

    for name in (PASSWORD, IDENTITY_VARIABLE):
        secret = env.get(name, "").strip()
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class SpecialLists(Mapping[str, Path]):
    """The special lists of one send run, as the loader takes them: list id -> a private file of its addresses.

    A list is resolved the first time a mailing that uses it is loaded, once per run; one that cannot be resolved
    raises SpecialListError with the reason, every time it is asked for. A list from an environment variable that
    is not set is not in the mapping (the recipients rule names the variable to set). The files go when the run
    ends (or this object does).
    """

    def __init__(self, policy: Policy, env: Mapping[str, str], root: Path, report: Report | None = None) -> None:
        self._policy = policy
        self._env = dict(env)
        self._root = root
        self._report = report or (lambda _line: None)
        self._done: dict[str, Path | SpecialListError] = {}
        self._resolved: dict[str, Resolved] = {}
        self._directory: Path | None = None

    def __contains__(self, list_id: object) -> bool:
        special = self._policy.special_lists.get(list_id) if isinstance(list_id, str) else None
        if special is None:
            return False
        source = special.source
        return not isinstance(source, EnvSource) or bool(self._env.get(source.variable, "").strip())

    def __iter__(self) -> Iterator[str]:
        return (list_id for list_id in self._policy.special_lists if list_id in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __getitem__(self, list_id: str) -> Path:
        if list_id not in self:
            raise KeyError(list_id)
        if list_id not in self._done:
            self._done[list_id] = self._resolve(list_id)
        found = self._done[list_id]
        if isinstance(found, SpecialListError):
            raise found
        return found

    def resolved(self, list_id: str) -> Resolved | None:
        """What resolving *list_id* gave, once it has been resolved."""
        return self._resolved.get(list_id)

    def _resolve(self, list_id: str) -> Path | SpecialListError:
        special = self._policy.special_lists[list_id]
        try:
            resolved = resolve(special, self._env, self._root)
        except SpecialListError as exc:
            self._report(f"special list {list_id}: cannot be sent to: {exc}")
            return exc
        except Exception as exc:  # a fault of a client library: the list is not to be had, said as it is
            failure = SpecialListError(_scrub(f"resolving it failed ({type(exc).__name__}: {exc})", self._env))
            self._report(f"special list {list_id}: cannot be sent to: {failure}")
            return failure
        self._resolved[list_id] = resolved
        self._report(f"special list {list_id}: {resolved.summary()}, from {special.source.describe()}")
        return self._write(list_id, resolved.addresses)

    def _write(self, list_id: str, addresses: tuple[str, ...]) -> Path:
        if self._directory is None:
            # mkdtemp makes it 0700; it goes when this object does, or at exit.
            self._directory = Path(tempfile.mkdtemp(prefix="mailings-lists-"))
            weakref.finalize(self, shutil.rmtree, self._directory, ignore_errors=True)
        path = self._directory / f"{list_id}.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("\n".join(addresses))
            out.write("\n")
        return path

    def close(self) -> None:
        """Remove the private files now."""
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


def start_fields(special: Mapping[str, Path], mailing: Mailing) -> dict[str, Any]:
    """The provenance of *mailing*'s special lists for its send log's start event: per list the source, its size
    and the version read (for a file, the commit and date of its last change); nothing when it uses none."""
    described: dict[str, Any] = {}
    for lst in mailing.lists:
        if lst.kind != "special" or not lst.resolved:
            continue
        resolved = special.resolved(lst.name) if isinstance(special, SpecialLists) else None
        # A mapping of plain files (a caller of its own) says nothing of where they came from.
        about: dict[str, Any] = dict(resolved.provenance) if resolved is not None else {"source": "given"}
        about["size"] = len(lst.addresses)
        if resolved is not None:
            about["dropped"] = {
                "duplicates": resolved.duplicates,
                "invalid": resolved.invalid,
                "without_address": resolved.without_address,
            }
        described[lst.name] = about
    return {"special_lists": described} if described else {}

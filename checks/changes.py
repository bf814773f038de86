"""What differs from a base ref, asked of git at the command line's edge.

`--changed-since REF` compares the base with what this checkout would merge:
the diff runs from the merge base of REF and HEAD (what `git diff REF...HEAD`
shows), so mailings sent on REF after the branch was made do not count as
changes of the branch. It runs against the working tree and includes
untracked files, so a requester checking locally before committing sees the
same verdict CI will give; in CI the checkout is clean and the two agree.
Renames are detected (`-M`) and count as a change of both paths.

Only this module runs git for the checks; what it learns travels to the rules
in the Context.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checks.errors import UsageError
from checks.linter import check_mailing
from checks.loader import MAILINGS_DIR
from checks.model import (
    CLAIM_BRANCH_PREFIX,
    CONTROL_FIELDS,
    MAILING_FILE,
    SCHEMA_FILE,
    SENDLOG_FILE,
    BasePolicy,
    ChangeStatus,
    Context,
    FileChange,
    Mailing,
    Problem,
    YamlEdit,
    dispatched,
)
from checks.policy import POLICY_FILE, POLICY_SCHEMA, FileSource, Policy, load_policy
from checks.rules import RULES, immutable
from checks.yamlsafe import YamlError, loads

_STATUS: Mapping[str, ChangeStatus] = {
    "A": "added",
    "M": "modified",
    "D": "deleted",
    "R": "renamed",
    "C": "copied",
    "T": "type-changed",
    "U": "modified",  # unmerged: the file differs, whatever the conflict
}


@dataclass(frozen=True)
class BaseState:
    """What the base says: the ref as given, the changes against it, the mailings sent (id: the ref that says so)."""

    ref: str
    changes: tuple[FileChange, ...]
    sent: Mapping[str, str]
    yaml_edits: Mapping[str, YamlEdit] = field(default_factory=dict)
    commit: str = ""  # the commit the ref names
    merge_base: str = ""  # the commit the changes are counted from


def git(root: Path, *args: str) -> bytes:
    """Output of a read-only git command in *root*; UsageError with git's own words if it fails."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=False)
    except FileNotFoundError:
        raise UsageError("--changed-since needs git, which is not installed") from None
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UsageError(f"git {args[0]} failed: {reason[-1] if reason else f'exit {done.returncode}'}")
    return done.stdout


def read_at(root: Path, commit: str, path: str) -> bytes | None:
    """The bytes of *path* (relative to the root) in *commit*, as git stores them; None when git cannot show it."""
    return _read(lambda: git(root, "show", f"{commit}:./{path}"))


@dataclass(frozen=True)
class LastChange:
    """The last commit that changed a file: its id and committer date (ISO 8601); whether the working tree differs."""

    commit: str
    date: str
    uncommitted: bool = False


def last_change(root: Path, path: str) -> LastChange | None:
    """`git log -1 --format='%H %cI' -- PATH`: when *path* last changed; None outside a git repository, without
    git, or for a file no commit has."""
    try:
        log = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%H %cI", "--", path], capture_output=True, check=False
        )
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", path], capture_output=True, check=False
        )
    except OSError:
        return None
    fields = log.stdout.decode("ascii", "replace").split()
    if log.returncode != 0 or len(fields) != 2:
        return None
    return LastChange(fields[0], fields[1], uncommitted=status.returncode != 0 or bool(status.stdout.strip()))


def list_changes(root: Path, policy: Policy) -> dict[str, LastChange]:
    """The last change of each special list's encrypted file, by list id (lists without a committed file left out)."""
    found: dict[str, LastChange] = {}
    for special in policy.special_lists.values():
        if isinstance(special.source, FileSource):
            change = last_change(root, special.source.path)
            if change is not None:
                found[special.id] = change
    return found


def read_base(root: Path, ref: str) -> BaseState:
    """Ask git what differs from *ref*, and which mailings were sent: on it, or on their claim branches."""
    git(root, "rev-parse", "--is-inside-work-tree")
    commit = resolve_commit(root, ref, "--changed-since")
    merge_base = _merge_base(root, ref, commit)
    changes = tuple(sorted(_diff(root, merge_base)))
    return BaseState(ref, changes, _sent(root, commit, ref), _yaml_edits(root, merge_base, changes), commit, merge_base)


# What a policy consists of: a checkout whose copies differ from the base's is judged against the base's as well.
POLICY_FILES = (POLICY_FILE, POLICY_SCHEMA, SCHEMA_FILE)


@contextmanager
def base_policy(root: Path, commit: str) -> Iterator[BasePolicy | None]:
    """The policy and schema of *commit* when this checkout's differ from them, read with git (nothing is checked
    out) into a temporary directory that lasts as long as the context. None when they are the same, when the base
    has no policy.yaml, or when its policy does not load: then only this checkout's policy can judge."""
    changed: list[str] = []
    blobs: dict[str, bytes] = {}
    for path in POLICY_FILES:
        then = read_at(root, commit, path)
        if then != _read((root / path).read_bytes):
            changed.append(path)
        if then is not None:
            blobs[path] = then
    if not changed or POLICY_FILE not in blobs:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="mailings-base-") as directory:
        where = Path(directory)
        for path, data in blobs.items():
            (where / path).parent.mkdir(parents=True, exist_ok=True)
            (where / path).write_bytes(data)
        try:
            policy = load_policy(where)
        except UsageError:
            policy = None
        yield None if policy is None else BasePolicy(policy, where, tuple(changed))


def _yaml_edits(root: Path, merge_base: str, changes: Iterable[FileChange]) -> dict[str, YamlEdit]:
    """For each request's mailing.yaml that the change edits: does it touch only control fields, does it remove
    a cancel. Compared as parsed fields, so comments and layout do not count; a side that does not parse is
    a change of content."""
    edits: dict[str, YamlEdit] = {}
    for change in changes:
        parts = change.path.split("/")
        if change.status != "modified" or len(parts) != 3 or parts[0] != MAILINGS_DIR or parts[2] != MAILING_FILE:
            continue
        before = _fields(read_at(root, merge_base, change.path))
        after = _fields(_read((root / change.path).read_bytes))
        control_only = before is not None and after is not None and _content(before) == _content(after)
        cancel_removed = before is not None and "cancel" in before and (after is None or "cancel" not in after)
        edits[change.path] = YamlEdit(control_only, cancel_removed)
    return edits


def _read(read: Callable[[], bytes]) -> bytes | None:
    try:
        return read()
    except (OSError, UsageError):
        return None


def _fields(raw: bytes | None) -> dict[str, Any] | None:
    """A mailing.yaml's top-level fields, or None when it is missing or does not parse as one mapping."""
    if raw is None:
        return None
    try:
        data = loads(raw.decode("utf-8")).data
    except (UnicodeDecodeError, YamlError):
        return None
    return data if isinstance(data, dict) else None


def _content(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if key not in CONTROL_FIELDS}


def _merge_base(root: Path, ref: str, commit: str) -> str:
    try:
        return git(root, "merge-base", commit, "HEAD").decode().strip()
    except UsageError:
        raise UsageError(
            f"--changed-since {ref}: it shares no history with HEAD; in a shallow clone, fetch the full history "
            "(actions/checkout with fetch-depth: 0)"
        ) from None


def _diff(root: Path, merge_base: str) -> Iterable[FileChange]:
    # --relative: paths relative to the root, also when the root is a subdirectory of the repository.
    out = git(root, "diff", "--name-status", "-z", "-M", "--no-ext-diff", "--relative", merge_base, "--")
    yield from parse_name_status(out)
    untracked = git(root, "ls-files", "-z", "--others", "--exclude-standard")
    yield from (FileChange(path, "added") for path in _split(untracked))


def parse_name_status(out: bytes) -> Iterable[FileChange]:
    """`git diff --name-status -z` output as changes (renames and copies carry their old path)."""
    fields = _split(out)
    i = 0
    while i < len(fields):
        letter = fields[i][:1]
        status = _STATUS.get(letter)
        if letter in ("R", "C"):
            old, new = fields[i + 1], fields[i + 2]
            i += 3
            if status is not None:
                yield FileChange(new, status, old)
            continue
        path = fields[i + 1]
        i += 2
        if status is not None:
            yield FileChange(path, status)


def _split(out: bytes) -> list[str]:
    # surrogateescape: a path that is not UTF-8 still names the same file
    return [part.decode("utf-8", "surrogateescape") for part in out.split(b"\0") if part]


def _sent(root: Path, commit: str, ref: str) -> dict[str, str]:
    """Mailings whose send log shows that sending started (checks.model.dispatched), each with the ref it shows
    on: *commit* (the base, named *ref*), or the mailing's claim branch, where the dispatch job records its claim
    before the first message and its progress until the log reaches main. A claim branch counts for as long as
    it exists here, so a run still sending, or killed before it got to main, makes the mailing history as well.

    A log that records only why a mailing was not sent (blocked, missed) leaves it open to a fix or a new date:
    that is what those events ask a person for.
    """
    out = git(root, "ls-tree", "-r", "-z", "--name-only", commit, "--", MAILINGS_DIR)
    # rev:./path is the path from the root, also when the root is a subdirectory of the repository
    logs = [
        (path.split("/")[1], f"{commit}:./{path}", ref)
        for path in _split(out)
        if path.count("/") == 2 and path.endswith(f"/{SENDLOG_FILE}")
    ]
    logs += _claimed(root)
    if not logs:
        return {}
    sent: dict[str, str] = {}
    for (mailing_id, _, where), blob in zip(logs, _cat(root, [spec for _, spec, _ in logs]), strict=True):
        if mailing_id not in sent and blob is not None and dispatched(blob.splitlines()):
            sent[mailing_id] = where
    return sent


def _claimed(root: Path) -> list[tuple[str, str, str]]:
    """(mailing id, its send log on the claim branch, the branch's name) for each claim branch this clone has:
    its own, and every remote's as last fetched."""
    out = git(
        root,
        "for-each-ref",
        "--format=%(objectname) %(refname)",
        f"refs/heads/{CLAIM_BRANCH_PREFIX}",
        f"refs/remotes/*/{CLAIM_BRANCH_PREFIX}*",
    )
    claims: list[tuple[str, str, str]] = []
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        oid, refname = line.split(" ", 1)
        if refname.startswith("refs/heads/"):
            name = refname.removeprefix("refs/heads/")
            mailing_id = name.removeprefix(CLAIM_BRANCH_PREFIX)
        else:  # refs/remotes/<remote>/mailings-sending/<id>: the pattern's * matches no slash
            name = refname.removeprefix("refs/remotes/")
            mailing_id = name.split("/", 1)[1].removeprefix(CLAIM_BRANCH_PREFIX)
        if mailing_id and "/" not in mailing_id:  # a request is one directory directly under mailings/
            claims.append((mailing_id, f"{oid}:./{MAILINGS_DIR}/{mailing_id}/{SENDLOG_FILE}", name))
    return claims


def _cat(root: Path, specs: Iterable[str]) -> list[bytes | None]:
    """The contents of the objects *specs* name (an object id, or rev:./path), in order, read by one
    `git cat-file --batch`; None for one that is not there. The request is one spec a line, so a path with a
    line break in it cannot be asked: None (it names no request, and would have shifted every answer after it)."""
    specs = list(specs)
    request = "".join(f"{spec}\n" for spec in specs if "\n" not in spec).encode("utf-8", "surrogateescape")
    done = subprocess.run(
        ["git", "-C", str(root), "cat-file", "--batch"], input=request, capture_output=True, check=False
    )
    if done.returncode != 0:
        raise UsageError(f"git cat-file failed: {done.stderr.decode('utf-8', 'replace').strip()}")
    found = iter(_blobs(done.stdout))
    return [None if "\n" in spec else next(found) for spec in specs]


def _blobs(out: bytes) -> Iterable[bytes | None]:
    """The contents in `git cat-file --batch` output, in order; None for an object that is not there."""
    at = 0
    while at < len(out):
        header_end = out.index(b"\n", at)
        header = out[at:header_end]
        if header.endswith((b" missing", b" ambiguous")):
            yield None
            at = header_end + 1
            continue
        size = int(header.split()[2])
        yield out[header_end + 1 : header_end + 1 + size]
        at = header_end + 1 + size + 1


def mailing_of(path: str) -> str | None:
    """The id of the mailing a path belongs to: mailings/<id> itself or anything below it."""
    parts = path.split("/")
    return parts[1] if len(parts) >= 2 and parts[0] == MAILINGS_DIR and parts[1] else None


def changed_mailings(changes: Iterable[FileChange]) -> list[str]:
    """Ids of the mailings any change touches (both sides of a rename), sorted."""
    ids = {mailing_of(path) for change in changes for path in change.paths}
    return sorted(i for i in ids if i is not None)


def split_present(root: Path, changes: Iterable[FileChange]) -> tuple[list[Path], list[str]]:
    """Changed mailings that stand as directories (to load and check), and those whose directory is gone.

    Gone is also a directory that something else replaced (a file, a link to a file or to nothing): what was
    deleted from it is judged all the same ([immutable] alone, in check_gone), whatever now stands there. A
    changed entry directly under mailings/ that never had files below it was no request: [layout] judges it.
    """
    changes = list(changes)
    had_files = {mailing_of(path) for change in changes for path in change.paths if path.count("/") >= 2}
    present: list[Path] = []
    gone: list[str] = []
    for mailing_id in changed_mailings(changes):
        directory = root / MAILINGS_DIR / mailing_id
        if directory.is_dir():  # a link to a directory too: loaded as a link, which [attachments] reports
            present.append(directory)
        elif mailing_id in had_files:
            gone.append(mailing_id)
    return present, gone


def check_gone(root: Path, ids: Iterable[str], policy: Policy, context: Context) -> list[Problem]:
    """Judge mailings whose directory this branch removed: nothing is left to load, but the removal
    itself may break a rule, so [immutable], the one rule about changes, still runs."""
    problems: list[Problem] = []
    for mailing_id in ids:
        gone = Mailing(id=mailing_id, root=root, directory=f"{MAILINGS_DIR}/{mailing_id}", doc=None, yaml_problem=None)
        problems.extend(check_mailing(gone, policy, context, [RULES[immutable.ID]]))
    return problems


def resolve_commit(root: Path, rev: str, option: str) -> str:
    """The commit *rev* names here; UsageError naming *option* when there is none."""
    if rev.startswith("-"):
        raise UsageError(f"{option} {rev!r}: a ref cannot start with '-'")
    try:
        return git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}").decode().strip()
    except UsageError:
        raise UsageError(
            f"{option} {rev}: no such commit here; fetch it first (in GitHub Actions: actions/checkout with "
            "fetch-depth: 0)"
        ) from None


_MOST_FILES = 1000


def export_tree(root: Path, commit: str, path: str, into: Path, limit: int) -> bool:
    """Write the regular files under *path* (relative to the root) as they are in *commit* into the same place
    under *into*, read with git's plumbing (ls-tree, cat-file): nothing is checked out and the working tree is
    not touched. Links, and files past *limit* bytes in all, are left out (the loader then finds them missing).
    False when *path* holds no file in *commit*."""
    out = git(root, "ls-tree", "-r", "-z", "-l", commit, "--", path)
    if not out:
        return False
    wanted: list[tuple[str, str]] = []
    total = 0
    for entry in _split(out)[:_MOST_FILES]:  # a request has a handful of files; a tree of thousands is not read
        meta, _, name = entry.partition("\t")
        mode, kind, oid, size = meta.split()
        if kind == "blob" and mode in ("100644", "100755") and int(size) <= limit and total + int(size) <= limit:
            wanted.append((oid, name))
            total += int(size)
    if wanted:
        base = into.resolve()
        for (_, name), blob in zip(wanted, _cat(root, [oid for oid, _ in wanted]), strict=True):
            target = (base / name).resolve()
            if blob is None or base not in target.parents:
                continue  # git names no path outside the tree; a missing object is left out
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob)
    return True


def renamed_from(root: Path, commit: str, mailing_id: str) -> str | None:
    """The id that mailings/<mailing_id> had in *commit*, when its directory was renamed since (the id most of its
    files came from, as `git diff -M` sees them against the working tree); None when none of them was renamed."""
    out = git(root, "diff", "--name-status", "-z", "-M", "--no-ext-diff", "--relative", commit, "--", MAILINGS_DIR)
    found: dict[str, int] = {}
    for change in parse_name_status(out):
        if change.status == "renamed" and change.old_path and mailing_of(change.path) == mailing_id:
            old = mailing_of(change.old_path)
            if old is not None and old != mailing_id:
                found[old] = found.get(old, 0) + 1
    return max(sorted(found), key=lambda old: found[old]) if found else None

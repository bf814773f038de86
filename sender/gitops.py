"""Git for the send logs: commits made with the bot identity, pushes that compare and swap, fetches and reads.

Send logs are committed with plumbing (`hash-object --no-filters`, a private index, `commit-tree`), never with
`git add` or a checkout: the repository's own ignore and attribute files can neither block a log from being
recorded nor change its bytes, and every commit is read back and compared byte for byte before it is used.

Every call runs git non-interactively with an explicit argument list. Errors carry git's stderr with any
credentials in remote URLs masked, so they can go into CI logs as they are.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

from checks.escape import escaped

BOT_AUTHOR = "mailings-bot <mailings-bot@users.noreply.github.com>"

# Network operations may hang on a dead remote; local ones finish in well under this.
GIT_TIMEOUT_SECONDS = 300.0

# Variables that would point git at another repository or another identity than the one we pass.
_DROPPED_ENV = re.compile(
    r"GIT_(AUTHOR|COMMITTER)_(NAME|EMAIL|DATE)|GIT_DIR|GIT_WORK_TREE|GIT_INDEX_FILE|GIT_OBJECT_DIRECTORY"
    r"|GIT_ALTERNATE_OBJECT_DIRECTORIES|GIT_COMMON_DIR|GIT_NAMESPACE|GIT_PREFIX|GIT_EDITOR|GIT_SEQUENCE_EDITOR"
)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
# A compare and swap lost: seen by the client (stale info, not a fast-forward) or by the remote at its ref lock.
_PORCELAIN_LOST = re.compile(
    r"^!\t.*(?:\[rejected\] \((?:non-fast-forward|fetch first|stale info)\)"
    r"|\[remote rejected\] \([^)]*(?:lock|expected)[^)]*\))",
    re.MULTILINE,
)


class GitError(Exception):
    """A git command failed; the message says which and carries git's (masked) stderr."""

    def __init__(self, message: str, *, stderr: str = "", returncode: int | None = None) -> None:
        self.stderr = mask_credentials(stderr).strip()
        self.returncode = returncode
        text = mask_credentials(message)
        super().__init__(f"{text}\n{self.stderr}" if self.stderr else text)


@dataclass(frozen=True)
class LogSummary:
    """What one mailing's send log records, for the commit message."""

    mailing_id: str
    accepted: int
    failed: int
    unknown: int = 0
    pending: int = 0


def mask_credentials(text: str) -> str:
    """Replace the user:password part of every URL in *text* with '***'."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)


def commit_message(summaries: Iterable[LogSummary]) -> str:
    """'Send log: <id> 600 accepted, 2 failed' for one mailing; a total subject and one line each for several."""
    items = list(summaries)
    # escaped: an id is a directory name, and a line break in one would forge a line of the message
    lines = [f"Send log: {escaped(s.mailing_id)} {s.accepted} accepted, {s.failed} failed{_more(s)}" for s in items]
    if len(items) == 1:
        return lines[0] + "\n"
    accepted = sum(s.accepted for s in items)
    failed = sum(s.failed for s in items)
    total = LogSummary("", accepted, failed, sum(s.unknown for s in items), sum(s.pending for s in items))
    subject = f"Send logs: {len(items)} mailings, {accepted} accepted, {failed} failed{_more(total)}"
    return subject + "\n\n" + "\n".join(lines) + "\n"


def _more(summary: LogSummary) -> str:
    """The counts a commit message adds when they are not zero: unknown outcomes, recipients still pending."""
    unknown = f", {summary.unknown} unknown" if summary.unknown else ""
    return unknown + (f", {summary.pending} pending" if summary.pending else "")


def commit_send_logs(root: Path, paths: Sequence[Path], message: str, author: str = BOT_AUTHOR) -> bool:
    """Commit exactly *paths* (send logs, as the work tree has them) onto the current branch as *author*; False
    when HEAD already holds them byte for byte. The index is brought in line for these paths alone, so a
    person's other staged changes stay as they were."""
    if not paths:
        return False
    env = _env(author)
    files = {_repo_path(root, path): (root / _repo_path(root, path)).read_bytes() for path in paths}
    head = _git(root, ["rev-parse", "--verify", "HEAD^{commit}"], env).stdout.strip()
    if all(read_blob(root, head, path) == data for path, data in files.items()):
        return False
    # move_branch compares and swaps: another commit made meanwhile in this checkout is never lost.
    move_branch(root, write_commit(root, head, files, message, author=author), head, files)
    return True


def write_commit(root: Path, parent: str, files: Mapping[str, bytes], message: str, *, author: str = BOT_AUTHOR) -> str:
    """A commit whose tree is *parent*'s with *files* (repository paths to their exact bytes) in place; its id.

    Made without the work tree or the index, with no filter or attribute applied, and read back: GitError
    unless every file in the new commit is byte for byte what was given."""
    env = _env(author)
    with tempfile.TemporaryDirectory(prefix="mailings-index-") as scratch:
        index_env = {**env, "GIT_INDEX_FILE": str(Path(scratch) / "index")}
        _git(root, ["read-tree", parent], index_env)
        for path, data in files.items():
            blob = _git_bytes(root, ["hash-object", "-w", "--no-filters", "--stdin"], env, data).decode().strip()
            _git(root, ["update-index", "--add", "--cacheinfo", f"100644,{blob},{path}"], index_env)
        tree = _git(root, ["write-tree"], index_env).stdout.strip()
    commit = _git(root, ["commit-tree", tree, "-p", parent, "-F", "-"], env, stdin=message).stdout.strip()
    for path, data in files.items():
        if read_blob(root, commit, path) != data:
            raise GitError(f"{path}: the commit does not hold the send log byte for byte as it was written")
    return commit


def read_blob(root: Path, commit: str, path: str) -> bytes | None:
    """The bytes of *path* in *commit* as git stores them (no filter applied); None when it is not a file there."""
    env = _env(BOT_AUTHOR)
    spec = f"{commit}:{path}"
    kind = _git(root, ["cat-file", "-t", spec], env, check=False)
    if kind.returncode != 0 or kind.stdout.strip() != "blob":
        return None
    return _git_bytes(root, ["cat-file", "blob", spec], env, b"")


def unchanged_since_checkout(root: Path, path: str) -> bool:
    """True when the work tree's *path* is what checking out HEAD's version gave (whatever the repository's
    attributes did to its bytes on the way), or is absent from both."""
    done = _git(root, ["diff", "--quiet", "HEAD", "--", ":(literal)" + path], _env(BOT_AUTHOR), check=False)
    return done.returncode == 0


def resolve(root: Path, ref: str) -> str | None:
    """The commit *ref* names here, or None when there is no such ref."""
    done = _git(root, ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], _env(BOT_AUTHOR), check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def upstream(root: Path) -> tuple[str, str]:
    """(remote, refs/heads/<name>) that the current branch pushes to."""
    env = _env(BOT_AUTHOR)
    return _upstream(root, _current_branch(root, env), env)


def fetch(root: Path, remote: str, refspecs: Sequence[str], *, timeout: float | None = None) -> None:
    """Fetch *refspecs* from *remote*, pruning the refs they cover that the remote no longer has."""
    _git(root, ["fetch", "--quiet", "--no-tags", "--prune", remote, *refspecs], _env(BOT_AUTHOR), timeout=timeout)


class PushLost(GitError):
    """The remote's ref was not what the push expected: someone else moved it first."""


def push_ref(
    root: Path, remote: str, commit: str | None, ref: str, expected: str | None, *, timeout: float | None = None
) -> None:
    """Set *ref* on *remote* to *commit* (None deletes it) if, and only if, it is *expected* now (None: absent).

    The remote decides (a compare and swap): PushLost when the ref had moved, GitError for any other refusal
    (a hook, a rule, a key without write access, a remote that cannot be reached)."""
    lease = f"--force-with-lease={ref}:{expected or ''}"
    source = f"{commit}:{ref}" if commit else f":{ref}"
    args = ["push", "--porcelain", "--no-verify", lease, remote, source]
    push = _git(root, args, _env(BOT_AUTHOR), check=False, timeout=timeout)
    if push.returncode == 0:
        return
    if _PORCELAIN_LOST.search(push.stdout):
        raise PushLost(f"{ref} on {remote} moved meanwhile", stderr=push.stderr, returncode=push.returncode)
    raise GitError(f"git push of {ref} to {remote} was refused", stderr=push.stderr, returncode=push.returncode)


class Diverged(GitError):
    """Files on the remote's main that the ones to publish do not extend: another run wrote what this one did not
    see (files that only grow: send logs, bounce logs)."""

    def __init__(self, paths: Sequence[str]) -> None:
        super().__init__(f"{', '.join(paths)} on main is not a beginning of this checkout's")
        self.paths = list(paths)


def publish_grown(
    root: Path,
    remote: str,
    main_ref: str,
    files: Mapping[str, bytes],
    message: str,
    *,
    fetch_main: Callable[[], None],
    attempts: int,
    timeout: float | None = None,
    merged: Callable[[str], Mapping[str, bytes]] | None = None,
) -> bool:
    """Commit *files*, each of which only grows, onto *remote*'s *main_ref* and push, again on a newer main when
    main moved meanwhile (*fetch_main* brings it to refs/remotes/<remote>/<main>). False when main holds them
    already. Diverged when main holds one these do not extend (nothing is overwritten); PushLost when main kept
    moving *attempts* times. Once pushed, the checkout's branch follows when it stood at the main it built on.
    *merged*: more files, made at each attempt from main's commit (so that they extend main's copies: the index of
    finished mailings, sender.finished), that go into the same commit; {} when main needs none of them."""
    tracking = f"refs/remotes/{remote}/{main_ref.removeprefix('refs/heads/')}"
    for attempt in range(1, attempts + 1):
        fetch_main()
        main = resolve(root, tracking)
        if main is None:
            raise GitError(f"{remote} has no {main_ref}")
        on_main = {path: read_blob(root, main, path) or b"" for path in files}
        diverged = [path for path, data in files.items() if not data.startswith(on_main[path])]
        if diverged:
            raise Diverged(diverged)
        more = dict(merged(main)) if merged is not None else {}
        if not more and all(on_main[path] == data for path, data in files.items()):
            return False
        commit = write_commit(root, main, {**files, **more}, message)
        try:
            push_ref(root, remote, commit, main_ref, main, timeout=timeout)
        except PushLost:
            if attempt == attempts:
                raise
            continue
        if resolve(root, "HEAD") == main:
            # The dispatch job's usual case: the work tree holds *files* already, so checkout and remote agree.
            move_branch(root, commit, main, {**files, **more})
        return True
    return False  # not reached: the loop returns or raises


def move_branch(root: Path, commit: str, expected: str, files: Mapping[str, bytes]) -> None:
    """Move the current branch from *expected* to *commit*, which differs from it by *files* alone (the work
    tree holds them already), and bring the index in line for them."""
    env = _env(BOT_AUTHOR)
    branch = _current_branch(root, env)
    _git(root, ["update-ref", "-m", "mailings: send logs", f"refs/heads/{branch}", commit, expected], env)
    _sync_index(root, files, env)


def _sync_index(root: Path, files: Mapping[str, bytes], env: Mapping[str, str]) -> None:
    """Make the index agree with HEAD for *files* (the work tree already has their bytes)."""
    specs = [":(literal)" + path for path in files]
    _git(root, ["reset", "--quiet", "HEAD", "--", *specs], env, check=False)


def _repo_path(root: Path, path: Path) -> str:
    return _pathspec(root, path).removeprefix(":(literal)")


def _current_branch(root: Path, env: Mapping[str, str]) -> str:
    result = _git(root, ["symbolic-ref", "--quiet", "--short", "HEAD"], env, check=False)
    if result.returncode != 0:
        raise GitError(f"{root} is not on a branch (detached HEAD); check out the branch to push")
    return result.stdout.strip()


def _upstream(root: Path, branch: str, env: Mapping[str, str]) -> tuple[str, str]:
    """(remote, refs/heads/<name>) the branch tracks; origin and the same name when it tracks nothing."""
    remote = _config(root, f"branch.{branch}.remote", env)
    merge = _config(root, f"branch.{branch}.merge", env)
    if remote and merge and remote != ".":
        return remote, merge
    return "origin", f"refs/heads/{branch}"


def _config(root: Path, key: str, env: Mapping[str, str]) -> str | None:
    result = _git(root, ["config", "--get", key], env, check=False)
    value = result.stdout.strip() if result.returncode == 0 else ""
    return value or None


def _pathspec(root: Path, path: Path) -> str:
    absolute = (path if path.is_absolute() else root / path).resolve()
    base = root.resolve()
    if not absolute.is_relative_to(base):
        raise GitError(f"{path} is outside the repository {root}")
    # Literal pathspecs: a file name is never read as a glob or a magic signature.
    return ":(literal)" + absolute.relative_to(base).as_posix()


def _env(author: str) -> dict[str, str]:
    name, email = parseaddr(author)
    if not name or "@" not in email:
        raise ValueError(f"author {author!r} must look like 'Name <address>'")
    env = {key: value for key, value in os.environ.items() if not _DROPPED_ENV.fullmatch(key)}
    env.update(
        GIT_AUTHOR_NAME=name,
        GIT_AUTHOR_EMAIL=email,
        GIT_COMMITTER_NAME=name,
        GIT_COMMITTER_EMAIL=email,
        GIT_TERMINAL_PROMPT="0",  # fail instead of waiting for a password nobody will type
        GIT_EDITOR="true",
        GIT_SEQUENCE_EDITOR="true",
        LC_ALL="C",  # messages in English, whatever the host's locale
    )
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


def _git_bytes(root: Path, args: list[str], env: Mapping[str, str], data: bytes) -> bytes:
    """Output of a git command fed and read as bytes (blobs are not text)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(root), *args],
            env=dict(env),
            input=data,
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} did not finish within {GIT_TIMEOUT_SECONDS:.0f} s") from None
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", "replace")
        raise GitError(f"git {' '.join(args)} failed", stderr=stderr, returncode=result.returncode)
    return result.stdout


def _git(
    root: Path,
    args: list[str],
    env: Mapping[str, str],
    *,
    check: bool = True,
    stdin: str | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    command = ["git", "-C", str(root), *args]
    try:
        result = subprocess.run(
            command,
            env=dict(env),
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout or GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH") from None
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        limit = timeout or GIT_TIMEOUT_SECONDS
        raise GitError(f"git {args[0]} did not finish within {limit:g} s", stderr=stderr) from None
    if check and result.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed", stderr=result.stderr, returncode=result.returncode)
    return result

"""Record: a mailing's send log on the remote, before, while and after it is sent. Owns the claim, the
checkpoints and the send logs on main; never sends, and never decides what is due.

Where the record lives, and why:

- **The claim and the checkpoints** go to a branch of their own per mailing, ``mailings-sending/<id>``, whose
  tip holds the mailing's ``sendlog.jsonl`` as written so far. The claim is the first push of a run (the log
  with its ``claim`` event) and it is a compare and swap: the push names the commit it expects the branch to
  be at (absent, for a new claim), so of two dispatchers the remote lets exactly one through. Every checkpoint
  is the same compare and swap on the run's own last push, so a run that lost its claim learns it at its next
  checkpoint and stops. A branch apart from main keeps the checkpoints out of main's history, out of the
  pull-request checks ("branch is out of date") and out of the workflows that main's pushes start.
- **main** gets one commit per run with every send log the run changed, as before; then the claim branches
  whose logs main now holds are deleted. Whatever stands on main after a run is each mailing's complete log.
  If main cannot be written (a rule without the bypass, an outage), the claim branch keeps the log and the
  next run reads it from there, so no recipient is mailed again.

A log only ever grows, so of main's log and the claim branch's one is always a prefix of the other and the
longer one is the record; anything else is a conflict that stops the mailing for a person.

Every commit is made with plumbing (sender.gitops.write_commit) and read back byte for byte before it is pushed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from checks.loader import MAILINGS_DIR
from checks.model import CLAIM_BRANCH_PREFIX, SENDLOG_FILE
from sender import gitops
from sender.finished import INDEX_FILE, merged
from sender.gitops import GitError, PushLost


class RecordError(Exception):
    """The remote record could not be read or written; the message says why and what to do."""


class ClaimLost(RecordError):
    """Another dispatcher moved this mailing's claim branch: this run must not send it."""


@dataclass(frozen=True)
class RemoteLog:
    """What the remote says about one mailing's send log."""

    main: str  # the commit main is at
    claim: str | None  # the commit the claim branch is at; None when there is none
    log: bytes  # the longer of main's log and the claim branch's log
    conflict: str | None = None  # why neither log extends the other, when that happens


def log_path(mailing_id: str) -> str:
    return f"{MAILINGS_DIR}/{mailing_id}/{SENDLOG_FILE}"


def claim_branch(mailing_id: str) -> str:
    return f"refs/heads/{CLAIM_BRANCH_PREFIX}{mailing_id}"


def longer_log(first: bytes, second: bytes) -> bytes | None:
    """The log that extends the other (logs only grow), or None when they diverge."""
    if second.startswith(first):
        return second
    if first.startswith(second):
        return first
    return None


class RemoteRecord:
    """The remote's copy of the send logs, for one checkout: read, claim, checkpoint, publish, release."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            self.remote, self.main_ref = gitops.upstream(root)
        except GitError as exc:
            raise RecordError(f"cannot tell where to record the send logs: {exc}") from None
        self._pushed: dict[str, str] = {}  # mailing id -> the claim branch's commit as this run left it
        self._seen: dict[str, str] = {}  # mailing id -> the claim branch's commit as the last read found it
        self._fetched = False
        self.timeout: float | None = None  # seconds per network git command; None: sender.gitops's default

    def _tracking(self, ref: str) -> str:
        return f"refs/remotes/{self.remote}/{ref.removeprefix('refs/heads/')}"

    def fetch(self) -> None:
        """Bring main and every claim branch from the remote (claim branches it deleted are pruned here)."""
        refspecs = [
            f"+{self.main_ref}:{self._tracking(self.main_ref)}",
            f"+refs/heads/{CLAIM_BRANCH_PREFIX}*:refs/remotes/{self.remote}/{CLAIM_BRANCH_PREFIX}*",
        ]
        try:
            gitops.fetch(self.root, self.remote, refspecs, timeout=self.timeout)
        except GitError as exc:
            raise RecordError(f"cannot read the send logs on {self.remote}: {exc}") from None
        self._fetched = True

    def read(self, mailing_id: str) -> RemoteLog:
        """The remote's log of *mailing_id*, as of the last fetch."""
        if not self._fetched:
            self.fetch()
        main = gitops.resolve(self.root, self._tracking(self.main_ref))
        if main is None:
            raise RecordError(f"{self.remote} has no {self.main_ref}; nothing can be recorded there")
        claim = gitops.resolve(self.root, self._tracking(claim_branch(mailing_id)))
        path = log_path(mailing_id)
        on_main = gitops.read_blob(self.root, main, path) or b""
        if claim is None:
            return RemoteLog(main, None, on_main)
        self._seen[mailing_id] = claim
        on_claim = gitops.read_blob(self.root, claim, path) or b""
        log = longer_log(on_main, on_claim)
        if log is None:
            conflict = (
                f"the send log on {self.main_ref.removeprefix('refs/heads/')} and the one on the branch "
                f"{CLAIM_BRANCH_PREFIX}{mailing_id} differ and neither extends the other; a person must decide "
                "which recipients were sent before anything more is"
            )
            return RemoteLog(main, claim, on_main, conflict)
        return RemoteLog(main, claim, log)

    def claim(self, mailing_id: str, log: bytes, remote: RemoteLog, message: str) -> None:
        """Push *log* (ending in this run's claim) to the claim branch, if it is still where *remote* saw it.
        ClaimLost when another dispatcher got there first; RecordError when the push is refused."""
        parent = remote.claim or remote.main
        self._push(mailing_id, log, parent, remote.claim, message)

    def checkpoint(self, mailing_id: str, log: bytes, message: str) -> None:
        """Push *log* on top of this run's last push. ClaimLost or RecordError: stop sending."""
        last = self._pushed.get(mailing_id)
        if last is None:
            raise RecordError(f"{mailing_id}: no claim of this run to add a checkpoint to")
        self._push(mailing_id, log, last, last, message)

    def _push(self, mailing_id: str, log: bytes, parent: str, expected: str | None, message: str) -> None:
        ref = claim_branch(mailing_id)
        try:
            commit = gitops.write_commit(self.root, parent, {log_path(mailing_id): log}, message)
            gitops.push_ref(self.root, self.remote, commit, ref, expected, timeout=self.timeout)
        except PushLost:
            raise ClaimLost(
                f"the branch {ref.removeprefix('refs/heads/')} on {self.remote} moved: another dispatcher is "
                "sending this mailing, or took it over"
            ) from None
        except GitError as exc:
            raise RecordError(f"cannot push the send log to {ref.removeprefix('refs/heads/')}: {exc}") from None
        self._pushed[mailing_id] = commit

    def publish(
        self, logs: Mapping[str, bytes], message: str, *, index: bytes | None = None, attempts: int = 5
    ) -> bool:
        """Commit *logs* (mailing id to its whole log) onto the remote's main and push it, again on a newer main
        when main moved meanwhile. False when main already holds every one of them. Then the checkout's branch
        follows (when it was at the old main) and the claim branches this run pushed are deleted. *index*: this
        checkout's index of finished mailings, whose entries main lacks go into the same commit (sender.finished:
        merged onto main's copy at each attempt, so a run never drops another's)."""
        if not logs and index is None:
            return False
        files = {log_path(mailing_id): data for mailing_id, data in logs.items()}
        merged_index = self._merged_index(index) if index is not None else None
        try:
            published = gitops.publish_grown(
                self.root,
                self.remote,
                self.main_ref,
                files,
                message,
                fetch_main=self.fetch,
                attempts=attempts,
                timeout=self.timeout,
                merged=merged_index,
            )
        except gitops.Diverged as diverged:
            # Logs only grow: a log on main that ours does not extend was written by another run.
            raise RecordError(
                f"the send log on {self.main_ref.removeprefix('refs/heads/')} of {', '.join(diverged.paths)} is not "
                "a beginning of this run's; another run recorded what this one did not see. Nothing was "
                "overwritten: a person must compare the two and keep the true one"
            ) from None
        except PushLost:
            raise RecordError(
                f"{self.main_ref} on {self.remote} kept moving ({attempts} attempts); the send logs are "
                "on their claim branches and in this checkout: run `mailings record --push` again"
            ) from None
        except GitError as exc:
            raise RecordError(
                f"cannot push the send logs to {self.main_ref.removeprefix('refs/heads/')}: {exc}; they are "
                "kept on their claim branches (the next run reads them there) and in this checkout "
                "(`mailings record --push` tries again)"
            ) from None
        if published and index is not None:
            self._index_follows(index)
        return published

    def _merged_index(self, index: bytes) -> Callable[[str], dict[str, bytes]]:
        """For gitops.publish_grown: main's index of finished mailings (at *commit*) with this checkout's entries
        that it lacks appended, when there are any."""

        def on(commit: str) -> dict[str, bytes]:
            on_main = gitops.read_blob(self.root, commit, INDEX_FILE) or b""
            whole = merged(on_main, index)
            return {INDEX_FILE: whole} if whole != on_main else {}

        return on

    def _index_follows(self, index: bytes) -> None:
        """The work tree's index of finished mailings as HEAD has it, when the branch followed the commit just
        pushed (HEAD's index then holds every entry of *index*, this checkout's) and main held entries this
        checkout lacked (only then do they differ)."""
        path = self.root / INDEX_FILE
        with contextlib.suppress(OSError, GitError):  # a stale copy costs a later run a read of some logs, no more
            committed = gitops.read_blob(self.root, "HEAD", INDEX_FILE)
            if committed is None or committed == index or merged(committed, index) != committed:
                return
            if path.is_symlink() or path.read_bytes() != index:
                return  # changed meanwhile: left alone
            scratch = path.with_name(f".{INDEX_FILE}.tmp")
            scratch.write_bytes(committed)
            scratch.replace(path)

    def release(self, mailing_id: str, expected: str | None = None) -> str | None:
        """Delete the claim branch of *mailing_id* if it is where this run last pushed it (or at *expected*);
        why it could not be, or None."""
        last = self._pushed.pop(mailing_id, None) or expected or self._seen.get(mailing_id)
        self._seen.pop(mailing_id, None)
        if last is None:
            return None
        try:
            gitops.push_ref(self.root, self.remote, None, claim_branch(mailing_id), last, timeout=self.timeout)
        except GitError as exc:
            # Harmless: main holds the same log or a longer one, and the longer one is the record.
            return f"the branch {CLAIM_BRANCH_PREFIX}{mailing_id} stays: {exc}"
        return None

    @property
    def claimed(self) -> list[str]:
        """The mailings with a claim branch that this run pushed or read, and has not released."""
        return sorted(set(self._pushed) | set(self._seen))

"""`mailings bounces`: read the return path's mailbox, record each bounce in its mailing's bounce log, move it.

The order keeps every bounce: classify everything, append to the bounce logs (fsync'd), commit them (and with
--push put them on the remote's main), and only then move the handled messages out of the inbox. A run that
stops before the move leaves them where they were; the next run finds them already recorded (by their digest)
and records nothing twice.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from checks.errors import UsageError
from checks.options import clock, parse_now, repo_root
from checks.policy import load_policy
from sender import gitops
from sender.bouncebox import Box, BoxError, ImapBox, MaildirBox, imap_settings
from sender.bounces import Known, Recorded, Verdict, classify, log_path, record, repo_log_path, summary_by_mailing
from sender.logkey import keyring_from_env

PUSH_ATTEMPTS = 5


def cmd_bounces(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    root = repo_root(args)
    policy = load_policy(root, check_holidays=False)
    if not policy.bounce_address:
        raise UsageError("policy.yaml names no bounce_address: mailings are sent with their from address as return "
                         "path, and there is no bounce mailbox to read")  # fmt: skip
    # The key the send logs were hashed with (and those a rotation kept): bounces are matched and recorded as
    # the same keyed hashes, so without it nothing can be.
    keys = keyring_from_env(env)
    now = parse_now(args.now, policy.timezone, clock)
    try:
        box: Box = MaildirBox(Path(args.maildir).resolve()) if args.maildir else ImapBox(imap_settings(env))
    except BoxError as exc:
        out.write(f"mailings bounces: {exc}\n")
        return 1
    try:
        known = Known(root, policy.bounce_address, keys)
        verdicts: list[tuple[str, Verdict]] = [(k, classify(data, known)) for k, data in box.messages()]
        recorded = record(root, (v for _, v in verdicts), now)
        if not _keep(root, recorded, args, out):
            out.write("mailings bounces: nothing was moved out of the mailbox; the next run tries again\n")
            return 1
        box.handled([k for k, v in verdicts if v.classified])
    except BoxError as exc:
        out.write(f"mailings bounces: {exc}\n")
        return 1
    finally:
        box.close()
    _report(box.describe(), verdicts, recorded, out)
    return 0


def _keep(root: Path, recorded: Recorded, args: argparse.Namespace, out: TextIO) -> bool:
    """Commit (and push) the bounce logs written now; True when they are kept as asked."""
    if not recorded.lines:
        return True
    if not (args.commit or args.push):
        out.write("the bounce logs are written in this checkout, not committed: commit them (or use --commit)\n")
        return True
    files = {repo_log_path(m): log_path(root, m).read_bytes() for m in sorted(recorded.lines)}
    message = _commit_message(recorded)
    try:
        if args.push:
            pushed = publish(root, files, message)
            out.write("recorded the bounce logs on main\n" if pushed else "main already holds the bounce logs\n")
        else:
            gitops.commit_send_logs(root, [root / path for path in files], message)
            out.write("committed the bounce logs\n")
    except gitops.GitError as exc:
        out.write(f"mailings bounces: git: {exc}\n")
        return False
    return True


def publish(root: Path, files: Mapping[str, bytes], message: str, *, attempts: int = PUSH_ATTEMPTS) -> bool:
    """Commit *files* (bounce logs: they only grow) onto the remote's main and push, again on a newer main when it
    moved meanwhile; False when main holds them already. GitError when main's log is not a beginning of ours."""
    remote, main_ref = gitops.upstream(root)
    tracking = f"refs/remotes/{remote}/{main_ref.removeprefix('refs/heads/')}"
    try:
        return gitops.publish_grown(
            root,
            remote,
            main_ref,
            files,
            message,
            fetch_main=lambda: gitops.fetch(root, remote, [f"+{main_ref}:{tracking}"]),
            attempts=attempts,
        )
    except gitops.Diverged as diverged:
        raise gitops.GitError(
            f"the bounce log on main of {', '.join(diverged.paths)} is not a beginning of this checkout's: another "
            "run recorded bounces this one did not see; nothing was overwritten"
        ) from None


def _commit_message(recorded: Recorded) -> str:
    lines = [f"Bounces: {recorded.count('hard')} hard, {recorded.count('soft')} soft", ""]
    for mailing_id, (hard, soft) in sorted(summary_by_mailing(recorded).items()):
        lines.append(f"- {mailing_id}: {hard} hard, {soft} soft")
    return "\n".join(lines) + "\n"


def _report(where: str, verdicts: list[tuple[str, Verdict]], recorded: Recorded, out: TextIO) -> None:
    left = [v for _, v in verdicts if not v.classified]
    handled = len(verdicts) - len(left)
    out.write(
        f"{where}: {len(verdicts)} message(s); {handled} bounce(s) handled: {recorded.count('hard')} hard and "
        f"{recorded.count('soft')} soft recipient bounce(s) recorded, {recorded.duplicates} already recorded; "
        f"{len(left)} not understood, left in the mailbox\n"
    )
    for mailing_id, (hard, soft) in sorted(summary_by_mailing(recorded).items()):
        out.write(f"  {mailing_id}: {hard} hard, {soft} soft\n")
    for reason, count in sorted(Counter(v.reason for v in left).items()):
        out.write(f"  left: {count} {reason}\n")

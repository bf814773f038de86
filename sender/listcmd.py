"""`mailings lists`: IT's special lists, where each comes from and how big it is; `lists encrypt` and `lists edit`
make and update a list file encrypted with age for the public keys policy.yaml names.

The commands' edges: they read the files and the environment they are given, run the editor, and print; what a
list is and how it is resolved is sender.lists's, how it is encrypted sender.agefile's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TextIO

from checks.addresses import address_problem, normalise
from checks.changes import last_change
from checks.errors import UsageError
from checks.loader import MAX_LIST_BYTES, parse_text_list
from checks.model import SpecialListError, is_age_file
from checks.options import clock, parse_now, repo_root
from checks.policy import POLICY_FILE, FileSource, Policy, SpecialList, load_policy
from sender.agefile import IDENTITY_VARIABLE, AgeError, decrypt_list, encrypt_list, identities

Run = Callable[[list[str]], int]  # runs the editor on a file; its exit status


def cmd_lists(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    """Each special list: its name, source, approximate size and bounds; with --resolve, what it resolves to now."""
    from sender.lists import resolve

    root = repo_root(args)
    policy = load_policy(root, check_holidays=False)
    now = parse_now(args.now, policy.timezone, clock)
    if not policy.special_lists:
        out.write(f"{POLICY_FILE} names no special lists\n")
        return 0
    failed = 0
    for special in policy.special_lists.values():
        low, high = special.bounds
        out.write(f"{special.id}: {special.name}\n")
        out.write(f"    source: {_source(special, root)}\n")
        out.write(
            f"    size: about {special.approximate_size}; a mailing to it is blocked outside {low} to {high} "
            f"(tolerance {special.tolerance:.0%})\n"
        )
        if not args.resolve:
            continue
        try:
            resolved = resolve(special, env, root, age=True)
        except SpecialListError as exc:
            failed += 1
            out.write(f"    resolved: no: {exc}\n")
            continue
        age = f"; last changed {_age(now, resolved.changed)}" if resolved.changed is not None else ""
        out.write(f"    resolved: {resolved.summary()}{age}\n")
    if args.resolve and failed:
        out.write(f"{failed} special list{'s' if failed != 1 else ''} cannot be sent to now\n")
    return 1 if failed else 0


def _source(special: SpecialList, root: Path) -> str:
    source = special.source
    if not isinstance(source, FileSource):
        return source.describe()
    change = last_change(root, source.path)
    if change is None:
        return f"{source.describe()} (not committed)"
    edited = ", edited since" if change.uncommitted else ""
    return f"{source.describe()}, last changed in {change.commit[:12]} on {change.date}{edited}"


def _age(now: datetime, then: datetime) -> str:
    seconds = max(0.0, (now - then).total_seconds())
    if seconds < 3600:
        ago = f"{int(seconds // 60)} minutes ago"
    elif seconds < 2 * 86400:
        ago = f"{int(seconds // 3600)} hours ago"
    else:
        ago = f"{int(seconds // 86400)} days ago"
    return f"{ago} ({then.astimezone(now.tzinfo).isoformat(timespec='minutes')})"


def cmd_encrypt(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    """Encrypt the plain list PLAIN into OUT.age for policy.yaml's special_lists_recipients."""
    root = repo_root(args)
    policy = load_policy(root, check_holidays=False)
    target = _target(args.out)
    plain_path = Path(args.plain)
    try:
        plain = plain_path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{args.plain}: cannot be read: {exc.strerror}") from None
    if is_age_file(plain[:256]):
        raise UsageError(f"{args.plain} is encrypted already; give the plain list, one address per line")
    _write(target, plain, policy, out)
    if plain_path.resolve().is_relative_to(root):
        out.write(
            f"note: {args.plain} is inside the repository: delete it now, and never commit it "
            "([special-lists] refuses a plain list next to its encrypted file)\n"
        )
    return 0


def cmd_edit(args: argparse.Namespace, env: Mapping[str, str], out: TextIO, run: Run | None = None) -> int:
    """Decrypt OUT.age into a private temporary file, run $EDITOR on it, and encrypt it again if it changed; with
    --reencrypt, encrypt it again for the policy's keys as it is (after a change of keys), with no editor."""
    root = repo_root(args)
    policy = load_policy(root, check_holidays=False)
    target = _target(args.out)
    editor = shlex.split(env.get("VISUAL") or env.get("EDITOR") or "vi")
    before = b""
    if target.exists():
        before = _decrypt(target, _identity_text(args, env))
    if args.reencrypt:
        if not target.exists():
            raise UsageError(f"{target}: no such file to encrypt again")
        _write(target, before, policy, out, before=before)
        return 0
    directory = Path(tempfile.mkdtemp(prefix="mailings-edit-"))  # 0700
    try:
        draft = directory / target.name.removesuffix(".age")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(before)
        status = (run or _run)([*editor, str(draft)])
        if status != 0:
            out.write(f"the editor exited with status {status}; {target} is left as it was\n")
            return 1
        after = draft.read_bytes()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if after == before and target.exists():
        out.write(f"no change; {target} is left as it was\n")
        return 0
    _write(target, after, policy, out, before=before)
    return 0


def _run(argv: list[str]) -> int:
    try:
        return subprocess.run(argv, check=False).returncode
    except OSError as exc:
        raise UsageError(f"cannot run the editor {argv[0]}: {exc.strerror}; set EDITOR") from None


def _target(text: str) -> Path:
    if not text.endswith(".age"):
        raise UsageError(f"{text}: an encrypted list's name ends in .age ([special-lists] looks for its plain twin)")
    return Path(text)


def _identity_text(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, str]:
    """The identity's text and where it came from: --identity FILE, else MAILINGS_AGE_IDENTITY."""
    if args.identity:
        try:
            return Path(args.identity).read_text(encoding="utf-8"), args.identity
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--identity {args.identity}: cannot be read: {exc}") from None
    text = env.get(IDENTITY_VARIABLE, "")
    if not text.strip():
        raise UsageError(f"give your age identity with --identity FILE (or {IDENTITY_VARIABLE}) to decrypt the list")
    return text, IDENTITY_VARIABLE


def _decrypt(target: Path, identity: tuple[str, str]) -> bytes:
    text, where = identity
    try:
        return decrypt_list(target.read_bytes(), identities(text, where), MAX_LIST_BYTES)
    except OSError as exc:
        raise UsageError(f"{target}: cannot be read: {exc.strerror}") from None
    except AgeError as exc:
        raise UsageError(f"{target} cannot be decrypted with {where}: {exc}") from None


def _write(target: Path, plain: bytes, policy: Policy, out: TextIO, before: bytes | None = None) -> None:
    """Encrypt *plain* for the policy's recipients into *target*, replacing it in one step."""
    keys = policy.list_recipients
    if not keys:
        raise UsageError(
            f"{POLICY_FILE} names no special_lists_recipients: add the age public keys (age1...) of the dispatch "
            "job and of the people who keep the lists"
        )
    try:
        text = plain.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError("the list is not valid UTF-8; save it as UTF-8") from None
    try:
        data = encrypt_list(plain, keys)
    except AgeError as exc:
        raise UsageError(f"{POLICY_FILE}: special_lists_recipients: {exc}") from None
    partial = target.with_name(f".{target.name}.partial")
    try:
        partial.write_bytes(data)
        partial.replace(target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise UsageError(f"{target}: cannot be written: {exc.strerror or exc}") from None
    out.write(f"{target}: {_counted(text)}{_was(before)}; encrypted for {len(keys)} public key(s)\n")


def _counted(text: str) -> str:
    values = [entry.address for entry in parse_text_list(text, "list")]
    unique = {normalise(value) for value in values}
    invalid = sum(1 for value in unique if address_problem(value) is not None)
    notes = []
    if len(values) != len(unique):
        notes.append(f"{len(values) - len(unique)} repeated")
    if invalid:
        notes.append(f"{invalid} invalid, which the sender drops")
    return f"{len(unique) - invalid} addresses" + (f" ({', '.join(notes)})" if notes else "")


def _was(before: bytes | None) -> str:
    if before is None:
        return ""
    return f", was {_counted(before.decode('utf-8-sig', 'replace')).split(' (')[0]}"

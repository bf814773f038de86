"""`mailings comment`: the reviewer's plan as one comment on the pull request, updated in place on every push.

The plan-comment workflow runs this on `workflow_run` after the check workflow, with a token that may write pull
requests and nothing else, and without the pull request's code. It reads what the check run left in its artifact
(`mailings-plan`: `plan.md`, `pr-number`, `head-sha`), which the pull request's own code wrote and so may have
forged: the number must be a number, the commit must be the one the check ran on (the workflow_run event says which,
and GitHub's event, not the artifact, is trusted) and the pull request's head now, and the plan is posted as text of
bounded size, every @mention outside its code blocks broken (the bot notifies nobody). A plan longer than a comment
holds is cut at a line end, the code block and collapsed sections open there closed again, with a link to the whole
plan.

The comment is found again by a hidden marker at its start, among the comments of the token's own account: a
comment without it, or anybody else's, is never edited.

Only the Python standard library and sender.github: the job that holds a write token installs nothing.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from checks.errors import UsageError

if TYPE_CHECKING:  # imported where it is used: every `mailings` command builds this module's parser
    from sender.github import ApiFailure, GitHub, IssueComment, PullInfo

MARKER = "<!-- mailings-plan -->"
ARTIFACT = "mailings-plan"  # the artifact's name, as check.yml uploads it
PLAN_FILE = "plan.md"
NUMBER_FILE = "pr-number"
SHA_FILE = "head-sha"
# GitHub refuses a comment over 65,536 characters; counted here in UTF-16 units, never fewer than GitHub's.
MAX_COMMENT_CHARS = 65_536
# GitHub keeps at most 1 MiB of a step's job summary and drops a larger one whole: the plan goes in cut below that.
MAX_SUMMARY_BYTES = 1_000_000
# A plan file larger than this is not read at all (the comment could hold a few per cent of it).
MAX_PLAN_BYTES = 8 * 1024 * 1024
# Whose comment is ours: the account of the workflow's GITHUB_TOKEN.
DEFAULT_AUTHOR = "github-actions[bot]"

_SHA = re.compile(r"[0-9a-f]{40}")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_DETAILS_OPEN = re.compile(r"<details[\s>]", re.IGNORECASE)
_DETAILS_CLOSE = re.compile(r"</details\s*>", re.IGNORECASE)
# An @ that GitHub would read as a mention: not inside a word or an address, not escaped.
_MENTION = re.compile(r"(?<![\w`\\])@(?=[A-Za-z0-9])")
WORD_JOINER = "\u2060"


@dataclass(frozen=True)
class Artifact:
    """What the check run says: the pull request, the commit it checked, and the plan's Markdown."""

    number: int
    head_sha: str
    plan: str


@dataclass(frozen=True)
class Run:
    """What the workflow_run event says about the check run (trusted: GitHub wrote it)."""

    head_sha: str
    pulls: tuple[int, ...]  # the run's pull requests; GitHub lists none for a pull request from a fork
    url: str  # the run's page: its summary holds the whole plan, and the artifact is listed there


# --- the artifact ----------------------------------------------------------------------------------------------


def read_artifact(directory: Path) -> Artifact:
    """The artifact's three files, each checked; UsageError naming the file and what is wrong."""
    number_text = _read(directory / NUMBER_FILE, 32).strip()
    if not re.fullmatch(r"[1-9][0-9]{0,9}", number_text):
        raise UsageError(f"{directory / NUMBER_FILE}: {number_text[:40]!r} is not a pull request number")
    sha = _read(directory / SHA_FILE, 64).strip()
    if not _SHA.fullmatch(sha):
        raise UsageError(f"{directory / SHA_FILE}: {sha[:64]!r} is not a commit (40 hexadecimal digits)")
    plan = _read(directory / PLAN_FILE, MAX_PLAN_BYTES)
    return Artifact(int(number_text), sha, plan)


def _read(path: Path, limit: int) -> str:
    if path.is_symlink() or not path.is_file():
        raise UsageError(f"{path}: missing from the artifact (or not a plain file); did the check run upload it?")
    with path.open("rb") as handle:
        raw = handle.read(limit + 1)
    if len(raw) > limit:
        raise UsageError(f"{path}: larger than {limit:,} bytes; a check run does not write that much")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 (byte {exc.start})") from None
    # NUL and the other C0 controls but tab and line ends have no place in Markdown; GitHub may refuse them.
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "\ufffd", text)


def verify(artifact: Artifact, run: Run) -> str | None:
    """Why the artifact does not belong to the run, or None. A mismatch means a forged or broken artifact."""
    if artifact.head_sha != run.head_sha:
        return f"the artifact names commit {artifact.head_sha}, but the check ran on {run.head_sha}"
    if run.pulls and artifact.number not in run.pulls:
        shown = ", ".join(f"#{n}" for n in run.pulls)
        return f"the artifact names pull request #{artifact.number}, but the check ran for {shown}"
    return None


# --- the comment -----------------------------------------------------------------------------------------------


def length(text: str) -> int:
    """*text*'s length as GitHub may count it (UTF-16 units: never fewer than characters)."""
    return len(text.encode("utf-16-le")) // 2


def compose(plan: str, sha: str, run_url: str, limit: int = MAX_COMMENT_CHARS) -> str:
    """The comment: the marker, one line on what it shows, and the plan, cut to fit *limit* if it must be."""
    head = (
        f"{MARKER}\n"
        f"Plan for commit `{sha[:12]}` ([check run]({run_url})). This comment is updated on every push "
        f"and always shows the plan of the latest commit checked.\n\n"
    )
    plan = defuse_mentions(plan.rstrip("\n") + "\n")
    if length(head + plan) <= limit:
        return head + plan
    note = (
        f"\n---\n**The plan is cut here**: it is {length(plan):,} characters long, more than a comment holds. "
        f"The whole plan is in the [check run's summary]({run_url}), and in its artifact `{ARTIFACT}`.\n"
    )
    room = limit - length(head) - length(note)
    kept = _cut(plan, room)
    return head + kept + note


def for_summary(plan: str, limit: int = MAX_SUMMARY_BYTES) -> str:
    """*plan* as a job summary holds it: whole when it fits *limit* bytes, else cut at a line end (the code block
    and collapsed sections open there closed again) with a note that the whole plan is in the artifact."""
    if len(plan.encode("utf-8")) <= limit:
        return plan
    note = (
        f"\n---\n**The plan is cut here**: it is {len(plan.encode('utf-8')):,} bytes long, more than a job summary "
        f"holds. The whole plan is in this run's artifact `{ARTIFACT}` ({PLAN_FILE}).\n"
    )
    return _cut(plan, limit - len(note.encode("utf-8")), _utf8_length) + note


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8"))


def defuse_mentions(plan: str) -> str:
    """*plan* with every @mention outside code blocks broken by a word joiner: the bot's comment notifies nobody,
    whatever an artifact says (the plan itself escapes a request's text; a forged one need not)."""
    out = []
    fence: tuple[str, int] | None = None
    for line in plan.splitlines(keepends=True):
        inside = fence is not None
        fence, _ = _scan(line, fence, 0)
        out.append(line if inside or fence is not None else _MENTION.sub("@" + WORD_JOINER, line))
    return "".join(out)


def _cut(plan: str, room: int, measure: Callable[[str], int] = length) -> str:
    """The longest start of *plan*, ending at a line end, that fits *room* (as *measure* counts) with every fence
    and <details> it opened closed again, so that the note after it is not swallowed by them."""
    lines = plan.splitlines(keepends=True)
    used = 0
    fence: tuple[str, int] | None = None  # the open fence's character and length
    details = 0
    best = (0, "")  # how many lines to keep, and what closes them
    for index, line in enumerate(lines):
        used += measure(line)
        fence, details = _scan(line, fence, details)
        closing = _closing(fence, details)
        if used + measure(closing) > room:
            break
        best = (index + 1, closing)
    return "".join(lines[: best[0]]) + best[1]


def _scan(line: str, fence: tuple[str, int] | None, details: int) -> tuple[tuple[str, int] | None, int]:
    """The open fence and <details> depth after *line* (CommonMark fences; <details> outside them)."""
    found = _FENCE.match(line.rstrip("\r\n"))
    if fence is None:
        if found and not (found.group(1)[0] == "`" and "`" in found.group(2)):
            return (found.group(1)[0], len(found.group(1))), details
        opened = len(_DETAILS_OPEN.findall(line + " ")) - len(_DETAILS_CLOSE.findall(line))
        return None, max(0, details + opened)
    char, size = fence
    if found and found.group(1)[0] == char and len(found.group(1)) >= size and not found.group(2).strip():
        return None, details
    return fence, details


def _closing(fence: tuple[str, int] | None, details: int) -> str:
    text = f"{fence[0] * fence[1]}\n" if fence else ""
    return text + "\n</details>\n" * details


def ours(comments: Sequence[IssueComment], author: str) -> IssueComment | None:
    """The plan comment written earlier: by *author*, starting with the marker; the oldest if there are several."""
    for comment in comments:
        if comment.author.lower() == author.lower() and comment.body.startswith(MARKER):
            return comment
    return None


@dataclass(frozen=True)
class Posted:
    action: str  # created, updated, unchanged, skipped
    detail: str


def post(api: GitHub, artifact: Artifact, run: Run, author: str = DEFAULT_AUTHOR) -> Posted | ApiFailure:
    """Create or update the plan comment on the artifact's pull request; skipped when the pull request has moved
    on to a later commit (whose own check run posts its plan)."""
    from sender.github import ApiFailure

    pull = api.pull(artifact.number)
    if isinstance(pull, ApiFailure):
        return pull
    stale = _stale(pull, run)
    if stale:
        return Posted("skipped", stale)
    comments = api.issue_comments(artifact.number)
    if isinstance(comments, ApiFailure):
        return comments
    body = compose(artifact.plan, run.head_sha, run.url)
    found = ours(comments, author)
    if found is None:
        made = api.create_comment(artifact.number, body)
        return made if isinstance(made, ApiFailure) else Posted("created", made.url)
    if found.body == body:
        return Posted("unchanged", found.url)
    changed = api.update_comment(found.id, body)
    return changed if isinstance(changed, ApiFailure) else Posted("updated", changed.url or found.url)


def _stale(pull: PullInfo, run: Run) -> str | None:
    if pull.head_sha != run.head_sha:
        return (
            f"pull request #{pull.number} is now at commit {pull.head_sha[:12]}, not {run.head_sha[:12]} that this "
            f"plan is of; the check run of the later commit posts its own"
        )
    return None


# --- the command -----------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--artifact", required=True, metavar="DIR", help=f"the downloaded artifact {ARTIFACT}")
    parser.add_argument("--head-sha", required=True, metavar="SHA", help="the commit the check run checked")
    parser.add_argument(
        "--pulls",
        default="",
        metavar="NUMBERS",
        help="the check run's pull request numbers as the event lists them, separated by spaces (none from a fork)",
    )
    parser.add_argument("--run-url", required=True, metavar="URL", help="the check run's page, for the whole plan")
    parser.add_argument(
        "--author", default=DEFAULT_AUTHOR, help=f"the account the token writes as (default: {DEFAULT_AUTHOR})"
    )


def cmd_comment(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    """Post or update the plan comment. 0 when posted (or rightly skipped), 1 when the artifact does not belong to
    the run or the API failed; 2 for a bad command line or artifact."""
    from sender.github import ApiFailure, GitHub, settings_from_env

    settings = settings_from_env(env)
    if settings is None:
        raise UsageError("GITHUB_API_URL, GITHUB_TOKEN and GITHUB_REPOSITORY must be set (as on GitHub Actions)")
    if isinstance(settings, str):
        raise UsageError(f"cannot reach GitHub: {settings}")
    run = Run(_sha(args.head_sha), _numbers(args.pulls), _url(args.run_url))
    artifact = read_artifact(Path(args.artifact))
    wrong = verify(artifact, run)
    if wrong:
        out.write(f"::error title=plan comment::not posted: {wrong}\n")
        return 1
    api = GitHub(settings)
    done = post(api, artifact, run, args.author)
    if isinstance(done, ApiFailure):
        out.write(f"::error title=plan comment::not posted: {done}\n")
        return 1
    out.write(f"plan comment on pull request #{artifact.number}: {done.action} ({done.detail})\n")
    return 0


def _sha(text: str) -> str:
    if not _SHA.fullmatch(text.strip()):
        raise UsageError(f"--head-sha {text!r}: expected a commit's 40 hexadecimal digits")
    return text.strip()


def _numbers(text: str) -> tuple[int, ...]:
    words = text.replace(",", " ").split()
    if not all(re.fullmatch(r"[1-9][0-9]{0,9}", word) for word in words):
        raise UsageError(f"--pulls {text!r}: expected pull request numbers separated by spaces")
    return tuple(int(word) for word in words)


def _url(text: str) -> str:
    # It goes into the comment as a link target: a plain https address, nothing Markdown could read otherwise.
    if not re.fullmatch(r"https?://[A-Za-z0-9.:\-]+(/[A-Za-z0-9._~\-/]*)?", text):
        raise UsageError(f"--run-url {text!r}: expected the run's address, e.g. https://github.com/o/r/actions/runs/1")
    return text


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None, out: TextIO = sys.stdout) -> int:
    """`python -m checks.prcomment`: the same as `mailings comment`, run from a checkout without installing."""
    import os

    parser = argparse.ArgumentParser(prog="python -m checks.prcomment", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_comment(args, os.environ if env is None else env, out)
    except UsageError as exc:
        print(f"mailings comment: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

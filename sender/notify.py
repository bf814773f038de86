"""Word back after a send run: a comment on the pull request that merged each mailing whose state the run
changed, one alert issue when something needs a person, and the job summary ($GITHUB_STEP_SUMMARY).

This module owns what is said, and where. It never sends mail, never writes a send log, never decides a
mailing's state (sender.state does; an `Outcome` says what it was before the run and after) and never changes
the command's exit code: a failure here is reported in the command's output and the summary, and that is all.
Every text that comes from a request (ids, notes that quote it) goes into Markdown as a code span, so it can add
no mention, link, reference or markup to what GitHub shows.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from checks.escape import escaped
from checks.loader import MAILINGS_DIR
from checks.policy import Policy
from sender.github import ApiFailure, GitHub, PullRequest, Settings, Tuning, proxy_from_env, settings_from_env

if TYPE_CHECKING:
    from sender.dispatch import Outcome

# What a comment says of each state a run may change a mailing to, by the state's value: states are matched by
# their value, so a state added to sender.state gets the generic sentence until it gets its own.
STATE_SENTENCES: Mapping[str, str] = {
    "sent": "The mailing went out: no recipient is left to send it to.",
    "sent-with-failures": (
        "The mailing went out; the relay refused it for good for some recipients, who are not tried again."
    ),
    "blocked": (
        "The mailing was not sent: the sender found a reason not to (below). Every scheduled run checks it "
        "again, so a fix merged before its time runs out sends it."
    ),
    "missed": (
        "The mailing was not sent in time and will not be sent by itself: it is past its lateness limit. "
        "A person must decide what happens next."
    ),
    "held": "Sending is on hold: nothing more of the mailing is sent until the hold is released.",
    "cancelled": "The mailing was cancelled: nothing more of it is ever sent.",
}
# The states a run reaches on its way to one of the others: not news for the people who asked.
QUIET_STATES = frozenset({"scheduled", "due", "sending"})
# A change to one of these needs a person (as do unknown outcomes and send logs that were not pushed).
ALERT_STATES = frozenset({"blocked", "missed"})

ALERT_TITLE = "Mailings: a mailing needs a person"
SUMMARY_LIMIT = 1024 * 1024  # GitHub refuses a step's summary larger than this
NOTE_CHARS = 2_000  # of a note in a comment or a summary row: a blocked mailing's note lists every problem
COMMENT_CHARS = 60_000  # GitHub takes at most 65,536 characters in a comment
CUT = "\n\n… (cut here: GitHub takes at most 1 MiB of a step's summary; the command's output has it all)\n"


@dataclass(frozen=True)
class RunFacts:
    """What every message of one run shares."""

    now: datetime  # the run's "now", not the clock
    git_ok: bool = True  # False: the send logs this run wrote could not be committed or pushed
    dry_run: bool = False
    stopped: bool = False  # by a signal: the summary alone, nothing posted
    run_url: str | None = None  # the workflow run, when on GitHub Actions


@dataclass(frozen=True)
class Said:
    """One thing the word back did, or failed to do. *detail* is outside text (an API's answer): escaped."""

    ok: bool
    action: str  # our own words
    mailing_id: str | None = None
    detail: str = ""

    def line(self) -> str:
        about = f" for {self.mailing_id}" if self.mailing_id is not None else ""
        return f"github: {self.action}{about}" + (f": {self.detail}" if self.detail else "")

    def markdown(self) -> str:
        about = f" for {code(self.mailing_id)}" if self.mailing_id is not None else ""
        detail = f": {code(self.detail, NOTE_CHARS)}" if self.detail else ""
        return f"- {'' if self.ok else '**failed:** '}{self.action}{about}{detail}"


@dataclass(frozen=True)
class NoTarget:
    """Why a mailing has no pull request to comment on."""

    reason: str


# --- the entry point --------------------------------------------------------------------------------------------


def word_back(
    root: Path,
    policy: Policy,
    outcomes: Sequence[Outcome],
    env: Mapping[str, str],
    out: TextIO,
    *,
    now: datetime,
    git_ok: bool,
    dry_run: bool = False,
    stopped: bool = False,
    tuning: Tuning | None = None,
) -> None:
    """After `mailings send`: comment and alert on GitHub when GITHUB_API_URL, GITHUB_TOKEN and GITHUB_REPOSITORY
    are set in *env* (not in a dry run, nor in a run *stopped* by a signal, which has seconds left before it is
    killed), then append the job summary when GITHUB_STEP_SUMMARY is set. Never raises: sending and recording
    are done, and nothing here may change how the run ends."""
    run = RunFacts(now, git_ok, dry_run, stopped, _run_url(env))
    settings = settings_from_env(env)
    token = settings.token if isinstance(settings, Settings) else env.get("GITHUB_TOKEN", "")

    def mask(text: str) -> str:
        return text.replace(token, "***") if token else text

    said: list[Said] = []
    try:
        if isinstance(settings, str) and env.get("GITHUB_ACTIONS") == "true":
            # On a runner GITHUB_API_URL and GITHUB_REPOSITORY are always set: the token was not passed in.
            said.append(Said(True, f"comments and alerts are off: {settings}"))
        elif isinstance(settings, Settings) and not dry_run and not stopped:
            client = GitHub(settings, tuning or Tuning(), proxy=proxy_from_env(env, settings.api_url))
            tell(client, root, policy, outcomes, run, said)
    except Exception as exc:  # a bug here must not turn a run that sent and recorded into a crash
        said.append(Said(False, "stopped by an internal error", detail=mask(f"{type(exc).__name__}: {exc}")))
    for item in said:
        out.write(escaped(mask(item.line())) + "\n")
    if any(not item.ok for item in said):
        out.write("github: what was sent and recorded is not affected\n")
    target = env.get("GITHUB_STEP_SUMMARY")
    if target:
        problem = append_summary(Path(target), mask(job_summary(policy, outcomes, run, said)))
        if problem:
            out.write(mask(f"github: the job summary was not written: {problem}") + "\n")


def _run_url(env: Mapping[str, str]) -> str | None:
    server, repository, run_id = (env.get(n, "") for n in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    if not (server.startswith("https://") and re.fullmatch(r"[\w.-]+/[\w.-]+", repository) and run_id.isdigit()):
        return None
    return f"{server.rstrip('/')}/{repository}/actions/runs/{run_id}"


# --- comments and the alert -------------------------------------------------------------------------------------


def worth_a_comment(outcome: Outcome) -> bool:
    """This run changed the mailing's state to one the people who asked want to hear of, or left recipients
    whose outcome nobody knows."""
    return (outcome.changed and outcome.state.value not in QUIET_STATES) or outcome.unknown_now > 0


def needs_a_person(outcome: Outcome) -> bool:
    return (outcome.changed and outcome.state.value in ALERT_STATES) or outcome.unknown_now > 0


def tell(
    client: GitHub,
    root: Path,
    policy: Policy,
    outcomes: Sequence[Outcome],
    run: RunFacts,
    said: list[Said],
) -> None:
    """Post the run's comments and its alert, adding to *said* what was done and what failed, as it goes (a fault
    part-way keeps what was said before it)."""
    pulls: dict[str, PullRequest | NoTarget | ApiFailure] = {}  # by commit: requests added together share one
    numbers: dict[str, int] = {}
    for outcome in outcomes:
        if not worth_a_comment(outcome):
            continue
        state = outcome.state.value
        commit = adding_commit(root, outcome.mailing_id)
        if isinstance(commit, NoTarget):
            said.append(Said(False, f"no comment on its pull request ({state})", outcome.mailing_id, commit.reason))
            continue
        if commit not in pulls:
            pulls[commit] = merged_pull(client, commit)
        pull = pulls[commit]
        if not isinstance(pull, PullRequest):
            reason = str(pull) if isinstance(pull, ApiFailure) else pull.reason
            said.append(Said(False, f"no comment on its pull request ({state})", outcome.mailing_id, reason))
            continue
        numbers[outcome.mailing_id] = pull.number
        posted = client.comment(pull.number, comment_body(outcome, policy, run))
        if isinstance(posted, ApiFailure):
            said.append(
                Said(False, f"no comment on pull request #{pull.number} ({state})", outcome.mailing_id, str(posted))
            )
        else:
            said.append(Said(True, f"commented on pull request #{pull.number} ({state})", outcome.mailing_id))
    items = alert_items(outcomes, run, numbers)
    if items:
        said.append(alert(client, policy, run, items))


def merged_pull(client: GitHub, commit: str) -> PullRequest | NoTarget | ApiFailure:
    pulls = client.pulls_for_commit(commit)
    if isinstance(pulls, ApiFailure):
        return pulls
    merged = [p for p in pulls if p.merged]
    if not merged:
        return NoTarget(f"commit {commit[:12]} came in through no merged pull request")
    return merged[0]


def adding_commit(root: Path, mailing_id: str) -> str | NoTarget:
    """The commit that added the request's mailing.yaml (the oldest, should it have been added more than once):
    the one its pull request merged."""
    path = f"{MAILINGS_DIR}/{mailing_id}/mailing.yaml"
    # Renames off: a request renamed into place counts as added there. The variables that would point git at
    # another repository are dropped.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k.startswith("GIT_CONFIG")}
    env.update(LC_ALL="C", GIT_TERMINAL_PROMPT="0")
    args = ["git", "-C", str(root), "log", "--no-renames", "--diff-filter=A", "--format=%H", "--", f":(literal){path}"]
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return NoTarget(f"git log failed: {exc}")
    if done.returncode != 0:
        return NoTarget(f"git log failed: {' '.join(done.stderr.split())[:300]}")
    commits = done.stdout.split()
    return commits[-1] if commits else NoTarget(f"no commit in this checkout's history adds {path}")


@dataclass(frozen=True)
class AlertItem:
    mailing_id: str | None
    text: str  # Markdown, escaped


def alert_items(outcomes: Sequence[Outcome], run: RunFacts, pulls: Mapping[str, int]) -> list[AlertItem]:
    """What in this run needs a person, one item each."""
    items = []
    for outcome in outcomes:
        if not needs_a_person(outcome):
            continue
        pull = f" (pull request #{pulls[outcome.mailing_id]})" if outcome.mailing_id in pulls else ""
        head = f"{code(outcome.mailing_id)}{pull}"
        state = outcome.state.value
        if outcome.changed and state in ALERT_STATES:
            items.append(AlertItem(outcome.mailing_id, f"{head} is {state}: {code(outcome.note, NOTE_CHARS)}"))
        if outcome.unknown_now:
            items.append(
                AlertItem(
                    outcome.mailing_id,
                    f"{head}: {outcome.unknown_now} recipient(s) with an unknown outcome in this run: the relay "
                    "never confirmed the end of their message, so they may have it. They are not sent again by "
                    "themselves; the relay's logs can tell.",
                )
            )
    if not run.git_ok:
        items.append(
            AlertItem(
                None,
                "The send logs this run wrote could not be recorded on main (the run's log says why). The job's "
                "next step tries again with `mailings record --push`: check that it did, or run it from a checkout "
                "before the next run.",
            )
        )
    return items


def alert(client: GitHub, policy: Policy, run: RunFacts, items: Sequence[AlertItem]) -> Said:
    """Comment on the open alert issue, or open one."""
    body = alert_body(policy, run, items)
    issues = client.open_alerts()
    if isinstance(issues, ApiFailure):
        return Said(False, "no alert (the open alert issue could not be looked up)", detail=str(issues))
    if issues:
        number = issues[0].number
        posted = client.comment(number, body)
        if isinstance(posted, ApiFailure):
            return Said(False, f"no alert on issue #{number}", detail=str(posted))
        return Said(True, f"alerted {policy.notify.team} on issue #{number}")
    opened = client.open_issue(ALERT_TITLE, body)
    if isinstance(opened, ApiFailure):
        return Said(False, "no alert issue opened", detail=str(opened))
    return Said(True, f"opened alert issue #{opened.number} for {policy.notify.team}")


# --- the texts --------------------------------------------------------------------------------------------------


def code(text: str, limit: int = 200) -> str:
    """*text* (from a request, or any outside text) as one inline code span: GitHub renders no Markdown, HTML,
    link, mention or reference inside one. On one line (a newline would end a list item or a table row), at
    most *limit* characters, and an @ followed by an invisible space, should the span ever be taken apart."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    if not flat:
        return "(none)"
    flat = flat.replace("@", "@\u200b")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", flat)), default=0) + 1)
    # The spaces inside the fence are taken off again; they let the text begin or end with a backtick.
    return f"{fence} {flat} {fence}"


def cell(text: str, limit: int = NOTE_CHARS) -> str:
    """*text* as a code span in a table cell: a | would end the cell, even inside the span, unless escaped."""
    return code(text, limit).replace("|", "\\|")


def local(moment: datetime, policy: Policy) -> str:
    return moment.astimezone(policy.timezone).strftime("%Y-%m-%d %H:%M %Z")


def counts(outcome: Outcome) -> str:
    if not (outcome.total or outcome.accepted or outcome.failed or outcome.unknown or outcome.pending):
        return "Nothing was sent."
    this_run = f" This run: {outcome.sent_now} accepted." if outcome.sent_now else ""
    return (
        f"{outcome.accepted} accepted, {outcome.failed} failed, {outcome.unknown} unknown, {outcome.pending} "
        f"pending, of {outcome.total} recipients.{this_run}"
    )


def comment_body(outcome: Outcome, policy: Policy, run: RunFacts) -> str:
    """The comment on the mailing's pull request: what became of it, the counts, the times in local time."""
    state = outcome.state.value
    sentence = STATE_SENTENCES.get(state, f"The mailing's state is now {state}.")
    lines = [f"**Mailing {code(outcome.mailing_id)}: {state}**", "", sentence]
    if outcome.unknown_now:
        lines += [
            "",
            f"{outcome.unknown_now} recipient(s) have an unknown outcome from this run: the relay never confirmed "
            "the end of their message, so they may have it. They are not sent again by themselves.",
        ]
    lines += ["", counts(outcome), "", f"Note: {code(outcome.note, NOTE_CHARS)}", "", _when(outcome, policy, run)]
    return "\n".join(lines)[:COMMENT_CHARS] + "\n"


def _when(outcome: Outcome, policy: Policy, run: RunFacts) -> str:
    from sender.journal import replay

    last = replay(outcome.log).last_time if outcome.log is not None and outcome.log.is_file() else None
    try:
        recorded = f"; the send log's last entry: {local(datetime.fromisoformat(last), policy)}" if last else ""
    except ValueError:
        recorded = ""
    link = f" ([the run]({run.run_url}))" if run.run_url else ""
    return f"Dispatch run at {local(run.now, policy)}{recorded}{link}."


def alert_body(policy: Policy, run: RunFacts, items: Sequence[AlertItem]) -> str:
    link = f" ([the run]({run.run_url}))" if run.run_url else ""
    lines = [f"{policy.notify.team}: the dispatch run at {local(run.now, policy)}{link} needs a person.", ""]
    lines += [f"- {item.text}" for item in items]
    lines += ["", "`mailings status` shows every mailing's state. Close this issue when all is handled."]
    return "\n".join(lines)[:COMMENT_CHARS] + "\n"


def job_summary(policy: Policy, outcomes: Sequence[Outcome], run: RunFacts, said: Sequence[Said]) -> str:
    """The run as Markdown: what GitHub was told, then a row per mailing the run acted on."""
    mode = " (dry run: nothing was sent or written)" if run.dry_run else ""
    mode = " (stopped by a signal: nothing was posted on GitHub; the next run resumes)" if run.stopped else mode
    lines = [f"## mailings send at {local(run.now, policy)}{mode}", ""]
    if not run.git_ok:
        lines += ["**The send logs this run wrote could not be recorded on main**: the run's log says why.", ""]
    if said:
        lines += ["Word back on GitHub:", "", *(item.markdown() for item in said), ""]
    acted = [o for o in outcomes if o.acted]
    if acted:
        lines += [
            "| mailing | state | accepted | failed | unknown | pending | of | note |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        lines += [
            f"| {cell(o.mailing_id, 200)} | {o.state.value} | {o.accepted} | {o.failed} | {o.unknown} | "
            f"{o.pending} | {o.total} | {cell(o.note)} |"
            for o in acted
        ]
        lines.append("")
    idle = Counter(o.state.value for o in outcomes if not o.acted)
    if idle:
        parts = ", ".join(f"{n} {state}" for state, n in sorted(idle.items()))
        total = sum(idle.values())
        lines += [f"Nothing to do for {total} other mailing{'s' if total != 1 else ''} ({parts}).", ""]
    if not outcomes:
        lines += ["No mailings.", ""]
    return "\n".join(lines) + "\n"


def fit(text: str, limit: int) -> str:
    """*text* cut at a line end so that it takes at most *limit* bytes in UTF-8, saying so when it is cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    room = max(0, limit - len(CUT.encode("utf-8")))
    head = data[:room].decode("utf-8", "ignore")
    return head[: head.rfind("\n") + 1] + CUT if room else ""


def append_summary(path: Path, text: str) -> str | None:
    """Append *text* to the step's summary file within GitHub's limit; why not, or None."""
    try:
        used = path.stat().st_size if path.exists() else 0
        room = SUMMARY_LIMIT - used
        piece = fit(text, room) if room > 0 else ""
        if not piece:
            return "the summary file already holds 1 MiB"
        with path.open("a", encoding="utf-8") as stream:
            stream.write(piece)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return None

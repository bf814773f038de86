"""`mailings approvals`: the required status check `approvals`. A pull request that changes mailings/ passes only
when a member of every team that policy.yaml names (`approvals.teams`) has approved its latest commit.

GitHub's own review rules cannot say this: code owners' review accepts any one owner, and a count of approvals
does not ask from which office. So this reads the pull request, its files and its reviews through the REST API
(sender.github) and decides:

- an approval counts for the commit it was given on, and only while it is the latest: a later push needs a new
  one, and a "changes requested" (or a dismissal) after an approval by the same person voids it; a comment does not;
- the pull request's author never approves for a team (GitHub refuses that too);
- each team needs its own person: one approver who is in two teams counts for one of them;
- a pull request that changes nothing under mailings/ passes (code owners' review covers the rest); one whose list
  of files GitHub cut short counts as changing mailings/.

It decides and says which team is still missing; it never writes to GitHub.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from checks.errors import UsageError
from checks.loader import MAILINGS_DIR
from checks.options import repo_root
from checks.policy import ApprovalTeam, load_policy

if TYPE_CHECKING:  # imported where it is used: every `mailings` command builds this module's parser
    from sender.github import PullInfo, Review

# GitHub's files endpoint lists at most this many files of a pull request.
MAX_LISTED_FILES = 3000


@dataclass(frozen=True)
class Standing:
    """Where one reviewer's reviews leave them: their last approval or rejection, and the commit it was on."""

    state: str  # APPROVED, CHANGES_REQUESTED or DISMISSED
    commit: str


@dataclass(frozen=True)
class TeamVerdict:
    team: ApprovalTeam
    approver: str | None  # the login that approves for the team, or None: missing
    notes: tuple[str, ...]  # why the team's members' reviews do not count (when missing)


@dataclass(frozen=True)
class Verdict:
    number: int
    head_sha: str
    needed: bool  # the pull request changes mailings/
    teams: tuple[TeamVerdict, ...]

    @property
    def missing(self) -> tuple[ApprovalTeam, ...]:
        return tuple(t.team for t in self.teams if t.approver is None) if self.needed else ()

    @property
    def passed(self) -> bool:
        return not self.needed or (bool(self.teams) and not self.missing)


# --- deciding --------------------------------------------------------------------------------------------------


def changes_mailings(files: Iterable[str], pull: PullInfo) -> bool:
    """Whether the pull request touches mailings/ (a rename out of it too); a list cut short counts as yes."""
    if pull.changed_files > MAX_LISTED_FILES:
        return True
    return any(path == MAILINGS_DIR or path.startswith(MAILINGS_DIR + "/") for path in files)


def standings(reviews: Sequence[Review], author: str) -> dict[str, Standing]:
    """Each reviewer's (lower-case login) last approval, request for changes or dismissed review, oldest first;
    comments and pending reviews change nothing, and the author's own reviews count for nothing."""
    found: dict[str, Standing] = {}
    for review in reviews:
        login = review.author.lower()
        if not login or login == author.lower():
            continue
        if review.state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
            found[login] = Standing(review.state, review.commit_id)
    return found


def decide(pull: PullInfo, files: Iterable[str], reviews: Sequence[Review], teams: Sequence[ApprovalTeam]) -> Verdict:
    needed = changes_mailings(files, pull)
    by_login = standings(reviews, pull.author)
    valid = {login for login, s in by_login.items() if s.state == "APPROVED" and s.commit == pull.head_sha}
    candidates = [[m for m in _members(team) if m in valid] for team in teams]
    chosen = _match(candidates)
    verdicts = []
    for index, team in enumerate(teams):
        approver = chosen.get(index)
        notes = () if approver else tuple(_notes(team, by_login, pull, valid, chosen, teams))
        verdicts.append(TeamVerdict(team, approver, notes))
    return Verdict(pull.number, pull.head_sha, needed, tuple(verdicts))


def _members(team: ApprovalTeam) -> list[str]:
    return list(dict.fromkeys(member.lower() for member in team.members))


def _match(candidates: Sequence[Sequence[str]]) -> dict[int, str]:
    """A different approver for as many teams as possible (augmenting paths: a handful of teams and people)."""
    holder: dict[str, int] = {}  # login -> the team it approves for

    def place(team: int, seen: set[str]) -> bool:
        for login in candidates[team]:
            if login in seen:
                continue
            seen.add(login)
            if login not in holder or place(holder[login], seen):
                holder[login] = team
                return True
        return False

    for team in range(len(candidates)):
        place(team, set())
    return {team: login for login, team in holder.items()}


def _notes(
    team: ApprovalTeam,
    by_login: Mapping[str, Standing],
    pull: PullInfo,
    valid: set[str],
    chosen: Mapping[int, str],
    teams: Sequence[ApprovalTeam],
) -> Iterable[str]:
    """Why none of *team*'s members approves for it, member by member where there is something to say."""
    short = pull.head_sha[:12]
    said = False
    for login in _members(team):
        standing = by_login.get(login)
        if login == pull.author.lower():
            yield f"@{login} opened the pull request and cannot approve it"
        elif login in valid:
            other = next((teams[i].name for i, who in chosen.items() if who == login), "another team")
            yield f"@{login}'s approval counts for {other}; one person approves for one team"
        elif standing is None:
            continue
        elif standing.state == "APPROVED":
            yield f"@{login} approved an older commit ({standing.commit[:12]}); the push since needs a new approval"
        elif standing.state == "CHANGES_REQUESTED":
            yield f"@{login} requested changes"
        else:
            yield f"@{login}'s review was dismissed"
        said = True
    if not said:
        names = ", ".join(f"@{m}" for m in team.members)
        yield f"no approval of commit {short} yet from {names}"


# --- reporting -------------------------------------------------------------------------------------------------


def render(verdict: Verdict) -> str:
    """What the check's log says: every team's state, then what is still missing."""
    short = verdict.head_sha[:12]
    if not verdict.needed:
        return (
            f"pull request #{verdict.number} at {short} changes nothing under {MAILINGS_DIR}/: the offices' "
            f"approvals are not needed (code owners' review applies)\npassed\n"
        )
    lines = [f"pull request #{verdict.number} at {short} changes {MAILINGS_DIR}/: each office approves this commit"]
    if not verdict.teams:
        lines.append(
            "policy.yaml names no teams under approvals.teams, so nobody can approve: add them (README, 'For "
            "reviewers')"
        )
    for team in verdict.teams:
        label = f"{team.team.name} ({team.team.id})"
        if team.approver:
            lines.append(f"  approved  {label}: by @{team.approver}")
        else:
            lines.append(f"  missing   {label}: " + "; ".join(team.notes))
    if verdict.passed:
        lines.append("passed: every office has approved the latest commit")
    elif verdict.teams:
        lines.append("still missing: " + ", ".join(f"{t.name} ({t.id})" for t in verdict.missing))
    return "\n".join(lines) + "\n"


def annotation(verdict: Verdict) -> str:
    """The one line GitHub shows on the check when it fails."""
    if verdict.teams:
        missing = ", ".join(t.name for t in verdict.missing)
        return f"::error title=approvals::still missing an approval of commit {verdict.head_sha[:12]} from {missing}\n"
    return "::error title=approvals::policy.yaml names no approval teams (approvals.teams)\n"


# --- the command -----------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pr", required=True, type=_number, metavar="N", help="the pull request's number")
    parser.add_argument(
        "--repo", metavar="OWNER/NAME", help="the repository (default: GITHUB_REPOSITORY, as on GitHub Actions)"
    )
    parser.add_argument(
        "--head-sha",
        metavar="SHA",
        help="the commit the run is for (the event's head): fail if the pull request has moved on from it",
    )
    parser.add_argument(
        "--root", default=".", help="where policy.yaml is (the base branch's checkout; default: the current directory)"
    )


def cmd_approvals(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    """0 when the pull request has every approval it needs, 1 when one is missing or GitHub could not be read."""
    from sender.github import ApiFailure, GitHub, PullInfo, settings_from_env

    policy = load_policy(repo_root(args), check_holidays=False)
    env = {**env, "GITHUB_REPOSITORY": args.repo} if args.repo else env
    settings = settings_from_env({"GITHUB_API_URL": "https://api.github.com", **env})
    if settings is None or isinstance(settings, str):
        raise UsageError(f"cannot reach GitHub: {settings or 'GITHUB_TOKEN and GITHUB_REPOSITORY not set'}")
    api = GitHub(settings)
    pull = api.pull(args.pr)
    files = api.pull_files(args.pr) if not isinstance(pull, ApiFailure) else pull
    reviews = api.pull_reviews(args.pr) if not isinstance(files, ApiFailure) else files
    for answer in (pull, files, reviews):
        if isinstance(answer, ApiFailure):
            out.write(f"::error title=approvals::cannot read the pull request from GitHub: {answer}\n")
            return 1
    assert isinstance(pull, PullInfo) and isinstance(files, list) and isinstance(reviews, list)
    if args.head_sha and args.head_sha != pull.head_sha:
        out.write(
            f"::error title=approvals::pull request #{pull.number} is now at {pull.head_sha[:12]}, not "
            f"{args.head_sha[:12]}: the run for the latest commit decides\n"
        )
        return 1
    verdict = decide(pull, files, reviews, policy.approval_teams)
    out.write(render(verdict))
    if not verdict.passed:
        out.write(annotation(verdict))
        return 1
    return 0


def _number(text: str) -> int:
    if not re.fullmatch(r"[1-9][0-9]{0,9}", text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a pull request number")
    return int(text)

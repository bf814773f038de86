"""Word back on GitHub (sender.github, sender.notify) against a local HTTP server (tests.localhttp) that implements
the four REST endpoints in memory and records every request, with real sends through real git and a real SMTP relay."""

from __future__ import annotations

import functools
import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from markdown_it import MarkdownIt

from sender import notify
from sender.dispatch import Outcome
from sender.github import Comment, GitHub, Settings, Tuning, settings_from_env
from sender.state import MailingState
from tests.conftest import BODIES, Repo, git
from tests.localhttp import JSONServer, Reply
from tests.sender.sending import MAILING, NOW, recipients
from tests.sender.smtpserver import Faults, FaultyHandler, RunningServer
from tests.sender.test_cli_send import relay, run

TOKEN = "ghs_l0calTestT0ken4wordBack"
OWNER, REPO = "kth", "mailings"
BLOCKED = "2027-02-10-blocked"
MISSED = "2027-02-08-missed"
LATER = "2027-02-10T09:22:00+01:00"  # the next scheduled run
QUICK = Tuning(timeout=0.5, retries=1, backoff=(0.01,))

MakeServer = Callable[..., RunningServer]


# --- a local GitHub -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with the query
    body: Any
    authorization: str | None


@dataclass
class Thread:
    """A pull request or an issue: on GitHub both take comments at /issues/{number}/comments."""

    number: int
    kind: str  # "pull" or "issue"
    title: str = ""
    body: str = ""
    labels: list[str] = field(default_factory=list)
    merged: bool = False
    state: str = "open"
    comments: list[str] = field(default_factory=list)


class FakeGitHub:
    """GET /repos/{o}/{r}/commits/{sha}/pulls, POST /repos/{o}/{r}/issues/{n}/comments,
    GET /repos/{o}/{r}/issues?labels=...&state=open and POST /repos/{o}/{r}/issues, on 127.0.0.1."""

    def __init__(self) -> None:
        self.threads: dict[int, Thread] = {}
        self.commits: dict[str, list[int]] = {}  # commit -> the pull requests that contain it
        self.requests: list[Request] = []
        self.fail: int | None = None  # answer every request with this status (the body echoes the token)
        self.fail_first: list[int] = []  # answer the next requests with these statuses, then normally
        self.hang = False  # answer nothing until stopped
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.server = JSONServer(self._serve)
        self.url = self.server.url

    def stop(self) -> None:
        self.released.set()
        self.server.stop()

    def add_pull(self, commit: str, number: int, *, merged: bool = True) -> None:
        self.threads[number] = Thread(number, "pull", title=f"Pull request {number}", merged=merged)
        self.commits.setdefault(commit, []).append(number)

    def add_issue(self, number: int, labels: list[str], state: str = "open") -> None:
        self.threads[number] = Thread(number, "issue", title=f"Issue {number}", labels=labels, state=state)

    def comments(self, number: int) -> list[str]:
        return self.threads[number].comments

    def issues_opened(self) -> list[Thread]:
        return [t for t in self.threads.values() if t.kind == "issue" and t.title.startswith("Mailings:")]

    def posts(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST"]

    def _serve(self, method: str, url: str, headers: Message, raw: bytes) -> Reply | None:
        body = json.loads(raw) if raw else None
        if self.hang:
            self.requests.append(Request(method, url, body, headers.get("Authorization")))
            self.released.wait(30)  # far past the client's timeout
            return None
        status, data = self.answer(method, url, body, headers.get("Authorization"))
        return status, data, {}

    def answer(self, method: str, url: str, body: Any, authorization: str | None) -> tuple[int, Any]:
        with self.lock:
            self.requests.append(Request(method, url, body, authorization))
            if self.fail_first:
                status = self.fail_first.pop(0)
                return status, {"message": f"failed on purpose for {authorization}"}
            if self.fail is not None:
                return self.fail, {"message": f"server error for {authorization}"}
            if authorization != f"Bearer {TOKEN}":
                return 401, {"message": "Bad credentials"}
            return self._route(method, url, body)

    def _route(self, method: str, url: str, body: Any) -> tuple[int, Any]:
        parts = urlsplit(url)
        path = parts.path.split("/")[1:]
        if path[:3] != ["repos", OWNER, REPO]:
            return 404, {"message": "Not Found"}
        rest = path[3:]
        if method == "GET" and len(rest) == 3 and rest[0] == "commits" and rest[2] == "pulls":
            return 200, [self._json(self.threads[n]) for n in self.commits.get(rest[1], [])]
        if method == "POST" and len(rest) == 3 and rest[0] == "issues" and rest[2] == "comments":
            thread = self.threads.get(int(rest[1]))
            if thread is None:
                return 404, {"message": "Not Found"}
            thread.comments.append(body["body"])
            return 201, {"id": len(thread.comments), "body": body["body"], "html_url": f"{self.url}/c"}
        if method == "GET" and rest == ["issues"]:
            query = parse_qs(parts.query)
            label, state = query["labels"][0], query["state"][0]
            found = [t for t in self.threads.values() if label in t.labels and t.state == state]
            return 200, [self._json(t) for t in sorted(found, key=lambda t: -t.number)]  # newest first, as GitHub
        if method == "POST" and rest == ["issues"]:
            number = max(100, *self.threads) + 1  # apart from the pull requests that tests add later
            self.threads[number] = Thread(number, "issue", body["title"], body["body"], list(body.get("labels", [])))
            return 201, self._json(self.threads[number])
        return 404, {"message": "Not Found"}

    def _json(self, thread: Thread) -> dict[str, Any]:
        data: dict[str, Any] = {
            "number": thread.number,
            "html_url": f"{self.url}/{thread.kind}/{thread.number}",
            "state": thread.state,
            "title": thread.title,
            "labels": [{"name": name} for name in thread.labels],
        }
        if thread.kind == "pull":
            data["merged_at"] = "2027-01-20T10:00:00Z" if thread.merged else None
            data["pull_request"] = {}
        return data


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    yield fake
    fake.stop()


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short timeouts and backoffs for the word back of `mailings send` (it reads sender.notify.word_back)."""
    monkeypatch.setattr(notify, "word_back", functools.partial(notify.word_back, tuning=QUICK))


# --- real git, one merge per request --------------------------------------------------------------------------


def publish(tmp_path: Path, repo: Repo, *ids: str) -> tuple[Path, Path, dict[str, str]]:
    """A bare origin with the policy, then each request of *repo* added in a commit of its own (as its pull
    request merged it), a clone to send from, and the commit that added each request."""
    tmp_path.mkdir()
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "--quiet", str(origin), str(seed))
    shutil.copy(repo.root / "policy.yaml", seed / "policy.yaml")
    shutil.copytree(repo.root / "schema", seed / "schema")
    git(seed, "add", ".")
    git(seed, "commit", "--quiet", "-m", "The policy")
    commits = {}
    for mailing_id in ids:
        commits[mailing_id] = merge(seed, repo, mailing_id)
    git(seed, "push", "--quiet", "origin", "HEAD:main")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", str(origin), str(clone))
    return origin, clone, commits


def merge(checkout: Path, repo: Repo, mailing_id: str) -> str:
    """Commit *repo*'s request *mailing_id* into *checkout*; the commit."""
    shutil.copytree(repo.root / "mailings" / mailing_id, checkout / "mailings" / mailing_id)
    git(checkout, "add", f"mailings/{mailing_id}")
    git(checkout, "commit", "--quiet", "-m", f"Approve {mailing_id}")
    return git(checkout, "rev-parse", "HEAD")


def github_env(server: RunningServer, fake: FakeGitHub, summary: Path) -> dict[str, str]:
    return relay(
        server,
        GITHUB_API_URL=fake.url,
        GITHUB_TOKEN=TOKEN,
        GITHUB_REPOSITORY=f"{OWNER}/{REPO}",
        GITHUB_STEP_SUMMARY=str(summary),
    )


def send(clone: Path, env: dict[str, str], now: str = NOW) -> tuple[int, str]:
    return run(["send", "--root", str(clone), "--now", now, "--commit", "--push"], env)


def add_blocked(repo: Repo) -> None:
    repo.add(BLOCKED, bodies={**BODIES, "en": "Read <b>this</b>.\n"})


# --- comments ---------------------------------------------------------------------------------------------------


def test_each_state_change_is_one_comment_on_the_pull_request_that_merged_it(
    repo: Repo, smtp_server: RunningServer, github: FakeGitHub, tmp_path: Path, plain_git: None
) -> None:
    repo.add()
    add_blocked(repo)
    _, clone, commits = publish(tmp_path / "git", repo, MAILING, BLOCKED)
    github.add_pull(commits[MAILING], 5, merged=False)  # an open pull request that contains the commit too
    github.add_pull(commits[MAILING], 7)
    github.add_pull(commits[BLOCKED], 8)
    summary = tmp_path / "summary.md"
    env = github_env(smtp_server, github, summary)

    code, out = send(clone, env)

    assert code == 1 and len(smtp_server.handler.recipients()) == 600  # the blocked one makes it 1, as before
    assert github.comments(5) == []
    [sent] = github.comments(7)
    assert sent.startswith("**Mailing ` 2027-02-10-travel `: sent**\n\nThe mailing went out")
    assert "600 accepted, 0 failed, 0 unknown, 0 pending, of 600 recipients. This run: 600 accepted." in sent
    assert "Dispatch run at 2027-02-10 09:05 CET; the send log's last entry: " in sent
    [blocked] = github.comments(8)
    assert blocked.startswith("**Mailing ` 2027-02-10-blocked `: blocked**\n\nThe mailing was not sent")
    assert "Nothing was sent." in blocked and "[plain-text]" in blocked
    assert "github: commented on pull request #7 (sent) for 2027-02-10-travel" in out
    assert "github: commented on pull request #8 (blocked) for 2027-02-10-blocked" in out
    assert {r.authorization for r in github.requests} == {f"Bearer {TOKEN}"}
    assert [r.path for r in github.requests if r.method == "GET"] == [
        f"/repos/kth/mailings/commits/{commits[BLOCKED]}/pulls",  # the mailings in the order of their ids
        f"/repos/kth/mailings/commits/{commits[MAILING]}/pulls",
        "/repos/kth/mailings/issues?labels=mailings-alert&state=open",
    ]
    first = len(github.requests)

    # The next scheduled run: the travel mailing is sent, the other blocked for the same reason; nothing is new.
    code, out = send(clone, env, LATER)
    assert code == 1 and len(smtp_server.handler.recipients()) == 600
    assert len(github.requests) == first and "github:" not in out
    assert [len(github.comments(n)) for n in (7, 8)] == [1, 1]
    text = summary.read_text(encoding="utf-8")
    assert text.count("## mailings send at ") == 2 and TOKEN not in out + text
    assert "| ` 2027-02-10-travel ` | sent | 600 | 0 | 0 | 0 | 600 | ` complete ` |" in text
    assert "- commented on pull request #7 (sent) for ` 2027-02-10-travel `" in text


def test_the_alert_issue_is_opened_once_and_commented_on_after(
    repo: Repo, smtp_server: RunningServer, github: FakeGitHub, tmp_path: Path, plain_git: None
) -> None:
    add_blocked(repo)
    repo.add(MISSED, changes={"send_at": "2027-02-08 09:00"})
    github.add_issue(1, ["mailings-alert"], state="closed")  # an earlier alert, handled: a new one is opened
    _, clone, commits = publish(tmp_path / "git", repo, BLOCKED)
    github.add_pull(commits[BLOCKED], 8)
    env = github_env(smtp_server, github, tmp_path / "summary.md")

    send(clone, env)
    [issue] = github.issues_opened()
    assert issue.labels == ["mailings-alert"] and issue.title == "Mailings: a mailing needs a person"
    assert issue.body.startswith("@kth-mailings/it: the dispatch run at 2027-02-10 09:05 CET needs a person.\n")
    assert "- ` 2027-02-10-blocked ` (pull request #8) is blocked: ` mailings/2027-02-10-blocked/body.en.txt" in (
        issue.body
    )

    # A request merged later and run too late: missed, which needs a person too.
    commits[MISSED] = merge(clone, repo, MISSED)
    git(clone, "push", "--quiet", "origin", "HEAD:main")
    github.add_pull(commits[MISSED], 9)
    code, out = send(clone, env, LATER)
    assert code == 1
    assert github.issues_opened() == [issue] and len([r for r in github.posts() if r.path.endswith("/issues")]) == 1
    [alert] = github.comments(issue.number)
    assert alert.startswith("@kth-mailings/it: the dispatch run at 2027-02-10 09:22 CET needs a person.\n")
    assert "- ` 2027-02-08-missed ` (pull request #9) is missed: ` send_at 2027-02-08 09:00 CET is more" in alert
    assert "blocked" not in alert  # not news: blocked for the same reason as before
    [missed] = github.comments(9)
    assert "The mailing was not sent in time" in missed
    assert f"github: alerted @kth-mailings/it on issue #{issue.number}" in out
    assert github.comments(1) == []


def test_unknown_outcomes_are_word_back_and_an_alert(
    repo: Repo, make_server: MakeServer, github: FakeGitHub, tmp_path: Path, plain_git: None
) -> None:
    server = make_server(FaultyHandler(Faults(drop_after_data=[2])))
    repo.add()
    _, clone, commits = publish(tmp_path / "git", repo, MAILING)
    github.add_pull(commits[MAILING], 7)
    send(clone, github_env(server, github, tmp_path / "summary.md"))
    [comment] = github.comments(7)
    [issue] = github.issues_opened()
    assert "100 recipient(s) have an unknown outcome from this run" in comment
    assert "100 unknown" in comment
    assert "` 2027-02-10-travel ` (pull request #7): 100 recipient(s) with an unknown outcome" in issue.body


def test_a_request_without_a_merged_pull_request_is_reported(
    repo: Repo, smtp_server: RunningServer, github: FakeGitHub, tmp_path: Path, plain_git: None
) -> None:
    repo.add()
    _, clone, commits = publish(tmp_path / "git", repo, MAILING)  # pushed straight to main: no pull request
    code, out = send(clone, github_env(smtp_server, github, tmp_path / "summary.md"))
    assert code == 0 and github.posts() == []
    assert (
        "github: no comment on its pull request (sent) for 2027-02-10-travel: "
        f"commit {commits[MAILING][:12]} came in through no merged pull request"
    ) in out


# --- a failing API changes nothing about sending ----------------------------------------------------------------


@pytest.mark.parametrize("fault", ["500", "no answer"])
def test_an_api_that_fails_changes_nothing_about_sending(
    fault: str,
    repo: Repo,
    make_server: MakeServer,
    github: FakeGitHub,
    tmp_path: Path,
    plain_git: None,
    quick: None,
) -> None:
    repo.add()
    add_blocked(repo)
    github.fail = 500 if fault == "500" else None
    github.hang = fault == "no answer"
    outcomes = {}
    for name, use_github in (("without", False), ("with", True)):
        server = make_server()
        origin, clone, commits = publish(tmp_path / name, repo, MAILING, BLOCKED)
        github.add_pull(commits[MAILING], 7)
        summary = tmp_path / f"{name}.md"
        env = github_env(server, github, summary) if use_github else relay(server)
        started = time.monotonic()
        code, out = send(clone, env)
        outcomes[name] = (
            code,
            server.handler.counts(),
            git(origin, "show", f"main:mailings/{MAILING}/sendlog.jsonl")
            == (clone / "mailings" / MAILING / "sendlog.jsonl").read_text(encoding="utf-8").strip(),
            git(origin, "log", "-1", "--format=%s", "main"),
        )
        elapsed = time.monotonic() - started
    assert outcomes["with"] == outcomes["without"]
    code, counts, recorded, subject = outcomes["with"]
    assert (code, counts, recorded) == (1, Counter(recipients(600)), True)
    assert subject == "Send logs: 2 mailings, 600 accepted, 0 failed"
    # The first request is tried again once, then nothing more is tried in this run.
    assert len(github.requests) == 2
    reason = (
        "HTTP 500 Internal Server Error: server error for Bearer ***" if fault == "500" else "no answer within 0.5 s"
    )
    assert (
        f"github: no comment on its pull request (blocked) for 2027-02-10-blocked: "
        f"GET /repos/kth/mailings/commits/{commits[BLOCKED]}/pulls: {reason} (after 2 attempts)\n"
        f"github: no comment on its pull request (sent) for 2027-02-10-travel: "
        f"GET /repos/kth/mailings/commits/{commits[MAILING]}/pulls: not tried (GitHub's API failed earlier in this "
        f"run: {reason})\n"
        "github: no alert (the open alert issue could not be looked up): "
        f"GET /repos/kth/mailings/issues?labels=mailings-alert&state=open: not tried (GitHub's API failed earlier in "
        f"this run: {reason})\n"
    ) in out
    assert "github: what was sent and recorded is not affected" in out
    text = summary.read_text(encoding="utf-8")
    assert "- **failed:** no comment on its pull request (sent) for ` 2027-02-10-travel `: ` GET /repos/" in text
    assert "| ` 2027-02-10-travel ` | sent | 600 |" in text
    assert TOKEN not in out + text
    assert elapsed < 15


def test_without_the_token_nothing_is_asked_and_the_run_says_so(
    repo: Repo, smtp_server: RunningServer, github: FakeGitHub, tmp_path: Path
) -> None:
    repo.add()
    env = github_env(smtp_server, github, tmp_path / "summary.md")
    del env["GITHUB_TOKEN"]
    code, out = run(["send", "--root", str(repo.root), "--now", NOW], env)
    assert code == 0 and github.requests == [] and "github:" not in out  # a developer's shell: not a fault
    code, out = run(["send", "--root", str(repo.root), "--now", NOW], {**env, "GITHUB_ACTIONS": "true"})
    assert code == 0 and github.requests == []
    assert out.endswith("github: comments and alerts are off: GITHUB_TOKEN not set\n")
    assert "| ` 2027-02-10-travel ` | sent | 600 |" in (tmp_path / "summary.md").read_text(encoding="utf-8")


# --- the client -------------------------------------------------------------------------------------------------


def client(fake: FakeGitHub, **tuning: Any) -> GitHub:
    settings = settings_from_env(
        {"GITHUB_API_URL": fake.url, "GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": f"{OWNER}/{REPO}"}
    )
    assert isinstance(settings, Settings)
    return GitHub(settings, Tuning(**{"timeout": 2.0, "retries": 2, "backoff": (0.01,), **tuning}))


def test_5xx_and_429_are_tried_again_other_refusals_are_not(github: FakeGitHub) -> None:
    github.add_pull("abc", 7)
    github.fail_first = [502, 429]
    api = client(github)
    assert api.comment(7, "hello") == Comment(f"{github.url}/c")
    assert github.comments(7) == ["hello"] and len(github.requests) == 3
    failure = api.comment(404, "nobody")
    assert (
        str(failure) == "POST /repos/kth/mailings/issues/404/comments: HTTP 404 Not Found: Not Found (after 1 attempt)"
    )
    assert api.down is None and len(github.requests) == 4  # a 404 says nothing of the next request
    github.fail_first = [503, 503, 503]
    failure = api.comment(7, "again")
    assert "HTTP 503" in str(failure) and "(after 3 attempts)" in str(failure) and api.down is not None
    assert str(api.comment(7, "later")).endswith(
        "not tried (GitHub's API failed earlier in this run: HTTP 503 "
        "Service Unavailable: failed on purpose for Bearer ***)"
    )
    assert len(github.requests) == 7


def test_settings_come_whole_from_the_environment_mapping() -> None:
    base = {"GITHUB_API_URL": "https://api.github.com", "GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": "kth/mailings"}
    assert settings_from_env({}) is None
    assert settings_from_env({k: v for k, v in base.items() if k != "GITHUB_TOKEN"}) == "GITHUB_TOKEN not set"
    assert settings_from_env({**base, "GITHUB_API_URL": "http://github.example"}) == (
        "GITHUB_API_URL 'http://github.example' is not an https:// URL"
    )
    assert "not owner/repository" in str(settings_from_env({**base, "GITHUB_REPOSITORY": "kth"}))
    assert "not a token" in str(settings_from_env({**base, "GITHUB_TOKEN": "abc\ndef"}))
    settings = settings_from_env(base)
    assert isinstance(settings, Settings) and TOKEN not in repr(settings)


# --- the texts --------------------------------------------------------------------------------------------------

POLICY_NOW = datetime.fromisoformat(NOW)
HOSTILE = "ping @kth-mailings/cbl, see [this](https://evil.example) or https://evil.example #12 <b>x</b> `a|b`\nnext"


def rendered(markdown: str) -> str:
    return MarkdownIt("gfm-like").render(markdown)  # tables, autolinks of bare URLs: as GitHub renders


def test_text_from_a_request_adds_no_mention_link_or_markup(repo: Repo) -> None:
    outcome = Outcome("2027-02-10-@team", MailingState.BLOCKED, HOSTILE, acted=True, previous=MailingState.DUE)
    run = notify.RunFacts(POLICY_NOW)
    for markdown in (
        notify.comment_body(outcome, repo.policy, run),
        notify.alert_body(repo.policy, run, notify.alert_items([outcome], run, {})),
        notify.job_summary(repo.policy, [outcome], run, []),
    ):
        html = rendered(markdown)
        assert "<a " not in html and "<b>" not in html
        # every @ of the request is in code and followed by an invisible space; only the policy's team is a mention
        assert markdown.replace("@kth-mailings/it:", "").count("@") == markdown.count("@\u200b")
    html = rendered(notify.job_summary(repo.policy, [outcome], run, []))
    assert html.count("<td") == 8  # the | of the note stays in its cell
    assert "`a|b` next</code>" in html


def test_a_sentence_for_each_state_and_one_for_the_rest(repo: Repo) -> None:
    run = notify.RunFacts(POLICY_NOW)
    for state, sentence in (
        (MailingState.HELD, "Sending is on hold"),
        (MailingState.CANCELLED, "The mailing was cancelled"),
        (MailingState.SENDING, "The mailing's state is now sending."),
    ):
        outcome = Outcome(MAILING, state, "why", acted=True, previous=MailingState.DUE, unknown_now=3, unknown=3)
        assert sentence in notify.comment_body(outcome, repo.policy, run)
        assert notify.worth_a_comment(outcome)
    quiet = Outcome(MAILING, MailingState.SENDING, "n", acted=True, previous=MailingState.DUE)
    assert not notify.worth_a_comment(quiet)
    assert notify.worth_a_comment(Outcome(MAILING, MailingState.HELD, "n", previous=MailingState.DUE))
    assert not notify.needs_a_person(Outcome(MAILING, MailingState.HELD, "n", previous=MailingState.DUE))
    [item] = notify.alert_items([], notify.RunFacts(POLICY_NOW, git_ok=False), {})
    assert "could not be recorded on main" in item.text


def test_the_job_summary_stays_within_1_mib(tmp_path: Path, repo: Repo) -> None:
    path = tmp_path / "summary.md"
    path.write_text("# an earlier part of the step\n", encoding="utf-8")
    outcomes = [
        Outcome(f"2027-02-10-m{i}", MailingState.BLOCKED, "é" * 3000, acted=True, previous=MailingState.DUE)
        for i in range(1000)
    ]
    text = notify.job_summary(repo.policy, outcomes, notify.RunFacts(POLICY_NOW), [])
    assert len(text.encode("utf-8")) > notify.SUMMARY_LIMIT
    assert notify.append_summary(path, text) is None
    written = path.read_bytes()
    assert len(written) <= notify.SUMMARY_LIMIT and written.decode("utf-8").endswith(notify.CUT)
    assert notify.append_summary(path, text) is None and path.stat().st_size <= notify.SUMMARY_LIMIT
    path.write_bytes(b"x" * notify.SUMMARY_LIMIT)
    assert notify.append_summary(path, "more\n") == "the summary file already holds 1 MiB"

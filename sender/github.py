"""GitHub's REST API over urllib: the endpoints the dispatch job's word back needs, and those the pull request's
plan comment (checks.prcomment) and the `approvals` check (checks.approvals) read and write.

This module owns the requests: their timeout, their retries, following a list's pages and the masking of the
token. It never raises to its caller (a failure is an `ApiFailure` value), never reads the environment (the command
passes it in as a mapping) and never decides what to say or to whom (sender.notify, checks.prcomment do).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from typing import Any

ALERT_LABEL = "mailings-alert"
API_VERSION = "2022-11-28"
# Far more than any answer of these endpoints; a bigger one is not read into memory.
MAX_ANSWER_BYTES = 8 * 1024 * 1024
# What an error answer may add to a failure's text: enough for GitHub's message, not a page of HTML.
ERROR_EXCERPT_CHARS = 300
# A list longer than this many pages of 100 is not a list these commands expect (GitHub itself stops a pull
# request's files at 3,000): fail rather than read without end.
MAX_PAGES = 100
PER_PAGE = 100
_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="([^"]*)"')
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
SETTINGS_VARIABLES = ("GITHUB_API_URL", "GITHUB_TOKEN", "GITHUB_REPOSITORY")


@dataclass(frozen=True)
class Tuning:
    """How hard a request tries. A run's word back must never hold up the next scheduled run for long."""

    timeout: float = 10.0  # seconds for the connection and each read
    retries: int = 3  # tries after the first, on 5xx, 429, a rate limit, a timeout or a lost connection
    backoff: tuple[float, ...] = (1.0, 2.0, 4.0)  # seconds before the 1st, 2nd, 3rd... retry
    max_wait: float = 30.0  # the longest Retry-After honoured; a longer one fails the request


@dataclass(frozen=True)
class Settings:
    api_url: str  # e.g. https://api.github.com, without a trailing slash
    token: str
    owner: str
    repo: str

    def __repr__(self) -> str:  # a settings object in a traceback must not show the token
        return f"Settings(api_url={self.api_url!r}, token='***', owner={self.owner!r}, repo={self.repo!r})"


def settings_from_env(env: Mapping[str, str]) -> Settings | str | None:
    """The API settings from GITHUB_API_URL, GITHUB_TOKEN and GITHUB_REPOSITORY; None when none is set (not
    on GitHub), or why they cannot be used."""
    values = {name: env.get(name, "").strip() for name in SETTINGS_VARIABLES}
    missing = [name for name, value in values.items() if not value]
    if len(missing) == len(SETTINGS_VARIABLES):
        return None
    if missing:
        return f"{' and '.join(missing)} not set"
    api_url = values["GITHUB_API_URL"].rstrip("/")
    parts = urllib.parse.urlsplit(api_url)
    # The token goes in a header: never in clear text over a network (a local test server is fine).
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK)):
        return f"GITHUB_API_URL {api_url!r} is not an https:// URL"
    if (
        not values["GITHUB_TOKEN"].isascii()
        or not values["GITHUB_TOKEN"].isprintable()
        or " " in values["GITHUB_TOKEN"]
    ):
        return "GITHUB_TOKEN is not a token (it has spaces or characters a header cannot carry)"
    owner, _, repo = values["GITHUB_REPOSITORY"].partition("/")
    if not owner or not repo or "/" in repo or any(c in owner + repo for c in "?#%\\ "):
        return f"GITHUB_REPOSITORY {values['GITHUB_REPOSITORY']!r} is not owner/repository"
    return Settings(api_url, values["GITHUB_TOKEN"], owner, repo)


@dataclass(frozen=True)
class ApiFailure:
    """A request that did not succeed, said so that it can go into a log as it is (the token masked)."""

    request: str  # e.g. "POST /repos/kth/mailings/issues/7/comments"
    reason: str
    attempts: int = 0  # 0: not tried (the API had failed earlier in the run)

    def __str__(self) -> str:
        if not self.attempts:
            return f"{self.request}: not tried ({self.reason})"
        tries = f"after {self.attempts} attempts" if self.attempts > 1 else "after 1 attempt"
        return f"{self.request}: {self.reason} ({tries})"


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    merged: bool


@dataclass(frozen=True)
class Issue:
    number: int
    url: str


@dataclass(frozen=True)
class Comment:
    url: str


@dataclass(frozen=True)
class IssueComment:
    """A comment on an issue or pull request, as the plan comment needs it."""

    id: int
    author: str  # the login; "" when GitHub gives none (a deleted account)
    body: str
    url: str


@dataclass(frozen=True)
class PullInfo:
    """What the `approvals` check and the plan comment need of a pull request."""

    number: int
    author: str  # the login of whoever opened it
    head_sha: str
    state: str  # open or closed
    changed_files: int  # as GitHub counts them: more than the files endpoint lists means the list was cut


@dataclass(frozen=True)
class Review:
    """One review of a pull request, in the order GitHub lists them (oldest first)."""

    id: int
    author: str
    state: str  # APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED or PENDING
    commit_id: str  # the commit the review was given on


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would send the Authorization header on to wherever a redirect points: fail instead."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Message, newurl: str
    ) -> None:
        return None


@dataclass(frozen=True)
class _Answer:
    status: int
    data: Any
    next_url: str | None = None  # the Link header's rel="next": the following page of a list


@dataclass(frozen=True)
class _Failed:
    reason: str
    retry: bool  # worth trying again
    down: bool  # the next request would fail the same way: the API is unreachable, failing or slow
    wait: float | None = None  # what the server asked for (Retry-After)


class GitHub:
    """A client of one repository's REST API. After a request failed because the API is down or does not
    answer, the later requests of the run are not tried: a dead API costs one request's retries, not every
    mailing's."""

    def __init__(
        self,
        settings: Settings,
        tuning: Tuning = Tuning(),
        *,
        proxy: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.tuning = tuning
        self.down: ApiFailure | None = None
        self._sleep = sleep
        proxies = {"http": proxy, "https": proxy} if proxy else {}
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies), _NoRedirect)

    # --- the endpoints --------------------------------------------------------------------------------------

    def pulls_for_commit(self, sha: str) -> list[PullRequest] | ApiFailure:
        """The pull requests that contain commit *sha* (the one that merged it among them)."""
        answer = self._call("GET", f"{self._repo_path}/commits/{urllib.parse.quote(sha)}/pulls")
        if isinstance(answer, ApiFailure):
            return answer
        if not isinstance(answer, list):
            return self._unexpected("GET", "commits/{sha}/pulls")
        pulls = []
        for item in answer:
            if isinstance(item, dict) and isinstance(item.get("number"), int):
                url = item.get("html_url")
                pulls.append(
                    PullRequest(item["number"], url if isinstance(url, str) else "", bool(item.get("merged_at")))
                )
        return pulls

    def comment(self, number: int, body: str) -> Comment | ApiFailure:
        """Add a comment to issue or pull request *number*."""
        answer = self._call("POST", f"{self._repo_path}/issues/{number}/comments", {"body": body})
        if isinstance(answer, ApiFailure):
            return answer
        url = answer.get("html_url") if isinstance(answer, dict) else None
        return Comment(url if isinstance(url, str) else "")

    def open_alerts(self) -> list[Issue] | ApiFailure:
        """The open issues labelled ALERT_LABEL, oldest first (pull requests, which the endpoint lists too, left
        out)."""
        answer = self._call("GET", f"{self._repo_path}/issues", query={"labels": ALERT_LABEL, "state": "open"})
        if isinstance(answer, ApiFailure):
            return answer
        if not isinstance(answer, list):
            return self._unexpected("GET", "issues")
        issues = [
            Issue(item["number"], item.get("html_url") or "")
            for item in answer
            if isinstance(item, dict) and isinstance(item.get("number"), int) and "pull_request" not in item
        ]
        return sorted(issues, key=lambda issue: issue.number)

    def open_issue(self, title: str, body: str) -> Issue | ApiFailure:
        """Open an issue labelled ALERT_LABEL."""
        answer = self._call(
            "POST", f"{self._repo_path}/issues", {"title": title, "body": body, "labels": [ALERT_LABEL]}
        )
        if isinstance(answer, ApiFailure):
            return answer
        if not isinstance(answer, dict) or not isinstance(answer.get("number"), int):
            return self._unexpected("POST", "issues")
        return Issue(answer["number"], answer.get("html_url") or "")

    def pull(self, number: int) -> PullInfo | ApiFailure:
        """Pull request *number*: its author, head commit and state."""
        answer = self._call("GET", f"{self._repo_path}/pulls/{number}")
        if isinstance(answer, ApiFailure):
            return answer
        head = answer.get("head") if isinstance(answer, dict) else None
        sha = head.get("sha") if isinstance(head, dict) else None
        number_found = answer.get("number") if isinstance(answer, dict) else None
        if not isinstance(sha, str) or number_found != number:
            return self._unexpected("GET", f"pulls/{number}")
        changed = answer.get("changed_files")
        return PullInfo(
            number,
            _login(answer.get("user")),
            sha,
            str(answer.get("state") or ""),
            changed if isinstance(changed, int) else 0,
        )

    def pull_files(self, number: int) -> list[str] | ApiFailure:
        """The paths pull request *number* changes; a renamed file counts with its old path too."""
        items = self._pages(f"{self._repo_path}/pulls/{number}/files")
        if isinstance(items, ApiFailure):
            return items
        paths: list[str] = []
        for item in items:
            for key in ("filename", "previous_filename"):
                value = item.get(key)
                if isinstance(value, str) and value:
                    paths.append(value)
        return paths

    def pull_reviews(self, number: int) -> list[Review] | ApiFailure:
        """Every review of pull request *number*, oldest first."""
        items = self._pages(f"{self._repo_path}/pulls/{number}/reviews")
        if isinstance(items, ApiFailure):
            return items
        reviews = [
            Review(item["id"], _login(item.get("user")), str(item.get("state") or ""), str(item.get("commit_id") or ""))
            for item in items
            if isinstance(item.get("id"), int)
        ]
        return sorted(reviews, key=lambda review: review.id)  # GitHub lists them so; ids grow with time

    def issue_comments(self, number: int) -> list[IssueComment] | ApiFailure:
        """Every comment on issue or pull request *number*, oldest first."""
        items = self._pages(f"{self._repo_path}/issues/{number}/comments")
        if isinstance(items, ApiFailure):
            return items
        return [_issue_comment(item) for item in items if isinstance(item.get("id"), int)]

    def create_comment(self, number: int, body: str) -> IssueComment | ApiFailure:
        """Add a comment to issue or pull request *number*."""
        return self._write_comment("POST", f"issues/{number}/comments", body)

    def update_comment(self, comment_id: int, body: str) -> IssueComment | ApiFailure:
        """Replace the text of comment *comment_id*."""
        return self._write_comment("PATCH", f"issues/comments/{comment_id}", body)

    def _write_comment(self, method: str, where: str, body: str) -> IssueComment | ApiFailure:
        """Send *body* to the comment endpoint *where* (below the repository); the comment GitHub answers with."""
        answer = self._call(method, f"{self._repo_path}/{where}", {"body": body})
        if isinstance(answer, ApiFailure):
            return answer
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), int):
            return self._unexpected(method, where)
        return _issue_comment(answer)

    def workflow_runs(self, workflow: str, head_sha: str) -> list[datetime] | ApiFailure:
        """When GitHub created each run of *workflow* (its file name) on a pull_request event for commit *head_sha*:
        the time it received the push, which no commit can set."""
        quote = urllib.parse.quote
        answer = self._call(
            "GET",
            f"{self._repo_path}/actions/workflows/{quote(workflow, safe='')}/runs",
            query={"event": "pull_request", "head_sha": head_sha, "per_page": str(PER_PAGE)},
        )
        if isinstance(answer, ApiFailure):
            return answer
        runs = answer.get("workflow_runs") if isinstance(answer, dict) else None
        if not isinstance(runs, list):
            return self._unexpected("GET", f"actions/workflows/{workflow}/runs")
        created: list[datetime] = []
        for run in runs:
            stamp = run.get("created_at") if isinstance(run, dict) else None
            if not isinstance(stamp, str) or run.get("head_sha") != head_sha:
                continue
            try:
                moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            except ValueError:
                continue
            if moment.tzinfo is not None:
                created.append(moment)
        return created

    def mask(self, text: str) -> str:
        """*text* with the token replaced by ***."""
        return text.replace(self.settings.token, "***") if self.settings.token else text

    # --- requests -------------------------------------------------------------------------------------------

    @property
    def _repo_path(self) -> str:
        quote = urllib.parse.quote
        return f"/repos/{quote(self.settings.owner, safe='')}/{quote(self.settings.repo, safe='')}"

    def _unexpected(self, method: str, what: str) -> ApiFailure:
        return ApiFailure(f"{method} {self._repo_path}/{what}", "an answer of an unexpected shape", 1)

    def _pages(self, path: str) -> list[dict[str, Any]] | ApiFailure:
        """Every item of a list endpoint, page after page as the Link header leads (on this API only)."""
        items: list[dict[str, Any]] = []
        url: str | None = self.settings.api_url + path + "?" + urllib.parse.urlencode({"per_page": PER_PAGE})
        pages = 0
        while url is not None:
            pages += 1
            shown = f"GET {url.removeprefix(self.settings.api_url)}"
            if pages > MAX_PAGES:
                return ApiFailure(shown, f"a list longer than {MAX_PAGES} pages", 1)
            # The token goes wherever the next page is: only to the API it was meant for.
            if not url.startswith(self.settings.api_url + "/"):
                return ApiFailure(f"GET {path}", "a next page outside GITHUB_API_URL, not followed", 1)
            answer = self._request("GET", url, None, shown)
            if isinstance(answer, ApiFailure):
                return answer
            if not isinstance(answer.data, list):
                return ApiFailure(shown, "an answer of an unexpected shape", 1)
            items.extend(item for item in answer.data if isinstance(item, dict))
            url = answer.next_url
        return items

    def _call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, query: Mapping[str, str] | None = None
    ) -> Any | ApiFailure:
        """The JSON answer of one request, tried again as Tuning says; a failure as a value, the token masked."""
        shown = f"{method} {path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        url = self.settings.api_url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        answer = self._request(method, url, body, shown)
        return answer if isinstance(answer, ApiFailure) else answer.data

    def _request(self, method: str, url: str, body: Mapping[str, Any] | None, shown: str) -> _Answer | ApiFailure:
        """One request to *url*, tried again as Tuning says."""
        if self.down is not None:
            return ApiFailure(shown, f"GitHub's API failed earlier in this run: {self.down.reason}")
        attempts = 0
        while True:
            attempts += 1
            try:
                result = self._once(method, url, body)
            except Exception as exc:  # whatever urllib raises, the caller gets a value (and the token masked)
                result = _Failed(f"{type(exc).__name__}: {exc}", retry=False, down=False)
            if isinstance(result, _Answer):
                return result
            # A POST whose answer was lost may have been carried out: trying again risks a second comment, which
            # is better than none.
            retry = result.retry and attempts <= self.tuning.retries
            wait = self._wait(attempts, result.wait) if retry else None
            if wait is None:
                failure = ApiFailure(shown, self.mask(result.reason), attempts)
                if result.down:
                    self.down = failure
                return failure
            self._sleep(wait)

    def _wait(self, attempt: int, asked: float | None) -> float | None:
        """Seconds before the next try, or None when the server asks for longer than we wait."""
        if asked is not None:
            return asked if asked <= self.tuning.max_wait else None
        delays = self.tuning.backoff
        return delays[min(attempt, len(delays)) - 1] if delays else 0.0

    def _once(self, method: str, url: str, body: Mapping[str, Any] | None) -> _Answer | _Failed:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/vnd.github+json")
        request.add_header("X-GitHub-Api-Version", API_VERSION)
        request.add_header("User-Agent", "mailings-dispatch")
        # Unredirected: a redirect's request would never carry it, were redirects followed.
        request.add_unredirected_header("Authorization", f"Bearer {self.settings.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=self.tuning.timeout) as response:
                raw = response.read(MAX_ANSWER_BYTES + 1)
                status = response.status
                link = response.headers.get("Link")
        except urllib.error.HTTPError as exc:
            return _http_failure(exc)
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                return _Failed(f"no answer within {self.tuning.timeout:g} s", retry=True, down=True)
            return _Failed(f"cannot connect: {exc.reason}", retry=True, down=True)
        except TimeoutError:
            return _Failed(f"no answer within {self.tuning.timeout:g} s", retry=True, down=True)
        except (OSError, http.client.HTTPException) as exc:  # a connection reset or cut short mid-answer
            return _Failed(f"the connection failed: {type(exc).__name__}: {exc}", retry=True, down=True)
        if len(raw) > MAX_ANSWER_BYTES:
            return _Failed("an answer larger than 8 MiB", retry=False, down=False)
        try:
            return _Answer(status, json.loads(raw) if raw.strip() else None, _next_page(link))
        except (ValueError, UnicodeDecodeError):
            return _Failed(f"HTTP {status} with an answer that is not JSON", retry=False, down=False)


def _login(user: Any) -> str:
    login = user.get("login") if isinstance(user, dict) else None
    return login if isinstance(login, str) else ""


def _issue_comment(item: dict[str, Any]) -> IssueComment:
    body, url = item.get("body"), item.get("html_url")
    return IssueComment(
        item["id"], _login(item.get("user")), body if isinstance(body, str) else "", url if isinstance(url, str) else ""
    )


def _next_page(link: str | None) -> str | None:
    """The rel="next" address of a Link header, as GitHub writes it: `<url>; rel="next", <url>; rel="last"`."""
    for target, rels in _LINK.findall(link or ""):
        if "next" in rels.split():
            return str(target)
    return None


def _http_failure(exc: urllib.error.HTTPError) -> _Failed:
    """What an error status means for the next try. 5xx and 429 are worth another; a 403 only when it is a rate
    limit; any other 4xx (a missing permission, a deleted pull request) fails alike every time."""
    try:
        excerpt = exc.read(ERROR_EXCERPT_CHARS * 4).decode("utf-8", "replace")
    except Exception:  # an error answer without a body, or one cut short: the status says enough
        excerpt = ""
    with contextlib.suppress(Exception):
        exc.close()
    reason = f"HTTP {exc.code} {exc.reason}"
    message = _message(excerpt)
    if message:
        reason += f": {message}"
    headers = exc.headers
    wait = _retry_after(headers.get("Retry-After") if headers else None)
    rate_limited = exc.code == 429 or (
        exc.code == 403 and (wait is not None or (headers is not None and headers.get("x-ratelimit-remaining") == "0"))
    )
    if exc.code >= 500 or rate_limited:
        return _Failed(reason, retry=True, down=True, wait=wait)
    if 300 <= exc.code < 400:
        reason += " (a redirect, not followed: check GITHUB_API_URL and GITHUB_REPOSITORY)"
    return _Failed(reason, retry=False, down=exc.code == 401)  # a bad token fails every request


def _message(excerpt: str) -> str:
    """GitHub's own error message from a JSON error answer, else the start of the answer on one line."""
    try:
        data = json.loads(excerpt)
    except ValueError:
        data = None
    text = data.get("message") if isinstance(data, dict) and isinstance(data.get("message"), str) else excerpt
    return " ".join(text.split())[:ERROR_EXCERPT_CHARS]


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (GitHub sends seconds, not an HTTP date)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def proxy_from_env(env: Mapping[str, str], api_url: str) -> str | None:
    """The proxy for *api_url* from the passed-in environment (HTTPS_PROXY, NO_PROXY), as curl reads them; a
    loopback host never goes through one."""
    host = urllib.parse.urlsplit(api_url).hostname or ""
    scheme = urllib.parse.urlsplit(api_url).scheme
    if host in LOOPBACK:
        return None
    proxy = env.get(f"{scheme}_proxy") or env.get(f"{scheme.upper()}_PROXY")
    no_proxy = env.get("no_proxy") or env.get("NO_PROXY") or ""
    if not proxy or urllib.request.proxy_bypass_environment(host, {"no": no_proxy}):
        return None
    return proxy

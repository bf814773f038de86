"""A local GitHub for the pull-request endpoints: a small HTTP server on 127.0.0.1 that keeps pull requests, their
files, reviews and comments in memory, pages lists as GitHub does (per_page, page, a Link header), and records
every request (over tests.localhttp, as tests/sender/test_github.py's stand-in for the dispatch job's endpoints).
GitHub's REST API is the one part the tests fake."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.localhttp import JSONServer, Reply

TOKEN = "ghs_l0calTestT0kenForPullRequests"
OWNER, REPO = "kth", "mailings"
BOT = "github-actions[bot]"
COMMENT_LIMIT = 65_536  # GitHub refuses a longer comment body


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with the query
    body: Any


@dataclass
class Pull:
    number: int
    author: str
    head_sha: str
    files: list[str] = field(default_factory=list)
    renamed_from: dict[str, str] = field(default_factory=dict)  # new path -> old path
    changed_files: int | None = None  # what GitHub says; by default the number of files
    reviews: list[dict[str, Any]] = field(default_factory=list)
    state: str = "open"


@dataclass
class StoredComment:
    id: int
    number: int
    author: str
    body: str


class FakeGitHub:
    """GET /repos/{o}/{r}/pulls/{n}, .../pulls/{n}/files, .../pulls/{n}/reviews, .../issues/{n}/comments;
    POST .../issues/{n}/comments; PATCH .../issues/comments/{id}. Comments are written as BOT."""

    def __init__(self, max_per_page: int = 100) -> None:
        self.max_per_page = max_per_page  # GitHub's is 100; smaller makes the lists of a test span pages
        self.pulls: dict[int, Pull] = {}
        self.comments: dict[int, StoredComment] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self._ids = 1000
        self.server = JSONServer(self._serve)
        self.url = self.server.url

    def stop(self) -> None:
        self.server.stop()

    def env(self) -> dict[str, str]:
        """The environment a workflow step gives the command."""
        return {"GITHUB_API_URL": self.url, "GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": f"{OWNER}/{REPO}"}

    # --- the state a test sets up ------------------------------------------------------------------------------

    def add_pull(self, number: int, author: str, head_sha: str, files: list[str] | None = None) -> Pull:
        self.pulls[number] = Pull(number, author, head_sha, list(files or []))
        return self.pulls[number]

    def review(self, number: int, login: str, state: str, commit: str) -> int:
        self._ids += 1
        self.pulls[number].reviews.append(
            {"id": self._ids, "user": {"login": login}, "state": state, "commit_id": commit}
        )
        return self._ids

    def dismiss(self, review_id: int) -> None:
        for pull in self.pulls.values():
            for review in pull.reviews:
                if review["id"] == review_id:
                    review["state"] = "DISMISSED"

    def add_comment(self, number: int, author: str, body: str) -> int:
        self._ids += 1
        self.comments[self._ids] = StoredComment(self._ids, number, author, body)
        return self._ids

    def comments_on(self, number: int) -> list[StoredComment]:
        return [c for c in sorted(self.comments.values(), key=lambda c: c.id) if c.number == number]

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]

    # --- answering ---------------------------------------------------------------------------------------------

    def _serve(self, method: str, url: str, headers: Message, raw: bytes) -> Reply:
        status, data, link = self.answer(method, url, json.loads(raw) if raw else None, headers.get("Authorization"))
        return status, data, {"Link": link} if link else {}

    def answer(self, method: str, url: str, body: Any, authorization: str | None) -> tuple[int, Any, str | None]:
        with self.lock:
            self.requests.append(Request(method, url, body))
            if authorization != f"Bearer {TOKEN}":
                return 401, {"message": "Bad credentials"}, None
            return self._route(method, url, body)

    def _route(self, method: str, url: str, body: Any) -> tuple[int, Any, str | None]:
        parts = urlsplit(url)
        path = parts.path.split("/")[1:]
        if path[:3] != ["repos", OWNER, REPO]:
            return 404, {"message": "Not Found"}, None
        rest = path[3:]
        query = parse_qs(parts.query)
        if method == "GET" and rest[:1] == ["pulls"] and len(rest) in (2, 3) and rest[1].isdigit():
            pull = self.pulls.get(int(rest[1]))
            if pull is None:
                return 404, {"message": "Not Found"}, None
            if len(rest) == 2:
                return 200, self._pull_json(pull), None
            if rest[2] == "files":
                files = [self._file_json(pull, name) for name in pull.files][:3000]  # GitHub lists 3,000 at most
                return self._page(parts.path, query, files)
            if rest[2] == "reviews":
                return self._page(parts.path, query, pull.reviews)
        if rest[:1] == ["issues"] and len(rest) == 3 and rest[2] == "comments" and rest[1].isdigit():
            number = int(rest[1])
            if number not in self.pulls:
                return 404, {"message": "Not Found"}, None
            if method == "GET":
                return self._page(parts.path, query, [self._comment_json(c) for c in self.comments_on(number)])
            if method == "POST":
                if len(body["body"]) > COMMENT_LIMIT:
                    return 422, {"message": "Validation Failed: body is too long (maximum is 65536 characters)"}, None
                made = self.add_comment(number, BOT, body["body"])
                return 201, self._comment_json(self.comments[made]), None
        if method == "PATCH" and rest[:2] == ["issues", "comments"] and len(rest) == 3 and rest[2].isdigit():
            comment = self.comments.get(int(rest[2]))
            if comment is None:
                return 404, {"message": "Not Found"}, None
            if len(body["body"]) > COMMENT_LIMIT:
                return 422, {"message": "Validation Failed: body is too long (maximum is 65536 characters)"}, None
            comment.body = body["body"]
            return 200, self._comment_json(comment), None
        return 404, {"message": "Not Found"}, None

    def _page(self, path: str, query: dict[str, list[str]], items: list[Any]) -> tuple[int, Any, str | None]:
        per_page = min(int(query.get("per_page", ["30"])[0]), self.max_per_page)
        page = int(query.get("page", ["1"])[0])
        chunk = items[(page - 1) * per_page : page * per_page]
        link = None
        if page * per_page < len(items):
            last = (len(items) + per_page - 1) // per_page
            nxt = urlencode({"per_page": per_page, "page": page + 1})
            end = urlencode({"per_page": per_page, "page": last})
            link = f'<{self.url}{path}?{nxt}>; rel="next", <{self.url}{path}?{end}>; rel="last"'
        return 200, chunk, link

    def _pull_json(self, pull: Pull) -> dict[str, Any]:
        changed = pull.changed_files if pull.changed_files is not None else len(pull.files)
        return {
            "number": pull.number,
            "state": pull.state,
            "user": {"login": pull.author},
            "head": {"sha": pull.head_sha, "ref": "feature"},
            "changed_files": changed,
        }

    def _file_json(self, pull: Pull, name: str) -> dict[str, Any]:
        data: dict[str, Any] = {"filename": name, "status": "modified"}
        if name in pull.renamed_from:
            data.update(status="renamed", previous_filename=pull.renamed_from[name])
        return data

    def _comment_json(self, comment: StoredComment) -> dict[str, Any]:
        return {
            "id": comment.id,
            "user": {"login": comment.author},
            "body": comment.body,
            "html_url": f"{self.url}/{OWNER}/{REPO}/pull/{comment.number}#issuecomment-{comment.id}",
        }

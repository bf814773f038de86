""".github/scripts/oauth-token.sh, the one step that fetches an OAuth2 access token (client credentials) for the
relay (dispatch, test copy) and for the bounce mailbox (bounces): run by bash, with curl, against a local token
endpoint."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.conftest import PROJECT
from tests.localhttp import JSONServer, Reply
from tests.packages import ensure, required
from tests.test_workflows import run_step, workflows

TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.fetched-for-this-run"
SECRET = "client-secret-0815"


class TokenEndpoint:
    def __init__(self) -> None:
        self.forms: list[dict[str, list[str]]] = []
        self.status = 200
        self.server = JSONServer(self._answer)
        self.url = f"{self.server.url}/oauth2/v2.0/token"

    def _answer(self, method: str, path: str, headers: Message, body: bytes) -> Reply:
        self.forms.append(parse_qs(body.decode()))
        if self.status != 200:
            return self.status, {"error": "invalid_client"}, {}
        return 200, {"token_type": "Bearer", "expires_in": 3599, "access_token": TOKEN}, {}


def oauth_step(workflow: str, job: str) -> dict[str, Any]:
    (step,) = [s for s in workflows()[workflow]["jobs"][job]["steps"] if s.get("id") == "oauth"]
    return step


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    required(ensure("curl", "curl"))
    server = TokenEndpoint()
    yield server
    server.server.stop()


def fetch(endpoint: TokenEndpoint, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    output = tmp_path / "output"
    output.write_text("", encoding="utf-8")
    env = {
        **os.environ,
        "TOKEN_URL": endpoint.url,
        "SCOPE": "https://outlook.office365.com/.default",
        "CLIENT_ID": "mailings-client",
        "CLIENT_SECRET": SECRET,
        "GITHUB_OUTPUT": str(output),
    }
    done = run_step(oauth_step("dispatch.yml", "dispatch")["run"], PROJECT, env)  # from the checkout's root
    return done, output.read_text(encoding="utf-8")


def test_the_token_is_the_steps_output_and_masked(endpoint: TokenEndpoint, tmp_path: Path) -> None:
    done, output = fetch(endpoint, tmp_path)
    assert done.returncode == 0, done.stderr
    assert output == f"token={TOKEN}\n"
    assert done.stdout == f"::add-mask::{TOKEN}\n"
    (form,) = endpoint.forms
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": ["mailings-client"],
        "client_secret": [SECRET],
        "scope": ["https://outlook.office365.com/.default"],
    }


def test_a_refused_request_fails_the_step_and_says_what_was_not_done(endpoint: TokenEndpoint, tmp_path: Path) -> None:
    endpoint.status = 401
    done, output = fetch(endpoint, tmp_path)
    assert done.returncode == 1
    assert done.stdout == f"::error::no OAuth2 token from {endpoint.url}; nothing was sent\n"
    assert output == "" and SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("workflow", "job", "said"),
    [
        ("dispatch.yml", "dispatch", "nothing was sent"),
        ("test-copy.yml", "test-copy", "nothing was sent"),
        ("bounces.yml", "bounces", "no bounces were read"),
    ],
)
def test_each_workflow_fetches_its_token_with_the_script(workflow: str, job: str, said: str) -> None:
    step = oauth_step(workflow, job)
    assert step["run"] == f'bash .github/scripts/oauth-token.sh "{said}"'
    assert sorted(step["env"]) == ["CLIENT_ID", "CLIENT_SECRET", "SCOPE", "TOKEN_URL"]

"""Fixtures of the sender's tests: the in-process SMTP servers of tests/sender/smtpserver.py, and each event loop."""

import pytest

from tests.sender import sending
from tests.sender.smtpserver import make_server, smtp_server, tls_files

__all__ = ["loop_choice", "make_server", "smtp_server", "tls_files"]


@pytest.fixture(params=["uvloop", "asyncio"])
def loop_choice(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once on each event loop the sender can run on (sender.eventloop)."""
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    monkeypatch.setattr(sending, "LOOP", request.param)
    return str(request.param)

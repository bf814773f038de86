"""sender.eventloop: uvloop where installed, asyncio's own loop on request, a clear error for a wrong setting."""

from __future__ import annotations

import asyncio

import pytest

from checks.errors import UsageError
from sender import eventloop


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_auto_is_the_default_and_runs_on_uvloop_where_installed() -> None:
    pytest.importorskip("uvloop")
    assert eventloop.choice_from_env({}) == "auto"
    assert eventloop.run(_loop_module()).startswith("uvloop")
    assert eventloop.run(_loop_module(), eventloop.choice_from_env({"MAILINGS_EVENT_LOOP": "uvloop"})).startswith(
        "uvloop"
    )


def test_asyncio_asks_for_the_standard_loop() -> None:
    choice = eventloop.choice_from_env({"MAILINGS_EVENT_LOOP": " AsyncIO "})
    assert choice == "asyncio"
    assert eventloop.run(_loop_module(), choice).startswith("asyncio")


def test_an_unknown_loop_is_a_usage_error_that_names_the_choices() -> None:
    with pytest.raises(UsageError, match=r"MAILINGS_EVENT_LOOP='tokio': use one of auto, uvloop, asyncio"):
        eventloop.choice_from_env({"MAILINGS_EVENT_LOOP": "tokio"})


def test_uvloop_asked_for_but_missing_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eventloop, "_uvloop_factory", lambda: None)
    with pytest.raises(UsageError, match="uvloop is not installed"):
        eventloop.choice_from_env({"MAILINGS_EVENT_LOOP": "uvloop"})
    assert eventloop.choice_from_env({}) == "auto"
    assert eventloop.run(_loop_module()).startswith("asyncio")  # auto falls back to the standard loop

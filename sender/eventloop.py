"""Which asyncio event loop a send runs on.

uvloop (libuv) where it is installed: its callbacks, futures and socket writes cost a fraction of the standard
loop's, and in individual mode, one message per recipient, the loop's own work per message is much of a run.
The standard loop otherwise (uvloop has no Windows build), or when MAILINGS_EVENT_LOOP=asyncio asks for it
(to rule the loop out when something looks wrong). Both give the same results: the tests run the transports
on each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Literal, TypeVar

from checks.errors import UsageError

T = TypeVar("T")
EVENT_LOOP = "MAILINGS_EVENT_LOOP"
LoopChoice = Literal["auto", "uvloop", "asyncio"]
CHOICES: tuple[LoopChoice, ...] = ("auto", "uvloop", "asyncio")


def choice_from_env(env: Mapping[str, str]) -> LoopChoice:
    """The loop MAILINGS_EVENT_LOOP asks for; auto (the default) is uvloop where it is installed."""
    wanted = env.get(EVENT_LOOP, "").strip().lower() or "auto"
    for choice in CHOICES:
        if wanted == choice:
            if choice == "uvloop" and _uvloop_factory() is None:
                raise UsageError(f"{EVENT_LOOP}=uvloop, but uvloop is not installed here (pip install uvloop)")
            return choice
    raise UsageError(f"{EVENT_LOOP}={wanted!r}: use one of {', '.join(CHOICES)}")


def run(main: Coroutine[Any, Any, T], choice: LoopChoice = "auto") -> T:
    """asyncio.run(main) on the loop *choice* names."""
    factory = _uvloop_factory() if choice != "asyncio" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop

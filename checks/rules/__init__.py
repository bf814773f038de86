"""The registry of rules: an explicit mapping from rule id to its module.

Each rule module has ``ID``, ``STAGES`` (when it runs: at submission, at send
time, or both), a docstring with passing and failing examples, and
``check(mailing, policy, context)`` yielding findings. A rule about the
``mailings/`` folder as a whole, or another file every request depends on
(IT's encrypted lists), has ``check(layout, policy, context)`` instead, and runs
once per check, whichever requests it checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from checks.model import Context, Finding, Layout, Mailing, Stage
from checks.policy import Policy
from checks.rules import (
    attachments,
    blackout,
    bounced,
    contact,
    content,
    event,
    finished_index,
    immutable,
    layout,
    lead_time,
    links,
    plain_text,
    recipients,
    schema,
    send_time,
    sender,
    special_lists,
    yaml_file,
)


class Rule(Protocol):
    ID: str
    STAGES: tuple[Stage, ...]

    def check(self, mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]: ...


class LayoutRule(Protocol):
    ID: str
    STAGES: tuple[Stage, ...]

    def check(self, layout: Layout, policy: Policy, context: Context) -> Iterator[Finding]: ...


_MODULES = (
    yaml_file,
    schema,
    lead_time,
    blackout,
    send_time,
    content,
    plain_text,
    attachments,
    links,
    recipients,
    bounced,
    sender,
    contact,
    event,
    immutable,
)

RULES: dict[str, Rule] = {module.ID: module for module in _MODULES}  # type: ignore[misc]

# Rules about the repository around the requests (what stands directly under mailings/, IT's list files), not
# about one request.
LAYOUT_RULES: dict[str, LayoutRule] = {module.ID: module for module in (layout, special_lists, finished_index)}  # type: ignore[misc]

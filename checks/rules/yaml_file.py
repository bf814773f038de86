"""[yaml] mailing.yaml is one safe YAML document of fields, written name: value.

The file must be valid UTF-8 and at most 256 KiB. Duplicate keys, anchors,
aliases and tags are errors. Scalars are read the YAML 1.2 core way. A file
that cannot be read is told in words for people who have never seen YAML, at
its line and column, with what to change (checks.yamlwords): a tab, a colon
inside a value, a line indented to no level above it, a quote left open, a
list entry where a field was expected.

Passes::

    send_at: "2027-02-10 09:00"
    languages: [sv, en]

Fails::

    base: &b {unit: it}        # anchor
    sender: *b                 # alias
    purpose: !!python/object:os.system x   # tag
    purpose: again             # the same field twice
    purpose: Note: see below   # a colon inside a value: put it in quotes
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.model import Context, Finding, Mailing, Stage
from checks.policy import Policy

ID = "yaml"
STAGES: tuple[Stage, ...] = ("submit", "send")


def check(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    if mailing.yaml_problem is not None:
        yield mailing.yaml_problem

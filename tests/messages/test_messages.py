"""Every message the checker can print has a case in tests/messages/catalogue.py that prints it, in plain words.

Three tests over one run of the whole catalogue (each case once, in its own repository):
- each case prints its message under its rule;
- no printed line uses programmers' words (object, mapping, null, zero-based positions, Python's names ...);
- every place in the checker that makes a message (a call of error(), warning(), Said(), Told(), YamlError(),
  a list problem or note of the loader, or a helper's return of words) ran for some case: a message added
  without a case fails here, naming the file and line of the place that has none.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from tests.conftest import GIT_ENV, PROJECT
from tests.messages.case import Case, run
from tests.messages.catalogue import CASES, ELSEWHERE

# Where messages are made, and the calls that make one.
SOURCES = ("checks/rules/*.py", "checks/loader.py", "checks/schemas.py", "checks/yamlsafe.py", "checks/yamlwords.py")
MAKERS = frozenset({"error", "warning", "Said", "Told", "YamlError", "_unread", "ListNote"})

# Programmers' words that a requester must never meet; and a field's place written as a zero-based index.
JARGON = re.compile(
    r"\b(object|array|mapping|scalar|null|nonetype|dict|str|int|float|bool|regex|regexp|traceback|exception|"
    r"zero-based|index 0|additionalProperties|is not of type|yaml error|parser|token)\b|[a-z_]\.\d+\b|\[\d+\]",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Site:
    """A call that makes a message: where it is, and its first words, which name it in ELSEWHERE."""

    file: str  # relative to the project
    first: int
    last: int
    words: str

    @property
    def key(self) -> str:
        return f"{self.file}: {self.words}"


def sites() -> Iterator[Site]:
    for pattern in SOURCES:
        for path in sorted(PROJECT.glob(pattern)):
            text = path.read_text(encoding="utf-8")
            for node in ast.walk(ast.parse(text)):
                if (isinstance(node, ast.Call) and _called(node) in MAKERS) or _returns_words(node):
                    yield Site(
                        str(path.relative_to(PROJECT)), node.lineno, node.end_lineno or node.lineno, _words(node)
                    )


def _returns_words(node: ast.AST) -> bool:
    """A return of words: a helper that makes (part of) a message, one of several a finding may carry."""
    return (
        isinstance(node, ast.Return)
        and node.value is not None
        and any(
            isinstance(inner, ast.Constant) and isinstance(inner.value, str) and inner.value.count(" ") >= 3
            for inner in ast.walk(node.value)
        )
    )


def _called(node: ast.Call) -> str | None:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _words(node: ast.AST) -> str:
    """The first text of the call's message (its first string longer than a word), else the call as written."""
    for inner in ast.walk(node):
        if isinstance(inner, ast.Constant) and isinstance(inner.value, str) and " " in inner.value.strip():
            return inner.value.strip()[:48]
    return ast.unparse(node)[:48]


@dataclass
class Ran:
    printed: dict[str, list[str]]  # case name -> lines printed
    executed: set[tuple[str, int]]  # (file, line) run in SOURCES


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    wanted = {str(PROJECT / site.file) for site in sites()}
    executed: set[tuple[str, int]] = set()

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            executed.add((frame.f_code.co_filename, frame.f_lineno))
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename in wanted else None

    printed: dict[str, list[str]] = {}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in GIT_ENV.items():
            patch.setenv(name, value)
        for number, case in enumerate(CASES):
            root = tmp_path_factory.mktemp(f"case{number}")
            sys.settrace(calls)
            try:
                printed[case.name] = run(case, root)
            finally:
                sys.settrace(None)
    return Ran(printed, {(str(Path(f).relative_to(PROJECT)), line) for f, line in executed})


def test_case_names_are_unique() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)), [name for name in names if names.count(name) > 1]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_each_case_prints_its_message(ran: Ran, case: Case) -> None:
    lines = ran.printed[case.name]
    assert any(f"[{case.rule}] " in line and case.says in line for line in lines), "\n".join(lines)


def test_no_message_speaks_jargon(ran: Ran) -> None:
    found = [
        f"{name}: {match.group(0)!r} in {line}"
        for name, lines in ran.printed.items()
        for line in lines
        for match in [JARGON.search(line.split("] ", 1)[-1])]
        if match is not None
    ]
    assert found == []


def test_every_message_has_a_case(ran: Ran) -> None:
    every = list(sites())
    missing = [
        f"{site.file}:{site.first}: {site.words}"
        for site in every
        if site.key not in ELSEWHERE
        and not any((site.file, line) in ran.executed for line in range(site.first, site.last + 1))
    ]
    assert missing == [], "messages without a case in tests/messages/catalogue.py:\n" + "\n".join(missing)


def test_what_is_covered_elsewhere_still_exists() -> None:
    keys = {site.key for site in sites()}
    assert [key for key in ELSEWHERE if key not in keys] == []


def test_the_jargon_check_catches_jargon() -> None:
    for said in ("must be of type object", "recipients.lists.0 is missing", "lists[0]", "got NoneType", "not null"):
        assert JARGON.search(said), said
    for said in ("the 1st entry of recipients.lists", "version 1.5", "https://www.kth.se/a", "none of the lines"):
        assert JARGON.search(said) is None, said

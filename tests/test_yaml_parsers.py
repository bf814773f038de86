"""checks.yamlsafe reads most requests with libyaml's parser and falls back to PyYAML's own: the two must agree.

Whatever PyYAML's own parser accepts, loads() returns exactly its document (values, and the line and column of each
key and value, which every problem points at); whatever it refuses, loads() refuses with the same words, except
where libyaml reads text that YAML allows and PyYAML does not (the documented leniency below).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from checks import yamlsafe
from checks.yamlsafe import Document, YamlError, loads
from tests.conftest import PROJECT

SEEDS = sorted(
    [*PROJECT.glob("examples/**/mailing.yaml"), *PROJECT.glob("templates/**/mailing.yaml"), PROJECT / "policy.yaml"]
)
# Characters that change how YAML reads a text, to mutate requests with.
ALPHABET = [*" :-#'\"[]{},&*!|>%@`?\n\\\r\x0b\u00a0åäö", *"ab1"]


def pure(text: str) -> Document | str:
    try:
        return yamlsafe._build(text, yaml.SafeLoader)
    except YamlError as exc:
        return f"{exc.line}:{exc.column}: {exc.message}"


def fast(text: str) -> Document | str:
    try:
        return loads(text)
    except YamlError as exc:
        return f"{exc.line}:{exc.column}: {exc.message}"


def mutations(text: str, rnd: random.Random) -> str:
    for _ in range(rnd.randint(1, 3)):
        at = rnd.randrange(len(text) + 1)
        roll = rnd.random()
        if roll < 0.45:
            text = text[:at] + rnd.choice(ALPHABET) + text[at:]
        elif roll < 0.75:
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at] + rnd.choice(ALPHABET) * rnd.randint(1, 3) + text[at + rnd.randint(0, 3) :]
    return text


def test_libyaml_is_there_and_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyYAML's wheels carry libyaml; without it every request would take the slow path unnoticed."""
    assert yamlsafe._FAST_LOADER is not None
    used: list[type] = []
    build = yamlsafe._build
    monkeypatch.setattr(yamlsafe, "_build", lambda text, loader: used.append(loader) or build(text, loader))
    loads(SEEDS[0].read_text(encoding="utf-8"))
    assert used == [yamlsafe._FAST_LOADER]


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: str(p.relative_to(PROJECT)))
def test_both_parsers_read_the_shipped_files_alike(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert fast(text) == pure(text)


@pytest.mark.parametrize(
    "text",
    [
        "purpose:\tAnnounce\n",  # a tab: PyYAML refuses it, and the message says so in plain words
        "\ufeffsend_at: 2027-02-10\nnote: a\ufeffb\n",  # a byte order mark inside the text
        "subject:\n  en: one\u2028two\n",  # a Unicode line separator
        "send_at:\nsubject: x\n",  # an empty value, marked after its colon
        "purpose: a\udc80b\n",  # a lone surrogate (only from a caller that decoded leniently): libyaml cannot take it
        "a: [b, c\n",  # refused: the plain words of PyYAML's parser
    ],
)
def test_texts_libyaml_reads_differently_take_the_slow_path(text: str) -> None:
    assert fast(text) == pure(text)


def test_random_damage_is_read_alike() -> None:
    rnd = random.Random(20261202)
    texts = [p.read_text(encoding="utf-8") for p in SEEDS]
    lenient = 0
    for _ in range(2_000):
        text = mutations(rnd.choice(texts), rnd)
        expected, got = pure(text), fast(text)
        if isinstance(expected, Document):
            assert got == expected, text
        elif got != expected:
            # libyaml reads a little YAML that PyYAML refuses (e.g. `[sv?, en]`); the schema then judges the values
            assert isinstance(got, Document), (text, expected, got)
            lenient += 1
    assert lenient <= 20


def test_libyaml_leniency_is_what_yaml_allows() -> None:
    text = "languages: [sv?, en]\n"
    assert isinstance(pure(text), str)
    document = fast(text)
    assert isinstance(document, Document) and document.data == {"languages": ["sv?", "en"]}

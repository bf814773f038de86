"""[yaml]: one safe YAML 1.2 document whose top is a mapping."""

from __future__ import annotations

import time

import pytest

from checks.yamlsafe import loads
from tests.conftest import Repo

GOOD_HEAD = 'send_at: "2027-02-10 09:00"\n'


def yaml_problems(repo: Repo, text: str | bytes) -> list[str]:
    directory = repo.add()
    target = directory / "mailing.yaml"
    target.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return repo.messages(rule="yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\na: 2\n", "mailing.yaml:2:1: error [yaml] duplicate key 'a' (first defined on line 1); keep only one"),
        (
            "sender: &s {unit: it}\nother: *s\n",
            "mailing.yaml:1:9: error [yaml] anchor '&s' is not allowed; write the value out in full",
        ),
        (
            "purpose: !!python/object/apply:os.system ['echo pwned']\n",
            "mailing.yaml:1:10: error [yaml] tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed; "
            "remove it and write a plain value",
        ),
        (
            "purpose: !custom x\n",
            "mailing.yaml:1:10: error [yaml] tag '!custom' is not allowed; remove it and write a plain value",
        ),
        (
            "- a\n- b\n",
            "mailing.yaml:1:1: error [yaml] the top level must be a mapping of fields (send_at: ..., purpose: ...)",
        ),
        ("", "mailing.yaml:1:1: error [yaml] the file is empty; it must hold a mapping of the request's fields"),
        (
            "a: 1\n---\nb: 2\n",
            "mailing.yaml:2:1: error [yaml] more than one YAML document; a request is a single document (remove '---')",
        ),
        ("a: [1, 2\n", "mailing.yaml:2:1: error [yaml] invalid YAML: expected ',' or ']', but got '<stream end>'"),
    ],
)
def test_rejected(repo: Repo, text: str, expected: str) -> None:
    assert yaml_problems(repo, text) == [expected]


def test_not_utf8_names_the_line(repo: Repo) -> None:
    assert yaml_problems(repo, GOOD_HEAD.encode() + b"purpose: caf\xe9\n") == [
        "mailing.yaml:2:1: error [yaml] not valid UTF-8; save the file as UTF-8"
    ]


def test_too_large(repo: Repo) -> None:
    text = GOOD_HEAD + "purpose: " + "x" * (256 * 1024) + "\n"
    (problem,) = yaml_problems(repo, text)
    assert "mailing.yaml cannot be read: it is larger than 256 KiB" in problem


def test_missing_file(repo: Repo) -> None:
    directory = repo.add()
    (directory / "mailing.yaml").unlink()
    assert repo.messages(rule="yaml") == [
        "mailing.yaml:1:1: error [yaml] mailing.yaml is missing; create it (`mailings new ID` writes a template)"
    ]


def test_billion_laughs_fails_fast(repo: Repo) -> None:
    levels = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(9))}]" for i in range(1, 12)]
    start = time.process_time()
    (problem,) = yaml_problems(repo, "\n".join(levels) + "\n")
    assert "anchor '&a0' is not allowed" in problem
    assert time.process_time() - start < 5  # a generous bound: expansion would take hours


def test_deep_nesting_is_refused_not_a_crash(repo: Repo) -> None:
    (problem,) = yaml_problems(repo, "a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nesting deeper than 64 levels" in problem


def test_python_tag_is_never_constructed(repo: Repo, tmp_path: object) -> None:
    marker = repo.root / "pwned"
    yaml_problems(repo, f"purpose: !!python/object/apply:os.system ['touch {marker}']\n")
    assert not marker.exists()


def test_bom_is_accepted(repo: Repo) -> None:
    directory = repo.add()
    text = (directory / "mailing.yaml").read_bytes()
    (directory / "mailing.yaml").write_bytes(b"\xef\xbb\xbf" + text)
    assert repo.messages() == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("no", "no"),
        ("yes", "yes"),
        ("on", "on"),
        ("off", "off"),
        ("010", 10),
        ("0o10", 8),
        ("0x10", 16),
        ("2027-02-10", "2027-02-10"),
        ("2027-02-10 09:00", "2027-02-10 09:00"),
        ("09:00", "09:00"),
        ("true", True),
        ("False", False),
        ("~", None),
        ("1.5", 1.5),
        ("'010'", "010"),
    ],
)
def test_scalars_follow_yaml_1_2_core(text: str, value: object) -> None:
    assert loads(f"v: {text}\n").data == {"v": value}


def test_marks_point_at_keys_and_items() -> None:
    doc = loads("a:\n  b:\n    - x\n    - y\n")
    assert (doc.mark(("a", "b")).line, doc.mark(("a", "b")).column) == (2, 3)
    assert (doc.mark(("a", "b", 1)).line, doc.mark(("a", "b", 1)).column) == (4, 7)
    assert doc.mark(("a", "missing")) == doc.mark(("a",))

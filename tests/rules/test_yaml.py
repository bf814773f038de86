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
        (
            "a: 1\na: 2\n",
            "mailing.yaml:2:1: error [yaml] 'a' is written twice here (first on line 1); keep only one of them",
        ),
        (
            "sender: &s {unit: it}\nother: *s\n",
            "mailing.yaml:1:9: error [yaml] &s at the start of a value marks it to be repeated elsewhere, which a "
            "request cannot do; write each value out in full, and if & belongs to the text, put the whole value in "
            "quotes",
        ),
        (
            "purpose: !!python/object/apply:os.system ['echo pwned']\n",
            "mailing.yaml:1:10: error [yaml] !!python/object/apply:os.system at the start of a value would change how "
            "it is read, which a request cannot do; remove it, and if ! belongs to the text, put the whole value in "
            "quotes",
        ),
        (
            "purpose: !custom x\n",
            "mailing.yaml:1:10: error [yaml] !custom at the start of a value would change how it is read, which a "
            "request cannot do; remove it, and if ! belongs to the text, put the whole value in quotes",
        ),
        (
            "- a\n- b\n",
            "mailing.yaml:1:1: error [yaml] the file must hold the request's fields, one per line as name: value "
            "(send_at: ..., purpose: ...); here it is a list",
        ),
        (
            "",
            "mailing.yaml:1:1: error [yaml] the file is empty; write the request's fields in it, one per line as "
            "name: value (mailings new ID writes a template)",
        ),
        (
            "a: 1\n---\nb: 2\n",
            "mailing.yaml:2:1: error [yaml] a line '---' here starts a second request in the same file; a "
            "mailing.yaml holds one: remove the '---' line (and anything after it that is not part of this request)",
        ),
        (
            "a: [1, 2\n",
            "mailing.yaml:1:4: error [yaml] the value that begins with [ is read as a list in brackets, such as "
            "[sv, en], and is not closed with ] on its line; close it, or, if it is text, put the whole value in "
            'quotes: a: "[1, 2"',
        ),
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
    assert "&a0 at the start of a value marks it to be repeated elsewhere" in problem
    assert time.process_time() - start < 5  # a generous bound: expansion would take hours


def test_deep_nesting_is_refused_not_a_crash(repo: Repo) -> None:
    (problem,) = yaml_problems(repo, "a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "fields are indented under each other more than 64 levels deep here" in problem


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


# A request as people write it, to break in the ways they do.
GOOD = """\
send_at: "2027-02-10 09:00"
purpose: Announce the new travel booking system.
sender:
  unit: it
event:
  date: "2027-03-01"
  time: "13:00-15:00"
languages:
  - sv
  - en
"""


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "  unit: it",
            "\tunit: it",
            "4:1: line 4 is indented with a tab character; indent with spaces instead (tabs cannot be used for "
            "indenting in this file)",
        ),
        (
            "purpose: Announce",
            "purpose:\tAnnounce",
            "2:9: a tab character where a space is expected; use a space instead",
        ),
        (
            "purpose: Announce the new travel booking system.",
            "purpose: Note: the new system",
            "2:14: the value of 'purpose' contains ': ', which would start another field; put the whole value in "
            'quotes: purpose: "Note: the new system"',
        ),
        (
            '  time: "13:00-15:00"',
            '    time: "13:00-15:00"',
            "7:5: 'time' is indented further than 'date' on line 6, as if it belonged under 'date', which already has "
            "a value; indent 'time' by 2 spaces, to make it a field of 'event' as 'date' is",
        ),
        (
            "sender:\n  unit: it",
            "sender:\nunit: it\n  role: dean",
            "5:3: 'role' is indented further than 'unit' on line 4, as if it belonged under 'unit', which already has "
            "a value; indent 'role' by 0 spaces; or, if both belong under 'sender' on the line above, indent 'unit' "
            "and 'role' alike, by 2 spaces",
        ),
        (
            '  time: "13:00-15:00"',
            ' time: "13:00-15:00"',
            "7:2: 'time' is indented by 1 space, which lines up with none of the lines above it; indent it by 2 "
            "spaces, as 'date' is, under 'event'; or by 0 spaces, as 'event' is, at the top level of the file",
        ),
        (
            "  - en",
            " - en",
            "10:2: the list entry - en is indented by 1 space, which lines up with none of the lines above it; indent "
            "it by 2 spaces, as the list entry on line 9 is, under 'languages'; or by 0 spaces, as 'languages' is, at "
            "the top level of the file",
        ),
        (
            "purpose: Announce the new travel booking system.",
            'purpose: "Announce the new travel booking system.',
            '2:10: the quote " that begins the value on line 2 is not closed on that line; close it there',
        ),
        (
            "languages:\n  - sv\n  - en\n",
            'languages:\n  - sv\n  - "en\n',
            '10:5: the quote " that begins this value is never closed; end the value with " on the same line',
        ),
        (
            "  unit: it",
            "  unit: it\n  - hr",
            "5:3: the list entry - hr stands where a field of 'sender' (name: value) was expected; write it as "
            "name: value, or, if it belongs to a list, put it right below the list's name and indent it",
        ),
        (
            "purpose: Announce the new travel booking system.",
            "purpose: @all staff",
            '2:10: a value cannot begin with @; put the whole value in quotes: purpose: "@all staff"',
        ),
        (
            "purpose: Announce the new travel booking system.",
            "purpose: [Draft] the new system",
            "2:18: the value of 'purpose' begins with [, which makes the part up to ] a list or a group of fields, and "
            'the text after it cannot be read; put the whole value in quotes: purpose: "[Draft] the new system"',
        ),
        (
            "purpose: Announce the new travel booking system.",
            "purpose: 'KTH's new system'",
            "2:15: the value of 'purpose' ends at its second ', so the text after it cannot be read; put the whole "
            'value in quotes, and if it contains \' itself, use " around it: purpose: "KTH\'s new system"',
        ),
        (
            "  unit: it",
            "  unit it\n  role: dean",
            "4:3: line 4 (unit it) is not written as name: value; put a colon and a space after the field's name, "
            "or, if it continues the text of the line above it, put that whole value in quotes",
        ),
        (
            "  unit: it",
            "  unit:it\n  role: dean",
            "4:8: put a space after the colon on line 4: unit: it",
        ),
        (
            "purpose: Announce the new travel booking system.",
            'purpose: "C:\\new\\system"',
            "2:17: \\s inside double quotes is read as a special character; write the backslash twice (\\\\), or "
            "put the value in single quotes instead",
        ),
        (
            "purpose: Announce the new travel booking system.",
            "purpose: | the new system",
            "2:10: a value that begins with | starts a block of text on the lines below; to write text that begins "
            'with |, put the whole value in quotes: purpose: "| the new system"',
        ),
        (
            "purpose: Announce the new travel booking system.",
            "purpose: - the new system",
            "2:10: a value on the same line as its field cannot begin with '- '; put the value in quotes, or write the "
            "list with each entry on its own line below the field, indented, starting with '- '",
        ),
        (
            "purpose: Announce the new travel booking system.",
            "purpose: Announce\u0007 it",
            "2:18: the invisible character U+0007 cannot stand in this file (it may have come with text pasted from "
            "another program); delete it",
        ),
    ],
)
def test_yaml_mistakes_are_told_in_plain_words(repo: Repo, old: str, new: str, expected: str) -> None:
    assert old in GOOD
    (problem,) = yaml_problems(repo, GOOD.replace(old, new, 1))
    assert problem == f"mailing.yaml:{expected.split(': ', 1)[0]}: error [yaml] {expected.split(': ', 1)[1]}"


@pytest.mark.parametrize(
    "value",
    [
        "see https://www.kth.se/resor",  # a colon without a space after it
        "Announce it # not a comment? it is one, and fine",
        "Anna's new system",
        '"Note: quoted"',
        "'Anna''s system'",
        "[Draft] the new system".join('""'),
        "50% off: no, quoted".join("''"),
        "C:\\new",
    ],
)
def test_values_people_write_are_read_without_complaint(repo: Repo, value: str) -> None:
    text = GOOD.replace("Announce the new travel booking system.", value)
    assert yaml_problems(repo, text) == []
    assert isinstance(loads(text).data["purpose"], str)

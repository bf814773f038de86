"""A hostile corpus: requests with odd types in every field, huge numbers, broken Unicode, NUL bytes, byte-order
marks, very long lines and deep nesting. `check`, `plan`, `status` and `send --dry-run` each handle every one of them
in one run, with a clean problem and exit code and never a traceback, and the honest mailing beside them is still
handled."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.cli import build_parser
from tests.conftest import EVENT, PROJECT, VALID, Repo, addresses

NOW = "2027-02-10T09:05:00+01:00"  # the honest mailing is due
HONEST = "2027-02-10-honest"
HOLE = "HOSTILE-VALUE"

# Every field a request may have, with a valid value, so that each can be made odd in turn.
FULL: dict[str, Any] = {
    **VALID,
    "from_address": "it-support@kth.se",
    "reply_to": "anna.andersson@kth.se",
    "external_links": [{"url": "https://www.example.org/x", "stopover": "https://www.kth.se/stopover/x"}],
    "event": EVENT,
    "crisis": False,
    "blackout_exception": {"reason": "An exam week", "agreed_with": "Anna Andersson"},
    "delivery": {"mode": "individual"},
    "resume_at": "2027-02-10 09:00",
    "resume_unknown": False,
}
FULL_ID = "2027-02-10-full"
# The control fields that stop a mailing: each is made odd in a request of its own, so that the others are sent
# (and so checked at send time too).
STOPPING: dict[str, Any] = {
    "hold": {"reason": "Waiting for the final list"},
    "cancel": {"reason": "Replaced by another mailing"},
}

# Odd values as YAML text: every type in every field.
ODD_TYPES = {
    "null": "null",
    "true": "true",
    "int": "-1",
    "float": "1.5",
    "list": "[a, [b, {c: d}]]",
    "mapping": "{a: 1, b: [x]}",
    "empty-string": '""',
    "nan": ".nan",
}


def paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every path into *value*: each mapping key and list item, at every depth."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        yield (*prefix, key)
        yield from paths(inner, (*prefix, key))


def with_hole(path: tuple[str | int, ...]) -> dict[str, Any]:
    """FULL (with the stopping field *path* is in) with the value at *path* replaced by the marker HOLE."""
    stopping = {path[0]: STOPPING[path[0]]} if path[0] in STOPPING else {}
    data = json.loads(json.dumps({**FULL, **stopping}))
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = HOLE
    return data


def filled(path: tuple[str | int, ...], yaml_value: str) -> str:
    return yaml.safe_dump(with_hole(path), sort_keys=False, allow_unicode=True).replace(HOLE, yaml_value)


# Values that must be refused where they stand, whatever field holds them.
RAW = {
    "huge-int": "9" * 5000,
    "huge-hex": "0x" + "f" * 5000,
    "huge-float": "1e999999",
    "lone-surrogate": '"\\ud800 text"',
    "reversed-pair": '"\\ude00\\ud83d"',
    "nul": '"a\\0b"',
    "ansi": '"\\e[31mred\\e[0m"',
    "bom": '"\\ufeffx"',
    "newlines": '"one\\ntwo\\rthree"',
    "long": '"' + "x" * 200_000 + '"',
}

REFUSED = ("huge-int", "huge-hex", "huge-float", "lone-surrogate", "reversed-pair", "nul", "ansi")

DOCUMENTS = {
    "deep": "send_at: " + "[" * 60 + "]" * 60 + "\n",
    "too-deep": "send_at: " + "[" * 200 + "]" * 200 + "\n",
    "bom-twice": "\ufeff\ufeffsend_at: x\n",
    "long-line": "purpose: " + "y" * 250_000 + "\n",
    "key-huge-int": "9" * 5000 + ": 1\n",
    "key-surrogate": '"\\udc00": 1\n',
    "list-top": "- 1\n- 2\n",
    "scalar-top": "just text\n",
    "binary": "\x00\x01\x02",
}


def corpus() -> dict[str, str]:
    """Request texts by id: each odd type and raw value at every field, and whole odd documents."""
    found: dict[str, str] = {}
    every = list(paths({**FULL, **STOPPING}))
    for kind, text in ODD_TYPES.items():
        for path in every:
            found[f"t-{kind}-{'-'.join(map(str, path))}"] = filled(path, text)
    for kind, text in RAW.items():
        for path in every if kind != "long" else [("purpose",), ("subject", "en"), ("recipients", "lists", 0, "file")]:
            found[f"r-{kind}-{'-'.join(map(str, path))}"] = filled(path, text)
    found.update({f"d-{kind}": text for kind, text in DOCUMENTS.items()})
    return {f"2027-02-10-{name.lower().replace('_', '-')}": text for name, text in found.items()}


CORPUS = corpus()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    repo = Repo(tmp_path_factory.mktemp("hostile"))
    repo.add(HONEST)
    repo.add(FULL_ID, changes=FULL)
    for mailing_id, text in CORPUS.items():
        directory = repo.add(mailing_id, yaml_text="")
        (directory / "mailing.yaml").write_bytes(text.encode("utf-8", "surrogatepass"))
        (directory / "recipients.txt").write_text(addresses(600, prefix=mailing_id[11:]), encoding="utf-8")
    return repo


def run(argv: list[str]) -> tuple[int, str]:
    args = build_parser().parse_args(argv)
    out = io.StringIO()
    code = args.func(args, {}, out)
    return code, out.getvalue()


def printable(text: str) -> bool:
    """No control character but newline reaches the terminal, and nothing that cannot be written as UTF-8."""
    text.encode("utf-8")
    return all(c == "\n" or c.isprintable() for c in text)


def test_the_corpus_is_large_and_every_field_is_made_odd() -> None:
    assert len(CORPUS) > 400
    assert {path[0] for path in paths({**FULL, **STOPPING})} == set(FULL) | set(STOPPING)
    assert set(json.loads((PROJECT / "schema" / "mailing.schema.json").read_text())["properties"]) == set(FULL) | set(
        STOPPING
    )


def test_check_reports_every_hostile_request_and_passes_the_honest_one(hostile: Repo) -> None:
    code, out = run(["check", "--root", str(hostile.root), "--submitted", "2027-01-11", "--format", "json"])
    assert code == 1
    report = json.loads(out)
    problems = report["problems"]
    failing = {p["file"].split("/")[1] for p in problems if p["level"] == "error"}
    assert HONEST not in failing and FULL_ID not in failing
    # every value no field accepts is an error, wherever it stands (odd types, a byte-order mark, line breaks or a
    # long text are valid in some fields: these only must not crash anything)
    refused = {i for i in CORPUS if i.startswith(tuple(f"2027-02-10-r-{kind}-" for kind in REFUSED))}
    refused |= {f"2027-02-10-d-{kind}" for kind in DOCUMENTS if kind != "deep"}
    assert sorted(refused - failing) == []


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("huge-int", "this number is 5,000 digits long, longer than any field takes; if it is text"),
        ("huge-hex", "this number is 5,002 digits long"),
        ("huge-float", "this number is infinite or not a number"),
        ("lone-surrogate", "a \\u escape gives U+D800, half of a character that takes two \\u escapes"),
        ("reversed-pair", "a \\u escape gives U+DE00, half of a character"),
        ("nul", "an escape in this quoted text gives the control character U+0000"),
        ("ansi", "an escape in this quoted text gives the control character U+001B"),
    ],
)
def test_values_no_field_takes_are_errors_at_their_line(hostile: Repo, kind: str, words: str) -> None:
    # purpose stands on line 2 of every request of the corpus
    (found,) = hostile.messages(f"2027-02-10-r-{kind}-purpose")
    assert found.startswith(f"mailing.yaml:2:10: error [yaml] {words}"), found


def test_a_surrogate_pair_is_one_character_and_a_lone_half_in_a_key_is_refused(repo: Repo) -> None:
    repo.add(changes={"subject": {"en": "HOLE"}})
    path = repo.root / "mailings" / "2027-02-10-travel" / "mailing.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("HOLE", "\\ud83d\\ude00 News"), encoding="utf-8")
    path.write_text(path.read_text(encoding="utf-8").replace("en: \\ud83d", 'en: "\\ud83d').replace("News", 'News"'))
    mailing_yaml = path.read_text(encoding="utf-8")
    assert 'en: "\\ud83d\\ude00 News"' in mailing_yaml
    assert [m for m in repo.messages() if "[yaml]" in m] == []
    from checks.loader import load_mailing

    mailing = load_mailing(repo.root, path.parent, repo.policy)
    assert mailing.get("subject", "en") == "\U0001f600 News"
    assert hostile_key_problem().startswith(
        "error [yaml] a \\u escape gives U+DC00, half of a character that takes two \\u escapes in the right order"
    )


def hostile_key_problem() -> str:
    from checks.yamlsafe import YamlError, loads

    try:
        loads('"\\udc00": 1\n')
    except YamlError as exc:
        return f"error [yaml] {exc.message}"
    return "no error"


# The plan compares each request with every other under mailings/ (who is sent to around the same days), reading
# each one's send_at: over the whole corpus that would be a million readings. It runs on each odd value at a few
# fields instead, and on the long documents apart.
PLAN_FIELDS = ("-purpose", "-send-at", "-subject-en", "-sender-role", "-recipients-lists-0-file", "-event-date")
LONG = ("2027-02-10-r-long-", "2027-02-10-d-long-line", "2027-02-10-d-deep", "2027-02-10-d-too-deep")


def plan_repo(root: Path, ids: list[str]) -> Repo:
    repo = Repo(root)
    repo.add(HONEST)
    for mailing_id in ids:
        directory = repo.add(mailing_id, yaml_text="")
        (directory / "mailing.yaml").write_bytes(CORPUS[mailing_id].encode("utf-8", "surrogatepass"))
    return repo


@pytest.mark.parametrize("part", ["fields", "long"])
def test_plan_handles_hostile_requests(tmp_path: Path, part: str) -> None:
    ids = [
        i
        for i in CORPUS
        if i.startswith(LONG) == (part == "long") and (part == "long" or i.endswith(PLAN_FIELDS) or "-d-" in i)
    ]
    assert len(ids) > (80 if part == "fields" else 3)
    repo = plan_repo(tmp_path, ids)
    code, out = run(["plan", "--root", str(repo.root), "--submitted", "2027-01-11"])
    assert code == 0
    assert out.count("\n### ") >= len(ids) + 1
    assert printable(out)


def test_status_handles_every_hostile_request(hostile: Repo) -> None:
    code, out = run(["status", "--root", str(hostile.root), "--now", NOW])
    assert code in (0, 1)
    assert printable(out)
    assert HONEST in out


def test_a_dry_run_sends_the_honest_mailing_and_blocks_the_others(hostile: Repo) -> None:
    code, out = run(["send", "--root", str(hostile.root), "--now", NOW, "--dry-run"])
    assert code == 1
    assert printable(out)
    (honest,) = [line for line in out.splitlines() if line.startswith(f"{HONEST}:")]
    assert "would send" in honest, honest
    # every request with a value no field takes is judged at send time too, and blocked
    blocked = {line.split(":")[0] for line in out.splitlines() if ": blocked: " in line}
    refused = {i for i in CORPUS if i.startswith(tuple(f"2027-02-10-r-{kind}-" for kind in REFUSED))}
    assert sorted(refused - blocked) == []
    assert not list(hostile.root.glob("mailings/*/sendlog.jsonl"))


# --- ids matched whole, names escaped wherever they are printed -------------------------------------------------

NAMES = [
    "2027-02-10-x\n",
    "2027-02-10-x\nmailings/forged.yaml:1:1: ok",
    "2027-02-10-\x1b[31mred",
    "2027-02-10-\u202eabc",
]


def test_escaped_shows_every_unprintable_character() -> None:
    from checks.escape import escaped

    assert escaped("2027-02-10-travel") == "2027-02-10-travel"
    assert escaped("a\nb\r\x1b[31m\u202e\x00\ud800 å") == "a\\nb\\r\\x1b[31m\\u202e\\x00\\ud800 å"


@pytest.mark.parametrize("name", NAMES)
def test_an_id_is_matched_whole(name: str) -> None:
    from checks.model import ID_PATTERN

    assert ID_PATTERN.fullmatch(name) is None and ID_PATTERN.match(name) is None
    assert ID_PATTERN.match("2027-02-10-x") is not None


@pytest.fixture
def named(repo: Repo) -> Repo:
    """Requests whose directory names hold a line break, an ANSI escape or a bidirectional control."""
    repo.add(HONEST)
    for name in NAMES:
        repo.add(name.replace("/", "-"))
    return repo


def test_check_refuses_such_ids_and_prints_them_escaped(named: Repo) -> None:
    code, out = run(["check", "--root", str(named.root), "--submitted", "2027-01-11"])
    assert code == 1 and printable(out)
    invalid = [line for line in out.splitlines() if "is not a valid id" in line]
    assert len(invalid) == len(NAMES)
    assert "mailings/2027-02-10-x\\n/mailing.yaml:1:1: error [schema] the directory name '2027-02-10-x\\n'" in out
    assert not [line for line in out.splitlines() if line.startswith("mailings/forged.yaml")]


@pytest.mark.parametrize("command", [["status"], ["send", "--dry-run"]])
def test_status_and_send_print_such_ids_escaped_and_send_none_of_them(named: Repo, command: list[str]) -> None:
    code, out = run([*command, "--root", str(named.root), "--now", NOW])
    assert printable(out)
    assert "2027-02-10-x\\n" in out and "2027-02-10-\\x1b[31mred" in out and "2027-02-10-\\u202eabc" in out
    if command[0] == "send":
        assert code == 1
        blocked = [line for line in out.splitlines() if ": blocked: " in line]
        assert len(blocked) == len(NAMES)
        assert next(line for line in out.splitlines() if "would send" in line).startswith(f"{HONEST}:")


def test_a_commit_message_escapes_ids() -> None:
    from sender.gitops import LogSummary, commit_message

    message = commit_message([LogSummary("2027-02-10-x\nSigned-off-by: someone", 1, 0), LogSummary("a\x1b[2J", 2, 0)])
    assert message.splitlines()[2:] == [
        "Send log: 2027-02-10-x\\nSigned-off-by: someone 1 accepted, 0 failed",
        "Send log: a\\x1b[2J 2 accepted, 0 failed",
    ]


def test_a_notice_escapes_the_id_in_its_subject_and_text(repo: Repo) -> None:
    from datetime import datetime

    from checks.loader import load_mailing
    from sender.notice import build_notice

    directory = repo.add("2027-02-10-x\nBcc: everyone@kth.se")
    mailing = load_mailing(repo.root, directory, repo.policy)
    when = datetime.fromisoformat(NOW)
    raw = build_notice(mailing, repo.policy, "blocked", (600, 0, 0, 0, 600), "not a valid id", when, "anna@kth.se")
    headers = raw.split(b"\r\n\r\n")[0].decode()
    assert "Subject: Mass mailing 2027-02-10-x\\nBcc: everyone@kth.se: blocked" in headers
    assert "\r\nBcc:" not in headers


FAR = {
    "send-at-first": {"send_at": "0001-01-01 00:00"},
    "send-at-last": {"send_at": "9999-12-31 23:59"},
    "event-far": {"event": {**EVENT, "date": "0001-01-01", "registration_deadline": "9999-12-31"}},
    "resume-first": {"resume_at": "0001-01-01 00:00"},
    "resume-last": {"resume_at": "9999-12-31 23:59"},
    "resume-unreal": {"resume_at": "2027-02-30 09:00"},
}


def test_dates_at_the_ends_of_the_calendar_are_errors_and_crash_nothing(repo: Repo) -> None:
    # Python's dates end at the years 1 and 9999: a time zone or a lateness window added to one would fail later
    repo.add(HONEST)
    for name, changes in FAR.items():
        repo.add(f"2027-02-10-{name}", changes=changes)
    code, out = run(["check", "--root", str(repo.root), "--submitted", "2027-01-11"])
    assert code == 1
    for name in FAR:
        assert f"mailings/2027-02-10-{name}/mailing.yaml" in out
    assert "send_at '9999-12-31 23:59' is not a real date and time" in out
    assert "resume_at '2027-02-30 09:00' is not a real date and time" in out
    assert "event.date '0001-01-01' is not a real date" in out
    for argv in (["plan"], ["status", "--now", NOW], ["send", "--dry-run", "--now", NOW]):
        code, out = run([*argv, "--root", str(repo.root)])
        assert code in (0, 1) and printable(out)
    assert "would send" in next(line for line in out.splitlines() if line.startswith(f"{HONEST}:"))


def test_dates_within_the_years_pass(repo: Repo) -> None:
    repo.add(changes={"send_at": "2999-12-31 09:00", "resume_at": "2000-01-03 09:00"})
    assert [m for m in repo.messages(rule="schema")] == []


def test_a_real_send_with_notices_handles_hostile_requests(tmp_path: Path) -> None:
    # to the outbox, with word back by mail to each contact person: the notices carry the requests' odd values too
    repo = plan_repo(tmp_path, [i for i in CORPUS if i.endswith(("-contact-email", "-contact-name", "-purpose"))])
    policy = repo.root / "policy.yaml"
    policy.write_text(policy.read_text(encoding="utf-8").replace("mail_contact: false", "mail_contact: true"))
    args = build_parser().parse_args(["send", "--root", str(repo.root), "--now", NOW])
    out = io.StringIO()
    assert args.func(args, {"MAILINGS_LOG_KEY": "ab" * 32}, out) == 1
    assert printable(out.getvalue())
    honest = [line for line in out.getvalue().splitlines() if line.startswith(f"{HONEST}: ")]
    assert honest == [
        f"{HONEST}: sent: 600 accepted, 0 failed, 0 pending of 600; this run: 600 accepted in 6 transactions; complete"
    ]
    # the honest mailing's copies and a notice for each mailing the run blocked or sent, nothing garbled
    assert len(list((repo.root / "outbox" / "new").iterdir())) > 6

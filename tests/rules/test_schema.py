"""[schema]: the JSON Schema of mailing.yaml, at the line of the offending key; the directory id."""

from __future__ import annotations

import json

import pytest
import yaml

from checks.schemas import TOOL_ROOT
from tests.conftest import VALID, Repo, merge

REQUEST = """\
send_at: "2027-02-10 09:00"
purpose: Announce the new travel booking system.
sender:
  unit: it
  colour: red
contact:
  name: Anna Andersson
  email: anna.andersson@kth.se
recipients:
  group: All employees who book business travel
  why: Everyone who books travel must use it.
  lists:
    - file: recipients.txt
languages: [sv, en]
subject:
  sv: Nytt system
  en: New system
"""


def test_valid_request_has_no_schema_problems(repo: Repo) -> None:
    repo.add()
    assert repo.messages(rule="schema") == []


def test_unknown_key_points_at_the_key(repo: Repo) -> None:
    repo.add(yaml_text=REQUEST)
    assert repo.messages(rule="schema") == [
        "mailing.yaml:5:3: error [schema] unknown field 'colour' in sender; the fields that can stand here are: role, "
        "unit"
    ]


def test_missing_required_points_at_the_parent(repo: Repo) -> None:
    repo.add(yaml_text=REQUEST.replace("  colour: red\n", "").replace("  email: anna.andersson@kth.se\n", ""))
    assert repo.messages(rule="schema") == [
        "mailing.yaml:5:1: error [schema] contact has no 'email'; add it (The contact person's e-mail address)"
    ]


def test_wrong_type_points_at_the_key(repo: Repo) -> None:
    repo.add(yaml_text=REQUEST.replace("  colour: red\n", "").replace("languages: [sv, en]", "languages: sv"))
    assert repo.messages(rule="schema") == [
        "mailing.yaml:13:1: error [schema] languages must be a list, one entry per line starting with '- '; here it is "
        "text (ISO 639-1 codes of the languages, in the order they appear in the message; each needs body.<lang>.txt "
        "and a subject)"
    ]


def test_every_problem_is_reported(repo: Repo) -> None:
    text = REQUEST.replace("purpose: Announce the new travel booking system.\n", "").replace("[sv, en]", "[sv, EN]")
    repo.add(yaml_text=text)
    found = repo.messages(rule="schema")
    assert len(found) == 3, found
    assert any("the request has no 'purpose'; add it" in m for m in found)
    assert any("unknown field 'colour'" in m for m in found)
    assert any(m.startswith("mailing.yaml:13:") and "'EN'" in m for m in found)


@pytest.mark.parametrize("name", ["Travel", "-travel", "travel_booking", "résa", "a.b"])
def test_directory_name_must_be_an_id(repo: Repo, name: str) -> None:
    repo.add(name)
    (problem,) = repo.messages(name, rule="schema")
    assert f"the directory name '{name}' is not a valid id" in problem


@pytest.mark.parametrize("value", ["2027-02-30 09:00", "2027-13-01", "2027-02-10 25:00"])
def test_send_at_must_be_a_real_time(repo: Repo, value: str) -> None:
    repo.add(changes={"send_at": value})
    (problem,) = repo.messages(rule="schema")
    assert f"send_at '{value}' is not a real date and time" in problem


@pytest.mark.parametrize("value", ["next week", "2027/02/10", "10 Feb 2027", "2027-02-10T09:00+01:00"])
def test_send_at_shape(repo: Repo, value: str) -> None:
    repo.add(changes={"send_at": value})
    (problem,) = repo.messages(rule="schema")
    assert problem == (
        f'mailing.yaml:1:1: error [schema] send_at must be "YYYY-MM-DD HH:MM" or "YYYY-MM-DD"; here it is {value!r}'
    )


def test_unquoted_send_at_stays_a_string(repo: Repo) -> None:
    text = REQUEST.replace("  colour: red\n", "").replace('send_at: "2027-02-10 09:00"', "send_at: 2027-02-10 09:00")
    repo.add(yaml_text=text)
    assert repo.messages(rule="schema") == []


def test_event_dates_must_be_real(repo: Repo) -> None:
    event = {
        "date": "2027-02-31",
        "time": "13:00",
        "venue": "Aula",
        "registration": "x",
        "registration_deadline": "2027-02-20",
    }
    repo.add(changes={"event": event})
    assert repo.messages(rule="schema") == [
        "mailing.yaml:21:3: error [schema] event.date '2027-02-31' is not a real date"
    ]


def test_every_field_has_a_description() -> None:
    schema = json.loads((TOOL_ROOT / "schema" / "mailing.schema.json").read_text())

    def walk(node: dict[str, object], where: str) -> None:
        for key, sub in (node.get("properties") or {}).items():  # type: ignore[union-attr]
            assert "description" in sub, f"{where}.{key} has no description"
            walk(sub, f"{where}.{key}")
        items = node.get("items")
        if isinstance(items, dict):
            walk(items, f"{where}[]")

    walk(schema, "")


def test_yaml_error_skips_schema(repo: Repo) -> None:
    directory = repo.add()
    (directory / "mailing.yaml").write_text("a: [\n")
    assert repo.messages(rule="schema") == []


def test_valid_dict_roundtrip_sanity() -> None:
    assert merge(VALID, {"sender": {"role": "dean"}})["sender"] == {"unit": "it", "role": "dean"}


def test_a_list_entry_may_say_where_it_came_from(repo: Repo) -> None:
    source = {"text": "Ladok export of PhD students", "date": "2027-01-05"}
    repo.add(
        changes={
            "recipients": {
                "lists": [
                    {"file": "recipients.txt", "source": source},
                    {"file": "recipients.txt", "special": "all-employees"},
                    {"source": dict(source)},  # a copy: YAML anchors are refused
                    {"file": "recipients.txt", "source": {"text": "Ladok"}},
                ]
            }
        }
    )
    assert repo.messages(rule="schema") == [
        "mailing.yaml:17:5: error [schema] the 2nd entry of recipients.lists must name either a file or a special "
        "list, not both (one entry each)",
        "mailing.yaml:19:5: error [schema] the 3rd entry of recipients.lists has no 'file' or 'special'; add one of "
        "them (Either a file in this directory or a special list provided by IT, optionally with where it came from)",
        "mailing.yaml:23:5: error [schema] source in the 4th entry of recipients.lists has no 'date'; add it (When it "
        "was taken, YYYY-MM-DD)",
    ]


def test_every_unknown_field_is_listed_with_the_field_it_most_likely_means(repo: Repo) -> None:
    text = REQUEST.replace("  colour: red\n", "").replace('send_at: "', 'sned_at: "') + "Purpose: again\nfoo: 1\n"
    repo.add(yaml_text=text)
    found = repo.messages(rule="schema")
    # Every field that the schema has can stand at the top level; others add fields, so only the start is fixed.
    assert found[-1].startswith(
        "mailing.yaml:18:1: error [schema] unknown field 'foo'; the fields that can stand here are: "
        "blackout_exception, cancel, contact, crisis, "
    )
    assert found[:-1] == [
        "mailing.yaml:1:1: error [schema] the request has no 'send_at'; add it (Desired dispatch, as local time in the "
        "policy's time zone: \"YYYY-MM-DD HH:MM\", or a date alone for the policy's default hour. At least the "
        "policy's lead time in working days after submission)",
        "mailing.yaml:1:1: error [schema] unknown field 'sned_at' (did you mean 'send_at'?)",
        "mailing.yaml:17:1: error [schema] unknown field 'Purpose' (did you mean 'purpose'?)",
    ]


def test_a_field_written_too_far_left_is_told_where_it_belongs(repo: Repo) -> None:
    repo.add(yaml_text=REQUEST.replace("  colour: red\n", "").replace("  email: anna", "email: anna"))
    found = repo.messages(rule="schema")
    assert (
        "mailing.yaml:7:1: error [schema] unknown field 'email' at the top level: 'email' is a field of 'contact'; "
        "indent it under contact:" in found
    )


def test_entries_are_counted_from_one_and_never_called_by_their_type(repo: Repo) -> None:
    lists = [{"file": "recipients.txt"}, {"file": "a.txt", "special": "all-employees"}, "b.txt"]
    repo.add(changes={"recipients": {"lists": lists}})
    assert repo.messages(rule="schema") == [
        "mailing.yaml:14:5: error [schema] the 2nd entry of recipients.lists must name either a file or a special "
        "list, not both (one entry each)",
        "mailing.yaml:16:5: error [schema] the 3rd entry of recipients.lists must be a group of fields on the lines "
        "below it, each indented and written as name: value; here it is text (Either a file in this directory or a "
        "special list provided by IT, optionally with where it came from)",
    ]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"contact": {"phone": 87906000}},
            'contact.phone must be text; here it is a number: put the value in quotes (phone: "87906000") so that '
            "it is read as text, as written (The contact person's telephone number (asked for by the policy))",
        ),
        (
            {"purpose": "~"},
            "purpose must be text; here it is empty (What is the purpose of the mailing?)",
        ),
        (
            {"recipients": {"lists": "~"}},
            "recipients.lists must be a list, one entry per line starting with '- '; here it is empty: write its "
            "entries on the lines below recipients.lists, indented (One or more recipient lists)",
        ),
        ({"crisis": "yes"}, "crisis must be true or false; here it is text (A crisis mailing: exempt from lead time"),
        ({"delivery": {"mode": "bcc"}}, "delivery.mode must be bulk or individual; here it is 'bcc'"),
        ({"languages": ["sv", "sv"]}, "'sv' is in languages twice; keep it once"),
        (
            {"subject": {"EN": "x"}},
            "'EN' cannot be a field of subject: the fields of subject are named as two-letter language codes such as "
            "sv or en, as in languages",
        ),
        ({"purpose": ""}, "purpose is empty; fill it in (What is the purpose of the mailing?)"),
    ],
)
def test_shape_errors_in_the_requesters_words(repo: Repo, changes: dict[str, object], expected: str) -> None:
    # "~" stands for a field written with nothing after its colon.
    text = yaml.safe_dump(merge(VALID, changes), sort_keys=False, allow_unicode=True).replace("'~'", "")
    repo.add(yaml_text=text)
    found = repo.messages(rule="schema")
    assert any(expected in message for message in found), found


def test_a_bad_send_at_is_one_message_not_one_per_rule(repo: Repo) -> None:
    repo.add(changes={"send_at": "2027-02-30 09:00"})
    assert repo.messages() == [
        "mailing.yaml:1:1: error [schema] send_at '2027-02-30 09:00' is not a real date and time; fix the day or hour"
    ]
    repo.add("2027-02-10-other", changes={"send_at": 20270210})
    assert repo.messages("2027-02-10-other") == [
        "mailing.yaml:1:1: error [schema] send_at must be text; here it is a number: put the value in quotes "
        '(send_at: "20270210") so that it is read as text, as written (Desired dispatch, as local time in the '
        "policy's time zone: \"YYYY-MM-DD HH:MM\", or a date alone for the policy's default hour. At least the "
        "policy's lead time in working days after submission)"
    ]


def test_a_value_the_schema_refuses_is_not_judged_again_by_another_rule(repo: Repo) -> None:
    repo.add(changes={"from_address": "", "sender": {"unit": ""}})
    found = repo.messages()
    assert [m.split(" [")[1].split("]")[0] for m in found] == ["schema", "schema"], found

"""[schema]: the JSON Schema of mailing.yaml, at the line of the offending key; the directory id."""

from __future__ import annotations

import json

import pytest

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
        "mailing.yaml:5:3: error [schema] unknown field 'colour' in sender; allowed fields are: role, unit"
    ]


def test_missing_required_points_at_the_parent(repo: Repo) -> None:
    repo.add(yaml_text=REQUEST.replace("  colour: red\n", "").replace("  email: anna.andersson@kth.se\n", ""))
    assert repo.messages(rule="schema") == [
        "mailing.yaml:5:1: error [schema] contact is missing the required field 'email'"
    ]


def test_wrong_type_points_at_the_key(repo: Repo) -> None:
    repo.add(yaml_text=REQUEST.replace("  colour: red\n", "").replace("languages: [sv, en]", "languages: sv"))
    assert repo.messages(rule="schema") == [
        "mailing.yaml:13:1: error [schema] languages must be of type array, not a string"
    ]


def test_every_problem_is_reported(repo: Repo) -> None:
    text = REQUEST.replace("purpose: Announce the new travel booking system.\n", "").replace("[sv, en]", "[sv, EN]")
    repo.add(yaml_text=text)
    found = repo.messages(rule="schema")
    assert len(found) == 3, found
    assert any("the top level is missing the required field 'purpose'" in m for m in found)
    assert any("unknown field 'colour'" in m for m in found)
    assert any(m.startswith("mailing.yaml:13:") and '"EN"' in m for m in found)


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
    assert "send_at value" in problem and '"YYYY-MM-DD HH:MM" or "YYYY-MM-DD"' in problem


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
        "mailing.yaml:17:5: error [schema] recipients.lists.1 must name either a file or a special list, not both "
        "(one entry each)",
        "mailing.yaml:19:5: error [schema] recipients.lists.2 is missing the required field 'file'",
        "mailing.yaml:23:5: error [schema] recipients.lists.3.source is missing the required field 'date'",
    ]

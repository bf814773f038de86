"""checks.schemas: the bundled schemas are valid, a repository's broken schema is a clean usage error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from checks.errors import UsageError
from checks.policy import load_policy
from checks.schemas import TOOL_ROOT, validator
from tests.conftest import Repo

BUNDLED = sorted((TOOL_ROOT / "schema").glob("*.schema.json"))


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_the_bundled_schemas_are_valid_json_schema(path: Path) -> None:
    # validator() trusts byte-identical copies of these files, so this check must hold here.
    Draft202012Validator.check_schema(json.loads(path.read_text(encoding="utf-8")))


def test_an_identical_copy_in_a_repository_validates_like_the_original(tmp_path: Path) -> None:
    copy = tmp_path / "mailing.schema.json"
    shutil.copy(TOOL_ROOT / "schema" / "mailing.schema.json", copy)
    original = validator(TOOL_ROOT / "schema" / "mailing.schema.json")
    instance = {"colour": "red", "send_at": "soon"}
    assert sorted(e.message for e in validator(copy).iter_errors(instance)) == sorted(
        e.message for e in original.iter_errors(instance)
    )
    assert not validator(copy).is_valid(instance)


def test_a_changed_schema_that_is_not_json_schema_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "mailing.schema.json"
    path.write_text(json.dumps({"type": "object", "required": "send_at"}), encoding="utf-8")
    with pytest.raises(UsageError, match=r"mailing\.schema\.json: not a valid JSON Schema \(2020-12\): "):
        validator(path)


def test_a_schema_that_is_not_json_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "mailing.schema.json"
    path.write_text("{ not json", encoding="utf-8")
    with pytest.raises(UsageError, match=r"mailing\.schema\.json: cannot read the schema: "):
        validator(path)


def test_a_repository_with_a_broken_policy_schema_gets_a_usage_error(repo: Repo) -> None:
    schema = repo.root / "schema" / "policy.schema.json"
    data = json.loads(schema.read_text(encoding="utf-8"))
    data["type"] = 12
    schema.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(UsageError, match=r"policy\.schema\.json: not a valid JSON Schema"):
        load_policy(repo.root)

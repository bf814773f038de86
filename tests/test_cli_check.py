"""The `mailings check`, `earliest` and `new` commands, called as a user calls them."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from checks.cli import main
from tests.conftest import Repo

PROJECT = Path(__file__).resolve().parent.parent


def run(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The real console entry point in a subprocess: exit code, stdout, stderr."""
    full_env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"} | (env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "checks", *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=60
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_the_program_tunes_the_collector_before_it_imports_the_command_line() -> None:
    program = (
        "import gc, sys\n"
        "from checks import program\n"
        "assert 'checks.cli' not in sys.modules and 'jsonschema' not in sys.modules\n"
        "sys.argv = ['mailings', 'earliest', '--submitted', '2027-01-11']\n"
        "status = program.main()\n"
        "tuned = gc.get_threshold() == (program.YOUNG_OBJECTS, 10, program.MIDDLE_PASSES)\n"
        "print(status, tuned, gc.get_freeze_count() > 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=PROJECT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 True True"
    assert done.stdout.startswith("2027-01-25 is the earliest allowed dispatch date")


def test_clean_repository_exits_zero(repo: Repo) -> None:
    repo.add()
    code, out, err = run(["check", "--root", str(repo.root), "--submitted", "2027-01-11"])
    assert (code, out, err) == (0, "1 mailing checked: 0 errors, 0 warnings\n", "")


def test_text_output_and_exit_one(repo: Repo) -> None:
    repo.add(changes={"send_at": "2027-01-22 09:00"})
    code, out, _ = run(["check", "--root", str(repo.root), "--submitted", "2027-01-11"])
    assert code == 1
    assert out.splitlines() == [
        "mailings/2027-02-10-travel/mailing.yaml:1:1: error [lead-time] send_at 2027-01-22 is 9 working days after "
        "submission on 2027-01-11; the earliest allowed date is 2027-01-25 (skipped: weekends). "
        "Move send_at to 2027-01-25 or later (only crisis mailings are exempt)",
        "mailings/2027-02-10-travel/mailing.yaml:1:1: warning [send-time] the request's id 2027-02-10-travel says "
        "2027-02-10, but send_at is 2027-01-22; rename the directory to 2027-01-22-travel, or correct send_at, so "
        "that the id says when the mailing goes out",
        "1 mailing checked: 1 error, 1 warning",
    ]


def test_warnings_pass_unless_strict(repo: Repo) -> None:
    repo.add(changes={"send_at": "2027-02-10 18:00"})
    assert run(["check", "--root", str(repo.root), "--submitted", "2027-01-11"])[0] == 0
    assert run(["check", "--root", str(repo.root), "--submitted", "2027-01-11", "--strict"])[0] == 1


def test_github_format_is_chosen_on_actions(repo: Repo) -> None:
    repo.add(changes={"send_at": "2027-01-22 09:00", "colour": "red, blue"})
    code, out, _ = run(["check", "--root", str(repo.root), "--submitted", "2027-01-11"], env={"GITHUB_ACTIONS": "true"})
    lines = out.splitlines()
    assert code == 1
    assert lines[0] == "::group::mailings/2027-02-10-travel/mailing.yaml"
    assert lines[1].startswith(
        "::error file=mailings/2027-02-10-travel/mailing.yaml,line=1,col=1,title=lead-time::send_at 2027-01-22"
    )
    # Errors come first: GitHub shows only the first 10 errors and 10 warnings of a step.
    assert lines[2].startswith("::error file=mailings/2027-02-10-travel/mailing.yaml,line=20,col=1,title=schema::")
    assert lines[3].startswith("::warning file=mailings/2027-02-10-travel/mailing.yaml,line=1,col=1,title=send-time::")
    assert lines[-2:] == ["::endgroup::", "1 mailing checked: 2 errors, 1 warning"]


def test_github_escapes_properties_and_newlines() -> None:
    from checks.model import Problem
    from checks.reporters import github

    out = io.StringIO()
    github([Problem("a,b:c.txt", 1, 2, "warning", "x", "50% done\nnext")], [], out)
    # a line break in a message is shown as \n: it can start no workflow command of its own
    assert "::warning file=a%2Cb%3Ac.txt,line=1,col=2,title=x::50%25 done\\nnext\n" in out.getvalue()


def test_json_format(repo: Repo) -> None:
    repo.add(changes={"send_at": "2027-02-10 18:00"})
    code, out, _ = run(["check", "--root", str(repo.root), "--submitted", "2027-01-11", "--format", "json"])
    doc = json.loads(out)
    assert code == 0
    assert doc["problems"] == [
        {
            "file": "mailings/2027-02-10-travel/mailing.yaml",
            "line": 1,
            "column": 1,
            "level": "warning",
            "rule": "send-time",
            "message": "send_at 18:00 is outside the send window 08:00-17:00 (Europe/Stockholm); "
            "choose a time within it",
        }
    ]
    (summary,) = doc["mailings"]
    assert summary["id"] == "2027-02-10-travel"
    assert summary["send_at"] == "2027-02-10T18:00:00+01:00"
    assert summary["earliest"] == "2027-01-25"
    assert summary["recipients"] == 600
    assert (summary["errors"], summary["warnings"]) == (0, 1)


def test_named_paths_only(repo: Repo) -> None:
    repo.add("good")
    repo.add("bad", changes={"send_at": "2027-01-12 09:00"})
    assert run(["check", "--root", str(repo.root), "--submitted", "2027-01-11", "mailings/good"], cwd=repo.root)[0] == 0
    code, out, _ = run(["check", "--submitted", "2027-01-11", "mailings/bad/mailing.yaml"], cwd=repo.root)
    assert code == 1 and "mailings/bad/mailing.yaml:1:1: error [lead-time]" in out


@pytest.mark.parametrize("path", ["..", "/etc", "mailings/../policy.yaml", "mailings/nope"])
def test_paths_outside_mailings_are_usage_errors(repo: Repo, path: str) -> None:
    repo.add()
    code, out, err = run(["check", path], cwd=repo.root)
    assert code == 2 and out == "" and err.startswith("mailings: error: ")


def test_every_problem_of_every_mailing_is_reported(repo: Repo) -> None:
    repo.add("one", changes={"send_at": "2027-01-12 09:00"})
    repo.add("two", changes={"send_at": "2027-01-13 09:00"})
    _, out, _ = run(["check", "--root", str(repo.root), "--submitted", "2027-01-11"])
    assert out.count("[lead-time]") == 2 and out.endswith("2 mailings checked: 2 errors, 0 warnings\n")


def test_bad_submitted_is_a_usage_error(repo: Repo) -> None:
    code, _, err = run(["check", "--root", str(repo.root), "--submitted", "tomorrow"])
    assert code == 2 and "--submitted 'tomorrow'" in err


def test_broken_policy_is_exit_two(repo: Repo) -> None:
    (repo.root / "policy.yaml").write_text((repo.root / "policy.yaml").read_text() + "\nsurprise: 1\n")
    code, out, err = run(["check", "--root", str(repo.root)])
    assert code == 2 and out == ""
    assert "policy.yaml:" in err and "unknown field 'surprise'" in err


def test_policy_time_zone_must_exist(repo: Repo) -> None:
    path = repo.root / "policy.yaml"
    path.write_text(path.read_text().replace("Europe/Stockholm", "Mars/Olympus_Mons"))
    code, _, err = run(["check", "--root", str(repo.root)])
    assert code == 2 and "unknown time zone 'Mars/Olympus_Mons'" in err


def test_another_organisation_adopts_by_editing_the_policy(repo: Repo) -> None:
    path = repo.root / "policy.yaml"
    text = path.read_text().replace("internal_domains: [kth.se]", "internal_domains: [uu.se]")
    text = text.replace("lead_time_working_days: 10", "lead_time_working_days: 3").replace("country: SE", "country: NO")
    text = text.replace("categories: [public, de_facto]", "categories: [public]")
    path.write_text(text)
    repo.add(changes={"send_at": "2027-01-14 09:00", "from_address": "it@kth.se"})
    code, out, _ = run(["check", "--root", str(repo.root), "--submitted", "2027-01-11", "--format", "json"])
    messages = [p["message"] for p in json.loads(out)["problems"]]
    assert code == 1
    assert not any("working day" in m for m in messages)  # 3 days of lead time are met
    assert any("kth.se" in m for m in messages)  # kth.se links and addresses are now external


def test_earliest(repo: Repo) -> None:
    code, out, _ = run(["earliest", "--root", str(repo.root), "--submitted", "2027-03-22"])
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split()[0] == "2027-04-07"
    assert "  skipped 2027-03-26 Fri: Good Friday" in lines
    assert "  skipped 2027-03-27 Sat: weekend" in lines
    assert "  skipped 2027-03-29 Mon: Easter Monday" in lines


def test_earliest_names_blackouts(repo: Repo) -> None:
    _, out, _ = run(["earliest", "--root", str(repo.root), "--submitted", "2027-06-28"])
    assert out.startswith("2027-08-")
    assert "  skipped 2027-07-01 Thu: blackout: July" in out.splitlines()


def test_new_scaffolds_a_request_that_only_lacks_content(repo: Repo) -> None:
    code, out, _ = run(["new", "2027-02-10-news", "--root", str(repo.root), "--submitted", "2027-01-11"])
    assert code == 0 and "with send_at 2027-02-10 09:00 (the date in its id);" in out
    directory = repo.root / "mailings" / "2027-02-10-news"
    assert sorted(p.name for p in directory.iterdir()) == [
        "body.en.txt",
        "body.sv.txt",
        "mailing.yaml",
        "recipients.txt",
    ]
    text = (directory / "mailing.yaml").read_text()
    assert 'send_at: "2027-02-10 09:00"' in text and "# What is the purpose of the mailing?" in text
    code, out, _ = run(["check", "--root", str(repo.root), "--submitted", "2027-01-11"])
    rules = {line.split("[")[1].split("]")[0] for line in out.splitlines() if "[" in line}
    # Left to do: the recipients and the template's placeholders.
    assert code == 1 and rules == {"recipients", "content"}


@pytest.mark.parametrize(
    ("mailing_id", "said"),
    [
        (
            "2027-01-12-news",
            "send_at 2027-01-25 09:00 (the earliest allowed date: the id's 2027-01-12 is sooner; rename ",
        ),
        ("staff-news", "send_at 2027-01-25 09:00 (the earliest allowed date);"),
        ("2027-02-30-news", "send_at 2027-01-25 09:00 (the earliest allowed date);"),
        ("20270210-news", "send_at 2027-01-25 09:00 (the earliest allowed date);"),
    ],
)
def test_new_starts_at_the_earliest_date_when_the_id_names_none_that_can_be(
    repo: Repo, mailing_id: str, said: str
) -> None:
    code, out, _ = run(["new", mailing_id, "--root", str(repo.root), "--submitted", "2027-01-11"])
    assert code == 0 and said in out


def test_new_where_no_directory_can_be_made_says_so(repo: Repo) -> None:
    (repo.root / "mailings").rmdir()
    (repo.root / "mailings").write_text("not a directory\n")
    code, out, err = run(["new", "2027-02-10-news", "--root", str(repo.root), "--submitted", "2027-01-11"])
    assert (code, out) == (2, "")
    assert err == "mailings: error: mailings/2027-02-10-news: cannot be created: Not a directory\n"


@pytest.mark.parametrize("bad", ["Bad_Id", "../escape", "x.y", "Ärende"])
def test_new_refuses_bad_ids(repo: Repo, bad: str) -> None:
    code, _, err = run(["new", bad, "--root", str(repo.root)])
    assert code == 2 and "is not a valid id" in err
    assert list((repo.root / "mailings").iterdir()) == []


def test_new_refuses_existing(repo: Repo) -> None:
    repo.add("taken")
    code, _, err = run(["new", "taken", "--root", str(repo.root)])
    assert code == 2 and "already exists" in err


def test_main_in_process_returns_codes(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.add()
    assert main(["check", "--root", str(repo.root), "--submitted", "2027-01-11", "--format", "text"]) == 0
    assert main(["check", "--root", str(repo.root / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_holiday_settings_are_checked_on_load_unless_the_caller_never_needs_them(repo: Repo) -> None:
    from checks.errors import UsageError
    from checks.policy import load_policy

    path = repo.root / "policy.yaml"
    path.write_text(path.read_text().replace("country: SE", "country: XX"))
    with pytest.raises(UsageError, match="holidays"):
        load_policy(repo.root)
    policy = load_policy(repo.root, check_holidays=False)
    with pytest.raises(UsageError, match="holidays"):
        policy.calendar.holiday(datetime(2027, 1, 1).date())


def test_holiday_names_follow_the_policy_not_the_locale(repo: Repo) -> None:
    swedish = {"LANGUAGE": "sv", "LANG": "sv_SE.UTF-8", "LC_ALL": ""}
    _, out, _ = run(["earliest", "--root", str(repo.root), "--submitted", "2027-03-22"], env=swedish)
    assert "  skipped 2027-03-29 Mon: Easter Monday" in out.splitlines()


def test_markdown_format_groups_per_file_and_escapes(repo: Repo) -> None:
    repo.add(changes={"send_at": "2027-01-22 09:00", "<b>x</b>": 1})
    code, out, _ = run(["check", "--root", str(repo.root), "--submitted", "2027-01-11", "--format", "markdown"])
    lines = out.splitlines()
    assert code == 1
    assert lines[:3] == ["## mailings check", "", "### ` mailings/2027-02-10-travel/mailing.yaml `"]
    assert lines[4].startswith("- **error** line 1, column 1, ` lead-time `: send\\_at 2027\\-01\\-22 is 9 working")
    assert "<b>" not in out and "\\<b\\>x\\<\\/b\\>" in out
    assert lines[-1] == "1 mailing checked: 2 errors, 1 warning"  # the warning: the id's date is not send_at's


def test_an_author_that_is_no_github_user_name_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # an empty value (the variable unset) fails closed rather than checking as if no author were known
    for bad in ("", "@anna", "anna\nandersson", "-anna"):
        assert main(["check", "--root", str(tmp_path), f"--author={bad}"]) == 2
        assert "--author" in capsys.readouterr().err

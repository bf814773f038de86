"""[recipients] counting, invalid addresses, duplicates, list files and special lists."""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from checks.addresses import recipient_count
from checks.linter import check_mailing
from checks.loader import load_mailing
from checks.model import Context
from checks.rules import recipients
from tests.conftest import Repo, addresses

MID = "2027-02-10-travel"
# In the default request as the fixture writes it: recipients.lists is on line 12, its entries from line 13.
LISTS = "mailing.yaml:12:3"
SPECIAL_WARNING = (
    "warning [recipients] the special list all-employees (All employees, about 5500 addresses) is IT's qualified "
    "guess from the user database: its quality is not guaranteed and it cannot be adjusted; prefer a specific "
    "list of the recipients"
)


def entry(index: int) -> str:
    return f"mailing.yaml:{13 + index}:5"


def lists(*items: dict[str, str]) -> dict[str, Any]:
    return {"recipients": {"lists": list(items)}}


def too_few(count: int, special: bool = False) -> str:
    approx = ", special lists at their approximate size" if special else ""
    return (
        f"{LISTS}: error [recipients] the lists reach {count} recipients (unique valid addresses{approx}); "
        "mailings to fewer than 500 recipients are not handled by IT: send this one from your personal e-mail client"
    )


def count(repo: Repo) -> int:
    return recipient_count(load_mailing(repo.root, repo.root / "mailings" / MID, repo.policy), repo.policy)


# --- counting and the minimum ------------------------------------------------------------------------------------


def test_the_default_request_passes(repo: Repo) -> None:
    repo.add()
    assert repo.messages(rule="recipients") == []
    assert count(repo) == 600


def test_500_recipients_is_enough(repo: Repo) -> None:
    repo.add(recipients=addresses(500))
    assert repo.messages(rule="recipients") == []


def test_499_recipients_are_too_few(repo: Repo) -> None:
    repo.add(recipients=addresses(499))
    assert repo.messages(rule="recipients") == [too_few(499)]


def test_duplicates_do_not_count_towards_the_minimum(repo: Repo) -> None:
    repo.add(recipients=addresses(499) + "USER0@kth.se\n")
    assert repo.messages(rule="recipients") == [
        too_few(499),
        "recipients.txt:500:1: warning [recipients] 'USER0@kth.se' is listed already on line 1 as 'user0@kth.se' "
        "(case does not matter in addresses); remove this duplicate line",
    ]


def test_invalid_addresses_do_not_count_towards_the_minimum(repo: Repo) -> None:
    repo.add(recipients=addresses(499) + "not-an-address\n")
    found = repo.messages(rule="recipients")
    assert found[0] == too_few(499)
    assert found[1].startswith("recipients.txt:500:1: error [recipients] 'not-an-address' is not a valid e-mail")


def test_addresses_add_up_over_lists(repo: Repo) -> None:
    repo.add(
        changes=lists({"file": "recipients.txt"}, {"file": "more.txt"}),
        recipients=addresses(250),
        files={"more.txt": addresses(250, prefix="other")},
    )
    assert repo.messages(rule="recipients") == []
    assert count(repo) == 500


def test_two_lists_below_the_minimum_together(repo: Repo) -> None:
    repo.add(
        changes=lists({"file": "recipients.txt"}, {"file": "more.txt"}),
        recipients=addresses(250),
        files={"more.txt": addresses(249, prefix="other")},
    )
    assert repo.messages(rule="recipients") == [too_few(499)]


def test_a_blank_and_commented_list_counts_only_addresses(repo: Repo) -> None:
    repo.add(recipients="# staff who travel\n\n" + addresses(499) + "   \n# end\n")
    assert repo.messages(rule="recipients") == [too_few(499)]


# --- special lists -----------------------------------------------------------------------------------------------


def test_a_special_list_counts_with_its_approximate_size_and_warns(repo: Repo) -> None:
    repo.add(changes=lists({"special": "all-employees"}))
    assert repo.messages(rule="recipients") == [f"{entry(0)}: {SPECIAL_WARNING}"]
    assert count(repo) == 5500


def with_small_special_list(repo: Repo, size: int) -> None:
    policy = repo.root / "policy.yaml"
    text = policy.read_text(encoding="utf-8")
    policy.write_text(text.replace("approximate_size: 5500", f"approximate_size: {size}"), encoding="utf-8")


def test_special_list_size_and_a_file_reach_the_minimum_together(repo: Repo) -> None:
    with_small_special_list(repo, 100)
    repo.add(changes=lists({"special": "all-employees"}, {"file": "recipients.txt"}), recipients=addresses(400))
    found = repo.messages(rule="recipients")
    assert [m for m in found if "reach" in m] == []
    assert count(repo) == 500


def test_special_list_size_and_a_file_one_short_of_the_minimum(repo: Repo) -> None:
    with_small_special_list(repo, 100)
    repo.add(changes=lists({"special": "all-employees"}, {"file": "recipients.txt"}), recipients=addresses(399))
    found = repo.messages(rule="recipients")
    assert too_few(499, special=True) in found


def test_an_unknown_special_list_is_an_error(repo: Repo) -> None:
    repo.add(changes=lists({"file": "recipients.txt"}, {"special": "all-staff"}))
    assert repo.messages(rule="recipients") == [
        f"{entry(1)}: error [recipients] 'all-staff' is not a special list in the policy; "
        "use one of: all-employees, all-students, or a list file of your own"
    ]


def test_a_special_list_is_not_read_at_submission(repo: Repo) -> None:
    repo.add(changes=lists({"special": "all-students"}))
    assert [m for m in repo.messages(rule="recipients") if "error" in m] == []


def test_at_send_time_an_unread_special_list_names_its_variable(repo: Repo) -> None:
    repo.add(changes=lists({"special": "all-employees"}))
    assert repo.messages(rule="recipients", stage="send") == [
        f"{entry(0)}: error [recipients] the special list all-employees could not be read by the sender: set the "
        "environment variable MAILINGS_LIST_ALL_EMPLOYEES to the file that holds its addresses, one per line",
        f"{entry(0)}: {SPECIAL_WARNING}",
    ]


def send_problems(repo: Repo, special: dict[str, Path]) -> list[str]:
    """Problems at send time with the special lists read from *special*."""
    mailing = load_mailing(repo.root, repo.root / "mailings" / MID, repo.policy, special)
    context = Context(date(2027, 1, 11), datetime.fromisoformat("2027-02-10T09:00+01:00"), stage="send")
    problems = check_mailing(mailing, repo.policy, context, [recipients])
    return [f"{p.file.removeprefix(f'mailings/{MID}/')}:{p.line}:{p.column}: {p.level} {p.message}" for p in problems]


def test_at_send_time_a_read_special_list_passes(repo: Repo, tmp_path: Path) -> None:
    repo.add(changes=lists({"special": "all-employees"}))
    (tmp_path / "staff.txt").write_text(addresses(700, prefix="staff"), encoding="utf-8")
    assert [m for m in send_problems(repo, {"all-employees": tmp_path / "staff.txt"}) if "error" in m] == []


def test_at_send_time_an_empty_special_list_is_an_error(repo: Repo, tmp_path: Path) -> None:
    repo.add(changes=lists({"special": "all-employees"}))
    (tmp_path / "staff.txt").write_text("# exported empty\n", encoding="utf-8")
    assert (
        f"{entry(0)}: error the special list all-employees holds no addresses; check the file that "
        "MAILINGS_LIST_ALL_EMPLOYEES names" in send_problems(repo, {"all-employees": tmp_path / "staff.txt"})
    )


def test_at_send_time_a_file_address_already_in_the_special_list_is_a_duplicate(repo: Repo, tmp_path: Path) -> None:
    repo.add(changes=lists({"special": "all-employees"}, {"file": "recipients.txt"}), recipients="Staff3@kth.se\n")
    (tmp_path / "staff.txt").write_text(addresses(700, prefix="staff") + "broken\n", encoding="utf-8")
    found = send_problems(repo, {"all-employees": tmp_path / "staff.txt"})
    assert (
        "recipients.txt:1:1: warning 'Staff3@kth.se' is listed already in the special list all-employees as "
        "'staff3@kth.se' (case does not matter in addresses); remove this duplicate line"
    ) in found
    assert (
        f"{entry(0)}: warning the special list all-employees has 1 invalid address, which are not sent to "
        f"(the first: 'broken' on line 701 of {tmp_path / 'staff.txt'}); ask IT to correct the list"
    ) in found


# --- list files --------------------------------------------------------------------------------------------------


def test_a_missing_list_file_is_an_error_at_its_entry(repo: Repo) -> None:
    repo.add(changes=lists({"file": "recipients.txt"}, {"file": "students.txt"}))
    assert repo.messages(rule="recipients") == [
        f"{entry(1)}: error [recipients] the list file 'students.txt' does not exist; add the file or fix the name"
    ]


def test_an_empty_list_file_is_an_error(repo: Repo) -> None:
    repo.add(changes=lists({"file": "recipients.txt"}, {"file": "empty.txt"}), files={"empty.txt": "# none yet\n"})
    assert repo.messages(rule="recipients") == [
        f"{entry(1)}: error [recipients] the list file 'empty.txt' holds no addresses; put one address per line in "
        "it (in a .csv, under the email column), or remove the entry"
    ]


def test_a_list_name_with_a_line_break_stays_on_one_line(repo: Repo) -> None:
    repo.add(changes=lists({"file": "recipients.txt"}, {"file": "staff.txt\nBcc: all@kth.se"}))
    assert repo.messages(rule="recipients") == [
        f"{entry(1)}: error [recipients] the list file 'staff.txt\\nBcc: all@kth.se' does not exist; "
        "add the file or fix the name"
    ]


def test_a_list_file_in_the_older_windows_character_set_is_read_with_one_warning(repo: Repo) -> None:
    text = "Namn;E-post\n" + "".join(f"Åsa Öberg {i};user{i}@kth.se\n" for i in range(600))
    repo.add(changes=lists({"file": "staff.csv"}), files={"staff.csv": text.encode("cp1252")})
    assert repo.messages(rule="recipients") == [
        "staff.csv:2:1: warning [recipients] the list file 'staff.csv' is saved in an older Windows character set, "
        "not UTF-8: its addresses were read, but letters such as å, ä and ö in it are not kept reliably; from Excel, "
        "save it as CSV UTF-8 (File > Save As > CSV UTF-8 (Comma delimited) (*.csv)); from a text editor, save it "
        "with the character set UTF-8"
    ]
    assert count(repo) == 600


def test_a_list_file_that_is_not_text_is_one_error(repo: Repo) -> None:
    repo.add(changes=lists({"file": "odd.txt"}), files={"odd.txt": b"\x81\x8d\x8f\x90\x9d" * 1000})
    assert repo.messages(rule="recipients") == [
        f"{entry(0)}: error [recipients] the list file 'odd.txt' is not plain text that can be read; from Excel, "
        "save it as CSV UTF-8 (File > Save As > CSV UTF-8 (Comma delimited) (*.csv)); from a text editor, save it "
        "with the character set UTF-8"
    ]


@pytest.mark.parametrize("head", [b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"])
def test_a_workbook_renamed_to_csv_is_one_error_that_says_how_to_save_it(repo: Repo, head: bytes) -> None:
    repo.add(changes=lists({"file": "staff.csv"}), files={"staff.csv": head + bytes(range(256)) * 100})
    assert repo.messages(rule="recipients") == [
        f"{entry(0)}: error [recipients] the list file 'staff.csv' is an Excel workbook, not a list of addresses in "
        "plain text; open it in Excel and save it as CSV UTF-8 (File > Save As > CSV UTF-8 (Comma delimited) "
        "(*.csv)), then name that .csv file in recipients.lists"
    ]


def test_a_directory_as_list_file_is_an_error(repo: Repo) -> None:
    directory = repo.add(changes=lists({"file": "recipients.txt"}, {"file": "sub"}))
    (directory / "sub").mkdir()
    assert repo.messages(rule="recipients") == [
        f"{entry(1)}: error [recipients] the list file 'sub' cannot be read: it is not a regular file; "
        "make it a regular file that can be read"
    ]


def test_a_body_named_as_list_is_an_error(repo: Repo) -> None:
    repo.add(changes=lists({"file": "recipients.txt"}, {"file": "body.en.txt"}))
    assert repo.messages(rule="recipients") == [
        f"{entry(1)}: error [recipients] the list file 'body.en.txt' is not a recipient list; "
        "name a file that holds only addresses"
    ]


def test_paths_out_of_the_directory_are_left_to_the_attachments_rule(repo: Repo) -> None:
    (repo.root / "mailings" / "outside.txt").write_text(addresses(600), encoding="utf-8")
    repo.add(changes=lists({"file": "../outside.txt"}))
    assert repo.messages(rule="recipients") == []


def test_symlinked_list_files_are_left_to_the_attachments_rule(repo: Repo) -> None:
    (repo.root / "elsewhere.txt").write_text(addresses(600), encoding="utf-8")
    directory = repo.add(changes=lists({"file": "linked.txt"}))
    os.symlink(repo.root / "elsewhere.txt", directory / "linked.txt")
    assert repo.messages(rule="recipients") == []


def test_a_list_named_twice_is_one_warning_not_a_flood_of_duplicates(repo: Repo) -> None:
    repo.add(changes=lists({"file": "recipients.txt"}, {"file": "recipients.txt"}))
    assert repo.messages(rule="recipients") == [
        f"{entry(1)}: warning [recipients] the list file 'recipients.txt' is named twice in recipients.lists; "
        "remove this entry"
    ]


def test_an_unparsable_mailing_yaml_gives_no_recipient_problems(repo: Repo) -> None:
    repo.add(yaml_text="recipients: [unclosed\n")
    assert repo.messages(rule="recipients") == []


# --- CSV ---------------------------------------------------------------------------------------------------------


def csv_rows(count: int) -> str:
    return "".join(f'"Andersson, Anna {i}",user{i}@kth.se,"Dept ""A"""\n' for i in range(count))


def test_csv_with_email_column_bom_and_quoted_fields(repo: Repo) -> None:
    text = "\ufeffName,Email,Unit\n" + csv_rows(500)
    repo.add(changes=lists({"file": "staff.csv"}), files={"staff.csv": text})
    assert repo.messages(rule="recipients") == []
    assert count(repo) == 500


def test_csv_with_499_rows_is_too_few(repo: Repo) -> None:
    repo.add(changes=lists({"file": "staff.csv"}), files={"staff.csv": "name,email\n" + csv_rows(499)})
    assert repo.messages(rule="recipients") == [too_few(499)]


def test_csv_without_email_column_is_an_error(repo: Repo) -> None:
    repo.add(changes=lists({"file": "staff.csv"}), files={"staff.csv": "name,phone\nAnna,anna@kth.se\n"})
    assert repo.messages(rule="recipients") == [
        f"{entry(0)}: error [recipients] the list file 'staff.csv' has no e-mail column in its header line; "
        "start the file with a header line that names the column of addresses email, e-mail, e-post, mail or "
        "adress (e.g. name,email)"
    ]


@pytest.mark.parametrize("header", ["E-post", "Email", "e-mail", "Mail", "ADRESS", "E-postadress", "epost"])
@pytest.mark.parametrize("separator", [",", ";", "\t"])
def test_csv_header_names_and_separators_of_excel_are_read_silently(repo: Repo, header: str, separator: str) -> None:
    text = f"Namn{separator}{header}{separator}Enhet\n" + "".join(
        f"Anna {i}{separator}user{i}@kth.se{separator}ITA\n" for i in range(500)
    )
    repo.add(changes=lists({"file": "staff.csv"}), files={"staff.csv": text})
    assert repo.messages(rule="recipients") == []
    assert count(repo) == 500


def test_a_text_list_with_a_header_line_is_read_as_a_table(repo: Repo) -> None:
    text = "Namn;E-post\n" + "".join(f"Anna {i};user{i}@kth.se\n" for i in range(500))
    repo.add(changes=lists({"file": "staff.txt"}), files={"staff.txt": text})
    assert repo.messages(rule="recipients") == []
    assert count(repo) == 500


def test_email_wins_over_adress_which_may_be_a_postal_address(repo: Repo) -> None:
    text = "Namn;Adress;E-post\n" + "".join(f"Anna {i};Storgatan {i};user{i}@kth.se\n" for i in range(500))
    repo.add(changes=lists({"file": "staff.csv"}), files={"staff.csv": text})
    assert repo.messages(rule="recipients") == []


def test_a_utf16_list_from_excel_unicode_text_is_read(repo: Repo) -> None:
    text = "Name\tEmail\n" + "".join(f"Åsa {i}\tuser{i}@kth.se\n" for i in range(500))
    repo.add(changes=lists({"file": "staff.csv"}), files={"staff.csv": text.encode("utf-16")})
    assert repo.messages(rule="recipients") == []
    assert count(repo) == 500


def test_names_with_addresses_pasted_from_outlook_are_read_with_one_warning(repo: Repo) -> None:
    text = "".join(f"Anna Andersson {i} <anna{i}@kth.se>\n" for i in range(300))
    text += '"Berg, Bo" <bo@kth.se>; Cecilia <cecilia@kth.se>;\n' + addresses(300)
    repo.add(recipients=text)
    assert repo.messages(rule="recipients") == [
        "recipients.txt:1:1: warning [recipients] the list file 'recipients.txt' has 301 lines with names, as "
        "pasted from Outlook (Name <address>); the address between < and > was read on each. Check that these are "
        "the people you mean, and keep one address per line"
    ]
    assert count(repo) == 602


def test_a_name_without_an_address_is_still_an_error(repo: Repo) -> None:
    repo.add(recipients=addresses(500) + "Anna Andersson <anna.kth.se>\n")
    found = [m for m in repo.messages(rule="recipients") if " error " in m]
    assert len(found) == 1, found
    assert found[0].startswith("recipients.txt:501:1: error [recipients] 'anna.kth.se' is not a valid e-mail address")


def test_csv_with_only_a_header_is_empty(repo: Repo) -> None:
    repo.add(changes=lists({"file": "recipients.txt"}, {"file": "staff.csv"}), files={"staff.csv": "name,email\n"})
    assert [m.split(" holds")[0] for m in repo.messages(rule="recipients")] == [
        f"{entry(1)}: error [recipients] the list file 'staff.csv'"
    ]


def test_csv_line_numbers_point_at_the_row_even_after_a_multiline_field(repo: Repo) -> None:
    text = 'name,email\n"Anna\nAndersson",anna@kth.se\nBo,bo at kth.se\n' + csv_rows(500)
    repo.add(changes=lists({"file": "staff.csv"}), files={"staff.csv": text})
    found = repo.messages(rule="recipients")
    assert len(found) == 1
    assert found[0].startswith("staff.csv:4:1: error [recipients] 'bo at kth.se' is not a valid e-mail address: ")


def test_header_injection_in_a_quoted_csv_field_is_invalid_and_shown_escaped(repo: Repo) -> None:
    text = 'name,email\nEve,"a@kth.se\r\nBcc: x@evil.com"\n' + csv_rows(500)
    repo.add(changes=lists({"file": "staff.csv"}), files={"staff.csv": text})
    found = repo.messages(rule="recipients")
    assert len(found) == 1
    assert found[0].startswith(
        r"staff.csv:2:1: error [recipients] 'a@kth.se\r\nBcc: x@evil.com' is not a valid e-mail address: "
    )


# --- invalid addresses -------------------------------------------------------------------------------------------

INVALID = [
    "anna.kth.se",  # no @
    "anna@@kth.se",
    "anna@bo@kth.se",  # two @
    "anna andersson@kth.se",  # space
    "anna\t@kth.se",
    "anna@kth.se.",  # trailing dot
    "anna.@kth.se",
    ".anna@kth.se",
    "anna..b@kth.se",
    "anna@kth..se",
    "anna@kth",
    "anna@",
    "@kth.se",
    "mailto:anna@kth.se",
    "anna@kth.se,bo@kth.se",
    "anna@kth.se;",
    '"anna"@kth.se',
    "anna@[130.237.28.40]",
    "anna@localhost",
    "anna@printer.local",
    "anna@host.test",
    "anna@-kth.se",
    "anna@ab--kth.se",  # reserved IDNA form, not Punycode
    "anna@xn--zz.se",  # broken Punycode
    "anna@" + "k" * 64 + ".se",
    "anna@" + ("x" * 60 + ".") * 5 + "se",  # over 254 characters
    "а@kth.se",  # Cyrillic а
    "anna@kth.sе",  # Cyrillic е in the domain
    "anna＠kth.se",  # fullwidth @
    "an\u200bna@kth.se",  # zero-width space
    "anna@kth.se\u202e",  # right-to-left override
]


@pytest.mark.parametrize("address", INVALID)
def test_invalid_addresses_are_errors_at_their_line(repo: Repo, address: str) -> None:
    repo.add(recipients=addresses(500) + address + "\n")
    found = repo.messages(rule="recipients")
    assert len(found) == 1, found
    assert found[0].startswith("recipients.txt:501:1: error [recipients] '")
    assert " is not a valid e-mail address: " in found[0]
    assert found[0].endswith(" Correct or remove it")


def test_a_look_alike_letter_is_named(repo: Repo) -> None:
    repo.add(recipients=addresses(500) + "аnna@kth.se\n")
    assert repo.messages(rule="recipients") == [
        "recipients.txt:501:1: error [recipients] 'аnna@kth.se' is not a valid e-mail address: It contains U+0430 "
        "(CYRILLIC SMALL LETTER A), which is not a plain ASCII character; retype the address (write an "
        "international domain in its xn-- form). Correct or remove it"
    ]


def test_invisible_characters_are_shown_escaped(repo: Repo) -> None:
    repo.add(recipients=addresses(500) + "anna@kth.se\u202e\n")
    assert repo.messages(rule="recipients")[0].startswith(
        r"recipients.txt:501:1: error [recipients] 'anna@kth.se\u202e' is not a valid e-mail address: "
    )


def test_header_injection_in_a_text_list_splits_into_a_valid_line_and_an_invalid_one(repo: Repo) -> None:
    repo.add(recipients=addresses(500) + "a@kth.se\r\nBcc: x@evil.com\n")
    found = repo.messages(rule="recipients")
    assert len(found) == 1
    assert found[0].startswith("recipients.txt:502:1: error [recipients] 'Bcc: x@evil.com' is not a valid e-mail")


def test_a_huge_line_is_one_short_error(repo: Repo) -> None:
    repo.add(recipients=addresses(500) + "a" * 1_000_000 + "@kth.se\n")
    found = repo.messages(rule="recipients")
    assert len(found) == 1
    assert "..." in found[0]
    assert len(found[0]) < 400


VALID_ODD = [
    "Anna.Andersson@KTH.SE",
    "anna+travel@kth.se",
    "a_b-c@sub.kth.se",
    "x@xn--bcher-kva.example",  # an international domain in its xn-- form
    "o'neil@kth.se",
]


def test_unusual_but_valid_addresses_pass(repo: Repo) -> None:
    repo.add(recipients=addresses(495) + "".join(f"{a}\n" for a in VALID_ODD))
    assert repo.messages(rule="recipients") == [f"mailing.yaml:12:3: warning [recipients] {outside(1, 500)}"]
    assert count(repo) == 500


# --- duplicates --------------------------------------------------------------------------------------------------


def test_mixed_case_duplicates_across_lists_are_warnings_naming_the_first(repo: Repo) -> None:
    repo.add(
        changes=lists({"file": "recipients.txt"}, {"file": "staff.csv"}),
        files={"staff.csv": "email\nUSER7@Kth.Se\nnew@kth.se\n"},
    )
    assert repo.messages(rule="recipients") == [
        "staff.csv:2:1: warning [recipients] 'USER7@Kth.Se' is listed already in 'recipients.txt' line 8 as "
        "'user7@kth.se' (case does not matter in addresses); remove this duplicate line"
    ]
    assert count(repo) == 601


def test_a_duplicate_in_the_same_file_names_the_first_line(repo: Repo) -> None:
    repo.add(recipients=addresses(600) + "user599@kth.se\n")
    assert repo.messages(rule="recipients") == [
        "recipients.txt:601:1: warning [recipients] 'user599@kth.se' is listed already on line 600; "
        "remove this duplicate line"
    ]


def test_every_duplicate_is_found_and_the_report_sums_them_up(repo: Repo) -> None:
    repo.add(recipients=addresses(600) + addresses(50))
    found = repo.messages(rule="recipients")
    assert len(found) == 50  # every one counts; checks.linter.condense shortens what is shown
    assert found[0] == (
        "recipients.txt:601:1: warning [recipients] 'user0@kth.se' is listed already on line 1; "
        "remove this duplicate line"
    )


# --- where a long list came from ---------------------------------------------------------------------------------


def test_a_list_of_over_1000_addresses_without_a_source_is_a_warning(repo: Repo) -> None:
    repo.add(recipients=addresses(1001))
    assert repo.messages(rule="recipients") == [
        f"{entry(0)}: warning [recipients] the list file 'recipients.txt' has 1,001 addresses and no source: add "
        "source: {text: where it came from, date: YYYY-MM-DD} to this entry, so that the reviewer can judge "
        "whether these are the right people"
    ]
    # not when sending: the reviewer judged it
    assert repo.messages(rule="recipients", stage="send") == []


def test_a_list_with_its_source_or_of_1000_addresses_passes(repo: Repo) -> None:
    repo.add(recipients=addresses(1000))
    repo.add(
        "2027-02-10-phd",
        recipients=addresses(1800),
        changes=lists(
            {"file": "recipients.txt", "source": {"text": "Ladok export of PhD students", "date": "2027-01-05"}}
        ),
    )
    assert repo.messages(rule="recipients") == []
    assert repo.messages("2027-02-10-phd") == []


# --- mailboxes: sub-address tags, and recipients outside the internal domains -------------------------------------


def outside(number: int, total: int) -> str:
    verb = "is" if number == 1 else "are"
    return (
        f"{number:,} of the {total:,} recipients in the lists {verb} outside the internal domains (kth.se and their "
        "subdomains); mass mailings are for the university's own people: check that they belong in this mailing, and "
        "remove them otherwise"
    )


def test_tagged_addresses_count_as_one_mailbox(repo: Repo) -> None:
    # 600 lines, one mailbox: a +tag does not make another, in any case
    repo.add(recipients="".join(f"anna+{i}@kth.se\n" for i in range(599)) + "ANNA+X@KTH.SE\n")
    assert count(repo) == 1
    found = repo.messages(rule="recipients")
    assert found[1] == (
        "recipients.txt:2:1: warning [recipients] 'anna+1@kth.se' is listed already on line 1 as 'anna+0@kth.se' (a "
        "+tag after the name reaches the same mailbox, whatever the case); remove this duplicate line"
    )
    assert found[0].startswith("mailing.yaml:12:3: error [recipients] the lists reach 1 recipient (unique valid")
    assert sum("+tag after the name" in m for m in found) == 599


def test_a_tag_matches_the_plain_address_across_lists_and_in_the_fast_path(repo: Repo) -> None:
    repo.add(
        changes=lists({"file": "recipients.txt"}, {"file": "more.txt"}),
        files={"more.txt": "user7+travel@kth.se\nnew@kth.se\n"},
    )
    assert count(repo) == 601
    assert repo.messages(rule="recipients") == [
        "more.txt:1:1: warning [recipients] 'user7+travel@kth.se' is listed already in 'recipients.txt' line 8 as "
        "'user7@kth.se' (a +tag after the name reaches the same mailbox, whatever the case); remove this duplicate line"
    ]


def test_honest_tags_on_different_mailboxes_all_count(repo: Repo) -> None:
    repo.add(recipients="".join(f"user{i}+news@kth.se\n" for i in range(600)))
    assert (count(repo), repo.messages(rule="recipients")) == (600, [])


def test_a_plus_at_the_start_is_no_tag(repo: Repo) -> None:
    from checks.addresses import mailbox

    assert mailbox("+anna@kth.se") == "+anna@kth.se"
    assert mailbox("Anna+X@KTH.se") == "anna@kth.se"
    assert mailbox('"a+b"@kth.se') == '"a+b"@kth.se'


def test_recipients_outside_the_internal_domains_are_one_warning_with_the_number(repo: Repo) -> None:
    repo.add(recipients=addresses(550) + addresses(30, domain="gmail.com") + addresses(20, domain="kth.se.evil.com"))
    assert repo.messages(rule="recipients") == [f"mailing.yaml:12:3: warning [recipients] {outside(50, 600)}"]


def test_subdomains_of_the_internal_domains_are_inside(repo: Repo) -> None:
    repo.add(recipients=addresses(300) + addresses(300, domain="ug.kth.se"))
    assert repo.messages(rule="recipients") == []

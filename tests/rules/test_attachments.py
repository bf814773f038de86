"""[attachments]: a request directory holds its own files and nothing else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import BODIES, Repo, addresses

MID = "2027-02-10-travel"
# The second entry of recipients.lists as the fixture writes it: "  - file: ..." on line 14.
SECOND_LIST = "mailing.yaml:14:5"
NOT_PART = (
    "is not part of the request: mass mailings have no attachments. Remove it; to share a document, publish it on "
    "a university web page and link to that page"
)
SYMLINK = (
    "is a symbolic link; a request holds only real files: put the file itself here instead of the link, or remove it"
)


def escapes(name: str) -> str:
    return (
        f"{SECOND_LIST}: error [attachments] the list file '{name}' is not a file in this request's directory; put "
        f"the list in mailings/{MID}/ and give its name alone (e.g. file: recipients.txt)"
    )


def test_the_default_request_passes(repo: Repo) -> None:
    repo.add()
    assert repo.messages(rule="attachments") == []


def test_named_list_files_and_the_send_log_pass(repo: Repo) -> None:
    repo.add(
        changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"file": "students.csv"}]}},
        files={"students.csv": "name,email\nA,a@kth.se\n", "sendlog.jsonl": '{"event": "start"}\n'},
    )
    assert repo.messages(rule="attachments") == []


OTHER = (
    "is not part of the request, which holds only mailing.yaml, a body.<lang>.txt for each language and the "
    "recipient lists that recipients.lists names: remove it"
)
PUBLISH = "publish it on"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("programme.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"),
        ("invitation.docx", b"PK\x03\x04"),
        ("slides.pptx", b"PK\x03\x04"),
    ],
)
def test_a_document_is_an_attachment_to_publish_instead(repo: Repo, name: str, content: bytes) -> None:
    repo.add(files={name: content})
    assert repo.messages(rule="attachments") == [f"{name}:1:1: error [attachments] {name} {NOT_PART}"]


def test_an_image_is_no_part_of_a_plain_text_mailing(repo: Repo) -> None:
    repo.add(files={"logo.png": b"\x89PNG\r\n\x1a\n\x00\x00"})
    assert repo.messages(rule="attachments") == [
        "logo.png:1:1: error [attachments] logo.png is an image; mass mailings are plain text, without images or "
        "attachments: remove it (to show the picture, publish it on a university web page and link to that page)"
    ]


@pytest.mark.parametrize(
    ("name", "content"),
    [("notes.txt", "draft notes\n"), ("old-recipients.txt", addresses(3)), ("extra.csv", "email\n")],
)
def test_an_undeclared_list_is_advised_to_be_named_in_recipients_lists(repo: Repo, name: str, content: str) -> None:
    repo.add(files={name: content})
    assert repo.messages(rule="attachments") == [
        f"{name}:1:1: error [attachments] {name} is not named in recipients.lists; if it is a list of recipients, "
        f"name it there (- file: {name}), otherwise remove it"
    ]


@pytest.mark.parametrize("name", ["recipients.xlsx", "deltagare.docx", "staff-emails.pdf", "mottagare.ods"])
def test_a_list_of_people_is_never_advised_to_be_published(repo: Repo, name: str) -> None:
    repo.add(files={name: b"PK\x03\x04"})
    (message,) = repo.messages(rule="attachments")
    assert message.startswith(f"{name}:1:1: error [attachments] {name} looks like a list of people")
    assert "save the addresses as CSV UTF-8" in message and "name that file in recipients.lists" in message
    assert PUBLISH not in message


@pytest.mark.parametrize(
    ("name", "said"),
    [
        (
            "body.en.txt.txt",
            "is not read as a body: did you mean body.en.txt? Rename it to body.en.txt (the name ends in .txt "
            "twice: Windows hides the last extension; show file name extensions in Explorer's View menu to see it)",
        ),
        ("body_de.txt", "is not read as a body: did you mean body.de.txt? Rename it to body.de.txt"),
        ("Body-DE.TXT", "is not read as a body: did you mean body.de.txt? Rename it to body.de.txt"),
        ("body.de", "is not read as a body: did you mean body.de.txt? Rename it to body.de.txt"),
        (
            "body.de.docx",
            "looks like a message body saved as a docx document; a body is plain text: put its text in "
            "body.de.txt (in Word: File > Save As > Plain Text (*.txt), encoding UTF-8), then remove body.de.docx",
        ),
        (
            "body.en.txt.bak.txt",
            "looks like a second copy of body.en.txt; remove it (if its text is the one to send, put it "
            "in body.en.txt)",
        ),
        ("mailing.yml", "is not read: did you mean mailing.yaml? Rename it to mailing.yaml"),
        (
            "mailing.yaml.txt",
            "looks like a second copy of mailing.yaml, which is the one read; remove mailing.yaml.txt",
        ),
    ],
)
def test_a_misnamed_body_or_request_file_gets_its_right_name(repo: Repo, name: str, said: str) -> None:
    directory = repo.add(bodies={"sv": BODIES["sv"]} if name == "body.en.txt.txt" else None)
    if name == "mailing.yml":
        (directory / "mailing.yaml").rename(directory / name)
        assert [m for m in repo.messages(rule="attachments")] == [f"{name}:1:1: error [attachments] {name} {said}"]
        return
    (directory / name).write_text("Hallo\n", encoding="utf-8")
    assert repo.messages(rule="attachments") == [f"{name}:1:1: error [attachments] {name} {said}"]


@pytest.mark.parametrize(
    ("name", "made_by"),
    [
        (".DS_Store", "a file that macOS writes into every folder it shows"),
        ("Thumbs.db", "a file that Windows writes into a folder of pictures"),
        ("desktop.ini", "a file that Windows writes into a folder whose look was changed"),
        ("~$body.en.docx", "a lock file that Word or Excel writes while a document is open"),
        ("._body.en.txt", "a file that macOS writes beside a file copied to a shared drive"),
    ],
)
def test_an_operating_systems_own_file_is_ignored_with_a_warning(repo: Repo, name: str, made_by: str) -> None:
    repo.add(files={name: b"\x00\x00\x00\x01Bud1"})
    assert repo.messages(rule="attachments") == [
        f"{name}:1:1: warning [attachments] {name} is {made_by}; it is not part of the request and is ignored "
        "(never sent): delete it from the pull request"
    ]


@pytest.mark.parametrize("name", ["DS_Store.txt", "thumbs.db.pdf", "~body.en.txt", ".~lock.x"])
def test_only_the_exact_names_count_as_the_systems_files(repo: Repo, name: str) -> None:
    repo.add(files={name: "x\n"})
    (message,) = repo.messages(rule="attachments")
    assert " error [attachments] " in message and "is ignored" not in message


def test_any_other_file_is_an_error_that_says_what_a_request_holds(repo: Repo) -> None:
    repo.add(files={"run.sh": "echo hi\n"})
    assert repo.messages(rule="attachments") == [f"run.sh:1:1: error [attachments] run.sh {OTHER}"]


def test_a_list_entry_the_schema_refuses_leaves_list_files_unjudged(repo: Repo) -> None:
    repo.add(changes={"recipients": {"lists": [{"file": 5}]}})
    assert repo.messages(rule="attachments") == []
    repo.add("2027-02-10-other", changes={"recipients": {"lists": [{"file": 5}]}}, files={"logo.png": b"x"})
    assert [m.split(" [attachments] ")[0] for m in repo.messages("2027-02-10-other", rule="attachments")] == [
        "logo.png:1:1: error"
    ]


def test_bodies_of_languages_the_schema_refuses_are_not_called_undeclared(repo: Repo) -> None:
    repo.add(changes={"languages": "sv, en"})
    assert repo.messages(rule="attachments") == []
    assert repo.messages(rule="content") == []


@pytest.mark.parametrize("name", ["body.de.txt", "body.english.txt", "body.EN.txt"])
def test_body_for_an_undeclared_language_is_an_error(repo: Repo, name: str) -> None:
    repo.add(files={name: "Hallo\n"})
    lang = name.split(".")[1]
    assert repo.messages(rule="attachments") == [
        f"{name}:1:1: error [attachments] {name} is a body for language '{lang}', which languages does not declare; "
        f"add '{lang}' to languages (with subject.{lang}), or remove the file"
    ]


def test_body_named_as_a_recipient_list_is_still_judged_as_a_body(repo: Repo) -> None:
    repo.add(
        changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"file": "body.de.txt"}]}},
        files={"body.de.txt": addresses(3)},
    )
    assert [m.split(" [attachments] ")[0] for m in repo.messages(rule="attachments")] == ["body.de.txt:1:1: error"]


def test_subdirectory_is_an_error(repo: Repo) -> None:
    directory = repo.add()
    (directory / "images").mkdir()
    (directory / "images" / "logo.png").write_bytes(b"\x89PNG")
    assert repo.messages(rule="attachments") == [
        "images:1:1: error [attachments] images/ is a directory; a request holds no subdirectories and mass mailings "
        "have no attachments: remove it"
    ]


@pytest.mark.parametrize("target", ["/etc/passwd", "../other/file.txt", "recipients.txt", "missing.txt"])
def test_symbolic_link_is_an_error(repo: Repo, target: str) -> None:
    directory = repo.add()
    os.symlink(target, directory / "extra.txt")
    assert repo.messages(rule="attachments") == [f"extra.txt:1:1: error [attachments] the file extra.txt {SYMLINK}"]


def test_symlinked_recipient_list_is_reported_once(repo: Repo, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text(addresses(600), encoding="utf-8")
    directory = repo.add()
    (directory / "recipients.txt").unlink()
    os.symlink(outside, directory / "recipients.txt")
    assert repo.messages(rule="attachments") == [
        f"recipients.txt:1:1: error [attachments] the recipient list recipients.txt {SYMLINK}"
    ]
    assert repo.messages(rule="recipients") == []  # the recipients rule leaves symbolic links to this rule


def test_symlinked_body_is_an_error(repo: Repo) -> None:
    directory = repo.add(bodies={"sv": BODIES["sv"]}, files={"draft": BODIES["en"]})
    os.symlink("draft", directory / "body.en.txt")
    assert repo.messages(rule="attachments") == [
        f"body.en.txt:1:1: error [attachments] the file body.en.txt {SYMLINK}",
        f"draft:1:1: error [attachments] draft {OTHER}",
    ]


def test_symlinked_send_log_is_an_error(repo: Repo) -> None:
    directory = repo.add()
    os.symlink("/dev/null", directory / "sendlog.jsonl")
    assert repo.messages(rule="attachments") == [
        f"sendlog.jsonl:1:1: error [attachments] the file sendlog.jsonl {SYMLINK}"
    ]


def test_fifo_is_an_error_and_nothing_blocks_on_it(repo: Repo) -> None:
    directory = repo.add()
    os.mkfifo(directory / "pipe")
    os.mkfifo(directory / "body.de.txt")
    assert repo.messages(rule="attachments") == [
        "body.de.txt:1:1: error [attachments] body.de.txt is not a regular file (a named pipe, socket or device); "
        "remove it",
        "pipe:1:1: error [attachments] pipe is not a regular file (a named pipe, socket or device); remove it",
    ]


def test_fifo_named_as_a_list_is_left_to_the_recipients_rule(repo: Repo) -> None:
    directory = repo.add(changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"file": "live.txt"}]}})
    os.mkfifo(directory / "live.txt")
    assert repo.messages(rule="attachments") == []
    assert [m.split(": error")[0] for m in repo.messages(rule="recipients")] == ["mailing.yaml:14:5"]


def test_request_directory_that_is_a_symbolic_link_is_an_error(repo: Repo, tmp_path: Path) -> None:
    real = repo.add("elsewhere")
    os.symlink(real, repo.root / "mailings" / MID)
    assert repo.messages(rule="attachments") == [
        f"mailings/{MID}:1:1: error [attachments] the request directory mailings/{MID} is a symbolic link; make it "
        "a real directory that holds the request's files"
    ]


@pytest.mark.parametrize(
    "name", ["../other/recipients.txt", "/etc/passwd", "sub/recipients.txt", "..", ".", "~/recipients.txt", "a\\b.txt"]
)
def test_list_path_that_leaves_the_directory_is_an_error_at_its_entry(repo: Repo, name: str) -> None:
    repo.add(changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"file": name}]}})
    assert repo.messages(rule="attachments") == [escapes(name)]
    assert repo.messages(rule="recipients") == []  # reported once, here


def test_list_in_a_subdirectory_is_reported_at_the_entry_and_the_directory(repo: Repo) -> None:
    directory = repo.add(
        changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"file": "sub/recipients.txt"}]}}
    )
    (directory / "sub").mkdir()
    (directory / "sub" / "recipients.txt").write_text(addresses(600), encoding="utf-8")
    assert repo.messages(rule="attachments") == [
        escapes("sub/recipients.txt"),
        "sub:1:1: error [attachments] sub/ is a directory; a request holds no subdirectories and mass mailings "
        "have no attachments: remove it",
    ]


def test_with_broken_yaml_only_what_is_never_allowed_is_reported(repo: Repo) -> None:
    directory = repo.add(yaml_text="languages: [sv\n", files={"programme.pdf": b"%PDF"})
    (directory / "images").mkdir()
    assert [m.split(" [attachments] ")[0] for m in repo.messages(rule="attachments")] == ["images:1:1: error"]

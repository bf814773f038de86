"""[content]: a body and a subject per language, header text that cannot inject headers, concise mailings."""

from __future__ import annotations

import os

import pytest

from tests.conftest import BODIES, Repo

# In the default request as the fixture writes it: contact.name on line 6, recipients.group on line 10,
# languages from line 15, subject on line 17 with sv on 18 and en on 19.
NAME = "mailing.yaml:6:3"
GROUP = "mailing.yaml:10:3"
SUBJECT = "mailing.yaml:17:1"
SUBJECT_SV = "mailing.yaml:18:3"
SUBJECT_EN = "mailing.yaml:19:3"

LINE_BREAK = "must be a single line: it contains a line break, which could add mail headers; write it on one line"


def encoded(field: str, text: str) -> str:
    return (
        f"{field} contains {text!r}, which mail programs decode as an RFC 2047 encoded-word (=?...?=) and could "
        "disguise the text; write the text itself, the sender encodes it"
    )


def test_the_default_request_passes(repo: Repo) -> None:
    repo.add()
    assert repo.messages(rule="content") == []


# --- bodies ------------------------------------------------------------------------------------------------------


def test_missing_body_is_an_error_at_its_language(repo: Repo) -> None:
    repo.add(bodies={"sv": BODIES["sv"]})
    assert repo.messages(rule="content") == [
        "mailing.yaml:16:3: error [content] language 'en' is declared but body.en.txt is missing; write the message "
        "in mailings/2027-02-10-travel/body.en.txt, or remove 'en' from languages"
    ]


@pytest.mark.parametrize("text", ["", "\n\n", "   \n\t\n", "\ufeff\n"])
def test_empty_body_is_an_error(repo: Repo, text: str) -> None:
    repo.add(bodies={"sv": BODIES["sv"], "en": text})
    assert repo.messages(rule="content") == [
        "body.en.txt:1:1: error [content] body.en.txt is empty; write the message in language 'en' in it"
    ]


def test_one_word_is_not_empty(repo: Repo) -> None:
    repo.add(bodies={"sv": BODIES["sv"], "en": "Hello\n"})
    assert repo.messages(rule="content") == []


def test_body_that_cannot_be_read_is_an_error(repo: Repo) -> None:
    repo.add(bodies={"sv": BODIES["sv"], "en": "x" * (1024 * 1024 + 1)})
    assert repo.messages(rule="content") == [
        "body.en.txt:1:1: error [content] body.en.txt cannot be read; a body must be a readable text file of at "
        "most 1024 KiB: shorten it or fix its permissions"
    ]


def test_symlinked_body_is_left_to_the_attachments_rule(repo: Repo) -> None:
    directory = repo.add(bodies={"sv": BODIES["sv"]}, files={"real.txt": BODIES["en"]})
    os.symlink("real.txt", directory / "body.en.txt")
    assert repo.messages(rule="content") == []  # one report is enough: see test_attachments


def test_body_of_400_words_passes_and_401_warns(repo: Repo) -> None:
    repo.add("a-400", bodies={"sv": "ord " * 400, "en": "word\n" * 400})
    repo.add("a-401", bodies={"sv": "ord " * 400, "en": "word\n" * 401})
    assert repo.messages("a-400", rule="content") == []
    assert repo.messages("a-401", rule="content") == [
        "body.en.txt:1:1: warning [content] body.en.txt has 401 words; mass mailings must be concise: keep it to "
        "400 words or fewer, and link to a web page for the details"
    ]


# --- subjects ----------------------------------------------------------------------------------------------------


def test_missing_subject_is_an_error(repo: Repo) -> None:
    repo.add(changes={"subject": {"sv": "Nytt system", "en": None}})
    assert repo.messages(rule="content") == [
        f"{SUBJECT}: error [content] language 'en' is declared but has no subject; add subject.en with the subject "
        "line in that language"
    ]


def test_blank_subject_is_an_error(repo: Repo) -> None:
    repo.add(changes={"subject": {"en": "   "}})
    assert repo.messages(rule="content") == [
        f"{SUBJECT_EN}: error [content] subject.en is empty; write the subject line in that language"
    ]


def test_subject_for_an_undeclared_language_is_an_error(repo: Repo) -> None:
    repo.add(changes={"subject": {"de": "Neues Reisesystem"}})
    assert repo.messages(rule="content") == [
        "mailing.yaml:20:3: error [content] subject.de is for a language that languages does not declare; add 'de' "
        "to languages (with body.de.txt), or remove subject.de"
    ]


def test_subject_of_78_characters_passes_and_79_warns(repo: Repo) -> None:
    repo.add("s-78", changes={"subject": {"en": "x" * 78}})
    repo.add("s-79", changes={"subject": {"en": "å" * 79}})
    assert repo.messages("s-78", rule="content") == []
    assert repo.messages("s-79", rule="content") == [
        f"{SUBJECT_EN}: warning [content] subject.en is 79 characters long; keep it to 78 or fewer so that mail "
        "programs show it whole"
    ]


def test_subject_length_limit_comes_from_the_policy(repo: Repo) -> None:
    policy = (repo.root / "policy.yaml").read_text(encoding="utf-8")
    (repo.root / "policy.yaml").write_text(policy.replace("max_subject_chars: 78", "max_subject_chars: 20"))
    repo.add(changes={"subject": {"sv": "Nytt system", "en": "x" * 21}})
    assert [m.split(" [content] ")[1] for m in repo.messages(rule="content")] == [
        "subject.en is 21 characters long; keep it to 20 or fewer so that mail programs show it whole"
    ]


# --- header injection --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        "Travel\r\nBcc: everyone@kth.se",
        "Travel\nBcc: everyone@kth.se",
        "Travel\rBcc: everyone@kth.se",
        "Travel\u2028Bcc: everyone@kth.se",
        "Travel\n",
    ],
)
def test_line_break_in_a_subject_is_an_error(repo: Repo, subject: str) -> None:
    repo.add(changes={"subject": {"en": subject}})
    assert repo.messages(rule="content") == [f"{SUBJECT_EN}: error [content] subject.en {LINE_BREAK}"]


@pytest.mark.parametrize("escape", ["\\r\\n", "\\n", "\\N", "\\L", "\\P", "\\x0d"])
def test_line_break_written_as_a_yaml_escape_is_an_error(repo: Repo, escape: str) -> None:
    repo.add()
    mailing = repo.root / "mailings" / "2027-02-10-travel" / "mailing.yaml"
    original = mailing.read_text(encoding="utf-8")
    mailing.write_text(original.replace("en: New travel booking system", f'en: "Travel{escape}Bcc: all@kth.se"'))
    assert repo.messages(rule="content") == [f"{SUBJECT_EN}: error [content] subject.en {LINE_BREAK}"]


@pytest.mark.parametrize(("path", "where"), [(("contact", "name"), NAME), (("recipients", "group"), GROUP)])
def test_line_break_in_other_header_text_is_an_error(repo: Repo, path: tuple[str, str], where: str) -> None:
    repo.add(changes={path[0]: {path[1]: "Anna\r\nBcc: everyone@kth.se"}})
    assert repo.messages(rule="content") == [f"{where}: error [content] {'.'.join(path)} {LINE_BREAK}"]


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\t", "\x7f", "\x9b"])
def test_control_character_in_header_text_is_an_error(repo: Repo, char: str) -> None:
    repo.add(changes={"subject": {"en": f"New{char}system"}, "recipients": {"group": f"All{char}staff"}})
    code = f"U+{ord(char):04X}"
    assert repo.messages(rule="content") == [
        f"{GROUP}: error [content] recipients.group contains the invisible control character {code}; remove it "
        "(copy the text from a plain editor)",
        f"{SUBJECT_EN}: error [content] subject.en contains the invisible control character {code}; remove it "
        "(copy the text from a plain editor)",
    ]


@pytest.mark.parametrize(
    "word", ["=?utf-8?q?Urgent=3A_reset_password?=", "=?UTF-8?B?VXJnZW50?=", "=?iso-8859-1?Q?=E5?=", "=??="]
)
def test_encoded_word_in_a_subject_is_an_error(repo: Repo, word: str) -> None:
    repo.add(changes={"subject": {"en": f"News {word} today"}})
    assert repo.messages(rule="content") == [f"{SUBJECT_EN}: error [content] {encoded('subject.en', word)}"]


def test_encoded_word_in_names_is_an_error(repo: Repo) -> None:
    repo.add(changes={"contact": {"name": "=?utf-8?q?IT_Support?="}, "recipients": {"group": "Staff =?x?q?y?="}})
    assert repo.messages(rule="content") == [
        f"{NAME}: error [content] {encoded('contact.name', '=?utf-8?q?IT_Support?=')}",
        f"{GROUP}: error [content] {encoded('recipients.group', '=?x?q?y?=')}",
    ]


@pytest.mark.parametrize(
    "subject", ["What is 2+2=? Ask us", "Frågor? Svar = här", "Q&A: = ? and ?=", "Ünïcödé and emoji ✈ are fine"]
)
def test_ordinary_punctuation_and_unicode_pass(repo: Repo, subject: str) -> None:
    repo.add(changes={"subject": {"en": subject}})
    assert repo.messages(rule="content") == []


def test_several_problems_in_one_field_are_all_reported(repo: Repo) -> None:
    repo.add(changes={"subject": {"sv": "A\r\nB\x00 =?a?b?c?="}})
    found = repo.messages(rule="content")
    assert [m.split(" subject.sv ")[1].split(";")[0] for m in found] == [
        "contains '=?a?b?c?=', which mail programs decode as an RFC 2047 encoded-word (=?...?=) and could disguise "
        "the text",
        "contains the invisible control character U+0000",
        "must be a single line: it contains a line break, which could add mail headers",
    ]
    assert all(m.startswith(f"{SUBJECT_SV}: error [content]") for m in found)


def test_broken_yaml_gives_no_content_problems(repo: Repo) -> None:
    repo.add(yaml_text="languages: [sv, en\n")
    assert repo.messages(rule="content") == []

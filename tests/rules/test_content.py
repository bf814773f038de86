"""[content]: a body and a subject per language, header text that cannot inject headers, concise mailings."""

from __future__ import annotations

import os
import shutil
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from checks.cli import main
from checks.loader import load_mailing
from checks.rules import content
from checks.yamlsafe import loads
from sender.message import preview_text
from tests.conftest import BODIES, Repo

PROJECT = Path(__file__).resolve().parents[2]

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


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x9b"])
def test_control_character_in_header_text_is_refused_where_it_stands(repo: Repo, char: str) -> None:
    # only a quoted string's escape can write one (the YAML reader refuses it as it is): [yaml] refuses it in any field
    repo.add(changes={"subject": {"en": f"New{char}system"}, "recipients": {"group": f"All{char}staff"}})
    assert [m.split(" U+")[0] for m in repo.messages()] == [
        f"{GROUP.rsplit(':', 1)[0]}:10: error [yaml] an escape in this quoted text gives the control character"
    ]


@pytest.mark.parametrize("char", ["\t"])
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
    repo.add(changes={"subject": {"sv": "A\r\nB\t =?a?b?c?="}})
    found = repo.messages(rule="content")
    assert [m.split(" subject.sv ")[1].split(";")[0] for m in found] == [
        "contains '=?a?b?c?=', which mail programs decode as an RFC 2047 encoded-word (=?...?=) and could disguise "
        "the text",
        "contains the invisible control character U+0009",
        "must be a single line: it contains a line break, which could add mail headers",
    ]
    assert all(m.startswith(f"{SUBJECT_SV}: error [content]") for m in found)


def test_broken_yaml_gives_no_content_problems(repo: Repo) -> None:
    repo.add(yaml_text="languages: [sv, en\n")
    assert repo.messages(rule="content") == []


# --- invisible characters in header text ------------------------------------------------------------------------

REORDERS = (
    "it changes the order in which mail programs show the text, so that recipients may read something other than "
    "what the reviewers read: remove it (type the text again, or paste it as plain text)"
)


@pytest.mark.parametrize("point", [0x061C, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2069])
def test_bidirectional_control_in_a_subject_is_an_error(repo: Repo, point: int) -> None:
    repo.add(changes={"subject": {"en": f"Invoice {chr(point)}fdp.exe"}})
    name = unicodedata.name(chr(point)).lower()
    assert repo.messages(rule="content") == [
        f"{SUBJECT_EN}: error [content] subject.en contains the invisible character U+{point:04X} ({name}) at "
        f"character 9; {REORDERS}"
    ]


def test_tag_characters_in_header_text_are_an_error(repo: Repo) -> None:
    hidden = "".join(chr(0xE0000 + ord(ch)) for ch in "urgent")
    repo.add(changes={"recipients": {"group": f"All staff{hidden}"}})
    assert repo.messages(rule="content") == [
        f"{GROUP}: error [content] recipients.group contains 6 invisible tag characters (U+E0075 to U+E0074) at "
        "character 10; they hide the text 'urgent' from readers, while programs that read the mail see it: remove "
        "them (type the text again, or paste it as plain text)"
    ]


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("Anna\u200bAndersson", "the invisible character U+200B (zero width space) at character 5"),
        ("Anna\ufeffAndersson", "the invisible character U+FEFF (zero width no-break space) at character 5"),
        ("Anna\u00adAndersson", "the invisible soft hyphen U+00AD at character 5"),
    ],
)
def test_zero_width_characters_and_soft_hyphens_in_header_text_are_warnings(repo: Repo, text: str, what: str) -> None:
    repo.add(changes={"contact": {"name": text}})
    (message,) = repo.messages(rule="content")
    assert message.startswith(f"{NAME}: warning [content] contact.name contains {what}; ")


def test_a_subject_with_a_direction_override_still_builds_the_message_the_plan_shows(repo: Repo) -> None:
    """The rule's error stops the send; the sender still builds the message, so that the reviewer sees it."""
    repo.add(changes={"subject": {"en": "Invoice \u202efdp.exe"}})
    mailing = load_mailing(repo.root, repo.root / "mailings" / "2027-02-10-travel", repo.policy)
    assert "Subject: Nytt system för resebokning / Invoice \u202efdp.exe\n" in preview_text(
        mailing, repo.policy, datetime(2027, 2, 10, 9, tzinfo=repo.policy.timezone)
    )


# --- the template's text ----------------------------------------------------------------------------------------


def template_request(repo: Repo) -> str:
    """A request made by `mailings new` from the project's template, untouched; its id."""
    shutil.copytree(PROJECT / "templates", repo.root / "templates")
    assert main(["new", "2027-01-25-news", "--root", str(repo.root), "--submitted", "2027-01-11"]) == 0
    return "2027-01-25-news"


def test_every_placeholder_of_the_template_is_an_error(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    found = repo.messages(template_request(repo), rule="content")
    assert [m.split(" still holds ")[0] for m in found] == [
        "body.en.txt:1:1: error [content] body.en.txt",
        "body.en.txt:3:1: error [content] body.en.txt",
        "body.en.txt:7:1: error [content] body.en.txt",
        "body.sv.txt:1:1: error [content] body.sv.txt",
        "body.sv.txt:3:1: error [content] body.sv.txt",
        "body.sv.txt:7:1: error [content] body.sv.txt",
        "mailing.yaml:15:1: error [content] purpose",
        "mailing.yaml:29:3: error [content] contact.name",
        "mailing.yaml:30:3: error [content] contact.email",
        "mailing.yaml:31:3: error [content] contact.phone",
        "mailing.yaml:35:3: error [content] recipients.group",
        "mailing.yaml:37:3: error [content] recipients.why",
        "mailing.yaml:50:3: error [content] subject.sv",
        "mailing.yaml:51:3: error [content] subject.en",
    ]
    assert found[6] == (
        "mailing.yaml:15:1: error [content] purpose still holds the template's text ('Replace this with one or two "
        "sentences.'); write in one or two sentences what the mailing is for"
    )
    assert found[2] == (
        "body.en.txt:7:1: error [content] body.en.txt still holds the template's text ('Your name, your unit'); sign "
        "with your name and unit"
    )


def test_the_placeholders_are_the_templates() -> None:
    """content.TEMPLATE_FIELDS and TEMPLATE_BODY_TEXT name every example answer of templates/request/, and
    nothing else: a change to the template is noticed here."""
    template = PROJECT / "templates" / "request"
    data = loads((template / "mailing.yaml").read_text(encoding="utf-8")).data
    # The answers that are real defaults, not examples: the computed send_at, a unit, the list, the languages.
    defaults = {
        ("send_at",),
        ("sender", "unit"),
        ("recipients", "lists", 0, "file"),
        ("languages", 0),
        ("languages", 1),
    }

    def leaves(value: Any, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], str]:
        if isinstance(value, dict):
            return {k: v for key, item in value.items() for k, v in leaves(item, (*path, key)).items()}
        if isinstance(value, list):
            return {k: v for index, item in enumerate(value) for k, v in leaves(item, (*path, index)).items()}
        return {path: value}

    examples = {path: value for path, value in leaves(data).items() if path not in defaults}
    assert examples == {path: text for path, (text, _) in content.TEMPLATE_FIELDS.items()}
    bodies = " ".join(" ".join(path.read_text(encoding="utf-8").split()) for path in template.glob("body.*.txt"))
    for text, _ in content.TEMPLATE_BODY_TEXT:
        assert " ".join(text.split()) in bodies, text
    signed_off = {"Kind regards", "Med vänliga hälsningar"}  # real text, kept when the message is written
    covered = " ".join(text for text, _ in content.TEMPLATE_BODY_TEXT)
    for path in template.glob("body.*.txt"):
        for line in path.read_text(encoding="utf-8").splitlines():
            assert not line.strip() or line in signed_off or line in covered, line


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("purpose", "Announce the new system. Replace this with one or two sentences."),
        ("purpose", "replace   this with ONE or two\nsentences."),
        ("contact", {"name": "Your Name"}),
        ("subject", {"en": "Subject line in English: new system"}),
    ],
)
def test_a_placeholder_kept_beside_real_text_is_an_error(repo: Repo, field: str, value: Any) -> None:
    repo.add(changes={field: value})
    (message,) = repo.messages(rule="content")
    assert " still holds the template's text " in message


def test_the_template_text_in_a_rewrapped_body_is_found_where_it_starts(repo: Repo) -> None:
    body = "Hello!\n\nKeep it short.   Links to pages\noutside KTH go through a stopover page on kth.se.\n"
    repo.add(bodies={"sv": BODIES["sv"], "en": body})
    assert repo.messages(rule="content") == [
        "body.en.txt:3:1: error [content] body.en.txt still holds the template's text ('Keep it short. Links to "
        "pages outside...'); replace it with the message"
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {"purpose": "Replace the old travel system with a new one, in two sentences at most."},
        {"contact": {"name": "Your Namesake", "email": "anna.name@kth.se", "phone": "+46 8 790 60 00"}},
        {"subject": {"en": "Subject lines in English"}, "recipients": {"group": "Describe the group: all staff"}},
    ],
)
def test_real_answers_that_resemble_the_template_pass(repo: Repo, changes: dict[str, Any]) -> None:
    repo.add(changes=changes)
    assert repo.messages(rule="content") == []


# --- what a mail program leaves behind ----------------------------------------------------------------------------


def residue(repo: Repo, line: str) -> list[str]:
    repo.add(bodies={"sv": BODIES["sv"], "en": f"Hello!\n{line}\n"})
    return repo.messages(rule="content")


def test_image_mark_is_a_warning_where_it_stands(repo: Repo) -> None:
    assert residue(repo, "Our logo [cid:image001.png@01D9A1B2.C3D4E5F0] here") == [
        "body.en.txt:2:10: warning [content] body.en.txt has '[cid:image001.png@01D9A1B2.C3D4E5F0]', the mark of an "
        "image left by the mail program the text was copied from; a mass mailing has no images: remove it"
    ]


@pytest.mark.parametrize(
    ("line", "field"),
    [("Dear {{first_name}},", "{{first_name}}"), ("Hi {{ recipient.name }}!", "{{ recipient.name }}"),
     ("Dear «FirstName»,", "«FirstName»")],
)  # fmt: skip
def test_merge_field_is_a_warning(repo: Repo, line: str, field: str) -> None:
    assert residue(repo, line) == [
        f"body.en.txt:2:{line.index(field) + 1}: warning [content] body.en.txt has the merge field {field!r}, but the "
        "sender fills in nothing: every recipient gets the same text, brackets and all; write the text itself"
    ]


@pytest.mark.parametrize(
    ("line", "mention"),
    [
        ("Please see the attached file for details.", "see the attached"),
        ("See attachment.", "See attachment"),
        ("Please find attached the programme.", "find attached"),
        ("The agenda is attached.", "is attached"),
        ("Attached is the agenda.", "Attached is"),
        ("Read more in the attachment.", "in the attachment"),
        ("Se bifogad fil.", "Se bifogad"),
        ("Programmet är bifogat.", "bifogat"),
        ("Vi bifogar programmet.", "bifogar"),
        ("Läs den bifogade\nfilen.", "bifogade filen"),
        ("Mer information i bilagan.", "i bilagan"),
    ],
)
def test_mention_of_an_attachment_is_a_warning(repo: Repo, line: str, mention: str) -> None:
    (message,) = residue(repo, line)
    assert f"warning [content] body.en.txt mentions an attachment ('{mention}'), but a mass mailing has no " in message
    assert message.endswith(
        "attachments; put the document on a page within the university and link to it, or remove the mention"
    )


@pytest.mark.parametrize(
    "line",
    [
        "Researchers attached to the department are welcome; is attached to a school.",
        "Bifoga intyget i ansökan. Intyg ska bifogas.",
        "No attachments, please. Use braces { like this } or {{ alone.",
        "The attachment process for new staff has changed.",
        "Hej «Förnamn Efternamn», as Swedish quotes a name.",
    ],
)
def test_ordinary_text_is_no_residue(repo: Repo, line: str) -> None:
    assert residue(repo, line) == []


def test_residue_in_a_subject_is_a_warning_at_the_subject(repo: Repo) -> None:
    repo.add(changes={"subject": {"en": "Hello {{first_name}}, see attached"}})
    assert [m.split(" subject.en ")[1].split(",")[0] for m in repo.messages(rule="content")] == [
        "has the merge field '{{first_name}}'",
        "mentions an attachment ('see attached')",
    ]
    assert all(m.startswith(f"{SUBJECT_EN}: warning [content]") for m in repo.messages(rule="content"))

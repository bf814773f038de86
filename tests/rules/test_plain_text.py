"""[plain-text]: bodies without encodings tricks, control characters, colours, HTML or Markdown."""

from __future__ import annotations

import _pyio
import io
import os
import random
import shutil
import subprocess
import sys
import unicodedata
from datetime import datetime
from pathlib import Path

import pytest

from checks.cli import main
from checks.loader import load_mailing
from checks.model import Mailing
from checks.rules import plain_text
from sender.message import build_template, make_message_id, parse, render
from tests.conftest import BODIES, Repo, git

PROJECT = Path(__file__).resolve().parents[2]

EMPHASIS = (
    "a mass mailing is plain text and recipients see the markers as written: remove them (write emphasis in "
    "words, or in CAPITALS sparingly)"
)
HTML = "a mass mailing is plain text and recipients would see the markup as written: remove it and write the text alone"
LINK = (
    "a Markdown link [text](address); recipients see the brackets: write the text, then the address itself "
    "(Read more: https://...)"
)
IMAGE = "a Markdown image ![...](...); mass mailings have no images: remove it, or link to a web page that shows it"
CODE = "a Markdown code span (`...`); recipients see the backticks: remove them"
HEADING = (
    "a Markdown heading ('#'); recipients see the hash marks: write the heading as a line of its own "
    "(underline it with ==== if you like)"
)
TAB = "a tab character; mail programs show tabs at different widths: use spaces"


def problems(repo: Repo, body: str | bytes) -> list[str]:
    """plain-text messages for an English body (the Swedish one is the valid default)."""
    repo.add(bodies={"sv": BODIES["sv"], "en": body})
    return repo.messages(rule="plain-text")


def load(repo: Repo, mailing_id: str) -> Mailing:
    return load_mailing(repo.root, repo.root / "mailings" / mailing_id, repo.policy)


def error(position: str, message: str) -> str:
    return f"body.en.txt:{position}: error [plain-text] {message}"


# --- plain-text habits pass ----------------------------------------------------------------------------------------

PLAIN = """\
Hello!

New travel booking system
=========================

From 1 March you book travel in the new system. Please note:

- book at https://www.kth.se/travel or www.kth.se/travel
* questions go to first_name.last_name@kth.se or user_name@kth.se
+ the form is at <https://www.kth.se/x> and mail <it-support@kth.se>
1. log in
2) choose a trip

----
====
****
* * *

    Indented text, e.g. an address:
    Brinellvägen 8, 114 28 Stockholm

> Quoted from the earlier mailing.

Prices marked * include VAT; 5 * 3 = 15; a_b_c and snake_case_name.
See [1] and the footnote below. Reply with <your name> and <department>.
AT&T, R&D, Q&A and 100% are fine, so are 2 < 3 > 1 and C# and #hashtag.
Footnote *: conditions apply.

[1]: https://www.kth.se/en/travel/rules
Kind regards, IT -- the end
"""


def test_plain_text_habits_pass(repo: Repo) -> None:
    assert problems(repo, PLAIN) == []


def test_the_default_bodies_pass(repo: Repo) -> None:
    repo.add()
    assert repo.messages(rule="plain-text") == []


# --- encoding, byte-order mark, line endings -----------------------------------------------------------------------


def test_byte_order_mark_is_an_error(repo: Repo) -> None:
    assert problems(repo, b"\xef\xbb\xbfHello\n") == [
        error("1:1", "the file starts with a byte-order mark (BOM); save it as UTF-8 without BOM (plain UTF-8)")
    ]


def test_invalid_utf8_is_an_error_where_it_starts(repo: Repo) -> None:
    assert problems(repo, "Hej!\nMed vänlig hälsning\n".encode("latin-1")) == [
        error("2:6", "the text is not valid UTF-8 from here on (byte 0xE4); save the file with the UTF-8 encoding")
    ]


@pytest.mark.parametrize(
    "body",
    [b"Hello\r\nworld\r\nagain\r\n", b"Hello\r\nmixed\nendings\r\n", b"No final line ending\r\nhere"],
)
def test_windows_line_endings_are_accepted(repo: Repo, body: bytes) -> None:
    assert problems(repo, body) == []


def test_windows_line_endings_count_lines_as_an_editor_shows(repo: Repo) -> None:
    assert problems(repo, b"Hello\r\n\r\n**bold** and\ttab\r\n") == [
        error("3:1", f"Markdown bold ('**'); {EMPHASIS}"),
        f"body.en.txt:3:13: warning [plain-text] {TAB}",
    ]


def test_cr_line_endings_are_one_error_and_lines_count_as_an_editor_shows(repo: Repo) -> None:
    assert problems(repo, b"Hello\r\nworld\r**bold**\r") == [
        error(
            "2:6",
            "the file has carriage-return (CR) line endings, as old Macs wrote them; save it with LF (Unix) or CRLF "
            "(Windows) line endings",
        ),
        error("3:1", f"Markdown bold ('**'); {EMPHASIS}"),
    ]


def test_a_windows_body_is_sent_as_the_same_body_with_lf(repo: Repo) -> None:
    """The sender normalises line endings as the checks read them: a CRLF body sends what an LF body does."""
    unix = "Hello!\n\nRead more at https://www.kth.se/en/travel\n"
    repo.add("unix", bodies={"sv": BODIES["sv"], "en": unix})
    repo.add("windows", bodies={"sv": BODIES["sv"], "en": unix.replace("\n", "\r\n").encode()})
    unix_message = build_template(load(repo, "unix"), repo.policy)
    windows_message = build_template(load(repo, "windows"), repo.policy)
    assert windows_message.text == unix_message.text
    assert windows_message.tail.split(b"\r\n\r\n", 1)[1] == unix_message.tail.split(b"\r\n\r\n", 1)[1]


def test_mailings_new_writes_lf_on_every_system(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """`mailings new` as Windows runs it: text files written with os.linesep, a template checked out with CRLF."""
    template = repo.root / "templates" / "request"
    shutil.copytree(PROJECT / "templates" / "request", template)
    for path in template.iterdir():
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    monkeypatch.setattr(os, "linesep", "\r\n")
    monkeypatch.setattr(io, "open", _pyio.open)  # the pure-Python io reads os.linesep as Windows has it
    assert main(["new", "2027-02-10-news", "--root", str(repo.root), "--submitted", "2027-01-11"]) == 0
    monkeypatch.undo()
    created = sorted((repo.root / "mailings" / "2027-02-10-news").iterdir())
    assert [path.name for path in created] == ["body.en.txt", "body.sv.txt", "mailing.yaml", "recipients.txt"]
    for path in created:
        data = path.read_bytes()
        assert b"\r" not in data and data.count(b"\n") > 1, path.name


# --- .gitattributes ------------------------------------------------------------------------------------------------


def test_gitattributes_keeps_requests_in_lf_and_binaries_and_send_logs_as_they_are(tmp_path: Path) -> None:
    """Real git with the project's .gitattributes and a Windows user's core.autocrlf: a CRLF body is stored and
    checked out with LF; a workbook renamed to .csv is stored byte for byte; a send log written with the sender's
    plumbing (hash-object --no-filters) reads back byte for byte, and `git add` of it changes nothing either."""
    shutil.copy(PROJECT / ".gitattributes", tmp_path / ".gitattributes")
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "core.autocrlf", "true")
    request = tmp_path / "mailings" / "2027-02-10-travel"
    request.mkdir(parents=True)
    body = b"Hello\r\nworld\r\n"
    workbook = b"PK\x03\x04\x00\x00\r\nsheet\x00\r\n"
    (request / "body.en.txt").write_bytes(body)
    (request / "list.csv").write_bytes(workbook)
    (tmp_path / "examples.txt").write_bytes(b"a\r\nb\r\n")
    git(tmp_path, "add", "--all")
    log = b'{"event":"start","run":"r1"}\n{"event":"end","note":"a\\r\\n"}\r\n'
    blob = (
        subprocess.run(
            ["git", "hash-object", "-w", "--no-filters", "--stdin"],
            cwd=tmp_path,
            input=log,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    git(tmp_path, "update-index", "--add", "--cacheinfo", f"100644,{blob},mailings/2027-02-10-travel/sendlog.jsonl")
    git(tmp_path, "commit", "-q", "-m", "request")

    def stored(path: str) -> bytes:
        return subprocess.run(["git", "show", f"HEAD:{path}"], cwd=tmp_path, capture_output=True, check=True).stdout

    assert stored("mailings/2027-02-10-travel/body.en.txt") == b"Hello\nworld\n"
    assert stored("examples.txt") == b"a\nb\n"
    assert stored("mailings/2027-02-10-travel/list.csv") == workbook
    assert stored("mailings/2027-02-10-travel/sendlog.jsonl") == log
    for path in request.iterdir():
        path.unlink()
    git(tmp_path, "checkout", "--", ".")
    assert (request / "body.en.txt").read_bytes() == b"Hello\nworld\n"  # LF even with core.autocrlf
    assert (request / "list.csv").read_bytes() == workbook
    assert (request / "sendlog.jsonl").read_bytes() == log
    git(tmp_path, "add", "--all")
    assert git(tmp_path, "status", "--porcelain") == ""


# --- control characters and colours --------------------------------------------------------------------------------


def test_tab_is_a_warning_once_per_line(repo: Repo) -> None:
    assert problems(repo, "Name:\tAnna\tAndersson\nRoom:\tA1\nNo tab\n") == [
        f"body.en.txt:1:6: warning [plain-text] {TAB}",
        f"body.en.txt:2:6: warning [plain-text] {TAB}",
    ]


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x08", "\x0b", "\x0c", "\x7f", "\x85", "\x9b", "\u2028", "\u2029"])
def test_control_character_is_an_error(repo: Repo, char: str) -> None:
    assert problems(repo, f"Hello\nbad{char}here\n") == [
        error(
            "2:4",
            f"the invisible control character U+{ord(char):04X}; remove it, a body may hold only text, newlines "
            "and spaces",
        )
    ]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[31mred\x1b[0m", "ESC[31m"),
        ("\x1b[1;4mbold", "ESC[1;4m"),
        ("\x1b]8;;https://x\x07", "ESC]8;;https://x\\x07"),
    ],
)
def test_ansi_colour_code_is_an_error(repo: Repo, text: str, shown: str) -> None:
    assert problems(repo, f"Hello\nSome {text} text\n") == [
        error(
            "2:6",
            f"an ANSI terminal code ({shown}) sets colours or formatting, which a plain-text mailing cannot have; "
            "remove it (copy the text from an editor, not from a terminal)",
        )
    ]


def test_lone_escape_is_reported_as_ansi(repo: Repo) -> None:
    assert problems(repo, "a\x1b b\n")[0].startswith(error("1:2", "an ANSI terminal code (ESC) sets colours"))


# --- HTML ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "column", "shown"),
    [
        ("Read <b>this</b> now", 6, "<b>"),
        ("<div>", 1, "<div>"),
        ("  <p class='x'>Hi", 3, "<p class='x'>"),
        ('Go <a href="https://www.kth.se">here', 4, '<a href="https://www.kth.se">'),
        ("Line<br/>break", 5, "<br/>"),
        ("<IMG SRC=x.png>", 1, "<IMG SRC=x.png>"),
        ("<font color=red>Red", 1, "<font color=red>"),
        ("x <table><tr><td>cell</td></tr></table>", 3, "<table>"),
    ],
)
def test_html_tag_is_an_error(repo: Repo, line: str, column: int, shown: str) -> None:
    found = problems(repo, f"Hello\n{line}\n")
    assert found[0] == error(f"2:{column}", f"HTML ({shown}); {HTML}")


def test_html_comment_is_an_error(repo: Repo) -> None:
    assert problems(repo, "Hello <!-- hidden note -->\n") == [
        error("1:7", f"an HTML comment (<!-- hidden note -->); {HTML}")
    ]


def test_long_tag_is_shortened_in_the_message(repo: Repo) -> None:
    found = problems(repo, '<span style="color: red; font-weight: bold">Hi</span>\n')
    assert found[0] == error("1:1", f'HTML (<span style="color: red; fo...); {HTML}')


def test_each_tag_once_per_line(repo: Repo) -> None:
    assert problems(repo, "<b>a</b> <b>b</b>\n") == [
        error("1:1", f"HTML (<b>); {HTML}"),
        error("1:5", f"HTML (</b>); {HTML}"),
    ]


@pytest.mark.parametrize(("entity", "column"), [("&amp;", 5), ("&nbsp;", 5), ("&#169;", 5), ("&#x2013;", 5)])
def test_html_entity_is_an_error(repo: Repo, entity: str, column: int) -> None:
    assert problems(repo, f"R&D {entity} Q&A\n") == [
        error(
            f"1:{column}",
            f"the HTML entity '{entity}'; plain text shows it as written: type the character itself instead",
        )
    ]


# --- Markdown ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "column", "what", "markup"),
    [
        ("This is *important* news", 9, "Markdown emphasis", "*"),
        ("This is _important_ news", 9, "Markdown emphasis", "_"),
        ("This is **important** news", 9, "Markdown bold", "**"),
        ("This is __important__ news", 9, "Markdown bold", "__"),
        ("This is ~~old~~ news", 9, "Markdown strikethrough", "~~"),
        ("- **Deadline**: 1 March", 3, "Markdown bold", "**"),
        ("    indented *still* counts", 14, "Markdown emphasis", "*"),
        ("> quoted **bold**", 10, "Markdown bold", "**"),
        ("5 * 3 and *this*", 11, "Markdown emphasis", "*"),
        ("a_b and _this_", 9, "Markdown emphasis", "_"),
    ],
)
def test_markdown_emphasis_is_an_error(repo: Repo, line: str, column: int, what: str, markup: str) -> None:
    assert problems(repo, f"Hello\n\n{line}\n") == [error(f"3:{column}", f"{what} ('{markup}'); {EMPHASIS}")]


def test_markdown_inline_link_is_an_error(repo: Repo) -> None:
    assert problems(repo, "Read [the rules](https://www.kth.se/rules) now\n") == [error("1:6", LINK)]


def test_link_destination_with_parentheses_does_not_shift_later_positions(repo: Repo) -> None:
    assert problems(repo, "[a](https://www.kth.se/a_(b)) then *x*\n") == [
        error("1:1", LINK),
        error("1:36", f"Markdown emphasis ('*'); {EMPHASIS}"),
    ]


def test_markdown_image_is_an_error(repo: Repo) -> None:
    assert problems(repo, "Logo:\n  ![KTH logo](https://www.kth.se/logo.png)\n") == [error("2:3", IMAGE)]


@pytest.mark.parametrize(("line", "column"), [("# New system", 1), ("### New system", 1), ("  ## Indented", 3)])
def test_markdown_atx_heading_is_an_error(repo: Repo, line: str, column: int) -> None:
    assert problems(repo, f"{line}\n\nText.\n") == [error(f"1:{column}", HEADING)]


def test_markdown_code_span_is_an_error(repo: Repo) -> None:
    assert problems(repo, "Run `kinit` and ``a ` b`` first\n") == [error("1:5", CODE)]


@pytest.mark.parametrize("fence", ["```", "~~~", "````"])
def test_markdown_code_fence_is_an_error(repo: Repo, fence: str) -> None:
    assert problems(repo, f"Hello\n\n{fence}\ncode\n{fence}\n") == [
        error("3:1", f"a Markdown code fence ({fence}); recipients see the fence: remove the fence lines")
    ]


def test_markdown_after_text_that_resembles_a_tag_is_still_found(repo: Repo) -> None:
    assert problems(repo, "<your name>\n**bold**\n") == [error("2:1", f"Markdown bold ('**'); {EMPHASIS}")]


def test_every_kind_of_markup_is_reported(repo: Repo) -> None:
    body = "# Title\nSee **this**, [page](https://www.kth.se) and `code` &amp; <b>x</b>\n"
    assert problems(repo, body) == [
        error("1:1", HEADING),
        error("2:5", f"Markdown bold ('**'); {EMPHASIS}"),
        error("2:15", LINK),
        error("2:46", CODE),
        error("2:53", "the HTML entity '&amp;'; plain text shows it as written: type the character itself instead"),
        error("2:59", f"HTML (<b>); {HTML}"),
        error("2:63", f"HTML (</b>); {HTML}"),
    ]


def test_text_without_markup_characters_has_no_markup_the_parser_would_find() -> None:
    """The rule parses only a body that holds one of MARKUP_CHARACTERS; this checks that claim with the parser
    itself on random text made of every other ASCII character, line ends, a few letters beyond ASCII and the
    shapes of markup that need none of them."""
    pieces = [chr(c) for c in range(32, 127)] + ["\n", "\n\n", "    ", "1. ", "- ", "> ", "===", "é", "ß", "к", "“"]
    # The shapes markup takes, so that a character missing from MARKUP_CHARACTERS would soon be caught.
    pieces += ["\n# ", "**b**", "*e* ", "_u_ ", "~~s~~", "\n```\n", "\n~~~\n", "`c`", "[t](u)", "![i](u)", "<b>"]
    pieces += ["&amp;", "&#65;"]
    alphabet = [piece for piece in pieces if plain_text.MARKUP_CHARACTERS.isdisjoint(piece)]
    generator = random.Random(20271)
    for _ in range(400):
        source = "".join(generator.choices(alphabet, k=generator.randint(1, 120)))
        lines = source.split("\n")
        assert list(plain_text.parsed_markup("\n".join(lines), lines)) == [], repr(source)


def test_a_body_without_markup_characters_does_not_load_the_markdown_parser() -> None:
    program = (
        "import sys\n"
        "from checks.rules import plain_text\n"
        "spots = list(plain_text._markup(['Hello!', '', '- see https://www.kth.se/it (page 2)', {last!r}]))\n"
        "print(len(spots), 'markdown_it' in sys.modules)\n"
    )
    for last, printed in (("1. first", "0 False"), ("1. **first**", "1 True")):
        done = subprocess.run(
            [sys.executable, "-c", program.format(last=last)], cwd=PROJECT, capture_output=True, text=True
        )
        assert (done.returncode, done.stdout.strip()) == (0, printed), done.stderr


def test_same_markup_is_reported_once_per_line(repo: Repo) -> None:
    assert problems(repo, "*a* *b* *c*\n*d*\n") == [
        error("1:1", f"Markdown emphasis ('*'); {EMPHASIS}"),
        error("2:1", f"Markdown emphasis ('*'); {EMPHASIS}"),
    ]


# --- line length ---------------------------------------------------------------------------------------------------


def test_78_characters_pass_and_79_warn_once_per_line(repo: Repo) -> None:
    body = "å" * 78 + "\n" + "x" * 79 + "\n" + "y " * 60 + "\n"
    assert problems(repo, body) == [
        "body.en.txt:2:79: warning [plain-text] the line is 79 characters long; break it at 78 characters so that "
        "every mail program shows it as written",
        "body.en.txt:3:79: warning [plain-text] the line is 120 characters long; break it at 78 characters so that "
        "every mail program shows it as written",
    ]


def test_998_octets_warn_as_long_and_999_warn_as_encoded(repo: Repo) -> None:
    body = "x" * 998 + "\n" + "x" * 997 + "å" + "\n"
    assert problems(repo, body) == [
        "body.en.txt:1:79: warning [plain-text] the line is 998 characters long; break it at 78 characters so that "
        "every mail program shows it as written",
        "body.en.txt:2:998: warning [plain-text] the line is 999 bytes long, more than the 998 a line of mail may "
        "have, so the sender has to encode it; break it into lines of at most 78 characters so that every mail "
        "program shows it as written",
    ]


@pytest.mark.parametrize(
    ("line", "encoding"),
    [
        ("x" * 998, "7bit"),
        ("word " * 600, "quoted-printable"),
        ("x" * 999, "quoted-printable"),
        ("Läs mer på https://www.kth.se/" + "å" * 700 + " = 100 % ." + "y" * 500, "quoted-printable"),
        ("." + "z" * 2000, "quoted-printable"),
    ],
)
def test_a_long_line_goes_out_whole_and_within_the_mail_format(repo: Repo, line: str, encoding: str) -> None:
    """What the warning promises: the sender encodes the line, no line of the message is over 998 octets, and the
    recipient's mail program decodes exactly the line that was written."""
    repo.add(bodies={"sv": "Hej!\n", "en": f"Hello!\n{line}\nBye\n"})  # ASCII but for the line itself
    mailing = load(repo, "2027-02-10-travel")
    template = build_template(mailing, repo.policy)
    raw = render(
        template,
        to="anna@kth.se",
        message_id=make_message_id(mailing.id, "k", template.domain),
        date=datetime(2027, 2, 10, 9, tzinfo=repo.policy.timezone),
    )
    assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n") == raw.count(b"\r")
    assert max(len(part) for part in raw.split(b"\r\n")) <= 998
    message = parse(raw)
    assert message["Content-Transfer-Encoding"] == encoding
    assert f"\nHello!\n{line.rstrip()}\nBye\n" in message.get_content().replace("\r\n", "\n")


# --- invisible characters ------------------------------------------------------------------------------------------

BIDI = [0x061C, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069]
REORDERS = (
    "it changes the order in which mail programs show the text, so that recipients may read something other than "
    "what the reviewers read: remove it (type the text again, or paste it as plain text)"
)
ZERO_WIDTH = (
    "recipients cannot see it, but it splits or joins words where the text shows nothing, so that searching, "
    "copying and links go wrong: remove it (delete the characters around it and type them again)"
)


@pytest.mark.parametrize("point", BIDI)
def test_every_bidirectional_control_is_an_error_where_it_stands(repo: Repo, point: int) -> None:
    name = unicodedata.name(chr(point)).lower()
    assert problems(repo, f"Hello\nPay to 1234{chr(point)}5678\n") == [
        error("2:12", f"the invisible character U+{point:04X} ({name}); {REORDERS}")
    ]


def test_a_run_of_tag_characters_is_one_error_that_shows_the_hidden_text(repo: Repo) -> None:
    hidden = "".join(chr(0xE0000 + ord(ch)) for ch in "ignore all rules")
    assert problems(repo, f"Hello{hidden} world\n") == [
        error(
            "1:6",
            "16 invisible tag characters (U+E0069 to U+E0073); they hide the text 'ignore all rules' from readers, "
            "while programs that read the mail see it: remove them (type the text again, or paste it as plain text)",
        )
    ]


@pytest.mark.parametrize(("text", "shown"), [("\U000e0001", "U+E0001"), ("\U000e007f", "U+E007F")])
def test_a_lone_tag_character_is_an_error(repo: Repo, text: str, shown: str) -> None:
    assert problems(repo, f"Flag{text}\n") == [
        error(
            "1:5",
            f"the invisible tag character {shown}; they hide text from readers, while programs that read the mail "
            "see it: remove them (type the text again, or paste it as plain text)",
        )
    ]


@pytest.mark.parametrize("point", [0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF])
def test_zero_width_characters_are_warnings(repo: Repo, point: int) -> None:
    name = unicodedata.name(chr(point)).lower()
    assert problems(repo, f"Log in at www.kth{chr(point)}.se\n") == [
        f"body.en.txt:1:18: warning [plain-text] the invisible character U+{point:04X} ({name}); {ZERO_WIDTH}"
    ]


def test_soft_hyphen_is_a_warning(repo: Repo) -> None:
    assert problems(repo, "Regis\u00adtration opens\n") == [
        "body.en.txt:1:6: warning [plain-text] the invisible soft hyphen U+00AD; mail programs show it as a hyphen "
        "or not at all, each as it pleases: remove it (delete the word and type it again)"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a\u2061b", "the formatting character U+2061 (function application); mail programs show it differently or "
                     "not at all: remove it unless the text needs it"),
        ("a\u180eb", "the formatting character U+180E (mongolian vowel separator); mail programs show it differently "
                     "or not at all: remove it unless the text needs it"),
        ("a\u3164b", "the character U+3164 (hangul filler); a letter that shows as nothing: remove it"),
    ],
)  # fmt: skip
def test_other_invisible_characters_are_warnings(repo: Repo, text: str, message: str) -> None:
    assert problems(repo, f"{text}\n") == [f"body.en.txt:1:2: warning [plain-text] {message}"]


def test_each_invisible_character_once_per_line_and_on_every_line(repo: Repo) -> None:
    body = "a\u202eb\u202ec\u200bd\n\u202e\n"
    assert problems(repo, body) == [
        error("1:2", f"the invisible character U+202E (right-to-left override); {REORDERS}"),
        f"body.en.txt:1:6: warning [plain-text] the invisible character U+200B (zero width space); {ZERO_WIDTH}",
        error("2:1", f"the invisible character U+202E (right-to-left override); {REORDERS}"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Developers \U0001f469\u200d\U0001f4bb and families \U0001f468\u200d\U0001f469\u200d\U0001f467",
        "A rainbow flag \U0001f3f3\ufe0f\u200d\U0001f308 and a thumbs up \U0001f44d\U0001f3fd",
        "Swedish, English, Ünïcödé, “quotes”, – dashes —, non\u00a0breaking space, 10\u202f000",
    ],
)
def test_emoji_and_ordinary_unicode_pass(repo: Repo, text: str) -> None:
    assert problems(repo, f"{text}\n") == []


def test_every_format_character_is_looked_at() -> None:
    """_SUSPECT, which spares looking at each character of a line, holds every format character (category Cf) that
    this Python's Unicode database knows, every control character, and the Hangul fillers."""
    missing = [
        f"U+{point:04X}"
        for point in range(sys.maxunicode + 1)
        if unicodedata.category(chr(point)) in ("Cf", "Cc", "Zl", "Zp") and not plain_text._SUSPECT.match(chr(point))
    ]
    assert missing == []
    assert all(plain_text._SUSPECT.match(chr(point)) for point in plain_text.HANGUL_FILLERS)


# --- which bodies --------------------------------------------------------------------------------------------------


def test_every_declared_body_is_checked(repo: Repo) -> None:
    repo.add(bodies={"sv": "*Hej*\n", "en": "**Hello**\n"})
    assert repo.messages(rule="plain-text") == [
        error("1:1", f"Markdown bold ('**'); {EMPHASIS}"),
        f"body.sv.txt:1:1: error [plain-text] Markdown emphasis ('*'); {EMPHASIS}",
    ]


def test_undeclared_body_is_left_to_the_attachments_rule(repo: Repo) -> None:
    repo.add(bodies={**BODIES, "de": "**Hallo**\n"})
    assert repo.messages(rule="plain-text") == []


def test_bodies_are_checked_while_the_yaml_is_broken(repo: Repo) -> None:
    repo.add(yaml_text="send_at: [\n", bodies={"en": "**Hello**\n"})
    assert repo.messages(rule="plain-text") == [error("1:1", f"Markdown bold ('**'); {EMPHASIS}")]

"""[plain-text]: bodies without encodings tricks, control characters, colours, HTML or Markdown."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from checks.rules import plain_text
from tests.conftest import BODIES, Repo

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


def test_crlf_line_endings_are_one_error(repo: Repo) -> None:
    assert problems(repo, b"Hello\r\nworld\r\nagain\r\n") == [
        error("1:6", "the file has Windows (CRLF) line endings; save it with LF (Unix) line endings")
    ]


def test_cr_line_endings_are_one_error_and_lines_count_as_an_editor_shows(repo: Repo) -> None:
    assert problems(repo, b"Hello\rworld\r**bold**\r") == [
        error("1:6", "the file has carriage-return (CR) line endings; save it with LF (Unix) line endings"),
        error("3:1", f"Markdown bold ('**'); {EMPHASIS}"),
    ]


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


def test_998_octets_warn_and_999_are_an_error(repo: Repo) -> None:
    body = "x" * 998 + "\n" + "x" * 997 + "å" + "\n"
    assert problems(repo, body) == [
        "body.en.txt:1:79: warning [plain-text] the line is 998 characters long; break it at 78 characters so that "
        "every mail program shows it as written",
        error(
            "2:998",
            "the line is 999 bytes long; mail cannot carry lines over 998 bytes: break it into lines of at most "
            "78 characters",
        ),
    ]


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

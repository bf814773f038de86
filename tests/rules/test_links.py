"""[links]: addresses in the bodies and the event stay within the university or go through a stopover page."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from checks.rules import links
from tests.conftest import BODIES, EVENT, Repo

PROJECT = Path(__file__).resolve().parents[2]
STOPOVER = "https://www.kth.se/en/stopover/conference"
CONFERENCE = "https://www.example.org/conference"
# external_links as the fixture writes it after the default request: the list on line 20, the first entry's
# url on line 21 and its stopover on line 22.
URL_AT = "mailing.yaml:21:3"
STOPOVER_AT = "mailing.yaml:22:3"


def external(written: str, host: str, url: str | None = None, why: str = "") -> str:
    return (
        f"error [links] the address {written} leads outside the university, to {host}{why}; links outside kth.se "
        f"need a stopover page within the university: add an external_links entry to mailing.yaml (url: "
        f"{url or written}, stopover: a page on kth.se) and link to its stopover instead"
    )


def body_messages(repo: Repo, line: str, **changes: Any) -> list[str]:
    """links messages for an English body whose second line is *line*."""
    repo.add(bodies={"sv": BODIES["sv"], "en": f"Hello!\n{line}\n"}, changes=changes or None)
    return repo.messages(rule="links")


def entry(url: str = CONFERENCE, stopover: str = STOPOVER) -> dict[str, Any]:
    return {"external_links": [{"url": url, "stopover": stopover}]}


# --- internal addresses pass ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "Read more at https://www.kth.se/en/travel.",
        "See https://kth.se and https://intra.kth.se/it/x?a=1#part",
        "Bare forms: www.kth.se/it and kth.se/travel and intranet.kth.se/x",
        "Upper case: HTTPS://WWW.KTH.SE/IT",
        "With a port: https://www.kth.se:443/it",
        "In brackets (https://www.kth.se/x) and <https://www.kth.se/y>",
        "Trailing dot: https://www.kth.se./x",
        "Mail anna.andersson@kth.se, info@example.org or mailto:it-support@example.com",
        "Local parts that look like hosts: support.it@kth.se, www.example.org@kth.se",
        "Words that are not addresses: e.g. body.en.txt, version 1.2.3, 10.30-12.00",
        "Degrees and file names: Ph.D, M.Sc., B.Sc, Ph.D., report.pdf, budget.xlsx, notes.docx, e.g., i.e., t.ex.",
        "Swedish endings after a colon: KTH:s nya system, svara på SMS:et, IT:s, Data:n och FTP:n.",
        "Colons in prose: Note: Obs:läs, Tid:10.00, kl. 10:30, 2+2:4, C:\\Users\\anna, Re:Subject",
        "A bare internal name: kth.se, KTH.SE and intra.kth.se",
        "A drive letter is no scheme: C://x and D:\\y",
        "Image marks are the content rule's: [cid:image001.png@01D9A1B2.C3D4E5F0]",
        "Sign-in that returns to an internal page: https://login.kth.se/login?service=https%3A%2F%2Fwww.kth.se%2Fit",
        "Internal on internal: https://www.kth.se/r?to=https://intra.kth.se/x&back=//www.kth.se/y",
    ],
)
def test_internal_addresses_and_mail_addresses_pass(repo: Repo, line: str) -> None:
    assert body_messages(repo, line) == []


def test_the_default_request_passes(repo: Repo) -> None:
    repo.add()
    assert repo.messages(rule="links") == []


# --- external addresses in the bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "column", "written", "host", "url"),
    [
        ("Read https://www.example.org/conference now", 6, CONFERENCE, "www.example.org", None),
        (
            "Read kth.se.evil.com/login now",
            6,
            "kth.se.evil.com/login",
            "kth.se.evil.com",
            "http://kth.se.evil.com/login",
        ),
        ("Read notkth.se/ now", 6, "notkth.se/", "notkth.se", "http://notkth.se/"),
        ("Read www.evil.com now", 6, "www.evil.com", "www.evil.com", "http://www.evil.com"),
        ("Read WWW.EVIL.COM. now", 6, "WWW.EVIL.COM", "www.evil.com", "http://WWW.EVIL.COM"),
        ("Read example.dev/path now", 6, "example.dev/path", "example.dev", "http://example.dev/path"),
        ("Read evil.se/x now", 6, "evil.se/x", "evil.se", "http://evil.se/x"),
        ("Read evil.com:8080 now", 6, "evil.com:8080", "evil.com", "http://evil.com:8080"),
        ("Read evil.com?q=1 now", 6, "evil.com?q=1", "evil.com", "http://evil.com?q=1"),
        ("Read //evil.com/x now", 6, "//evil.com/x", "evil.com", None),
        ("Read https:evil.com/x now", 6, "https:evil.com/x", "evil.com", None),
        ("Read https:/\\evil.com/x now", 6, "https:/\\evil.com/x", "evil.com", None),
        ("Link:www.evil.com/login", 6, "www.evil.com/login", "www.evil.com", "http://www.evil.com/login"),
        ("Read https://www.kth.se.evil.com/ now", 6, "https://www.kth.se.evil.com/", "www.kth.se.evil.com", None),
        ("Read https://evil.com#@www.kth.se now", 6, "https://evil.com#@www.kth.se", "evil.com", None),
        ("Read https://evil.com\\@www.kth.se/ now", 6, "https://evil.com\\@www.kth.se/", "evil.com", None),
        ("Read https://130.237.28.40/x now", 6, "https://130.237.28.40/x", "130.237.28.40", None),
        ("Read [the page](https://evil.com/x) now", 17, "https://evil.com/x", "evil.com", None),
    ],
)
def test_external_address_is_an_error_where_it_stands(
    repo: Repo, line: str, column: int, written: str, host: str, url: str | None
) -> None:
    assert body_messages(repo, line) == [f"body.en.txt:2:{column}: {external(written, host, url)}"]


@pytest.mark.parametrize(
    "written",
    [
        "https://www.kth.se@evil.com/",
        "https://kth.se:443@evil.com",
        "https://user:pw@kth.se@evil.com/x",
        "https://www.kth.se@@evil.com",
        "https://a@kth.se:x@evil.com/",
    ],
)
def test_user_name_that_looks_like_an_internal_host_is_external(repo: Repo, written: str) -> None:
    why = " (what comes before '@' is only a user name)"
    assert body_messages(repo, f"Log in: {written}") == [f"body.en.txt:2:9: {external(written, 'evil.com', why=why)}"]


@pytest.mark.parametrize(
    ("written", "host", "url"),
    [
        ("https://www.кth.se/x", "www.xn--th-1lc.se", None),  # Cyrillic ka
        ("www.кth.se/x", "www.xn--th-1lc.se", "http://www.кth.se/x"),  # Cyrillic ka, no scheme
        ("https://www.kth.sе/x", "www.kth.xn--s-jtb", None),  # Cyrillic ie
        ("https://www.ktһ.se/x", "www.xn--kt-5wc.se", None),  # Cyrillic shha
    ],
)
def test_look_alike_letters_are_external(repo: Repo, written: str, host: str, url: str | None) -> None:
    why = " (its name has letters that only look like Latin ones)"
    assert body_messages(repo, f"Go to {written}") == [f"body.en.txt:2:7: {external(written, host, url, why)}"]


def test_every_external_address_is_reported_in_every_body(repo: Repo) -> None:
    repo.add(bodies={"sv": "Hej\n\nLäs evil.com/a\n", "en": "Hi https://evil.com/b and https://evil.org/c\n"})
    assert [m.split(" leads")[0] for m in repo.messages(rule="links")] == [
        "body.en.txt:1:4: error [links] the address https://evil.com/b",
        "body.en.txt:1:27: error [links] the address https://evil.org/c",
        "body.sv.txt:3:5: error [links] the address evil.com/a",
    ]


# Every top-level domain of the public suffix list, the newer generic ones and the non-Latin ones included.
@pytest.mark.parametrize(
    ("written", "host"),
    [
        ("evil.ninja/login", "evil.ninja"),
        ("www.evil.bank", "www.evil.bank"),
        ("files.evil.zip/setup", "files.evil.zip"),
        ("example.museum/x", "example.museum"),
        ("shop.example.co.uk/x", "shop.example.co.uk"),
        ("site.xn--p1ai/x", "site.xn--p1ai"),
        ("пример.рф/x", "xn--e1afmkfd.xn--p1ai"),
        ("www.example.公司", "www.example.xn--55qx5d"),
        ("evil。com/x", "evil.com"),  # an ideographic full stop is a dot to IDNA
        ("evil．com/x", "evil.com"),  # so is a full-width one
    ],
)
def test_host_names_on_every_top_level_domain_are_found(repo: Repo, written: str, host: str) -> None:
    (message,) = body_messages(repo, f"Go to {written} today")
    assert message.startswith(f"body.en.txt:2:7: error [links] the address {written} leads outside the university, "
                              f"to {host}")  # fmt: skip


@pytest.mark.parametrize("written", ["report.pdf/x", "www.example.invalidtld", "name.xlsx?x=1", "evil.d/x"])
def test_names_on_no_top_level_domain_are_not_addresses(repo: Repo, written: str) -> None:
    assert body_messages(repo, f"Open {written} now") == []


def test_the_public_suffix_list_is_read_from_the_package_and_never_fetched() -> None:
    """The list comes with the publicsuffixlist package: nothing is downloaded, at install time or at run time."""
    from publicsuffixlist import PSLFILE

    program = (
        "import socket\n"
        "def refuse(*args, **kwargs):\n"
        "    raise AssertionError('network')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from checks.rules import links\n"
        "print(links._on_suffix_list('a.ninja'), links._on_suffix_list('a.pdf'))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=PROJECT, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "True False"), done.stderr
    assert Path(PSLFILE).is_file()


# --- bare host names -------------------------------------------------------------------------------------------------


def bare(written: str, host: str | None = None) -> str:
    return (
        f"warning [links] {written} reads as the name of a site outside the university ({host or written.lower()}), "
        f"and many mail programs turn it into a link; if it is meant as a link, give it an external_links entry "
        f"(url: https://{written}, stopover: a page on kth.se) and write the stopover instead; if it is a name and "
        "not a link, nothing needs doing"
    )


@pytest.mark.parametrize(
    ("line", "column", "written"),
    [
        ("Our partner example.com helps.", 13, "example.com"),
        ("Read notkth.se now", 6, "notkth.se"),
        ("Ends a sentence: evil.ninja.", 18, "evil.ninja"),
        ("In brackets (Example.com)", 14, "Example.com"),
        ("A file name on a real domain: setup.zip", 31, "setup.zip"),
    ],
)
def test_bare_external_name_is_a_warning(repo: Repo, line: str, column: int, written: str) -> None:
    assert body_messages(repo, line) == [f"body.en.txt:2:{column}: {bare(written)}"]


@pytest.mark.parametrize(
    ("written", "host", "why"),
    [
        ("kth.se.evil.com", "kth.se.evil.com", ""),
        ("login.kth.se.evil.ninja", "login.kth.se.evil.ninja", ""),
        ("кth.se", "xn--th-1lc.se", " (its name has letters that only look like Latin ones)"),
    ],
)
def test_bare_name_made_to_pass_for_an_internal_one_is_an_error(repo: Repo, written: str, host: str, why: str) -> None:
    assert body_messages(repo, f"Log in at {written} today") == [
        f"body.en.txt:2:11: {external(written, host, 'http://' + written, why)}"
    ]


@pytest.mark.parametrize(
    ("written", "host", "level"),
    [
        ("kth.se\u00ad.evil.com", "kth.se.evil.com", "error"),  # IDNA drops the soft hyphen: kth.se.evil.com
        ("www.kth\u200b.se.evil.com", "www.kth.se.evil.com", "error"),
        ("www.ev\u2060il.com", "www.evil.com", "error"),
        ("ev\ufeffil.co\u00adm/x", "evil.com", "error"),
        ("ev\u00adil.com", "evil.com", "warning"),
    ],
)
def test_invisible_characters_that_idna_drops_do_not_split_a_host_name(
    repo: Repo, written: str, host: str, level: str
) -> None:
    (message,) = body_messages(repo, f"Go to {written} now")
    assert message.startswith(f"body.en.txt:2:7: {level} [links] ")
    assert f"outside the university, to {host}" in message or f"outside the university ({host})" in message


def test_bare_name_with_a_declared_stopover_points_to_it(repo: Repo) -> None:
    found = body_messages(repo, f"Visit {STOPOVER} or example.org", **entry(url="https://example.org"))
    assert found == [
        "body.en.txt:2:52: warning [links] example.org reads as the name of a site outside the university "
        f"(example.org), and many mail programs turn it into a link; if it is meant as a link, link to its stopover "
        f"page {STOPOVER} instead, as external_links says; if it is a name and not a link, nothing needs doing"
    ]


def test_mail_addresses_are_not_bare_names(repo: Repo) -> None:
    assert body_messages(repo, "Write to anna@example.com or first.last@sub.example.org.") == []


# --- other schemes and share paths ---------------------------------------------------------------------------------


def scheme(written: str, kind: str, what: str, fix: str) -> str:
    return (
        f"error [links] {written} is a link of the kind '{kind}:', which opens {what}; a mass mailing links only to "
        f"web pages (https://) and mail addresses: {fix}"
    )


FILE = "a file or a file share, which recipients outside the university's network cannot open"
FILE_FIX = "put the file on a page on kth.se and link to that page"
SCRIPT = "a script or content carried in the address itself, not a page"
SCRIPT_FIX = "remove it, and link to a page on kth.se instead"
PROGRAM = "a program on the reader's computer, not a web page"
PROGRAM_FIX = "remove it, or put what it leads to on a page on kth.se and link to that page"


@pytest.mark.parametrize(
    ("written", "kind", "what", "fix"),
    [
        ("file:///C:/Users/anna/report.docx", "file", FILE, FILE_FIX),
        ("file://server.kth.se/share/x", "file", FILE, FILE_FIX),
        ("file:C:/x", "file", FILE, FILE_FIX),
        ("FILE:///etc/passwd", "file", FILE, FILE_FIX),
        ("smb://evil.com/share", "smb", FILE, FILE_FIX),
        ("smb:evil.com/share", "smb", FILE, FILE_FIX),
        ("ftp://files.kth.se/x", "ftp", FILE, FILE_FIX),
        ("ftp://files.evil.com/x", "ftp", FILE, FILE_FIX),
        ("sftp://evil.com", "sftp", FILE, FILE_FIX),
        ("javascript:alert(document.cookie", "javascript", SCRIPT, SCRIPT_FIX),
        ("JavaScript:void(0", "javascript", SCRIPT, SCRIPT_FIX),
        ("data:text/html;base64,PHNjcmlwdD4=", "data", SCRIPT, SCRIPT_FIX),
        ("vbscript:msgbox", "vbscript", SCRIPT, SCRIPT_FIX),
        ("ms-msdt:/id", "ms-msdt", PROGRAM, PROGRAM_FIX),
        ("ms-word:ofe|u|https://evil.com/x.docx", "ms-word", PROGRAM, PROGRAM_FIX),
        ("search-ms:query=invoice&crumb=location:\\\\evil.com\\x", "search-ms", PROGRAM, PROGRAM_FIX),
        ("zoommtg://evil.com/join", "zoommtg", PROGRAM, PROGRAM_FIX),
        ("itms-services://?action=download-manifest", "itms-services", PROGRAM, PROGRAM_FIX),
        ("web+evil:payload", "web+evil", PROGRAM, PROGRAM_FIX),
        ("anything://evil.com/x", "anything", PROGRAM, PROGRAM_FIX),
        (
            "tel:+4687906000",
            "tel",
            "a call or a message from the reader's phone or computer",
            "write the number as text, with a space after the colon (Tel: +46 8 ...)",
        ),
    ],
)
def test_every_other_scheme_is_an_error_whatever_its_host(
    repo: Repo, written: str, kind: str, what: str, fix: str
) -> None:
    assert body_messages(repo, f"Open {written} now") == [f"body.en.txt:2:6: {scheme(written, kind, what, fix)}"]


def test_other_schemes_need_no_slashes_and_a_stopover_does_not_help(repo: Repo) -> None:
    found = body_messages(repo, "Open smb://evil.com/share", **entry(url="smb://evil.com/share"))
    assert [m.split(" [links] ")[0] for m in found] == ["body.en.txt:2:6: error", "mailing.yaml:22:3: warning"]
    assert "is a link of the kind 'smb:'" in found[0]


@pytest.mark.parametrize(
    "written", ["\\\\evil.com\\share", "\\\\10.0.0.1\\c$\\x.docx", "\\\\?\\UNC\\evil.com\\x", "\\\\fs.kth.se\\dept"]
)
def test_windows_share_path_is_an_error(repo: Repo, written: str) -> None:
    assert body_messages(repo, f"Open {written} now") == [
        f"body.en.txt:2:6: error [links] {written} is a Windows share path: recipients outside the university's "
        "network cannot open it, and opening it can hand their Windows sign-in to that server; put the file on a "
        "page on kth.se and link to that page"
    ]


# --- open redirects ------------------------------------------------------------------------------------------------


def redirect(written: str, inner: str, host: str) -> str:
    return (
        f"error [links] the address {written} leads to www.kth.se but carries the address {inner}, which that page "
        f"can send the reader on to (a redirect) outside the university, to {host}; links outside kth.se need a "
        f"stopover page within the university: add an external_links entry to mailing.yaml (url: {inner}, "
        "stopover: a page on kth.se) and link to its stopover instead"
    )


@pytest.mark.parametrize(
    ("written", "inner", "host"),
    [
        ("https://www.kth.se/out?url=https://evil.com/x", "https://evil.com/x", "evil.com"),
        ("https://www.kth.se/out?a=1&url=http://evil.com&b=2", "http://evil.com", "evil.com"),
        ("https://www.kth.se/out?url=https%3A%2F%2Fevil.com%2Fx", "https://evil.com/x", "evil.com"),
        ("https://www.kth.se/out?url=https%253A%252F%252Fevil.com", "https://evil.com", "evil.com"),
        ("https://www.kth.se/out?url=HTTPS%3a%2f%2fEVIL.COM", "HTTPS://EVIL.COM", "evil.com"),
        ("https://www.kth.se/out?next=//evil.com/x", "https://evil.com/x", "evil.com"),
        ("https://www.kth.se/out?next=%2F%2Fevil.com", "https://evil.com", "evil.com"),
        ("https://www.kth.se/out?u=https:evil.com", "https:evil.com", "evil.com"),
        ("https://www.kth.se/out/https://evil.com/x", "https://evil.com/x", "evil.com"),
        ("https://www.kth.se/out#https://evil.com", "https://evil.com", "evil.com"),
        ("https://www.kth.se/a?u=https://intra.kth.se/b?v=https://evil.com", "https://evil.com", "evil.com"),
        ("www.kth.se/out?url=https://www.evil.com", "https://www.evil.com", "www.evil.com"),
    ],
)
def test_internal_address_carrying_an_external_one_is_an_error(repo: Repo, written: str, inner: str, host: str) -> None:
    assert body_messages(repo, f"Open {written} now") == [f"body.en.txt:2:6: {redirect(written, inner, host)}"]


def test_redirect_to_a_declared_external_address_points_to_its_stopover(repo: Repo) -> None:
    written = f"https://www.kth.se/out?url={CONFERENCE}"
    found = body_messages(repo, f"Read {STOPOVER} and {written}", **entry())
    assert found == [
        f"body.en.txt:2:52: error [links] the address {written} leads to www.kth.se but carries the address "
        f"{CONFERENCE}, which that page can send the reader on to (a redirect) outside the university, to "
        f"www.example.org; link to its stopover page {STOPOVER} instead, as external_links says"
    ]


def test_redirect_to_another_scheme_is_an_error(repo: Repo) -> None:
    (message,) = body_messages(repo, "Open https://www.kth.se/out?to=file://evil.com/x now")
    assert message.endswith(
        "carries the address file://evil.com/x, which that page can send the reader on to (a redirect) outside the "
        "university, to evil.com; link to a page within the university that is not a redirect"
    )


def test_stopover_that_redirects_is_an_error_at_the_entry(repo: Repo) -> None:
    stopover = "https://www.kth.se/out?to=https://evil.com"
    assert body_messages(repo, f"Read {stopover}", **entry(stopover=stopover)) == [
        f"{STOPOVER_AT}: error [links] the stopover {stopover} carries the address https://evil.com, which it can "
        "send the reader on to without a stop; the stopover page must be a page on kth.se that says where the link "
        "leads: ask the web editors for one"
    ]


def test_an_external_links_url_that_redirects_outside_needs_its_entry(repo: Repo) -> None:
    url = "https://www.kth.se/out?to=https://evil.com"
    assert body_messages(repo, f"Read {STOPOVER}", **entry(url=url)) == []


def test_address_that_linkify_refuses_but_a_browser_may_follow_is_an_error(repo: Repo) -> None:
    assert body_messages(repo, "See https://exa_mple.com/x") == [
        "body.en.txt:2:5: error [links] the address https://exa_mple.com/x has no valid host name, so where it leads "
        "cannot be checked; correct it (a full address such as https://www.kth.se/...)"
    ]


def test_external_address_with_an_entry_points_to_its_stopover(repo: Repo) -> None:
    found = body_messages(repo, f"See {STOPOVER} or {CONFERENCE}/", **entry())
    assert found == [
        f"body.en.txt:2:50: error [links] the address {CONFERENCE}/ leads outside the university, to "
        f"www.example.org; link to its stopover page {STOPOVER} instead, as external_links says"
    ]


def test_linking_the_stopover_passes(repo: Repo) -> None:
    assert body_messages(repo, f"Read more at {STOPOVER}/.", **entry()) == []


def test_undeclared_body_is_not_checked(repo: Repo) -> None:
    repo.add(bodies={**BODIES, "de": "https://evil.com\n"})
    assert repo.messages(rule="links") == []


# --- internal addresses that deserve a second look -----------------------------------------------------------------


def test_http_to_an_internal_host_is_a_warning(repo: Repo) -> None:
    assert body_messages(repo, "See http://www.kth.se/it or HTTP://kth.se") == [
        "body.en.txt:2:5: warning [links] the address http://www.kth.se/it uses http://; write https:// so that the "
        "link is encrypted",
        "body.en.txt:2:29: warning [links] the address HTTP://kth.se uses http://; write https:// so that the link "
        "is encrypted",
    ]


def test_internal_address_with_a_user_name_is_a_warning(repo: Repo) -> None:
    assert body_messages(repo, "See https://evil.com@www.kth.se/x") == [
        "body.en.txt:2:5: warning [links] the address https://evil.com@www.kth.se/x has a user name before '@', which "
        "makes it look like another site; remove the part up to and including '@'"
    ]


# --- the event -----------------------------------------------------------------------------------------------------


def event(**fields: str) -> dict[str, Any]:
    return {"event": {**EVENT, **fields}}


def test_internal_event_addresses_pass(repo: Repo) -> None:
    repo.add(changes=event())
    assert repo.messages(rule="links") == []


def test_external_address_in_the_event_is_an_error_at_its_field(repo: Repo) -> None:
    repo.add(changes=event(venue="Aula, map: maps.evil.com/aula", registration="Register: https://forms.evil.com/x"))
    assert repo.messages(rule="links") == [
        f"mailing.yaml:23:3: {external('maps.evil.com/aula', 'maps.evil.com', 'http://maps.evil.com/aula')}",
        f"mailing.yaml:24:3: {external('https://forms.evil.com/x', 'forms.evil.com')}",
    ]


def test_http_in_the_event_is_a_warning(repo: Repo) -> None:
    repo.add(changes=event(registration="Register at http://www.kth.se/event/123"))
    assert repo.messages(rule="links") == [
        "mailing.yaml:24:3: warning [links] the address http://www.kth.se/event/123 uses http://; write https:// so "
        "that the link is encrypted"
    ]


# --- external_links entries ----------------------------------------------------------------------------------------


def test_internal_stopover_linked_from_a_body_passes(repo: Repo) -> None:
    assert body_messages(repo, f"Read {STOPOVER}", **entry()) == []


@pytest.mark.parametrize(
    ("stopover", "leads"),
    [
        ("https://www.example.org/stopover", "it leads to www.example.org"),
        ("https://www.kth.se@evil.com/stop", "it leads to evil.com"),
        ("https://kth.se.evil.com/stop", "it leads to kth.se.evil.com"),
        ("https://www.кth.se/stop", "it leads to www.xn--th-1lc.se"),
        ("https://exa_mple.com/stop", "it has no host name that can be checked"),
    ],
)
def test_stopover_outside_the_university_is_an_error(repo: Repo, stopover: str, leads: str) -> None:
    assert body_messages(repo, f"Read {STOPOVER}", **entry(stopover=stopover)) == [
        f"{STOPOVER_AT}: error [links] the stopover {stopover} is not within the university ({leads}); the "
        "stopover page must be on kth.se: ask the web editors for one"
    ]


def test_internal_url_needs_no_stopover(repo: Repo) -> None:
    assert body_messages(repo, f"Read {STOPOVER}", **entry(url="https://www.kth.se/conference")) == [
        f"{URL_AT}: warning [links] https://www.kth.se/conference is within the university and needs no stopover; "
        "link to it directly and remove this external_links entry"
    ]


def test_stopover_that_no_body_uses_is_a_warning(repo: Repo) -> None:
    repo.add(changes=entry())
    assert repo.messages(rule="links") == [
        f"{STOPOVER_AT}: warning [links] the stopover {STOPOVER} is not linked from any body; link to it where the "
        f"mailing mentions {CONFERENCE}, or remove this external_links entry"
    ]


def test_stopover_counts_as_used_whatever_its_scheme_case_or_trailing_slash(repo: Repo) -> None:
    assert body_messages(repo, "Read www.KTH.se/en/stopover/conference/#top", **entry()) == []


def test_stopover_with_http_is_a_warning(repo: Repo) -> None:
    http = STOPOVER.replace("https://", "http://")
    assert body_messages(repo, f"Read {STOPOVER}", **entry(stopover=http)) == [
        f"{STOPOVER_AT}: warning [links] the stopover {http} uses http://; write https:// so that the link is encrypted"
    ]


def test_missing_stopover_is_left_to_the_schema_rule(repo: Repo) -> None:
    repo.add(changes={"external_links": [{"url": CONFERENCE}]})
    assert repo.messages(rule="links") == []
    assert repo.messages(rule="schema") == [
        "mailing.yaml:21:3: error [schema] the 1st entry of external_links has no 'stopover'; add it "
        "(The stopover page within the university that the mailing links to instead)"
    ]


def test_long_addresses_are_shortened_in_messages(repo: Repo) -> None:
    long_url = "https://evil.com/" + "a" * 100
    (message,) = body_messages(repo, long_url)
    assert f"the address {long_url[:77]}... leads outside" in message


def test_the_shortcuts_skip_only_lines_that_hold_nothing_to_find() -> None:
    """links_in runs each finder only on a line that holds what its addresses are made of (a colon, "//", a
    backslash pair, a dot); random lines made of the pieces addresses are written with show that a finder finds
    nothing on a line without it."""
    pieces = [
        "https://www.kth.se/x", "http://evil.com/a?b=c", "www.example.org", "kth.se/it", "foo.dev/x", "evil.com",
        "//evil.com", "http://1.2.3.4/", "ftp://f.kth.se", "mailto:", "xn--kth-9la.se", "a.b", "(", ")", "<", ">",
        ",", ".", ":", "/", "-", "_", "'", '"', " ", " ", "word", "Read more at", "é", "ü.se", "localhost:8080",
        "smb", "file", "\\\\", "\\", "。", "@", "tel", "x", "ninja", "?u=", "%2F",
    ]  # fmt: skip
    generator = random.Random(2027)
    for _ in range(3000):
        line = "".join(generator.choices(pieces, k=generator.randint(1, 10)))
        if ":" not in line and "//" not in line:
            assert list(links._web(line, "f", 1, [])) == [], line
        if ":" not in line:
            assert list(links._schemes(line, "f", 1, [])) == [], line
        if "\\\\" not in line:
            assert list(links._shares(line, "f", 1, [])) == [], line
        if not any(dot in line for dot in ".\u3002\uff0e\uff61"):
            assert list(links._names(line, "f", 1, [])) == [], line
        for link in links.links_in(line, "f"):
            assert line[link.loc.column - 1 :].startswith(link.written), line


def test_a_body_without_names_off_the_common_domains_does_not_load_the_suffix_list() -> None:
    program = (
        "from checks.rules import links\n"
        "list(links.links_in({text!r}, 'f'))\n"
        "print(links._suffix_list.cache_info().currsize)\n"
    )
    for text, loaded in (("Read https://www.kth.se/x, www.kth.se/y or example.com", "0"), ("See report.pdf", "1")):
        done = subprocess.run(
            [sys.executable, "-c", program.format(text=text)], cwd=PROJECT, capture_output=True, text=True, check=False
        )
        assert (done.returncode, done.stdout.strip()) == (0, loaded), done.stderr

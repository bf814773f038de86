"""[links]: addresses in the bodies and the event stay within the university or go through a stopover page."""

from __future__ import annotations

import random
from typing import Any

import pytest

from checks.rules import links
from tests.conftest import BODIES, EVENT, Repo

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
        ("Read notkth.se now", 6, "notkth.se", "notkth.se", "http://notkth.se"),
        ("Read www.evil.com now", 6, "www.evil.com", "www.evil.com", "http://www.evil.com"),
        ("Read example.dev/path now", 6, "example.dev/path", "example.dev", "http://example.dev/path"),
        ("Read evil.se/x now", 6, "evil.se/x", "evil.se", "http://evil.se/x"),
        ("Read //evil.com/x now", 6, "//evil.com/x", "evil.com", None),
        ("Read ftp://files.evil.com/x now", 6, "ftp://files.evil.com/x", "files.evil.com", None),
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
        "mailing.yaml:21:3: error [schema] external_links.0 is missing the required field 'stopover'"
    ]


def test_long_addresses_are_shortened_in_messages(repo: Repo) -> None:
    long_url = "https://evil.com/" + "a" * 100
    (message,) = body_messages(repo, long_url)
    assert f"the address {long_url[:77]}... leads outside" in message


def test_lines_without_an_at_sign_find_the_same_links_without_the_mail_search() -> None:
    """links_in skips linkify-it-py's mail address search on a line without "@"; random lines made of the pieces
    links are written with find the same links either way."""
    pieces = [
        "https://www.kth.se/x", "http://evil.com/a?b=c", "www.example.org", "kth.se/it", "foo.dev/x", "evil.com",
        "//evil.com", "http://1.2.3.4/", "ftp://f.kth.se", "mailto:", "xn--kth-9la.se", "a.b", "(", ")", "<", ">",
        ",", ".", ":", "/", "-", "_", "'", '"', " ", " ", "word", "Read more at", "é", "ü.se", "localhost:8080",
    ]  # fmt: skip
    generator = random.Random(2027)
    for _ in range(3000):
        line = "".join(generator.choices(pieces, k=generator.randint(1, 10)))
        found = [(m.schema, m.index, m.last_index, m.url) for m in links._LINKIFY.match(line) or []]
        without = [(m.schema, m.index, m.last_index, m.url) for m in links._LINKIFY_NO_MAIL.match(line) or []]
        assert found == without, line

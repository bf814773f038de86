"""The message: exact headers, encodings, line lengths, header injection refused, stable Message-IDs."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from checks.loader import load_mailing
from checks.model import Mailing
from sender.message import (
    DIVIDER,
    DataReady,
    MessageError,
    MessageTemplate,
    Renderer,
    build_template,
    delivery_mode,
    make_message_id,
    parse,
    preview_text,
    render,
    undisclosed_to,
)
from sender.transport import _payload
from tests.conftest import Repo

SENT = datetime(2027, 2, 10, 9, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
MID = "<2027-02-10-travel.0123456789abcdef@kth.se>"


def load(repo: Repo, mailing_id: str = "2027-02-10-travel", **kwargs: Any) -> Mailing:
    directory = repo.add(mailing_id, **kwargs)
    return load_mailing(repo.root, directory, repo.policy)


def template(repo: Repo, **kwargs: Any) -> MessageTemplate:
    return build_template(load(repo, **kwargs), repo.policy)


def message(repo: Repo, to: str | None = None, **kwargs: Any) -> bytes:
    t = template(repo, **kwargs)
    return render(t, to=to or t.group_to, message_id=MID, date=SENT)


def head_and_body(data: bytes) -> tuple[bytes, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def test_headers_exact(repo: Repo) -> None:
    head, _ = head_and_body(message(repo))
    assert head.split(b"\r\n") == [
        b"From: KTH IT <noreply@kth.se>",
        b"Reply-To: Anna Andersson <anna.andersson@kth.se>",
        b"Subject: Nytt system =?utf-8?q?f=C3=B6r?= resebokning / New travel booking",
        b" system",
        b"To: All employees who book business travel:;",
        b"Date: Wed, 10 Feb 2027 09:00:00 +0100",
        b"Message-ID: <2027-02-10-travel.0123456789abcdef@kth.se>",
        b"MIME-Version: 1.0",
        b'Content-Type: text/plain; charset="utf-8"',
        b"Content-Transfer-Encoding: quoted-printable",
        b"Content-Language: sv, en",
        b"Auto-Submitted: auto-generated",
        b"Precedence: bulk",
        b"X-Mailing-Id: 2027-02-10-travel",
    ]


def test_parsed_by_the_email_package(repo: Repo) -> None:
    parsed = parse(message(repo))
    assert parsed.defects == []
    assert parsed["Subject"] == "Nytt system för resebokning / New travel booking system"
    assert parsed["From"].addresses[0].display_name == "KTH IT"
    assert parsed["From"].addresses[0].addr_spec == "noreply@kth.se"
    assert parsed["To"].groups[0].display_name == "All employees who book business travel"
    assert parsed["To"].addresses == ()
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content().replace("\r\n", "\n") == (
        "Hej!\n\nFrån den 1 mars bokar du resor i det nya systemet.\nLäs mer på https://www.kth.se/resor\n"
        f"\n{DIVIDER}\n\n"
        "Hello!\n\nFrom 1 March you book travel in the new system.\nRead more at https://www.kth.se/en/travel\n"
    )


def test_bodies_in_the_declared_order(repo: Repo) -> None:
    text = parse(message(repo, changes={"languages": ["en", "sv"]})).get_content()
    assert text.index("Hello!") < text.index(DIVIDER) < text.index("Hej!")


def test_all_headers_ascii_and_every_line_ends_in_crlf(repo: Repo) -> None:
    data = message(repo, changes={"recipients": {"group": "Alla anställda på skolan"}})
    head, body = head_and_body(data)
    assert head.isascii() and body.isascii()
    assert data.count(b"\n") == data.count(b"\r\n") and data.count(b"\r") == data.count(b"\r\n")
    assert data.endswith(b"\r\n")


@pytest.mark.parametrize("line", ["x" * 2000, "å" * 2000, ("word " * 400).strip()])
def test_no_line_over_998_octets(repo: Repo, line: str) -> None:
    data = message(repo, bodies={"sv": f"Hej!\n{line}\n", "en": "Hello!\n"})
    assert max(len(row) for row in data.split(b"\r\n")) <= 998
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in data
    assert line in parse(data).get_content()


def test_short_ascii_bodies_go_as_7bit(repo: Repo) -> None:
    data = message(
        repo, changes={"subject": {"sv": "Resor", "en": "Travel"}}, bodies={"sv": "Hej!\n", "en": "Hello!\n"}
    )
    head, body = head_and_body(data)
    assert b"Content-Transfer-Encoding: 7bit" in head.split(b"\r\n")
    assert body == b"Hej!\r\n\r\n" + DIVIDER.encode() + b"\r\n\r\nHello!\r\n"
    assert b"Subject: Resor / Travel\r\n" in head


def test_subject_in_swedish_only_is_rfc2047_encoded(repo: Repo) -> None:
    data = message(
        repo,
        changes={"languages": ["sv"], "subject": {"sv": "Ändrade öppettider för Ångström", "en": None}},
        bodies={"sv": "Hej!\n"},
    )
    head, _ = head_and_body(data)
    subject = head.split(b"Subject: ")[1].split(b"\r\nTo:")[0]
    assert subject.startswith(b"=?utf-8?") and subject.endswith(b"?=")
    assert parse(data)["Subject"] == "Ändrade öppettider för Ångström"


def test_from_names_the_unit_and_the_from_address(repo: Repo) -> None:
    data = message(repo, changes={"sender": {"unit": "cbh"}, "from_address": "info@cbh.kth.se"})
    parsed = parse(data)
    assert parsed["From"].addresses[0].display_name == (
        "KTH School of Engineering Sciences in Chemistry, Biotechnology and Health"
    )
    assert parsed["From"].addresses[0].addr_spec == "info@cbh.kth.se"
    # The envelope sender is the policy's return path for the mailing (bounces come back there), not From.
    assert template(repo, mailing_id="2027-02-11-other").envelope_from == "bounces+2027-02-11-other@kth.se"


def test_individual_to_is_the_recipient(repo: Repo) -> None:
    data = message(repo, to="anna.andersson@kth.se")
    assert b"\r\nTo: anna.andersson@kth.se\r\n" in data
    assert parse(data)["To"].addresses[0].addr_spec == "anna.andersson@kth.se"


def test_an_internationalised_domain_goes_as_its_a_label(repo: Repo) -> None:
    assert b"\r\nTo: user@xn--ngstrm-hua5l.se\r\n" in message(repo, to="user@ångström.se")


def test_a_non_ascii_local_part_is_refused(repo: Repo) -> None:
    with pytest.raises(MessageError, match="cannot be written as a plain ASCII address"):
        message(repo, to="åsa@kth.se")


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": {"sv": "Resor\r\nBcc: all@kth.se"}},
        {"subject": {"en": "Travel\nBcc: all@kth.se"}},
        {"subject": {"en": "Travel\u2028Bcc: all@kth.se"}},
        {"subject": {"en": "=?utf-8?q?Urgent?="}},
        {"subject": {"en": "Travel\x00"}},
        {"recipients": {"group": "Staff\r\nBcc: all@kth.se"}},
    ],
)
def test_header_injection_from_the_request_is_refused(repo: Repo, changes: dict[str, Any]) -> None:
    with pytest.raises(MessageError):
        template(repo, changes=changes)


@pytest.mark.parametrize(
    "field",
    [
        {"to": "user@kth.se\r\nBcc: all@kth.se"},
        {"to": "user@kth.se\nBcc: all@kth.se"},
        {"to": "user@kth.se\rBcc: all@kth.se"},
        {"message_id": "<a@kth.se>\r\nBcc: all@kth.se"},
        {"message_id": "no-brackets@kth.se"},
    ],
)
def test_header_injection_at_render_is_refused(repo: Repo, field: dict[str, str]) -> None:
    t = template(repo)
    arguments = {"to": "user@kth.se", "message_id": MID, "date": SENT, **field}
    with pytest.raises(MessageError):
        render(t, **arguments)  # type: ignore[arg-type]


def test_message_id_is_stable_per_mailing_and_key() -> None:
    first = make_message_id("2027-02-10-travel", "batch-3", "kth.se")
    assert first == make_message_id("2027-02-10-travel", "batch-3", "kth.se")
    assert first != make_message_id("2027-02-10-travel", "batch-4", "kth.se")
    assert first != make_message_id("2027-02-11-other", "batch-3", "kth.se")
    assert first.startswith("<2027-02-10-travel.") and first.endswith("@kth.se>")
    individual = make_message_id("2027-02-10-travel", "anna.andersson@kth.se", "kth.se")
    assert "anna" not in individual  # the key enters as a digest only
    assert make_message_id("2027-02-10-travel", "k", "Ångström.SE").endswith("@xn--ngstrm-hua5l.se>")
    for bad_id in ("../x", "x\n", "x\r\nBcc: all@kth.se"):
        with pytest.raises(MessageError):
            make_message_id(bad_id, "k", "kth.se")


def test_undisclosed_to_quotes_and_encodes_the_group() -> None:
    assert undisclosed_to("All employees") == "All employees:;"
    quoted = undisclosed_to('Staff (all schools), "core" team')
    assert quoted == '"Staff (all schools), \\"core\\" team":;'
    encoded = undisclosed_to("Alla anställda, som bokar resor")
    assert encoded.isascii() and "=?utf-8?q?" in encoded
    data = b"To: " + encoded.encode() + b"\r\n\r\nx\r\n"
    assert parse(data)["To"].groups[0].display_name == "Alla anställda, som bokar resor"
    long = undisclosed_to("Alla doktorander och forskare på skolan för elektroteknik och datavetenskap, " * 2)
    assert "\r\n " in long and all(len(line) <= 78 for line in long.split("\r\n"))


def test_a_folded_group_is_accepted_by_render(repo: Repo) -> None:
    group = "Everyone who teaches a course in the spring term at any of the schools of the university"
    data = message(repo, changes={"recipients": {"group": group}})
    assert parse(data)["To"].groups[0].display_name == group


def test_render_changes_only_to_date_and_message_id(repo: Repo) -> None:
    t = template(repo)
    one = render(t, to="a@kth.se", message_id="<1@kth.se>", date=SENT)
    two = render(t, to="b@kth.se", message_id="<2@kth.se>", date=SENT.replace(hour=10))
    differing = [
        (x, y) for x, y in zip(one.split(b"\r\n"), two.split(b"\r\n"), strict=True) if x != y
    ]  # fmt: skip
    assert [x.split(b":")[0] for x, _ in differing] == [b"To", b"Date", b"Message-ID"]


def test_the_renderer_marks_messages_that_need_no_change_for_data(repo: Repo) -> None:
    renderer = Renderer(template(repo), SENT)
    ready = renderer.render(to="a@kth.se", key="1")
    assert type(ready) is DataReady
    # What the transport sends for it without looking is what it would have made of the plain bytes.
    assert _payload(ready) == _payload(bytes(ready)) == bytes(ready) + b".\r\n"
    group = undisclosed_to("Everyone who teaches a course in the spring term at any of the schools of the university")
    assert "\r\n" in group
    folded = renderer.render(to=group, key="2")
    assert type(folded) is bytes


def test_a_body_line_that_starts_with_a_dot_is_left_to_the_transport(repo: Repo) -> None:
    renderer = Renderer(template(repo, bodies={"sv": "Hej!\n.hemligt\n", "en": "Hello!\n"}), SENT)
    message = renderer.render(to="a@kth.se", key="1")
    assert type(message) is bytes and b"\r\n.hemligt\r\n" in message
    assert b"\r\n..hemligt\r\n" in _payload(message)


def test_missing_parts_are_message_errors(repo: Repo) -> None:
    with pytest.raises(MessageError, match=r"body\.en\.txt is missing or empty"):
        template(repo, bodies={"sv": "Hej!\n", "en": "  \n"})
    with pytest.raises(MessageError, match=r"subject\.en is missing"):
        template(repo, mailing_id="2027-02-11-other", changes={"subject": {"en": None}})
    with pytest.raises(MessageError, match="is not a unit in the policy"):
        template(repo, mailing_id="2027-02-12-third", changes={"sender": {"unit": "nowhere"}})


def test_delivery_mode(repo: Repo) -> None:
    assert delivery_mode(load(repo), repo.policy) == "bulk"
    individual = load(repo, "2027-02-11-other", changes={"delivery": {"mode": "individual"}})
    assert delivery_mode(individual, repo.policy) == "individual"


def test_preview_shows_what_a_recipient_reads(repo: Repo) -> None:
    text = preview_text(load(repo), repo.policy, SENT)
    head, _, body = text.partition("\n\n")
    assert head.splitlines()[:4] == [
        "From: KTH IT <noreply@kth.se>",
        "Reply-To: Anna Andersson <anna.andersson@kth.se>",
        "Subject: Nytt system för resebokning / New travel booking system",
        "To: All employees who book business travel:;",
    ]
    assert "X-Mailing-Id: 2027-02-10-travel" in head.splitlines()
    assert body.startswith("Hej!\n\nFrån den 1 mars") and DIVIDER in body


def test_preview_of_individual_delivery(repo: Repo) -> None:
    mailing = load(repo, changes={"delivery": {"mode": "individual"}})
    assert "To: (each recipient's own address)" in preview_text(mailing, repo.policy, SENT).splitlines()

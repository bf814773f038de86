"""`mailings site` on a real repository (one mailing sent for real into a Maildir): the files it writes, what
they say, and what they never say (an address from a recipient list)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from icalendar import Calendar

from tests.conftest import run_command
from tests.website.conftest import (
    CANCELLED,
    HELD,
    JULY,
    NOW,
    SCRIPTED,
    SENT,
    Site,
    build,
    make_repo,
)

ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


class Days(HTMLParser):
    """Each day item of a month page: its classes and its text; and which mailings stand in it."""

    def __init__(self) -> None:
        super().__init__()
        self.classes: dict[str, set[str]] = {}
        self.text: dict[str, str] = {}
        self.mailings: dict[str, list[str]] = {}
        self._day: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "li" and (attributes.get("id") or "").startswith("day-"):
            self._day = (attributes["id"] or "").removeprefix("day-")
            self.classes[self._day] = set((attributes.get("class") or "").split())
            self.text[self._day], self.mailings[self._day], self._depth = "", [], 0
        elif tag == "li" and self._day is not None:
            self._depth += 1
            if attributes.get("data-mailing"):
                self.mailings[self._day].append(attributes["data-mailing"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "li" and self._day is not None:
            if self._depth == 0:
                self._day = None
            else:
                self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._day is not None:
            self.text[self._day] += data


def days(path: Path) -> Days:
    parser = Days()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_it_writes_a_page_per_month_and_per_mailing_and_a_feed(site: Site) -> None:
    names = sorted(str(p.relative_to(site.out)) for p in site.out.rglob("*") if p.is_file())
    months = [f"2027-{m:02d}.html" for m in range(2, 8)]
    pages = [f"mailings/{i}.html" for i in sorted((SENT, SCRIPTED, HELD, CANCELLED, JULY))]
    assert names == sorted([*months, *pages, "index.html", "mailings.ics", "site.css"])
    assert (site.out / "index.html").read_text() == (site.out / "2027-02.html").read_text()  # today's month
    assert site.output == (
        f"wrote the calendar site to {site.out / 'index.html'}: 6 month(s), 5 mailing page(s) and mailings.ics\n"
    )


def test_each_mailing_stands_on_its_day_with_its_state(site: Site) -> None:
    february, july = days(site.out / "2027-02.html"), days(site.out / "2027-07.html")
    assert {day: ids for day, ids in february.mailings.items() if ids} == {
        "2027-02-10": [SENT], "2027-02-11": [HELD], "2027-02-12": [SCRIPTED], "2027-02-16": [CANCELLED]
    }  # fmt: skip
    assert {day: ids for day, ids in july.mailings.items() if ids} == {"2027-07-06": [JULY]}
    assert "600 recipients · sent" in february.text["2027-02-10"]
    assert "550 recipients · held" in february.text["2027-02-11"]
    assert "700 recipients · scheduled" in february.text["2027-02-12"]
    assert "520 recipients · cancelled" in february.text["2027-02-16"]
    assert "KTH Communication and Business Liaison" in february.text["2027-02-12"]


def test_blackout_days_and_holidays_are_shaded_and_say_why(site: Site) -> None:
    july, may = days(site.out / "2027-07.html"), days(site.out / "2027-05.html")
    for number in range(1, 32):
        day = f"2027-07-{number:02d}"
        assert "blackout" in july.classes[day] and "Blackout: July" in july.text[day]
    assert "holiday" in may.classes["2027-05-06"] and "Holiday: Ascension Day" in may.text["2027-05-06"]
    assert "holiday" in may.classes["2027-05-01"] and "Holiday: May Day" in may.text["2027-05-01"]
    working = may.classes["2027-05-05"]
    assert not working & {"holiday", "blackout"} and may.text["2027-05-05"].split() == ["Wed", "5"]
    # No holiday in May but the policy's calendar says so (the lead-time rule's calendar)
    shaded = {day for day, classes in may.classes.items() if "holiday" in classes}
    assert shaded == {"2027-05-01", "2027-05-06", "2027-05-16"}


def test_todays_earliest_allowed_date_is_the_one_mailings_earliest_gives(site: Site) -> None:
    code, output = run_command(["earliest", "--root", str(site.repo.root), "--submitted", NOW])
    assert code == 0
    earliest = output.split()[0]
    assert earliest == "2027-02-24"
    february = days(site.out / "2027-02.html")
    marked = {day for day, classes in february.classes.items() if "earliest" in classes}
    assert marked == {earliest}
    assert "Earliest allowed dispatch date for a request submitted today" in february.text[earliest]
    assert {day for day, classes in february.classes.items() if "today" in classes} == {"2027-02-10"}
    words = " ".join(re.sub(r"<[^>]+>", "", (site.out / "2027-02.html").read_text()).split())
    assert "may be sent on Wednesday 24 February 2027 at the earliest" in words


def test_no_recipient_address_anywhere(site: Site) -> None:
    text = site.text()
    listed = site.recipient_addresses()
    assert len(listed) == 600 + 700 + 550 + 520 + 510
    assert [a for a in listed if a in text] == []
    for prefix in ("traveller", "scripted", "student", "cancelled0@", "summer"):
        assert f"{prefix}0@" not in text
    # The only addresses at all: the sender's (the From a recipient sees) and the feed's event ids.
    found = set(ADDRESS.findall(text))
    uids = {f"mailing-{i}@kth.se" for i in (SENT, SCRIPTED, HELD, CANCELLED, JULY)}
    assert found - uids == {"noreply@kth.se"}
    assert "anna.andersson@kth.se" not in text  # nor the contact person's


def test_a_subject_with_markup_is_text(site: Site) -> None:
    for path in site.out.rglob("*.html"):
        assert "<script" not in path.read_text(encoding="utf-8"), path
    page = (site.out / "mailings" / f"{SCRIPTED}.html").read_text(encoding="utf-8")
    assert "<h1>Hej &lt;script&gt;alert(&#39;sv&#39;)&lt;/script&gt; / Hello &lt;script&gt;" in page


def test_a_mailing_page_shows_the_message_its_state_and_counts(site: Site) -> None:
    page = " ".join((site.out / "mailings" / f"{SENT}.html").read_text(encoding="utf-8").split())
    assert '<span class="state state-sent">sent</span>: every recipient accepted' in page
    for name, count in (("Recipients", 600), ("Accepted", 600), ("Failed", 0), ("Unknown", 0)):
        assert f'<th scope="row">{name}</th><td class="number">{count}</td>' in page
    assert '<th scope="row">Bounced</th><td class="number">0</td>' in page
    assert '<th scope="row">Delivered</th><td class="number">600</td>' in page
    assert "<dt>From</dt><dd>KTH IT &lt;noreply@kth.se&gt;</dd>" in page
    assert "<dt>To</dt><dd>All employees who book business travel</dd>" in page
    assert "<dt>Subject</dt><dd>Nytt system för resebokning / New travel booking system</dd>" in page
    assert "<dt>Date</dt><dd>Wednesday 10 Feb 2027 09:00 CET</dd>" in page
    assert '<section class="body" lang="sv"' in page and '<section class="body" lang="en"' in page
    assert "Från den 1 mars bokar du resor i det nya systemet." in page
    held = (site.out / "mailings" / f"{HELD}.html").read_text(encoding="utf-8")
    state = '<span class="state state-held">held</span>: the date is being discussed (hold in mailing.yaml); nothing'
    assert state in held
    cancelled = (site.out / "mailings" / f"{CANCELLED}.html").read_text(encoding="utf-8")
    assert '<span class="state state-cancelled">cancelled</span>: the event moved;' in cancelled


def test_the_feed_has_one_stable_event_per_mailing(site: Site, tmp_path: Path) -> None:
    feed = Calendar.from_ical((site.out / "mailings.ics").read_bytes())
    events = {str(e["uid"]): e for e in feed.walk("VEVENT")}
    assert set(events) == {f"mailing-{i}@kth.se" for i in (SENT, SCRIPTED, HELD, CANCELLED, JULY)}
    sent = events[f"mailing-{SENT}@kth.se"]
    assert sent.decoded("dtstart") == datetime(2027, 2, 10, 8, 0, tzinfo=UTC)
    assert str(sent["summary"]) == "Mass mailing: Nytt system för resebokning / New travel booking system"
    assert str(events[f"mailing-{CANCELLED}@kth.se"]["status"]) == "CANCELLED"
    assert str(events[f"mailing-{JULY}@kth.se"]["status"]) == "CONFIRMED"
    for event in events.values():
        assert not ADDRESS.search(str(event["summary"]) + str(event["description"]))
        assert "url" not in event
    # Built again a day later, with the address it is published at: the same events, now with links.
    later = build(site.repo, tmp_path / "later", "2027-02-11T12:00:00+01:00", "--base-url", "https://x.example/c/")
    again = {str(e["uid"]): e for e in Calendar.from_ical((later.out / "mailings.ics").read_bytes()).walk("VEVENT")}
    assert set(again) == set(events)
    assert str(again[f"mailing-{JULY}@kth.se"]["url"]) == f"https://x.example/c/mailings/{JULY}.html"


def test_a_mailing_with_no_message_says_why(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo.root / "mailings" / JULY / "body.en.txt").unlink()
    site = build(repo, tmp_path / "out")
    page = " ".join((site.out / "mailings" / f"{JULY}.html").read_text(encoding="utf-8").split())
    assert f"The message cannot be built yet: mailings/{JULY}/body.en.txt is missing or empty." in page


@pytest.mark.parametrize("target", ["file", "root"])
def test_out_must_be_a_directory_of_its_own(tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]) -> None:
    from checks.cli import main

    repo = make_repo(tmp_path / "repo")
    out = tmp_path / "a-file"
    out.write_text("x")
    code = main(["site", "--root", str(repo.root), "--out", str(out if target == "file" else repo.root)])
    assert code == 2
    assert "name a directory" in capsys.readouterr().err


def test_an_out_that_cannot_be_made_is_said_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from checks.cli import main

    repo = make_repo(tmp_path / "repo")
    (tmp_path / "a-file").write_text("x")
    out = tmp_path / "a-file" / "site"  # under a file: no directory can be made there
    assert main(["site", "--root", str(repo.root), "--out", str(out)]) == 2
    said = capsys.readouterr().err
    assert said.startswith(f"mailings: error: cannot build the site in {out} (Not a directory: ")
    assert said.count("\n") == 1


def test_now_is_read_at_the_command_line_only(site: Site, tmp_path: Path) -> None:
    """A site built for another day marks another today and earliest date; the mailings' states follow."""
    later = build(site.repo, tmp_path / "later", "2027-07-01T08:00:00+02:00")
    july = days(later.out / "2027-07.html")
    assert "today" in july.classes["2027-07-01"]
    assert (later.out / "index.html").read_text() == (later.out / "2027-07.html").read_text()
    february = days(later.out / "2027-02.html")
    assert "550 recipients · held" in february.text["2027-02-11"]
    # The July mailing's earliest possible date for a request of today lies after the blackout
    marked = [day for month in ("2027-07", "2027-08") for day, classes in days(later.out / f"{month}.html")
              .classes.items() if "earliest" in classes]  # fmt: skip
    assert marked == ["2027-08-13"]
    assert date.fromisoformat(marked[0]) > date(2027, 7, 31)


def test_several_processes_read_the_same_facts(site: Site) -> None:
    from checks.loader import discover
    from website.facts import read_all

    policy = site.repo.policy
    now = datetime.fromisoformat(NOW)
    directories = discover(site.repo.root)
    alone = read_all(site.repo.root, directories, policy, now, workers=1)
    assert [f.id for f in alone] == [SENT, HELD, SCRIPTED, CANCELLED, JULY]
    assert read_all(site.repo.root, directories, policy, now, workers=2) == alone


def test_a_message_to_each_recipient_shows_no_address_in_to(tmp_path: Path) -> None:
    from tests.conftest import Repo

    (tmp_path / "repo").mkdir()
    repo = Repo(tmp_path / "repo")
    repo.add(SENT, changes={"delivery": {"mode": "individual"}})
    site = build(repo, tmp_path / "out")
    page = (site.out / "mailings" / f"{SENT}.html").read_text(encoding="utf-8")
    assert "<dt>To</dt><dd>(each recipient&#39;s own address)</dd>" in page
    assert set(ADDRESS.findall(site.text())) - {f"mailing-{SENT}@kth.se"} == {"noreply@kth.se"}


def test_the_emergency_brake_shows_as_held(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "braked"
    argv = ["site", "--root", str(site.repo.root), "--out", str(out), "--now", NOW]
    code, written = run_command(argv, {"MAILINGS_HOLD": SCRIPTED})
    assert code == 0
    assert written.startswith(f"MAILINGS_HOLD: held: {SCRIPTED}\n")
    february = days(out / "2027-02.html")
    assert "700 recipients · held" in february.text["2027-02-12"]
    assert "600 recipients · sent" in february.text["2027-02-10"]  # sent before: the brake changes nothing
    page = (out / "mailings" / f"{SCRIPTED}.html").read_text(encoding="utf-8")
    assert '<span class="state state-held">held</span>: MAILINGS_HOLD names it (the emergency brake)' in page


def test_a_broken_request_is_listed_without_a_date(tmp_path: Path) -> None:
    """A request whose mailing.yaml does not parse, or has no time, stands apart; the rest of the site is built."""
    repo = make_repo(tmp_path / "repo")
    repo.add("2027-03-01-broken", yaml_text="send_at: [unclosed\nsubject: <b>x</b>\n")
    repo.add("2027-03-02-no-time", changes={"send_at": "some day"})
    site = build(repo, tmp_path / "out")
    page = " ".join((site.out / "index.html").read_text(encoding="utf-8").split())
    assert '<h2 id="undated-heading">Mailings with no valid send time</h2>' in page
    assert page.count('href="mailings/2027-03-0') == 2
    broken = " ".join((site.out / "mailings" / "2027-03-01-broken.html").read_text(encoding="utf-8").split())
    assert "The message cannot be built yet: send_at is missing or not a valid time." in broken
    assert '<span class="state state-blocked">blocked</span>' in broken
    assert "<b>" not in broken


def test_a_reason_keeps_no_address_and_is_not_cut(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    reason = "ask " + "very " * 60 + "politely: kalle@kth.se knows why"
    path = repo.root / "mailings" / JULY / "mailing.yaml"
    path.write_text(path.read_text(encoding="utf-8") + f"hold: {{reason: '{reason}'}}\n", encoding="utf-8")
    site = build(repo, tmp_path / "out")
    page = " ".join((site.out / "mailings" / f"{JULY}.html").read_text(encoding="utf-8").split())
    assert "politely: &lt;address&gt; knows why (hold in mailing.yaml)" in page
    assert "kalle@kth.se" not in site.text()


def test_a_second_build_removes_the_pages_of_a_request_that_is_gone(tmp_path: Path) -> None:
    import shutil

    repo = make_repo(tmp_path / "repo")
    out = tmp_path / "out"
    build(repo, out)
    (out / "notes.txt").write_text("mine")
    shutil.rmtree(repo.root / "mailings" / JULY)
    build(repo, out)
    assert not (out / "mailings" / f"{JULY}.html").exists() and not (out / "2027-07.html").exists()
    assert (out / "mailings" / f"{SENT}.html").is_file() and (out / "notes.txt").read_text() == "mine"


def test_delivered_is_accepted_less_hard_bounces(tmp_path: Path) -> None:
    """The bounce log (sender.bounces) of the sent mailing: two hard bounces and a soft one of accepted
    recipients, and a hard one of a hash the send log does not know; delivered counts only the first two."""
    import json

    from sender.bounces import log_path
    from sender.journal import replay

    repo = make_repo(tmp_path / "repo")
    accepted = sorted(replay(repo.root / "mailings" / SENT / "sendlog.jsonl").accepted)
    events = [(accepted[0], "hard"), (accepted[1], "hard"), (accepted[2], "soft"), ("0" * 64, "hard")]
    path = log_path(repo.root, SENT)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps({"event": "bounce", "rcpt": h, "kind": k, "time": "2027-02-10T10:00:00+01:00"}) + "\n"
                for h, k in events),
        encoding="utf-8",
    )  # fmt: skip
    site = build(repo, tmp_path / "out")
    page = " ".join((site.out / "mailings" / f"{SENT}.html").read_text(encoding="utf-8").split())
    assert '<th scope="row">Bounced</th><td class="number">2</td>' in page
    assert '<th scope="row">Delivered</th><td class="number">598</td>' in page
    held = " ".join((site.out / "mailings" / f"{HELD}.html").read_text(encoding="utf-8").split())
    assert '<th scope="row">Delivered</th><td class="number">nothing sent yet</td>' in held


def test_a_finished_mailing_is_shown_from_its_logs_summary(tmp_path: Path) -> None:
    """The site is built every hour over every mailing ever sent: a finished log without a bounce is read from its
    summary, never replayed. Shown by garbling every hash before the summary (a replay would see nobody sent)."""
    repo = make_repo(tmp_path / "repo")
    path = repo.root / "mailings" / SENT / "sendlog.jsonl"
    data = path.read_bytes()
    cut = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(re.sub(rb"[0-9a-f]{32}", b"0" * 32, data[:cut]) + data[cut:])
    assert len(path.read_bytes()) == len(data)
    page = " ".join((build(repo, tmp_path / "out").out / "mailings" / f"{SENT}.html").read_text("utf-8").split())
    assert '<span class="state state-sent">sent</span>: every recipient accepted' in page
    for name, count in (("Recipients", 600), ("Accepted", 600), ("Delivered", 600)):
        assert f'<th scope="row">{name}</th><td class="number">{count}</td>' in page

"""The calendar site in a real browser: headless Chromium renders it from a local web server; the tests read the
rendered page (computed styles, visible text, layout) and run axe-core's accessibility check inside it.

Screenshots are kept in tests/artifacts/ (ignored by git); each test prints where."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROJECT
from tests.packages import required
from tests.website.browser import Browser, ensure_axe, ensure_chromium
from tests.website.conftest import CANCELLED, HELD, JULY, SCRIPTED, SENT, Site

ARTIFACTS = PROJECT / "tests" / "artifacts"
DESKTOP = (1280, 900)
PHONE = (390, 844)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def served(site: Site) -> Iterator[str]:
    """The built site over HTTP on a free loopback port: its base address."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site.out)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with Browser(required(ensure_chromium()), tmp_path_factory.mktemp("chromium")) as running:
        yield running


@pytest.fixture(scope="module")
def axe_source() -> str:
    found = ensure_axe()
    if isinstance(found, str):
        pytest.fail(found)
    return found.read_text(encoding="utf-8")


def keep(browser: Browser, name: str) -> Path:
    path = browser.screenshot(ARTIFACTS / name)
    print(f"screenshot: {path}")
    return path


def day_facts(browser: Browser, day: str) -> dict[str, Any]:
    """What the page shows of one day: its visible text, its background, the mailings in it."""
    script = f"""(() => {{
        const day = document.getElementById('day-{day}');
        const style = getComputedStyle(day);
        return {{
            text: day.innerText,
            background: style.backgroundColor + ' ' + style.backgroundImage,
            visible: day.offsetParent !== null,
            mailings: [...day.querySelectorAll('[data-mailing]')].map(m => m.dataset.mailing),
        }};
    }})()"""
    return dict(browser.evaluate(script))


def test_the_month_shows_each_mailing_on_its_day(browser: Browser, served: str) -> None:
    browser.viewport(*DESKTOP)
    browser.open(f"{served}/2027-02.html")
    keep(browser, "site-month-desktop.png")
    expected = {"2027-02-10": [SENT], "2027-02-11": [HELD], "2027-02-12": [SCRIPTED], "2027-02-16": [CANCELLED]}
    for day in (f"2027-02-{number:02d}" for number in range(1, 29)):
        facts = day_facts(browser, day)
        assert facts["mailings"] == expected.get(day, []), day
    sent = day_facts(browser, "2027-02-10")["text"]
    assert "Nytt system för resebokning / New travel booking system" in sent
    assert "KTH IT" in sent and "600 recipients" in sent and "sent" in sent
    # The subject with markup is text on the page, and no script came with it.
    scripted = day_facts(browser, "2027-02-12")["text"]
    assert "Hej <script>alert('sv')</script>" in scripted
    assert browser.evaluate("document.scripts.length") == 0
    # Seven columns, Monday first: the 1st (a Monday) and the 7th (a Sunday) on one row.
    boxes = browser.evaluate(
        "['2027-02-01', '2027-02-07', '2027-02-08'].map(d => document.getElementById('day-' + d)"
        ".getBoundingClientRect()).map(r => [Math.round(r.left), Math.round(r.top)])"
    )
    assert boxes[0][1] == boxes[1][1] and boxes[0][0] < boxes[1][0] and boxes[2][1] > boxes[0][1]


def test_blackout_days_and_holidays_are_shaded_and_labelled(browser: Browser, served: str) -> None:
    browser.viewport(*DESKTOP)
    browser.open(f"{served}/2027-07.html")
    keep(browser, "site-july-desktop.png")
    july = [day_facts(browser, f"2027-07-{n:02d}") for n in range(1, 32)]
    assert all("Blackout: July" in day["text"] for day in july)
    assert len({day["background"] for day in july}) == 1
    assert day_facts(browser, "2027-07-06")["mailings"] == [JULY]
    browser.open(f"{served}/2027-05.html")
    working = day_facts(browser, "2027-05-05")
    holiday = day_facts(browser, "2027-05-06")
    assert "Holiday: Ascension Day" in holiday["text"] and "Holiday" not in working["text"]
    assert holiday["background"] != working["background"]
    assert july[0]["background"] not in (working["background"], holiday["background"])


def test_todays_earliest_dispatch_date_is_marked(browser: Browser, served: str) -> None:
    browser.viewport(*DESKTOP)
    browser.open(f"{served}/index.html")
    earliest = day_facts(browser, "2027-02-24")
    assert "Earliest allowed dispatch date for a request submitted today" in earliest["text"]
    marked = browser.evaluate("[...document.querySelectorAll('.day.earliest')].map(d => d.id)")
    assert marked == ["day-2027-02-24"]
    outline = browser.evaluate("getComputedStyle(document.getElementById('day-2027-02-24')).boxShadow")
    assert outline != "none"
    assert "Today" in day_facts(browser, "2027-02-10")["text"]


def test_a_mailing_page_shows_the_message(browser: Browser, served: str) -> None:
    browser.viewport(*PHONE, mobile=True)
    browser.open(f"{served}/mailings/{SENT}.html")
    keep(browser, "site-mailing-phone.png")
    headers = browser.evaluate(
        "[...document.querySelectorAll('.message .headers dt')].map(dt => [dt.innerText, dt.nextElementSibling"
        ".innerText])"
    )
    assert headers == [
        ["From", "KTH IT <noreply@kth.se>"],
        ["To", "All employees who book business travel"],
        ["Subject", "Nytt system för resebokning / New travel booking system"],
        ["Date", "Wednesday 10 Feb 2027 09:00 CET"],
    ]
    bodies = browser.evaluate(
        "[...document.querySelectorAll('.message .body')].map(b => [b.lang, b.querySelector('.text').innerText])"
    )
    assert [lang for lang, _ in bodies] == ["sv", "en"]
    assert bodies[0][1].startswith("Hej!\n\nFrån den 1 mars bokar du resor i det nya systemet.")
    assert "From 1 March you book travel in the new system." in bodies[1][1]
    main = browser.evaluate("document.querySelector('main').innerText")
    assert "sent: every recipient accepted" in main
    # Nothing wider than the phone's screen: no sideways scrolling.
    assert browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_the_month_reads_on_a_phone(browser: Browser, served: str) -> None:
    browser.viewport(*PHONE, mobile=True)
    browser.open(f"{served}/2027-02.html")
    keep(browser, "site-month-phone.png")
    assert browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # One day under the other, the days with nothing to say left out; the mailings all there.
    boxes = browser.evaluate(
        "['2027-02-10', '2027-02-11'].map(d => document.getElementById('day-' + d).getBoundingClientRect())"
        ".map(r => [Math.round(r.left), Math.round(r.top)])"
    )
    assert boxes[0][0] == boxes[1][0] and boxes[0][1] < boxes[1][1]
    assert not day_facts(browser, "2027-02-02")["visible"] and day_facts(browser, "2027-02-10")["visible"]
    assert day_facts(browser, "2027-02-24")["visible"]  # the earliest date is news


def test_no_recipient_address_in_any_rendered_page(browser: Browser, served: str, site: Site) -> None:
    listed = site.recipient_addresses()
    assert listed
    pages = ["index.html", *(p.name for p in site.out.glob("2027-*.html"))]
    pages += [f"mailings/{p.name}" for p in (site.out / "mailings").glob("*.html")]
    for page in pages:
        browser.open(f"{served}/{page}")
        dom = browser.evaluate("document.documentElement.outerHTML + '\\n' + document.body.innerText")
        assert [a for a in listed if a in dom] == [], page
        assert "anna.andersson@kth.se" not in dom, page


@pytest.mark.parametrize(
    ("page", "size", "mobile"),
    [
        ("2027-02.html", DESKTOP, False),
        ("2027-07.html", DESKTOP, False),
        ("2027-02.html", PHONE, True),
        (f"mailings/{SENT}.html", DESKTOP, False),
        (f"mailings/{SCRIPTED}.html", PHONE, True),
    ],
)
def test_pages_pass_axe(
    browser: Browser, served: str, axe_source: str, page: str, size: tuple[int, int], mobile: bool
) -> None:
    browser.viewport(*size, mobile=mobile)
    browser.open(f"{served}/{page}")
    violations = browser.axe(axe_source)
    assert violations == [], json.dumps(violations, indent=2)


def test_axe_finds_what_it_should(browser: Browser, served: str, axe_source: str, site: Site) -> None:
    """The check itself works: a page with an image without a text alternative and grey on grey fails it."""
    (site.out / "broken.html").write_text(
        '<!doctype html><html lang="en"><head><title>Broken</title></head><body><main><h1>Broken</h1>'
        '<img src="site.css"><p style="color:#bbb;background:#ccc">Hard to read</p></main></body></html>',
        encoding="utf-8",
    )
    browser.viewport(*DESKTOP)
    browser.open(f"{served}/broken.html")
    found = {v["id"]: v["impact"] for v in browser.axe(axe_source)}
    assert found == {"image-alt": "critical", "color-contrast": "serious"}

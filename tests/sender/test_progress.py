"""Progress while sending (a bar on a terminal, plain lines in a log) and the summary, with a fake clock."""

from __future__ import annotations

import io
from collections import Counter

from sender.dispatch import Outcome
from sender.progress import StreamProgress, render_line, summary_line, write_summary
from sender.state import MailingState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_line_shows_counts_rate_and_time_left() -> None:
    line = render_line("2027-02-10-travel", 250, 2, 348, 600, 120.0)
    assert line == (
        "2027-02-10-travel [##########--------------]  42% 250 accepted, 2 failed, 348 pending, 120/s, 3 s left"
    )
    assert render_line("m", 0, 0, 600, 600, None).endswith("0 accepted, 0 failed, 600 pending, -/s, ? left")
    assert render_line("m", 600, 0, 0, 600, 50.0).endswith("50/s, done")
    assert render_line("m", 0, 0, 6000, 6000, 1.0).endswith("1 h 40 min left")


def test_on_a_terminal_one_line_is_redrawn_in_place() -> None:
    stream, clock = io.StringIO(), Clock()
    bar = StreamProgress(stream, clock, tty=True).begin("m", 300)
    for done in range(0, 301, 100):
        clock.now += 1.0
        bar.update(done, 0, 300 - done)
    bar.finish()
    text = stream.getvalue()
    assert text.count("\r") == 5 and text.count("\n") == 1 and text.endswith("\n")
    assert "300 accepted, 0 failed, 0 pending, 75/s, done" in text.splitlines()[-1]  # 300 in 4 s


def test_in_a_log_a_plain_line_every_few_seconds_and_the_last_state() -> None:
    stream, clock = io.StringIO(), Clock()
    bar = StreamProgress(stream, clock, tty=False).begin("m", 1300)
    for second in range(13):
        clock.now = 1000.0 + second
        bar.update(second * 100, 0, 1300 - second * 100)
    bar.finish()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [line.split("] ")[1].split(" accepted")[0].split()[-1] for line in lines] == ["0", "500", "1000", "1200"]


def test_the_rate_counts_only_this_runs_work() -> None:
    stream, clock = io.StringIO(), Clock()
    bar = StreamProgress(stream, clock, tty=False).begin("m", 1000)
    bar.update(800, 0, 200)  # an earlier run sent 800
    clock.now += 10.0
    bar.update(900, 0, 100)
    assert ", 10/s, 10 s left" in stream.getvalue().splitlines()[-1]


def test_the_summary_has_a_line_per_mailing_acted_on_and_one_for_the_rest() -> None:
    sent = Outcome(
        "a",
        MailingState.SENT_WITH_FAILURES,
        "complete",
        acted=True,
        total=600,
        accepted=598,
        failed=2,
        sent_now=598,
        messages_now=6,
        failures=Counter({550: 2}),
    )
    blocked = Outcome("b", MailingState.BLOCKED, "mailings/b/body.en.txt:3:6: [plain-text] ...", ok=False, acted=True)
    idle = [Outcome("c", MailingState.SCHEDULED, "later"), Outcome("d", MailingState.SENT, "earlier")]
    stream = io.StringIO()
    write_summary([sent, blocked, *idle], stream)
    assert stream.getvalue().splitlines() == [
        "a: sent-with-failures: 598 accepted, 2 failed (550 x2 in this run), 0 pending of 600; "
        "this run: 598 accepted in 6 transactions; complete",
        "b: blocked: mailings/b/body.en.txt:3:6: [plain-text] ...",
        "nothing to do for 2 other mailings (1 scheduled, 1 sent)",
    ]
    assert summary_line(blocked) == "b: blocked: mailings/b/body.en.txt:3:6: [plain-text] ..."

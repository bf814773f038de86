"""`mailings plan`: the mailings scheduled around a request, and the audience they share, counted on keyed hashes."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from checks.audience import digests, run_key
from checks.cli import main
from checks.policy import Policy
from tests.conftest import Repo, addresses, git

MAILING = "2027-02-10-travel"
NOW = datetime.fromisoformat("2027-02-09T10:00:00+01:00")


@pytest.fixture
def scheduled(repo: Repo, plain_git: None) -> Repo:
    """main holds mailings around 10 February 2027; HEAD is a branch that adds MAILING (3,000 addresses)."""
    for day, count, prefix in [
        ("2027-02-04", 600, "thu"),  # four working days before: not around it
        ("2027-02-05", 600, "fri"),  # three working days before
        ("2027-02-08", 2400, "user"),  # two days before, to 2,400 of the same people
        ("2027-02-15", 700, "user"),  # three working days after, 700 of the same
        ("2027-02-16", 600, "user"),  # four working days after
    ]:
        repo.add(
            f"{day}-news-{prefix}", changes={"send_at": f"{day} 10:00"}, recipients=addresses(count, prefix=prefix)
        )
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "Scheduled mailings")
    git(repo.root, "switch", "--quiet", "--create", "request")
    repo.add(MAILING, recipients=addresses(3000))
    return repo


def around(repo: Repo, capsys: pytest.CaptureFixture[str]) -> list[str]:
    code = main(["plan", "--root", str(repo.root), "--changed-since", "main", "--submitted", "2027-01-11"])
    captured = capsys.readouterr()
    assert (code, captured.err) == (0, "")
    return captured.out.split("#### Mailings around it\n\n")[1].split("\n\n#### ")[0].splitlines()


def test_the_mailings_within_three_working_days_and_a_shared_audience(
    scheduled: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert around(scheduled, capsys) == [
        "- **⚠ Shared audience:** 2,400 of these recipients get another mass mailing two days earlier "
        "(` 2027-02-08-news-user `, 2,400 recipients)",
        "",
        "| Mailing | Dispatch | Sender | Recipients | Shared with this one | State |",
        "| --- | --- | --- | --- | --- | --- |",
        "| 2027\\-02\\-05\\-news\\-fri | Fri 5 Feb 10:00 (five days earlier) | it | 600 | 0 | scheduled |",
        "| 2027\\-02\\-08\\-news\\-user | Mon 8 Feb 10:00 (two days earlier) | it | 2,400 | 2,400 | scheduled |",
        "| 2027\\-02\\-15\\-news\\-user | Mon 15 Feb 10:00 (five days later) | it | 700 | 700 | scheduled |",
        "",
        "Shared recipients are counted on keyed hashes made for this run: no address is compared in the clear or "
        "shown.",
    ]


def test_special_lists_count_at_their_size_when_both_use_them(
    scheduled: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    lists = {"recipients": {"lists": [{"file": "recipients.txt"}, {"special": "all-employees"}]}}
    scheduled.add(
        "2027-02-11-staff", changes={"send_at": "2027-02-11 09:00", **lists}, recipients=addresses(600, prefix="x")
    )
    shutil.rmtree(scheduled.root / "mailings" / MAILING)
    scheduled.add(MAILING, changes=lists, recipients=addresses(600, prefix="y"))
    lines = around(scheduled, capsys)
    assert lines[0] == (
        "- **⚠ Shared audience:** 5,500 of these recipients get another mass mailing one day later "
        "(` 2027-02-11-staff `, 6,100 recipients, counting all-employees at its approximate size)"
    )
    assert lines[-1].endswith(
        "IT's special lists cannot be read by the check: a list both mailings use counts at its approximate size; "
        "one only this mailing uses is not compared."
    )


def test_no_mailing_around_it(repo: Repo, plain_git: None, capsys: pytest.CaptureFixture[str]) -> None:
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "Policy")
    repo.add(MAILING)
    repo.add("2027-02-16-later", changes={"send_at": "2027-02-16 09:00"})
    assert around(repo, capsys)[-1] == "No other mailing is scheduled within three working days of this one."


def test_digests_are_keyed_for_the_run() -> None:
    key, other = run_key(), run_key()
    assert key != other and len(key) == 32
    mine = digests(["anna@kth.se", "bo@kth.se"], key)
    assert digests(["bo@kth.se"], key) <= mine  # the same key compares within a run
    assert not digests(["anna@kth.se"], other) & mine  # another run's key gives other digests
    # nobody without the key can recompute one from a guessed address
    assert hashlib.blake2b(b"anna@kth.se", digest_size=16).digest() not in mine


def test_a_busy_week_stays_short(repo: Repo, plain_git: None, capsys: pytest.CaptureFixture[str]) -> None:
    for number in range(17):
        repo.add(f"2027-02-11-busy-{number:02d}", changes={"send_at": "2027-02-11 09:00"}, recipients=addresses(5))
    repo.add("2027-02-12-same", changes={"send_at": "2027-02-12 09:00"}, recipients=addresses(600, prefix="user"))
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "A busy week")
    git(repo.root, "switch", "--quiet", "--create", "request")
    repo.add(MAILING)
    lines = around(repo, capsys)
    assert lines[0].startswith(
        "- **⚠ Shared audience:** 600 of these recipients get another mass mailing two days later"
    )
    assert "<details><summary>18 other mailings within three working days</summary>" in lines
    rows = [line for line in lines if line.startswith("| 2027")]
    assert len(rows) == 15
    assert rows[-1].startswith("| 2027\\-02\\-12\\-same |")  # the heavy overlap is shown, however far
    assert "And 3 more, together 15 recipients, 15 of them shared with this one." in lines
    assert lines[-3:-1] == ["</details>", ""]


SENT = "2027-02-08-news-user"
LOG_KEY = "plan-around-log-key-0123456789abcdef0123"
SENT_ROW = "| 2027\\-02\\-08\\-news\\-user | Mon 8 Feb 10:00 (two days earlier) | it | 600 | 600 | "


def send_neighbour(repo: Repo, outbox: Path) -> None:
    """SENT (600 addresses, two days before MAILING) sent in full to a Maildir, as the dispatch job would."""
    from checks.cli import build_parser

    repo.add(SENT, changes={"send_at": "2027-02-08 10:00"}, recipients=addresses(600, prefix="user"))
    command = ["send", "--root", str(repo.root), "--now", "2027-02-08T10:05:00+01:00", "--outbox", str(outbox)]
    args = build_parser().parse_args(command)
    out = io.StringIO()
    assert args.func(args, {"MAILINGS_LOG_KEY": LOG_KEY}, out) == 0, out.getvalue()


def request_on_top(repo: Repo) -> None:
    """What *repo* holds becomes main, and a branch adds MAILING."""
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "A sent mailing")
    git(repo.root, "switch", "--quiet", "--create", "request")
    repo.add(MAILING, recipients=addresses(3000))


def test_a_sent_mailing_around_it_shows_what_was_delivered(
    repo: Repo, plain_git: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Delivered = accepted less hard bounces, from the neighbour's send log and bounce log (sender.bounces)."""
    from sender.bounces import Verdict, record
    from sender.journal import make_hasher, replay

    send_neighbour(repo, tmp_path / "outbox")
    accepted = sorted(replay(repo.root / "mailings" / SENT / "sendlog.jsonl").accepted)
    assert len(accepted) == 600
    hasher = make_hasher(LOG_KEY)
    bounced = [Verdict(f"b{n}", SENT, ((accepted[n], "hard", hasher.key_check),), "batch") for n in range(3)]
    record(repo.root, [*bounced, Verdict("s", SENT, ((accepted[5], "soft", hasher.key_check),), "batch")], NOW)
    request_on_top(repo)
    rows = [line for line in around(repo, capsys) if line.startswith("| 2027")]
    assert rows == [SENT_ROW + "sent: 597 delivered of 600 accepted |"]


def test_a_finished_mailing_is_dated_by_the_index_and_only_while_its_entry_holds(
    repo: Repo,
    plain_git: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Years of sent mailings cost a stat each: their send_at comes from the index of finished mailings
    (sender.finished), not from a read of each mailing.yaml; a log that is not the one indexed is read as before."""
    import checks.around

    send_neighbour(repo, tmp_path / "outbox")
    assert SENT in (repo.root / "finished-mailings.jsonl").read_text()
    request_on_top(repo)
    read: list[str] = []
    reader = checks.around._send_at

    def recorded(directory: Path, policy: Policy) -> datetime | None:
        read.append(directory.name)
        return reader(directory, policy)

    monkeypatch.setattr(checks.around, "_send_at", recorded)
    row = SENT_ROW + "sent: 600 delivered of 600 accepted |"
    assert [line for line in around(repo, capsys) if line.startswith("| 2027")] == [row]
    assert read == [MAILING]  # the sent one's date came from the index

    # An entry that names another size than the log's does not vouch for it: mailing.yaml is read.
    index = repo.root / "finished-mailings.jsonl"
    entry = json.loads(index.read_text())
    index.write_text(json.dumps({**entry, "size": entry["size"] + 1}) + "\n")
    read.clear()
    assert [line for line in around(repo, capsys) if line.startswith("| 2027")] == [row]
    assert sorted(read) == sorted([MAILING, SENT])

"""The index of finished mailings (sender.finished): a run that finishes a mailing indexes it, later runs and
`mailings status` take it as finished from one stat of its log, and anything doubtful (an entry that no longer
fits the log, a garbled or doubled line, no index at all) falls back to reading the log, so that a finished
mailing is never sent again and one that is not finished is still sent. Real files, a real SMTP server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sender import dispatch
from sender.finished import INDEX_FILE, merged, parse_index
from tests.conftest import Repo
from tests.sender.sending import MAILING, NOW, log_of, log_path, recipients
from tests.sender.smtpserver import Faults, FaultyHandler, RunningServer
from tests.sender.test_cli_send import relay, run

LATER = "2027-02-10T09:20:00+01:00"
OPEN = "2027-05-03-survey"  # still to come when the status below is asked


def index(repo: Repo) -> Path:
    return repo.root / INDEX_FILE


def entries(repo: Repo) -> list[dict[str, Any]]:
    return [json.loads(line) for line in index(repo).read_bytes().splitlines()]


def send(repo: Repo, server: RunningServer, now: str = NOW) -> str:
    code, out = run(["send", "--root", str(repo.root), "--now", now], relay(server))
    assert code == 0, out
    return out


class Reads:
    """Counts the reads of a finished log's summary and of a request, which an indexed mailing needs neither of."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.summaries: list[str] = []
        self.requests: list[str] = []
        read_finished, load_mailing = dispatch.read_finished, dispatch.load_mailing

        def counted_summary(path: Any) -> Any:
            self.summaries.append(str(path))
            return read_finished(path)

        def counted_request(root: Path, directory: Path, *args: Any, **kwargs: Any) -> Any:
            self.requests.append(Path(directory).name)
            return load_mailing(root, directory, *args, **kwargs)

        monkeypatch.setattr(dispatch, "read_finished", counted_summary)
        monkeypatch.setattr(dispatch, "load_mailing", counted_request)


def test_a_run_that_finishes_a_mailing_indexes_it_and_later_runs_read_nothing_of_it(
    repo: Repo, smtp_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.add()
    send(repo, smtp_server)
    size = len(log_path(repo).read_bytes())
    assert entries(repo) == [
        {"id": MAILING, "size": size, "state": "sent", "failed": 0, "send_at": "2027-02-10T09:00+01:00"}
    ]
    reads = Reads(monkeypatch)
    out = send(repo, smtp_server, LATER)
    assert "nothing to do for 1 other mailing (1 sent)" in out
    assert (reads.summaries, reads.requests) == ([], [])  # one stat: neither its log nor its request was read
    assert len(smtp_server.handler.recipients()) == 600  # never sent again
    assert len(log_path(repo).read_bytes()) == size and len(entries(repo)) == 1  # nothing written


def test_a_log_that_is_not_finished_is_resumed_whatever_the_index_says(
    repo: Repo, make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.add()
    late = recipients(600)[:2]
    first = make_server(FaultyHandler(Faults(temp_fail={address: None for address in late})))
    send(repo, first)
    assert not log_of(repo).complete and not index(repo).exists()  # deferred recipients: not finished, not indexed
    size = len(log_path(repo).read_bytes())
    # An entry that does not fit the log (a stale or forged one): the log is read, and the mailing resumed.
    line = {"id": MAILING, "size": size + 1, "state": "sent", "failed": 0, "send_at": "2027-02-10T09:00+01:00"}
    index(repo).write_text(json.dumps(line) + "\n", encoding="utf-8")
    second = make_server(FaultyHandler())
    out = send(repo, second, LATER)
    assert sorted(second.handler.recipients()) == sorted(late), out
    assert log_of(repo).complete
    # The entry that no longer holds is not replaced (a person should look at it: `status --verify` names it).
    assert entries(repo) == [line]
    code, out = run(["status", "--root", str(repo.root), "--now", LATER, "--verify"])
    assert code == 1 and f"{INDEX_FILE}: {MAILING}: indexed as finished, but its send log is not" in out


def test_without_an_index_the_summary_is_read_and_the_mailing_indexed_again(
    repo: Repo, smtp_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.add()
    send(repo, smtp_server)
    written = index(repo).read_bytes()
    index(repo).unlink()
    reads = Reads(monkeypatch)
    out = send(repo, smtp_server, LATER)
    assert "(1 sent)" in out and len(smtp_server.handler.recipients()) == 600
    assert len(reads.summaries) == 1 and reads.requests == []  # the summary alone, as before the index
    assert index(repo).read_bytes() == written  # the same line: two runs that index a mailing agree
    code, _ = run(["send", "--root", str(repo.root), "--now", LATER, "--dry-run"], relay(smtp_server))
    assert code == 0 and index(repo).read_bytes() == written


@pytest.mark.parametrize(
    "garbled",
    [
        b"not json at all\n",  # a line that is no entry is skipped
        b'{"id": "2027-02-10-travel", "size": 1, "state": "sent", "failed": 0, "send_at": null}\n',  # doubled
        b'{"id": "2027-02-10-travel", "size": 1, "state": "sent", "failed": 3, "send_at": null}\n',  # inconsistent
        b'{"id": "2027-02-10-travel", "size": 1, "state": "missed", "failed": 0, "send_at": null}\n',  # not final
        b'{"id": "2027-02-10-travel", "size',  # cut short by a killed run
    ],
)
def test_a_garbled_index_falls_back_to_the_log(
    repo: Repo, smtp_server: RunningServer, monkeypatch: pytest.MonkeyPatch, garbled: bytes
) -> None:
    repo.add()
    send(repo, smtp_server)
    good = index(repo).read_bytes()
    index(repo).write_bytes(good + garbled)
    reads = Reads(monkeypatch)
    out = send(repo, smtp_server, LATER)
    assert "(1 sent)" in out and len(smtp_server.handler.recipients()) == 600
    doubled = garbled.startswith(b'{"id": "2027-02-10-travel", "size": 1, "state": "sent", "failed": 0')
    assert len(reads.summaries) == (1 if doubled else 0)  # two different lines for it: neither is trusted
    assert index(repo).read_bytes().startswith(good + garbled)  # a run never rewrites it, and adds no second line
    assert index(repo).read_bytes().count(b'"size"') == good.count(b'"size"') + garbled.count(b'"size"')


def test_a_mailing_with_recipients_whose_outcome_is_unknown_is_never_indexed(
    repo: Repo, smtp_server: RunningServer
) -> None:
    repo.add()
    lines = [
        {"event": "claim", "time": "2027-02-10T09:01:00.000+01:00", "run": "r1", "digest": "sha256:x"},
        {"event": "start", "time": "2027-02-10T09:01:00.000+01:00", "run": "r1", "recipients": 600},
        {"event": "unknown", "time": "2027-02-10T09:02:00.000+01:00", "run": "r1", "batch": "c", "rcpt": ["a" * 32]},
        {"event": "end", "time": "2027-02-10T09:03:00.000+01:00", "run": "r1", "complete": True, "unknown": 1},
    ]
    log_path(repo).write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    send(repo, smtp_server, LATER)
    assert log_of(repo).complete and not index(repo).exists()  # a resume may still send them: read every time
    assert smtp_server.handler.recipients() == []


def test_status_lists_what_is_current_and_counts_the_older_finished_mailings(
    repo: Repo, smtp_server: RunningServer
) -> None:
    repo.add()
    send(repo, smtp_server)
    repo.add(OPEN, changes={"send_at": "2027-05-03 09:00"})
    soon = "2027-03-01T12:00:00+01:00"  # 19 days after the first was sent: still listed
    code, out = run(["status", "--root", str(repo.root), "--now", soon])
    assert code == 0 and MAILING in out and OPEN in out and "not listed" not in out
    later = "2027-04-20T12:00:00+02:00"  # more than 30 days after: counted, not listed
    code, out = run(["status", "--root", str(repo.root), "--now", later])
    assert code == 0 and OPEN in out and "scheduled" in out and MAILING not in out
    assert out.endswith("and 1 finished mailing sent before 2027-03-21, not listed (--all lists every mailing)\n")
    code, every = run(["status", "--root", str(repo.root), "--now", later, "--all"])
    assert code == 0 and MAILING in every and OPEN in every and "not listed" not in every
    code, raw = run(["status", "--root", str(repo.root), "--now", later, "--format", "json"])
    document = json.loads(raw)
    assert [row["id"] for row in document["mailings"]] == [OPEN]
    assert document["finished_before"] == {"send_at_before": "2027-03-21T12:00+01:00", "count": 1}
    # The same without the index: the summary says the mailing is finished, and when it was to be sent.
    index(repo).unlink()
    assert run(["status", "--root", str(repo.root), "--now", later]) == (0, out)
    code, raw = run(["status", "--root", str(repo.root), "--now", later, "--all", "--format", "json"])
    assert [row["id"] for row in json.loads(raw)["mailings"]] == [MAILING, OPEN]
    assert "finished_before" not in json.loads(raw)


def test_status_with_only_older_finished_mailings_says_so(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    send(repo, smtp_server)
    code, out = run(["status", "--root", str(repo.root), "--now", "2027-06-01T12:00:00+02:00"])
    assert (code, out) == (0, "1 finished mailing sent before 2027-05-02, not listed (--all lists every mailing)\n")


def test_status_counts_the_older_cancelled_mailings_as_it_counts_the_finished_ones(
    repo: Repo, smtp_server: RunningServer
) -> None:
    """Cancelled is final too: one whose send_at is more than 30 days past is counted, not listed."""
    repo.add()
    send(repo, smtp_server)
    repo.add(OPEN, changes={"send_at": "2027-02-11 09:00", "cancel": {"reason": "The event moved."}})
    send(repo, smtp_server, "2027-02-11T09:05:00+01:00")  # records the cancellation
    code, out = run(["status", "--root", str(repo.root), "--now", "2027-02-20T12:00:00+01:00"])
    assert code == 0 and f"{OPEN}" in out and "    cancelled: The event moved.; nothing more is ever sent" in out
    later = "2027-06-01T12:00:00+02:00"
    code, out = run(["status", "--root", str(repo.root), "--now", later])
    assert (code, out) == (
        0,
        "1 finished mailing sent and 1 cancelled mailing that was to be sent before 2027-05-02, not listed "
        "(--all lists every mailing)\n",
    )
    code, raw = run(["status", "--root", str(repo.root), "--now", later, "--format", "json"])
    document = json.loads(raw)
    assert document["mailings"] == []
    assert document["cancelled_before"] == {"send_at_before": "2027-05-02T12:00+02:00", "count": 1}
    code, every = run(["status", "--root", str(repo.root), "--now", later, "--all"])
    assert OPEN in every and MAILING in every


def test_merging_keeps_mains_lines_and_adds_only_the_mailings_it_lacks() -> None:
    a = b'{"id": "a", "size": 10, "state": "sent", "failed": 0, "send_at": null}\n'
    b = b'{"id": "b", "size": 20, "state": "sent-with-failures", "failed": 2, "send_at": null}\n'
    c = b'{"id": "c", "size": 30, "state": "sent", "failed": 0, "send_at": "2027-02-10T09:00+01:00"}\n'
    assert merged(a + b, a + c) == a + b + c
    assert merged(a + b, a) == a + b  # nothing new: main's bytes as they are
    assert merged(b"", b"garbage\n" + c + c) == c  # lines that are no entry, and repeats, are left out
    assert merged(a.rstrip(b"\n"), c) == a + c
    found = parse_index(a + b + c)
    assert sorted(found) == ["a", "b", "c"] and found["b"] is not None and found["b"].failed == 2


def test_verify_names_an_index_entry_that_its_log_does_not_bear_out(repo: Repo, smtp_server: RunningServer) -> None:
    repo.add()
    send(repo, smtp_server)
    assert run(["status", "--root", str(repo.root), "--now", LATER, "--verify"])[0] == 0
    [line] = entries(repo)
    wrong = {**line, "state": "sent-with-failures", "failed": 2}  # fits the log's size, not its summary
    index(repo).write_text(json.dumps(wrong) + "\n", encoding="utf-8")
    code, out = run(["status", "--root", str(repo.root), "--now", LATER, "--verify"])
    assert code == 1 and f"{INDEX_FILE}: {MAILING}: the index entry does not say what the log's summary says" in out
    index(repo).write_text(json.dumps(line) + "\n" + json.dumps({**line, "size": 5}) + "\n", encoding="utf-8")
    code, out = run(["status", "--root", str(repo.root), "--now", LATER, "--verify"])
    assert code == 1 and f"{INDEX_FILE}: {MAILING}: indexed twice, with different lines" in out


def test_a_line_that_is_not_one_entry_is_no_entry_however_the_lines_around_it_read() -> None:
    a = b'{"id": "a", "size": 10, "state": "sent", "failed": 0, "send_at": null}'
    b = b'{"id": "b", "size": 20, "state": "sent", "failed": 0, "send_at": null}'
    # Two objects on one line, and one object cut over two lines: neither line is an entry on its own.
    assert sorted(parse_index(a + b", " + b + b"\n" + b'{"id": "c"\n"size": 1}\n')) == []
    assert sorted(parse_index(a + b"\n" + b + b"\n")) == ["a", "b"]

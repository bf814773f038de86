"""A finished send log ends with its summary, which `mailings send` and `mailings status` read instead of
replaying the log: shown by garbling everything before it (nothing they say changes), by tampering with it
(ignored), and by [immutable] (a summed-up mailing is still sent)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from checks.model import dispatched
from sender.journal import make_hasher, read_finished, replay, replay_lines, summary_event, verify_summary
from tests.conftest import TEST_LOG_KEY, Repo
from tests.sender.sending import MAILING, NOW, log_path, recipients
from tests.sender.smtpserver import Faults, FaultyHandler, RunningServer
from tests.sender.test_cli_send import relay, run

LATER = "2027-02-10T09:20:00+01:00"
HEX = re.compile(rb"[0-9a-f]{32}")


def status(repo: Repo, *more: str) -> tuple[int, str]:
    return run(["status", "--root", str(repo.root), "--now", LATER, *more])


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def sent_with_failures(repo: Repo, make_server: Any) -> RunningServer:
    repo.add()
    server = make_server(FaultyHandler(Faults(perm_fail=recipients(600)[:3])))
    code, out = run(["send", "--root", str(repo.root), "--now", NOW], relay(server))
    assert code == 0, out
    return server


def test_a_finished_log_ends_with_a_summary_that_its_lines_vouch_for(repo: Repo, make_server: Any) -> None:
    sent_with_failures(repo, make_server)
    *events, summary = lines(log_path(repo))
    assert summary["event"] == "summary" and events[-1]["event"] == "end"
    assert (summary["state"], summary["recipients"], summary["accepted"], summary["failed"]) == (
        "sent-with-failures",
        600,
        597,
        3,
    )
    assert summary["send_at"] == "2027-02-10T09:00+01:00" and summary["key_ids"][0][0] == "hmac-sha256-128"
    assert summary["size"] == len(log_path(repo).read_bytes()) - len(json.dumps(summary, separators=(",", ":"))) - 1
    assert verify_summary(log_path(repo)) is None
    # The run summed up from the replay it kept while sending: the same summary a replay of the file makes.
    data = log_path(repo).read_bytes()
    before = data[: data.rstrip(b"\n").rfind(b"\n") + 1]
    replayed = replay_lines(before.split(b"\n"))
    again = summary_event(before, replayed, summary["state"], summary["time"], summary["send_at"])
    assert again == summary
    assert status(repo, "--verify")[0] == 0
    found = read_finished(log_path(repo))
    assert found is not None and (found.accepted, found.failed, found.runs) == (597, 3, 1)
    assert replay(log_path(repo)).complete  # the full replay reads past it


def test_status_and_send_read_the_summary_alone_and_verify_reads_the_whole_log(repo: Repo, make_server: Any) -> None:
    server = sent_with_failures(repo, make_server)
    before_text, before_json = status(repo)[1], status(repo, "--format", "json")[1]
    assert "sent-with-failures" in before_text and "597" in before_text
    # Garble every hash before the summary, keeping the size: a reader of those lines would see nobody sent.
    path = log_path(repo)
    data = path.read_bytes()
    head, summary = data[: data.rstrip(b"\n").rfind(b"\n") + 1], data[data.rstrip(b"\n").rfind(b"\n") + 1 :]
    path.write_bytes(HEX.sub(b"0" * 32, head) + summary)
    assert len(path.read_bytes()) == len(data)
    assert status(repo) == (0, before_text) and status(repo, "--format", "json") == (0, before_json)
    code, out = run(["send", "--root", str(repo.root), "--now", LATER], relay(server))
    assert code == 0 and "sent-with-failures" in out
    assert len(server.handler.recipients()) == 597 and path.read_bytes().endswith(summary)  # nothing sent, written
    code, out = status(repo, "--verify")
    assert code == 1 and f"mailings/{MAILING}/sendlog.jsonl: the log before the summary is not" in out
    code, out = status(repo, "--verify", "--format", "json")
    assert code == 1 and "the log before the summary is not" in json.loads(out)["summary_problems"][0]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s.replace('"accepted":597,"failed":3', '"accepted":600,"failed":0'),  # counts the end denies
        lambda s: s.replace('"recipients":600', '"recipients":601'),  # counts that do not add up
        lambda s: s.replace('"size":', '"size":1'),  # the log it summed up was another size
        lambda s: s[:-3],  # cut short
    ],
)
def test_a_tampered_summary_is_ignored_and_the_log_replayed(repo: Repo, make_server: Any, tamper: Any) -> None:
    sent_with_failures(repo, make_server)
    truth = status(repo)[1]
    path = log_path(repo)
    head, _, last = path.read_text(encoding="ascii").rstrip("\n").rpartition("\n")
    path.write_text(f"{head}\n{tamper(last)}\n", encoding="ascii")
    assert read_finished(path) is None
    assert status(repo) == (0, truth)


def test_a_summary_cannot_call_a_log_finished_that_is_not(repo: Repo, make_server: Any) -> None:
    repo.add()
    server = make_server(FaultyHandler(Faults(temp_fail=dict.fromkeys(recipients(600)[590:]))))
    run(["send", "--root", str(repo.root), "--now", NOW], relay(server))
    path = log_path(repo)
    data = path.read_bytes()
    forged = {"event": "summary", "state": "sent", "recipients": 600, "accepted": 600, "failed": 0, "unknown": 0}
    forged |= {"runs": 1, "size": len(data), "sha256": "0" * 64}
    path.write_bytes(data + json.dumps(forged, separators=(",", ":")).encode() + b"\n")
    assert read_finished(path) is None  # the end before it says 10 are pending
    server.handler.faults = Faults()
    code, out = run(["send", "--root", str(repo.root), "--now", LATER], relay(server))
    assert code == 0 and len(server.handler.recipients()) == 600, out


def test_a_finished_log_without_a_summary_gets_one_from_the_next_run(repo: Repo, make_server: Any) -> None:
    server = sent_with_failures(repo, make_server)
    truth = status(repo)[1]
    path = log_path(repo)
    data = path.read_bytes()
    path.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 1])  # as a log finished before summaries were
    assert read_finished(path) is None and status(repo)[1] == truth
    code, out = run(["send", "--root", str(repo.root), "--now", LATER], relay(server))
    assert code == 0 and len(server.handler.recipients()) == 597, out
    assert path.read_bytes().startswith(data[: data.rstrip(b"\n").rfind(b"\n") + 1])  # only appended to
    assert read_finished(path) is not None and verify_summary(path) is None and status(repo)[1] == truth
    run(["send", "--root", str(repo.root), "--now", LATER], relay(server))
    assert sum(e["event"] == "summary" for e in lines(path)) == 1  # never a second one


def test_a_summed_up_mailing_is_still_one_whose_sending_started(repo: Repo, make_server: Any) -> None:
    sent_with_failures(repo, make_server)
    assert dispatched(log_path(repo).read_bytes().splitlines())
    summary_only = log_path(repo).read_bytes().splitlines()[-1:]
    assert dispatched(summary_only)  # a summary alone (say, the rest cut away) fails closed too


def test_status_counts_bounces_of_a_summed_up_mailing_as_the_full_replay_does(repo: Repo, make_server: Any) -> None:
    sent_with_failures(repo, make_server)
    hasher = make_hasher(TEST_LOG_KEY)
    bounces = repo.root / "bounces" / f"{MAILING}.jsonl"
    bounces.parent.mkdir()
    lines_of = [
        {"event": "bounce", "time": NOW, "kind": "hard", "rcpt": hasher(recipients(600)[10]), "bounce": "b1"},
        {"event": "bounce", "time": NOW, "kind": "soft", "rcpt": hasher(recipients(600)[11]), "bounce": "b2"},
        {"event": "bounce", "time": NOW, "kind": "soft", "rcpt": hasher(recipients(600)[10]), "bounce": "b3"},
    ]
    bounces.write_text("".join(json.dumps(e) + "\n" for e in lines_of), encoding="ascii")
    [summed] = json.loads(status(repo, "--format", "json")[1])["mailings"]
    assert (summed["hard_bounces"], summed["soft_bounces"], summed["delivered"]) == (1, 1, 596)
    data = log_path(repo).read_bytes()
    log_path(repo).write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 1])  # the summary gone: a full replay
    [replayed] = json.loads(status(repo, "--format", "json")[1])["mailings"]
    assert replayed == summed


def test_immutable_holds_a_summed_up_mailing_as_sent(
    repo: Repo, make_server: Any, capsys: pytest.CaptureFixture[str], plain_git: None
) -> None:
    from checks.cli import main
    from tests.conftest import git

    sent_with_failures(repo, make_server)
    assert lines(log_path(repo))[-1]["event"] == "summary"
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "A sent mailing and its summed-up log")
    git(repo.root, "switch", "--quiet", "--create", "request")
    (repo.root / "mailings" / MAILING / "body.en.txt").write_text("Hello again\n", encoding="utf-8")
    path = log_path(repo)
    path.write_text(path.read_text(encoding="ascii").replace('"accepted":597', '"accepted":600'), encoding="ascii")
    git(repo.root, "commit", "--quiet", "--all", "-m", "Edit the sent mailing and its summary")
    argv = ["check", "--root", str(repo.root), "--submitted", "2027-01-11", "--changed-since", "main"]
    assert main(argv) == 1
    found = [line for line in capsys.readouterr().out.splitlines() if "[immutable]" in line]
    assert any(f"mailings/{MAILING}/body.en.txt" in line and "was sent" in line for line in found), found
    assert any(f"mailings/{MAILING}/sendlog.jsonl" in line and "only the dispatch job" in line for line in found)


def test_a_run_sums_up_at_most_twenty_old_logs_and_the_next_the_rest(repo: Repo, smtp_server: RunningServer) -> None:
    from tests.conftest import addresses

    ids = [f"2027-02-10-m{n:02d}" for n in range(23)]
    for n, mailing_id in enumerate(ids):
        repo.add(mailing_id, recipients=addresses(500, prefix=f"m{n}-"))
    code, out = run(["send", "--root", str(repo.root), "--now", NOW], relay(smtp_server))
    assert code == 0, out
    for mailing_id in ids:  # as logs finished before summaries were written
        path = log_path(repo, mailing_id)
        data = path.read_bytes()
        path.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 1])
    summed = []
    for _ in range(2):
        run(["send", "--root", str(repo.root), "--now", LATER], relay(smtp_server))
        summed.append(sum(read_finished(log_path(repo, i)) is not None for i in ids))
    assert summed == [20, 23] and len(smtp_server.handler.recipients()) == 23 * 500

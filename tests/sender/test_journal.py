"""The send log: round trip, a torn last line, the lock, group commit under concurrency, hash schemes."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest

from sender.journal import (
    SCHEME_HMAC,
    SCHEME_SHA256,
    EventLines,
    Journal,
    LockedError,
    Replay,
    encode,
    is_locked,
    make_hasher,
    replay,
    replay_lines,
    scrub,
)
from sender.logkey import keyring

T = "2027-02-10T09:00:00.000+01:00"


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sendlog.jsonl"
    h = make_hasher(None)
    a, b, c, d = h("a@kth.se"), h("b@kth.se"), h("c@kth.se"), h("d@kth.se")
    with Journal.open(path) as journal:
        journal.append({"event": "start", "time": T, "run": "r1", "recipients": 4, "hash": h.scheme})
        journal.append({"event": "attempt", "time": T, "run": "r1", "batch": "x", "rcpt": [a, b, c, d]})
        journal.append(
            {"event": "accepted", "time": T, "run": "r1", "batch": "x", "rcpt": [a, b], "code": 250},
            {"event": "failed", "time": T, "run": "r1", "batch": "x", "rcpt": c, "code": 550, "message": "no"},
            {"event": "deferred", "time": T, "run": "r1", "batch": "x", "rcpt": [d], "code": 451, "message": "later"},
        )
        journal.append({"event": "end", "time": T, "run": "r1", "accepted": 2, "failed": 1, "pending": 1})
    log = replay(path)
    assert log.accepted == {a, b}
    assert set(log.failed) == {c} and log.failed[c].code == 550
    assert log.in_flight == set()
    assert (log.runs, log.recipients, log.open_run, log.complete) == (1, 4, False, False)
    assert log.scheme == SCHEME_SHA256
    assert log.last_event == "end" and log.damaged == 0


def test_a_missing_log_is_an_empty_replay(tmp_path: Path) -> None:
    log = replay(tmp_path / "sendlog.jsonl")
    assert (log.runs, log.accepted, log.complete, log.scheme) == (0, set(), False, None)


def test_lines_are_ascii_json_and_hold_no_address(tmp_path: Path) -> None:
    path = tmp_path / "sendlog.jsonl"
    h = make_hasher(None)
    message = scrub("550 5.1.1 <Anna.Andersson@kth.se>: Recipient address rejected: User unknown")
    with Journal.open(path) as journal:
        journal.append(
            {"event": "failed", "time": T, "rcpt": h("Anna.Andersson@kth.se"), "code": 550, "message": message}
        )
    raw = path.read_bytes()
    assert raw.isascii() and raw.endswith(b"\n")
    assert b"andersson" not in raw.lower()
    assert json.loads(raw)["message"] == "550 5.1.1 <address>: Recipient address rejected: User unknown"


def test_a_torn_last_line_is_skipped_and_terminated_before_the_next_event(tmp_path: Path) -> None:
    path = tmp_path / "sendlog.jsonl"
    h = make_hasher(None)
    with Journal.open(path) as journal:
        journal.append({"event": "start", "time": T, "run": "r1", "recipients": 2, "hash": h.scheme})
        journal.append({"event": "accepted", "time": T, "batch": "x", "rcpt": [h("a@kth.se")], "code": 250})
    with path.open("ab") as handle:  # what a kill in the middle of a write leaves
        handle.write(b'{"event":"accepted","time":"2027-02-10T09:00:01","batch":"y","rcpt":["ab')
    torn = replay(path)
    assert torn.accepted == {h("a@kth.se")} and torn.damaged == 1 and torn.open_run
    with Journal.open(path) as journal:
        journal.append({"event": "accepted", "time": T, "batch": "z", "rcpt": [h("b@kth.se")], "code": 250})
    again = replay(path)
    assert again.accepted == {h("a@kth.se"), h("b@kth.se")}
    assert again.damaged == 1  # the fragment stays on its own line; the new event is intact


def test_a_replay_survives_nul_bytes_left_by_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "sendlog.jsonl"
    path.write_bytes(b'{"event":"start","time":"t","recipients":1}\n\x00\x00\x00\x00')
    log = replay(path)
    assert log.runs == 1 and log.damaged == 1


def test_in_flight_recipients_are_those_attempted_without_an_outcome(tmp_path: Path) -> None:
    path = tmp_path / "sendlog.jsonl"
    h = make_hasher(None)
    a, b = h("a@kth.se"), h("b@kth.se")
    with Journal.open(path) as journal:
        journal.append({"event": "start", "time": T, "run": "r1", "recipients": 2, "hash": h.scheme})
        journal.append({"event": "attempt", "time": T, "batch": "x", "rcpt": [a]})
        journal.append({"event": "accepted", "time": T, "batch": "x", "rcpt": [a], "code": 250})
        journal.append({"event": "attempt", "time": T, "batch": "y", "rcpt": [b]})
    log = replay(path)
    assert log.open_run and log.in_flight == {b} and log.accepted == {a}


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "sendlog.jsonl"
    first = Journal.open(path)
    try:
        assert is_locked(path)
        with pytest.raises(LockedError):
            Journal.open(path)
    finally:
        first.close()
    assert not is_locked(path)
    Journal.open(path).close()


def test_concurrent_writes_share_fsyncs_and_each_is_on_disk_when_its_await_returns(tmp_path: Path) -> None:
    path = tmp_path / "sendlog.jsonl"
    writers, per_writer = 8, 25
    missing: list[str] = []

    async def writer(journal: Journal, number: int) -> None:
        for i in range(per_writer):
            batch = f"w{number}-{i}"
            await journal.write({"event": "attempt", "time": T, "batch": batch, "rcpt": [batch]})
            if f'"batch":"{batch}"'.encode() not in path.read_bytes():
                missing.append(batch)
            await asyncio.sleep(0)

    async def main(journal: Journal) -> None:
        await asyncio.gather(*(writer(journal, n) for n in range(writers)))

    with Journal.open(path) as journal:
        asyncio.run(main(journal))
        syncs, writes = journal.syncs, journal.writes
    lines = path.read_bytes().splitlines()
    batches = [json.loads(line)["batch"] for line in lines]
    assert missing == []
    assert sorted(batches) == sorted(f"w{n}-{i}" for n in range(writers) for i in range(per_writer))
    assert writes == writers * per_writer
    assert syncs < writes  # concurrent writers shared fsyncs


def test_a_write_error_reaches_every_waiting_writer(tmp_path: Path) -> None:
    path = tmp_path / "sendlog.jsonl"
    journal = Journal.open(path)
    journal.close()  # writing to a closed descriptor fails

    async def main() -> list[BaseException | None]:
        results = await asyncio.gather(
            *(journal.write({"event": "attempt", "batch": str(n)}) for n in range(3)), return_exceptions=True
        )
        return list(results)

    results = asyncio.run(main())
    assert all(isinstance(r, OSError) for r in results)


def test_hash_schemes_and_key_changes_are_detected() -> None:
    plain, keyed, other = make_hasher(None), make_hasher("secret-one"), make_hasher("secret-two")
    assert plain.scheme == SCHEME_SHA256 and keyed.scheme == SCHEME_HMAC
    assert plain("A@KTH.se ") == plain("a@kth.se")  # the normalised address is hashed
    assert keyed("a@kth.se") != plain("a@kth.se") and keyed("a@kth.se") != other("a@kth.se")
    assert "secret" not in repr(keyed) and keyed.key_check != other.key_check


def test_hashing_many_addresses_at_once_gives_each_address_its_own_hash() -> None:
    keys = ["a@kth.se", "b@kth.se", "åsa@kth.se"]
    for hasher in (make_hasher(None), make_hasher("secret-one")):
        assert hasher.of_all_normalised(keys) == [hasher.of_normalised(k) for k in keys]
    # The log's hashes stay what earlier runs wrote: SHA-256 of the normalised address, cut to 32 hex digits.
    assert make_hasher(None).of_all_normalised(["a@kth.se"]) == [hashlib.sha256(b"a@kth.se").hexdigest()[:32]]


def test_a_replay_names_its_keys_and_the_keyring_refuses_another_scheme_or_key(tmp_path: Path) -> None:
    path = tmp_path / "sendlog.jsonl"
    keyed = make_hasher("secret-one")
    with Journal.open(path) as journal:
        journal.append({"event": "start", "time": T, "hash": keyed.scheme, "key_check": keyed.key_check})
    log = replay(path)
    assert log.hashed_with == [(keyed.scheme, keyed.key_check)]
    assert keyring("secret-one").problem(log.hashed_with) is None
    assert "MAILINGS_LOG_KEY is not set" in (keyring(None).problem(log.hashed_with) or "")
    assert "another MAILINGS_LOG_KEY" in (keyring("secret-two").problem(log.hashed_with) or "")
    plain_log = tmp_path / "plain.jsonl"
    with Journal.open(plain_log) as journal:
        journal.append({"event": "start", "time": T, "hash": SCHEME_SHA256})
    # Lines hashed without a key are read with one set too (tests/sender/test_log_key.py resumes such a log).
    assert keyring("secret-one").problem(replay(plain_log).hashed_with) is None


def test_blocked_and_missed_are_remembered_until_something_else_happens(tmp_path: Path) -> None:
    path = tmp_path / "sendlog.jsonl"
    with Journal.open(path) as journal:
        journal.append({"event": "blocked", "time": T, "reason": "a rule failed"})
        assert replay(path).blocked == "a rule failed"
        journal.append({"event": "start", "time": T, "recipients": 1, "hash": SCHEME_SHA256})
        assert replay(path).blocked is None
        journal.append({"event": "missed", "time": T, "reason": "too late"})
    assert replay(path).missed == "too late"


def test_a_write_is_in_the_file_at_once_and_sync_waits_for_an_fsync_that_covers_it(tmp_path: Path) -> None:
    path = tmp_path / "sendlog.jsonl"

    async def main(journal: Journal) -> tuple[bool, int, int]:
        first = journal.write_nowait({"event": "attempt", "batch": "a"})
        second = journal.write_nowait({"event": "attempt", "batch": "b"})
        readable = b'"batch":"b"' in path.read_bytes()  # what a killed process leaves: already there
        before = journal.synced
        await journal.sync(first)
        return readable, before, second

    with Journal.open(path) as journal:
        readable, before, second = asyncio.run(main(journal))
        assert readable and before == 0
        assert journal.synced >= second and journal.syncs == 1  # the one fsync covered both writes


def _replayed_event_by_event(lines: list[bytes]) -> Replay:
    """What replay_lines must give: each line read as JSON and applied (Replay.apply_line), torn ones counted."""
    replay = Replay()
    for line in lines:
        replay.apply_line(line)
    return replay


def test_the_frequent_lines_replay_as_their_json_says_whatever_their_shape() -> None:
    # replay_lines reads the attempt and accepted lines EventLines writes with a pattern; every other spelling of
    # them, and every line that only looks like one, must replay as json.loads reads it.
    lines = EventLines("r1")
    h1, h2 = "a" * 32, "0123456789abcdef" * 2
    written = [
        encode({"event": "start", "time": "t0", "run": "r1", "recipients": 3, "hash": "sha256-128"}),
        lines.attempt("t1", "k1", [h1, h2]),
        lines.accepted("t2", "k1", [h1], 250),
        lines.attempt("t3", "k2", ["b" * 32]),
        encode({"event": "failed", "time": "t4", "run": "r1", "batch": "k1", "rcpt": h2, "code": 550, "message": "no"}),
    ]
    odd = [
        b'{"event":"attempt","time":"t\\u0035","run":"r1","batch":"k3","rcpt":["' + b"c" * 32 + b'"]}',  # an escape
        b'{"event":"accepted","time":"t6","run":"r1","batch":"k3","rcpt":["' + b"C" * 32 + b'"]}',  # not lower hex
        b'{"event":"accepted","time":"t7","run":"r1","batch":"k3","rcpt":["' + b"c" * 32 + b'"],"code":250,"x":1}',
        b'{"event":"accepted","time":"t8","run":"r1","batch":"k3","rcpt":["' + b"d" * 32 + b'"]',  # torn
        b'{"event":"attempt","time":"t9","run":"r1","batch":"k3","rcpt":[]}',  # nobody
        b'{"event":"accepted","time":"t\xc3\xa5","run":"r1","batch":"k3","rcpt":["' + b"e" * 32 + b'"]}',  # UTF-8
        b'{"event":"accepted","time":"t\xff","run":"r1","batch":"k3","rcpt":["' + b"f" * 32 + b'"]}',  # not UTF-8
        b'{"event":"accepted","time":"t10","run":"r1","batch":"k3","rcpt":["' + b"b" * 32 + b'"]}\r',  # CRLF
        b'{"event":"accepted","time":"t11","run":"r1","batch":"k3","rcpt":["' + b"1" * 32 + b'"],"code":250}',
        b'{"event":"attempt", "time":"t12","run":"r1","batch":"k3","rcpt":["' + b"2" * 32 + b'"]}',  # spaced
        b'{"event":"attempt","time":"t13","run":"r1","batch":"k\\"3","rcpt":["' + b"3" * 32 + b'"]}',
    ]
    data = b"".join(written).split(b"\n")[:-1] + odd
    for end in range(len(data) + 1):
        assert replay_lines(data[:end]) == _replayed_event_by_event(data[:end]), data[end - 1 : end]

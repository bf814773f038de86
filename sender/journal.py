"""The send log: an append-only JSON Lines journal per mailing, ``mailings/<id>/sendlog.jsonl``.

Every event is one line, written (os.write) the moment it happens: an ``attempt``
before each SMTP transaction and its outcome (``accepted``, ``failed``,
``deferred``) right after it, so a killed process loses nothing it wrote and a
run started again resends at most the transactions that were in flight. fsyncs,
which a power cut needs, are shared by concurrent transactions (group commit);
the dispatcher decides how far the disk may lag (sender.dispatch.Lane).

Recipients appear only as hashes of the normalised address: SHA-256, or
HMAC-SHA-256 with a key (MAILINGS_LOG_KEY, passed in by the caller). The scheme
and a key check value are recorded, so a run with another key is refused
instead of taking everybody for new.

Events (all carry ``event`` and ``time``)::

    claim     run, digest, recipients, pending, [resume_unknown]  (a run is about to send: on the remote before any
                                                           message; resume_unknown: the resume_at it resends the
                                                           unknown for)
    start     run, recipients, pending, mode, hash, key_check, day  (day: the run's "now", for sender.quota)
    attempt   run, batch, rcpt: [hash, ...]
    accepted  run, batch, rcpt: [hash, ...], code
    failed    run, batch, rcpt: hash, code, message      (permanent, one per recipient)
    deferred  run, batch, rcpt: [hash, ...], code, message  (left pending for the next run)
    unknown   run, batch, rcpt: [hash, ...], code, message  (no reply to the end of the message: it may have been
                                                           delivered, so it is never sent again by itself)
    blocked   reason                                       (not sent: a rule failed, the key changed, ...)
    missed    reason, digest, [resume_at]                  (too late to send; final for this content and resume_at)
    held      reason                                       (a hold stands: nothing more is sent while it does)
    cancelled reason                                       (cancelled: nothing more is ever sent; final)
    notice    state                                        (the contact person is told of this state by mail, once)
    end       run, accepted, failed, pending, unknown, attempted, complete, day, [reason]
    quota     run, day, limit, used, recipients, continues  (the relay's day quota is spent: the rest goes on at
                                                           `continues`, and the mailing is not late until then)
    summary   [day], state, recipients, accepted, failed, unknown, runs, last_time, send_at, special_lists,
              key_ids, size, sha256                        (the last line of a finished log: what `send` and
                                                           `status` read instead of replaying it; size and sha256
                                                           are those of the log before this line; day: its end's)

A finished log ends with its summary (`summary_event`). `read_finished` reads only that last line, checked
against the file's size, so a scheduled run costs the same after ten years of mailings as after one; a summary
that does not fit the file (a line appended after it, a log cut short, a hand edit) is ignored and the log is
replayed in full. `verify_summary` replays the whole log and compares (``mailings status --verify``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
import stat
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from checks.addresses import normalise
from checks.model import SENDLOG_FILE

# Hashes are cut to 128 bits (32 hex digits): ample for telling recipients apart, and
# half the size of a log that git keeps for ever. The cut is part of the scheme's name.
SCHEME_SHA256 = "sha256-128"
SCHEME_HMAC = "hmac-sha256-128"
HASH_HEX_DIGITS = 32
_KEY_CHECK_INPUT = b"mailings send log key check"
_ADDRESS_LIKE = re.compile(r"<?[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+>?")
MAX_MESSAGE_CHARS = 200

Event = dict[str, Any]


class LockedError(Exception):
    """Another process holds the send log's lock: it is sending this mailing now."""


@dataclass(frozen=True)
class Hasher:
    """Turns an address into the hash the log stores."""

    scheme: str
    key_check: str | None = None  # identifies the key without revealing it
    key: bytes | None = field(default=None, repr=False)

    def __call__(self, address: str) -> str:
        return self.of_normalised(normalise(address))

    def of_normalised(self, key: str) -> str:
        """The hash of an address already normalised (checks.addresses.normalise)."""
        data = key.encode("utf-8")
        if self.key is None:
            return hashlib.sha256(data).hexdigest()[:HASH_HEX_DIGITS]
        return hmac.new(self.key, data, hashlib.sha256).hexdigest()[:HASH_HEX_DIGITS]

    def of_all_normalised(self, keys: Iterable[str]) -> list[str]:
        """`of_normalised` of each of *keys*, in order: one loop without a call per address, as a mailing has
        tens of thousands of them."""
        sha256, digits = hashlib.sha256, HASH_HEX_DIGITS
        if self.key is None:
            return [sha256(k.encode("utf-8")).hexdigest()[:digits] for k in keys]
        key, new = self.key, hmac.new
        return [new(key, k.encode("utf-8"), sha256).hexdigest()[:digits] for k in keys]


def make_hasher(key: str | bytes | None) -> Hasher:
    """SHA-256 without a key; HMAC-SHA-256 with one (the caller reads MAILINGS_LOG_KEY)."""
    if not key:
        return Hasher(SCHEME_SHA256)
    raw = key.encode("utf-8") if isinstance(key, str) else key
    check = hmac.new(raw, _KEY_CHECK_INPUT, hashlib.sha256).hexdigest()[:16]
    return Hasher(SCHEME_HMAC, check, raw)


def scrub(message: str) -> str:
    """A server's reply text fit for the log: addresses replaced (servers echo them), one line, bounded."""
    return redact(" ".join(message.split()))[:MAX_MESSAGE_CHARS]


def redact(text: str) -> str:
    """*text* with everything that looks like an address replaced by '<address>'."""
    return _ADDRESS_LIKE.sub("<address>", text)


def encode(event: Event) -> bytes:
    return (json.dumps(event, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _json_string(text: str) -> str:
    # Batch keys are hex digits: nothing to escape, so no json.dumps for them.
    return f'"{text}"' if text.isascii() and text.encode("ascii").isalnum() else json.dumps(text, ensure_ascii=True)


class EventLines:
    """The encoded lines of a run's frequent events (attempt, accepted), built from pre-encoded pieces.

    The same bytes as `encode` writes for the same event, at a fraction of the cost of a dict and json.dumps
    per event: a one-recipient message writes two of them."""

    def __init__(self, run_id: str) -> None:
        self._run = ',"run":' + json.dumps(run_id, ensure_ascii=True)
        self._time = ""
        self._time_json = '""'  # the last time stamp, encoded: events of one moment share it

    def attempt(self, time: str, batch: str, hashes: list[str]) -> bytes:
        return self._line("attempt", time, batch, hashes, "}\n")

    def accepted(self, time: str, batch: str, hashes: list[str], code: int) -> bytes:
        return self._line("accepted", time, batch, hashes, f',"code":{int(code)}}}\n')

    def _line(self, kind: str, time: str, batch: str, hashes: list[str], end: str) -> bytes:
        joined = "".join(hashes)
        # bytes.isalnum, because str.isalnum is slow: 16 us for a batch of 100 hashes, against under 1.
        if hashes and joined.isascii() and joined.encode("ascii").isalnum():
            rcpt = '["' + '","'.join(hashes) + '"]'
        else:
            rcpt = json.dumps(hashes, separators=(",", ":"), ensure_ascii=True)  # not hex digits: escaped
        if time != self._time:
            self._time, self._time_json = time, json.dumps(time, ensure_ascii=True)
        head = f'{{"event":"{kind}","time":{self._time_json}{self._run}'
        return f'{head},"batch":{_json_string(batch)},"rcpt":{rcpt}{end}'.encode("ascii")


@dataclass(frozen=True)
class Failure:
    code: int
    message: str


@dataclass
class Replay:
    """What a send log says, read from its first line to its last."""

    accepted: set[str] = field(default_factory=set)
    failed: dict[str, Failure] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)  # attempted in the last run with no outcome (a kill)
    unknown: set[str] = field(default_factory=set)  # no reply to the end of their message: maybe delivered
    scheme: str | None = None
    key_check: str | None = None
    runs: int = 0
    recipients: int | None = None  # as counted by the last start
    open_run: bool = False  # a start without its end: the run was killed or is still going
    complete: bool = False
    last_event: str | None = None
    last_time: str | None = None
    blocked: str | None = None  # the reason, when the last thing that happened was a block
    missed: str | None = None  # the reason, when the last thing that happened was a miss
    end_reason: str | None = None  # why the last run stopped early, if it did
    damaged: int = 0  # lines that are not events (a torn write); skipped
    claim_run: str | None = None  # the run of the last claim
    claim_digest: str | None = None  # the request's digest when a run first claimed it: the approved content
    claim_open: bool = False  # the last claim has no end yet: that run is sending, or was killed
    attempts: int = 0  # attempt events: transactions that may have delivered something
    missed_digest: str | None = None  # the request's digest when it was recorded as missed ("" for an old log)
    missed_resume: str | None = None  # the resume_at it was recorded as missed for
    held: str | None = None  # the reason, when the last thing that happened was a hold
    held_ever: bool = False  # a hold was recorded: once released, resume_at may set the time
    cancelled: str | None = None  # why it was cancelled: final
    unknown_resumed: set[str] = field(default_factory=set)  # the resume_at values a run sent the unknown for
    noticed: set[str] = field(default_factory=set)  # the states the contact person was told of by mail
    special_lists: dict[str, Any] = field(default_factory=dict)  # IT's lists as the last start read them
    quota_continues: str | None = None  # when the last run the day's quota stopped may go on (sender.quota)
    quota_recipients: int | None = None  # the mailing's recipients, as that run counted them
    hashed_with: list[tuple[str, str | None]] = field(default_factory=list)  # (scheme, key id) of each start's key

    # The counts by the names a Summary has too, so that sender.state.finished judges either.
    @property
    def accepted_count(self) -> int:
        return len(self.accepted)

    @property
    def failed_count(self) -> int:
        return len(self.failed)

    @property
    def unknown_count(self) -> int:
        return len(self.unknown)

    def note_attempt(self, time: str, hashes: list[str]) -> None:
        """apply() of an attempt event, without building it (EventLines wrote it)."""
        self._note("attempt", time)
        self.attempts += 1
        self.in_flight.update(hashes)

    def note_accepted(self, time: str, hashes: list[str]) -> None:
        """apply() of an accepted event, without building it (EventLines wrote it)."""
        self._note("accepted", time)
        _accept(self, hashes)

    def _note(self, kind: str, time: str) -> None:
        self.last_event, self.last_time = kind, time
        self.blocked = self.missed = self.held = None

    def apply_line(self, line: bytes) -> None:
        """apply() of the event on *line*, read as JSON; a line that is not a JSON object (a torn write) is counted
        and skipped, a blank one skipped."""
        if not line.strip():
            return
        try:
            event = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            self.damaged += 1
            return
        if isinstance(event, dict):
            self.apply(event)
        else:
            self.damaged += 1

    def apply(self, event: Event) -> None:
        kind = event.get("event")
        if kind == "notice":  # word to the contact person: what the log said before still stands
            _on_notice(self, event)
            return
        if kind == "summary":  # says what the lines before it say
            return
        self.last_event = kind
        self.last_time = event.get("time", self.last_time)
        self.blocked = event.get("reason") if kind == "blocked" else None
        self.missed = event.get("reason") if kind == "missed" else None
        self.held = event.get("reason") if kind == "held" else None
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is not None:
            handler(self, event)


def _on_claim(replay: Replay, event: Event) -> None:
    replay.claim_run = event.get("run")
    digest = event.get("digest")
    if replay.claim_digest is None and isinstance(digest, str):
        replay.claim_digest = digest  # the first claim pins the content; later claims resume it
    replay.claim_open = True
    resumed = event.get("resume_unknown")
    if isinstance(resumed, str):
        replay.unknown_resumed.add(resumed)


def _on_missed(replay: Replay, event: Event) -> None:
    digest = event.get("digest")
    replay.missed_digest = digest if isinstance(digest, str) else ""
    resume = event.get("resume_at")
    replay.missed_resume = resume if isinstance(resume, str) else None


def _on_held(replay: Replay, event: Event) -> None:
    replay.held_ever = True


def _on_notice(replay: Replay, event: Event) -> None:
    state = event.get("state")
    if isinstance(state, str):
        replay.noticed.add(state)


def _on_cancelled(replay: Replay, event: Event) -> None:
    reason = event.get("reason")
    replay.cancelled = reason if isinstance(reason, str) and reason else "cancelled"


def _on_quota(replay: Replay, event: Event) -> None:
    continues, recipients = event.get("continues"), event.get("recipients")
    if isinstance(continues, str):
        replay.quota_continues = continues
        replay.quota_recipients = recipients if isinstance(recipients, int) else None


def _on_start(replay: Replay, event: Event) -> None:
    replay.runs += 1
    replay.open_run = True
    replay.complete = False
    replay.in_flight = set()
    replay.scheme = event.get("hash", replay.scheme)
    replay.key_check = event.get("key_check")
    if isinstance(replay.scheme, str) and (replay.scheme, replay.key_check) not in replay.hashed_with:
        replay.hashed_with.append((replay.scheme, replay.key_check))
    replay.recipients = event.get("recipients")
    lists = event.get("special_lists")
    replay.special_lists = lists if isinstance(lists, dict) else {}


def _on_attempt(replay: Replay, event: Event) -> None:
    replay.attempts += 1
    replay.in_flight.update(_hashes(event))


def _on_accepted(replay: Replay, event: Event) -> None:
    _accept(replay, _hashes(event))


def _accept(replay: Replay, hashes: list[str]) -> None:
    replay.accepted.update(hashes)
    replay.in_flight.difference_update(hashes)
    if replay.unknown:
        replay.unknown.difference_update(hashes)
    failed = replay.failed
    if failed:
        for h in hashes:
            failed.pop(h, None)


def _on_failed(replay: Replay, event: Event) -> None:
    for h in _hashes(event):
        if h not in replay.accepted:
            replay.failed[h] = Failure(int(event.get("code", 0)), str(event.get("message", "")))
            replay.unknown.discard(h)
        replay.in_flight.discard(h)


def _on_deferred(replay: Replay, event: Event) -> None:
    replay.in_flight.difference_update(_hashes(event))


def _on_unknown(replay: Replay, event: Event) -> None:
    hashes = [h for h in _hashes(event) if h not in replay.accepted and h not in replay.failed]
    replay.unknown.update(hashes)
    replay.in_flight.difference_update(hashes)


def _on_end(replay: Replay, event: Event) -> None:
    replay.open_run = False
    replay.claim_open = False
    replay.complete = bool(event.get("complete"))
    replay.end_reason = event.get("reason")
    replay.in_flight = set()


_HANDLERS = {
    "claim": _on_claim,
    "missed": _on_missed,
    "held": _on_held,
    "cancelled": _on_cancelled,
    "notice": _on_notice,
    "start": _on_start,
    "attempt": _on_attempt,
    "accepted": _on_accepted,
    "failed": _on_failed,
    "deferred": _on_deferred,
    "unknown": _on_unknown,
    "end": _on_end,
    "quota": _on_quota,
}


def _hashes(event: Event) -> list[str]:
    value = event.get("rcpt")
    if isinstance(value, str):
        return [value]
    return [h for h in value if isinstance(h, str)] if isinstance(value, list) else []


# The lines EventLines writes, nearly all of a log: an attempt or an acceptance of hex-digit hashes, with plain
# ASCII strings (no escapes) and nothing else. Such a line says exactly what json.loads would read from it, so the
# replay reads it with one match instead (a 10,000-message log: about 60 ms down to 20); any other line, a torn one
# included, takes the general way.
_PLAIN = rb'"[\x20\x21\x23-\x5b\x5d-\x7e]*"'
_FREQUENT_LINE = re.compile(
    rb'\{"event":"(attempt|accepted)","time":"([\x20\x21\x23-\x5b\x5d-\x7e]*)","run":'
    + _PLAIN
    + rb',"batch":'
    + _PLAIN
    + rb',"rcpt":\["([0-9a-f]+(?:","[0-9a-f]+)*)"\](?:,"code":[1-9][0-9]{0,2})?\}\r?'
)


def replay_lines(lines: Iterable[bytes]) -> Replay:
    """Replay events in order; a line that is not a JSON object (a torn write) is counted and skipped."""
    replay = Replay()
    frequent = _FREQUENT_LINE.fullmatch
    for line in lines:
        found = frequent(line)
        if found is not None:
            kind, time, hashes = found.groups()
            if kind == b"attempt":
                replay.note_attempt(time.decode("ascii"), hashes.decode("ascii").split('","'))
            else:
                replay.note_accepted(time.decode("ascii"), hashes.decode("ascii").split('","'))
            continue
        replay.apply_line(line)
    return replay


def replay(path: Path) -> Replay:
    """The replay of the log at *path*; an empty one when there is no log yet."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Replay()
    return replay_lines(data.split(b"\n"))


# How much of a log's end `read_finished` reads: a summary line is a few hundred bytes (the special lists'
# provenance is the longest part of it).
SUMMARY_TAIL_BYTES = 16384
SUMMARY_SHORT_TAIL = 2048


@dataclass(frozen=True)
class Summary:
    """A finished log's last line: its counts and final state, and the size and digest of the log before it."""

    state: str
    recipients: int
    accepted: int
    failed: int
    unknown: int
    runs: int
    size: int
    sha256: str
    last_time: str | None = None
    send_at: str | None = None
    special_lists: dict[str, Any] = field(default_factory=dict)

    # The names Replay counts by, so that sender.state.finished judges either.
    @property
    def accepted_count(self) -> int:
        return self.accepted

    @property
    def failed_count(self) -> int:
        return self.failed

    @property
    def unknown_count(self) -> int:
        return self.unknown


def summary_event(log: bytes, done: Replay, state: str, time: str, send_at: str | None) -> Event:
    """The summary of *log* (bytes, complete; *done* its replay, *state* its final state) to append to it. Its
    counts are those of the log's last end, which the run that finished it counted (with every key it was
    hashed with: sender.logkey)."""
    end = last_end(log)
    accepted, failed, unknown = (_count(end, name) for name in ("accepted", "failed", "unknown"))
    # The end's `day` (its run's day: sender.quota counts a day's attempts by it) goes on as the last line's, so
    # that a log finished on a day still counts for that day's quota.
    day = {"day": end["day"]} if isinstance(end.get("day"), str) else {}
    return {
        "event": "summary",
        "time": time,
        **day,
        "state": state,
        "recipients": accepted + failed + unknown,
        "accepted": accepted,
        "failed": failed,
        "unknown": unknown,
        "runs": done.runs,
        "last_time": done.last_time,
        "send_at": send_at,
        "special_lists": done.special_lists,
        "key_ids": [list(pair) for pair in done.hashed_with],
        "size": len(log),
        "sha256": hashlib.sha256(log).hexdigest(),
    }


def last_end(log: bytes) -> Event:
    """The last end event of *log* ({} when there is none)."""
    at = len(log)
    while (found := log.rfind(b'"event":"end"', 0, at)) >= 0:
        start = log.rfind(b"\n", 0, found) + 1
        stop = log.find(b"\n", found)
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            event = json.loads(log[start : stop if stop >= 0 else len(log)])
            if isinstance(event, dict) and event.get("event") == "end":
                return event
        at = start
    return {}


def _count(event: Event, name: str) -> int:
    value = event.get(name, 0)
    return value if type(value) is int and value >= 0 else 0


def is_summed_up(log: bytes) -> bool:
    """True when *log*'s last line is a summary, fitting or not: a run never adds a second one."""
    last = log.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return last.startswith(b'{"event":"summary"')


def parse_summary(line: bytes, size: int) -> Summary | None:
    """The summary on *line*, when it is one and fits a log of *size* bytes before it; else None. (Its counts
    are checked against the end before it by read_finished, its digest by verify_summary.)"""
    try:
        event = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict) or event.get("event") != "summary" or event.get("size") != size:
        return None
    counts = [event.get(name) for name in ("recipients", "accepted", "failed", "unknown", "runs")]
    if not all(type(count) is int and count >= 0 for count in counts):
        return None
    recipients, accepted, failed, unknown, runs = counts
    if accepted + failed + unknown != recipients or not isinstance(event.get("sha256"), str):
        return None  # a finished mailing has an outcome for every recipient
    lists = event.get("special_lists")
    last, send_at = event.get("last_time"), event.get("send_at")
    return Summary(
        state=str(event.get("state")),
        recipients=recipients,
        accepted=accepted,
        failed=failed,
        unknown=unknown,
        runs=runs,
        size=size,
        sha256=event["sha256"],
        last_time=last if isinstance(last, str) else None,
        send_at=send_at if isinstance(send_at, str) else None,
        special_lists=lists if isinstance(lists, dict) else {},
    )


def read_finished(path: Path | str) -> Summary | None:
    """The summary a finished log ends with, reading only its end; None when the log does not end with a summary
    that fits it (not finished, events after the summary, a changed size), or is not a regular file. Called for
    every finished mailing at every scheduled run: plain system calls, no file object."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size < 2:
            return None
        # Most summaries and the end before them fit in the first, small read; a long one gets a second.
        for want in (SUMMARY_SHORT_TAIL, SUMMARY_TAIL_BYTES):
            start = max(0, info.st_size - want)
            tail = os.pread(fd, info.st_size - start, start)
            if len(tail) != info.st_size - start or not tail.endswith(b"\n"):
                return None
            lines = tail.split(b"\n")[:-1]
            if start > 0:
                lines = lines[1:]  # the first may be the end of a longer line
            if len(lines) >= 2 or start == 0:
                break
    finally:
        os.close(fd)
    if not lines:
        return None
    summary = parse_summary(lines[-1] + b"\n", info.st_size - len(lines[-1]) - 1)
    return summary if summary is not None and _ends_finished(lines[:-1], summary) else None


def finished_summary(directory: Path | str) -> Summary | None:
    """The summary of the finished send log in the mailing *directory* (read_finished), when it is the whole answer:
    nobody's outcome unknown (a resume may send them), and not reached through a symbolic link. None: the log is
    to be replayed."""
    if os.path.islink(directory):
        return None
    summary = read_finished(os.path.join(directory, SENDLOG_FILE))
    return summary if summary is not None and not summary.unknown else None


def _ends_finished(lines: list[bytes], summary: Summary) -> bool:
    """True when the last event of *lines* but notices is a complete end whose counts are the summary's: what
    makes a full replay call the log complete, so the summary cannot say "finished" of a log that is not."""
    for line in reversed(lines):
        try:
            event = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return False
        if not isinstance(event, dict):
            return False
        if event.get("event") == "notice":
            continue
        counts = (event.get("accepted"), event.get("failed"), event.get("unknown", 0), event.get("pending"))
        said = (summary.accepted, summary.failed, summary.unknown, 0)
        return event.get("event") == "end" and event.get("complete") is True and counts == said
    return False


def verify_summary(path: Path) -> str | None:
    """What is wrong with the summary *path* ends with, replaying the whole log; None when it holds (or there is
    none: nothing to trust)."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    if len(lines) < 2:
        return None
    line = lines[-2]
    before = data[: len(data) - len(line) - 1]
    summary = parse_summary(line, len(before))
    if summary is None:
        return None if b'"summary"' not in line else "the last line looks like a summary but does not fit the log"
    if hashlib.sha256(before).hexdigest() != summary.sha256:
        return "the log before the summary is not the log it summed up (its digest differs)"
    done = replay_lines(before.split(b"\n"))
    found: tuple[object, ...] = (done.complete, done.accepted_count, done.failed_count, done.unknown_count, done.runs)
    said: tuple[object, ...] = (True, summary.accepted, summary.failed, summary.unknown, summary.runs)
    if len(done.hashed_with) > 1:
        # Hashed with more than one key (a rotation): one recipient can stand under two hashes, so only the runs'
        # own counts, in the summary, say how many there were.
        found, said = found[::4], said[::4]
    if found != said:
        return (
            "the summary does not say what the log says: complete, accepted, failed, unknown, runs are "
            f"{', '.join(map(str, found))} in the log and {', '.join(map(str, said))} in the summary"
        )
    return None


def is_locked(path: Path) -> bool:
    """True while a sender holds the log's lock (asks without taking it for long, and without writing)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)  # closing releases a shared lock we may have taken
    return False


class Journal:
    """A send log open for appending under an exclusive lock (flock on the log itself, so no other file is needed).

    Every event is written with os.write as soon as it happens, so a killed process loses none of them;
    fsyncs (what a power cut needs) are shared: `sync` waits for one that covers a given write, and one
    fsync covers every write made before it began (group commit).
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._written = 0  # writes made (a ticket is this number after the write)
        self._synced = 0  # writes up to this ticket are on disk
        self._flushing = False  # an fsync is under way in the syncer thread
        self._syncer: ThreadPoolExecutor | None = None  # made on the first fsync in the background
        self._waiters: list[asyncio.Future[None]] = []
        self._failure: OSError | None = None
        self.writes = 0  # events written
        self.syncs = 0  # fsyncs done

    @classmethod
    def open(cls, path: Path) -> Journal:
        """Open (creating) and lock *path*; LockedError when another process has it."""
        created = not path.exists()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LockedError(f"{path} is locked by another sender") from None
            raise
        journal = cls(path, fd)
        if created:
            _sync_directory(path.parent)  # the new name must survive a crash too
        journal._terminate_torn_line()
        return journal

    def _terminate_torn_line(self) -> None:
        # A kill mid-write can leave a last line without its newline; end it so that
        # our first event does not merge into it (the replay skips the fragment).
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as handle:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                self._write_all(b"\n")
                os.fsync(self._fd)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def read_bytes(self) -> bytes:
        """The log as it is on disk now, byte for byte."""
        return self.path.read_bytes()

    def replace(self, data: bytes) -> None:
        """Make the log *data*, byte for byte, and fsync (under the lock; for a log the remote holds longer).
        OSError unless it reads back exactly."""
        os.ftruncate(self._fd, 0)
        self._write_all(data)
        os.fsync(self._fd)
        if self.read_bytes() != data:
            raise OSError(f"{self.path}: the send log does not read back as it was written")

    def truncate(self, size: int) -> None:
        """Cut the log back to *size* bytes and fsync: undoes events that never reached the remote."""
        os.ftruncate(self._fd, size)
        os.fsync(self._fd)

    @property
    def synced(self) -> int:
        """The ticket up to which every write is on disk."""
        return self._synced

    def read(self) -> Replay:
        return replay(self.path)

    def append(self, *events: Event) -> None:
        """Write *events* and fsync before returning (for use outside concurrent sending)."""
        ticket = self.write_nowait(*events)
        os.fsync(self._fd)
        self.syncs += 1
        self._synced = max(self._synced, ticket)

    @property
    def written(self) -> int:
        """The ticket of the last write."""
        return self._written

    def write_nowait(self, *events: Event) -> int:
        """Write *events* now (they survive a killed process); the ticket to `sync` on for a power cut too."""
        return self.write_lines(b"".join(encode(e) for e in events), len(events))

    def write_lines(self, data: bytes, count: int) -> int:
        """Write *count* encoded events (lines of `encode` or EventLines) at once; their ticket as write_nowait."""
        if self._failure is not None:
            raise self._failure
        self._write_all(data)
        self.writes += count
        self._written += 1
        return self._written

    async def write(self, *events: Event) -> None:
        """Write *events*; returns once they are on disk."""
        await self.sync(self.write_nowait(*events))

    async def sync(self, ticket: int | None = None) -> None:
        """Return once the write with *ticket* (default: every write so far) is on disk."""
        target = self._written if ticket is None else ticket
        while self._synced < target:
            if self._failure is not None:
                raise self._failure
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            self.kick()
            await waiter

    def kick(self) -> None:
        """Start an fsync in the background if writes are waiting for one (it runs while we send)."""
        if self._flushing or self._synced >= self._written or self._failure is not None:
            return
        if self._syncer is None:
            self._syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sendlog-fsync")
        self._flushing = True
        # Handed to the thread at once, not through a task and asyncio.to_thread: each of those waits for a
        # turn of the busy event loop, and in bulk mode every connection waits for this fsync before each
        # message (measured: about 10 ms of a 50,000-recipient run).
        self._syncer.submit(self._flush, asyncio.get_running_loop(), self._written)

    def _flush(self, loop: asyncio.AbstractEventLoop, covered: int) -> None:
        """In the syncer thread: one fsync, covering every write up to ticket *covered* (made before it began);
        then the event loop hears of it. Whoever needs more starts the next."""
        failure: OSError | None = None
        try:
            os.fsync(self._fd)
        except OSError as exc:
            failure = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (the run was interrupted): nobody waits
            loop.call_soon_threadsafe(self._flushed, covered, failure)

    def _flushed(self, covered: int, failure: OSError | None) -> None:
        self._flushing = False
        if failure is not None:
            self._failure = failure  # the disk failed: every waiter hears of it
        else:
            self.syncs += 1
            self._synced = max(self._synced, covered)
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        if self._syncer is not None:
            self._syncer.shutdown(wait=True)  # an fsync under way finishes on the descriptor before it is closed
            self._syncer = None
        if self._fd >= 0:
            os.close(self._fd)  # releases the lock
            self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""The index of finished mailings: ``finished-mailings.jsonl`` at the repository's root, one line per mailing
whose send log is finished (every recipient accepted or refused for good, none unknown), written by the dispatch
job and committed with the send logs.

Why: `mailings send` with nothing due and `mailings status` run every 15 minutes, and a finished mailing is final
(sender.state.finished), so all they need to know of it is that it is finished. Reading its log's summary
(sender.journal.read_finished) costs an open, a read and two JSON lines per mailing, which adds up over ten years
of them; the index costs a parsed line and one `stat` per mailing, a few microseconds (bench/history.py).

A line (JSON)::

    {"id": "2027-02-10-travel", "size": 1234567, "state": "sent", "failed": 0, "send_at": "2027-02-10T09:00+01:00"}

``size`` is the size of the whole send log, summary included. An entry is trusted only while the mailing's
``sendlog.jsonl`` is a regular file of exactly that size: a log that finished never grows again, so any other
size (a log that is not the one indexed, a line added after its summary, a log cut short) and the log itself is
read, as it would be without an index. A line that does not parse, an id indexed twice with different lines, a
state that is not a finished one: that entry is ignored, and the log is read. The index can therefore only save
reading a log that is finished; it never makes an unfinished one look finished unless the file itself is forged
to the byte size of a log, and only the dispatch job writes it (a pull request that changes it fails the check:
checks.rules.finished_index). `mailings status --verify` compares every entry with its log, replayed in full.

The file only grows: a run appends the entries of the mailings it finished (and of finished mailings it found
unindexed, e.g. from before the index existed), and publishing merges them onto main's copy, keeping main's
lines as they are.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from checks.model import FINISHED_INDEX_FILE, ID_PATTERN

INDEX_FILE = FINISHED_INDEX_FILE
FINISHED_STATES = frozenset({"sent", "sent-with-failures"})


class Entry(NamedTuple):
    """One finished mailing as the index has it (a tuple: 1,500 of them are made at every scheduled run)."""

    id: str
    size: int  # of the whole send log, summary included
    state: str  # sent or sent-with-failures
    failed: int
    send_at: str | None  # the mailing's send_at as its summary has it (ISO 8601, minutes)

    @property
    def failed_count(self) -> int:  # the names sender.state.finished reads
        return self.failed

    @property
    def unknown_count(self) -> int:
        return 0  # a log with unknown recipients is never indexed: a resume may send them


def index_path(root: Path) -> Path:
    return root / INDEX_FILE


def entry_line(mailing_id: str, size: int, state: str, failed: int, send_at: str | None) -> bytes:
    """The index line of a finished mailing (deterministic: two runs that index it write the same line)."""
    fields = {"id": mailing_id, "size": size, "state": state, "failed": failed, "send_at": send_at}
    return json.dumps(fields, ensure_ascii=True, separators=(", ", ": ")).encode("ascii") + b"\n"


def parse_index(data: bytes) -> dict[str, Entry | None]:
    """The entries of an index's bytes, by id; None for an id indexed twice with different lines (trusted neither,
    and not indexed again). Lines that are not a valid entry are left out (see the module's text)."""
    found: dict[str, Entry | None] = {}
    for entry in map(_entry, map(_one, _lines(data))):
        if entry is None:
            continue
        # Two different lines for one mailing: trust neither.
        known = found.get(entry.id, entry)
        found[entry.id] = entry if known == entry else None
    return found


def _lines(data: bytes) -> list[str]:
    """*data*'s lines as text; a line that is not UTF-8 is left out (only it)."""
    try:
        return data.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return [line.decode("utf-8") for line in data.split(b"\n") if _is_utf8(line)]


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_DECODER = json.JSONDecoder()


def _one(line: str) -> Any:
    """The one JSON value *line* holds; None when it holds none, or more than one (each line is read alone, so that
    no line can lend another a part of an entry)."""
    line = line.strip()
    try:
        value, end = _DECODER.raw_decode(line)
    except ValueError:
        return None
    return value if end == len(line) else None


def _entry(item: Any) -> Entry | None:
    """The entry *item* (a parsed line) is, when it is a valid one."""
    try:
        entry = Entry(item["id"], item["size"], item["state"], item["failed"], item["send_at"])
    except (TypeError, KeyError, IndexError):
        return None
    return entry if _valid(entry) else None


def _valid(entry: Entry) -> bool:
    mailing_id, size, state, failed, send_at = entry
    return (
        type(size) is int
        and size > 0
        and type(failed) is int
        and failed >= 0
        and (state == "sent" if failed == 0 else state == "sent-with-failures")
        and (send_at is None or type(send_at) is str)
        and type(mailing_id) is str
        and ID_PATTERN.match(mailing_id) is not None
    )


def read_index(root: Path) -> dict[str, Entry | None]:
    """The entries of the index in *root*, as parse_index gives them ({} when there is none or it is unreadable)."""
    try:
        fd = os.open(index_path(root), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return {}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        with os.fdopen(os.dup(fd), "rb") as file:
            return parse_index(file.read())
    except OSError:
        return {}
    finally:
        os.close(fd)


def holds(entry: Entry | None, log: str) -> bool:
    """True when *entry* vouches for the send log at *log* (a path): a regular file, not a link, of its size."""
    if entry is None:
        return False
    try:
        info = os.lstat(log)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == entry.size


def append(root: Path, lines: Iterable[bytes]) -> None:
    """Append *lines* to the index in *root* in one write (O_APPEND: two processes never interleave a line).
    An index that cannot be written costs later runs a read of those logs, nothing more: never an error."""
    data = b"".join(lines)
    if not data:
        return
    path = index_path(root)
    with contextlib.suppress(OSError):
        if path.is_symlink():
            return  # a link could point the write anywhere
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            if _ends_torn(fd):
                data = b"\n" + data  # a line cut short by a killed run stays on its own line, and is ignored
            os.write(fd, data)
        finally:
            os.close(fd)


def _ends_torn(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def merged(on_main: bytes, local: bytes) -> bytes:
    """*on_main* with the entries of *local* whose mailing it does not index yet appended: main's lines stay as
    they are (the index only grows), and two runs that indexed different mailings both keep theirs."""
    known = {item.get("id") for item in map(_one, _lines(on_main)) if isinstance(item, dict)}
    extra: dict[str, bytes] = {}
    for line in _lines(local):
        entry = _entry(_one(line))
        if entry is not None and entry.id not in known:
            extra.setdefault(entry.id, line.strip().encode("utf-8") + b"\n")
    if not extra:
        return on_main
    base = on_main if not on_main or on_main.endswith(b"\n") else on_main + b"\n"
    return base + b"".join(extra.values())

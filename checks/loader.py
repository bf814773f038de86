"""Reads mailing directories into the model. A broken file is a value, never an exception."""

from __future__ import annotations

import csv
import errno
import io
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Literal

from checks.errors import UsageError
from checks.model import (
    BODY_PATTERN,
    MAILING_FILE,
    SENDLOG_FILE,
    Address,
    Body,
    DirEntry,
    EntryKind,
    Finding,
    Layout,
    ListFile,
    ListProblem,
    Loc,
    Mailing,
    RecipientList,
    SpecialListError,
    dispatched,
    error,
    is_age_file,
    parse_local_datetime,
)
from checks.policy import FileSource, Policy
from checks.policy import special_list_variable as special_list_variable  # where callers found it before
from checks.schemas import what_it_is
from checks.yamlsafe import Document, YamlError, loads

MAILINGS_DIR = "mailings"
MAX_YAML_BYTES = 256 * 1024
MAX_BODY_BYTES = 1024 * 1024
MAX_LIST_BYTES = 64 * 1024 * 1024


def discover(root: Path) -> list[Path]:
    """Every request directory under <root>/mailings, sorted by name.

    A symbolic link to a directory counts (it is loaded as a link, which [attachments] reports); anything else
    that is not a directory is not a request ([layout] reports it).
    """
    base = root / MAILINGS_DIR
    return [base / name for name in listing(root)[0]]


def listing(root: Path) -> tuple[list[str], frozenset[str]]:
    """The names of the request directories under <root>/mailings (those `discover` finds), sorted, and which of
    them are symbolic links. From one os.scandir: the kind of each entry comes with the listing (only a link is
    stat'ed), which matters to the commands that run every 15 minutes once mailings/ holds years of requests."""
    names: list[str] = []
    links: set[str] = set()
    try:
        with os.scandir(root / MAILINGS_DIR) as entries:
            for entry in entries:
                if entry.is_dir():
                    names.append(entry.name)
                    if entry.is_symlink():
                        links.add(entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return [], frozenset()
    names.sort()
    return names, frozenset(links)


def load_layout(root: Path, policy: Policy | None = None) -> Layout:
    """What stands directly under <root>/mailings, for the rules about the folder as a whole; with *policy*, also
    the encrypted files of its special lists."""
    lists = _list_files(root, policy) if policy is not None else ()
    base = root / MAILINGS_DIR
    kind = _kind(base)
    if kind != "dir":
        return Layout(MAILINGS_DIR, kind, list_files=lists)
    entries = tuple(_entries(base))
    linked = frozenset(e.name for e in entries if e.kind == "symlink" and (base / e.name).is_dir())
    return Layout(MAILINGS_DIR, kind, entries, linked, lists)


def _list_files(root: Path, policy: Policy) -> tuple[ListFile, ...]:
    """Each special list whose source is a file: what stands at its path, whether it is encrypted, and whether its
    plain text stands beside it."""
    found: list[ListFile] = []
    for special in policy.special_lists.values():
        if not isinstance(special.source, FileSource):
            continue
        path = special.source.path
        kind = _kind(root / path)
        encrypted = False
        if kind == "file":
            try:
                encrypted = is_age_file(read_head(root / path, AGE_HEAD_BYTES))
            except OSError:
                encrypted = False
        plain = path.removesuffix(".age")
        beside = plain if _kind(root / plain) is not None else None
        found.append(ListFile(special.id, path, kind, encrypted, beside))
    return tuple(found)


# Enough of a file to tell whether it begins as an age file does (armour may follow a little blank space).
AGE_HEAD_BYTES = 256


def read_head(path: Path, size: int) -> bytes:
    """The first *size* bytes of a regular file (a link is not followed); OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return os.read(fd, size)
    finally:
        os.close(fd)


def _kind(path: Path) -> EntryKind | None:
    """What *path* itself is, a link not followed; None when nothing is there."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else "other"


def resolve_targets(root: Path, paths: list[str], cwd: Path) -> list[Path]:
    """Command-line paths as request directories under the root: a request directory itself, or any file or
    directory inside one (pre-commit passes the changed files), mapped to its request. A file or link directly
    under mailings/ maps to no request: [layout], which runs whatever is named, reports it."""
    base = (root / MAILINGS_DIR).resolve()
    found: list[Path] = []
    for text in paths:
        # Resolve the parents only: the named entry may be a symlink that the attachments rule must see as one.
        absolute = Path(os.path.abspath(cwd / text))
        parts = (absolute.parent.resolve() / absolute.name).parts
        if parts[: len(base.parts)] != base.parts or len(parts) == len(base.parts):
            raise UsageError(f"{text}: not in a request directory; requests are directories directly under {base}")
        directory = root / MAILINGS_DIR / parts[len(base.parts)]
        if len(parts) == len(base.parts) + 1 and not directory.is_dir() and _kind(directory) is not None:
            continue  # a file or link directly under mailings/ is no request; [layout] reports it
        if not directory.is_dir():
            raise UsageError(f"{text}: no such request directory")
        if directory not in found:
            found.append(directory)
    return found


def load_mailing(root: Path, directory: Path, policy: Policy, special: Mapping[str, Path] | None = None) -> Mailing:
    """Load one request. *special* maps special-list ids to files of addresses (send time only)."""
    rel = f"{MAILINGS_DIR}/{directory.name}"
    if directory.is_symlink():
        return Mailing(id=directory.name, root=root, directory=rel, doc=None, yaml_problem=None, is_symlink=True)
    entries = tuple(_entries(directory))
    doc, problem = _read_yaml(directory / MAILING_FILE, f"{rel}/{MAILING_FILE}")
    mailing = Mailing(id=directory.name, root=root, directory=rel, doc=doc, yaml_problem=problem, entries=entries)
    send_at_text = mailing.get("send_at", kind=str)
    return Mailing(
        id=mailing.id,
        root=root,
        directory=rel,
        doc=doc,
        yaml_problem=problem,
        entries=entries,
        bodies=_bodies(directory, rel, entries),
        lists=tuple(_lists(mailing, directory, policy, special or {})),
        send_at=parse_local_datetime(send_at_text, policy.timezone, policy.default_send_time) if send_at_text else None,
        dispatched=any(e.name == SENDLOG_FILE and e.kind == "file" for e in entries) and _dispatched(directory),
    )


def _dispatched(directory: Path) -> bool:
    """Whether the request's send log shows that a run started sending it (read only as far as needed)."""
    try:
        fd = os.open(directory / SENDLOG_FILE, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    with os.fdopen(fd, "rb") as log:
        if not stat.S_ISREG(os.fstat(log.fileno()).st_mode):
            return False
        return dispatched(log)


def _entries(directory: Path) -> Iterator[DirEntry]:
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        kind: EntryKind
        if entry.is_symlink():
            kind = "symlink"
        elif entry.is_dir(follow_symlinks=False):
            kind = "dir"
        elif entry.is_file(follow_symlinks=False):
            kind = "file"
        else:
            kind = "other"
        yield DirEntry(entry.name, kind)


def read_regular(path: Path, limit: int, *, follow: bool = False) -> bytes:
    """Bytes of a regular file (no FIFO or device; no symlink unless *follow*), at most *limit*; OSError or
    ValueError otherwise."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("it is not a regular file")
        if info.st_size > limit:
            raise ValueError(f"it is larger than {limit // 1024} KiB")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(limit + 1)
    finally:
        os.close(fd)


def read_failure(exc: OSError | ValueError) -> str:
    """Why read_regular failed, in words."""
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return "it is a symbolic link; add the file itself"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def _read_yaml(path: Path, shown: str) -> tuple[Document | None, Finding | None]:
    loc = Loc(shown)
    try:
        raw = read_regular(path, MAX_YAML_BYTES)
    except FileNotFoundError:
        return None, error(loc, f"{MAILING_FILE} is missing; create it (`mailings new ID` writes a template)")
    except (OSError, ValueError) as exc:
        return None, error(loc, f"{MAILING_FILE} cannot be read: {read_failure(exc)}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, error(Loc(shown, line, 1), "not valid UTF-8; save the file as UTF-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        doc = loads(text)
    except YamlError as exc:
        return None, error(Loc(shown, exc.line, exc.column), exc.message)
    if not isinstance(doc.data, dict):
        return None, error(
            Loc(shown, 1, 1),
            f"the file must hold the request's fields, one per line as name: value (send_at: ..., purpose: ...); "
            f"here it is {what_it_is(doc.data)}",
        )
    return doc, None


def _bodies(directory: Path, rel: str, entries: tuple[DirEntry, ...]) -> dict[str, Body]:
    bodies: dict[str, Body] = {}
    for entry in entries:
        m = BODY_PATTERN.match(entry.name)
        if m and entry.kind == "file":
            try:
                raw = read_regular(directory / entry.name, MAX_BODY_BYTES)
            except (OSError, ValueError):
                continue  # the content rule reports a body it cannot see
            bodies[m[1]] = Body(m[1], f"{rel}/{entry.name}", raw)
    return bodies


def _lists(mailing: Mailing, directory: Path, policy: Policy, special: Mapping[str, Path]) -> Iterator[RecipientList]:
    for index, item in enumerate(mailing.get("recipients", "lists", kind=list) or []):
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("file"), str):
            yield _file_list(index, item["file"], directory, mailing.directory)
        elif isinstance(item.get("special"), str):
            yield _special_list(index, item["special"], policy, special)


def _file_list(index: int, name: str, directory: Path, rel: str) -> RecipientList:
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("~"):
        return _unread(index, "file", name, "outside", "leaves the request directory; name a file in this directory")
    if BODY_PATTERN.match(name) or name in (MAILING_FILE,):
        return _unread(index, "file", name, "not-a-list", "is not a recipient list")
    shown = f"{rel}/{name}"
    try:
        raw = read_regular(directory / name, MAX_LIST_BYTES)
    except FileNotFoundError:
        return _unread(index, "file", name, "missing", "does not exist; add the file or fix the name")
    except (OSError, ValueError) as exc:
        symlink = isinstance(exc, OSError) and exc.errno == errno.ELOOP
        return _unread(
            index, "file", name, "symlink" if symlink else "unreadable", f"cannot be read: {read_failure(exc)}"
        )
    if raw.startswith(_WORKBOOK_HEADS):
        return _unread(index, "file", name, "encoding", _WORKBOOK)
    notes: list[ListNote] = []
    try:
        text = _decode(raw)
    except UnicodeDecodeError as exc:
        # Excel's plain "CSV (Comma delimited)" writes the older Windows character set. The addresses in it are
        # plain ASCII, read the same either way, so the list is read, with a warning to save it properly.
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError:
            return _unread(index, "file", name, "encoding", _NOT_UTF8)
        notes.append(ListNote(shown, raw[: exc.start].count(b"\n") + 1, _WINDOWS_TEXT))
    table = name.lower().endswith(".csv")
    if not table:
        # A .txt list whose first line is a header naming an e-mail column is a table too (one saved as text).
        table = _header(text) is not None
    if table:
        return _csv_list(index, name, shown, text, notes)
    addresses = parse_text_list(text, shown)
    if "<" in text:  # only lists pasted from a mail program pay for this pass
        addresses, pasted = _named_addresses(addresses)
        if pasted:
            notes.append(ListNote(shown, pasted[0], _pasted(len(pasted))))
    return ReadList(index, "file", name, addresses=addresses, resolved=True, notes=tuple(notes))


@dataclass(frozen=True)
class ListNote:
    """Something the loader worked around in a list file, which the recipients rule warns of at *line*."""

    file: str
    line: int
    words: str  # what follows "the list file 'NAME'"


@dataclass(frozen=True)
class ReadList(RecipientList):
    """A list file as read, with what the loader had to work around in it."""

    notes: tuple[ListNote, ...] = ()


# An .xlsx workbook is a ZIP archive; an old .xls is an OLE2 compound file.
_WORKBOOK_HEADS = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")
_SAVE_AS_CSV = "File > Save As > CSV UTF-8 (Comma delimited) (*.csv)"
_WORKBOOK = (
    f"is an Excel workbook, not a list of addresses in plain text; open it in Excel and save it as CSV UTF-8 "
    f"({_SAVE_AS_CSV}), then name that .csv file in recipients.lists"
)
_NOT_UTF8 = (
    f"is not plain text that can be read; from Excel, save it as CSV UTF-8 ({_SAVE_AS_CSV}); from a text editor, "
    "save it with the character set UTF-8"
)
_WINDOWS_TEXT = (
    "is saved in an older Windows character set, not UTF-8: its addresses were read, but letters such as "
    f"å, ä and ö in it are not kept reliably; from Excel, save it as CSV UTF-8 ({_SAVE_AS_CSV}); from a text "
    "editor, save it with the character set UTF-8"
)


def _pasted(count: int) -> str:
    lines = f"{count} line{'s' if count != 1 else ''}"
    return (
        f"has {lines} with names, as pasted from Outlook (Name <address>); the address between < and > was read "
        f"on {'each' if count != 1 else 'it'}. Check that these are the people you mean, and keep one address per "
        "line"
    )


def _decode(raw: bytes) -> str:
    """The text of a list file: UTF-8 (a byte-order mark dropped), or UTF-16 with its mark (Excel's "Unicode
    Text")."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    return raw.decode("utf-8-sig")


# Header names of the e-mail column, compared in lower case without '-', '_' and spaces; the first found wins, so
# that "email" beats "adress" (which in Swedish may be a postal address) when a file has both.
EMAIL_HEADERS = (
    "email",
    "emailaddress",
    "emailadress",
    "epost",
    "epostadress",
    "mail",
    "mailaddress",
    "mailadress",
    "mejl",
    "mejladress",
    "address",
    "adress",
)
_HEADER_NOISE = str.maketrans("", "", "-_ .")
_SEPARATORS = (",", ";", "\t")


def _header(text: str) -> tuple[str, int] | None:
    """The separator of a table whose first line is a header naming an e-mail column, and where that column stands;
    None if the first line names none. The separator is the one whose cells include that column: Excel in Swedish
    writes ';', in English ','; "Unicode Text" uses tabs. No other separator is guessed."""
    newline = text.find("\n")
    first = text[:newline] if newline >= 0 else text
    for separator in _SEPARATORS:
        column = _email_column(first.split(separator))
        if column is not None:
            return separator, column
    return None


def _email_column(header: list[str]) -> int | None:
    """Where the e-mail column stands in *header*, by the first name of EMAIL_HEADERS it has; None if none."""
    written = [cell.strip().strip('"').lower() for cell in header]
    if "email" in written:  # written exactly so, it wins over "E-mail" and the like
        return written.index("email")
    names = [name.translate(_HEADER_NOISE) for name in written]
    for wanted in EMAIL_HEADERS:
        if wanted in names:
            return names.index(wanted)
    return None


# "Anna Andersson <anna@kth.se>", as a mail program writes a recipient; a line may hold several, as Outlook copies.
_NAMED = re.compile(r"<([^<>]*)>")


def _named_addresses(addresses: tuple[Address, ...]) -> tuple[tuple[Address, ...], list[int]]:
    """*addresses* with each "Name <address>" entry read for the address(es) between < and >, and the lines read
    so."""
    found: list[Address] = []
    pasted: list[int] = []
    for entry in addresses:
        inside = _NAMED.findall(entry.address) if "<" in entry.address else []
        if not inside:
            found.append(entry)
            continue
        pasted.append(entry.line)
        found += (Address(value.strip(), entry.file, entry.line) for value in inside)
    return tuple(found), pasted


def parse_text_list(text: str, shown: str) -> tuple[Address, ...]:
    """One address per line; blank lines and '#' comments are skipped."""
    # A list may have hundreds of thousands of lines: strip them and make the Addresses in passes that
    # run in C, with one Python step per line only to find the lines to keep. tuple.__new__ is what
    # Address._make calls; called directly, it saves a Python function call per address.
    values = list(map(str.strip, text.splitlines()))
    numbers = [number for number, value in enumerate(values, start=1) if value and value[0] != "#"]
    if len(numbers) != len(values):
        values = [values[number - 1] for number in numbers]
    return tuple(map(tuple.__new__, repeat(Address), zip(values, repeat(shown), numbers)))


def _csv_list(index: int, name: str, shown: str, text: str, notes: list[ListNote] | None = None) -> RecipientList:
    notes = notes or []
    separator, column = _header(text) or (",", None)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    try:
        header = next(reader, None)
        if header is None:
            return ReadList(index, "file", name, resolved=True, notes=tuple(notes))
        if column is None or column >= len(header):
            return _unread(index, "file", name, "no-email-column", "has no e-mail column in its header line")
        found: list[Address] = []
        start = reader.line_num + 1  # a quoted field may span lines; point at the row's first one
        for row in reader:
            if row and column < len(row) and row[column].strip():
                found.append(Address(row[column].strip(), shown, start))
            start = reader.line_num + 1
    except csv.Error as exc:
        return _unread(
            index, "file", name, "csv", f"has a line that cannot be read as CSV (line {reader.line_num}): {exc}"
        )
    addresses = tuple(found)
    if any("<" in entry.address for entry in addresses):
        addresses, pasted = _named_addresses(addresses)
        if pasted:
            notes.append(ListNote(shown, pasted[0], _pasted(len(pasted))))
    return ReadList(index, "file", name, addresses=addresses, resolved=True, notes=tuple(notes))


def _unread(index: int, kind: Literal["file", "special"], name: str, problem: ListProblem, words: str) -> RecipientList:
    return RecipientList(index, kind, name, error=words, problem=problem)


def _special_list(index: int, list_id: str, policy: Policy, special: Mapping[str, Path]) -> RecipientList:
    if list_id not in policy.special_lists:
        return _unread(index, "special", list_id, "unknown-special", "is not a special list in the policy")
    if list_id not in special:
        return RecipientList(index, "special", list_id)
    try:
        # The sender's mapping resolves a list on first use (sender.lists): a directory that is down, a key that
        # does not fit, a list far from its size, and the like come back as the reason.
        path = special[list_id]
    except SpecialListError as exc:
        return _unread(index, "special", list_id, "unresolved", str(exc))
    try:
        # IT's own file, named by the environment: a link to it is followed, unlike in a request.
        text = read_regular(path, MAX_LIST_BYTES, follow=True).decode("utf-8-sig")
    except UnicodeDecodeError:  # a ValueError too: caught first, to be told in words
        return _unread(index, "special", list_id, "encoding", f"cannot be read from {path}: it is not valid UTF-8")
    except (OSError, ValueError) as exc:
        return _unread(index, "special", list_id, "unreadable", f"cannot be read from {path}: {read_failure(exc)}")
    return RecipientList(index, "special", list_id, addresses=parse_text_list(text, str(path)), resolved=True)

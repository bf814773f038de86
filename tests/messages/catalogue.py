"""Every message `mailings check` can print, each with the smallest request that prints it.

One line per message where it fits: Case(rule, a part of the message, what to change in the valid request of
tests/conftest.py). tests/messages/test_messages.py runs every case through `mailings check` (at send time,
through the sender's rules, for a case with `special` lists), asserts that the message is printed and that no
printed line uses programmers' words, and fails for any place in the checker that makes a message no case here
reaches. A new message needs one Case below (or, when only another test can reach it, a line in ELSEWHERE).
"""

from __future__ import annotations

import json
import os

from checks.model import SpecialListError
from sender.bounces import BOUNCES_DIR
from sender.journal import make_hasher
from tests.conftest import EVENT, Repo, addresses, git
from tests.messages.case import MAILING, Case

# A request in YAML, to break the way people do (send_at is on line 1, purpose on line 2, sender on 3-4).
GOOD = "\n".join(
    [
        'send_at: "2027-02-10 09:00"',
        "purpose: Announce the new travel booking system.",
        "sender:",
        "  unit: it",
        "contact:",
        "  name: Anna Andersson",
        "  email: anna.andersson@kth.se",
        '  phone: "+46 8 790 60 00"',
        "recipients:",
        "  group: All employees who book business travel",
        "  why: Everyone who books travel must use the new system.",
        "  lists:",
        "    - file: recipients.txt",
        "languages: [sv, en]",
        "subject:",
        "  sv: Nytt system för resebokning",
        "  en: New travel booking system",
        "",
    ]
)
PURPOSE = "purpose: Announce the new travel booking system."
BOUNCE_KEY = "a key of the send logs"


def yaml_with(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


def body(text: str) -> dict[str, str]:
    """Both bodies with *text* added to the Swedish one."""
    return {"sv": "Hej!\n\n" + text + "\n", "en": "Hello!\n\nRead more at https://www.kth.se/en/travel\n"}


def _link(target: str, name: str) -> object:
    def setup(repo: Repo) -> None:
        os.symlink(target, repo.root / "mailings" / MAILING / name)

    return setup


def _fifo(name: str) -> object:
    def setup(repo: Repo) -> None:
        os.mkfifo(repo.root / "mailings" / MAILING / name)

    return setup


def _directory(name: str) -> object:
    def setup(repo: Repo) -> None:
        (repo.root / "mailings" / MAILING / name).mkdir()

    return setup


def _remove(name: str) -> object:
    def setup(repo: Repo) -> None:
        (repo.root / "mailings" / MAILING / name).unlink()

    return setup


def _beside(name: str, content: bytes = b"x\n") -> object:
    """A file directly under mailings/, beside the requests."""

    def setup(repo: Repo) -> None:
        (repo.root / "mailings" / name).write_bytes(content)

    return setup


def _mailings_is_a_file(repo: Repo) -> None:
    moved = repo.root / "requests"
    (repo.root / "mailings").rename(moved)
    os.symlink(moved, repo.root / "mailings")


def _sent_then_edited(repo: Repo) -> None:
    """A sent mailing on main, then a branch that edits it (and its send log)."""
    directory = repo.root / "mailings" / MAILING
    (directory / "sendlog.jsonl").write_text('{"event": "start"}\n', encoding="utf-8")
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "sent")
    git(repo.root, "switch", "--quiet", "--create", "request")
    (directory / "body.en.txt").write_text("Hello, changed\n", encoding="utf-8")
    (directory / "sendlog.jsonl").write_text('{"event": "start"}\n{"event": "end"}\n', encoding="utf-8")
    git(repo.root, "commit", "--quiet", "--all", "-m", "edit")


def _index_added(repo: Repo) -> None:
    """main with the request; a branch that adds an entry to the index of finished mailings by hand."""
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "request")
    git(repo.root, "switch", "--quiet", "--create", "request")
    line = f'{{"id": "{MAILING}", "size": 1, "state": "sent", "failed": 0, "send_at": null}}\n'
    (repo.root / "finished-mailings.jsonl").write_text(line, encoding="utf-8")
    git(repo.root, "add", "finished-mailings.jsonl")
    git(repo.root, "commit", "--quiet", "-m", "index by hand")


def _policy_relaxed(repo: Repo) -> None:
    """main with the policy's lead time; a branch that shortens it and adds a request that needs the shorter one."""
    policy = repo.root / "policy.yaml"
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "policy.yaml", "schema")
    git(repo.root, "commit", "--quiet", "-m", "policy")
    git(repo.root, "switch", "--quiet", "--create", "request")
    text = policy.read_text(encoding="utf-8")
    policy.write_text(text.replace("lead_time_working_days: 10", "lead_time_working_days: 2"), encoding="utf-8")


def _cancel_removed(repo: Repo) -> None:
    directory = repo.root / "mailings" / MAILING
    text = (directory / "mailing.yaml").read_text(encoding="utf-8")
    git(repo.root, "init", "--quiet", "--initial-branch=main")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "cancelled")
    git(repo.root, "switch", "--quiet", "--create", "request")
    (directory / "mailing.yaml").write_text(text.split("cancel:")[0], encoding="utf-8")
    git(repo.root, "commit", "--quiet", "--all", "-m", "uncancel")


def _list_source(source: dict[str, object], files: dict[str, bytes] | None = None, link: str | None = None) -> object:
    """All students' special list read from *source*, with *files* in the repository (or a link to *link*)."""

    def setup(repo: Repo) -> None:
        import yaml

        path = repo.root / "policy.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["special_lists"]["all-students"]["source"] = source
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        for name, content in (files or {}).items():
            (repo.root / name).parent.mkdir(parents=True, exist_ok=True)
            (repo.root / name).write_bytes(content)
        if link is not None:
            (repo.root / "lists").mkdir(exist_ok=True)
            os.symlink(link, repo.root / "lists" / "students.age")

    return setup


AGE = b"age-encryption.org/v1\n-> X25519 abc\n"

CASES: list[Case] = [
    # [yaml]: the file as it reads
    Case("yaml", "mailing.yaml is missing; create it", setup=_remove("mailing.yaml")),
    Case("yaml", "mailing.yaml cannot be read: it is larger than 256 KiB", yaml=GOOD + "#" + "x" * 262144 + "\n"),
    Case(
        "yaml",
        "mailing.yaml cannot be read: it is a symbolic link; add the file itself",
        setup=lambda r: _yaml_linked(r),
    ),
    Case("yaml", "not valid UTF-8; save the file as UTF-8", setup=lambda r: _write_bytes(r, b"purpose: caf\xe9\n")),
    Case("yaml", "the file must hold the request's fields, one per line", yaml="- a\n- b\n"),
    Case("yaml", "the file is empty; write the request's fields in it", yaml=""),
    Case("yaml", "'purpose' is written twice here (first on line 2)", yaml=GOOD + "purpose: again\n"),
    Case("yaml", "&s at the start of a value marks it to be repeated", yaml=yaml_with("  unit: it", "  unit: &s it")),
    Case("yaml", "*s at the start of a value repeats another part", yaml=GOOD + "x: *s\n"),
    Case("yaml", "!custom at the start of a value would change", yaml=yaml_with(PURPOSE, "purpose: !custom x")),
    Case("yaml", "a line '---' here starts a second request", yaml=GOOD + "---\na: 1\n"),
    Case("yaml", "more than 64 levels deep", yaml="a: " + "[" * 70 + "]" * 70 + "\n"),
    Case("yaml", "a field's name must be a plain word", yaml="? [a, b]\n: c\n"),
    Case("yaml", "a field's name must be a plain word before its colon", yaml="[a]: b\n"),
    Case("yaml", "line 4 is indented with a tab character", yaml=yaml_with("  unit: it", "\tunit: it")),
    Case("yaml", "a tab character where a space is expected", yaml=yaml_with(PURPOSE, "purpose:\tAnnounce")),
    Case("yaml", "the value of 'purpose' contains ': '", yaml=yaml_with(PURPOSE, "purpose: Note: new system")),
    Case("yaml", "'role' is indented further than 'unit'", yaml=yaml_with("  unit: it", "  unit: it\n    role: x")),
    Case(
        "yaml",
        "'role' is indented by 1 space, which lines up with none",
        yaml=yaml_with("  unit: it", "  unit: it\n role: x"),
    ),
    Case("yaml", 'the quote " that begins this value is never closed', yaml=GOOD + 'x: "open\n'),
    Case("yaml", 'the quote " that begins the value on line 2 is not', yaml=yaml_with(PURPOSE, 'purpose: "Announce')),
    Case("yaml", "\\q inside double quotes is read as a special", yaml=yaml_with(PURPOSE, 'purpose: "a \\q b"')),
    Case("yaml", "is read as a list in brackets", yaml=yaml_with("languages: [sv, en]", "languages: [sv, en")),
    Case("yaml", "a value that begins with | starts a block of text", yaml=yaml_with(PURPOSE, "purpose: | new")),
    Case("yaml", "cannot begin with '- '", yaml=yaml_with(PURPOSE, "purpose: - new")),
    Case("yaml", "a value cannot begin with @", yaml=yaml_with(PURPOSE, "purpose: @all")),
    Case("yaml", "put a space after the colon on line 4", yaml=yaml_with("  unit: it", "  unit:it\n  role: x")),
    Case(
        "yaml", "line 4 (unit it) is not written as name: value", yaml=yaml_with("  unit: it", "  unit it\n  role: x")
    ),
    Case(
        "yaml", "the list entry - x stands where a field of 'sender'", yaml=yaml_with("  unit: it", "  unit: it\n  - x")
    ),
    Case(
        "yaml",
        "the entries of 'lists' must follow one another",
        yaml=yaml_with("    - file: recipients.txt", "  - file: recipients.txt\n  x: 1\n  - file: b.txt"),
    ),
    Case("yaml", "the value of 'purpose' ends at its second '", yaml=yaml_with(PURPOSE, "purpose: 'KTH's system'")),
    Case("yaml", "begins with [, which makes the part up to ]", yaml=yaml_with(PURPOSE, "purpose: [Draft] system")),
    Case("yaml", "line 18 begins with ':'", yaml=GOOD + ": x\n"),
    Case("yaml", "the invisible character U+0007 cannot stand", yaml=yaml_with(PURPOSE, "purpose: a\x07b")),
    Case("yaml", "line 19 cannot be read as it is written", yaml=GOOD + "a: b\n" + "c" * 1100 + ": d\n"),
    Case("yaml", "a \\u escape gives U+D800", yaml=yaml_with(PURPOSE, 'purpose: "a \\ud800 b"')),
    Case(
        "yaml", "an escape in this quoted text gives the control character", yaml=yaml_with(PURPOSE, 'purpose: "\\x07"')
    ),
    # [schema]: the fields
    Case(
        "schema", "resume_at '2027-02-30 09:00' is not a real date and time", changes={"resume_at": "2027-02-30 09:00"}
    ),
    Case("schema", "the directory name 'Travel' is not a valid id", setup=lambda r: _rename(r, "Travel")),
    Case("schema", "unknown field 'sned_at' (did you mean 'send_at'?)", changes={"sned_at": "x"}),
    Case("schema", "unknown field 'colour'; the fields that can stand here are", changes={"colour": "red"}),
    Case("schema", "'phone' is a field of 'contact'; indent it under contact", changes={"phone": "123"}),
    Case("schema", "the request has no 'purpose'; add it", changes={"purpose": None}),
    Case("schema", "purpose must be text; here it is a number", changes={"purpose": 5}),
    Case(
        "schema",
        "contact.phone must be text; here it is a number: put the value in quotes",
        changes={"contact": {"phone": 87}},
    ),
    Case("schema", "recipients.lists must be a list, one entry per line", changes={"recipients": {"lists": "a.txt"}}),
    Case("schema", "purpose must be text; here it is true, which is read as yes or no", changes={"purpose": True}),
    Case("schema", "purpose must be text; here it is a group of fields", changes={"purpose": {"a": 1}}),
    Case("schema", "delivery.mode must be bulk or individual", changes={"delivery": {"mode": "bcc"}}),
    Case("schema", 'send_at must be "YYYY-MM-DD HH:MM" or "YYYY-MM-DD"', changes={"send_at": "10 Feb"}),
    Case("schema", "purpose is empty; fill it in", changes={"purpose": ""}),
    Case("schema", "contact.email is too short: it needs at least 3 characters", changes={"contact": {"email": "a@"}}),
    Case("schema", "'sv' is in languages twice; keep it once", changes={"languages": ["sv", "en", "sv"]}),
    Case("schema", "'EN' cannot be a field of subject", changes={"subject": {"EN": "x"}}),
    Case(
        "schema",
        "the 1st entry of recipients.lists must name either a file or a special list, not both",
        changes={"recipients": {"lists": [{"file": "recipients.txt", "special": "all-employees"}]}},
    ),
    Case(
        "schema",
        "the 1st entry of recipients.lists has no 'file' or 'special'; add one of them",
        changes={"recipients": {"lists": [{"source": {"text": "Ladok", "date": "2027-01-05"}}]}},
    ),
    Case("schema", "send_at '2027-02-30 09:00' is not a real date and time", changes={"send_at": "2027-02-30 09:00"}),
    Case("schema", "event.date '2027-02-31' is not a real date", changes={"event": {**EVENT, "date": "2027-02-31"}}),
    Case("yaml", "this number is 5,000 digits long", yaml=yaml_with(PURPOSE, "purpose: " + "1" * 5000)),
    Case("yaml", "this number is infinite or not a number", yaml=yaml_with(PURPOSE, "purpose: .inf")),
    # [schema] in the words of any schema: fields a repository's own schema may add
    Case("schema", "x_limit must be at most 5; here it is 9", changes={"x_limit": 9}, setup=lambda r: _schema(r)),
    Case("schema", "x_code is not written as this field needs", changes={"x_code": "abc"}, setup=lambda r: _schema(r)),
    Case(
        "schema", "x_tags may have at most 1 entry, not 2", changes={"x_tags": ["a", "b"]}, setup=lambda r: _schema(r)
    ),
    Case("schema", "x_pair.a needs 'b' as well; add it", changes={"x_pair": {"a": 1}}, setup=lambda r: _schema(r)),
    Case("schema", "x_not 'x' is not valid here (Anything but x)", changes={"x_not": "x"}, setup=lambda r: _schema(r)),
    # [attachments]: the files of the request directory
    Case("attachments", "is a symbolic link; make it a real directory", setup=lambda r: _linked_request(r)),
    Case("attachments", "the file notes.txt is a symbolic link", setup=_link("recipients.txt", "notes.txt")),
    Case("attachments", "images/ is a directory; a request holds no subdirectories", setup=_directory("images")),
    Case("attachments", "pipe is not a regular file (a named pipe", setup=_fifo("pipe")),
    Case("attachments", "body.de.txt is a body for language 'de'", files={"body.de.txt": "Hallo\n"}),
    Case("attachments", ".DS_Store is a file that macOS writes", files={".DS_Store": b"\x00\x00\x00\x01Bud1"}),
    Case(
        "attachments",
        "programme.pdf is not part of the request: mass mailings have no attachments",
        files={"programme.pdf": b"%PDF"},
    ),
    Case("attachments", "logo.png is an image", files={"logo.png": b"\x89PNG"}),
    Case("attachments", "extra.txt is not named in recipients.lists", files={"extra.txt": addresses(3)}),
    Case("attachments", "staff.xlsx looks like a list of people", files={"staff.xlsx": b"PK\x03\x04"}),
    Case("attachments", "did you mean body.de.txt? Rename it", files={"body_de.txt": "Hallo\n"}),
    Case("attachments", "looks like a message body saved as a docx document", files={"body.de.docx": b"PK"}),
    Case("attachments", "looks like a second copy of body.en.txt", files={"body.en.txt.txt": "Hello\n"}),
    Case("attachments", "looks like a second copy of mailing.yaml", files={"mailing.yml": "a: 1\n"}),
    Case(
        "attachments",
        "mailing.yml is not read: did you mean mailing.yaml?",
        setup=lambda r: _rename_file(r, "mailing.yaml", "mailing.yml"),
    ),
    Case("attachments", "run.sh is not part of the request, which holds only", files={"run.sh": "echo\n"}),
    Case(
        "attachments",
        "the list file '../x.txt' is not a file in this request's directory",
        changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"file": "../x.txt"}]}},
    ),
    # [layout]: what stands directly under mailings/
    Case(
        "layout", "only request directories and README.md belong directly under mailings/", setup=_beside(".gitignore")
    ),
    Case("layout", "Thumbs.db is a file that Windows writes", setup=_beside("Thumbs.db")),
    Case(
        "layout",
        "old is a symbolic link; only request directories",
        setup=lambda r: os.symlink("nowhere", r.root / "mailings" / "old"),
    ),
    Case("layout", "pipe is not a regular file", setup=lambda r: os.mkfifo(r.root / "mailings" / "pipe")),
    Case("layout", "mailings is a symbolic link, so git would not record", setup=_mailings_is_a_file),
    # [lead-time], [blackout], [send-time]: when
    Case("lead-time", "send_at 2027-01-22 is 9 working days after submission", changes={"send_at": "2027-01-22 09:00"}),
    Case("blackout", "send_at 2027-07-07 is in the blackout period July", changes={"send_at": "2027-07-07 09:00"}),
    Case(
        "blackout",
        "a blackout_exception must be agreed at least 10 working days before",
        changes={"send_at": "2027-01-04 09:00", "blackout_exception": {"reason": "x", "agreed_with": "y"}},
    ),
    Case(
        "blackout",
        "it is now 2027-07-02, inside the blackout period July",
        changes={"send_at": "2027-06-30 16:00"},
        special={},
        now="2027-07-02T09:00:00+02:00",
    ),
    Case("send-time", "send_at 2027-02-13 is a Saturday", changes={"send_at": "2027-02-13 09:00"}),
    Case("send-time", "send_at 2027-03-26 is a holiday (Good Friday)", changes={"send_at": "2027-03-26 09:00"}),
    Case("send-time", "send_at 18:30 is outside the send window 08:00-17:00", changes={"send_at": "2027-02-10 18:30"}),
    Case("send-time", "is more than 24 hours ago", changes={"send_at": "2027-01-08 09:00"}),
    Case(
        "send-time",
        "send_at 2027-01-11 09:00 has passed (it is now 2027-01-11 10:00)",
        changes={"send_at": "2027-01-11 09:00"},
    ),
    Case("send-time", "send_at 2027-01-11 16:00 is less than a day ahead", changes={"send_at": "2027-01-11 16:00"}),
    Case(
        "send-time",
        "the request's id 2027-02-10-travel says 2027-02-10, but send_at is",
        changes={"send_at": "2027-02-11 09:00"},
    ),
    # [content]: bodies and subjects
    Case("content", "language 'en' is declared but body.en.txt is missing", bodies={"sv": "Hej!\n"}),
    Case(
        "content",
        "body.en.txt cannot be read; a body must be a readable text file",
        bodies={"sv": "Hej!\n", "en": "x" * 1048577},
    ),
    Case("content", "body.en.txt is empty; write the message in language 'en'", bodies={"sv": "Hej!\n", "en": "\n"}),
    Case("content", "words; mass mailings must be concise", bodies={"sv": "ord " * 401, "en": "Hello!\n"}),
    Case(
        "content",
        "language 'en' is declared but has no subject",
        changes={"subject": {"sv": "Nytt system", "en": None}},
    ),
    Case("content", "subject.de is for a language that languages does not declare", changes={"subject": {"de": "Neu"}}),
    Case("content", "subject.en is empty; write the subject line", changes={"subject": {"en": "   "}}),
    Case("content", "characters long; keep it to 78 or fewer", changes={"subject": {"en": "A very long subject " * 5}}),
    Case("content", "must be a single line: it contains a line break", changes={"subject": {"en": "Two\u2028lines"}}),
    Case("content", "contains the invisible control character U+0009", changes={"subject": {"en": "Bell\tx"}}),
    Case("content", "which mail programs decode as an RFC 2047", changes={"subject": {"en": "=?utf-8?q?x?="}}),
    Case("content", "U+202E (right-to-left override)", changes={"subject": {"en": "New \u202e system"}}),
    Case(
        "content",
        "purpose still holds the template's text",
        changes={"purpose": "Replace this with one or two sentences."},
    ),
    Case("content", "body.sv.txt still holds the template's text", bodies=body("Ditt namn, din enhet")),
    Case("content", "the mark of an image left by the mail program", bodies=body("[cid:image001.png@01D9]")),
    Case("content", "has the merge field", bodies=body("Dear {{first_name}},")),
    Case("content", "mentions an attachment", bodies=body("Please see the attached file.")),
    # [plain-text]: the bodies as text
    Case("plain-text", "U+202E", bodies=body("evil \u202e txt.exe")),
    Case("plain-text", "U+200B", bodies=body("zero\u200bwidth")),
    # [links]
    Case("links", "is a Windows share path", bodies=body("\\\\fileserver\\share\\doc.pdf")),
    Case("links", "file:///etc/passwd", bodies=body("file:///etc/passwd")),
    Case("links", "has no valid host name, so where it leads cannot be checked", bodies=body("https://-bad-.kth.se/x")),
    Case("links", "https://example.com/x leads outside", bodies=body("https://example.com/x")),
    Case("links", "example.com", bodies=body("Visit example.com today")),
    Case("links", "www.kth.se/r?u=https://evil.com", bodies=body("https://www.kth.se/r?u=https://evil.com")),
    Case("links", "has a user name before '@'", bodies=body("https://user@www.kth.se/x")),
    Case("links", "uses http://; write https://", bodies=body("http://www.kth.se/x")),
    Case(
        "links",
        "the stopover https://evil.com/s is not within the university",
        changes={"external_links": [{"url": "https://example.com/x", "stopover": "https://evil.com/s"}]},
    ),
    Case(
        "links",
        "carries the address https://evil.com",
        changes={
            "external_links": [{"url": "https://example.com/x", "stopover": "https://www.kth.se/r?u=https://evil.com"}]
        },
    ),
    Case(
        "links",
        "the stopover http://www.kth.se/s uses http://",
        changes={"external_links": [{"url": "https://example.com/x", "stopover": "http://www.kth.se/s"}]},
        bodies=body("http://www.kth.se/s"),
    ),
    Case(
        "links",
        "is not linked from any body",
        changes={"external_links": [{"url": "https://example.com/x", "stopover": "https://www.kth.se/s"}]},
    ),
    Case(
        "links",
        "is within the university and needs no stopover",
        changes={"external_links": [{"url": "https://www.kth.se/x", "stopover": "https://www.kth.se/s"}]},
        bodies=body("https://www.kth.se/s"),
    ),
    Case(
        "links",
        "leads outside the university, to example.com; link to its stopover page https://www.kth.se/s",
        changes={"external_links": [{"url": "https://example.com/x", "stopover": "https://www.kth.se/s"}]},
        bodies=body("https://example.com/x https://www.kth.se/s"),
    ),
    Case(
        "links",
        "which that page can send the reader on to (a redirect) outside the university, to example.com; link to its",
        changes={"external_links": [{"url": "https://example.com/x", "stopover": "https://www.kth.se/s"}]},
        bodies=body("https://www.kth.se/r?u=https://example.com/x https://www.kth.se/s"),
    ),
    Case(
        "links",
        "link to a page within the university that is not a redirect",
        bodies=body("https://www.kth.se/r?u=ftp://evil.com/x"),
    ),
    Case("plain-text", "invisible tag characters (U+E0041 to U+E0042)", bodies=body("a\U000e0041\U000e0042b")),
    Case("plain-text", "HTML (<b>); a mass mailing is plain text", bodies=body("<b>bold</b>")),
    Case("plain-text", "the invisible soft hyphen U+00AD", bodies=body("soft\u00adhyphen")),
    Case("plain-text", "a letter that shows as nothing: remove it", bodies=body("a\u3164b")),
    Case("plain-text", "mail programs show it differently or not at all", bodies=body("a\ufff9b")),
    # [recipients]
    Case("recipients", "the lists reach 3 recipients", recipients=addresses(3)),
    Case(
        "recipients",
        "the list file 'recipients.txt' is named twice in recipients.lists",
        changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"file": "recipients.txt"}]}},
    ),
    Case("recipients", "'nobody' is not a valid e-mail address", recipients=addresses(600) + "nobody\n"),
    Case("recipients", "user1@kth.se", recipients=addresses(600) + "user1@kth.se\n"),
    Case("recipients", "(case does not matter in addresses)", recipients=addresses(600) + "USER1@kth.se\n"),
    Case(
        "recipients",
        "(a +tag after the name reaches the same mailbox, whatever the case)",
        recipients=addresses(600) + "user1+news@kth.se\n",
    ),
    Case(
        "recipients",
        "3 of the 603 recipients in the lists are outside the internal domains (kth.se and their subdomains)",
        recipients=addresses(600) + addresses(3, domain="example.org"),
    ),
    Case("recipients", "holds no addresses; put one address per", recipients="# none\n"),
    Case(
        "recipients",
        "is saved in an older Windows character set",
        files={"recipients.txt": (addresses(600) + "# Åsa\n").encode("cp1252")},
    ),
    Case("recipients", "as pasted from Outlook", recipients=addresses(600) + "Anna <anna@kth.se>\n"),
    Case(
        "recipients",
        "as pasted from Outlook (Name <address>)",
        changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"file": "more.csv"}]}},
        files={"more.csv": "Name,Email\nAnna,Anna <anna@kth.se>\n"},
    ),
    Case("recipients", "addresses and no source", recipients=addresses(1200)),
    Case(
        "recipients",
        "the special list all-employees (All employees, about 5500 addresses) is IT's",
        changes={"recipients": {"lists": [{"special": "all-employees"}]}},
    ),
    Case(
        "recipients",
        "'everyone' is not a special list in the policy",
        changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"special": "everyone"}]}},
    ),
    Case(
        "recipients",
        "the list file 'gone.txt' does not exist",
        changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"file": "gone.txt"}]}},
    ),
    Case(
        "recipients",
        "the list file 'body.sv.txt' is not a recipient list",
        changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"file": "body.sv.txt"}]}},
    ),
    Case(
        "recipients",
        "the list file 'staff.csv' is an Excel workbook",
        changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"file": "staff.csv"}]}},
        files={"staff.csv": b"PK\x03\x04rest"},
    ),
    Case(
        "recipients",
        "the list file 'staff.txt' is not plain text that can be read",
        changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"file": "staff.txt"}]}},
        files={"staff.txt": b"\x81\x8d\x8f\x90\x9d"},
    ),
    Case(
        "recipients",
        "the list file 'dir' cannot be read",
        changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"file": "dir"}]}},
        setup=_directory("dir"),
    ),
    Case(
        "recipients",
        "has no e-mail column in its header line",
        changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"file": "more.csv"}]}},
        files={"more.csv": "Name,Phone\nAnna,123\n"},
    ),
    Case(
        "recipients",
        "has a line that cannot be read as CSV",
        changes={"recipients": {"lists": [{"file": "recipients.txt"}, {"file": "more.csv"}]}},
        files={"more.csv": 'email\n"' + "a" * 140000 + '"\n'},
    ),
    # [recipients] at send time: IT's special lists as the sender reads them
    Case(
        "recipients",
        "the special list all-employees could not be read by the sender",
        changes={"recipients": {"lists": [{"special": "all-employees"}]}},
        special={},
    ),
    Case(
        "recipients",
        "the special list all-employees holds no addresses",
        changes={"recipients": {"lists": [{"special": "all-employees"}]}},
        special={"all-employees": "# nobody\n"},
    ),
    Case(
        "recipients",
        "the special list all-employees has 1 invalid address",
        changes={"recipients": {"lists": [{"special": "all-employees"}]}},
        special={"all-employees": addresses(5500) + "nobody\n"},
    ),
    Case(
        "recipients",
        "it is not valid UTF-8",
        changes={"recipients": {"lists": [{"special": "all-employees"}]}},
        special={"all-employees": "\udcff"},
    ),
    Case(
        "recipients",
        "the special list all-employees cannot be read from",
        changes={"recipients": {"lists": [{"special": "all-employees"}]}},
        special={"all-employees": None},
    ),
    Case(
        "recipients",
        "the special list all-employees could not be resolved, so nothing of this mailing is sent",
        changes={"recipients": {"lists": [{"special": "all-employees"}]}},
        special={"all-employees": SpecialListError("the directory did not answer")},
    ),
    # [bounced]: addresses whose mail came back for good before (only with the key of the send logs)
    Case(
        "bounced",
        "1 address in 'recipients.txt' bounced in February 2027",
        setup=lambda r: _bounced(r, "user1@kth.se"),
        env={"MAILINGS_LOG_KEY": BOUNCE_KEY},
    ),
    # [sender], [contact], [event]
    Case("sender", "sender.unit 'IT' is not an organisational unit of the policy", changes={"sender": {"unit": "IT"}}),
    Case("sender", "sender.role 'rector' is not a role of the policy", changes={"sender": {"role": "rector"}}),
    Case("sender", "crisis: true is only for the crisis management group", changes={"crisis": True}),
    Case(
        "sender",
        "crisis: true is not available: the policy names no crisis role",
        changes={"crisis": True},
        setup=lambda r: _no_crisis_role(r),
    ),
    Case("sender", "sender.role dean says that the Dean sends this mailing", changes={"sender": {"role": "dean"}}),
    Case(
        "sender",
        "sender.role dean says that the Dean sends this mailing: the reviewer must confirm that with the Dean",
        changes={"sender": {"role": "dean"}},
    ),
    Case(
        "sender",
        "sender.role dean (Dean) is claimed by 'mallory'",
        changes={"sender": {"role": "dean"}},
        args=("--author", "mallory"),
    ),
    Case("sender", "from_address 'it-support' is not a valid e-mail", changes={"from_address": "it-support"}),
    Case(
        "sender",
        "from_address 'it@kth.se.evil.com' is not on an internal domain",
        changes={"from_address": "it@kth.se.evil.com"},
    ),
    Case("contact", "contact.email 'anna' is not a valid", changes={"contact": {"email": "anna"}}),
    Case("contact", "reply_to 'nobody' is not a valid e-mail address", changes={"reply_to": "nobody"}),
    Case("contact", "contact.phone is missing; the policy asks for a telephone", changes={"contact": {"phone": None}}),
    Case("contact", "has no digits; give a number people can call", changes={"contact": {"phone": "ask Anna"}}),
    Case(
        "event", "the event has no venue; add it", changes={"event": {k: v for k, v in EVENT.items() if k != "venue"}}
    ),
    Case(
        "event",
        "the event on 2027-02-09 is before the dispatch",
        changes={"event": {**EVENT, "date": "2027-02-09", "registration_deadline": "2027-02-09"}},
    ),
    Case(
        "event",
        "registration_deadline 2027-02-01 is before the dispatch",
        changes={"event": {**EVENT, "registration_deadline": "2027-02-01"}},
    ),
    Case(
        "event",
        "registration_deadline 2027-03-05 is after the event",
        changes={"event": {**EVENT, "registration_deadline": "2027-03-05"}},
    ),
    # [immutable]: a sent mailing is history (a pull request judged against main)
    Case(
        "immutable",
        "this change edits this send log, but only the dispatch job writes send logs",
        setup=_sent_then_edited,
        args=("--changed-since", "main"),
    ),
    Case(
        "immutable",
        "a sent mailing is history, but this change edits this file",
        setup=_sent_then_edited,
        args=("--changed-since", "main"),
    ),
    # [finished-index]: only the dispatch job writes the index of finished mailings
    Case(
        "finished-index",
        "this change touches the index of finished mailings, which only the dispatch job writes",
        setup=_index_added,
        args=("--changed-since", "main"),
    ),
    # any rule, judged against the base's policy too when a pull request changes it
    Case(
        "lead-time",
        "passes only with the policy.yaml changes in this pull request: send_at 2027-01-14 is 3 working days",
        changes={"send_at": "2027-01-14 09:00"},
        setup=_policy_relaxed,
        args=("--changed-since", "main"),
    ),
    Case(
        "immutable",
        "this change removes `cancel` from the mailing",
        changes={"cancel": {"reason": "wrong"}},
        setup=_cancel_removed,
        args=("--changed-since", "main"),
    ),
    # [special-lists]: IT's encrypted list files that the policy names
    Case(
        "special-lists",
        "the special list all-students comes from lists/students.age, w",
        setup=_list_source({"file": "lists/students.age"}),
    ),
    Case(
        "special-lists",
        "the encrypted file of the special list all-students is a symbolic link",
        setup=_list_source({"file": "lists/students.age"}, link="x"),
    ),
    Case(
        "special-lists",
        "the special list all-students must be encrypted with age",
        setup=_list_source({"file": "lists/students.age"}, {"lists/students.age": b"a@kth.se\n"}),
    ),
    Case(
        "special-lists",
        "lists/students stands next to lists/students.age",
        setup=_list_source(
            {"file": "lists/students.age"}, {"lists/students.age": AGE, "lists/students": b"a@kth.se\n"}
        ),
    ),
]


def _write_bytes(repo: Repo, raw: bytes) -> None:
    (repo.root / "mailings" / MAILING / "mailing.yaml").write_bytes(raw)


def _rename(repo: Repo, name: str) -> None:
    (repo.root / "mailings" / MAILING).rename(repo.root / "mailings" / name)


def _rename_file(repo: Repo, old: str, new: str) -> None:
    directory = repo.root / "mailings" / MAILING
    (directory / old).rename(directory / new)


def _schema(repo: Repo) -> None:
    """The repository's schema with fields of every kind of rule a schema can give."""
    path = repo.root / "schema" / "mailing.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    schema["properties"].update(
        {
            "x_limit": {"type": "integer", "minimum": 1, "maximum": 5, "description": "A number from 1 to 5."},
            "x_code": {"type": "string", "pattern": "^[A-Z]+$", "description": "Capitals."},
            "x_tags": {"type": "array", "maxItems": 1, "description": "One tag."},
            "x_pair": {"type": "object", "dependentRequired": {"a": ["b"]}, "description": "a with b."},
            "x_not": {"not": {"const": "x"}, "description": "Anything but x."},
        }
    )
    path.write_text(json.dumps(schema), encoding="utf-8")


def _bounced(repo: Repo, address: str) -> None:
    """A hard bounce of *address* recorded in February 2027, as `mailings bounces` records one."""
    hasher = make_hasher(BOUNCE_KEY)
    (rcpt,) = hasher.of_all_normalised([address])
    event = {
        "event": "bounce",
        "time": "2027-02-12T10:00:00Z",
        "kind": "hard",
        "rcpt": rcpt,
        "key_check": hasher.key_check,
    }
    (repo.root / BOUNCES_DIR).mkdir()
    (repo.root / BOUNCES_DIR / "2027-02-01-earlier.jsonl").write_text(json.dumps(event) + "\n", encoding="utf-8")


def _no_crisis_role(repo: Repo) -> None:
    path = repo.root / "policy.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace(", crisis: true", ""), encoding="utf-8")


def _yaml_linked(repo: Repo) -> None:
    directory = repo.root / "mailings" / MAILING
    (directory / "mailing.yaml").rename(repo.root / "request.yaml")
    os.symlink(repo.root / "request.yaml", directory / "mailing.yaml")


def _linked_request(repo: Repo) -> None:
    real = repo.root / "elsewhere"
    (repo.root / "mailings" / MAILING).rename(real)
    os.symlink(real, repo.root / "mailings" / MAILING)


# Places that make a message which no request checked by `mailings check` can reach, each with the test that does.
ELSEWHERE: dict[str, str] = {
    "checks/yamlsafe.py: YamlError(_NAME_NOT_PLAIN, m.line, m.column)": "the case '[a]: b' (the same words, where "
    "a list or group of fields as a field's name is refused first; this one is a safety net)",
    "checks/yamlwords.py: this file cannot be read; write each field as na": "none: PyYAML raises no other error "
    "than the two kinds explain() tells apart; a safety net",
}

"""What a file that is not part of a request most likely is, so that its message can say what to do with it.

Judged by the name alone (the rules do not read files): an operating system's or office program's own file, a
body saved under a wrong name or in a word processor's format, a list of people, a document or an image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# Files that an operating system or an office program writes by itself into a folder it shows or opens.
_JUNK_NAMES = {
    ".ds_store": "a file that macOS writes into every folder it shows",
    "thumbs.db": "a file that Windows writes into a folder of pictures",
    "ehthumbs.db": "a file that Windows writes into a folder of pictures",
    "desktop.ini": "a file that Windows writes into a folder whose look was changed",
}
_JUNK_PREFIXES = (
    ("~$", "a lock file that Word or Excel writes while a document is open"),
    (".~lock.", "a lock file that LibreOffice writes while a document is open"),
    ("._", "a file that macOS writes beside a file copied to a shared drive"),
)

# A body whose name is close to body.<lang>.txt: another separator, capitals, a doubled or another extension.
_BODY_LIKE = re.compile(r"^body[ ._-]*([a-z]{2})(?:[ ._-]+(.*))?$", re.IGNORECASE)
_REQUEST_LIKE = re.compile(r"^mailing[ ._-]*(ya?ml|txt)([ ._-].*)?$", re.IGNORECASE)
WORD_PROCESSOR = frozenset({"doc", "docx", "odt", "rtf", "pages", "htm", "html", "md", "pdf"})
LIST_EXTENSIONS = frozenset({"txt", "csv", "tsv"})
WORKBOOK_EXTENSIONS = frozenset({"xlsx", "xls", "xlsm", "ods", "numbers"})
IMAGE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "heic", "svg", "webp"})
# Words in a file's name that say it lists people (English and Swedish).
_PEOPLE = re.compile(
    r"recipient|mottagar|list|address|adress|e-?mail|e-?post|mejl|deltagar|participant|member|medlem|student|"
    r"staff|personal|anst[aä]llda|employee|people|contacts|kontakter",
    re.IGNORECASE,
)

StrayKind = Literal["junk", "body", "yaml", "list", "workbook", "document", "image", "other"]


@dataclass(frozen=True)
class Stray:
    kind: StrayKind
    what: str  # for "junk": which program writes it; for "body": the body's right name


def junk(name: str) -> str | None:
    """Which program writes *name* by itself, when it is such a file; else None."""
    found = _JUNK_NAMES.get(name.lower())
    if found is not None:
        return found
    for prefix, what in _JUNK_PREFIXES:
        if name.startswith(prefix) and (prefix != ".~lock." or name.endswith("#")):
            return what
    return None


def extension(name: str) -> str:
    return name.rsplit(".", 1)[1].lower() if "." in name.strip(".") else ""


def classify(name: str) -> Stray:
    """What the file *name*, which is not part of a request, most likely is."""
    what = junk(name)
    if what is not None:
        return Stray("junk", what)
    body = _BODY_LIKE.match(name)
    ext = extension(name)
    if body is not None and (ext in LIST_EXTENSIONS or ext in WORD_PROCESSOR or body[2] is None):
        return Stray("body", f"body.{body[1].lower()}.txt")
    if _REQUEST_LIKE.match(name):
        return Stray("yaml", "")
    if ext in WORKBOOK_EXTENSIONS:
        return Stray("workbook", "")
    if ext in LIST_EXTENSIONS or (_PEOPLE.search(name) and ext not in IMAGE_EXTENSIONS):
        return Stray("list", ext)
    if ext in WORD_PROCESSOR or ext in {"ppt", "pptx", "odp", "key", "zip", "ics", "vcf"}:
        return Stray("document", ext)
    if ext in IMAGE_EXTENSIONS:
        return Stray("image", ext)
    return Stray("other", ext)

"""[links] Links stay within the university; links outside go through a stopover page.

Every address in the bodies and in the event's ``venue`` and
``registration`` is found and judged where it stands:

- Web addresses (``https://...``, ``http://...``, ``//host/...``, and
  ``https:host`` as a browser reads it) and host names without a scheme
  that start with ``www.`` or go on with a path, port, query or fragment
  (``evil.dev/login``), on every top-level domain of the public suffix list
  (the ``publicsuffixlist`` package's copy, read from disk, never fetched),
  must have an internal host: one of the policy's ``internal_domains``
  (``kth.se``) or a subdomain. The host is taken the way a browser takes it
  (``urllib.parse``, a backslash read as a slash) and compared after IDNA
  normalisation, so ``kth.se.evil.com``, ``notkth.se``,
  ``https://www.kth.se@evil.com/`` and look-alike letters (a Cyrillic ``к``)
  are external. An external address is an error: it needs an
  ``external_links`` entry whose ``stopover`` page within the university the
  mailing links to instead.
- An internal address that carries another absolute address after its host
  (``?url=https://...``, plain or percent-encoded once or twice, or
  ``?next=//host``) can send the reader on: an open redirect. When the
  address it carries is external, that is an error like any external link.
- Every other URI scheme leaves the university's web pages and is an error
  whatever its host: anything written ``scheme://`` (``ftp://``,
  ``smb://``, ``file:///``), and the schemes that mail programs and
  operating systems open without ``//`` (``file:``, ``javascript:``,
  ``data:``, ``tel:``, ``ms-word:``, ... see ``OTHER_SCHEMES``). So is a
  Windows share path (``\\\\host\\share``). An abbreviation's Swedish ending
  after a colon (``SMS:et``, ``KTH:s``) is not a scheme.
- A bare host name (``example.com``: no scheme, no ``www.``, no path) is
  only a warning when it is external, since it is as often a name as a link;
  an internal one (``kth.se``) passes, and one made to pass for an internal
  one (``kth.se.evil.com``, look-alike letters) is an error. Abbreviations and file names are not
  host names: ``Ph.D``, ``e.g.``, ``report.pdf`` and ``budget.xlsx`` end in
  no top-level domain, and a last part written with a capital and small
  letters (``M.Sc``, ``B.Sc``) is read as an abbreviation.

Mail addresses (``anna@kth.se``, ``mailto:``) are not links. Each
``external_links`` entry needs an internal ``stopover`` that does not send
the reader on elsewhere (error); its ``url`` should be external (warning: no
stopover needed) and its stopover should be linked from a body (warning).
``http://`` to an internal host is a warning: use ``https://``.

Passes::

    external_links:
      - url: https://www.example.org/conference
        stopover: https://www.kth.se/en/stopover/conference
    # body: Read more at https://www.kth.se/en/stopover/conference
    # body: Log in at https://login.kth.se/?service=https%3A%2F%2Fwww.kth.se%2Fit
    # body: Ph.D and M.Sc students, see report.pdf, e.g. at kth.se

Fails::

    # body: Read more at https://www.example.org/conference     (error)
    # body: Log in at https://www.kth.se@evil.com/               (error)
    # body: Download from evil.dev/setup or www.evil.ninja         (error)
    # body: Go to https://www.kth.se/out?u=https%3A%2F%2Fevil.com  (error)
    # body: Open file://server/x, smb://server/x or \\\\server\\x  (error)
    # body: Click javascript:alert(1)                           (error)
    # body: See http://www.kth.se/it                             (warning)
    # body: Our partner example.com                             (warning)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING, Literal
from urllib.parse import SplitResult, unquote, urlsplit

import idna
from linkify_it import LinkifyIt

from checks.bodies import body_text, sent_bodies, split_lines
from checks.hosts import canonical_host, host_is_internal
from checks.model import Context, Finding, Loc, Mailing, Stage, error, warning
from checks.policy import Policy

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

ID = "links"
STAGES: tuple[Stage, ...] = ("submit", "send")

EVENT_FIELDS = ("venue", "registration")

# linkify-it-py finds web addresses with a scheme (and "//host"); host names without one are found below, on
# every top-level domain of the public suffix list, which linkify-it-py's own short list is not. ftp: is judged
# with every other scheme. No mail address search: mail addresses are not links, and its pattern costs a
# send about 4 ms to compile.
_LINKIFY = LinkifyIt(schemas={"ftp:": None}, options={"fuzzy_link": False, "fuzzy_email": False})

# A host name as written in text: labels of letters, digits and hyphens (any script) joined by dots, the
# ideographic and full-width dots included, since IDNA reads them as dots. Not part of a longer word, of
# a mail address (before or after its "@"), or of a dotted name that goes on.
_IGNORED = (
    "\u00ad\u200b\u2060\ufeff"  # invisible characters that IDNA drops: "kth.se\u00ad.evil.com" is kth.se.evil.com
)
_DOT = rf"[{_IGNORED}]*[.\u3002\uff0e\uff61][{_IGNORED}]*"
_LABEL = rf"[^\W_](?:[\w\-{_IGNORED}]{{0,61}}[^\W_])?"
_NAME = re.compile(rf"(?<![\w@.\-\u3002\uff0e\uff61])(?:{_LABEL}{_DOT})+{_LABEL}(?![\w@-]|{_DOT}[^\W_])")
_DOTS = re.compile(r"[\u3002\uff0e\uff61]")
_IGNORED_CHARACTERS = re.compile(f"[{_IGNORED}]")
# What turns a host name into an address: a path, a query, a fragment or a port after it.
_ADDRESS_AFTER_HOST = re.compile(r"\.?(?:[/?#\\]|:\d)")

# A URI scheme as RFC 3986 writes it, where a word starts.
_SCHEME = re.compile(r"(?<![\w+.\-])([A-Za-z][A-Za-z0-9+.\-]*):(?=\S)")
# The schemes that mail programs and operating systems open without "//" (any scheme written with "//"
# counts anyway). Words that are mostly prose before a colon (about, info, search, tag) are left out.
_SCHEME_NAMES = """
    afp blob callto chrome chrome-extension cifs data dav davs ed2k facetime facetime-audio fax file filesystem
    ftp ftps geo git gopher hcp intent irc ircs itms itms-apps itms-services jar javascript jscript ldap ldaps
    livescript magnet maps market mhtml mk mms mmsto moz-extension msteams news nfs nntp notes onenote outlook
    rdp res resource rlogin scp sftp shell sip sips skype slack smb sms smsto snews spotify ssh steam svn tel
    telnet tftp tg tn3270 vbscript view-source viber vnc webdav webdavs whatsapp xmpp zoommtg zoomus
"""
OTHER_SCHEMES = frozenset(_SCHEME_NAMES.split())
_SCHEME_PREFIXES = ("ms-", "search-ms", "web+")  # ms-word:, ms-msdt:, search-ms:, web+anything:
# Swedish writes the endings of an abbreviation after a colon: "SMS:et", "KTH:s", "Data:n".
_INFLECTION = re.compile(r"[a-zåäöé]{1,5}(?=$|[\s.,;!?)\]'\"”’])")
_FILE_SCHEMES = frozenset(
    {"file", "smb", "cifs", "nfs", "afp", "dav", "davs", "webdav", "webdavs", "ftp", "ftps", "sftp", "tftp", "scp"}
)
_SCRIPT_SCHEMES = frozenset({"javascript", "vbscript", "jscript", "livescript", "data", "blob", "filesystem"})
_PHONE_SCHEMES = frozenset({"tel", "fax", "callto", "sms", "smsto", "mms", "mmsto", "sip", "sips", "facetime"})

# A Windows share path: \\host\share, \\?\UNC\host\share.
_SHARE = re.compile(r"(?<![\w\\])\\\\[^\s\\/<>\"]+(?:[\\/][^\s<>\"]*)?")

# An absolute address inside another: "https://x", "https:x" (browsers add the slashes), "scheme://x", or
# "=//x" as a query value.
_INNER = re.compile(
    r"(?i)(?:(?<![a-z0-9+.\-])(?:https?:[/\\]*|[a-z][a-z0-9+.\-]*:[/\\]{2,})|(?<==)[/\\]{2,})(?=[^\s/\\&])"
)
_DECODINGS = 3  # percent-decoding rounds that an open redirect's target is looked for in
_HTTP_ANY_SLASHES = re.compile(r"^(https?):[/\\]*", re.IGNORECASE)

_SHOWN = 80  # longest address quoted in full in a message

LinkKind = Literal["web", "name", "scheme", "share"]


@dataclass(frozen=True)
class Link:
    """An address as written in the text, with the place it stands."""

    written: str
    url: str  # with a scheme: "http://" is added to "www.kth.se"
    schema: str  # as written, lower case: "https:", "http:", "//", "smb:", or "" for a host name without one
    loc: Loc
    # web: an address to a host; name: a bare host name (example.com); scheme: any scheme but http, https
    # and mailto; share: a Windows share path.
    kind: LinkKind = "web"


@dataclass(frozen=True)
class Target:
    """Where an address leads."""

    host: str | None  # canonical ASCII host name; None when there is none that can be checked
    has_userinfo: bool
    key: tuple[str, ...]  # what makes two addresses the same page


def check(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    entries = _entries(mailing)
    stopovers = {target(url).key: stopover for _, url, stopover in entries if url and stopover}
    pages = {target(stopover).key for _, _, stopover in entries if stopover}
    used: set[tuple[str, ...]] = set()
    for link in mailing_links(mailing):
        if link.loc.file != mailing.yaml_file:  # a stopover counts as used when the message links to it
            used.add(target(link.url).key)
        yield from _link(link, policy, stopovers, pages)
    for index, url, stopover in entries:
        yield from _entry(mailing, index, url, stopover, policy, used)


def mailing_links(mailing: Mailing) -> Iterator[Link]:
    """Every address in the bodies (at their line and column) and in the event text (at its field)."""
    for body in sent_bodies(mailing):
        yield from links_in(body_text(body.raw), body.file)
    for field in EVENT_FIELDS:
        text = mailing.get("event", field, kind=str)
        if text is not None:
            for link in links_in(text, mailing.yaml_file):
                yield replace(link, loc=mailing.at("event", field))


def links_in(text: str, file: str) -> Iterator[Link]:
    """Every address in *text*, at its line and column, in the order they stand; mail addresses are skipped."""
    for number, line in enumerate(split_lines(text), start=1):
        found: list[Link] = []
        covered: list[tuple[int, int]] = []
        if ":" in line or "//" in line:
            found += _web(line, file, number, covered)
        if ":" in line:
            found += _schemes(line, file, number, covered)
        if "\\\\" in line:
            found += _shares(line, file, number, covered)
        if "." in line or _DOTS.search(line):
            found += _names(line, file, number, covered)
        end = 0
        for link in sorted(found, key=lambda link: link.loc.column):
            # An address that starts inside another is part of it: "www.kth.se/out?to=https://evil.com" is one
            # address (that carries another), not two.
            if link.loc.column > end:
                end = link.loc.column + len(link.written) - 1
                yield link


def _web(line: str, file: str, number: int, covered: list[tuple[int, int]]) -> Iterator[Link]:
    """Web addresses with a scheme or "//", as linkify-it-py finds them."""
    for match in _LINKIFY.match(line) or []:
        written, url = _widened(line, match.index, match.raw, match.url)
        covered.append((match.index, match.index + len(written)))
        if match.schema.lower() != "mailto:":
            yield Link(written, url, match.schema.lower(), Loc(file, number, match.index + 1))


def _schemes(line: str, file: str, number: int, covered: list[tuple[int, int]]) -> Iterator[Link]:
    """Addresses of every other scheme, and web addresses that linkify-it-py refuses but a browser follows."""
    for found in _SCHEME.finditer(line):
        start = found.start()
        if _inside(start, covered):
            continue
        written_scheme, rest = found.group(1), line[found.end() :]
        scheme = written_scheme.lower()
        if scheme == "mailto":
            continue
        written = _trimmed(line, start, found.end())
        if scheme in ("http", "https"):
            # A host linkify-it-py refuses (an underscore, a bracket), or "https:host" without the slashes.
            kind: LinkKind = "web"
        elif len(scheme) > 1 and rest.startswith(("//", "\\\\")):
            kind = "scheme"  # one letter before ":\\" is a drive, C:\Users
        elif scheme in OTHER_SCHEMES or scheme.startswith(_SCHEME_PREFIXES):
            if not written_scheme.islower() and _INFLECTION.match(rest):
                continue  # "SMS:et", "KTH:s": an abbreviation's ending, not an address
            kind = "scheme"
        else:
            continue
        covered.append((start, start + len(written)))
        yield Link(written, written, scheme + ":", Loc(file, number, start + 1), kind)


def _shares(line: str, file: str, number: int, covered: list[tuple[int, int]]) -> Iterator[Link]:
    for found in _SHARE.finditer(line):
        if not _inside(found.start(), covered):
            written = _trimmed(line, found.start(), found.end())
            covered.append((found.start(), found.start() + len(written)))
            yield Link(written, written, "\\\\", Loc(file, number, found.start() + 1), "share")


def _names(line: str, file: str, number: int, covered: list[tuple[int, int]]) -> Iterator[Link]:
    """Host names without a scheme: with "www." or something after the host, an address; else a bare name."""
    for found in _NAME.finditer(line):
        start, name = found.start(), found.group(0)
        if _inside(start, covered):
            continue
        plain = _IGNORED_CHARACTERS.sub("", _DOTS.sub(".", name))
        tld = plain.rsplit(".", 1)[1]
        if len(tld) < 2 or not (tld.isalpha() or tld.lower().startswith("xn--")):
            continue  # 1.2.3, e.g, Ph.D: no top-level domain
        written = _trimmed(line, start, found.end())
        address = plain.lower().startswith("www.") or bool(_ADDRESS_AFTER_HOST.match(written, len(name)))
        if not address:
            written = name
            if tld[0].isupper() and tld[1:].islower():
                continue  # M.Sc, B.Sc: an abbreviation; host names are written in small letters or capitals
        host = canonical_host(plain)
        if host is None and not address:
            continue  # not a valid host name, and nothing else makes it an address
        if host is not None and not _on_suffix_list(host):
            continue  # no top-level domain: report.pdf, budget.xlsx
        kind: LinkKind = "web" if address else "name"
        yield Link(written, "http://" + written, "", Loc(file, number, start + 1), kind)


def _inside(offset: int, covered: list[tuple[int, int]]) -> bool:
    return any(start <= offset < end for start, end in covered)


@cache
def _suffix_list() -> PublicSuffixList:
    """The public suffix list as the publicsuffixlist package ships it (loaded on first use, about 50 ms)."""
    from publicsuffixlist import PublicSuffixList

    # accept_unknown=False: a last label the list does not hold (pdf, xlsx) is no top-level domain.
    return PublicSuffixList(only_icann=True, accept_unknown=False, accept_encoded_idn=False)


# Top-level domains that are on the list for certain: a name on one of them needs no look-up, so that the
# list is loaded only for a name that may not be a host name at all (report.pdf).
_COMMON_TLDS = frozenset({"se", "com", "org", "net", "edu", "gov", "eu", "nu", "int", "info", "io"})


def _on_suffix_list(host: str) -> bool:
    """True if *host* (canonical ASCII) ends in a public suffix of the list: its top-level domain is real."""
    if host.rsplit(".", 1)[-1] in _COMMON_TLDS:
        return True
    try:
        unicode_host = idna.decode(host)  # the list is loaded without its punycode forms: quicker to load
    except (idna.IDNAError, UnicodeError):
        return False
    return _suffix_list().publicsuffix(unicode_host) is not None


def _widened(line: str, start: int, written: str, url: str) -> tuple[str, str]:
    """The address as far as a browser reads it, when that changes its host.

    linkify-it-py stops "https://user@kth.se@evil.com" after kth.se, but a browser takes the
    last '@' and goes to evil.com.
    """
    wide = _trimmed(line, start, start + len(written))
    if wide == written or not url.endswith(written):
        return written, url
    wide_url = url[: len(url) - len(written)] + wide  # keep the scheme linkify added to "www.kth.se"
    return (wide, wide_url) if target(wide_url).host != target(url).host else (written, url)


def _trimmed(line: str, start: int, end: int) -> str:
    """From *start*, up to the next space, without the punctuation that ends a sentence."""
    while end < len(line) and not line[end].isspace() and line[end] not in '<>"':
        end += 1
    return line[start:end].rstrip(".,;:!?'\")]}")


def target(url: str) -> Target:
    """The host *url* leads to, read the way a browser reads it."""
    # Browsers treat a backslash as a slash in web addresses: https://evil.com\@www.kth.se goes to evil.com.
    url = url.replace("\\", "/")
    if url.startswith("//"):
        url = "https:" + url
    url = _HTTP_ANY_SLASHES.sub(r"\1://", url)  # "https:evil.com" and "https:///evil.com" go to evil.com
    try:
        parts = urlsplit(url)
        host = canonical_host(parts.hostname) if parts.hostname else None
        port = str(parts.port or "")
    except ValueError:  # an unbalanced [ in the host, a port that is not a number
        return Target(None, False, (url,))
    return Target(host, "@" in parts.netloc, _key(parts, host, port))


def _key(parts: SplitResult, host: str | None, port: str) -> tuple[str, ...]:
    # The scheme and the fragment do not change which page is meant.
    return (host or parts.netloc.lower(), port, parts.path.rstrip("/"), parts.query)


def carried(url: str) -> Iterator[str]:
    """Each absolute address written inside *url* after its host, as an open redirect would read it: as
    written, then percent-decoded once, twice and three times."""
    normal = _HTTP_ANY_SLASHES.sub(r"\1://", url.replace("\\", "/"))
    try:
        parts = urlsplit("https:" + normal if normal.startswith("//") else normal)
    except ValueError:
        return
    after = url[url.find(parts.netloc) + len(parts.netloc) :] if parts.netloc else ""
    seen: set[str] = set()
    for _ in range(_DECODINGS + 1):
        for found in _INNER.finditer(after):
            inner = after[found.start() :].split("&")[0].split()[0]
            if found.group(0)[0] in "/\\":
                inner = "https:" + inner  # "?next=//evil.com"
            if inner not in seen:
                seen.add(inner)
                yield inner
        decoded = unquote(after)
        if decoded == after:
            return
        after = decoded


def _leaving(url: str, policy: Policy) -> tuple[str, Target] | None:
    """The first address carried inside *url* that leads outside the university, with where it leads."""
    for inner in carried(url):
        aim = target(inner)
        web = _HTTP_ANY_SLASHES.match(inner) is not None
        if not web or aim.host is None or not host_is_internal(aim.host, policy.internal_domains):
            return inner, aim
    return None


def _link(
    link: Link, policy: Policy, stopovers: dict[tuple[str, ...], str], pages: set[tuple[str, ...]]
) -> Iterator[Finding]:
    shown = _shown(link.written)
    domain = policy.internal_domains[0]
    if link.kind == "share":
        yield error(
            link.loc,
            f"{shown} is a Windows share path: recipients outside the university's network cannot open it, and "
            f"opening it can hand their Windows sign-in to that server; put the file on a page on {domain} and "
            "link to that page",
        )
        return
    if link.kind == "scheme":
        yield error(link.loc, _other_scheme(link, domain))
        return
    aim = target(link.url)
    if aim.host is None:
        yield error(
            link.loc,
            f"the address {shown} has no valid host name, so where it leads cannot be checked; correct it "
            f"(a full address such as https://www.{domain}/...)",
        )
    elif not host_is_internal(aim.host, policy.internal_domains):
        if link.kind == "name" and not _impersonates(aim.host, policy):
            yield warning(link.loc, _bare_name(link, aim, policy, stopovers.get(aim.key)))
        else:
            yield error(link.loc, _external(link, aim, policy, stopovers.get(aim.key)))
    else:
        leaving = None if aim.key in pages else _leaving(link.url, policy)  # a stopover is judged as an entry
        if leaving is not None:
            yield error(link.loc, _redirect(link, aim, leaving, policy, stopovers))
        elif aim.has_userinfo:
            yield warning(
                link.loc,
                f"the address {shown} has a user name before '@', which makes it look like another site; remove "
                "the part up to and including '@'",
            )
        elif link.schema == "http:":
            yield warning(link.loc, f"the address {shown} uses http://; write https:// so that the link is encrypted")


def _impersonates(host: str, policy: Policy) -> bool:
    """True for a name made to pass for an internal one: kth.se.evil.com, look-alike letters (www.кth.se)."""
    dotted = f".{host}."
    return any(label.startswith("xn--") for label in host.split(".")) or any(
        f".{domain.lower().strip('.')}." in dotted for domain in policy.internal_domains
    )


def _other_scheme(link: Link, domain: str) -> str:
    scheme = link.schema.rstrip(":")
    if scheme in _FILE_SCHEMES:
        what = "a file or a file share, which recipients outside the university's network cannot open"
        fix = f"put the file on a page on {domain} and link to that page"
    elif scheme in _SCRIPT_SCHEMES:
        what = "a script or content carried in the address itself, not a page"
        fix = f"remove it, and link to a page on {domain} instead"
    elif scheme in _PHONE_SCHEMES:
        what = "a call or a message from the reader's phone or computer"
        fix = f"write the number as text, with a space after the colon ({scheme.capitalize()}: +46 8 ...)"
    else:
        what = "a program on the reader's computer, not a web page"
        fix = f"remove it, or put what it leads to on a page on {domain} and link to that page"
    return (
        f"{_shown(link.written)} is a link of the kind '{scheme}:', which opens {what}; a mass mailing links only "
        f"to web pages (https://) and mail addresses: {fix}"
    )


def _external(link: Link, aim: Target, policy: Policy, stopover: str | None) -> str:
    shown = _shown(link.written)
    why = ""
    if aim.has_userinfo:
        why = " (what comes before '@' is only a user name)"
    elif any(label.startswith("xn--") for label in (aim.host or "").split(".")):
        why = " (its name has letters that only look like Latin ones)"
    if stopover is not None:
        return (
            f"the address {shown} leads outside the university, to {aim.host}{why}; link to its stopover page "
            f"{stopover} instead, as external_links says"
        )
    return f"the address {shown} leads outside the university, to {aim.host}{why}; {_needs_stopover(link.url, policy)}"


def _needs_stopover(url: str, policy: Policy) -> str:
    domains = " and ".join(policy.internal_domains)
    return (
        f"links outside {domains} need a stopover page within the university: add an external_links entry to "
        f"mailing.yaml (url: {_shown(url)}, stopover: a page on {policy.internal_domains[0]}) and link to its "
        "stopover instead"
    )


def _bare_name(link: Link, aim: Target, policy: Policy, stopover: str | None) -> str:
    instead = (
        f"link to its stopover page {stopover} instead, as external_links says"
        if stopover is not None
        else f"give it an external_links entry (url: https://{link.written}, stopover: a page on "
        f"{policy.internal_domains[0]}) and write the stopover instead"
    )
    return (
        f"{link.written} reads as the name of a site outside the university ({aim.host}), and many mail programs "
        f"turn it into a link; if it is meant as a link, {instead}; if it is a name and not a link, nothing needs "
        "doing"
    )


def _redirect(
    link: Link, aim: Target, leaving: tuple[str, Target], policy: Policy, stopovers: dict[tuple[str, ...], str]
) -> str:
    inner, inner_aim = leaving
    where = f"to {inner_aim.host}" if inner_aim.host else "to an address that cannot be checked"
    head = (
        f"the address {_shown(link.written)} leads to {aim.host} but carries the address {_shown(inner)}, which that "
        f"page can send the reader on to (a redirect) outside the university, {where}"
    )
    stopover = stopovers.get(inner_aim.key)
    if stopover is not None:
        return f"{head}; link to its stopover page {stopover} instead, as external_links says"
    if _HTTP_ANY_SLASHES.match(inner) is None:
        return f"{head}; link to a page within the university that is not a redirect"
    return f"{head}; {_needs_stopover(inner, policy)}"


def _shown(url: str) -> str:
    return url if len(url) <= _SHOWN else url[: _SHOWN - 3] + "..."


def _entries(mailing: Mailing) -> list[tuple[int, str | None, str | None]]:
    """(index, url, stopover) of each external_links entry; a value that is not text is None."""
    found: list[tuple[int, str | None, str | None]] = []
    for index, entry in enumerate(mailing.get("external_links", kind=list) or []):
        if isinstance(entry, dict):
            url, stopover = entry.get("url"), entry.get("stopover")
            found.append(
                (
                    index,
                    url.strip() if isinstance(url, str) else None,
                    stopover.strip() if isinstance(stopover, str) else None,
                )
            )
    return found


def _entry(
    mailing: Mailing,
    index: int,
    url: str | None,
    stopover: str | None,
    policy: Policy,
    used: set[tuple[str, ...]],
) -> Iterator[Finding]:
    """An external_links entry: an internal stopover that a body links to, for an external url."""
    domain = policy.internal_domains[0]
    if url is not None:
        aim = target(url)
        internal = aim.host is not None and host_is_internal(aim.host, policy.internal_domains)
        if internal and _leaving(url, policy) is None:
            yield warning(
                mailing.at("external_links", index, "url"),
                f"{_shown(url)} is within the university and needs no stopover; link to it directly and remove "
                "this external_links entry",
            )
    if stopover is None:
        return  # missing or not text: the schema rule reports it
    where = mailing.at("external_links", index, "stopover")
    page = target(stopover)
    if page.host is None or not host_is_internal(page.host, policy.internal_domains):
        leads = f"it leads to {page.host}" if page.host else "it has no host name that can be checked"
        yield error(
            where,
            f"the stopover {_shown(stopover)} is not within the university ({leads}); the stopover page must be "
            f"on {domain}: ask the web editors for one",
        )
        return
    leaving = _leaving(stopover, policy)
    if leaving is not None:
        yield error(
            where,
            f"the stopover {_shown(stopover)} carries the address {_shown(leaving[0])}, which it can send the reader "
            f"on to without a stop; the stopover page must be a page on {domain} that says where the link leads: "
            "ask the web editors for one",
        )
    if stopover.lower().startswith("http://"):
        yield warning(
            where, f"the stopover {_shown(stopover)} uses http://; write https:// so that the link is encrypted"
        )
    if page.key not in used and url:  # without a url, the schema rule's message about it comes first
        target_text = f" where the mailing mentions {_shown(url)}"
        yield warning(
            where,
            f"the stopover {_shown(stopover)} is not linked from any body; link to it{target_text}, or remove this "
            "external_links entry",
        )

"""[links] Links stay within the university; links outside go through a stopover page.

Every address in the bodies, found with linkify-it-py (``https://...``,
``www.kth.se/...`` and bare ``host.tld/path`` alike), and in the event's
``venue`` and ``registration``, must have an internal host: one of the
policy's ``internal_domains`` (``kth.se``) or a subdomain. The host is taken
the way a browser takes it (``urllib.parse``, a backslash read as a slash) and
compared after IDNA normalisation, so ``kth.se.evil.com``, ``notkth.se``,
``https://www.kth.se@evil.com/`` and look-alike letters (a Cyrillic ``к``)
are external. An external address is an error: it needs an
``external_links`` entry whose ``stopover`` page within the university the
mailing links to instead. Mail addresses are not links.

Each ``external_links`` entry needs an internal ``stopover`` (error); its
``url`` should be external (warning: no stopover needed) and its stopover
should be linked from a body (warning). ``http://`` to an internal host is a
warning: use ``https://``.

Passes::

    external_links:
      - url: https://www.example.org/conference
        stopover: https://www.kth.se/en/stopover/conference
    # body: Read more at https://www.kth.se/en/stopover/conference

Fails::

    # body: Read more at https://www.example.org/conference     (error)
    # body: Log in at https://www.kth.se@evil.com/               (error)
    # body: See http://www.kth.se/it                             (warning)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from linkify_it import LinkifyIt

from checks.bodies import body_text, sent_bodies, split_lines
from checks.hosts import canonical_host, host_is_internal
from checks.model import Context, Finding, Loc, Mailing, Stage, error, warning
from checks.policy import Policy

ID = "links"
STAGES: tuple[Stage, ...] = ("submit", "send")

EVENT_FIELDS = ("venue", "registration")

# linkify-it knows every two-letter country domain but only the oldest generic ones; mail programs
# turn these into links too, so a bare "example.dev/x" must not slip through.
_EXTRA_TLDS = """
    academy agency app art blog business cafe center church city cloud club company consulting design dev digital
    education email events expert foundation fund games global group guide health host inc institute int jobs land
    life link live ltd media mobi network news one online page partners pics plus press pub report science services
    site social software solutions space store studio support systems team tech tel today tools top travel tv
    university video vip website wiki work works world xyz zone
"""
_LINKIFY = LinkifyIt().tlds(_EXTRA_TLDS.split(), True)
# The same, not looking for mail addresses: for a line without an "@", where there can be none. linkify-it-py
# runs every kind of search on every line, and compiling its mail address pattern costs a send about 4 ms.
_LINKIFY_NO_MAIL = LinkifyIt(options={"fuzzy_email": False}).tlds(_EXTRA_TLDS.split(), True)
_SHOWN = 80  # longest address quoted in full in a message
_SCHEME_URL = re.compile(r"\b(https?|ftp)://\S", re.IGNORECASE)


@dataclass(frozen=True)
class Link:
    """An address as written in the text, with the place it stands."""

    written: str
    url: str  # with a scheme: linkify adds http:// to "www.kth.se"
    schema: str  # as written: "https:", "http:", "ftp:", "//", or "" for a bare host
    loc: Loc


@dataclass(frozen=True)
class Target:
    """Where an address leads."""

    host: str | None  # canonical ASCII host name; None when there is none that can be checked
    has_userinfo: bool
    key: tuple[str, ...]  # what makes two addresses the same page


def check(mailing: Mailing, policy: Policy, context: Context) -> Iterator[Finding]:
    entries = _entries(mailing)
    stopovers = {target(url).key: stopover for _, url, stopover in entries if url and stopover}
    used: set[tuple[str, ...]] = set()
    for link in mailing_links(mailing):
        if link.loc.file != mailing.yaml_file:  # a stopover counts as used when the message links to it
            used.add(target(link.url).key)
        yield from _link(link, policy, stopovers)
    for index, url, stopover in entries:
        yield from _entry(mailing, index, url, stopover, policy, used)


def mailing_links(mailing: Mailing) -> Iterator[Link]:
    """Every web address in the bodies (at their line and column) and in the event text (at its field)."""
    for body in sent_bodies(mailing):
        yield from links_in(body_text(body.raw), body.file)
    for field in EVENT_FIELDS:
        text = mailing.get("event", field, kind=str)
        if text is not None:
            for link in links_in(text, mailing.yaml_file):
                yield Link(link.written, link.url, link.schema, mailing.at("event", field))


def links_in(text: str, file: str) -> Iterator[Link]:
    """Every web address in *text*, at its line and column; mail addresses are skipped."""
    for number, line in enumerate(split_lines(text), start=1):
        covered: list[tuple[int, int]] = []
        for match in (_LINKIFY if "@" in line else _LINKIFY_NO_MAIL).match(line) or []:
            if match.schema.lower() == "mailto:" or match.url.lower().startswith("mailto:"):
                continue
            covered.append((match.index, match.last_index))
            written, url = _widened(line, match.index, match.raw, match.url)
            yield Link(written, url, match.schema.lower(), Loc(file, number, match.index + 1))
        # linkify-it-py refuses some hosts (an underscore, a bracket) that a mail program may still link.
        for found in _SCHEME_URL.finditer(line):
            if not any(start <= found.start() < end for start, end in covered):
                written = _trimmed(line, found.start(), found.end())
                yield Link(written, written, found.group(1).lower() + ":", Loc(file, number, found.start() + 1))


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


def _link(link: Link, policy: Policy, stopovers: dict[tuple[str, ...], str]) -> Iterator[Finding]:
    aim = target(link.url)
    shown = _shown(link.written)
    if aim.host is None:
        yield error(
            link.loc,
            f"the address {shown} has no valid host name, so where it leads cannot be checked; correct it "
            f"(a full address such as https://www.{policy.internal_domains[0]}/...)",
        )
    elif not host_is_internal(aim.host, policy.internal_domains):
        yield error(link.loc, _external(link, aim, policy, stopovers.get(aim.key)))
    elif aim.has_userinfo:
        yield warning(
            link.loc,
            f"the address {shown} has a user name before '@', which makes it look like another site; remove the "
            "part up to and including '@'",
        )
    elif link.schema == "http:":
        yield warning(link.loc, f"the address {shown} uses http://; write https:// so that the link is encrypted")


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
    domains = " and ".join(policy.internal_domains)
    return (
        f"the address {shown} leads outside the university, to {aim.host}{why}; links outside {domains} need a "
        f"stopover page within the university: add an external_links entry to mailing.yaml (url: "
        f"{_shown(link.url)}, stopover: a page on {policy.internal_domains[0]}) and link to its stopover instead"
    )


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
        if aim.host is not None and host_is_internal(aim.host, policy.internal_domains):
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
    if stopover.lower().startswith("http://"):
        yield warning(
            where, f"the stopover {_shown(stopover)} uses http://; write https:// so that the link is encrypted"
        )
    if page.key not in used:
        target_text = f" where the mailing mentions {_shown(url)}" if url else ""
        yield warning(
            where,
            f"the stopover {_shown(stopover)} is not linked from any body; link to it{target_text}, or remove this "
            "external_links entry",
        )

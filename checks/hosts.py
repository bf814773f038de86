"""Is a host internal? Compared after IDNA normalisation, so look-alikes are external."""

from __future__ import annotations

from collections.abc import Iterable

import idna


def canonical_host(host: str) -> str | None:
    """The host's ASCII (punycode) form, lower-cased, or None if it is not a valid host name."""
    host = host.strip().rstrip(".").lower()
    if not host:
        return None
    try:
        return idna.encode(host, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return None


def host_is_internal(host: str, internal_domains: Iterable[str]) -> bool:
    """True for an internal domain or any subdomain of one; look-alike characters never match."""
    canonical = canonical_host(host)
    if canonical is None:
        return False
    for domain in internal_domains:
        domain = domain.lower().strip(".")
        if canonical == domain or canonical.endswith("." + domain):
            return True
    return False

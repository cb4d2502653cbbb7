"""Broker URLs: redaction for logs and labels, and the checks every broker URL must pass.

Credentials are kept out of everything this module returns: a password with an unencoded
``/ ? #`` breaks URL parsing and would otherwise leak into host, port or path.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit, urlunsplit

UNPARSABLE_URL = "<unparsable url>"


def credentials_misparsed(url: str, netloc: str) -> bool:
    """An '@' outside the parsed netloc means userinfo was not recognised (typically a password
    with an unencoded / ? or #): pieces of the password would land in host, port or path."""
    return "@" in url and "@" not in netloc


def bracket(host: str) -> str:
    """A host as it is written in a URL (IPv6 literals in brackets)."""
    return f"[{host}]" if ":" in host else host


def split_url_list(url: str) -> list[str]:
    """kombu's ``url1;url2`` lists (sentinels, failover) as single URLs; a ';' not followed
    by ``scheme://`` belongs to the URL (a password may hold one)."""
    pieces = [piece.strip() for piece in _LIST_SEPARATOR.split(url) if piece.strip()]
    return pieces or [url]


_LIST_SEPARATOR = re.compile(r";\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def redact_url(url: str) -> str:
    """The URL without user name and password, safe for logs, labels and errors."""
    if len(pieces := split_url_list(url)) > 1:
        return ";".join(redact_url(piece) for piece in pieces)
    try:
        parts = urlsplit(url)
        if credentials_misparsed(url, parts.netloc) or not parts.hostname:
            return UNPARSABLE_URL
        host = bracket(parts.hostname)
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return UNPARSABLE_URL
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def with_password(url: str, password: str) -> str:
    """``url`` with its password replaced (user name and everything else kept)."""
    if len(pieces := split_url_list(url)) > 1:
        return ";".join(with_password(piece, password) for piece in pieces)
    parts = urlsplit(url)
    netloc = f"{parts.username or ''}:{quote(password, safe='')}@{bracket(parts.hostname or '')}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def label_text(pieces: list[str]) -> str:
    """Pieces joined into a readable label value (anything odd becomes '-')."""
    return re.sub(r"[^A-Za-z0-9_.:-]+", "-", "-".join(pieces))


def redact_urls_in(text: str) -> str:
    """``text`` with every URL that carries credentials redacted (for errors and logs whose
    text comes from a library or the user's own module)."""
    for word in text.split():
        if "://" in word and "@" in word:
            text = text.replace(word, redact_url(word.strip("'\"(),")))
    return text

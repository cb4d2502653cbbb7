"""URLs: a broker URL parsed once into a value object every stop reads, redaction for logs and
labels, and the checks every URL must pass. The one module that splits URLs.

Credentials are kept out of everything this module returns as text: a password with an
unencoded ``/ ? #`` breaks URL parsing and would otherwise leak into host, port or path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

from .errors import ConfigError

UNPARSABLE_URL = "<unparsable url>"
UNPARSABLE_HINT = (
    "cannot parse the URL (is a special character such as / ? # @ in the password? "
    "percent-encode it, or use password_file / password_env)"
)


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


def split(url: str) -> SplitResult:
    """``url`` split, or ValueError (whose text never quotes the URL) when it cannot be read
    without pieces of the password landing elsewhere (a bad port, misparsed credentials)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:  # its message can quote parts of the password: never show it
        raise ValueError(UNPARSABLE_URL) from None
    if credentials_misparsed(url, parts.netloc):
        raise ValueError(UNPARSABLE_URL)
    return parts


def scheme_of(url: str) -> str:
    """The scheme alone (for a URL not parsed yet; never raises for a bad port)."""
    return urlsplit(url).scheme


def _netloc(host: str | None, port: int | None) -> str:
    written = bracket(host or "")
    return f"{written}:{port}" if port else written


@dataclass(frozen=True, repr=False)
class URLPart:
    """One URL of a broker URL (kombu's ``a;b`` lists have several), its credentials apart."""

    scheme: str
    host: str | None
    port: int | None
    path: str
    query: str = ""
    fragment: str = ""
    #: The user name as written (percent-encoded), for putting a password back in.
    user_as_written: str | None = None
    password: str | None = None  # percent-decoded

    @classmethod
    def parse(cls, where: str, url: str) -> URLPart:
        """ConfigError naming ``where`` (never the URL) when it cannot be read."""
        try:
            parts = split(url)
        except ValueError:
            raise ConfigError(f"{where}: {UNPARSABLE_HINT}") from None
        return cls(
            scheme=parts.scheme,
            host=parts.hostname,
            port=parts.port,
            path=parts.path,
            query=parts.query,
            fragment=parts.fragment,
            user_as_written=parts.username,
            password=unquote(parts.password) if parts.password is not None else None,
        )

    @property
    def username(self) -> str | None:
        return unquote(self.user_as_written) if self.user_as_written is not None else None

    @property
    def redacted(self) -> str:
        """Without user name and password, safe for logs, labels and errors."""
        if not self.host:
            return UNPARSABLE_URL
        return urlunsplit((self.scheme, _netloc(self.host, self.port), self.path, "", ""))

    def with_password(self, password: str) -> str:
        """The URL with this password (user name and everything else kept)."""
        netloc = f"{self.user_as_written or ''}:{quote(password, safe='')}@"
        netloc += _netloc(self.host, self.port)
        return urlunsplit((self.scheme, netloc, self.path, self.query, self.fragment))

    def __repr__(self) -> str:  # never show the password
        return f"URLPart({self.redacted!r})"


@dataclass(frozen=True, repr=False)
class BrokerURL:
    """A broker URL, parsed once when the broker's configuration is built: scheme, hosts,
    database or vhost, credentials apart. ``text`` (as configured, credentials included) is
    for connecting only; logs, labels and errors read ``redacted``."""

    text: str
    parts: tuple[URLPart, ...]

    @classmethod
    def parse(cls, url: str, where: str = "url") -> BrokerURL:
        """Parse without the transport's checks (config/brokers.py makes those)."""
        pieces = split_url_list(url)
        if len(pieces) == 1:
            return cls(url, (URLPart.parse(where, url),))
        return cls(url, tuple(URLPart.parse(f"{where}[{i}]", p) for i, p in enumerate(pieces)))

    @property
    def first(self) -> URLPart:
        return self.parts[0]

    @property
    def scheme(self) -> str:
        return self.first.scheme

    @property
    def schemes(self) -> frozenset[str]:
        return frozenset(part.scheme for part in self.parts)

    @property
    def hosts(self) -> tuple[tuple[str | None, int | None], ...]:
        return tuple((part.host, part.port) for part in self.parts)

    @property
    def database(self) -> str:
        """The path without its leading slashes: a Redis database number ('' when none)."""
        return self.first.path.lstrip("/")

    @property
    def vhost(self) -> str:
        """The AMQP virtual host as kombu reads it: the path without its first slash,
        percent-decoded; empty, ``/``, ``//`` and ``/%2F`` all mean the default vhost ``/``."""
        path = self.first.path
        return unquote(path[1:] if path.startswith("/") else path) or "/"

    @property
    def username(self) -> str | None:
        return self.first.username

    @property
    def password(self) -> str | None:
        return self.first.password

    @property
    def redacted(self) -> str:
        return ";".join(part.redacted for part in self.parts)

    def with_password(self, password: str) -> str:
        """The URL text with every part's password replaced."""
        return ";".join(part.with_password(password) for part in self.parts)

    def __repr__(self) -> str:  # never show the password
        return f"BrokerURL({self.redacted!r})"


def redact_url(url: str) -> str:
    """Any URL without user name and password, safe for logs, labels and errors."""
    if len(pieces := split_url_list(url)) > 1:
        return ";".join(redact_url(piece) for piece in pieces)
    try:
        return URLPart.parse("url", url).redacted
    except ConfigError:
        return UNPARSABLE_URL


def without_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """An http(s) URL without credentials (and without a trailing slash), and the
    credentials it carried (if any)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url.rstrip("/"), None
    bare = urlunsplit((parts.scheme, _netloc(parts.hostname, parts.port), parts.path, "", ""))
    return bare.rstrip("/"), (unquote(parts.username), unquote(parts.password or ""))


def is_http_url(text: str) -> bool:
    """An http(s) URL with a host."""
    try:
        parts = urlsplit(text)
        return parts.scheme in {"http", "https"} and bool(parts.hostname)
    except ValueError:
        return False


def request_path(target: str) -> str:
    """The path of an HTTP request target (``/metrics?x=1`` -> ``/metrics``; empty: ``/``)."""
    return urlsplit(target).path or "/"


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

"""Checking a caller's webhook URL, and turning it into the addresses we may connect to.

The addresses checked are the addresses used: :func:`resolve_target` resolves the host once
and :mod:`workers.webhooks.delivery` connects to exactly those IPs (with the host name in
``Host`` and TLS SNI). Resolving again at connect time would let a DNS-rebinding host answer
a public address to the check and a private one to the connection.

Error messages name only ``scheme://host``: paths and queries often carry receiver tokens.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from batchgate.errors import RequestError
from workers.webhooks.addresses import Allowlist, parse_address

Resolver = Callable[[str, int], list[str]]
"""``(host, port) -> IP address strings``; raises OSError when the name does not resolve."""

MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    """A checked webhook destination."""

    scheme: str
    host: str  # ASCII (IDNA) host name or IP address, without brackets
    port: int
    path: str  # path and query, as sent on the request line
    addresses: tuple[str, ...]  # connect to these in order; (host,) when trusted by name

    @property
    def origin(self) -> str:
        """``scheme://host``: all of the URL an error message may show."""
        return f"{self.scheme}://{self.host}"

    @property
    def host_header(self) -> str:
        """The ``Host`` header value for this destination."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def _invalid(message: str) -> RequestError:
    return RequestError(message, param="webhook.url", code="invalid_webhook_url")


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, IPv4 and IPv6 (``socket.getaddrinfo``)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _split(url: str) -> tuple[str, str, int, str]:
    """``(scheme, ascii host, port, path+query)`` of a syntactically acceptable URL."""
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"webhook URL is longer than {MAX_URL_LENGTH} characters")
    # urlsplit silently drops tabs and newlines; refuse them so what we check is what we send.
    if any(ch <= " " or ch == "\x7f" for ch in url):
        raise _invalid("webhook URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _invalid("webhook URL cannot be parsed") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise _invalid("webhook URL must start with http:// or https://")
    if "@" in parts.netloc:
        raise _invalid("webhook URL must not contain credentials (user:password@)")
    host = parts.hostname or ""
    if not host:
        raise _invalid(f"webhook URL has no host ({scheme}://)")
    if parse_address(host) is None:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _invalid(f"webhook URL host is not a valid name ({scheme}://{host})") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    # Non-ASCII path characters cannot go on the request line: send them percent-encoded.
    path = "".join(ch if ch.isascii() else quote(ch) for ch in path)
    return scheme, host, port or _DEFAULT_PORTS[scheme], path


def resolve_target(url: str, allowed: Collection[str],
                   resolve: Resolver | None = None) -> Target:
    """Check ``url`` and return where to connect; raises :class:`RequestError` if refused."""
    scheme, host, port, path = _split(url)
    allowlist = Allowlist.parse(allowed)
    origin = f"{scheme}://{host}"
    if allowlist.allows_name(host):
        return Target(scheme, host, port, path, (host,))
    literal = parse_address(host)
    if literal is not None:
        if not allowlist.permits(literal):
            raise _invalid(f"webhook URL {origin} points to a non-public address")
        return Target(scheme, host, port, path, (str(literal),))
    try:
        found = (resolve or system_resolver)(host, port)
    except (OSError, UnicodeError):
        found = []
    if not found:
        raise _invalid(f"webhook URL host cannot be resolved ({origin})")
    addresses = []
    for text in dict.fromkeys(found):
        address = parse_address(text)
        # One private answer is enough to refuse: we must not pick and choose among them.
        if address is None or not allowlist.permits(address):
            raise _invalid(f"webhook URL {origin} resolves to a non-public address")
        addresses.append(str(address))
    return Target(scheme, host, port, path, tuple(addresses))


def check_url(url: str, allowed: Collection[str], resolve: Resolver | None = None) -> None:
    """Raise :class:`RequestError` unless ``url`` is an acceptable webhook destination."""
    resolve_target(url, allowed, resolve)

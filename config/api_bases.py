"""Upstream base URLs as the operator allow-lists them and as callers give them. Pure.

The config loader parses ``allowed_api_bases`` entries with :func:`parse_pattern`; the
workers check a caller's ``api_base`` with :func:`split_base_url`
(``workers/api_base_policy.py``). Both normalise the same way, and the URL that was checked
is the URL that is called (:meth:`BaseURL.text`), so no parser difference between the check
and the HTTP client can be played against it: anything unusual (userinfo, a query, dot
segments, percent escapes, numeric host forms only ``inet_aton`` reads) is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address
from urllib.parse import urlsplit

from config.settings import ApiBasePattern

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 2048
WILDCARD = "*."

_LABEL_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_PATH_RE = re.compile(r"(?:/[A-Za-z0-9._~-]*)*")
# What inet_aton reads as a number: decimal, 0x-hex or 0-octal parts (http://2130706433/,
# http://0x7f.1/, http://0177.0.0.1/ all reach 127.0.0.1).
_NUMERIC_PART_RE = re.compile(r"0x[0-9a-f]*|[0-9]+")


@dataclass(frozen=True)
class BaseURL:
    """A normalised ``scheme://host[:port][/path]`` (no userinfo, query or fragment)."""

    scheme: str
    host: str
    """Lower case, IDNA-encoded, no trailing dot; an IP address in its canonical form."""
    port: int
    path: str
    """Without a trailing slash; ``""`` for the root."""

    @property
    def is_ip(self) -> bool:
        """Whether the host is an IP address literal."""
        try:
            ip_address(self.host)
        except ValueError:
            return False
        return True

    @property
    def origin(self) -> str:
        """``scheme://host``: all of the URL an error message shows."""
        return f"{self.scheme}://{self.host}"

    def text(self) -> str:
        """The URL to call: exactly what was checked."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == DEFAULT_PORTS[self.scheme] else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.path}"


def _host(raw: str) -> str:
    """The normalised host, or ValueError."""
    host = raw.lower()
    if host.endswith("."):
        # "api.openai.com." is the fully qualified form of the same name: compare it so.
        host = host[:-1]
    if not host:
        raise ValueError("has no host")
    try:
        address = ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        if isinstance(address, IPv6Address) and address.scope_id:
            raise ValueError("must not give an IPv6 zone (%...)")
        return str(address)
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError("has a host that is not a valid name") from None
    labels = host.split(".")
    if all(_NUMERIC_PART_RE.fullmatch(label) for label in labels):
        raise ValueError("has a numeric host that is not a dotted IPv4 address; write the "
                         "address as a.b.c.d")
    if not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise ValueError("has a host that is not a valid name")
    return host


def split_base_url(text: str, *, wildcard: bool = False) -> tuple[BaseURL, bool]:
    """``text`` as a :class:`BaseURL`, and whether its host started with ``*.`` (allowed
    only when ``wildcard``); ValueError with a message that does not repeat the URL."""
    if len(text) > MAX_URL_LENGTH:
        raise ValueError(f"is longer than {MAX_URL_LENGTH} characters")
    # urlsplit silently drops tabs and newlines; refuse them so what we check is what we call.
    if any(ch <= " " or ch == "\x7f" or ch == "\\" for ch in text):
        raise ValueError("contains whitespace, control characters or a backslash")
    if "?" in text or "#" in text:
        raise ValueError("must not have a query or a fragment")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("cannot be parsed as a URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError("must start with https:// (or http://)")
    if "@" in parts.netloc:
        raise ValueError("must not contain credentials (user:password@)")
    raw_host = parts.hostname or ""
    # urlsplit reads "*.[::1]" as host "::1": the host it reports must be the whole netloc.
    netloc, bracketed = parts.netloc.lower(), f"[{raw_host}]" if ":" in raw_host else raw_host
    if raw_host and netloc != bracketed and not netloc.startswith(bracketed + ":"):
        raise ValueError("cannot be parsed as a URL")
    starred = raw_host.startswith(WILDCARD)
    if starred and not wildcard:
        raise ValueError("must not contain a wildcard")
    host = _host(raw_host[len(WILDCARD):] if starred else raw_host)
    if "*" in host or (starred and (host.count(".") < 1 or ":" in host or _is_ip(host))):
        raise ValueError("may hold a wildcard only as '*.' before a domain of two or more "
                         "labels")
    path = parts.path.rstrip("/")
    if not _PATH_RE.fullmatch(path) or any(seg in (".", "..") for seg in path.split("/")):
        raise ValueError("has a path with characters other than letters, digits, '.', '_', "
                         "'~', '-' and '/', or a '.' or '..' segment")
    return BaseURL(scheme, host, port if port is not None else DEFAULT_PORTS[scheme],
                   path), starred


def _is_ip(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def parse_pattern(text: str) -> ApiBasePattern:
    """One ``allowed_api_bases`` entry; ValueError says what is wrong with it."""
    base, starred = split_base_url(text.strip(), wildcard=True)
    return ApiBasePattern(scheme=base.scheme, host=base.host, port=base.port, path=base.path,
                          wildcard=starred)

"""May a caller's ``api_base`` be called: the allow-list decision. Pure: no DNS, no sockets.

A caller-chosen base URL is a server-side request forgery waiting to happen (cloud metadata
at 169.254.169.254, an admin port on localhost, the private network), so:

1. the URL must match an ``allowed_api_bases`` entry: same scheme (``http`` only where an
   entry says ``http``), same port, the entry's path as a prefix, and the entry's host, or
   one more label in front of a ``*.`` entry's domain;
2. a host named exactly by the matching entry is the operator's choice and is trusted as it
   is, even on a private address (an internal vLLM, the loopback fake upstream in tests);
3. a host matched only through a wildcard must resolve to public unicast addresses only,
   every one of them (checked again at each call, against DNS rebinding): loopback,
   RFC 1918 and fc00::/7, link-local (169.254/16, fe80::/10), unspecified, multicast,
   reserved, and IPv6 forms tunnelling to those, are refused.

:func:`check_api_base` does steps 1-2; :func:`admit` does step 3 on addresses resolved by
the caller of this module (``workers/credentialed_client.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from batchgate.errors import RequestError
from config.api_bases import BaseURL, split_base_url
from config.settings import ApiBasePattern
from workers.webhooks.addresses import is_public, parse_address

PARAM = "api_base"
CODE = "invalid_api_base"


@dataclass(frozen=True)
class CheckedBase:
    """A caller's ``api_base`` that matched the allow-list."""

    url: BaseURL
    trusted: bool
    """Its host is named exactly by the matching entry: its addresses are not checked."""

    @property
    def needs_resolving(self) -> bool:
        """Whether :func:`admit` must see the addresses the host resolves to."""
        return not self.trusted


def refused(message: str) -> RequestError:
    """The 400 for an ``api_base`` that may not be called."""
    return RequestError(message, param=PARAM, code=CODE)


def matches(pattern: ApiBasePattern, url: BaseURL) -> bool:
    """Whether ``url`` is one ``pattern`` allows (scheme, port, host, path prefix)."""
    if pattern.scheme != url.scheme or pattern.port != url.port:
        return False
    if pattern.wildcard:
        label, dot, domain = url.host.partition(".")
        if not (dot and label and domain == pattern.host) or url.is_ip:
            return False
    elif pattern.host != url.host:
        return False
    return not pattern.path or url.path == pattern.path \
        or url.path.startswith(pattern.path + "/")


def check_api_base(text: object, patterns: Sequence[ApiBasePattern]) -> CheckedBase:
    """``text`` as a base URL the allow-list lets a caller use; raises the 400 otherwise.
    An exact-host match wins over a wildcard one (it needs no address check)."""
    if not isinstance(text, str) or not text:
        raise refused("api_base must be a non-empty string")
    try:
        url, _ = split_base_url(text)
    except ValueError as exc:
        raise refused(f"api_base {exc}") from None
    found = [p for p in patterns if matches(p, url)]
    if not found:
        raise refused(f"api_base {url.origin} is not on this server's allowed_api_bases "
                      f"(scheme, host, port and path prefix must match an entry)")
    return CheckedBase(url, trusted=any(not p.wildcard for p in found))


def admit(base: CheckedBase, addresses: Sequence[str]) -> None:
    """Raise the 400 unless ``base`` may be called now that its host resolved to
    ``addresses``: a trusted host always may; any other needs every address public."""
    if base.trusted:
        return
    if not addresses:
        raise refused(f"api_base host cannot be resolved ({base.url.origin})")
    for text in addresses:
        address = parse_address(text)
        # One non-public answer is enough to refuse: we must not pick among them.
        if address is None or not is_public(address):
            raise refused(f"api_base {base.url.origin} resolves to a non-public address")

"""Which IP addresses a webhook may reach: public ones, plus what the operator allow-lists.

Webhook URLs come from callers, so without this a caller could make our workers POST to
cloud metadata (169.254.169.254), localhost admin ports or the private network (SSRF).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# NAT64 gateways translate 64:ff9b::a.b.c.d to a.b.c.d, so the embedded address is the target.
_NAT64 = IPv6Network("64:ff9b::/96")


def parse_address(text: str) -> IPAddress | None:
    """``text`` as an IP address (IPv4-mapped IPv6 folded to IPv4), or None for a name."""
    try:
        address = ip_address(text)
    except ValueError:
        return None
    # ::ffff:a.b.c.d reaches a.b.c.d: judge and allow-list it as the IPv4 address it is.
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address a 6to4 or NAT64 address tunnels to, if any."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """True only for globally routable unicast addresses."""
    if isinstance(address, IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and not is_public(embedded):
            return False
        # Deprecated fec0::/10 is still routed inside some networks; ipaddress calls it global.
        if address.is_site_local:
            return False
    # is_global alone misses multicast (224/4 counts as global), so every flag is checked.
    return address.is_global and not (
        address.is_loopback or address.is_private or address.is_link_local
        or address.is_multicast or address.is_reserved or address.is_unspecified)


def _name(text: str) -> str:
    """A host name as compared against the allow-list: lower case, no trailing dot."""
    return text.strip().lower().rstrip(".")


@dataclass(frozen=True)
class Allowlist:
    """Operator-trusted destinations: host names, single IPs and CIDR networks."""

    names: frozenset[str]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, entries: Collection[str]) -> Allowlist:
        """Split entries like ``"localhost"``, ``"127.0.0.1"``, ``"10.0.0.0/8"``."""
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            text = entry.strip().strip("[]")
            try:
                network = ip_network(text, strict=False)
            except ValueError:
                names.add(_name(text))
                continue
            if isinstance(network, IPv6Network) and network.prefixlen == 128:
                mapped = network.network_address.ipv4_mapped
                if mapped is not None:
                    network = IPv4Network(mapped)
            networks.append(network)
        return cls(frozenset(names), tuple(networks))

    def allows_name(self, host: str) -> bool:
        """Whether ``host`` is trusted by name (its addresses are then not checked)."""
        return _name(host) in self.names

    def allows_address(self, address: IPAddress) -> bool:
        """Whether ``address`` lies in an allow-listed IP or network."""
        return any(address.version == network.version and address in network
                   for network in self.networks)

    def permits(self, address: IPAddress) -> bool:
        """Whether a delivery may connect to ``address``."""
        return is_public(address) or self.allows_address(address)

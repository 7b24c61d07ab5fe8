"""Which addresses a webhook may be sent to: public ones only (CONTRACT §9).

One rule, asked twice: when an endpoint's URL is stored (`delivery.endpoints.check_url`,
a literal address in the URL) and at every attempt, after name resolution
(`notify.webhook`'s resolver), so the checked address is the one connected to.
"""

from __future__ import annotations

import ipaddress


def _relayed_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4 (2002::/16) or Teredo (2001::/32, its client) address is
    relayed to; None for any other."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Not loopback, private, shared (100.64/10), link-local (cloud metadata included),
    site-local (fec0::/10), multicast, reserved or unspecified. An IPv4-mapped IPv6 address is judged as its IPv4
    one; a 6to4 or Teredo address must also wrap a public IPv4 one, since a relay delivers
    to that."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        relayed = _relayed_ipv4(address)
        if relayed is not None and not is_public(relayed):
            return False
        # Site-local (fec0::/10): deprecated, but still routed inside some networks, and
        # Python's ipaddress counts it as global (is_global is True for fec0::1).
        if address.is_site_local:
            return False
    return address.is_global and not (address.is_loopback or address.is_private
                                      or address.is_link_local or address.is_multicast
                                      or address.is_reserved or address.is_unspecified)

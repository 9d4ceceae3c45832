"""Unique endpoint addresses as numpy arrays, and vectorised prefix membership.

Sessions repeat the same few thousand addresses millions of times, so the builder parses
each distinct address once (Python per unique address is fine) and works on indices.
An address is stored as (family, high 64 bits, low 64 bits); IPv4 lives in the low word.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

from microseg.model import Group, MicrosegError
from microseg.model.objects import IPAddress, IPNetwork

_WORD = (1 << 64) - 1


@dataclass(frozen=True)
class AddressTable:
    """Distinct addresses in first-seen order; sessions refer to them by index."""

    addresses: tuple[IPAddress, ...]
    family: np.ndarray  # uint8: 4 or 6
    high: np.ndarray  # uint64: upper 64 bits (0 for IPv4)
    low: np.ndarray  # uint64: lower 64 bits (the whole IPv4 address)

    @classmethod
    def parse(cls, texts: list[str]) -> AddressTable:
        addresses = []
        for text in texts:
            try:
                addresses.append(ipaddress.ip_address(str(text).strip()))
            except ValueError:
                raise MicrosegError(f"sessions: {text!r} is not an IPv4 or IPv6 address") from None
        return cls.of(addresses)

    @classmethod
    def of(cls, addresses: list[IPAddress]) -> AddressTable:
        values = [int(a) for a in addresses]
        return cls(
            addresses=tuple(addresses),
            family=np.array([a.version for a in addresses], dtype=np.uint8),
            high=np.array([v >> 64 for v in values], dtype=np.uint64),
            low=np.array([v & _WORD for v in values], dtype=np.uint64),
        )

    def __len__(self) -> int:
        return len(self.addresses)

    def in_prefix(self, prefix: IPNetwork) -> np.ndarray:
        """Boolean mask: which addresses lie inside `prefix`."""
        network = int(prefix.network_address)
        mask = int(prefix.netmask)
        high_mask, low_mask = np.uint64(mask >> 64), np.uint64(mask & _WORD)
        high_net, low_net = np.uint64(network >> 64), np.uint64(network & _WORD)
        return (
            (self.family == prefix.version)
            & ((self.high & high_mask) == high_net)
            & ((self.low & low_mask) == low_net)
        )

    def in_prefixes(self, prefixes: tuple[IPNetwork, ...]) -> np.ndarray:
        inside = np.zeros(len(self), dtype=bool)
        for prefix in prefixes:
            inside |= self.in_prefix(prefix)
        return inside

    def in_group(self, group: Group) -> np.ndarray:
        """Members of a static group: inside a prefix and outside every except-prefix."""
        return self.in_prefixes(group.prefixes) & ~self.in_prefixes(group.except_prefixes)

    def longest_match(self, prefixes: tuple[IPNetwork, ...]) -> np.ndarray:
        """Per address, the longest prefix length of `prefixes` containing it; -1 if none."""
        best = np.full(len(self), -1, dtype=np.int16)
        for prefix in prefixes:
            inside = self.in_prefix(prefix)
            best = np.where(inside & (best < prefix.prefixlen), prefix.prefixlen, best)
        return best


def group_size(group: Group) -> int:
    """Number of addresses a static group holds (prefixes minus except-prefixes)."""
    networks = collapse(group.prefixes)
    excluded = collapse(tuple(e for e in group.except_prefixes))
    return sum(n.num_addresses for n in networks) - sum(e.num_addresses for e in excluded)


def collapse(prefixes: tuple[IPNetwork, ...]) -> list[IPNetwork]:
    """Overlapping and adjacent prefixes merged, IPv4 first."""
    out: list[IPNetwork] = []
    for version in (4, 6):
        same = [p for p in prefixes if p.version == version]
        out.extend(ipaddress.collapse_addresses(same))  # type: ignore[arg-type]
    return out

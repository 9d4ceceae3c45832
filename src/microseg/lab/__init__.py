"""The seed lab on real packets: network namespaces, a bridge, nftables (issue 12)."""

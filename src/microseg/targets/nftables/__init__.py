"""nftables: the renderer, the driver and its confirm timer."""

"""Model -> DeviceIntent (resolved, ordered, per device + VRF) -> renderers (EOS, nftables)."""

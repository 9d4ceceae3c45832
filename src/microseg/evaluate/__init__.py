"""First-match engine over DeviceIntent (vectorised): check, what-if replay, lint."""

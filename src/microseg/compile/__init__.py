"""Model -> DeviceIntent (resolved, ordered, per device + VRF) -> renderers (EOS, nftables)."""

from microseg.compile.intent import DeviceIntent
from microseg.compile.resolve import CompileError, compile_all, compile_device, compile_each

__all__ = ["CompileError", "DeviceIntent", "compile_all", "compile_device", "compile_each"]

"""First-match engine over DeviceIntent (vectorised): check, what-if replay, lint."""

from microseg.evaluate.engine import (
    DEFAULT_MATCH,
    VERDICTS,
    CompiledDevice,
    Decision,
    Evaluation,
)
from microseg.evaluate.packets import PacketBatch

__all__ = [
    "DEFAULT_MATCH",
    "VERDICTS",
    "CompiledDevice",
    "Decision",
    "Evaluation",
    "PacketBatch",
]

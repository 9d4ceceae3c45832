"""microseg: an open-source microsegmentation controller for switch fabrics."""

from pathlib import Path

__version__ = "0.1.0"

# The seed lab's policies, sessions and capture. In a checkout `src/microseg/examples` is a
# link to the repository's `examples/` (one copy); the wheel ships its files as package data.
EXAMPLES = (Path(__file__).parent / "examples").resolve()

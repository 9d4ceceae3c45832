"""Pausing CPython's cyclic garbage collector around bulk allocation.

Validating and compiling a large policy allocate hundreds of thousands of small objects
(names, prefixes, matches, field-sets), none in a reference cycle. While they pile up, the
cyclic collector would scan them again and again (about half the time of validating 5000
rules), and once more in one long pass when it is switched back on. Reference counting
frees all of them either way; the cycle collector only ever finds nothing.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_garbage_collector() -> Iterator[None]:
    """Run the block without cyclic garbage collection; restore the collector's state.

    On the way out the objects the block allocated are handed to the oldest generation
    (gc.freeze + gc.unfreeze: two list splices) instead of being scanned by the young-
    generation pass their number would trigger; they are scanned at the next full
    collection like any other long-lived object. Skipped if the process has frozen objects
    of its own (unfreeze would release those too)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()

"""Fixed-shape batches over N items, so one compiled program serves every batch."""

from __future__ import annotations

from typing import Iterator

import numpy as np


def padded_batches(num: int, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """(indices (batch_size,), count) covering ``range(num)`` in order.

    Only the first ``count`` indices of a batch are new; the last batch is padded by repeating its
    final index, and callers drop the results of the padding.
    """
    if num <= 0 or batch_size <= 0:
        raise ValueError(f"padded_batches needs positive num and batch_size, got {num} and {batch_size}")
    for start in range(0, num, batch_size):
        count = min(batch_size, num - start)
        yield start + np.minimum(np.arange(batch_size), count - 1), count
